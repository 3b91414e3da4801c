// openai.c — request parsing and response JSON of the OpenAI API (openai.h).
#include "openai.h"
#include "common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pz_oai_fail(pz_oai_error *e, int status, const char *type, const char *param, const char *code,
                const char *fmt, ...) {
    if (!e) return -1;
    e->status = status;
    snprintf(e->type, sizeof e->type, "%s", type ? type : "invalid_request_error");
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

static void add_str_or_null(cJSON *o, const char *k, const char *v) {
    if (v && *v) cJSON_AddStringToObject(o, k, v);
    else cJSON_AddNullToObject(o, k);
}

char *pz_oai_error_json(const pz_oai_error *e) {
    cJSON *root = cJSON_CreateObject(), *er = cJSON_AddObjectToObject(root, "error");
    char *msg = pz_oai_utf8(e->message, strlen(e->message));
    cJSON_AddStringToObject(er, "message", msg ? msg : "");
    free(msg);
    cJSON_AddStringToObject(er, "type", e->type);
    add_str_or_null(er, "param", e->param);
    add_str_or_null(er, "code", e->code);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

void pz_oai_request_free(pz_oai_request *r) {
    free(r->text);
    free(r->ids);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

// ---- field readers: absent or null keeps the default ----------------------

static const cJSON *field(const cJSON *o, const char *k) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

static int get_number(const cJSON *o, const char *k, double lo, double hi, double *out, pz_oai_error *e) {
    const cJSON *v = field(o, k);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return pz_oai_fail(e, 400, NULL, k, "invalid_type", "'%s' must be a number", k);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return pz_oai_fail(e, 400, NULL, k, "invalid_value", "'%s' must be in [%g, %g], got %g", k, lo, hi,
                           v->valuedouble);
    *out = v->valuedouble;
    return 0;
}

static int get_int(const cJSON *o, const char *k, double lo, double hi, long *out, pz_oai_error *e) {
    const cJSON *v = field(o, k);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble))
        return pz_oai_fail(e, 400, NULL, k, "invalid_type", "'%s' must be an integer", k);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return pz_oai_fail(e, 400, NULL, k, "invalid_value", "'%s' must be in [%.0f, %.0f], got %.17g", k, lo,
                           hi, v->valuedouble);
    *out = (long)v->valuedouble;
    return 0;
}

static int get_bool(const cJSON *o, const char *k, int *out, pz_oai_error *e) {
    const cJSON *v = field(o, k);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return pz_oai_fail(e, 400, NULL, k, "invalid_type", "'%s' must be a boolean", k);
    *out = cJSON_IsTrue(v);
    return 0;
}

// A message's content: a string, or an array of {"type":"text","text":...} parts (joined).
static int message_content(const cJSON *c, int i, char **out, pz_oai_error *e) {
    char param[48];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (cJSON_IsString(c)) {
        *out = strdup(c->valuestring);
        return *out ? 0 : pz_oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!cJSON_IsArray(c))
        return pz_oai_fail(e, 400, NULL, param, "invalid_type", "'%s' must be a string or an array of text parts",
                           param);
    size_t n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, c) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsObject(p) || !cJSON_IsString(t) || strcmp(t->valuestring, "text") || !cJSON_IsString(x))
            return pz_oai_fail(e, 400, NULL, param, "invalid_value",
                               "'%s' parts must be {\"type\": \"text\", \"text\": string} (only text is supported)",
                               param);
        n += strlen(x->valuestring);
    }
    char *s = malloc(n + 1);
    if (!s) return pz_oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    s[0] = 0;
    cJSON_ArrayForEach(p, c) strcat(s, cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring);
    *out = s;
    return 0;
}

static int parse_messages(const cJSON *root, const pz_tokenizer *tok, pz_oai_request *r, pz_oai_error *e) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!msgs) return pz_oai_fail(e, 400, NULL, "messages", "missing_required_parameter", "'messages' is required");
    if (!cJSON_IsArray(msgs))
        return pz_oai_fail(e, 400, NULL, "messages", "invalid_type", "'messages' must be an array");
    int n = cJSON_GetArraySize(msgs);
    if (n < 1) return pz_oai_fail(e, 400, NULL, "messages", "invalid_value", "'messages' must not be empty");
    if (n > 4096) return pz_oai_fail(e, 400, NULL, "messages", "invalid_value", "too many messages (%d)", n);
    const char **roles = calloc((size_t)n, sizeof *roles);
    char **contents = calloc((size_t)n, sizeof *contents);
    int rc = 0, i = 0;
    if (!roles || !contents) rc = pz_oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        if (rc) break;
        char param[48];
        snprintf(param, sizeof param, "messages[%d]", i);
        if (!cJSON_IsObject(m)) {
            rc = pz_oai_fail(e, 400, NULL, param, "invalid_type", "'%s' must be an object", param);
            break;
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        snprintf(param, sizeof param, "messages[%d].role", i);
        if (!cJSON_IsString(role)) {
            rc = pz_oai_fail(e, 400, NULL, param, "invalid_type", "'%s' must be a string", param);
            break;
        }
        const char *rv = role->valuestring;
        if (strcmp(rv, "system") && strcmp(rv, "user") && strcmp(rv, "assistant") && strcmp(rv, "developer")) {
            rc = pz_oai_fail(e, 400, NULL, param, "invalid_value",
                             "'%s' must be system, developer, user or assistant", param);
            break;
        }
        roles[i] = strcmp(rv, "developer") ? rv : "system";
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!c || cJSON_IsNull(c)) {
            snprintf(param, sizeof param, "messages[%d].content", i);
            rc = pz_oai_fail(e, 400, NULL, param, "missing_required_parameter", "'%s' is required", param);
            break;
        }
        rc = message_content(c, i, &contents[i], e);
        i++;
    }
    if (!rc) {
        char err[PZ_ERRLEN];
        r->text = pz_tokenizer_chat_render(tok, roles, (const char *const *)contents, n, 1, err);
        if (!r->text) rc = pz_oai_fail(e, 400, NULL, "messages", "invalid_value", "%s", err);
    }
    for (int k = 0; contents && k < n; k++) free(contents[k]);
    free(contents);
    free(roles);
    return rc;
}

// prompt: a string, a list of token ids, or a list holding exactly one of those.
static int parse_prompt(const cJSON *root, const pz_tokenizer *tok, pz_oai_request *r, pz_oai_error *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    if (!p) return pz_oai_fail(e, 400, NULL, "prompt", "missing_required_parameter", "'prompt' is required");
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) == 1 &&
        (cJSON_IsString(p->child) || cJSON_IsArray(p->child)))
        p = p->child;  // [ "text" ] or [[ids]]
    if (cJSON_IsString(p)) {
        if (!(r->text = strdup(p->valuestring))) return pz_oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        return 0;
    }
    if (!cJSON_IsArray(p))
        return pz_oai_fail(e, 400, NULL, "prompt", "invalid_type",
                           "'prompt' must be a string or an array of token ids");
    int n = cJSON_GetArraySize(p);
    if (n == 0) return pz_oai_fail(e, 400, NULL, "prompt", "invalid_value", "'prompt' must not be empty");
    if (!(r->ids = malloc((size_t)n * sizeof *r->ids)))
        return pz_oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    int vocab = pz_tokenizer_vocab_size(tok), i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, p) {
        if (cJSON_IsString(x) || cJSON_IsArray(x))
            return pz_oai_fail(e, 400, NULL, "prompt", "invalid_value",
                               "one prompt per request: 'prompt' must be a string or one list of token ids");
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 ||
            x->valuedouble >= vocab)
            return pz_oai_fail(e, 400, NULL, "prompt", "invalid_value",
                               "'prompt' token %d is not a token id in [0, %d)", i, vocab);
        r->ids[i++] = (int32_t)x->valuedouble;
    }
    r->n_ids = n;
    return 0;
}

static int parse_stop(const cJSON *root, pz_oai_request *r, pz_oai_error *e) {
    const cJSON *s = field(root, "stop");
    if (!s) return 0;
    if (cJSON_IsString(s)) {
        if (!*s->valuestring) return 0;
        if (strlen(s->valuestring) > PZ_OAI_MAX_STOP_LEN)
            return pz_oai_fail(e, 400, NULL, "stop", "invalid_value", "a stop string is longer than %d bytes",
                               PZ_OAI_MAX_STOP_LEN);
        r->stop[r->n_stop++] = strdup(s->valuestring);
        return r->stop[0] ? 0 : pz_oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!cJSON_IsArray(s))
        return pz_oai_fail(e, 400, NULL, "stop", "invalid_type", "'stop' must be a string or an array of strings");
    if (cJSON_GetArraySize(s) > PZ_OAI_MAX_STOP)
        return pz_oai_fail(e, 400, NULL, "stop", "invalid_value", "'stop' holds at most %d strings", PZ_OAI_MAX_STOP);
    const cJSON *x;
    cJSON_ArrayForEach(x, s) {
        if (!cJSON_IsString(x))
            return pz_oai_fail(e, 400, NULL, "stop", "invalid_type", "'stop' must be a string or an array of strings");
        if (!*x->valuestring) continue;
        if (strlen(x->valuestring) > PZ_OAI_MAX_STOP_LEN)
            return pz_oai_fail(e, 400, NULL, "stop", "invalid_value", "a stop string is longer than %d bytes",
                               PZ_OAI_MAX_STOP_LEN);
        if (!(r->stop[r->n_stop++] = strdup(x->valuestring)))
            return pz_oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    return 0;
}

int pz_oai_parse(const char *body, size_t len, int chat, const pz_tokenizer *tok, pz_oai_request *r,
                 pz_oai_error *e) {
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->max_tokens = -1;
    r->temperature = 1;
    r->top_p = 1;
    r->n = 1;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) return pz_oai_fail(e, 400, NULL, NULL, "invalid_json", "the body is not valid JSON");
    int rc = -1;
    double d;
    long v;
    if (!cJSON_IsObject(root)) {
        pz_oai_fail(e, 400, NULL, NULL, "invalid_json", "the body must be a JSON object");
        goto done;
    }
    const cJSON *model = field(root, "model");
    if (model && !cJSON_IsString(model)) {
        pz_oai_fail(e, 400, NULL, "model", "invalid_type", "'model' must be a string");
        goto done;
    }
    if (chat ? parse_messages(root, tok, r, e) : parse_prompt(root, tok, r, e)) goto done;
    const char *mt = chat && field(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (get_int(root, mt, 1, 1 << 24, &r->max_tokens, e)) goto done;
    d = r->temperature;
    if (get_number(root, "temperature", 0, 2, &d, e)) goto done;
    r->temperature = (float)d;
    d = r->top_p;
    if (get_number(root, "top_p", 0, 1, &d, e)) goto done;
    if (d <= 0) {
        pz_oai_fail(e, 400, NULL, "top_p", "invalid_value", "'top_p' must be > 0");
        goto done;
    }
    r->top_p = (float)d;
    v = 0;
    if (field(root, "seed")) {
        if (get_int(root, "seed", -9007199254740991.0, 9007199254740991.0, &v, e)) goto done;
        r->has_seed = 1;
        r->seed = (uint64_t)v;
    }
    v = 1;
    if (get_int(root, "n", 1, PZ_OAI_MAX_N, &v, e)) goto done;
    r->n = (int)v;
    if (parse_stop(root, r, e)) goto done;
    if (get_bool(root, "stream", &r->stream, e)) goto done;
    const cJSON *so = field(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so)) {
            pz_oai_fail(e, 400, NULL, "stream_options", "invalid_type", "'stream_options' must be an object");
            goto done;
        }
        if (!r->stream) {
            pz_oai_fail(e, 400, NULL, "stream_options", "invalid_value",
                        "'stream_options' is only allowed when 'stream' is true");
            goto done;
        }
        if (get_bool(so, "include_usage", &r->include_usage, e)) goto done;
    }
    if (chat) {
        if (get_bool(root, "logprobs", &r->logprobs, e)) goto done;
        v = 0;
        if (get_int(root, "top_logprobs", 0, PZ_OAI_MAX_TOP_LOGPROBS, &v, e)) goto done;
        if (field(root, "top_logprobs") && !r->logprobs) {
            pz_oai_fail(e, 400, NULL, "top_logprobs", "invalid_value",
                        "'top_logprobs' needs 'logprobs' set to true");
            goto done;
        }
        r->top_logprobs = (int)v;
    } else {
        v = -1;
        if (get_int(root, "logprobs", 0, 5, &v, e)) goto done;
        r->logprobs = v >= 0;
        r->top_logprobs = v > 0 ? (int)v : 0;
        int echo = 0;
        if (get_bool(root, "echo", &echo, e)) goto done;
        if (echo) {
            pz_oai_fail(e, 400, NULL, "echo", "unsupported_value", "'echo' is not supported");
            goto done;
        }
        v = 1;
        if (get_int(root, "best_of", 1, PZ_OAI_MAX_N, &v, e)) goto done;
        if (v != r->n && field(root, "best_of")) {
            pz_oai_fail(e, 400, NULL, "best_of", "unsupported_value", "'best_of' other than 'n' is not supported");
            goto done;
        }
        const cJSON *suffix = field(root, "suffix");
        if (suffix && !(cJSON_IsString(suffix) && !*suffix->valuestring)) {
            pz_oai_fail(e, 400, NULL, "suffix", "unsupported_value", "'suffix' is not supported");
            goto done;
        }
    }
    static const char *const penalties[] = {"frequency_penalty", "presence_penalty"};
    for (int i = 0; i < 2; i++) {
        d = 0;
        if (get_number(root, penalties[i], -2, 2, &d, e)) goto done;
        if (d != 0) {
            pz_oai_fail(e, 400, NULL, penalties[i], "unsupported_value", "'%s' other than 0 is not supported",
                        penalties[i]);
            goto done;
        }
    }
    const cJSON *tools = field(root, "tools");
    if (tools && !(cJSON_IsArray(tools) && cJSON_GetArraySize(tools) == 0)) {
        pz_oai_fail(e, 400, NULL, "tools", "unsupported_value", "'tools' is not supported");
        goto done;
    }
    const cJSON *rf = field(root, "response_format");
    if (rf) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rf, "type");
        if (!cJSON_IsObject(rf) || !cJSON_IsString(t) || strcmp(t->valuestring, "text")) {
            pz_oai_fail(e, 400, NULL, "response_format", "unsupported_value",
                        "only 'response_format' {\"type\": \"text\"} is supported");
            goto done;
        }
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

// ---- log-probabilities ------------------------------------------------------

void pz_oai_logprob_fill(pz_oai_logprob *lp, const float *x, int vocab, int32_t id, int n_top) {
    float mx = x[0];
    for (int i = 1; i < vocab; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = 0; i < vocab; i++) s += exp((double)x[i] - mx);
    double lse = mx + log(s);
    lp->id = id;
    lp->logprob = (float)(x[id] - lse);
    if (n_top > PZ_OAI_MAX_TOP_LOGPROBS) n_top = PZ_OAI_MAX_TOP_LOGPROBS;
    if (n_top > vocab) n_top = vocab;
    int k = 0;  // top[0..k) sorted by logit descending, ties by lower id (scan order)
    for (int i = 0; i < vocab; i++) {
        if (k == n_top && (n_top == 0 || x[i] <= x[lp->top[k - 1].id])) continue;
        int j = k < n_top ? k++ : k - 1;
        while (j > 0 && x[lp->top[j - 1].id] < x[i]) {
            lp->top[j] = lp->top[j - 1];
            j--;
        }
        lp->top[j].id = i;
    }
    lp->n_top = k;
    for (int j = 0; j < k; j++) lp->top[j].logprob = (float)(x[lp->top[j].id] - lse);
}

// ---- UTF-8 ------------------------------------------------------------------

// Length of the well-formed UTF-8 character at s (n bytes available), or 0.
static int utf8_char(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (!len || c > 0xF4 || (size_t)len > n) return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;  // overlong
    if (c == 0xED && s[1] > 0x9F) return 0;  // surrogate
    if (c == 0xF0 && s[1] < 0x90) return 0;  // overlong
    if (c == 0xF4 && s[1] > 0x8F) return 0;  // beyond U+10FFFF
    return len;
}

char *pz_oai_utf8(const char *s, size_t len) {
    char *o = malloc(len * 3 + 1), *p = o;
    if (!o) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        int k = utf8_char(u + i, len - i);
        if (k == 0) {
            memcpy(p, "\xEF\xBF\xBD", 3);
            p += 3, i++;
        } else if (u[i] == 0) {
            i++;
        } else {
            memcpy(p, u + i, (size_t)k);
            p += k, i += (size_t)k;
        }
    }
    *p = 0;
    return o;
}

// ---- responses --------------------------------------------------------------

cJSON *pz_oai_envelope(int chat, int chunk, const char *id, long long created, const char *model) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddStringToObject(o, "object",
                            chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(o, "created", (double)created);
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddArrayToObject(o, "choices");
    return o;
}

void pz_oai_add_choice(cJSON *env, int chat, int chunk, int index, const char *text, int role,
                       const char *finish, cJSON *logprobs) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", index);
    if (chat) {
        cJSON *m = cJSON_AddObjectToObject(c, chunk ? "delta" : "message");
        if (role || !chunk) cJSON_AddStringToObject(m, "role", "assistant");
        if (text) cJSON_AddStringToObject(m, "content", text);
    } else {
        cJSON_AddStringToObject(c, "text", text ? text : "");
    }
    if (logprobs) cJSON_AddItemToObject(c, "logprobs", logprobs);
    else cJSON_AddNullToObject(c, "logprobs");
    add_str_or_null(c, "finish_reason", finish);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(env, "choices"), c);
}

static cJSON *token_entry(const pz_tokenizer *tok, int32_t id, float logprob, int with_bytes) {
    size_t n = 0;
    const char *b = pz_tokenizer_token_bytes(tok, id, &n);
    if (!b) n = 0;
    char *s = pz_oai_utf8(b ? b : "", n);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "token", s ? s : "");
    free(s);
    cJSON_AddNumberToObject(o, "logprob", logprob);
    if (with_bytes) {
        cJSON *a = cJSON_AddArrayToObject(o, "bytes");
        for (size_t i = 0; i < n; i++) cJSON_AddItemToArray(a, cJSON_CreateNumber((unsigned char)b[i]));
    }
    return o;
}

cJSON *pz_oai_logprobs_json(const pz_tokenizer *tok, int chat, const pz_oai_logprob *lp, int n, long offset0) {
    cJSON *o = cJSON_CreateObject();
    if (chat) {
        cJSON *content = cJSON_AddArrayToObject(o, "content");
        for (int i = 0; i < n; i++) {
            cJSON *t = token_entry(tok, lp[i].id, lp[i].logprob, 1);
            cJSON *top = cJSON_AddArrayToObject(t, "top_logprobs");
            for (int k = 0; k < lp[i].n_top; k++)
                cJSON_AddItemToArray(top, token_entry(tok, lp[i].top[k].id, lp[i].top[k].logprob, 1));
            cJSON_AddItemToArray(content, t);
        }
        return o;
    }
    cJSON *tokens = cJSON_AddArrayToObject(o, "tokens"), *tlp = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs"), *off = cJSON_AddArrayToObject(o, "text_offset");
    long pos = offset0;
    for (int i = 0; i < n; i++) {
        size_t nb = 0;
        const char *b = pz_tokenizer_token_bytes(tok, lp[i].id, &nb);
        char *s = pz_oai_utf8(b ? b : "", b ? nb : 0);
        cJSON_AddItemToArray(tokens, cJSON_CreateString(s ? s : ""));
        cJSON_AddItemToArray(tlp, cJSON_CreateNumber(lp[i].logprob));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)pos));
        pos += b ? (long)nb : 0;
        free(s);
        cJSON *alt = cJSON_CreateObject();
        for (int k = 0; k < lp[i].n_top; k++) {
            b = pz_tokenizer_token_bytes(tok, lp[i].top[k].id, &nb);
            s = pz_oai_utf8(b ? b : "", b ? nb : 0);
            if (s && !cJSON_GetObjectItemCaseSensitive(alt, s))
                cJSON_AddNumberToObject(alt, s, lp[i].top[k].logprob);
            free(s);
        }
        cJSON_AddItemToArray(top, alt);
    }
    return o;
}

cJSON *pz_oai_usage(long prompt_tokens, long completion_tokens) {
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt_tokens + completion_tokens));
    return u;
}
