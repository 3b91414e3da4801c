// dense.h — a dense, read-only copy of a pz_solver problem for the heuristics
// (greedy.c, baselines.c). It is built through solver.h's public accessors
// only, so the heuristics share no internals with the MIP (solver.c), and
// their inner loops index plain arrays.
#ifndef PZ_SOLVER_DENSE_H
#define PZ_SOLVER_DENSE_H

#include "solver.h"

typedef struct {
    int n_groups, n_items, n_cons;
    int *first;     // (n_groups) flat index of item 0 of each group
    int *count;     // (n_groups) items per group
    int *layer;     // (n_groups)
    double *score;  // (n_items) by flat index
    int *family;    // (n_items)
    int *noop;      // (n_items)
    double *coef;   // (n_cons, n_items) row coefficients
    double *rhs;    // (n_cons) limits (INFINITY: not enforced)
} pz_dense;

// Copies s into d (d's arrays are owned by d; free with pz_dense_free).
// -1 with err on an empty group or out of memory.
int pz_dense_init(pz_dense *d, const pz_solver *s, char *err);
void pz_dense_free(pz_dense *d);

static inline double pz_dense_score(const pz_dense *d, int g, int a) { return d->score[d->first[g] + a]; }
static inline double pz_dense_coef(const pz_dense *d, int c, int g, int a) {
    return d->coef[(size_t)c * d->n_items + d->first[g] + a];
}

// Best-score item of group g (lowest index on ties).
int pz_dense_best_item(const pz_dense *d, int g);
// Row values (n_cons) and objective of a complete choice.
void pz_dense_values(const pz_dense *d, const int *choice, double *value, double *objective);
// Normalized excess Σ_c max(0, v_c − rhs_c) / max(|rhs_c|, tiny) over the finite
// rows; 0 = every row holds.
double pz_dense_excess(const pz_dense *d, const double *value);

// A baseline's answer: pz_dense_start allocates sol's arrays (the caller frees
// them with pz_solver_solution_free) and puts every group at its best-score
// item; pz_dense_finish fills objective and values from sol->choice and sets
// status FEASIBLE or INFEASIBLE by the rows, bound NAN.
int pz_dense_start(const pz_dense *d, pz_solver_solution *sol, char *err);
void pz_dense_finish(const pz_dense *d, pz_solver_solution *sol);

#endif
