// distill.h — global knowledge distillation (GKD) of a whole heterogeneous
// child against its parent (Puzzle §5; docs/ARCHITECTURE.md "The pipeline",
// step 6). The loss of a window batch is the paper's recipe, unweighted,
// with no LM loss:
//   L = Σ_layers mean_tokens (1 − cos(h_child_l, h_parent_l))
//     + mean_tokens KL(p_parent ‖ q_child)
// h_l being the residual stream leaving layer l (before the final norm for
// the last), p and q the next-token distributions at every position. The
// teacher's hidden states come from a teacher forward of the same batch,
// on the fly. The backward runs through every sub-block kind, the final
// norm, the LM head and the embeddings (tied or not: a tied table gets
// both gradients); AdamW (pz_adamw_params) with linear warm-up and cosine
// decay (pz_lr_schedule); gradient accumulation over micro-batches; data
// parallelism through a pz_comm (micro-batches dealt round-robin to the
// ranks, gradients all-reduced, every rank applies the same update).
//
// Data: a token stream cut into windows of seq tokens (the tail dropped);
// each epoch visits every window once in an order drawn from the seed and
// the epoch number alone, so the data position is a pure function of the
// step and a resumed run sees the same windows.
//
// Checkpoints: out_dir/gkd_checkpoint.bin, written (rank 0) every
// checkpoint_every steps and at the end: a temporary name, fsync, rename,
// so the file at the final name is always whole. It holds the step, the
// windows consumed, the seed, a hash of the run's identity (architectures,
// the child's starting weights, tokens, batch geometry, schedule,
// optimizer), the loss curve so far, and every parameter with both AdamW
// moments in fp32. A rerun with resume set
// continues from it and, with the same thread count, ends bit-identical to
// an uninterrupted run. Nothing here prints: progress goes to a callback.
#ifndef PZ_DISTILL_H
#define PZ_DISTILL_H

#include <stdint.h>

#include "backend.h"
#include "comm.h"
#include "model.h"

// ---- the loss and its gradient for one batch ------------------------------------------
typedef struct pz_gkd pz_gkd;

// Runners for teacher and child (both fp32 models with the same layer
// count, hidden size and vocabulary) for up to max_rows rows per batch.
// be is borrowed. Free with pz_gkd_free.
pz_gkd *pz_gkd_create(const pz_model *teacher, const pz_model *child, int max_rows, pz_dt prec,
                      pz_backend *be, char *err);
void pz_gkd_free(pz_gkd *g);

// The loss parts of ids (n_seq windows of T tokens): *cos_loss = Σ_layers
// mean (1 − cos), *kl = mean KL(teacher ‖ child). When grad is non-NULL
// (fp32, child's config) it receives += scale · ∂L/∂θ, L the objective of
// the loss weights (pz_gkd_set_loss; by default L = cos_loss + kl).
// teacher, child and grad are views in be's memory (pz_model_dev, net.h; on
// the CPU backend, the host models themselves). The loss runs as two backend
// ops (train.h's cosine_loss and kl_loss): no hidden state or logit leaves
// the backend, only the two sums come back. The backend must have them.
int pz_gkd_batch(pz_gkd *g, const pz_model *teacher, const pz_model *child, pz_model *grad,
                 float scale, const int32_t *ids, int n_seq, int T, double *cos_loss, double *kl,
                 char *err);

// The weights of the loss (pz_gkd_set_loss). The objective of a batch is
//   L = cos · Σ_layers mean (1 − cos) + kl · τ² · mean KL(p_τ ‖ q_τ) + lm · mean CE
// p_τ, q_τ the parent's and child's next-token distributions at temperature
// τ (logits / τ; the τ² keeps the gradient's size, Hinton et al.), CE the
// child's cross-entropy on the next token of the window. The last position
// of a window has no next token in it: there the lm term is KL(p ‖ q)
// instead (1 row in seq). Default {1, 1, 0, 1}: the paper's loss. lm > 0 and
// τ ≠ 1 read the logits on the host, so they need the CPU backend; lm > 0
// with τ ≠ 1 is refused (the two targets would sit at different τ).
typedef struct {
    float cos, kl, lm, temperature;
} pz_gkd_loss;

pz_gkd_loss pz_gkd_default_loss(void);
// Checks w (weights >= 0, not all 0; 0.05 <= τ <= 20; the rules above) and
// keeps a copy in g. 0, or -1 with err.
int pz_gkd_set_loss(pz_gkd *g, const pz_gkd_loss *w, char *err);

// The parts of the last pz_gkd_batch (means over its rows): cos and kl as it
// returned them (kl at τ = 1, whatever the loss), kl_t = τ² · KL at τ (= kl
// at τ = 1), lm the lm term (NAN when the weight is 0), objective the L above.
typedef struct {
    double cos, kl, kl_t, lm, objective;
} pz_gkd_parts;
void pz_gkd_last_parts(const pz_gkd *g, pz_gkd_parts *out);

// ---- the training run ---------------------------------------------------------------------
typedef struct {
    long step, total_steps;     // step counts from 1
    double cos_loss, kl;        // this step's mean over its micro-batches (all ranks)
    double lm;                  // the same of the lm term (NAN when its weight is 0)
    double lr, grad_norm;
    double tokens_per_s;        // training tokens (all ranks) per wall second in this process
    double elapsed_s, eta_s;
    int checkpointed;           // 1 when a checkpoint follows this step (periodic or the last)
} pz_distill_progress;

// Return 0 to go on; PZ_DISTILL_STOP to stop after writing a checkpoint of
// this step; PZ_DISTILL_ABANDON to stop at once without one (what a kill
// does; tests use it).
enum { PZ_DISTILL_STOP = 1, PZ_DISTILL_ABANDON = 2 };
typedef int (*pz_distill_progress_fn)(void *user, const pz_distill_progress *p);

typedef struct {
    int seq;                 // tokens per window (default 256)
    int batch;               // windows per micro-batch (default 4)
    int accum;               // micro-batches per optimizer step, over all ranks (default 1;
                             // a multiple of the number of ranks)
    long tokens;             // training tokens; steps = ceil(tokens / (seq·batch·accum)) (default 65536)
    float lr;                // peak learning rate (default 2e-4: results/distill_sweep.md)
    float lr_min_ratio;      // final lr = lr · this (default 0.1)
    long warmup;             // warm-up steps (default -1: 5 % of the steps, at least 1)
    pz_adamw_params adam;    // pz_adamw_default_params()
    pz_dt prec;              // products (default PZ_DT_BF16; fp32 master weights)
    uint64_t seed;           // window order (default 1)
    pz_gkd_loss loss;        // the loss weights (default pz_gkd_default_loss(): the paper's)
    int checkpoint_every;    // steps (default 50; 0: only at the end)
    int resume;              // 1: continue from out_dir's checkpoint when there is one;
                             // 0: an existing checkpoint is an error
    pz_distill_progress_fn progress;
    void *user;
} pz_distill_params;

pz_distill_params pz_distill_default_params(void);

typedef struct {
    long steps, start_step;  // steps done in total, and the step this process resumed at
    long tokens;             // training tokens seen (all ranks)
    double wall_s;           // this process
    int n_points;            // loss curve, one entry per step (including resumed ones)
    double *curve_cos, *curve_kl, *curve_lr, *curve_gnorm;  // (n_points) owned
} pz_distill_result;

void pz_distill_result_free(pz_distill_result *r);

// Trains child (fp32, updated in place) against teacher (fp32, read only)
// on tokens (n_tokens host ids; every rank passes the same stream) with the
// ranks of comm (NULL: one process), on backend be. out_dir (must exist)
// holds the checkpoint; rank 0 writes it, and at the end also
// out_dir/gkd_losses.tsv (step, lr, cos_loss, kl, grad_norm). res (may be
// NULL) receives the curve. 0, or -1 with err.
int pz_distill_run(const pz_model *teacher, pz_model *child, const int32_t *tokens, long n_tokens,
                   const char *out_dir, const pz_distill_params *p, pz_backend *be, pz_comm *comm,
                   pz_distill_result *res, char *err);

// FLOPs of one optimizer step (teacher forward + child forward and
// backward, ≈ 1 + 3 forwards of products) for rows = seq·batch·accum.
double pz_distill_step_flops(const pz_config *teacher, const pz_config *child, long rows, int seq);

#endif
