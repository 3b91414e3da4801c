// solver.h — the Puzzle search: a multiple-choice knapsack solved as a mixed
// integer program with GLPK (docs/ARCHITECTURE.md step 4; reference/puzzle-method.md §7).
//
// A problem is a list of GROUPS; each group is a list of ITEMS and exactly one
// item per group is chosen. A layer with 54 attention×FFN combinations is one
// group of 54 items; decoupled attention and FFN choices are two groups that
// share a layer index. Each item has a score (minimized: KL, LM-loss delta),
// a cost vector (time, weight bytes, KV bytes per token, parameters), an
// optional family index (e.g. the FFN width, for the uniform baseline) and a
// no-op flag (for the drop-layers baseline).
//
// Constraints are named linear rows  Σ coef(item)·x(item) ≤ rhs  where
//   coef = a_time·time + a_weight·weight_bytes + a_kv·kv_bytes_per_token
//          + a_params·params + explicit coefficient (set per item)
// so memory (weights + batch·seq·KV ≤ M), runtime (Σ time ≤ T), parameters,
// and any per-scenario latency / TTFT row are all one kind of row.
//
// Files: solver.c (the table and the MIP), greedy.c (the greedy baseline, also
// the MIP's first incumbent), baselines.c (one family everywhere, dropping
// layers), dense.c (the heuristics' dense copy of a problem, built through
// this header alone).
//
// This module stands alone on GLPK: it includes no other project header.
// Errors: functions that can fail return 0 (or an index ≥ 0, or a handle) on
// success and -1 (or NULL) on failure, and write one line into err (PZ_ERRLEN
// bytes, may be NULL), as everywhere else in the tree.
#ifndef PZ_SOLVER_H
#define PZ_SOLVER_H

#include <stddef.h>

#ifndef PZ_ERRLEN
#define PZ_ERRLEN 512
#endif

typedef struct pz_solver pz_solver;  // opaque problem

// Per-item resource costs. Units are the caller's; rows combine them linearly.
typedef struct {
    double time;                // seconds (or ms) per forward pass in the scenario
    double weight_bytes;        // parameter memory
    double kv_bytes_per_token;  // KV-cache bytes per cached token
    double params;              // parameter count
} pz_solver_costs;

typedef struct {
    // per MIP solve, LP and window passes included; the greedy fallback may add 10 %; default 60
    double time_limit_s;
    double mip_gap;       // relative gap; default 0 = proven optimal
    int presolve;         // GLPK MIP presolver; default 1
    int prune_dominated;  // drop items worse in score and every row; default 1
    // greedy baseline: GLPK's first incumbent (without presolve) and the answer when the time
    // limit leaves GLPK none (status FEASIBLE); default 1
    int greedy_incumbent;
    // solve over columns within a reduced-cost window of the LP, widen until certified; default 1
    int reduced_cost_fixing;
    int cuts;          // GLPK clique and MIR cuts; default 0
    int branching;     // GLPK br_tech (GLP_BR_FFV 1 .. GLP_BR_PCH 5); 0 = GLPK's default (Driebeck-Tomlin)
    int backtracking;  // GLPK bt_tech (GLP_BT_DFS 1 .. GLP_BT_BPH 4); 0 = GLPK's default (best local bound)
    int verbose;       // GLPK terminal output; default 0
} pz_solver_params;

pz_solver_params pz_solver_default_params(void);

typedef enum {
    PZ_SOLVER_OPTIMAL = 0,      // proven optimal (within mip_gap)
    PZ_SOLVER_FEASIBLE = 1,     // a feasible solution, not proven optimal (time limit, or a baseline)
    PZ_SOLVER_INFEASIBLE = 2,   // no choice meets the constraints (proven)
    PZ_SOLVER_NO_SOLUTION = 3,  // time limit hit before any feasible solution was found
} pz_solver_status;

const char *pz_solver_status_name(int status);

// One answer. The arrays are owned by the struct; pz_solver_solution_free
// releases them (the struct itself is the caller's, e.g. on the stack).
typedef struct {
    int status;  // pz_solver_status
    int n_groups;
    int n_constraints;
    int *choice;       // (n_groups) chosen item index within each group; -1 when no solution
    double objective;  // Σ score of the chosen items
    double bound;      // best proven lower bound on the objective (MIP only; = objective when optimal)
    double *value;     // (n_constraints) left-hand side of each constraint at the choice
    double seconds;    // wall time of the solve
} pz_solver_solution;

void pz_solver_solution_free(pz_solver_solution *sol);

// ---- building a problem ----------------------------------------------------
// An empty problem; NULL (err: out of memory) on failure. Free with pz_solver_free.
pz_solver *pz_solver_new(char *err);
void pz_solver_free(pz_solver *s);

// Adds a group for model layer `layer` (several groups may share one layer).
// Returns the group index (0, 1, ...) or -1.
int pz_solver_add_group(pz_solver *s, int layer, char *err);
// Adds an item to a group; family < 0 means none; noop != 0 marks the
// item that removes the sub-block. Returns the item index within the group, or -1.
int pz_solver_add_item(pz_solver *s, int group, double score, const pz_solver_costs *costs, int family,
                       int noop, char *err);
// Adds a row Σ coef·x ≤ rhs; the name is copied. rhs = INFINITY: no limit
// (the row is reported but not enforced). Returns the constraint index or -1.
int pz_solver_add_constraint(pz_solver *s, const char *name, double rhs, char *err);
// Multipliers of the cost vector in a row (all zero by default).
int pz_solver_set_cost_weights(pz_solver *s, int con, double a_time, double a_weight, double a_kv,
                               double a_params, char *err);
// An explicit coefficient for one item, added to the cost-vector part
// (e.g. per-scenario prefill time for a TTFT row).
int pz_solver_set_coef(pz_solver *s, int con, int group, int item, double coef, char *err);
int pz_solver_set_rhs(pz_solver *s, int con, double rhs, char *err);

// Convenience rows built from the cost vectors:
//   runtime:  Σ time ≤ t_max
//   memory:   Σ weight_bytes + kv_tokens·kv_bytes_per_token ≤ m_max  (kv_tokens = batch × sequence)
//   params:   Σ params ≤ p_max
int pz_solver_add_runtime(pz_solver *s, const char *name, double t_max, char *err);
int pz_solver_add_memory(pz_solver *s, const char *name, double kv_tokens, double m_max, char *err);
int pz_solver_add_params(pz_solver *s, const char *name, double p_max, char *err);

// ---- inspecting --------------------------------------------------------------
// These cannot fail: a bad index (or no memory to index a changed problem)
// gives NAN, NULL or 0.
int pz_solver_n_groups(const pz_solver *s);
int pz_solver_n_items(const pz_solver *s, int group);
int pz_solver_n_constraints(const pz_solver *s);
const char *pz_solver_constraint_name(const pz_solver *s, int con);
double pz_solver_rhs(const pz_solver *s, int con);
double pz_solver_score(const pz_solver *s, int group, int item);
double pz_solver_coef(const pz_solver *s, int con, int group, int item);
// The layer a group was added for; the family and no-op flag of an item
// (-1 for a bad index).
int pz_solver_group_layer(const pz_solver *s, int group);
int pz_solver_item_family(const pz_solver *s, int group, int item);
int pz_solver_item_noop(const pz_solver *s, int group, int item);

// Fills sol (objective, values, status FEASIBLE or INFEASIBLE by the rows) for
// a given choice (n_groups item indices). sol must be freed.
int pz_solver_evaluate(pz_solver *s, const int *choice, pz_solver_solution *sol, char *err);

// ---- solving ------------------------------------------------------------------
// One MIP solve (GLPK glp_intopt, branch-and-cut). params may be NULL (defaults).
// Returns 0 whenever an answer (including INFEASIBLE / NO_SOLUTION) was found;
// -1 on an internal error.
int pz_solver_solve(pz_solver *s, const pz_solver_params *params, pz_solver_solution *sol, char *err);

// Up to k diverse solutions: after each solution y the row
// Σ_{items chosen in y} x ≤ alpha · n_groups is added (alpha = 0.8: at least 20 %
// of the groups differ from every earlier solution). sols must hold k entries;
// *n_found gets the number of solutions (stops at the first non-solution).
// Each must be freed. The diversity rows are not kept on the problem.
int pz_solver_solve_diverse(pz_solver *s, const pz_solver_params *params, int k, double alpha,
                            pz_solver_solution *sols, int *n_found, char *err);

// ---- infeasibility -------------------------------------------------------------
// For each constraint c: the minimum of its left side subject to every OTHER
// constraint (and one item per group). If min_value[c] > rhs[c], c cannot be
// met at all while the others hold: it is violated and needs ≥ min_value[c]
// (ratio = min_value / rhs times the budget). For a runtime row min_value is
// the fastest feasible child. The binding constraint is the violated one with
// the largest ratio (-1 when none is violated: the constraints conflict only
// jointly, or the problem is feasible).
typedef struct {
    int n_constraints;
    int feasible;  // the full problem is feasible
    int binding;   // index of the binding constraint, or -1
    double
        *min_value;  // (n) min achievable LHS of c under the others; NAN if the others alone are infeasible
    double *rhs;     // (n) copy of the limits
    double *ratio;   // (n) min_value / rhs (INFINITY when rhs ≤ 0 < min_value)
    int *violated;   // (n) 1 if min_value > rhs
    int *exact;      // (n) 1 if min_value was proven optimal (0: time limit, a bound)
    char **names;    // (n) copies of the names
} pz_solver_infeasibility;

int pz_solver_explain(pz_solver *s, const pz_solver_params *params, pz_solver_infeasibility *out, char *err);
void pz_solver_infeasibility_free(pz_solver_infeasibility *inf);
// Human summary, e.g. "memory needs >= 1.31e+11 (x1.31 of the budget); ...".
// Returns the length that would have been written (snprintf semantics).
int pz_solver_infeasibility_format(const pz_solver_infeasibility *inf, char *buf, size_t n);

// ---- baselines (greedy.c, baselines.c) ----------------------------------------------
// Each fills sol with status FEASIBLE and a choice that meets every row, or
// INFEASIBLE (choice of its last attempt, values filled) when it cannot;
// bound is NAN. -1 (err) only on an empty group or out of memory.
//
// greedy: start from the best-score item of every group; while any row is
//   violated, take the single-group swap with the least score increase per
//   unit of normalized excess removed (Σ_c max(0, lhs_c − rhs_c)/|rhs_c|).
//   max_seconds > 0 (finite): give up (INFEASIBLE, the choice so far) once that
//   much wall time has passed; ≤ 0 or INFINITY: no limit.
int pz_solver_greedy(pz_solver *s, double max_seconds, pz_solver_solution *sol, char *err);
// uniform: for each family f, every group that has items of family f takes
//   its best-score item of that family, the others their best-score item; the
//   best-scoring such choice that meets the rows wins (e.g. one FFN width everywhere).
int pz_solver_uniform(pz_solver *s, pz_solver_solution *sol, char *err);
// drop-layers: start from the best-score items; remove whole layers (every
//   group of the layer takes its no-op item) in order of least score increase,
//   among removals that reduce the excess, until the rows hold.
int pz_solver_drop_layers(pz_solver *s, pz_solver_solution *sol, char *err);
// drop-layers by a given order: the same, but among the removals that reduce
//   the excess the layer with the smallest key[layer] goes first (ShortGPT:
//   key = block influence, 1 − mean cos(layer input, layer output) on
//   calibration text). Layers with l >= n_key or a non-finite key stay.
int pz_solver_drop_layers_by(pz_solver *s, const double *key, int n_key, pz_solver_solution *sol,
                             char *err);

#endif
