// train.h — the training ops of the backend interface (backend.h's
// b->train): the general product and the linear layer with its backward,
// RMSNorm for training, the whole attention and SwiGLU sub-blocks forward
// and backward, AdamW, the normalized-MSE losses (global and per token) and
// global distillation's cosine and KL losses. Blockwise Local Distillation,
// replace-1-block scoring and global distillation run through these, so any
// backend that fills them runs every stage.
//
// Every pointer is backend memory unless said otherwise; parameters and
// gradients are fp32 (the master copy). `prec` is the type products take
// their operands in: PZ_DT_F32, or PZ_DT_BF16 (operands rounded to bf16,
// fp32 accumulation: the bf16-products set-up of training). Results are
// bit-identical from run to run for a fixed backend and thread count.
//
// The definitions (shapes, formulas, aliasing rules) are those of the CPU
// reference kernels: kernels/cpu/bwd_linear.h, bwd_rmsnorm.h,
// bwd_attention.h, bwd_swiglu.h and adamw.h.
#ifndef PZ_TRAIN_H
#define PZ_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

typedef struct pz_backend pz_backend;

// ---- the sub-blocks -----------------------------------------------------------
// Attention: y = [x +] o_proj(attention(RoPE(q_proj(n(x))), RoPE(k_proj(n(x))), v_proj(n(x))))
typedef struct {
    int hidden, n_head, n_kv, head_dim;
    float eps;      // RMSNorm epsilon
    int residual;   // 1: y = x + branch (the layer as the model runs it); 0: y = branch
    pz_dt prec;     // the four projections' products (attention itself is fp32)
} pz_attn_block_cfg;

// fp32 weights (the master copy), or their gradients of the same shapes.
typedef struct {
    float *norm;   // (hidden)
    float *wq;     // (n_head·head_dim, hidden)
    float *wk;     // (n_kv·head_dim, hidden)
    float *wv;     // (n_kv·head_dim, hidden)
    float *wo;     // (hidden, n_head·head_dim)
} pz_attn_block_w;

// SwiGLU: y = [x +] W_down·(silu(W_gate·n(x)) ⊙ (W_up·n(x)))
typedef struct {
    int hidden, n_ff;
    float eps;
    int residual;
    pz_dt prec;
} pz_ffn_block_cfg;

typedef struct {
    float *norm;   // (hidden)
    float *gate;   // (n_ff, hidden)
    float *up;     // (n_ff, hidden)
    float *down;   // (hidden, n_ff)
} pz_ffn_block_w;

// Saved activations and backward scratch of one sub-block for up to
// max_rows rows; backend-private, one user at a time.
typedef struct pz_attn_block_train pz_attn_block_train;
typedef struct pz_ffn_block_train pz_ffn_block_train;

// ---- the optimizer --------------------------------------------------------------
typedef struct {
    float beta1;          // 0.9
    float beta2;          // 0.95
    float eps;            // 1e-8
    float weight_decay;   // 0.1, decoupled: p -= lr·wd·p (only tensors with decay set)
    float clip_norm;      // 1.0; global L2 norm of all gradients; <= 0 disables clipping
} pz_adamw_params;

pz_adamw_params pz_adamw_default_params(void);

// One parameter tensor and its optimizer state: four arrays of n elements
// in backend memory, owned by the caller; m and v start zeroed. The
// descriptor array itself is host memory.
typedef struct {
    float *p;       // parameters (the fp32 master copy)
    float *g;       // gradient; scaled in place by clipping
    float *m, *v;   // first and second moments
    size_t n;
    int decay;      // 1: apply weight decay (matrices); 0: not (norm weights)
} pz_adamw_tensor;

// Learning rate at step s (0-based) of total_steps: linear warm-up to lr_max
// (the last warm-up step reaches it), then cosine decay to lr_min at
// total_steps. Host arithmetic, the same for every backend.
float pz_lr_schedule(long s, long warmup, long total_steps, float lr_max, float lr_min);

// ---- the ops table ----------------------------------------------------------------
typedef struct {
    // C[M,N] (ldc) = (accumulate ? C : 0) + op(A)·op(B); op(A) [M,K] is A
    // [M,K] (lda) or, when ta, A [K,M] read transposed; op(B) [K,N] is B
    // [K,N] (ldb) or, when tb, B [N,K] read transposed.
    int (*gemm)(pz_backend *b, int ta, int tb, int M, int N, int K, const float *A, int lda,
                const float *B, int ldb, float *C, int ldc, int accumulate, pz_dt prec, char *err);
    // y[M,N] = x[M,K]·Wᵀ (W [N,K], all contiguous).
    int (*linear_fwd)(pz_backend *b, float *y, const float *x, const float *w, int M, int N, int K,
                      pz_dt prec, char *err);
    // dx[M,K] = (dx_acc ? dx : 0) + dy·W (dx NULL: skipped);
    // dw[N,K] += dyᵀ·x (dw NULL: skipped).
    int (*linear_bwd)(pz_backend *b, float *dx, int dx_acc, float *dw, const float *dy,
                      const float *x, const float *w, int M, int N, int K, pz_dt prec, char *err);
    // y = x / rms(x) · w per row of n; rstd (M) receives 1/rms (may be NULL).
    void (*rmsnorm_fwd)(pz_backend *b, float *y, float *rstd, const float *x, const float *w, int M,
                        int n, float eps);
    // dx (M,n) = (dx_acc ? dx : 0) + ∂L/∂x (NULL: skipped); dw (n) += ∂L/∂w (NULL: skipped).
    void (*rmsnorm_bwd)(pz_backend *b, float *dx, int dx_acc, float *dw, const float *dy,
                        const float *x, const float *w, const float *rstd, int M, int n);

    pz_attn_block_train *(*attn_block_create)(pz_backend *b, const pz_attn_block_cfg *cfg,
                                              int max_rows, char *err);
    void (*attn_block_free)(pz_backend *b, pz_attn_block_train *s);
    // x, y: (n_seq·T, hidden); pos (n_seq·T) and inv_freq (head_dim/2) are
    // host memory, copied. x must be passed unchanged to the backward.
    int (*attn_block_fwd)(pz_backend *b, pz_attn_block_train *s, const pz_attn_block_w *w,
                          const float *x, int n_seq, int T, const int32_t *pos,
                          const float *inv_freq, float *y, char *err);
    // dw: gradients added (+=), NULL skips them; dx overwritten, NULL skips it.
    int (*attn_block_bwd)(pz_backend *b, pz_attn_block_train *s, const pz_attn_block_w *w,
                          const pz_attn_block_w *dw, const float *x, const float *dy, float *dx,
                          char *err);

    pz_ffn_block_train *(*ffn_block_create)(pz_backend *b, const pz_ffn_block_cfg *cfg,
                                            int max_rows, char *err);
    void (*ffn_block_free)(pz_backend *b, pz_ffn_block_train *s);
    int (*ffn_block_fwd)(pz_backend *b, pz_ffn_block_train *s, const pz_ffn_block_w *w,
                         const float *x, int M, float *y, char *err);
    int (*ffn_block_bwd)(pz_backend *b, pz_ffn_block_train *s, const pz_ffn_block_w *w,
                         const pz_ffn_block_w *dw, const float *x, const float *dy, float *dx,
                         char *err);

    // One AdamW step over n tensors (gradients clipped by hp->clip_norm
    // first); returns the gradient norm before clipping.
    double (*adamw_step)(pz_backend *b, pz_adamw_tensor *t, int n, long step, float lr,
                         const pz_adamw_params *hp);
    // ‖y_parent − y_child‖² / ‖y_parent‖² over n elements; d_child (may be
    // NULL) receives its gradient times grad_scale. NAN when ‖y_parent‖ = 0.
    double (*nmse_loss)(pz_backend *b, const float *y_parent, const float *y_child, size_t n,
                        float *d_child, float grad_scale);
    // Per-token normalized MSE: the mean over rows r (of cols values) of
    // ‖t_r − y_r‖² / (‖t_r‖² + eps), t = y_parent, y = y_child; d_child (may
    // be NULL) receives its gradient times grad_scale. Each token weighs the
    // same whatever its norm (the global NMSE lets the few rows with massive
    // activations dominate). NAN when a row's ‖t_r‖² + eps = 0.
    double (*token_nmse_loss)(pz_backend *b, const float *y_parent, const float *y_child, int rows,
                              int cols, float eps, float *d_child, float grad_scale);
    // The losses of global distillation (kernels/cpu/kd_loss.h defines them).
    // Cosine: over n_mat matrices (matrix m at y + m·mat_stride floats) of rows
    // × cols, Σ_r Σ_m (1 − cos(y_child, y_parent)) of each row (cos 0 when a
    // vector is zero), each row's terms added over m first; d_child (may be
    // NULL; same layout) receives grad_scale · ∂/∂y_child. KL: Σ over rows of
    // KL(softmax(parent) ‖ softmax(child)) over vocab logits; d_child (may be
    // NULL, may equal logits_child) receives grad_scale · (softmax(child) −
    // softmax(parent)). Both return sums (one small read-back), NAN on failure
    // or a size < 1; NULL in a backend without them.
    double (*cosine_loss)(pz_backend *b, const float *y_parent, const float *y_child, int n_mat,
                          size_t mat_stride, int rows, int cols, float *d_child, double grad_scale);
    double (*kl_loss)(pz_backend *b, const float *logits_parent, const float *logits_child, int rows,
                      int vocab, float *d_child, double grad_scale);
} pz_train_ops;

#endif
