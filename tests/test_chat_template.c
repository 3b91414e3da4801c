// test_chat_template.c — runtime/chat_template.c against the real templates in
// tests/ref/chat_templates: each file's family is recognized (and templates of
// other layouts are refused), and every conversation of
// tests/ref/chat_template_ref.py renders byte for byte as Python jinja2
// renders the template (Hugging Face's environment), errors included. Then
// the tokenizer side: the format a tokenizer picks up, --chat-template
// overrides, stop ids, and BOS: a text prompt gets BOS when the tokenizer
// asks for it, never twice when the rendered chat already starts with it.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat_template.h"
#include "common.h"
#include "testutil.h"
#include "tokenizer.h"

static char tdir[1024];

static char *read_template(const char *name) {
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", tdir, name);
    size_t n;
    char err[PZ_ERRLEN];
    char *s = pz_read_file(p, 1 << 20, &n, err);
    CHECKF(s, "%s", err);
    return s;
}

// Each file's family, without Python: the same table as chat_template_ref.py.
static void detection(void) {
    static const struct {
        const char *file;
        pz_chat_family fam;
    } want[] = {
        {"HuggingFaceTB-SmolLM2-135M-Instruct.jinja", PZ_CHAT_CHATML},
        {"teknium-OpenHermes-2.5-Mistral-7B.jinja", PZ_CHAT_CHATML},
        {"Qwen-Qwen2.5-7B-Instruct.jinja", PZ_CHAT_CHATML},
        {"meta-llama-Meta-Llama-3-8B-Instruct.jinja", PZ_CHAT_LLAMA3},
        {"meta-llama-Llama-3.1-8B-Instruct.jinja", PZ_CHAT_LLAMA3},
        {"meta-llama-Llama-3.2-3B-Instruct.jinja", PZ_CHAT_LLAMA3},
        {"meta-llama-Llama-2-7b-chat-hf.jinja", PZ_CHAT_LLAMA2},
        {"mistralai-Mistral-7B-Instruct-v0.2.jinja", PZ_CHAT_MISTRAL},
        {"google-gemma-7b-it.jinja", PZ_CHAT_GEMMA},
        {"google-gemma-2-2b-it.jinja", PZ_CHAT_GEMMA},
        {"google-gemma-3-it.jinja", PZ_CHAT_GEMMA},
        {"microsoft-Phi-3.5-mini-instruct.jinja", PZ_CHAT_PHI3},
        {"HuggingFaceH4-zephyr-7b-beta.jinja", PZ_CHAT_ZEPHYR},
        {"microsoft-phi-4.jinja", PZ_CHAT_UNKNOWN},
        {"mistralai-Mistral-Nemo-Instruct-2407.jinja", PZ_CHAT_UNKNOWN},
        {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", PZ_CHAT_DEEPSEEK_R1},
        {"Qwen-Qwen3-0.6B.jinja", PZ_CHAT_UNKNOWN},
        {"meetkai-functionary-medium-v3.2.jinja", PZ_CHAT_UNKNOWN},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char *t = read_template(want[i].file);
        if (!t) continue;
        pz_chat_family got = pz_chat_detect(t);
        CHECKF(got == want[i].fam, "%s: detected %s, want %s", want[i].file, pz_chat_family_name(got),
               pz_chat_family_name(want[i].fam));
        char err[PZ_ERRLEN] = "";
        pz_chat_format *f = pz_chat_format_new(t, NULL, "<s>", "</s>", err);
        if (want[i].fam == PZ_CHAT_UNKNOWN)
            CHECKF(!f && strstr(err, "--chat-template"), "%s: an unknown template must be refused: %s", want[i].file,
                   err);
        else
            CHECKF(f && pz_chat_format_family(f) == want[i].fam, "%s: %s", want[i].file, err);
        pz_chat_format_free(f);
        free(t);
    }
    pz_chat_family f;
    CHECK(pz_chat_family_parse("llama3", &f) == 0 && f == PZ_CHAT_LLAMA3);
    CHECK(pz_chat_family_parse("jinja", &f) == -1 && pz_chat_family_parse(NULL, &f) == -1);
    CHECK(pz_chat_detect(NULL) == PZ_CHAT_UNKNOWN && pz_chat_detect("{{ messages }}") == PZ_CHAT_UNKNOWN);
}

// A few renders that do not need Python: what the families are known to produce.
static void literal_renders(void) {
    char err[PZ_ERRLEN];
    pz_chat_format *f = pz_chat_format_new(NULL, "llama3", "<|begin_of_text|>", "<|eot_id|>", err);
    CHECKF(f, "%s", err);
    if (!f) return;
    CHECK(pz_chat_format_set_date(f, "26 Jul 2024") == 0);
    pz_chat_msg m[] = {{"system", " Be brief. "}, {"user", "Hi\n"}};
    char *s = pz_chat_render(f, m, 2, 1, err);
    CHECKF(s && !strcmp(s, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                           "December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user"
                           "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
           "llama3: %s", s ? s : err);
    free(s);
    const char *const *end = pz_chat_end_pieces(f);
    CHECK(end[0] && !strcmp(end[0], "<|eot_id|>") && end[1] && !strcmp(end[1], "<|eom_id|>") && !end[2]);
    // without a fixed date the current one: "DD Mon YYYY"
    CHECK(pz_chat_format_set_date(f, NULL) == 0);
    s = pz_chat_render(f, m + 1, 1, 0, err);
    const char *d = s ? strstr(s, "Today Date: ") : NULL;
    CHECKF(d && strlen(d) > 24 && d[14] == ' ' && d[18] == ' ' && d[23] == '\n', "today: %s", s ? s : err);
    free(s);
    pz_chat_format_free(f);

    f = pz_chat_format_new(NULL, "llama2", "<s>", "</s>", err);
    pz_chat_msg bad[] = {{"user", "a"}, {"user", "b"}};
    err[0] = 0;
    s = f ? pz_chat_render(f, bad, 2, 1, err) : NULL;
    CHECKF(!s && strstr(err, "must alternate"), "llama2 non-alternating roles: %s", err);
    free(s);
    CHECK(f && !pz_chat_end_pieces(f)[0]);  // EOS ends the turn
    pz_chat_format_free(f);

    CHECK(!pz_chat_format_new(NULL, "vicuna", "", "", err) && strstr(err, "chatml"));
}

static const char *str_of(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

// Every (template, conversation, add_generation_prompt) against jinja2.
static void against_jinja(void) {
    const char *py = pz_test_python("jinja2", "the jinja2 rendering of the real templates");
    if (!py) return;
    char *tmp = pz_test_tmpdir("chat");
    char out[512], cmd[4096];
    snprintf(out, sizeof out, "%s/renders.json", tmp);
    snprintf(cmd, sizeof cmd, "'%s' '%s/../chat_template_ref.py' '%s' '%s' >&2", py, tdir, tdir, out);
    int rc = system(cmd);
    CHECKF(rc == 0, "%s failed", cmd);
    size_t n;
    char err[PZ_ERRLEN];
    char *js = rc == 0 ? pz_read_file(out, 1 << 26, &n, err) : NULL;
    cJSON *root = js ? cJSON_Parse(js) : NULL;
    CHECK(cJSON_IsArray(root));
    int n_templates = 0, n_renders = 0, n_errors = 0, n_bad = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, root) {
        const char *name = str_of(c, "template"), *fam = str_of(c, "family");
        pz_chat_family want;
        if (!name || !fam || pz_chat_family_parse(fam, &want)) continue;  // "unknown": checked above
        char *t = read_template(name);
        pz_chat_format *f = t ? pz_chat_format_new(t, NULL, str_of(c, "bos"), str_of(c, "eos"), err) : NULL;
        CHECKF(f && pz_chat_format_family(f) == want, "%s: %s", name, f ? "wrong family" : err);
        free(t);
        if (!f) continue;
        pz_chat_format_set_date(f, "26 Jul 2024");  // the reference's strftime_now
        n_templates++;
        const cJSON *r;
        cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(c, "renders")) {
            const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(r, "messages");
            pz_chat_msg m[16];
            int k = 0;
            const cJSON *x;
            cJSON_ArrayForEach(x, msgs) if (k < 16) m[k++] = (pz_chat_msg){cJSON_GetArrayItem(x, 0)->valuestring,
                                                                        cJSON_GetArrayItem(x, 1)->valuestring};
            int gen = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "add_generation_prompt"));
            int conv = cJSON_GetObjectItemCaseSensitive(r, "conversation")->valueint;
            const char *text = str_of(r, "text"), *error = str_of(r, "error");
            err[0] = 0;
            char *got = pz_chat_render(f, m, k, gen, err);
            int ok = text ? (got && !strcmp(got, text)) : (!got && error && !strcmp(err, error));
            if (!ok && n_bad++ < 12) {
                cJSON *g = cJSON_CreateString(got ? got : err), *w = cJSON_CreateString(text ? text : error);
                char *gs = cJSON_PrintUnformatted(g), *ws = cJSON_PrintUnformatted(w);
                fprintf(stderr, "%s conversation %d gen %d:\n  got  %s%s\n  want %s%s\n", name, conv, gen,
                        got ? "" : "error ", gs, text ? "" : "error ", ws);
                free(gs), free(ws);
                cJSON_Delete(g), cJSON_Delete(w);
            }
            CHECK(ok);
            n_renders++;
            n_errors += !text;
            free(got);
        }
        pz_chat_format_free(f);
    }
    fprintf(stderr, "jinja2: %d renders (%d refused) of %d templates, %d differ\n", n_renders, n_errors,
            n_templates, n_bad);
    CHECK(n_templates >= 14 && n_renders >= 14 * 26 && n_errors >= 4);
    cJSON_Delete(root);
    free(js);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd)) {}
    free(tmp);
}

// A copy of the SmolLM2 tokenizer whose config sets add_bos_token and,
// when tmpl is given, the chat template.
static pz_tokenizer *smol_tokenizer(const char *dir, int add_bos, const char *tmpl) {
    char a[1400], b[1400], err[PZ_ERRLEN];
    snprintf(a, sizeof a, "%s/smollm2_tokenizer/tokenizer_config.json", pz_test_data_dir());
    size_t n;
    char *js = pz_read_file(a, 1 << 24, &n, err);
    cJSON *cfg = js ? cJSON_Parse(js) : NULL;
    free(js);
    CHECK(cfg);
    if (!cfg) return NULL;
    cJSON_ReplaceItemInObjectCaseSensitive(cfg, "add_bos_token", cJSON_CreateBool(add_bos));
    if (tmpl) cJSON_ReplaceItemInObjectCaseSensitive(cfg, "chat_template", cJSON_CreateString(tmpl));
    char *s = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    snprintf(b, sizeof b, "%s/tokenizer_config.json", dir);
    FILE *fp = fopen(b, "w");
    CHECK(fp && s);
    if (fp) {
        fputs(s, fp);
        fclose(fp);
    }
    free(s);
    snprintf(a, sizeof a, "%s/smollm2_tokenizer/tokenizer.json", pz_test_data_dir());
    pz_tokenizer *t = pz_tokenizer_from_json(a, b, err);
    CHECKF(t, "%s", err);
    return t;
}

static int ids_equal(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof *a) == 0);
}

static void tokenizer_side(void) {
    char *dir = pz_test_tmpdir("chat_tok");
    char err[PZ_ERRLEN];
    pz_tokenizer *t = smol_tokenizer(dir, 1, NULL);
    if (!t) return;
    int32_t bos = pz_tokenizer_bos(t);  // <|im_start|>, which every ChatML turn starts with
    CHECK(pz_tokenizer_add_bos(t) && bos == pz_tokenizer_find(t, "<|im_start|>"));
    CHECK(pz_tokenizer_chat_format(t) && pz_chat_format_family(pz_tokenizer_chat_format(t)) == PZ_CHAT_CHATML);

    // a text prompt: BOS first, then exactly the text's tokens
    int32_t *plain = NULL, *pr = NULL;
    int np = pz_tokenizer_encode(t, "Hello world", 11, 1, &plain, err);
    int nq = pz_tokenizer_encode_prompt(t, "Hello world", 11, &pr, err);
    CHECK(np > 0 && nq == np + 1 && pr[0] == bos && ids_equal(pr + 1, nq - 1, plain, np));
    free(plain), free(pr);
    // an empty text prompt is BOS alone
    nq = pz_tokenizer_encode_prompt(t, "", 0, &pr, err);
    CHECK(nq == 1 && pr[0] == bos);
    free(pr);

    // a rendered chat that starts with the BOS text keeps one BOS
    const char *roles[] = {"user"}, *contents[] = {"Hi"};
    char *chat = pz_tokenizer_chat_render(t, roles, contents, 1, 1, err);
    CHECKF(chat && !strncmp(chat, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM", 61), "%s",
           chat ? chat : err);
    np = chat ? pz_tokenizer_encode(t, chat, strlen(chat), 1, &plain, err) : -1;
    nq = chat ? pz_tokenizer_encode_prompt(t, chat, strlen(chat), &pr, err) : -1;
    CHECK(np > 2 && plain[0] == bos && plain[1] != bos && ids_equal(pr, nq, plain, np));
    free(plain), free(pr), free(chat);

    // stop ids: EOS is <|im_end|> here, listed once
    int32_t stops[8];
    int ns = pz_tokenizer_chat_stop_ids(t, stops, 8);
    CHECK(ns == 1 && stops[0] == pz_tokenizer_eos(t) && stops[0] == pz_tokenizer_find(t, "<|im_end|>"));

    // --chat-template: another family; an unknown name is refused and changes nothing
    CHECK(pz_tokenizer_set_chat_format(t, "zephyr", err) == 0);
    chat = pz_tokenizer_chat_render(t, roles, contents, 1, 1, err);
    CHECKF(chat && !strcmp(chat, "<|user|>\nHi<|im_end|>\n<|assistant|>\n"), "zephyr: %s", chat ? chat : err);
    free(chat);
    CHECK(pz_tokenizer_set_chat_format(t, "nonesuch", err) == -1 && strstr(err, "nonesuch"));
    CHECK(pz_chat_format_family(pz_tokenizer_chat_format(t)) == PZ_CHAT_ZEPHYR);
    CHECK(pz_tokenizer_set_chat_format(t, NULL, err) == 0 &&
          pz_chat_format_family(pz_tokenizer_chat_format(t)) == PZ_CHAT_CHATML);
    pz_tokenizer_free(t);

    // without add_bos: the text's tokens alone
    t = smol_tokenizer(dir, 0, NULL);
    if (t) {
        np = pz_tokenizer_encode(t, "Hello", 5, 1, &plain, err);
        nq = pz_tokenizer_encode_prompt(t, "Hello", 5, &pr, err);
        CHECK(np > 0 && ids_equal(pr, nq, plain, np));
        free(plain), free(pr);
        pz_tokenizer_free(t);
    }

    // a template of no known family: no format until one is named
    char *phi4 = read_template("microsoft-phi-4.jinja");
    t = phi4 ? smol_tokenizer(dir, 0, phi4) : NULL;
    free(phi4);
    if (t) {
        CHECK(!pz_tokenizer_chat_format(t));
        err[0] = 0;
        chat = pz_tokenizer_chat_render(t, roles, contents, 1, 1, err);
        CHECK(!chat && strstr(err, "no family"));
        CHECK(pz_tokenizer_set_chat_format(t, "chatml", err) == 0);
        chat = pz_tokenizer_chat_render(t, roles, contents, 1, 1, err);
        CHECK(chat && !strcmp(chat, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
        free(chat);
        pz_tokenizer_free(t);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
    free(dir);
}

int main(void) {
    snprintf(tdir, sizeof tdir, "%s/../ref/chat_templates", pz_test_data_dir());
    detection();
    literal_renders();
    against_jinja();
    tokenizer_side();
    return pz_test_finish("test_chat_template");
}
