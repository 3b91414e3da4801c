// subblock.h — forward and backward of one half of a layer (the branch
// only, no residual) for any variant kind, on top of the backend's training
// ops (kernels/train.h): gqa attention, linear attention (W·n(x)), noop;
// swiglu, linear FFN, noop. The parent forward of activation capture and
// the child training of BLD both run through this, so the two share one
// code path.
#ifndef PZ_SUBBLOCK_H
#define PZ_SUBBLOCK_H

#include <stdint.h>
#include "backend.h"
#include "weights.h"

typedef struct pz_sub_exec pz_sub_exec;

// half: PZ_SUB_ATTN or PZ_SUB_FFN; v: the variant (kind and size). Rows
// per call <= max_rows. prec: the four/three projections' product type
// (attention scores are always fp32). Every op runs on backend be
// (borrowed; it must outlive the handle); the buffers passed to fwd/bwd are
// its memory (x, y, dy, dx and every weight in w and dw). RoPE
// frequencies come from c. Free with pz_sub_exec_free.
pz_sub_exec *pz_sub_exec_create(const pz_config *c, pz_sub_kind half, pz_variant v, int max_rows,
                                pz_dt prec, pz_backend *be, char *err);
void pz_sub_exec_free(pz_sub_exec *e);
pz_sub_kind pz_sub_exec_half(const pz_sub_exec *e);
pz_variant pz_sub_exec_variant(const pz_sub_exec *e);

// y (n_seq·T, hidden) = the branch of the half in w (w must hold that half
// with e's variant) on x (n_seq·T, hidden): windows of T tokens at
// positions 0..T-1. x is not copied and must stay unchanged until the
// backward. y must not alias x.
int pz_sub_exec_fwd(pz_sub_exec *e, const pz_block_weights *w, const float *x,
                    int n_seq, int T, float *y, char *err);
// Backward of the last forward given dy: dw (same layout as w) += weight
// gradients (NULL: frozen); dx (may be NULL) = ∂L/∂x of the branch alone.
int pz_sub_exec_bwd(pz_sub_exec *e, const pz_block_weights *w,
                    const pz_block_weights *dw, const float *x, const float *dy, float *dx,
                    char *err);

// Multiply-adds (×2 = FLOPs) of one forward over M rows of window T:
// products only, attention scores counted causally (T(T+1)/2 per window).
double pz_sub_exec_fwd_flops(const pz_config *c, pz_sub_kind half, pz_variant v, int M, int T);

#endif
