// matmul.c — see matmul.h: the small-M dispatch and the bf16-weight choice
// on top of gemm.h. W[N,K] is B read transposed (tb), so no weight copy or
// transpose is made.
#include "matmul.h"
#include "gemv.h"
#include "kerr.h"
#include "fp8.h"

#include <omp.h>
#include <stdlib.h>

struct pz_cpu_mm {
    pz_cpu_gm *g;      // M > PZ_GEMV_MAX_M
    int n_threads;
    float *xperm;      // the small-M kernels' scratch (bf16: permuted x; e4m3: x * 2^64), grown on demand
    size_t xperm_cap;  // floats
    float *wtile;      // e4m3 weights widened for the library, one tile at a time
    size_t wtile_cap;  // floats
    float *xq;         // activations rounded to e4m3 values (activation-quantized mode)
    size_t xq_cap;     // floats
};

// p (capacity *cap floats) grown to at least n floats; grows to the largest
// shape once, then never again. NULL when out of memory.
static float *grow(float **p, size_t *cap, size_t n) {
    if (n > *cap) {
        float *q = aligned_alloc(64, (n * 4 + 63) / 64 * 64);
        if (!q) return NULL;
        free(*p);
        *p = q;
        *cap = n;
    }
    return *p;
}

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
    free(mm->wtile);
    free(mm->xq);
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

// Up to this M the e4m3 product stays in the register-widening kernel (one
// pass over the weights, tiles of rows) rather than widening tiles to fp32
// for the library: at 32 x 1536 x 576 the kernel ran 53.9 GFLOP/s, the
// library path 42.9 (2 threads, shared machine; results/fp8_speed.md).
#define PZ_GEMV_E4M3_MAX_M PZ_GEMV_MAX_M

// Rows of the widened tile: ~4 MiB of fp32, at least 16 rows.
#define E4M3_TILE_FLOATS ((size_t)1 << 20)

int pz_cpu_matmul_e4m3(pz_cpu_mm *mm, float *y, int ldy, const float *x, int ldx, pz_dt xt,
                       float x_scale, const uint8_t *w, float scale, const float *ch_scale, int M,
                       int N, int K, int accumulate, char *err) {
    if (M <= 0 || N <= 0) return 0;
    if (bad_shape(M, N, K, ldx, ldy, err)) return -1;
    if (xt != PZ_DT_F32 && xt != PZ_DT_E4M3)
        return pz_kerr(err, "matmul: %s activations with e4m3 weights", pz_dt_name(xt));
    if (xt == PZ_DT_E4M3 && !(x_scale > 0))
        return pz_kerr(err, "matmul: e4m3 activations need a positive input scale, got %g", (double)x_scale);
    float out_scale = scale;
    if (xt == PZ_DT_E4M3) {
        // the activations as an FP8 GEMM sees them: e4m3(x / x_scale), whose
        // values enter the product exactly; x_scale joins the output scale
        if (!grow(&mm->xq, &mm->xq_cap, (size_t)M * K)) return pz_kerr(err, "matmul: out of memory");
        const float *tab = pz_e4m3_table();
        float inv = 1.0f / x_scale;
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++)
                mm->xq[(size_t)m * K + k] = tab[pz_f32_to_e4m3(x[(size_t)m * ldx + k] * inv)];
        x = mm->xq;
        ldx = K;
        out_scale *= x_scale;
    }
    if (M <= PZ_GEMV_E4M3_MAX_M) {
        // the scratch is optional (the kernel widens by F16C without it)
        size_t need = pz_cpu_gemv_e4m3_scratch_floats(M, K, mm->n_threads);
        float *scratch = grow(&mm->xperm, &mm->xperm_cap, need);
        pz_cpu_gemv_e4m3(y, ldy, x, ldx, w, M, N, K, out_scale, ch_scale, accumulate, mm->n_threads, scratch);
        return 0;
    }
    // Larger M: the library, on a tile of rows widened to fp32 with the
    // scales folded in (one rounding per weight, the product's own).
    size_t rows = E4M3_TILE_FLOATS / (size_t)K;
    if (rows < 16) rows = 16;
    if (rows > (size_t)N) rows = (size_t)N;
    if (!grow(&mm->wtile, &mm->wtile_cap, rows * K)) return pz_kerr(err, "matmul: out of memory");
    const float *tab = pz_e4m3_table();
    for (int n0 = 0; n0 < N; n0 += (int)rows) {
        int nr = N - n0 < (int)rows ? N - n0 : (int)rows;
        float *wt = mm->wtile;
#pragma omp parallel for num_threads(mm->n_threads) schedule(static)
        for (int r = 0; r < nr; r++) {
            float s = out_scale * (ch_scale ? ch_scale[n0 + r] : 1.0f);
            const uint8_t *src = w + (size_t)(n0 + r) * K;
            float *d = wt + (size_t)r * K;
            for (int k = 0; k < K; k++) d[k] = tab[src[k]] * s;
        }
        if (pz_cpu_gemm_ex(mm->g, 0, 1, M, nr, K, x, ldx, wt, PZ_DT_F32, K, y + n0, ldy, accumulate,
                           PZ_DT_F32, err))
            return -1;
    }
    return 0;
}
