// test_serve_openai.c — the OpenAI wire format of serve/ (openai.h) without
// sockets or an engine: request parsing (defaults, every field, the 400s
// naming the field), log-probabilities against a direct log-softmax and a
// sorted top-k, UTF-8 repair, and the shape of responses and chunks.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "openai.h"
#include "testutil.h"

static const pz_tokenizer *tok;

static int parse(const char *body, int chat, pz_oai_request *r, pz_oai_error *e) {
    memset(e, 0, sizeof *e);
    return pz_oai_parse(body, strlen(body), chat, tok, r, e);
}

// A request that must fail with 400 naming param (NULL: no param).
static void bad(const char *body, int chat, const char *param) {
    pz_oai_request r;
    pz_oai_error e;
    int rc = parse(body, chat, &r, &e);
    CHECKF(rc == -1 && e.status == 400, "accepted: %s", body);
    if (param) CHECKF(!strcmp(e.param, param), "%s: param '%s', want '%s'", body, e.param, param);
    pz_oai_request_free(&r);
}

static void test_parse(void) {
    pz_oai_request r;
    pz_oai_error e;
    CHECK(parse("{\"prompt\":\"hi\"}", 0, &r, &e) == 0);  // OpenAI defaults
    CHECK(r.text && !strcmp(r.text, "hi") && !r.ids && r.max_tokens == -1 && r.temperature == 1 &&
          r.top_p == 1 && r.n == 1 && !r.stream && !r.logprobs && !r.has_seed && r.n_stop == 0);
    pz_oai_request_free(&r);
    CHECK(parse("{\"prompt\":[[5,6,7]],\"max_tokens\":9,\"temperature\":0,\"top_p\":0.5,\"seed\":-3,"
                "\"n\":3,\"stop\":[\"a\",\"\",\"bc\"],\"logprobs\":2,\"stream\":true,"
                "\"stream_options\":{\"include_usage\":true},\"unknown\":{\"x\":1}}", 0, &r, &e) == 0);
    CHECK(r.n_ids == 3 && r.ids[2] == 7 && !r.text && r.max_tokens == 9 && r.temperature == 0 &&
          r.top_p == 0.5f && r.has_seed && r.seed == (uint64_t)-3 && r.n == 3 && r.n_stop == 2 &&
          !strcmp(r.stop[1], "bc") && r.logprobs && r.top_logprobs == 2 && r.stream && r.include_usage);
    pz_oai_request_free(&r);
    CHECK(parse("{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":"
                "[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}],"
                "\"max_completion_tokens\":4,\"logprobs\":true,\"top_logprobs\":5,\"stop\":\"x\"}",
                1, &r, &e) == 0);
    CHECK(r.max_tokens == 4 && r.logprobs && r.top_logprobs == 5 && r.n_stop == 1);
    CHECKF(r.text && strstr(r.text, "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nab<|im_end|>\n"
                                    "<|im_start|>assistant\n"),
           "rendered: %s", r.text ? r.text : "(null)");
    pz_oai_request_free(&r);

    bad("", 0, NULL);
    bad("{\"prompt\":\"x\"", 0, NULL);
    bad("[1]", 0, NULL);
    bad("{}", 0, "prompt");
    bad("{}", 1, "messages");
    bad("{\"prompt\":[1,49152]}", 0, "prompt");
    bad("{\"prompt\":[\"a\",\"b\"]}", 0, "prompt");
    bad("{\"prompt\":\"x\",\"max_tokens\":0}", 0, "max_tokens");
    bad("{\"prompt\":\"x\",\"max_tokens\":1.5}", 0, "max_tokens");
    bad("{\"prompt\":\"x\",\"temperature\":2.5}", 0, "temperature");
    bad("{\"prompt\":\"x\",\"top_p\":0}", 0, "top_p");
    bad("{\"prompt\":\"x\",\"n\":9}", 0, "n");
    bad("{\"prompt\":\"x\",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 0, "stop");
    bad("{\"prompt\":\"x\",\"stream_options\":{}}", 0, "stream_options");
    bad("{\"prompt\":\"x\",\"logprobs\":6}", 0, "logprobs");
    bad("{\"prompt\":\"x\",\"echo\":true}", 0, "echo");
    bad("{\"prompt\":\"x\",\"presence_penalty\":0.5}", 0, "presence_penalty");
    bad("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", 1, "top_logprobs");
    bad("{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", 1, "messages[0].role");
    bad("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"user\"}]}", 1, "messages[1].content");
    bad("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"model\":1}", 1, "model");

    pz_oai_fail(&e, 400, NULL, "n", "invalid_value", "bad %s", "n");
    char *j = pz_oai_error_json(&e);
    CHECKF(j && !strcmp(j, "{\"error\":{\"message\":\"bad n\",\"type\":\"invalid_request_error\",\"param\":\"n\","
                            "\"code\":\"invalid_value\"}}"), "%s", j ? j : "(null)");
    free(j);
    pz_oai_fail(&e, 404, "invalid_request_error", NULL, NULL, "no");
    j = pz_oai_error_json(&e);
    CHECKF(j && strstr(j, "\"param\":null,\"code\":null"), "%s", j ? j : "(null)");
    free(j);
}

static void test_logprobs(void) {
    enum { V = 1000 };
    float x[V];
    uint64_t st = 7;
    pz_test_fill_randn(x, V, 3.0f, &st);
    x[10] = x[20] = 12.0f;  // a tie at the top: lower id first
    pz_oai_logprob lp;
    pz_oai_logprob_fill(&lp, x, V, 20, 5);
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)x[i] - 12.0);
    double lse = 12.0 + log(s);
    CHECK(lp.id == 20 && fabs(lp.logprob - (x[20] - lse)) < 1e-5);
    CHECK(lp.n_top == 5 && lp.top[0].id == 10 && lp.top[1].id == 20);
    for (int k = 1; k < 5; k++) CHECK(x[lp.top[k].id] <= x[lp.top[k - 1].id]);
    int above = 0;  // nothing outside the top 5 beats its last entry
    for (int i = 0; i < V; i++) above += x[i] > x[lp.top[4].id];
    CHECK(above == 4);
    pz_oai_logprob_fill(&lp, x, V, 3, 0);
    CHECK(lp.n_top == 0 && fabs(lp.logprob - (x[3] - lse)) < 1e-5);
}

static void test_utf8(void) {
    struct {
        const char *in;
        size_t n;
        const char *out;
    } t[] = {{"abc", 3, "abc"},
             {"\xc3\xa9", 2, "\xc3\xa9"},                         // é
             {"\xe4\xb8", 2, "\xef\xbf\xbd\xef\xbf\xbd"},         // truncated: one U+FFFD per byte
             {"a\xff" "b", 3, "a\xef\xbf\xbd" "b"},
             {"\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},  // surrogate
             {"\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd"},         // overlong
             {"x\0y", 3, "xy"},
             {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char *o = pz_oai_utf8(t[i].in, t[i].n);
        CHECKF(o && !strcmp(o, t[i].out), "case %zu", i);
        free(o);
    }
}

static void test_responses(void) {
    cJSON *o = pz_oai_envelope(1, 1, "chatcmpl-1", 5, "m");
    pz_oai_add_choice(o, 1, 1, 0, "", 1, NULL, NULL);
    pz_oai_add_choice(o, 1, 1, 1, NULL, 0, "stop", NULL);
    char *s = cJSON_PrintUnformatted(o);
    CHECKF(s && !strcmp(s, "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
                           "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                           "\"logprobs\":null,\"finish_reason\":null},{\"index\":1,\"delta\":{},\"logprobs\":null,"
                           "\"finish_reason\":\"stop\"}]}"),
           "%s", s ? s : "(null)");
    free(s);
    cJSON_Delete(o);
    o = pz_oai_envelope(0, 0, "cmpl-2", 6, "m");
    pz_oai_logprob lp = {.id = 19556, .logprob = -0.5f, .n_top = 1, .top = {{19556, -0.5f}}};
    pz_oai_add_choice(o, 0, 0, 0, "Hello", 0, "length", pz_oai_logprobs_json(tok, 0, &lp, 1, 0));
    cJSON_AddItemToObject(o, "usage", pz_oai_usage(3, 1));
    s = cJSON_PrintUnformatted(o);
    CHECKF(s && strstr(s, "\"text\":\"Hello\"") && strstr(s, "\"tokens\":[\"Hello\"]") &&
               strstr(s, "\"top_logprobs\":[{\"Hello\":-0.5}]") && strstr(s, "\"text_offset\":[0]") &&
               strstr(s, "\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}"),
           "%s", s ? s : "(null)");
    free(s);
    cJSON_Delete(o);
    cJSON *c = pz_oai_logprobs_json(tok, 1, &lp, 1, 0);
    s = cJSON_PrintUnformatted(c);
    CHECKF(s && !strcmp(s, "{\"content\":[{\"token\":\"Hello\",\"logprob\":-0.5,\"bytes\":[72,101,108,108,111],"
                           "\"top_logprobs\":[{\"token\":\"Hello\",\"logprob\":-0.5,\"bytes\":[72,101,108,108,"
                           "111]}]}]}"),
           "%s", s ? s : "(null)");
    free(s);
    cJSON_Delete(c);
}

int main(void) {
    char path[4096], err[PZ_ERRLEN];
    const char *d = pz_test_data_dir();
    if (!d) {
        fprintf(stderr, "skip: PUZZLE_TESTDATA unset\n");
        return PZ_TEST_SKIP;
    }
    snprintf(path, sizeof path, "%s/smollm2_tokenizer/tokenizer.json", d);
    pz_tokenizer *t = pz_tokenizer_load(path, err);
    if (!t) {
        fprintf(stderr, "test_serve_openai: %s\n", err);
        return 1;
    }
    tok = t;
    test_parse();
    // a conversation the chat format refuses (Llama 2: roles must alternate) is a 400 on messages
    CHECK(pz_tokenizer_set_chat_format(t, "llama2", err) == 0);
    bad("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"}]}", 1,
        "messages");
    pz_oai_request r;
    pz_oai_error e;
    CHECK(parse("{\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":\"U\"}]}", 1,
                &r, &e) == 0 &&
          r.text && !strcmp(r.text, "<|im_start|>[INST] <<SYS>>\nS\n<</SYS>>\n\nU [/INST]"));
    pz_oai_request_free(&r);
    CHECK(pz_tokenizer_set_chat_format(t, NULL, err) == 0);
    test_logprobs();
    test_utf8();
    test_responses();
    pz_tokenizer_free(t);
    return pz_test_finish("test_serve_openai");
}
