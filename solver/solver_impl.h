// solver_impl.h — private state of a pz_solver, shared by solver.c and baselines.c.
#ifndef PZ_SOLVER_IMPL_H
#define PZ_SOLVER_IMPL_H

#include "solver.h"

typedef struct {
  int group;
  double score;
  pz_solver_costs costs;
  int family;
  int noop;
} pz_solver_item;

typedef struct {
  char *name;
  double rhs;
  double a_time, a_weight, a_kv, a_params;
} pz_solver_con;

typedef struct {
  int con, item;  // item: global index
  double coef;
} pz_solver_explicit;

struct pz_solver {
  int n_groups, cap_groups;
  int *group_layer;   // (n_groups)
  int *group_first;   // (n_groups) first global item index (items of a group are contiguous after finalize)
  int *group_count;   // (n_groups)
  int n_items, cap_items;
  pz_solver_item *items;   // in insertion order
  int *order;              // (n_items) global indices sorted by group (built by pz__finalize)
  int n_cons, cap_cons;
  pz_solver_con *cons;
  int n_expl, cap_expl;
  pz_solver_explicit *expl;
  double *A;               // (n_cons, n_items) dense coefficients, by insertion index (pz__finalize)
  int dirty;
  char err[256];
};

// Builds order/group_first and the dense matrix A if anything changed. Returns 0/-1.
int pz__finalize(pz_solver *s);
// Global (insertion) index of item `item` of group `g`.
static inline int pz__gidx(const pz_solver *s, int g, int item) { return s->order[s->group_first[g] + item]; }
// Allocates a solution's arrays. Returns 0/-1.
int pz__solution_alloc(pz_solver *s, pz_solver_solution *sol);
// Normalized excess Σ_c max(0, v_c − rhs_c) / max(|rhs_c|, tiny); 0 = feasible.
double pz__excess(const pz_solver *s, const double *value);
void pz__seterr(pz_solver *s, const char *fmt, ...);
// The greedy baseline, giving up (status INFEASIBLE) once CLOCK_MONOTONIC passes deadline (s).
int pz__greedy(pz_solver *s, pz_solver_solution *sol, double deadline);

#endif
