// tokenizer_vectors.h — shared by test_tokenizer.c and test_tokenizer_gguf.c:
// checks a tokenizer against tests/data/tokenizer_vectors.json, the ids and
// chat prompts that Hugging Face `tokenizers` + jinja2 give for SmolLM2
// (made by tests/ref/make_tokenizer_vectors.py).
#ifndef PZ_TEST_TOKENIZER_VECTORS_H
#define PZ_TEST_TOKENIZER_VECTORS_H

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "testutil.h"
#include "tokenizer.h"

static cJSON *tv_load(void) {
    char path[1024], err[PZ_ERRLEN];
    snprintf(path, sizeof path, "%s/tokenizer_vectors.json", pz_test_data_dir());
    size_t n;
    char *text = pz_read_file(path, 64u << 20, &n, err);
    if (!text) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLength(text, n);
    free(text);
    if (!root) fprintf(stderr, "%s: bad JSON\n", path);
    return root;
}

// The byte alphabet (GPT-2 bytes_to_unicode), written here independently.
static unsigned tv_byte_cp(unsigned b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 0x100 + b;
    if (b <= 0xA0) return 0x100 + 33 + (b - 0x7F);
    return 0x100 + 67;
}

static void tv_cp_utf8(unsigned cp, char *o) {
    if (cp < 0x80) o[0] = (char)cp, o[1] = 0;
    else o[0] = (char)(0xC0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3F)), o[2] = 0;
}

// What decode(encode(s)) must give: s without the bytes that have no token
// (HF drops them). Writes into out (n+1 bytes); returns the length.
static size_t tv_expected(const pz_tokenizer *t, const char *s, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char u[4];
        tv_cp_utf8(tv_byte_cp((unsigned char)s[i]), u);
        if (pz_tokenizer_find(t, u) >= 0) out[k++] = s[i];
    }
    out[k] = 0;
    return k;
}

static int tv_ids_equal(const int32_t *ids, int n, const cJSON *want) {
    if (n != cJSON_GetArraySize(want)) return 0;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, want) if (ids[i++] != (int32_t)it->valuedouble) return 0;
    return 1;
}

static void tv_print_ids(const char *label, const int32_t *ids, int n) {
    fprintf(stderr, "  %s:", label);
    for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", (int)ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

// Streams ids one at a time (cap just big enough) and returns the
// concatenation, malloc'ed.
static char *tv_stream_all(const pz_tokenizer *t, const int32_t *ids, int n, size_t *len) {
    size_t cap = (size_t)pz_tokenizer_max_token_len(t) + 3;
    char *out = malloc((size_t)n * cap + 8), *o = out, *piece = malloc(cap);
    pz_utf8_stream s = {0};
    for (int i = 0; i < n; i++) {
        size_t k = pz_tokenizer_stream(t, &s, ids[i], 0, piece, cap);
        // every emitted chunk ends on a character boundary unless ill-formed
        memcpy(o, piece, k);
        o += k;
    }
    o += pz_tokenizer_stream_flush(&s, o, 8);
    *o = 0;
    *len = (size_t)(o - out);
    free(piece);
    return out;
}

// Checks every vector (ids with and without parse_special, decode, stream)
// and every chat rendering. Returns the number of vectors whose ids matched.
static int tv_check(const pz_tokenizer *t, const cJSON *root, const char *label) {
    const cJSON *vectors = cJSON_GetObjectItemCaseSensitive(root, "vectors");
    const cJSON *v;
    int n_ok = 0, n_all = 0;
    char err[PZ_ERRLEN];
    cJSON_ArrayForEach(v, vectors) {
        const char *text = cJSON_GetObjectItemCaseSensitive(v, "text")->valuestring;
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(v, "ids");
        const cJSON *want_raw = cJSON_GetObjectItemCaseSensitive(v, "ids_raw");
        size_t len = strlen(text);
        int32_t *ids = NULL;
        int n = pz_tokenizer_encode(t, text, len, 1, &ids, err);
        n_all++;
        CHECKF(n >= 0, "%s: encode failed: %s", label, err);
        if (n < 0) continue;
        int ok = tv_ids_equal(ids, n, want);
        CHECKF(ok, "%s: ids differ for %.80s", label, text);
        if (!ok) {
            tv_print_ids("got", ids, n);
            int32_t w[4096];
            int nw = 0;
            const cJSON *it;
            cJSON_ArrayForEach(it, want) if (nw < 4096) w[nw++] = (int32_t)it->valuedouble;
            tv_print_ids("want", w, nw);
        }
        n_ok += ok;

        char *dec = pz_tokenizer_decode(t, ids, (size_t)n, 0);
        char *exp = malloc(len + 1);
        size_t el = tv_expected(t, text, len, exp);
        CHECKF(dec && strcmp(dec, exp) == 0, "%s: decode(encode(s)) != s for %.80s", label, text);
        size_t sl;
        char *str = tv_stream_all(t, ids, n, &sl);
        CHECKF(sl == el && memcmp(str, exp, el) == 0, "%s: streamed decode differs for %.80s", label, text);
        free(str);
        free(dec);
        free(ids);

        int32_t *raw = NULL;
        int nr = pz_tokenizer_encode(t, text, len, 0, &raw, err);
        CHECKF(nr >= 0 && tv_ids_equal(raw, nr, want_raw ? want_raw : want),
               "%s: ids without parse_special differ for %.80s", label, text);
        if (nr >= 0) {
            char *d2 = pz_tokenizer_decode(t, raw, (size_t)nr, 0);
            CHECKF(d2 && strcmp(d2, exp) == 0, "%s: decode of the raw encoding differs", label);
            free(d2);
        }
        free(raw);
        free(exp);
    }
    fprintf(stderr, "%s: %d/%d vectors exact\n", label, n_ok, n_all);

    const cJSON *chats = cJSON_GetObjectItemCaseSensitive(root, "chats");
    const cJSON *c;
    int n_chat = 0;
    cJSON_ArrayForEach(c, chats) {
        const cJSON *roles = cJSON_GetObjectItemCaseSensitive(c, "roles");
        const cJSON *contents = cJSON_GetObjectItemCaseSensitive(c, "contents");
        int gen = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt"));
        const char *expected = cJSON_GetObjectItemCaseSensitive(c, "expected")->valuestring;
        const char *r[16], *m[16];
        int k = 0;
        for (; k < cJSON_GetArraySize(roles) && k < 16; k++) {
            r[k] = cJSON_GetArrayItem(roles, k)->valuestring;
            m[k] = cJSON_GetArrayItem(contents, k)->valuestring;
        }
        char *got = pz_tokenizer_chat_render(t, r, m, k, gen, NULL);
        CHECKF(got && strcmp(got, expected) == 0, "%s: chat %d differs:\n--- got\n%s\n--- want\n%s", label,
               n_chat, got ? got : "(null)", expected);
        free(got);
        n_chat++;
    }
    CHECKF(n_chat >= 2, "%s: only %d chat vectors", label, n_chat);
    return n_ok;
}

#endif
