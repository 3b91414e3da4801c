// bwd_attention.h — causal grouped-query attention for training: a forward
// that saves the softmax statistics, its backward for q, k and v, and the
// whole attention sub-block (RMSNorm → q/k/v projections → RoPE →
// attention → o projection, optionally with the residual) composed from
// the training ops, so that Blockwise Local Distillation can train a GQA
// block with fewer KV heads than its parent.
//
// Layout: a batch of n_seq independent sequences of T tokens each, stored
// as M = n_seq·T rows (row b·T + t); q and the attention output have
// n_head·head_dim columns, k and v n_kv·head_dim; query head h reads KV
// head h / (n_head/n_kv). Scores are scaled by 1/sqrt(head_dim); token t
// attends to tokens 0..t of its own sequence.
//
// Backward in the FlashAttention form: with P = softmax(S) recomputed from
// the saved log-sum-exp and D_i = dO_i·O_i,
//   dV_j = Σ_i P_ij dO_i,  dS_ij = P_ij (dO_i·V_j − D_i),
//   dQ_i = scale Σ_j dS_ij K_j,  dK_j = scale Σ_i dS_ij Q_i.
#ifndef PZ_CPU_BWD_ATTENTION_H
#define PZ_CPU_BWD_ATTENTION_H

#include <stdint.h>
#include "backend.h"
#include "bwd_linear.h"

#define PZ_ATTN_TRAIN_MAX_HEAD_DIM 512

// Two implementations of each, the same arithmetic up to rounding:
// - pz_cpu_attn_train_fwd / pz_cpu_attn_bwd: tiled (FlashAttention-style
//   blocks of queries) with the score, dP, dQ, dK and dV products through
//   the gemm handle (fp32), so they run at the matrix library's rate; the
//   handle's thread count is used throughout.
// - ..._ref: plain loops, one (query, head) or (key, KV head) at a time
//   with n_threads OpenMP threads; the readable definition, for tests.
// Both are bit-identical from run to run with a fixed thread count.
//
// out: (M, n_head·head_dim); lse: (M, n_head), receives log Σ_j exp(s_ij)
// for each query row and head (natural log, scaled scores).
// Returns -1 (err filled) on a bad shape (head_dim odd or above the max,
// n_kv not dividing n_head), out of memory, or a matrix-library failure.
int pz_cpu_attn_train_fwd(pz_cpu_gm *g, float *out, float *lse, const float *q, const float *k,
                          const float *v, int n_seq, int T, int n_head, int n_kv, int head_dim,
                          char *err);

// Given dout (M, n_head·head_dim) and the forward's inputs, out and lse:
// dq (M, n_head·head_dim), dk and dv (M, n_kv·head_dim) are overwritten.
int pz_cpu_attn_bwd(pz_cpu_gm *g, float *dq, float *dk, float *dv, const float *dout,
                    const float *q, const float *k, const float *v, const float *out,
                    const float *lse, int n_seq, int T, int n_head, int n_kv, int head_dim,
                    char *err);

int pz_cpu_attn_train_fwd_ref(float *out, float *lse, const float *q, const float *k,
                              const float *v, int n_seq, int T, int n_head, int n_kv, int head_dim,
                              int n_threads, char *err);
int pz_cpu_attn_bwd_ref(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *lse,
                        int n_seq, int T, int n_head, int n_kv, int head_dim, int n_threads,
                        char *err);

// ---- the attention sub-block ------------------------------------------------
// y = [x +] o_proj(attention(RoPE(q_proj(n(x))), RoPE(k_proj(n(x))), v_proj(n(x))))
// with n = RMSNorm (weight norm, epsilon eps).

// Saved activations of one forward and the backward's scratch, for up to
// max_rows rows, in one allocation. Owned by the caller (free with
// pz_cpu_attn_block_free); used by one thread at a time. n_threads is for
// the pointwise ops (norm, RoPE); products and attention use the gemm
// handle's threads. The attention precision is fp32 whatever cfg.prec
// (only the four projections follow it).
typedef struct pz_attn_block_train pz_attn_block_train;

pz_attn_block_train *pz_cpu_attn_block_create(const pz_attn_block_cfg *cfg, int max_rows,
                                              int n_threads, char *err);
void pz_cpu_attn_block_free(pz_attn_block_train *s);

// x: (n_seq·T, hidden); pos: (n_seq·T) the RoPE position of each row
// (usually t); inv_freq: (head_dim/2) from pz_rope_inv_freq. y: (n_seq·T,
// hidden). pos and inv_freq are copied into the handle; x is not, and must
// be passed unchanged to the backward. n_seq·T <= max_rows.
int pz_cpu_attn_block_fwd(pz_attn_block_train *s, pz_cpu_gm *g, const pz_attn_block_w *w,
                          const float *x, int n_seq, int T, const int32_t *pos,
                          const float *inv_freq, float *y, char *err);

// Backward of the last forward, given dy (n_seq·T, hidden).
// dw: the weights' gradients are added into it (+=); NULL skips them (a
// frozen block). dx (n_seq·T, hidden) is overwritten with ∂L/∂x (the
// residual's dy included when cfg.residual); NULL skips it (BLD: the
// input is the parent's activation and needs no gradient).
int pz_cpu_attn_block_bwd(pz_attn_block_train *s, pz_cpu_gm *g, const pz_attn_block_w *w,
                          const pz_attn_block_w *dw, const float *x, const float *dy, float *dx,
                          char *err);

#endif
