// matmul.h — y[M,N] = x[M,K]·W[N,K]^T for inference on the CPU, fp32 or
// bf16 weights.
//
// Small M (<= PZ_GEMV_MAX_M, decode) goes to the register-tiled kernel in
// gemv.h, which reads bf16 weights exactly with fp32 activations. Larger M
// goes to the library through gemm.h. With bf16 weights oneDNN converts the
// activations to bf16 (round to nearest even) and runs a bf16 x bf16 ->
// fp32 product, so prefill with bf16 weights carries activation rounding
// (~3 significant digits) that decode does not. OpenBLAS widens the weights
// to fp32 a 4 MiB tile at a time and runs sgemm: exact, but no faster than
// fp32 weights.
//
// A handle is used by one thread at a time. Calling it sets the calling
// thread's OpenMP thread count (omp_set_num_threads) to the handle's
// n_threads, which is how oneDNN learns how many threads to use.
#ifndef PZ_CPU_MATMUL_H
#define PZ_CPU_MATMUL_H

#include <stdint.h>
#include "gemm.h"

typedef struct pz_cpu_mm pz_cpu_mm;

pz_cpu_mm *pz_cpu_matmul_create(int n_threads, char *err);
void pz_cpu_matmul_free(pz_cpu_mm *mm);
// The general-product handle inside (same threads), borrowed: lives as long as mm.
pz_cpu_gm *pz_cpu_matmul_gemm(pz_cpu_mm *mm);

// The product, dispatched by M as described above.
int pz_cpu_matmul(pz_cpu_mm *mm, float *y, int ldy, const float *x, int ldx, const void *w,
                  pz_dt wt, int M, int N, int K, int accumulate, char *err);
// Always the library (never the small-M kernel): for benchmarks that
// compare against "what the library achieves".
int pz_cpu_matmul_lib(pz_cpu_mm *mm, float *y, int ldy, const float *x, int ldx, const void *w,
                      pz_dt wt, int M, int N, int K, int accumulate, char *err);

// e4m3 weights w[N,K] (kernels/fp8.h), dequantized as e4m3 · scale ·
// (ch_scale ? ch_scale[n] : 1). xt PZ_DT_F32: fp32 activations as given.
// xt PZ_DT_E4M3: the activations are first rounded as an FP8 GEMM's input,
// e4m3(x / x_scale) (nearest even, saturating), and the product of the two
// e4m3 operands is accumulated in fp32 and scaled by x_scale · scale — the
// numerics of an H100 FP8 GEMM with static per-tensor scales, apart from
// summation order. Small M reads the bytes in registers (gemv.h); larger M
// widens a ~4 MiB tile of rows to fp32 at a time and calls the library.
int pz_cpu_matmul_e4m3(pz_cpu_mm *mm, float *y, int ldy, const float *x, int ldx, pz_dt xt,
                       float x_scale, const uint8_t *w, float scale, const float *ch_scale, int M,
                       int N, int K, int accumulate, char *err);

// pz_cpu_matmul_library() is in gemm.h.
// 1 when the library path (M > PZ_GEMV_MAX_M) rounds activations to bf16
// for bf16 weights (oneDNN), 0 when it is exact (OpenBLAS).
int pz_cpu_matmul_bf16_rounds_activations(void);

#endif
