// cmd_tokenize.c — `puzzle tokenize MODEL`: tokenizes standard input with the
// model's tokenizer (GGUF metadata or tokenizer.json).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "tokenizer.h"

void pz_usage_tokenize(FILE *out) {
    fprintf(out,
            "usage: puzzle tokenize MODEL [--ids | --pieces] [--no-special] < text\n\n"
            "Reads UTF-8 text from standard input and prints its tokens.\n"
            "  (default)      one token per line: id, a tab, the vocabulary piece\n"
            "  --ids          one id per line\n"
            "  --pieces       one vocabulary piece per line (bytes in the byte alphabet, e.g. \"Ġthe\")\n"
            "  --no-special   treat special-token text such as <|im_start|> as plain text\n");
}

static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= ((size_t)1 << 31)) break;  // 2 GiB is plenty for a tokenizer run
            char *nb = realloc(buf, cap * 2);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - 1 - n, stdin);
        n += r;
        if (r == 0) break;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

int pz_cmd_tokenize(int argc, char **argv) {
    const char *path = NULL;
    int mode = 0, special = 1;  // mode: 0 table, 1 ids, 2 pieces
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ids") == 0) mode = 1;
        else if (strcmp(argv[i], "--pieces") == 0) mode = 2;
        else if (strcmp(argv[i], "--no-special") == 0) special = 0;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "puzzle tokenize: unknown option '%s'\n", argv[i]);
            return PZ_EXIT_USAGE;
        } else if (!path) path = argv[i];
        else {
            fprintf(stderr, "puzzle tokenize: one MODEL only ('%s' is extra)\n", argv[i]);
            return PZ_EXIT_USAGE;
        }
    }
    if (!path) {
        pz_usage_tokenize(stderr);
        return PZ_EXIT_USAGE;
    }
    char err[PZ_ERRLEN];
    pz_tokenizer *tok = pz_tokenizer_load(path, err);
    if (!tok) {
        fprintf(stderr, "puzzle tokenize: %s\n", err);
        return PZ_EXIT_FAIL;
    }
    size_t len;
    char *text = read_stdin(&len);
    if (!text) {
        fprintf(stderr, "puzzle tokenize: out of memory reading standard input\n");
        pz_tokenizer_free(tok);
        return PZ_EXIT_FAIL;
    }
    int32_t *ids = NULL;
    int n = pz_tokenizer_encode(tok, text, len, special, &ids, err);
    if (n < 0) {
        fprintf(stderr, "puzzle tokenize: %s\n", err);
        free(text);
        pz_tokenizer_free(tok);
        return PZ_EXIT_FAIL;
    }
    for (int i = 0; i < n; i++) {
        if (mode == 1) printf("%d\n", ids[i]);
        else if (mode == 2) printf("%s\n", pz_tokenizer_piece(tok, ids[i]));
        else printf("%d\t%s\n", ids[i], pz_tokenizer_piece(tok, ids[i]));
    }
    fprintf(stderr, "%d tokens from %zu bytes\n", n, len);
    free(ids);
    free(text);
    pz_tokenizer_free(tok);
    return PZ_EXIT_OK;
}
