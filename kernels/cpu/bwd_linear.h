// bwd_linear.h — the linear layer y = x·Wᵀ for training on the CPU, with
// its backward pass: three products of the general gemm (gemm.h, included
// here, which also says what PZ_DT_F32 and PZ_DT_BF16 mean).
#ifndef PZ_CPU_BWD_LINEAR_H
#define PZ_CPU_BWD_LINEAR_H

#include "gemm.h"

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
