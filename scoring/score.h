// score.h — replace-1-block scoring (docs/ARCHITECTURE.md "The pipeline", step 2): the
// parent with exactly one library block swapped in, run on held-out token
// windows, compared with the parent's own next-token distributions.
//
// Metrics, per token, averaged over the positions that predict a token of
// their window (T−1 per window of T; the protocol of `puzzle eval`, so its
// --ref KL and agreement compare):
//   kl          KL(parent ‖ child) of the next-token distributions, nats
//               (the default ranking metric: it beat LM loss in the paper)
//   top1        fraction of positions where the child's argmax equals the
//               parent's
//   loss_delta  child NLL − parent NLL of the actual next token, nats
//
// How it saves work (a pz_scorer is built once for a set of windows, then
// scores any number of blocks):
//   * The parent runs once. The residual stream entering layer l is kept in
//     memory for every l that is a multiple of cache_stride (default 1: all
//     layers). Scoring a block of layer L starts from the cached stream of
//     layer L − (L mod stride), runs the parent's layers up to L−1, layer L
//     with the swapped half, and the parent's layers L+1.. to the end.
//     Memory: n_tokens · hidden · 4 bytes · ceil(n_layer / stride), e.g.
//     SmolLM2-135M, 2048 tokens, stride 1: 2048·576·4·30 = 142 MB.
//   * The parent's next-token distributions are kept once, in full, as fp32
//     probabilities (plus two doubles per row, so that a child's KL needs
//     one pass of exponentials, for its own log-sum-exp): n_tokens · vocab · 4 bytes (2048 tokens of a
//     49152-word vocabulary: 403 MB). Full rather than top-k: the KL is then
//     exact (no tail-mass approximation error; a top-k store with the tail
//     lumped into one bucket would underestimate KL by the divergence inside
//     the tail), and at the token budgets scoring uses (a few thousand) the
//     memory is affordable. Lower --tokens if it is not.
//   * Every forward (parent and child) uses the training sub-block code
//     (blocklib/subblock.h) with fp32 copies of the parent's weights, in
//     the same row chunks, so a parent copy swapped in gives bit-identical
//     logits and a KL of 0 up to double rounding (~1e-16). prec PZ_DT_BF16
//     runs parent and child alike with bf16 products (faster where the CPU
//     multiplies bf16 natively); the KL then carries bf16 noise, +0.3..1.4 %
//     relative on SmolLM2 blocks (measured: results/score_run.md).
//
//   * The base need not be the parent (search in context, puzzle/search.h):
//     pz_scorer_set_base makes a child the model that blocks are swapped
//     into; it reruns the cache from that child, and every later score is
//     KL(parent ‖ child with one block swapped), still against the parent's
//     distributions. The base's own halves need no pass: pz_scorer_base
//     holds its metrics (for the parent: KL 0, top-1 1, exactly).
//
// Memory: the weights (fp32 copies of the parent, the LM head, the blocks
// of a base and the block being scored), the residual cache and every
// activation live in backend memory; blocks given by the caller are host
// memory, copied in (a base's once at set_base, a scored block once per
// score). The parent's probabilities stay on the host, where the
// comparison runs: each chunk's logits come back once, and during the
// parent pass the residual after each layer (for the block influence).
//
// Windows: tokens are cut into n_tokens / seq_len whole windows, each from
// position 0 (the same protocol as BLD capture); the tail is dropped.
#ifndef PZ_SCORE_H
#define PZ_SCORE_H

#include <stdint.h>
#include "backend.h"
#include "model.h"
#include "weights.h"

typedef struct {
    int n_threads;      // products and pointwise ops (default 1)
    pz_backend_kind backend;  // where every forward runs (default CPU)
    pz_backend *be;     // borrowed backend to run on instead (NULL: create one of kind backend);
                        // it must outlive the scorer
    pz_dt prec;         // product type of every forward (default PZ_DT_F32)
    int cache_stride;   // keep the residual entering every k-th layer (default 1)
    int max_rows;       // rows per forward chunk (default 1024, rounded down to whole windows)
} pz_score_params;

pz_score_params pz_score_default_params(void);

typedef struct {
    double kl;          // mean KL(parent ‖ child) per position, nats
    double loss_delta;  // mean child NLL − mean parent NLL, nats
    double top1;        // argmax agreement in [0, 1]
    double parent_nll, child_nll;
    long tokens;        // positions compared: windows · (T − 1)
    long loss_tokens;   // the same (kept apart for other protocols)
    double wall_s;
} pz_score_result;

typedef struct pz_scorer pz_scorer;

// Runs the parent m over the windows of tokens and keeps what scoring
// needs (above). m is borrowed and must outlive the scorer; tokens are
// copied. Returns NULL with err filled (no whole window, bad token id, out
// of memory). Free with pz_scorer_free.
pz_scorer *pz_scorer_create(const pz_model *m, const int32_t *tokens, long n_tokens, int seq_len,
                            const pz_score_params *p, char *err);
void pz_scorer_free(pz_scorer *s);

long pz_scorer_n_tokens(const pz_scorer *s);     // tokens used (whole windows)
double pz_scorer_parent_nll(const pz_scorer *s); // mean parent NLL over the loss positions
// The parent's next-token probabilities, (n_tokens, vocab), row = position;
// lives as long as s. For tests (compare with the engine's logits).
const float *pz_scorer_parent_probs(const pz_scorer *s);
// Block influence of every layer, measured during the parent pass (ShortGPT,
// Men et al. 2024): bi[l] = 1 − mean over all positions of cos(residual
// entering layer l, residual leaving it). Small: the layer barely changes
// the hidden state, a candidate to drop. bi has the parent's n_layer entries.
void pz_scorer_block_influence(const pz_scorer *s, double *bi);
// Bytes the scorer keeps (residual cache + parent probabilities + fp32 weights).
size_t pz_scorer_bytes(const pz_scorer *s);

// Makes a child the base: layer l takes its attention half from attn[l] and
// its FFN half from ffn[l] (a NULL array or entry: the parent's half; a
// block of sub PAIR may serve both). Runs the child once over the windows,
// refilling the residual cache, and measures it against the parent
// (pz_scorer_base). The blocks are borrowed: they must stay alive and
// unchanged until the next set_base or pz_scorer_free. Returns 0, or -1 with
// err filled; after a failed pass no score runs until a base is set again
// (a failed check of the blocks changes nothing).
int pz_scorer_set_base(pz_scorer *s, const pz_block_weights *const *attn, const pz_block_weights *const *ffn,
                       char *err);
// The base's metrics against the parent (set by pz_scorer_create for the
// parent itself and by pz_scorer_set_base).
void pz_scorer_base(const pz_scorer *s, pz_score_result *r);

// Scores the base (the parent unless pz_scorer_set_base chose a child) with w's half (or both halves, PZ_SUB_PAIR) of layer
// w->layer swapped in. w must have the parent's shape (hidden, heads).
// Returns 0 with r filled, or -1 with err filled.
int pz_scorer_score(pz_scorer *s, const pz_block_weights *w, pz_score_result *r, char *err);
// The same with layer L's attention half from attn and its FFN half from ffn
// (NULL: the base's own half), e.g. a pair made of two decoupled blocks.
int pz_scorer_score_halves(pz_scorer *s, int L, const pz_block_weights *attn, const pz_block_weights *ffn,
                           pz_score_result *r, char *err);

#endif
