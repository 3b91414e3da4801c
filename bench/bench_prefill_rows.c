// bench_prefill_rows.c — the batch-invariant prefill of one prompt through the CPU backend's two
// ways (backend.h rowwise_prefill): the small-M kernel in blocks of invariant_rows rows (the
// default), or the matmul library in fixed blocks of 64 rows with the last one padded (the
// engine's way before, and still on backends without rowwise_prefill). Both in one run,
// alternated, for prompts of several lengths: wall and process CPU milliseconds (the best of
// three per length). On a machine shared with other work the CPU column is the steadier one.
//
// usage: bench_prefill_rows [model] [threads] [rounds]
//        (model defaults to $PUZZLE_MODEL, loaded with bf16 weights; 2 threads; 2 rounds)
// Output: a markdown table on stdout.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common.h"
#include "engine.h"

static int rowwise;

static void set_way(pz_backend *b, void *ctx) {
    (void)ctx;
    b->rowwise_prefill = rowwise;
}

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : getenv("PUZZLE_MODEL");
    int threads = argc > 2 ? atoi(argv[2]) : 2, rounds = argc > 3 ? atoi(argv[3]) : 2;
    if (!path) {
        fprintf(stderr, "usage: bench_prefill_rows [model] [threads] [rounds]\n");
        return 2;
    }
    char err[PZ_ERRLEN];
    pz_model *m = pz_model_load(path, PZ_DT_BF16, err);
    if (!m) {
        fprintf(stderr, "bench_prefill_rows: %s\n", err);
        return 1;
    }
    static const int lens[] = {16, 26, 42, 64, 128, 256};
    enum { NL = sizeof lens / sizeof lens[0] };
    int32_t t[256];
    for (int i = 0; i < 256; i++) t[i] = (int32_t)(100 + (i * 37) % (m->cfg.vocab - 100));
    printf("| prefill products | round |");
    for (int l = 0; l < NL; l++) printf(" %d tok wall / cpu ms |", lens[l]);
    printf("\n|---|---|");
    for (int l = 0; l < NL; l++) printf("---|");
    printf("\n");
    int rc = 0;
    for (int r = 1; r <= rounds && !rc; r++)
        for (rowwise = 0; rowwise < 2; rowwise++) {
            pz_engine_params p = pz_engine_default_params();
            p.n_threads = threads;
            p.max_ctx = 512;
            p.batch_invariant = 1;
            p.on_backend = set_way;
            pz_engine *e = pz_engine_create(m, p, err);
            if (!e) {
                fprintf(stderr, "bench_prefill_rows: %s\n", err);
                rc = 1;
                break;
            }
            printf("| %s | %d |", rowwise ? "small-M kernel, 16-row blocks" : "library, 64-row padded blocks", r);
            for (int l = 0; l < NL && !rc; l++) {
                double wall = 1e9, cpu = 1e9;
                for (int k = 0; k < 3; k++) {
                    pz_engine_slot_reset(e, 0);
                    double w0 = pz_now(), c0 = cpu_now();
                    if (pz_engine_prefill(e, 0, t, lens[l], NULL, 0, err)) {
                        fprintf(stderr, "bench_prefill_rows: %s\n", err);
                        rc = 1;
                        break;
                    }
                    double dw = pz_now() - w0, dc = cpu_now() - c0;
                    if (dw < wall) wall = dw;
                    if (dc < cpu) cpu = dc;
                }
                printf(" %.0f / %.0f |", wall * 1e3, cpu * 1e3);
            }
            printf("\n");
            fflush(stdout);
            pz_engine_free(e);
        }
    pz_model_free(m);
    return rc;
}
