// matmul.c — see matmul.h: the small-M dispatch and the bf16-weight choice
// on top of gemm.h. W[N,K] is B read transposed (tb), so no weight copy or
// transpose is made.
#include "matmul.h"
#include "gemv.h"
#include "kerr.h"

#include <stdlib.h>

struct pz_cpu_mm {
    pz_cpu_gm *g;      // M > PZ_GEMV_MAX_M
    int n_threads;
    float *xperm;      // permuted activations for the small-M bf16 kernel, grown on demand
    size_t xperm_cap;  // floats
};

pz_cpu_mm *pz_cpu_matmul_create(int n_threads, char *err) {
    pz_cpu_mm *mm = calloc(1, sizeof *mm);
    if (!mm) {
        pz_kerr(err, "matmul: out of memory");
        return NULL;
    }
    if (!(mm->g = pz_cpu_gemm_create(n_threads, err))) {
        free(mm);
        return NULL;
    }
    mm->n_threads = pz_cpu_gemm_threads(mm->g);
    return mm;
}

void pz_cpu_matmul_free(pz_cpu_mm *mm) {
    if (!mm) return;
    pz_cpu_gemm_free(mm->g);
    free(mm->xperm);
    free(mm);
}

pz_cpu_gm *pz_cpu_matmul_gemm(pz_cpu_mm *mm) { return mm->g; }

int pz_cpu_matmul_bf16_rounds_activations(void) { return pz_cpu_gemm_bf16_native(); }

static int bad_shape(int M, int N, int K, int ldx, int ldy, char *err) {
    if (K > 0 && ldx >= K && ldy >= N) return 0;
    return pz_kerr(err, "matmul: bad shape M=%d N=%d K=%d ldx=%d ldy=%d", M, N, K, ldx, ldy);
}

int pz_cpu_matmul_lib(pz_cpu_mm *mm, float *y, int ldy, const float *x, int ldx, const void *w,
                      pz_dt wt, int M, int N, int K, int accumulate, char *err) {
    if (M <= 0 || N <= 0) return 0;
    if (bad_shape(M, N, K, ldx, ldy, err)) return -1;
    // bf16 weights: a bf16 product where the library has one (activations
    // rounded), else an exact fp32 product of the widened weights.
    pz_dt prec = wt == PZ_DT_BF16 && pz_cpu_gemm_bf16_native() ? PZ_DT_BF16 : PZ_DT_F32;
    return pz_cpu_gemm_ex(mm->g, 0, 1, M, N, K, x, ldx, w, wt, K, y, ldy, accumulate, prec, err);
}

int pz_cpu_matmul(pz_cpu_mm *mm, float *y, int ldy, const float *x, int ldx, const void *w,
                  pz_dt wt, int M, int N, int K, int accumulate, char *err) {
    if (M > PZ_GEMV_MAX_M) return pz_cpu_matmul_lib(mm, y, ldy, x, ldx, w, wt, M, N, K, accumulate, err);
    if (M <= 0 || N <= 0) return 0;
    if (bad_shape(M, N, K, ldx, ldy, err)) return -1;
    float *scratch = NULL;
    if (wt == PZ_DT_BF16) {
        size_t need = pz_cpu_gemv_scratch_floats(M, K);
        if (need > mm->xperm_cap) {  // grows to the largest shape once, then never again
            float *p = aligned_alloc(64, (need * 4 + 63) / 64 * 64);
            if (p) {
                free(mm->xperm);
                mm->xperm = p;
                mm->xperm_cap = need;
            }
        }
        if (need <= mm->xperm_cap) scratch = mm->xperm;
    }
    pz_cpu_gemv(y, ldy, x, ldx, w, wt, M, N, K, accumulate, mm->n_threads, scratch);
    return 0;
}
