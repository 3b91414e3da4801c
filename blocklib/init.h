// init.h — initialization of a child sub-block from its parent (Puzzle,
// App. A; docs/ARCHITECTURE.md "The pipeline", step 1):
//   gqa with fewer KV heads   mean-pool the K and V projection rows of each group
//   narrower swiglu           keep the channels of largest contribution
//                             mean_t |h_ti| · ‖W_down[:, i]‖, h = silu(gate·n(x)) ⊙ up·n(x),
//                             over captured FFN inputs; kept in their original order
//   linear attention          W = W_o · W_v, V heads expanded to all query heads
//   linear FFN                W = W_down · W_up (the gate ignored)
//   linear (default when a    ridge least squares on the captured activations:
//    capture is given)        W = argmin Σ_t ‖y_t − W·n(x_t)‖² + λ‖W‖², λ = ridge·trace(UᵀU)/hidden,
//                             solved by the normal equations with a Cholesky factorization
//   noop                      nothing; parent variant: a copy
// The RMSNorm weight of every child half is the parent's.
// Memory: the functions below take and fill host memory (the initialization
// is host work around a few products); the products run on the backend
// given, on copies in its memory.
#ifndef PZ_INIT_H
#define PZ_INIT_H

#include "capture.h"
#include "backend.h"
#include "weights.h"

typedef struct {
    int linear_lsq;     // 1 (default): fit linear variants by least squares when a capture is
                        // given; 0: the products W_o·W_v / W_down·W_up. Measured on SmolLM2-135M
                        // (layers 3 and 20, 17 windows of 256 calibration tokens, held-out NMSE):
                        // linear attention 12.2 / 7.05 (product) vs 0.63 / 0.56 (lsq); linear FFN
                        // 22.4 / 4.90 vs 0.78 / 0.34: the products are worse than a noop (1.0)
                        // and 60 BLD steps from them do not catch up.
    double ridge;       // relative ridge for the fit (default 1e-3)
    long max_tokens;    // calibration rows used, from the start of the capture (default 8192)
    long token_limit;   // rows at and after this are never read (the validation split); 0: none
    int n_threads;      // default 1
    pz_backend_kind backend;  // where products run (default CPU)
    pz_backend *be;     // borrowed backend to run on instead (NULL: create one of kind backend)
} pz_init_params;

pz_init_params pz_init_default_params(void);

// Initializes out (allocated here; free with pz_block_weights_free) as the
// block blk of parent. cap: the capture of blk->layer (needed for narrower
// swiglu and for least squares; without it a narrower swiglu keeps the
// first channels, "truncate"). method (may be NULL; 48 bytes) receives the
// method name per half, e.g. "meanpool_kv", "channel_contribution",
// "wo_wv", "wdown_wup", "lsq", "parent", "noop", joined by '+' for pairs.
int pz_init_block(pz_block_weights *out, const pz_model *parent, const pz_block *blk,
                  const pz_capture *cap, const pz_init_params *p, char method[48], char *err);

// ---- the pieces, for tests and other stages ------------------------------------
// K or V rows: parent (n_kv_p·head_dim, hidden) → child (n_kv_c·head_dim,
// hidden). Child KV head j is the mean, over the query heads h of its group,
// of the parent KV head that h reads: the plain group mean when n_kv_c
// divides n_kv_p.
void pz_init_kv_meanpool(float *child, const float *parent, int n_head, int n_kv_p, int n_kv_c,
                         int head_dim, int hidden);

// score[i] (n_ff) = mean over the M rows of x of |h_i| · ‖down[:, i]‖, for
// the parent FFN half in w (fp32). x: (M, hidden) FFN inputs.
int pz_init_channel_scores(pz_backend *be, const pz_block_weights *w, float eps, const float *x,
                           long M, double *score, int n_threads, char *err);
// keep (n_keep): the indices of the n_keep largest scores (ties: lower
// index first), ascending.
void pz_init_top_channels(const double *score, int n_ff, int n_keep, int *keep);
// child (swiglu n_keep) = rows keep of gate and up, columns keep of down.
void pz_init_ffn_select(pz_block_weights *child, const pz_block_weights *parent, const int *keep,
                        int n_keep);

// W (hidden, hidden) = W_o · expand(W_v) for a gqa parent half; W_down · W_up
// for a swiglu parent half.
int pz_init_linear_attn(pz_backend *be, float *W, const pz_block_weights *parent, char *err);
int pz_init_linear_ffn(pz_backend *be, float *W, const pz_block_weights *parent, char *err);

// Ridge fit of y ≈ W·n(x) (n = RMSNorm with weight norm, eps) over M rows:
// x, y (M, hidden). W (hidden, hidden) [out, in].
int pz_init_linear_lsq(pz_backend *be, float *W, const float *x, const float *y, long M, int hidden,
                       const float *norm, float eps, double ridge, char *err);

// Solves A·X = B in place (A (n,n) symmetric positive definite, row-major,
// overwritten by its Cholesky factor; B (n, nrhs) overwritten by X).
// Returns -1 when A is not positive definite.
int pz_cholesky_solve(double *A, double *B, int n, int nrhs);

#endif
