// bench_tokenizer.c — encoding and decoding speed of the byte-level BPE
// tokenizer on ~1 MB of English text, single thread. Prints a table and
// writes it to results/tokenizer_bench.md.
//
//   bench_tokenizer [tokenizer: GGUF or HF dir] [text file] [bytes] [out.md]
//
// Defaults: $PUZZLE_MODEL (else tests/data/smollm2_tokenizer); the first
// 1 MB of $PUZZLE_CACHE/text/train.txt (scripts/fetch_text.sh: the documentation mix
// of docs/DATA.md), else synthetic English-like text from a fixed word list.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "tokenizer.h"

static char *synthetic_text(size_t n) {
    static const char *words[] = {
        "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by",
        "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had",
        "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if",
        "more", "when", "will", "would", "who", "so", "no", "model", "language", "training", "tokens",
        "function", "return", "value", "between", "government", "information", "development", "because",
        "different", "important", "example", "system", "number", "however", "therefore", "people",
        "computer", "university", "children", "research", "question", "something", "understanding"};
    const size_t nw = sizeof words / sizeof *words;
    char *s = malloc(n + 64);
    size_t k = 0;
    uint64_t r = 88172645463325252ull;
    int in_sentence = 0;
    while (k < n) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        const char *w = words[r % nw];
        if (!in_sentence) {
            k += (size_t)snprintf(s + k, 64, "%c%s", w[0] - 32, w + 1);
            in_sentence = 1;
        } else if (r % 97 == 0) {
            k += (size_t)snprintf(s + k, 64, " %u", (unsigned)(r >> 40) % 10000);
        } else {
            k += (size_t)snprintf(s + k, 64, " %s", w);
        }
        if (r % 13 == 0) {
            k += (size_t)snprintf(s + k, 64, (r >> 8) % 5 == 0 ? ".\n\n" : ". ");
            in_sentence = 0;
        } else if (r % 11 == 0) {
            s[k++] = ',';
        }
    }
    s[n] = 0;
    return s;
}

static void cpu_name(char *buf, size_t cap) {
    snprintf(buf, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *p = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && p) {
            p += 2;
            p[strcspn(p, "\n")] = 0;
            snprintf(buf, cap, "%s", p);
            break;
        }
    }
    fclose(f);
}

int main(int argc, char **argv) {
    char err[PZ_ERRLEN];
    const char *tpath = argc > 1 ? argv[1] : getenv("PUZZLE_MODEL");
    if (!tpath || !*tpath) tpath = "tests/data/smollm2_tokenizer";
    size_t want = argc > 3 ? (size_t)atol(argv[3]) : (1u << 20);
    const char *out = argc > 4 ? argv[4] : "results/tokenizer_bench.md";
    char def_text[1024];
    const char *cache = getenv("PUZZLE_CACHE");
    snprintf(def_text, sizeof def_text, "%s/text/train.txt",
             cache && *cache ? cache : getenv("HOME") ? getenv("HOME") : ".");
    if (!cache || !*cache) snprintf(def_text, sizeof def_text, "%s/.cache/puzzle/text/train.txt", getenv("HOME") ? getenv("HOME") : ".");
    const char *text_path = argc > 2 ? argv[2] : def_text;

    double t0 = pz_now();
    pz_tokenizer *t = pz_tokenizer_load(tpath, err);
    if (!t) {
        fprintf(stderr, "bench_tokenizer: %s\n", err);
        return 1;
    }
    double t_load = pz_now() - t0;

    size_t len = 0;
    char *text = pz_file_exists(text_path) ? pz_read_file(text_path, (size_t)1 << 31, &len, err) : NULL;
    const char *source = text_path;
    if (!text) {
        source = "synthetic English-like text";
        text = synthetic_text(want);
        len = want;
    }
    if (len > want) {
        len = want;
        while (len > 0 && ((unsigned char)text[len] & 0xC0) == 0x80) len--;  // whole characters
        text[len] = 0;
    }

    const int reps = 5;
    double best_enc = 1e30, best_dec = 1e30, best_special = 1e30;
    int n_ids = 0;
    for (int r = 0; r < reps; r++) {
        int32_t *ids = NULL;
        double a = pz_now();
        n_ids = pz_tokenizer_encode(t, text, len, 0, &ids, err);
        double b = pz_now();
        if (n_ids < 0) {
            fprintf(stderr, "bench_tokenizer: %s\n", err);
            return 1;
        }
        char *d = pz_tokenizer_decode(t, ids, (size_t)n_ids, 0);
        double c = pz_now();
        if (!d || strcmp(d, text) != 0) fprintf(stderr, "bench_tokenizer: decode(encode(text)) != text\n");
        free(d);
        free(ids);
        int32_t *ids2 = NULL;
        double e = pz_now();
        pz_tokenizer_encode(t, text, len, 1, &ids2, err);
        double f = pz_now();
        free(ids2);
        if (b - a < best_enc) best_enc = b - a;
        if (c - b < best_dec) best_dec = c - b;
        if (f - e < best_special) best_special = f - e;
    }

    char tab[2048];
    int n = 0;
    n += snprintf(tab + n, sizeof tab - n,
                  "| operation | bytes | ids | seconds | MB/s | ids/s |\n|---|---:|---:|---:|---:|---:|\n");
    n += snprintf(tab + n, sizeof tab - n, "| encode | %zu | %d | %.4f | %.2f | %.0f |\n", len, n_ids, best_enc,
                  len / best_enc / 1e6, n_ids / best_enc);
    n += snprintf(tab + n, sizeof tab - n, "| encode, parse_special | %zu | %d | %.4f | %.2f | %.0f |\n", len,
                  n_ids, best_special, len / best_special / 1e6, n_ids / best_special);
    n += snprintf(tab + n, sizeof tab - n, "| decode | %zu | %d | %.4f | %.2f | %.0f |\n", len, n_ids, best_dec,
                  len / best_dec / 1e6, n_ids / best_dec);
    printf("tokenizer %s (loaded in %.3f s), text: %s\n%s", tpath, t_load, source, tab);

    FILE *fo = fopen(out, "w");
    if (!fo) {
        fprintf(stderr, "bench_tokenizer: cannot write %s (run from the repository root)\n", out);
    } else {
        time_t now = time(NULL);
        char date[64];
        strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
        char cpu[256];
        cpu_name(cpu, sizeof cpu);
        fprintf(fo, "# Tokenizer benchmark (one thread)\n\n- date: %s\n- machine: %s\n"
                    "- tokenizer: %s (loaded in %.3f s)\n- text: %s, first %zu bytes; best of %d runs\n\n%s",
                date, cpu, tpath, t_load, source, len, reps, tab);
        fclose(fo);
        printf("wrote %s\n", out);
    }
    free(text);
    pz_tokenizer_free(t);
    return 0;
}
