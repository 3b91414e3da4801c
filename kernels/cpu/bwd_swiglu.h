// bwd_swiglu.h — the SwiGLU feed-forward for training: the pointwise
// backward of h = silu(g) ⊙ u, and the whole FFN sub-block
//   y = [x +] W_down·(silu(W_gate·n(x)) ⊙ (W_up·n(x))),  n = RMSNorm,
// forward (saving what the backward needs) and backward for x, the norm
// weight and all three matrices. Used by Blockwise Local Distillation to
// train narrower SwiGLU blocks.
//
// With σ = 1/(1 + e^(−g)): silu(g) = g·σ, silu'(g) = σ·(1 + g·(1 − σ)), so
//   dg = dh ⊙ u ⊙ silu'(g),  du = dh ⊙ silu(g).
#ifndef PZ_CPU_BWD_SWIGLU_H
#define PZ_CPU_BWD_SWIGLU_H

#include "backend.h"
#include "bwd_linear.h"

// dh, g, u, dg, du: (M, n) contiguous. dg may equal dh (each element of dh
// is read before dg is written); du must not alias anything.
void pz_cpu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                       int M, int n, int n_threads);

// ---- the FFN sub-block ------------------------------------------------------

// Saved activations and backward scratch for up to max_rows rows, in one
// allocation; owned by the caller, used by one thread at a time.
typedef struct pz_ffn_block_train pz_ffn_block_train;

pz_ffn_block_train *pz_cpu_ffn_block_create(const pz_ffn_block_cfg *cfg, int max_rows,
                                            int n_threads, char *err);
void pz_cpu_ffn_block_free(pz_ffn_block_train *s);

// x, y: (M, hidden), M <= max_rows, y must not alias x. x is not copied:
// pass it unchanged to the backward.
int pz_cpu_ffn_block_fwd(pz_ffn_block_train *s, pz_cpu_gm *g, const pz_ffn_block_w *w,
                         const float *x, int M, float *y, char *err);

// Backward of the last forward, given dy (M, hidden). dw: gradients added
// into it (+=), NULL skips them. dx (M, hidden): overwritten with ∂L/∂x
// (the residual's dy included when cfg.residual), NULL skips it.
int pz_cpu_ffn_block_bwd(pz_ffn_block_train *s, pz_cpu_gm *g, const pz_ffn_block_w *w,
                         const pz_ffn_block_w *dw, const float *x, const float *dy, float *dx,
                         char *err);

#endif
