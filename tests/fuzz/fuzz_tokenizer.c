// fuzz_tokenizer.c — libFuzzer entry point for the tokenizer's encoder: any
// bytes (invalid UTF-8, special-token fragments, huge runs) must encode
// without a crash or sanitizer report, to ids in range, and decode(encode(x))
// and the streamed decode must give x back, less the bytes the vocabulary
// has no token for (dropped, as Hugging Face does). The tokenizer is
// tests/data/smollm2_tokenizer ($PUZZLE_TESTDATA or the working directory's
// tests/data).
#include "common.h"
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pz_tokenizer *tok;
static int has_token[256];

static void init(void) {
    char err[PZ_ERRLEN], path[1024];
    const char *d = getenv("PUZZLE_TESTDATA");
    snprintf(path, sizeof path, "%s/smollm2_tokenizer", d && *d ? d : "tests/data");
    tok = pz_tokenizer_load(path, err);
    if (!tok) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err);
        abort();
    }
    for (int b = 0; b < 256; b++) {
        char one = (char)b;
        int32_t *ids = NULL;
        has_token[b] = pz_tokenizer_encode(tok, &one, 1, 0, &ids, err) == 1;
        free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) init();
    char err[PZ_ERRLEN];
    char *want = malloc(size + 1);
    size_t nw = 0;
    for (size_t i = 0; i < size; i++)
        if (has_token[data[i]]) want[nw++] = (char)data[i];
    for (int special = 0; special < 2; special++) {
        int32_t *ids = NULL;
        int n = pz_tokenizer_encode(tok, (const char *)data, size, special, &ids, err);
        if (n < 0 || !ids) __builtin_trap();
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= pz_tokenizer_vocab_size(tok)) __builtin_trap();
        char *d = pz_tokenizer_decode(tok, ids, (size_t)n, 0);
        if (!d || memcmp(d, want, nw) != 0 || d[nw]) __builtin_trap();
        size_t cap = (size_t)pz_tokenizer_max_token_len(tok) + 3, k = 0;
        char *s = malloc((size_t)n * cap + 8);
        pz_utf8_stream st = {0};
        for (int i = 0; i < n; i++) k += pz_tokenizer_stream(tok, &st, ids[i], 0, s + k, cap);
        k += pz_tokenizer_stream_flush(&st, s + k, 8);
        if (k != nw || memcmp(s, want, nw) != 0) __builtin_trap();
        free(s);
        free(d);
        free(ids);
    }
    free(want);
    return 0;
}
