// bench_fp8.c — the engine with FP8 (e4m3) weights (lm_head bf16, and lm_head
// e4m3 too) against bf16 weights, side by side in one run: for each repetition, each weight type in turn does a
// prefill of P tokens, batch-1 decode, and batch-16 decode (16 slots, each
// with a short prompt, decoding together), so a change of load from other
// processes hits both alike. Reports the best rate of each and the median
// of the per-repetition fp8/bf16 ratios. Writes a markdown table.
//
// usage: bench_fp8 [-r reps] [-n decode] [model] [threads] [prompt] [out.md]
//        (model defaults to $PUZZLE_MODEL; 5 reps, 32 decode steps, 2 threads,
//        prompt 256 tokens, results/fp8_speed_bench.md)
#include "common.h"
#include "engine.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH 16
#define NS 3  // bf16; fp8 with lm_head bf16; fp8 with lm_head fp8

typedef struct {
    const char *name;
    pz_dt wt;
    pz_model *m;
    pz_engine *e;
    double pf, d1, d16;           // best tokens/s
    double r_pf[64], r_d1[64], r_d16[64];  // per-repetition tokens/s
} side;


int main(int argc, char **argv) {
    if (!getenv("OMP_WAIT_POLICY")) {  // see bench_engine.c
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    int reps = 5, ndec = 32, ai = 1;
    for (; ai + 1 < argc && argv[ai][0] == '-'; ai += 2) {
        if (!strcmp(argv[ai], "-r")) reps = atoi(argv[ai + 1]);
        else if (!strcmp(argv[ai], "-n")) ndec = atoi(argv[ai + 1]);
    }
    const char *path = argc > ai ? argv[ai] : getenv("PUZZLE_MODEL");
    int nt = argc > ai + 1 ? atoi(argv[ai + 1]) : 2;
    int P = argc > ai + 2 ? atoi(argv[ai + 2]) : 256;
    const char *out = argc > ai + 3 ? argv[ai + 3] : "results/fp8_speed_bench.md";
    if (!path || reps < 1 || reps > 64 || ndec < 1 || P < 1) {
        fprintf(stderr, "usage: bench_fp8 [-r reps] [-n decode] [model] [threads] [prompt] [out.md]\n");
        return 2;
    }
    char err[PZ_ERRLEN];
    side s[NS] = {{.name = "bf16", .wt = PZ_DT_BF16},
                  {.name = "fp8 (e4m3; lm_head bf16)", .wt = PZ_DT_E4M3},
                  {.name = "fp8, lm_head fp8 (--fp8-head)", .wt = PZ_DT_E4M3}};
    const int short_prompt = 16;
    for (int i = 0; i < NS; i++) {
        if (!(s[i].m = pz_model_load(path, s[i].wt, err))) goto fail;
        if (i == 2 && pz_model_e4m3_head(s[i].m, err)) goto fail;
        pz_engine_params p = pz_engine_default_params();
        p.n_threads = nt;
        p.n_slots = BATCH;
        p.max_ctx = P + ndec + 8;
        p.max_batch = 512;
        p.prefix_cache = 0;
        if (!(s[i].e = pz_engine_create(s[i].m, p, err))) goto fail;
    }
    int V = s[0].m->cfg.vocab;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(P + ndec) * BATCH);
    float *lg = malloc(sizeof(float) * (size_t)V * BATCH);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < (P + ndec) * BATCH; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        tok[i] = (int32_t)(x % (uint64_t)V);
    }
    int slots[BATCH];
    for (int j = 0; j < BATCH; j++) slots[j] = j;
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < NS; i++) {
            pz_engine *e = s[i].e;
            for (int j = 0; j < BATCH; j++) pz_engine_slot_reset(e, j);
            double t0 = pz_now();
            if (pz_engine_prefill(e, 0, tok, P, lg, 0, err)) goto fail;
            double t1 = pz_now();
            for (int k = 0; k < ndec; k++)
                if (pz_engine_decode(e, slots, &tok[P + k], 1, lg, err)) goto fail;
            double t2 = pz_now();
            for (int j = 1; j < BATCH; j++)
                if (pz_engine_prefill(e, j, tok + (size_t)j * (P + ndec), short_prompt, lg, 0, err)) goto fail;
            pz_engine_slot_reset(e, 0);
            if (pz_engine_prefill(e, 0, tok, short_prompt, lg, 0, err)) goto fail;
            int32_t step[BATCH];
            double t3 = pz_now();
            for (int k = 0; k < ndec; k++) {
                for (int j = 0; j < BATCH; j++) step[j] = tok[(size_t)j * (P + ndec) + P + k];
                if (pz_engine_decode(e, slots, step, BATCH, lg, err)) goto fail;
            }
            double t4 = pz_now();
            s[i].r_pf[r] = P / (t1 - t0);
            s[i].r_d1[r] = ndec / (t2 - t1);
            s[i].r_d16[r] = (double)ndec * BATCH / (t4 - t3);
            if (s[i].r_pf[r] > s[i].pf) s[i].pf = s[i].r_pf[r];
            if (s[i].r_d1[r] > s[i].d1) s[i].d1 = s[i].r_d1[r];
            if (s[i].r_d16[r] > s[i].d16) s[i].d16 = s[i].r_d16[r];
        }
        fprintf(stderr, "rep %d/%d: decode-1 bf16 %.1f fp8 %.1f fp8+head %.1f tok/s\n", r + 1, reps, s[0].r_d1[r],
                s[1].r_d1[r], s[2].r_d1[r]);
    }
    char date[64], host[128] = "?";
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    gethostname(host, sizeof host);
    char tbl[8192];
    int n = snprintf(tbl, sizeof tbl,
                     "| weights | weight MB | prefill %d tok/s | decode batch 1 tok/s | decode batch %d tok/s |\n"
                     "|---|---:|---:|---:|---:|\n", P, BATCH);
    for (int i = 0; i < NS; i++)
        n += snprintf(tbl + n, sizeof tbl - (size_t)n, "| %s | %.1f | %.1f | %.1f | %.1f |\n", s[i].name,
                      pz_model_weight_bytes(s[i].m) / 1e6, s[i].pf, s[i].d1, s[i].d16);
    for (int i = 1; i < NS; i++) {
        double q_pf[64], q_d1[64], q_d16[64];
        for (int r = 0; r < reps; r++) {
            q_pf[r] = s[i].r_pf[r] / s[0].r_pf[r];
            q_d1[r] = s[i].r_d1[r] / s[0].r_d1[r];
            q_d16[r] = s[i].r_d16[r] / s[0].r_d16[r];
        }
        n += snprintf(tbl + n, sizeof tbl - (size_t)n, "| %s / bf16 (median of %d paired runs) | %.2f | %.2f | %.2f | %.2f |\n",
                      s[i].name, reps, pz_model_weight_bytes(s[i].m) / (double)pz_model_weight_bytes(s[0].m),
                      pz_median(q_pf, reps), pz_median(q_d1, reps), pz_median(q_d16, reps));
    }
    printf("%s", tbl);
    FILE *f = fopen(out, "w");
    if (f) {
        fprintf(f, "# FP8 (e4m3) weights vs bf16 weights, CPU engine\n\n%s, %s, %d threads, %s; model %s; "
                   "%d decode steps, %d repetitions, the two weight types alternating in each.\n\n%s\n"
                   "Reproduce: `build/bench/bench_fp8 -r %d -n %d %s %d %d %s`\n",
                date, host, nt, pz_engine_default_params().backend == PZ_BACKEND_CPU ? "CPU backend" : "?", path,
                ndec, reps, tbl, reps, ndec, path, nt, P, out);
        fclose(f);
    }
    for (int i = 0; i < NS; i++) pz_engine_free(s[i].e), pz_model_free(s[i].m);
    free(tok);
    free(lg);
    return 0;
fail:
    fprintf(stderr, "bench_fp8: %s\n", err);
    return 1;
}
