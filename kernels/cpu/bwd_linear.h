// bwd_linear.h — matrix products for training on the CPU: a general product
// with transposes (pz_cpu_gemm on a pz_cpu_gm handle), and the linear layer y = x·Wᵀ with its
// backward pass built on it. matmul.h only computes x·Wᵀ; the backward
// needs dy·W and dyᵀ·x too, so this file makes its own oneDNN matmul
// primitives (transposes are expressed as strides: no copies), cached per
// shape in the handle. OpenBLAS builds (-DPZ_BLAS=openblas) call
// cblas_sgemm / cblas_sbgemm instead.
//
// Precision: PZ_DT_F32 multiplies in fp32. PZ_DT_BF16 rounds both operands
// to bf16 (nearest even) into scratch owned by the handle, then runs a
// bf16 x bf16 -> fp32 product: the "bf16 products, fp32 master weights and
// accumulation" set-up of training. Outputs and gradients are always fp32.
//
// A handle is used by one thread at a time; calling it sets the calling
// thread's OpenMP thread count to the handle's n_threads (how oneDNN learns
// how many threads to use), as matmul.h does. With a fixed n_threads the
// results are bit-identical from run to run.
#ifndef PZ_CPU_BWD_LINEAR_H
#define PZ_CPU_BWD_LINEAR_H

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

// Linear layer with weight W[N,K] (the [out, in] orientation), all
// matrices contiguous.
// Forward: y[M,N] = x[M,K]·Wᵀ.
int pz_cpu_linear_fwd(pz_cpu_gm *g, float *y, const float *x, const float *w, int M, int N,
                      int K, pz_dt prec, char *err);
// Backward, given dy[M,N]:
//   dx[M,K] = (dx_acc ? dx : 0) + dy·W      (skipped when dx is NULL)
//   dw[N,K] += dyᵀ·x                         (skipped when dw is NULL)
// Weight gradients always accumulate, so micro-batches add up; zero dw
// before the first.
int pz_cpu_linear_bwd(pz_cpu_gm *g, float *dx, int dx_acc, float *dw, const float *dy,
                      const float *x, const float *w, int M, int N, int K, pz_dt prec, char *err);

#endif
