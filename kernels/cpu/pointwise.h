// pointwise.h — the element-wise ops of the forward pass: SwiGLU, residual
// add, and embedding lookup. OpenMP over rows for large inputs.
#ifndef PZ_CPU_POINTWISE_H
#define PZ_CPU_POINTWISE_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"

// h[M,n] (rows ldh apart) = silu(g) * u, with silu(g) = g / (1 + exp(-g));
// g and u rows gu_ld apart (they may be the two halves of one fused row).
void pz_cpu_swiglu(float *h, int ldh, const float *g, const float *u, int gu_ld, int M, int n, int n_threads);

// y[i] += x[i]
void pz_cpu_add(float *y, const float *x, size_t n, int n_threads);

// y[M,n] = table[ids[m]], table (vocab, n) fp32 or bf16. Returns the index
// m of the first id outside [0, vocab), or -1 when all are valid (then y
// is filled).
int pz_cpu_embed(float *y, const void *table, pz_dt dt, const int32_t *ids, int M, int n, int vocab);

#endif
