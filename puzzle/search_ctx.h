// search_ctx.h — search in context (issue 11; `puzzle search --in-context`).
// Replace-1-block scores are measured in the parent; at strong compression
// they stop adding up (46 of 60 sub-blocks replaced: the errors compound), so
// the one-shot MIP optimum is not the best child once measured. Here the
// chosen child becomes the base of the scorer (scoring/score.h
// pz_scorer_set_base): every candidate is swapped into that child, one group
// (layer half) at a time, and scored by
//     delta = KL(parent ‖ child with the candidate) − KL(parent ‖ child),
// the first-order change of the measured objective around the child (the
// child's own choice scores 0). The MIP is solved again on these deltas, the
// new child measured, and the loop repeats while the measured KL falls, for
// at most `rounds` rounds. The deltas are a first-order model around the
// base: a solve that changes half the groups at once steps out of where it
// holds (measured: 35 of 60 groups changed, predicted KL 1.23, measured
// 1.66). So each round solves `tries` times, adding a penalty per group
// changed from the base (0, then step_penalty doubling: a trust region), and
// keeps the best child measured; re-solving and measuring a child cost one
// pass each, rescoring the candidates dozens. Candidates outside `margin`
// (their one-shot score more than margin above or below the chosen one's in
// their group) are not rescored and keep their one-shot difference (score −
// chosen score) as delta: rescoring is where the time goes, and far
// candidates are rarely what a round trades.
//
// Stored (puzzle/rundb.h, context_scores, context_rounds): every candidate
// score with its base (a key of the child's blocks, so any search that
// reaches the same child reuses them), every round with its child's measured
// KL, so that a rerun of the same command continues from the last stored
// round (and, inside a round, skips candidates already scored in that base).
#ifndef PZ_SEARCH_CTX_H
#define PZ_SEARCH_CTX_H

#include "dtype.h"
#include "rundb.h"
#include "search.h"
#include "weights.h"

typedef struct {
    int rounds;          // in-context rounds after the one-shot child (default 3)
    int tries;           // re-solves per round, penalty 0, step_penalty, 2x, 4x, ... (default 4)
    double step_penalty; // nats added per group changed from the base, second try (default 0.005)
    long tokens;         // context tokens (0: as many as the one-shot scores used)
    const char *data;    // context text (NULL: the file the one-shot scores came from)
    double margin;       // see above (INFINITY: rescore every candidate)
    int threads;
    pz_dt prec;          // products of the scorer (PZ_DT_F32 or PZ_DT_BF16)
} pz_ctx_params;

pz_ctx_params pz_ctx_default_params(void);

// A finished block's fp32 weights: its file (sha256 checked against the
// row), the parent's own half for a parent copy, or an empty noop half
// (shared with `puzzle score`). Free with pz_block_weights_free.
int pz_ctx_block_weights(pz_rundb *db, const pz_model *m, const pz_rundb_done_block *b, pz_block_weights *w,
                         char *err);

// Re-solves the search's problem with the scores as they are now and stores
// the result as a search of its own: the choice (an item per group), the
// stored solution's id and the MIP objective. 0, 1 when no solution was
// found, -1 with err.
typedef int (*pz_ctx_solve_fn)(void *user, int round, int *choice, long *solution_id, double *objective, char *err);

// Runs the rounds from the one-shot child (choice0, stored as solution0).
// search_key names the search (budget, scenario, limits, objective); the
// context windows and the margin are added to it to key the stored rounds.
// *best_solution receives the stored solution of the child with the lowest
// measured KL. The item scores of s are left as the last round set them.
// Progress goes to stderr. 0, or -1 with err.
int pz_search_in_context(pz_rundb *db, pz_search *s, const char *search_key, const pz_ctx_params *p,
                         const int *choice0, long solution0, pz_ctx_solve_fn solve, void *user, long *best_solution,
                         char *err);

#endif
