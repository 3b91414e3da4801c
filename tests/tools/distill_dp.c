// distill_dp — a small global-distillation run for the data-parallel test
// (tests/test_distill_mpi.sh): the child of testmodel preset 0 against a
// homogeneous parent of its shape, random tokens, 6 steps of a global batch
// of 4 micro-batches x 2 windows x 16 tokens. Under mpirun the micro-batches
// are dealt to the ranks through the MPI communicator; alone it runs them
// all in one process. Rank 0 writes the trained weights and the loss curve.
//
//   distill_dp OUT.bin WORKDIR [ACCUM] train (ACCUM micro-batches per step
//                                     instead of 4), write OUT.bin
//   distill_dp --compare A.bin B.bin  max |ΔA − ΔB| / max |ΔA| of the weight
//                                     updates and the loss-curve difference;
//                                     exit 1 above the tolerances
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "distill.h"
#include "testmodel.h"
#include "testutil.h"
#ifdef PZ_HAVE_MPI
#include "comm_mpi.h"
#endif

#define STEPS 6
// Tolerances (see tests/test_distill_mpi.sh): the ranks' gradients are
// summed in another order than one process's, in fp32.
#define TOL_UPDATE 1e-3  // max |ΔA − ΔB| / max |ΔA| over all weights
#define TOL_LOSS 1e-5    // max relative difference of the per-step losses

static int compare(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    if (!fa || !fb) return fprintf(stderr, "cannot open %s or %s\n", a, b), 1;
    long n[2];
    if (fread(&n[0], sizeof(long), 1, fa) != 1 || fread(&n[1], sizeof(long), 1, fb) != 1 || n[0] != n[1])
        return fprintf(stderr, "different sizes\n"), 1;
    double lo[2][2 * STEPS];
    if (fread(lo[0], sizeof(double), 2 * STEPS, fa) != 2 * STEPS || fread(lo[1], sizeof(double), 2 * STEPS, fb) != 2 * STEPS)
        return fprintf(stderr, "truncated\n"), 1;
    double worst_loss = 0;
    for (int i = 0; i < 2 * STEPS; i++) {
        double d = fabs(lo[0][i] - lo[1][i]) / fabs(lo[0][i]);
        if (d > worst_loss) worst_loss = d;
    }
    double md = 0, mu = 0, sum_d = 0;
    for (long i = 0; i < n[0]; i++) {
        float va[2], vb[2];  // (initial, trained) of A and of B
        if (fread(va, sizeof(float), 2, fa) != 2 || fread(vb, sizeof(float), 2, fb) != 2)
            return fprintf(stderr, "truncated\n"), 1;
        double ua = (double)va[1] - va[0], d = fabs((double)va[1] - vb[1]);
        if (fabs(ua) > mu) mu = fabs(ua);
        if (d > md) md = d;
        sum_d += d;
    }
    fclose(fa), fclose(fb);
    double rel = mu > 0 ? md / mu : INFINITY;
    printf("losses: max relative difference %.3g (tolerance %g); weights: max |dA - dB| %.3g, max |dA| %.3g, "
           "ratio %.3g (tolerance %g), mean |A - B| %.3g\n",
           worst_loss, TOL_LOSS, md, mu, rel, TOL_UPDATE, sum_d / (double)n[0]);
    return worst_loss <= TOL_LOSS && rel <= TOL_UPDATE ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--compare")) return compare(argv[2], argv[3]);
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: distill_dp OUT.bin WORKDIR [ACCUM] | distill_dp --compare A.bin B.bin\n");
        return 2;
    }
    char err[PZ_ERRLEN];
    pz_backend *be = pz_backend_create(PZ_BACKEND_CPU, 1, err);
    pz_comm *comm = NULL;
    if (be && getenv("OMPI_COMM_WORLD_SIZE")) {
#ifdef PZ_HAVE_MPI
        comm = pz_comm_mpi_create(be, err);
#else
        snprintf(err, sizeof err, "started by mpirun, but this build has no MPI communicator");
#endif
    } else if (be) {
        comm = pz_comm_single_create(be, err);
    }
    if (!comm) {
        fprintf(stderr, "distill_dp: %s\n", err);
        return 1;
    }
    pz_config cc, pc;
    pz_testmodel_config(&cc, 0);
    pc = cc;
    for (int l = 0; l < pc.n_layer; l++)
        pc.layers[l] = (pz_layer_spec){PZ_ATTN_GQA, pc.n_head, PZ_FFN_SWIGLU, 128};
    pz_model *teacher = pz_testmodel_random(&pc, PZ_DT_F32, 11, err);
    pz_model *child = teacher ? pz_testmodel_random(&cc, PZ_DT_F32, 12, err) : NULL;
    pz_model *init = child ? pz_testmodel_random(&cc, PZ_DT_F32, 12, err) : NULL;
    if (!init) {
        fprintf(stderr, "distill_dp: %s\n", err);
        return 1;
    }
    const long n_tok = 64 * 16;
    int32_t *tok = malloc(sizeof(int32_t) * n_tok);
    uint64_t s = 77;
    for (long i = 0; i < n_tok; i++) tok[i] = (int32_t)(pz_test_rand_u64(&s) % (uint64_t)cc.vocab);
    pz_distill_params p = pz_distill_default_params();
    p.seq = 16, p.batch = 2, p.accum = 4, p.tokens = STEPS * 16L * 2 * 4;
    if (argc == 4) p.accum = atoi(argv[3]), p.tokens = STEPS * 16L * 2 * p.accum;  // another global batch
    p.lr = 3e-3f, p.warmup = 1, p.checkpoint_every = 0, p.prec = PZ_DT_F32;
    pz_distill_result r;
    if (pz_distill_run(teacher, child, tok, n_tok, argv[2], &p, be, comm, &r, err)) {
        fprintf(stderr, "distill_dp (rank %d of %d): %s\n", comm->rank, comm->size, err);
        return 1;
    }
    int rc = 0;
    if (comm->rank == 0) {
        FILE *f = fopen(argv[1], "wb");
        long n = (long)(child->arena_bytes / sizeof(float));
        const float *a = child->arena, *b = init->arena;
        int bad = !f || fwrite(&n, sizeof n, 1, f) != 1 || fwrite(r.curve_cos, sizeof(double), STEPS, f) != STEPS ||
                  fwrite(r.curve_kl, sizeof(double), STEPS, f) != STEPS;
        // Pairs (initial, trained) so the comparison sees the updates.
        for (long i = 0; i < n && !bad; i++) {
            float v[2] = {b[i], a[i]};
            bad = fwrite(v, sizeof(float), 2, f) != 2;
        }
        if (!f || fclose(f) || bad) {
            fprintf(stderr, "distill_dp: cannot write %s\n", argv[1]);
            rc = 1;
        }
        printf("distill_dp: %d rank(s), %ld steps, loss %.5f -> %.5f\n", comm->size, r.steps,
               r.curve_cos[0] + r.curve_kl[0], r.curve_cos[STEPS - 1] + r.curve_kl[STEPS - 1]);
    }
    pz_distill_result_free(&r);
    pz_model_free(teacher), pz_model_free(child), pz_model_free(init);
    free(tok);
    pz_comm_free(comm);
    pz_backend_free(be);
    return rc;
}
