// tp_engine.c — tensor-parallel engine check, run by tests/test_tp_mpi.sh
// under `mpirun -np N`: every rank builds the same random heterogeneous
// models (tests/testmodel.h variants 0 and 1, and variant 1 with a SwiGLU
// of 8 channels, which leaves rank 0 of 2 none), an engine over its shard
// (pz_engine_params.comm = MPI_COMM_WORLD), and rank 0 drives a fixed
// script: prefills with all logits, batched decodes of two and three
// slots, a fork, a reset, a prefix attach and a batched prefill of three
// slots (pz_engine_prefill_many). Rank 0 runs the same script
// on an engine of the whole model (no comm) and compares the logits.
// Those three models are built in memory on every rank (the engine copies
// its slices out); with DIR, rank 0 also writes them as Hugging Face
// directories (and variant 0 as GGUF, Q/K rows permuted), and every rank
// loads only its shard from the file (pz_model_load_shard), which must be
// smaller than the whole model.
//
// fp32 weights, so the only differences are the order of the fp32 sums
// (the all-reduce adds the ranks' partial products); tolerance:
// max |TP - TP1| <= 2e-5 * max(1, max |TP1|) per call.
//
//   tp_engine [--perturb] [DIR]   exit 0: every call within the tolerance;
//                           1: some call beyond it; 2: a failure.
// --perturb: rank 1 adds 0.05 to every weight of layer 0's down_proj
// before building its shard, so the sum it contributes is wrong: the
// comparison must then fail (the test checks it does).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "engine.h"
#include "testmodel.h"
#ifdef PZ_HAVE_MPI
#include "comm_mpi.h"
#endif

#define TOL 2e-5
#define MAX_CTX 64

static double worst;  // largest normalized difference over every call

static void compare(const char *what, const float *a, const float *ref, size_t n) {
    double d = 0, mx = 1;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - ref[i]);
        if (x > d || isnan(x)) d = isnan(x) ? INFINITY : x;
        if (fabs(ref[i]) > mx) mx = fabs(ref[i]);
    }
    double r = d / mx;
    if (r > worst) worst = r;
    printf("  %-34s max|diff| %.3g (normalized %.3g)%s\n", what, d, r, r > TOL ? "  BEYOND TOLERANCE" : "");
}

// The script, on engine e (and on ref when non-NULL, comparing).
static int script(pz_engine *e, pz_engine *ref, int vocab, uint64_t seed, char *err) {
    int32_t toks[40];
    for (int i = 0; i < 40; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        toks[i] = (int32_t)((seed >> 33) % (uint64_t)vocab);
    }
    float *la = malloc(sizeof(float) * 40 * (size_t)vocab), *lb = malloc(sizeof(float) * 40 * (size_t)vocab);
    if (!la || !lb) {
        free(la), free(lb);
        snprintf(err, PZ_ERRLEN, "out of memory");
        return -1;
    }
    int rc = -1;
#define BOTH(what, call_e, call_r, nfl)                                          \
    do {                                                                         \
        float *logits = la;                                                      \
        if ((call_e) != 0) goto done;                                            \
        logits = lb;                                                             \
        if ((call_r) != 0) goto done;                                            \
        compare(what, la, lb, (size_t)(nfl) * vocab);                            \
    } while (0)
    // Slot 0: 37 tokens in one prefill (a full page and more), every row's logits.
    BOTH("prefill slot 0 (37 tokens, all rows)", pz_engine_prefill(e, 0, toks, 37, logits, 1, err),
         pz_engine_prefill(ref, 0, toks, 37, logits, 1, err), 37);
    // Slot 1: 5 tokens, last row.
    BOTH("prefill slot 1 (5 tokens)", pz_engine_prefill(e, 1, toks + 30, 5, logits, 0, err),
         pz_engine_prefill(ref, 1, toks + 30, 5, logits, 0, err), 1);
    int slots2[2] = {0, 1}, slots3[3] = {0, 1, 2};
    for (int s = 0; s < 4; s++) {
        int32_t t[2] = {toks[s], toks[s + 7]};
        char what[64];
        snprintf(what, sizeof what, "decode step %d (slots 0, 1)", s + 1);
        BOTH(what, pz_engine_decode(e, slots2, t, 2, logits, err), pz_engine_decode(ref, slots2, t, 2, logits, err), 2);
    }
    // Slot 2 continues slot 0 (shares its full pages, copies the partial one).
    if (pz_engine_slot_fork(e, 2, 0, err) || pz_engine_slot_fork(ref, 2, 0, err)) goto done;
    for (int s = 0; s < 3; s++) {
        int32_t t[3] = {toks[s + 1], toks[s + 2], toks[s + 3]};
        char what[64];
        snprintf(what, sizeof what, "decode step %d (slots 0, 1, 2)", s + 1);
        BOTH(what, pz_engine_decode(e, slots3, t, 3, logits, err), pz_engine_decode(ref, slots3, t, 3, logits, err), 3);
    }
    // Slot 1 is reset and starts over on slot 0's prompt: its first 32
    // tokens come from the prefix cache.
    pz_engine_slot_reset(e, 1);
    pz_engine_slot_reset(ref, 1);
    int ka = pz_engine_prefix_attach(e, 1, toks, 37), kb = pz_engine_prefix_attach(ref, 1, toks, 37);
    if (ka != kb || ka != 32) {
        snprintf(err, PZ_ERRLEN, "prefix attach gave %d and %d tokens, expected 32", ka, kb);
        goto done;
    }
    BOTH("prefill after a prefix hit", pz_engine_prefill(e, 1, toks + ka, 37 - ka, logits, 0, err),
         pz_engine_prefill(ref, 1, toks + ka, 37 - ka, logits, 0, err), 1);
    // One pass prefills more of slots 0, 1 and 2 (3, 2 and 4 tokens), each row's last logits.
    int nmany[3] = {3, 2, 4};
    BOTH("batched prefill of slots 0, 1, 2", pz_engine_prefill_many(e, 3, slots3, toks + 10, nmany, logits, NULL, err),
         pz_engine_prefill_many(ref, 3, slots3, toks + 10, nmany, logits, NULL, err), 3);
    rc = 0;
done:
#undef BOTH
    free(la), free(lb);
    return rc;
}

int main(int argc, char **argv) {
    int perturb = 0;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--perturb")) perturb = 1;
        else dir = argv[i];
    }
    char err[PZ_ERRLEN] = "";
    pz_backend *be = pz_backend_create(PZ_BACKEND_CPU, 0, err);
    pz_comm *comm = NULL;
    if (!be) goto fail;
#ifdef PZ_HAVE_MPI
    if (pz_comm_mpi_launched() && !(comm = pz_comm_mpi_create(be, err))) goto fail;
#endif
    if (!comm && !(comm = pz_comm_single_create(be, err))) goto fail;
    int rank = comm->rank;
    if (rank == 0) printf("tp_engine: %d rank(s)%s\n", comm->size, perturb ? ", rank 1 perturbed" : "");
    // Cases 0-2: in memory; 3-5: the same models from HF directories; 6: model 0 from GGUF.
    int n_cases = dir ? 7 : 3;
    for (int cs = 0; cs < n_cases; cs++) {
        int k = cs < 6 ? cs % 3 : 0;
        const char *src = cs < 3 ? "memory" : cs < 6 ? "hf" : "gguf";
        pz_config c;
        pz_testmodel_config(&c, k == 0 ? 0 : 1);
        if (k == 2) c.layers[4].n_ff = 8;  // one unit of channels: rank 0 of 2 holds none
        pz_model *m = pz_testmodel_random(&c, PZ_DT_F32, 1000 + (uint64_t)k, err), *whole = NULL;
        if (!m) goto fail;
        if (cs >= 3) {
            char path[1024];
            snprintf(path, sizeof path, "%s/model%d%s", dir, k, cs < 6 ? "" : ".gguf");
            int rc = 0;
            if (rank == 0) rc = cs < 6 ? pz_model_save_hf(m, path, err) : pz_model_save_gguf(m, NULL, path, err);
            pz_model_free(m);
            m = NULL;
            if (rc || comm->barrier(comm, err)) goto fail;
            if (!(m = pz_model_load_shard(path, PZ_DT_F32, comm->size, rank, PZ_ENGINE_TP_ALIGN, err))) goto fail;
            if (rank == 0) {
                if (!(whole = pz_model_load(path, PZ_DT_F32, err))) {
                    pz_model_free(m);
                    goto fail;
                }
                size_t sb = pz_model_weight_bytes(m), wb = pz_model_weight_bytes(whole);
                printf("%s shard of rank 0: %zu of the whole model's %zu weight bytes\n", src, sb, wb);
                if (comm->size > 1 && !(sb < wb)) {
                    snprintf(err, PZ_ERRLEN, "the shard is not smaller than the whole model");
                    pz_model_free(m), pz_model_free(whole);
                    goto fail;
                }
            }
        }
        if (perturb && rank == 1 && cs < 3) {
            pz_mat *d = &m->layers[0].w_down;
            for (size_t i = 0; i < (size_t)d->rows * d->cols; i++) ((float *)d->data)[i] += 0.05f;
        }
        pz_engine_params p = pz_engine_default_params();
        p.n_slots = 3;
        p.max_ctx = MAX_CTX;
        p.max_batch = 16;  // the 37-token prefill runs in three chunks
        p.comm = comm;
        pz_engine *e = pz_engine_create(m, p, err), *ref = NULL;
        if (!e) {
            pz_model_free(m), pz_model_free(whole);
            goto fail;
        }
        int rc;
        if (rank == 0) {
            printf("model %d (variant %d%s) from %s: %d layers, %d heads\n", k, k == 0 ? 0 : 1,
                   k == 2 ? ", layer 4 swiglu 8" : "", src, c.n_layer, c.n_head);
            p.comm = NULL;
            p.n_threads = be->n_threads;
            if (!(ref = pz_engine_create(whole ? whole : m, p, err))) rc = -1;
            else rc = script(e, ref, c.vocab, 77 + (uint64_t)k, err);
        } else {
            rc = pz_engine_follow(e, err);
        }
        pz_engine_free(ref);
        pz_engine_free(e);  // rank 0: the others leave pz_engine_follow
        pz_model_free(m);
        pz_model_free(whole);
        if (rc) goto fail;
    }
    int beyond = worst > TOL;
    if (rank == 0) printf("worst normalized difference %.3g (tolerance %.1g): %s\n", worst, TOL, beyond ? "FAIL" : "ok");
    pz_comm_free(comm);
    pz_backend_free(be);
    return beyond ? 1 : 0;
fail:
    fprintf(stderr, "tp_engine: %s\n", err);
    pz_comm_free(comm);
    pz_backend_free(be);
    return 2;
}
