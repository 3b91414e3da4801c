// gemm.h — the general matrix product on the CPU, C (+)= op(A)·op(B), and
// the one place that calls a library for it: oneDNN (default build) or
// OpenBLAS (-DPZ_BLAS=openblas). The inference product (matmul.h) and the
// training linear layer (bwd_linear.h) are built on it.
//
// oneDNN primitives are created once per shape (transposes, sizes, strides,
// precision, accumulate) and kept in a small cache owned by the handle;
// transposes are expressed as strides, so operands are never copied except
// to change their precision.
//
// Precision: PZ_DT_F32 multiplies in fp32. PZ_DT_BF16 rounds fp32 operands
// to bf16 (nearest even; vectorized, split over the handle's threads) into
// scratch owned by the handle, then runs a
// bf16 x bf16 -> fp32 product: the "bf16 products, fp32 master weights and
// accumulation" set-up of training. OpenBLAS (Debian's build has no
// cblas_sbgemm) runs the same arithmetic as an fp32 product of the rounded
// values, which is exact. C is always fp32.
//
// A handle is used by one thread at a time; calling it sets the calling
// thread's OpenMP thread count (omp_set_num_threads) to the handle's
// n_threads, which is how oneDNN learns how many threads to use. With a
// fixed n_threads the results are bit-identical from run to run.
#ifndef PZ_CPU_GEMM_H
#define PZ_CPU_GEMM_H

#include <stdint.h>
#include "backend.h"

typedef struct pz_cpu_gm pz_cpu_gm;

// n_threads <= 0: every core. Returns NULL (err filled) on failure. Free
// with pz_cpu_gemm_free (NULL is fine).
pz_cpu_gm *pz_cpu_gemm_create(int n_threads, char *err);
void pz_cpu_gemm_free(pz_cpu_gm *g);
int pz_cpu_gemm_threads(const pz_cpu_gm *g);

// C[M,N] (rows ldc apart) = (accumulate ? C : 0) + op(A)·op(B).
//   op(A) is [M,K]: A stored [M,K] with rows lda apart, or, when ta, A
//   stored [K,M] (rows lda apart) and read transposed.
//   op(B) is [K,N]: B stored [K,N] (rows ldb apart), or, when tb, B stored
//   [N,K] (rows ldb apart) and read transposed.
// prec: PZ_DT_F32 or PZ_DT_BF16 (see the top of this file). Returns 0, or
// -1 with err filled (bad shape, out of memory, library failure).
// M, N or K of 0 is a no-op (K = 0 with !accumulate zeroes C).
int pz_cpu_gemm(pz_cpu_gm *g, int ta, int tb, int M, int N, int K, const float *A, int lda,
                const float *B, int ldb, float *C, int ldc, int accumulate, pz_dt prec, char *err);
// The same with B stored as bt (PZ_DT_F32 or PZ_DT_BF16), e.g. bf16
// weights. A bf16 B enters a PZ_DT_BF16 product as it is; where the product
// runs in fp32 (prec PZ_DT_F32, or OpenBLAS) it is widened exactly, a tile
// of ~4 MiB at a time, so a large B is never copied whole.
int pz_cpu_gemm_ex(pz_cpu_gm *g, int ta, int tb, int M, int N, int K, const float *A, int lda,
                   const void *B, pz_dt bt, int ldb, float *C, int ldc, int accumulate,
                   pz_dt prec, char *err);

// 1 when bf16 products run as bf16 x bf16 in the library (oneDNN), so
// PZ_DT_BF16 is faster than PZ_DT_F32; 0 when they are widened (OpenBLAS).
int pz_cpu_gemm_bf16_native(void);
// "oneDNN 2.6.3" or "OpenBLAS".
const char *pz_cpu_matmul_library(void);

// fp32 -> bf16, round to nearest even (NaN stays NaN). AVX-512 BF16 or AVX2
// when present; every path gives the same bits.
void pz_cpu_f32_to_bf16(const float *src, uint16_t *dst, size_t n);
// The same rounding with the result kept as fp32 (the value the bf16 holds):
// what an fp32 product of bf16-rounded operands reads. src == dst is fine.
void pz_cpu_f32_round_bf16(const float *src, float *dst, size_t n);

#endif
