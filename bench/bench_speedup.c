// bench_speedup.c — decode (and prefill) speed of several models side by side
// on the local CPU: a parent and its children (Hugging Face DeciLM
// directories written by `puzzle realize`, or GGUF files). The models take
// turns within every round (the first model of a round rotates), so load
// from other processes hits all of them alike; each speed-up is the median
// over rounds of (model's rate in round r) / (parent's rate in round r),
// which cancels drift between rounds.
//
// Per round and model: reset the KV cache, prefill C fixed random token ids
// (the same for every model), then time N single-sequence decode steps
// feeding fixed random ids (which token is fed does not matter for speed).
//
// usage: bench_speedup [--threads T] [--ctx C] [--tokens N] [--rounds R]
//                      [--dtype f32|bf16] [--tsv FILE] PARENT CHILD...
#include "common.h"
#include "engine.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *path;
    pz_config cfg;
    pz_model *m;
    pz_engine *e;
    size_t wbytes;
    double *dec, *pre;  // tok/s per round
} entry;

static int T = 2, C = 512, N = 64, R = 5;
static pz_dt WT = PZ_DT_F32;
static int32_t *tok;  // C + N ids
static float *logits;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double median(const double *v, int n, double *mn, double *mx) {
    double *s = malloc(sizeof *s * (size_t)n);
    memcpy(s, v, sizeof *s * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_d);
    double md = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    if (mn) *mn = s[0];
    if (mx) *mx = s[n - 1];
    free(s);
    return md;
}
static double median_ratio(const double *a, const double *b, int n) {
    double *r = malloc(sizeof *r * (size_t)n);
    for (int i = 0; i < n; i++) r[i] = a[i] / b[i];
    double md = median(r, n, NULL, NULL);
    free(r);
    return md;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_speedup [--threads T] [--ctx C] [--tokens N] [--rounds R] [--dtype f32|bf16]\n"
            "                     [--tsv FILE] PARENT CHILD...\n"
            "  PARENT, CHILD: GGUF files or Hugging Face (DeciLM/Llama) directories\n"
            "  --threads T  engine threads (default 2)\n"
            "  --ctx C      tokens prefilled into the KV cache before decode timing (default 512)\n"
            "  --tokens N   decode steps timed per round (default 64)\n"
            "  --rounds R   rounds; models take turns within each round (default 5)\n"
            "  --dtype D    weights in memory: f32 or bf16 (default f32)\n"
            "  --tsv FILE   also write the results as TSV\n");
}

static int load(entry *x, char *err) {
    x->m = pz_model_load(x->path, WT, err);
    if (!x->m) return -1;
    x->wbytes = pz_model_weight_bytes(x->m);
    pz_engine_params p = pz_engine_default_params();
    p.n_threads = T;
    p.n_slots = 1;
    p.max_ctx = C + N + 8;
    p.max_batch = 512;
    x->e = pz_engine_create(x->m, p, err);
    if (!x->e) {
        pz_model_free(x->m);
        x->m = NULL;
        return -1;
    }
    // Warm-up (first touch of the KV cache and scratch, library primitives).
    int slot = 0, w = C < 16 ? C : 16;
    if (pz_engine_prefill(x->e, 0, tok, w, logits, 0, err) ||
        pz_engine_decode(x->e, &slot, &tok[C], 1, logits, err))
        return -1;
    return 0;
}
static void unload(entry *x) {
    if (x->e) pz_engine_free(x->e);
    if (x->m) pz_model_free(x->m);
    x->e = NULL, x->m = NULL;
}

static int measure(entry *x, int r, char *err) {
    pz_engine_slot_reset(x->e, 0);
    double a = pz_now();
    if (pz_engine_prefill(x->e, 0, tok, C, logits, 0, err)) return -1;
    double b = pz_now();
    int slot = 0;
    for (int i = 0; i < N; i++)
        if (pz_engine_decode(x->e, &slot, &tok[C + i], 1, logits, err)) return -1;
    double c = pz_now();
    x->pre[r] = C / (b - a);
    x->dec[r] = N / (c - b);
    return 0;
}

int main(int argc, char **argv) {
    // libgomp's default spinning at each barrier starves the thread it waits
    // for on shared cores; the policy is read when libgomp loads, so set it
    // and start again (as bench_engine does).
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    const char *tsv = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help")) return usage(stdout), 0;
        if (i + 1 >= argc) return fprintf(stderr, "bench_speedup: %s needs a value\n", o), usage(stderr), 2;
        const char *v = argv[++i];
        if (!strcmp(o, "--threads")) T = atoi(v);
        else if (!strcmp(o, "--ctx")) C = atoi(v);
        else if (!strcmp(o, "--tokens")) N = atoi(v);
        else if (!strcmp(o, "--rounds")) R = atoi(v);
        else if (!strcmp(o, "--tsv")) tsv = v;
        else if (!strcmp(o, "--dtype")) {
            if (!strcmp(v, "f32")) WT = PZ_DT_F32;
            else if (!strcmp(v, "bf16")) WT = PZ_DT_BF16;
            else return fprintf(stderr, "bench_speedup: --dtype must be f32 or bf16\n"), 2;
        } else return fprintf(stderr, "bench_speedup: unknown option %s\n", o), usage(stderr), 2;
    }
    if (T < 1 || C < 1 || N < 1 || R < 1)
        return fprintf(stderr, "bench_speedup: --threads, --ctx, --tokens and --rounds must be >= 1\n"), 2;
    int M = argc - i;
    if (M < 1) return usage(stderr), 2;
    entry *ms = calloc((size_t)M, sizeof *ms);
    char err[PZ_ERRLEN];
    int min_vocab = 0, max_vocab = 0;
    double est = 0;
    for (int k = 0; k < M; k++) {
        ms[k].path = argv[i + k];
        if (pz_model_load_config(ms[k].path, &ms[k].cfg, err))
            return fprintf(stderr, "bench_speedup: cannot load %s: %s\n", ms[k].path, err), 1;
        int v = ms[k].cfg.vocab;
        if (!k || v < min_vocab) min_vocab = v;
        if (v > max_vocab) max_vocab = v;
        est += (double)pz_config_n_params(&ms[k].cfg) * (WT == PZ_DT_BF16 ? 2 : 4);
        ms[k].dec = calloc((size_t)R, sizeof(double));
        ms[k].pre = calloc((size_t)R, sizeof(double));
    }
    // Fixed ids, the same for every model, valid in the smallest vocabulary.
    tok = malloc(sizeof *tok * (size_t)(C + N));
    uint64_t s = 88172645463325252ULL;
    for (int k = 0; k < C + N; k++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        tok[k] = (int32_t)(s % (uint64_t)min_vocab);
    }
    logits = malloc(sizeof *logits * (size_t)max_vocab);

    double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGE_SIZE);
    int one_at_a_time = phys > 0 && est > 0.5 * phys;
    if (one_at_a_time)
        fprintf(stderr, "bench_speedup: warning: weights total %.2f GB, more than half of physical memory "
                        "(%.2f GB); loading one model at a time in every round\n", est * 1e-9, phys * 1e-9);
    else
        for (int k = 0; k < M; k++) {
            double t0 = pz_now();
            if (load(&ms[k], err))
                return fprintf(stderr, "bench_speedup: cannot load %s: %s\n", ms[k].path, err), 1;
            fprintf(stderr, "loaded %s (%.1f MB, %.1f s)\n", ms[k].path, ms[k].wbytes * 1e-6, pz_now() - t0);
        }
    fprintf(stderr, "threads %d, ctx %d, decode tokens %d, rounds %d, dtype %s, OMP_WAIT_POLICY=%s\n", T, C, N, R,
            WT == PZ_DT_BF16 ? "bf16" : "f32", getenv("OMP_WAIT_POLICY"));

    double t_start = pz_now();
    for (int r = 0; r < R; r++) {
        fprintf(stderr, "round %d/%d:", r + 1, R);
        for (int j = 0; j < M; j++) {
            int k = (r + j) % M;  // rotate the starting model
            if (one_at_a_time && load(&ms[k], err))
                return fprintf(stderr, "\nbench_speedup: cannot load %s: %s\n", ms[k].path, err), 1;
            if (measure(&ms[k], r, err))
                return fprintf(stderr, "\nbench_speedup: %s: %s\n", ms[k].path, err), 1;
            if (one_at_a_time) unload(&ms[k]);
            fprintf(stderr, " [%d] %.1f/%.1f", k, ms[k].dec[r], ms[k].pre[r]);
        }
        fprintf(stderr, "  (decode/prefill tok/s)\n");
    }
    fprintf(stderr, "timed rounds took %.1f s\n", pz_now() - t_start);

    printf("| model | params M | weights MB | decode tok/s (median [min–max]) | decode speed-up | prefill tok/s | "
           "prefill speed-up |\n|---|---|---|---|---|---|---|\n");
    FILE *f = NULL;
    if (tsv) {
        f = fopen(tsv, "w");
        if (!f) fprintf(stderr, "bench_speedup: cannot write %s\n", tsv);
        else fprintf(f, "model\tparams\tweight_bytes\tdecode_tok_s\tdecode_speedup\tprefill_tok_s\tprefill_speedup\t"
                        "decode_min\tdecode_max\n");
    }
    for (int k = 0; k < M; k++) {
        entry *x = &ms[k];
        double dmn, dmx, dmd = median(x->dec, R, &dmn, &dmx), pmd = median(x->pre, R, NULL, NULL);
        double dsp = median_ratio(x->dec, ms[0].dec, R), psp = median_ratio(x->pre, ms[0].pre, R);
        size_t np = pz_config_n_params(&x->cfg);
        printf("| %s%s | %.1f | %.1f | %.1f [%.1f–%.1f] | %.3f | %.1f | %.3f |\n", x->path, k ? "" : " (parent)",
               np * 1e-6, x->wbytes * 1e-6, dmd, dmn, dmx, dsp, pmd, psp);
        if (f)
            fprintf(f, "%s\t%zu\t%zu\t%.3f\t%.4f\t%.3f\t%.4f\t%.3f\t%.3f\n", x->path, np, x->wbytes, dmd, dsp, pmd,
                    psp, dmn, dmx);
    }
    if (f && fclose(f)) fprintf(stderr, "bench_speedup: error writing %s\n", tsv);
    for (int k = 0; k < M; k++) {
        unload(&ms[k]);
        free(ms[k].dec), free(ms[k].pre);
    }
    free(ms), free(tok), free(logits);
    return 0;
}
