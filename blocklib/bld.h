// bld.h — Blockwise Local Distillation of one library block from captured
// parent activations (Puzzle §3; docs/ARCHITECTURE.md "The pipeline", step 1).
//
// The child (sub-)block gets the parent's own input for its layer (from the
// capture) and learns to reproduce the parent's branch output, with a
// normalized MSE as loss (pz_bld_loss): per token, the mean over tokens of
// ‖t − y‖² / (‖t‖² + eps) (the default), or global, Σ‖t − y‖² / Σ‖t‖² over
// the whole batch. The global one lets the few tokens with massive
// activations (the attention sink, position 0 of each window: 93–96 % of the
// FFN output energy in some layers) dominate, so a block that only gets
// those right looks free; the per-token one ranks blocks like their
// replace-1-block KL (results/bld_loss_rank.md). Data:
//   decoupled (PZ_SUB_ATTN / PZ_SUB_FFN blocks, the default): input
//     ATTN_IN → target ATTN_OUT, or FFN_IN → FFN_OUT;
//   coupled (PZ_SUB_PAIR): input ATTN_IN → target ATTN_OUT + FFN_OUT, the
//     child computing a = attn(x), out = a + ffn(x + a), both halves trained.
// Windows of the capture are the samples. The last val_frac of them are
// held out for the validation loss; training draws batches of whole
// windows from the rest in a seeded random order (reshuffled each epoch).
// Memory: the block's weights, gradients, AdamW moments and the batch's
// activations live in backend memory; per step the host moves one batch
// (inputs and targets, one copy) in and reads the loss the loss op
// returns; validation copies the block's output back to the host, which
// computes both losses; the trained weights come back once, at the end.
// Products in bf16 with fp32 master weights by default; AdamW (β 0.9/0.95,
// weight decay 0.1 on matrices, clip 1.0), linear warm-up then cosine decay.
// With a fixed seed and thread count the result is bit-identical.
// The better of the initialization and the trained weights is kept: when
// training ends with a validation loss above the initialization's (or a
// non-finite training loss), the initial weights are returned and saved,
// and the result says so (kept_init).
//
// One call trains one block and returns everything a run database records
// about it; the weights go to a safetensors file (temporary name, then
// rename) whose sha256 is returned. Nothing here touches a database or
// prints: progress goes through the callback, which may also cancel.
#ifndef PZ_BLD_H
#define PZ_BLD_H

#include "capture.h"
#include "backend.h"
#include "init.h"
#include "safetensors.h"
#include "space.h"
#include "weights.h"

// The training (and validation) loss.
typedef enum {
    PZ_BLD_LOSS_TOKEN = 0,    // mean over tokens of ‖t − y‖² / (‖t‖² + eps) (default)
    PZ_BLD_LOSS_GLOBAL,       // Σ‖t − y‖² / Σ‖t‖² over the batch (before issue 11)
} pz_bld_loss;

// "token" / "global"; pz_bld_loss_parse returns 0, or -1 for an unknown name.
const char *pz_bld_loss_name(pz_bld_loss l);
int pz_bld_loss_parse(const char *s, pz_bld_loss *out);

typedef struct {
    long step, total_steps;   // step counts from 1
    double loss;              // training loss (params' kind) of this step's batch
    double lr;
    double tokens_per_s;      // training tokens / wall second so far
    double elapsed_s, eta_s;
    double val_nmse;          // validation loss (params' kind); NAN unless evaluated at this step
} pz_bld_progress;

// Return nonzero to cancel: pz_bld_train then returns -1 with err
// "cancelled" and writes no file.
typedef int (*pz_bld_progress_fn)(void *user, const pz_bld_progress *p);

typedef struct {
    long steps;              // optimizer steps; 0: from tokens
    long tokens;             // training tokens when steps == 0; 0: one epoch of the training windows
    int batch_windows;       // windows per step (default 4)
    float lr;                // peak learning rate (default 3e-3: results/bld_lr_sweep.md)
    float lr_min_ratio;      // final lr = lr · this (default 0.01)
    float warmup_frac;       // warm-up steps / steps (default 0.05)
    pz_adamw_params adam;    // pz_adamw_default_params()
    pz_dt prec;              // training products (default PZ_DT_BF16); validation is always fp32
    float val_frac;          // held-out last fraction of the windows (default 0.1; at least one window)
    long val_max_tokens;     // validation tokens evaluated (default 16384; 0: all held-out)
    int eval_every;          // validation every k steps (0: about 20 points over the run)
    uint64_t seed;           // batch order (default 1)
    int n_threads;           // default 1
    pz_backend_kind backend; // where the training runs (default CPU)
    pz_backend *be;          // borrowed backend to run on instead (NULL: create one of kind
                             // `backend` with n_threads); tests pass a guarded one
    pz_init_params init;     // initialization (its token_limit is set to the training split)
    pz_st_dtype save_dtype;  // PZ_ST_F32 (default) or PZ_ST_BF16
    pz_bld_loss loss;        // PZ_BLD_LOSS_TOKEN (default)
    float loss_eps;          // per-token loss: eps added to each ‖t‖² (default 1e-6)
    pz_bld_progress_fn progress;
    void *user;
} pz_bld_params;

pz_bld_params pz_bld_default_params(void);

typedef struct {
    char block_id[80];
    char init_method[48];
    long steps, tokens;        // optimizer steps and training tokens actually used
    long val_tokens;           // tokens in the validation evaluation
    size_t n_params;           // trainable parameters
    double wall_s, tokens_per_s;
    pz_bld_loss loss;          // the loss trained with and reported in the *_nmse fields
    // Validation and training losses of the kind `loss`:
    double init_val_nmse;      // before training (right after initialization)
    double final_val_nmse;     // of the weights returned (the initial ones when kept_init)
    double final_train_nmse;   // mean over the last eval interval
    double trained_val_nmse;   // of the trained weights (== final unless kept_init; NAN if diverged)
    // The global NMSE Σ‖t − y‖² / Σ‖t‖² on the same validation windows,
    // whatever the loss (comparable with runs before the per-token loss):
    double init_val_global, final_val_global;
    int kept_init;             // 1: training did not beat the initialization; its weights kept
    int n_points;              // loss curve, one point per evaluation (step 0 first)
    long *curve_step;          // (n_points) owned; free with pz_bld_result_free
    double *curve_train;       // mean training loss since the previous point (NAN at step 0)
    double *curve_val;         // validation loss (of the trained weights)
    char sha256[65];           // of the written file ("" when none)
} pz_bld_result;

void pz_bld_result_free(pz_bld_result *r);

// Initializes blk from parent and trains it on cap (the capture of
// blk->layer). Blocks with needs_training == 0 (parent copies, noop) are
// initialized and evaluated only. out_path: where to write the weights
// (NULL: nowhere). weights_out (may be NULL): receives the trained
// weights (caller frees with pz_block_weights_free). res is always filled
// on success (free with pz_bld_result_free). Returns 0, or -1 with err.
int pz_bld_train(const pz_model *parent, const pz_block *blk, const pz_capture *cap,
                 const pz_bld_params *p, const char *out_path, pz_block_weights *weights_out,
                 pz_bld_result *res, char *err);

// Validation loss (p->loss's kind) of given weights for blk on the held-out
// windows of cap (the same split and token cap as pz_bld_train with p), fp32
// products; global (may be NULL) receives the global NMSE as well.
int pz_bld_eval(const pz_model *parent, const pz_block *blk, const pz_block_weights *w,
                const pz_capture *cap, const pz_bld_params *p, double *nmse, double *global,
                char *err);

// Training FLOPs of one step over M rows of windows of T tokens
// (forward + backward ≈ 3 × forward products).
double pz_bld_step_flops(const pz_config *c, const pz_block *blk, int M, int T);

#endif
