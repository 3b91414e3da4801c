// bench_batch_decode.c — time of one batched decode step of the engine
// against the number of sequences in the batch (the quantity continuous
// batching lives on: aggregate tokens/s = rows / step time), with and
// without batch_invariant. Bounds what `puzzle serve` can reach at N
// concurrent streams, apart from HTTP, sampling and prefill.
//
// usage: bench_batch_decode [model] [threads] [steps] [max_rows] [invariant] [kv] [prompt]
//        (model defaults to $PUZZLE_MODEL; threads 2; 16 steps per size;
//        rows 1, 2, 4, ... up to max_rows, default 64; invariant 1 or 0 for
//        one mode, default both (-1); kv: KV page type f32 (the engine's
//        default) or bf16 (`puzzle serve`'s default), or fp8; prompt: tokens
//        prefilled per sequence before the timed steps, default 64, up to 1024)
// Besides the wall time per step, the process CPU time per step ("cpu ms",
// all threads; with OMP_WAIT_POLICY=passive waiting threads sleep, so it
// is the work done): on a machine shared with other busy processes the wall
// time mostly measures the scheduler, the CPU time much less so.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "engine.h"
#include "model.h"

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : getenv("PUZZLE_MODEL");
    int threads = argc > 2 ? atoi(argv[2]) : 2, steps = argc > 3 ? atoi(argv[3]) : 16;
    int max_rows = argc > 4 ? atoi(argv[4]) : 64, only_inv = argc > 5 ? atoi(argv[5]) : -1;
    const char *kvs = argc > 6 ? argv[6] : "f32";
    int plen = argc > 7 ? atoi(argv[7]) : 64;
    pz_dt kvt = !strcmp(kvs, "f32") ? PZ_DT_F32 : !strcmp(kvs, "bf16") ? PZ_DT_BF16 : !strcmp(kvs, "fp8") ? PZ_DT_E4M3
                                                                                                     : PZ_DT_E5M2;
    if (!path || steps < 2 || max_rows < 1 || max_rows > 64 || kvt == PZ_DT_E5M2 || plen < 1 || plen > 1024) {
        fprintf(stderr, "usage: bench_batch_decode MODEL [threads] [steps >= 2] [max_rows <= 64] [invariant]"
                        " [kv f32|bf16|fp8] [prompt <= 1024]\n");
        return 2;
    }
    char err[PZ_ERRLEN];
    pz_model *m = pz_model_load(path, PZ_DT_BF16, err);
    if (!m) {
        fprintf(stderr, "bench_batch_decode: %s\n", err);
        return 1;
    }
    static const int sizes[] = {1, 2, 4, 8, 16, 32, 64};
    const int n_sizes = sizeof sizes / sizeof sizes[0], max_n = 64, ctx = plen + steps + 1;
    printf("KV %s, prompt %d tokens, %d threads\n", kvs, plen, threads);
    printf("| rows | invariant | step ms | cpu ms | tok/s | x 1 row |\n|---|---|---|---|---|---|\n");
    for (int inv = 1; inv >= 0; inv--) {
        if (only_inv >= 0 && inv != only_inv) continue;
        pz_engine_params p = pz_engine_default_params();
        p.n_threads = threads, p.n_slots = max_n, p.max_ctx = ctx, p.batch_invariant = inv, p.kv_type = kvt;
        pz_engine *e = pz_engine_create(m, p, err);
        if (!e) {
            fprintf(stderr, "bench_batch_decode: %s\n", err);
            return 1;
        }
        float *logits = malloc((size_t)max_n * m->cfg.vocab * sizeof *logits);
        int slots[64];
        int32_t toks[64], prompt[1024];
        for (int i = 0; i < plen; i++) prompt[i] = 1000 + 7 * (i % 64) + i / 64;
        double base = 0;
        for (int s = 0; s < n_sizes; s++) {
            int n = sizes[s];
            if (n > max_rows) break;
            for (int i = 0; i < n; i++) {
                slots[i] = i;
                toks[i] = 2000 + i;
                pz_engine_slot_reset(e, i);
                prompt[0] = 100 + i;  // distinct sequences
                if (pz_engine_prefill(e, i, prompt, plen, NULL, 0, err)) goto fail;
            }
            if (pz_engine_decode(e, slots, toks, n, logits, err)) goto fail;  // warm-up
            double t0 = pz_now(), c0 = cpu_now();
            for (int k = 0; k < steps - 1; k++)
                if (pz_engine_decode(e, slots, toks, n, logits, err)) goto fail;
            double ms = (pz_now() - t0) / (steps - 1) * 1e3, cms = (cpu_now() - c0) / (steps - 1) * 1e3;
            if (n == 1) base = n / ms;
            printf("| %d | %d | %.2f | %.2f | %.1f | %.2f |\n", n, inv, ms, cms, n / ms * 1e3, n / ms / base);
            fflush(stdout);
        }
        free(logits);
        pz_engine_free(e);
        continue;
    fail:
        fprintf(stderr, "bench_batch_decode: %s\n", err);
        return 1;
    }
    pz_model_free(m);
    return 0;
}
