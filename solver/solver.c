// solver.c — the problem table and the GLPK mixed-integer program behind it.
//
// Formulation (reference/puzzle-method.md §7): one binary column per kept
// item, one fixed row Σ_{items of g} x = 1 per group, one ≤ row per finite
// constraint, one ≤ row per diversity cut; minimize Σ score·x. Rows are scaled
// by their largest |coefficient| so GLPK's tolerances are relative. Items that
// are no better than another item of the same group in the objective and in
// every row (dominated) are dropped before GLPK sees them: they can never be
// needed in an optimal solution. Then the reduced-cost window (see mip_run):
// the LP relaxation's reduced costs d_k bound the objective of any solution
// that uses column k from below by z_LP + d_k, so the MIP is first solved over
// the columns with d_k <= delta only and accepted when its optimum is within
// delta of z_LP (proven optimal for the whole problem), else delta widens.
// On paper-scale libraries this is 7-10x faster than GLPK alone
// (results/solver_bench.md). The greedy incumbent and time-limit fallback are
// pz_solver_greedy (greedy.c), reached through solver.h like any caller.
#include "solver.h"
#include "seterr.h"

#include <glpk.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// The problem table. Items are kept in insertion order; finalize() builds the
// by-group order and the dense coefficient matrix when anything changed.
typedef struct {
    int group;
    double score;
    pz_solver_costs costs;
    int family;
    int noop;
} table_item;

typedef struct {
    char *name;
    double rhs;
    double a_time, a_weight, a_kv, a_params;
} table_row;

typedef struct {
    int con, item;  // item: global (insertion) index
    double coef;
} explicit_coef;

struct pz_solver {
    int n_groups, cap_groups;
    int *group_layer;  // (n_groups)
    int *group_first;  // (n_groups) first position in order (items of a group are contiguous there)
    int *group_count;  // (n_groups)
    int n_items, cap_items;
    table_item *items;  // in insertion order
    int *order;         // (n_items) global indices sorted by group (built by finalize)
    int n_cons, cap_cons;
    table_row *cons;
    int n_expl, cap_expl;
    explicit_coef *expl;
    double *A;  // (n_cons, n_items) dense coefficients, by insertion index (finalize)
    int dirty;
};

// Global (insertion) index of item `it` of group `g`.
static inline int gidx(const pz_solver *s, int g, int it) { return s->order[s->group_first[g] + it]; }


// The LP relaxation by simplex: 0 at an optimum, GLP_ENOPFS when it has no
// feasible point, -1000 - (glp_simplex's code) on any other failure.
static int lp_solve(glp_prob *P, const glp_smcp *sm) {
    int lr = glp_simplex(P, sm);
    int ls = glp_get_status(P);
    if (lr == 0 && ls == GLP_NOFEAS) return GLP_ENOPFS;
    if (lr != 0 || ls != GLP_OPT) return -1000 - lr;
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

pz_solver_params pz_solver_default_params(void) {
    pz_solver_params p = {0};
    p.time_limit_s = 60.0;
    p.mip_gap = 0.0;
    p.presolve = 1;
    p.prune_dominated = 1;
    p.greedy_incumbent = 1;
    p.reduced_cost_fixing = 1;
    p.cuts = 0;
    p.verbose = 0;
    return p;
}

const char *pz_solver_status_name(int status) {
    switch (status) {
        case PZ_SOLVER_OPTIMAL: return "optimal";
        case PZ_SOLVER_FEASIBLE: return "feasible";
        case PZ_SOLVER_INFEASIBLE: return "infeasible";
        case PZ_SOLVER_NO_SOLUTION: return "no solution (time limit)";
        default: return "unknown";
    }
}

void pz_solver_solution_free(pz_solver_solution *sol) {
    if (!sol) return;
    free(sol->choice);
    free(sol->value);
    sol->choice = NULL;
    sol->value = NULL;
}

// ---- building ----------------------------------------------------------------

pz_solver *pz_solver_new(char *err) {
    pz_solver *s = calloc(1, sizeof *s);
    if (!s) {
        seterr(err, "out of memory");
        return NULL;
    }
    s->dirty = 1;
    return s;
}

void pz_solver_free(pz_solver *s) {
    if (!s) return;
    for (int c = 0; c < s->n_cons; c++) free(s->cons[c].name);
    free(s->cons);
    free(s->group_layer);
    free(s->group_first);
    free(s->group_count);
    free(s->items);
    free(s->order);
    free(s->expl);
    free(s->A);
    free(s);
}

static int grow(void **p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int nc = *cap ? *cap * 2 : 16;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return -1;
    *p = q;
    *cap = nc;
    return 0;
}

int pz_solver_add_group(pz_solver *s, int layer, char *err) {
    int cap = s->cap_groups;
    if (grow((void **)&s->group_layer, &cap, s->n_groups + 1, sizeof(int))) goto oom;
    cap = s->cap_groups;
    if (grow((void **)&s->group_first, &cap, s->n_groups + 1, sizeof(int))) goto oom;
    cap = s->cap_groups;
    if (grow((void **)&s->group_count, &cap, s->n_groups + 1, sizeof(int))) goto oom;
    s->cap_groups = cap;
    s->group_layer[s->n_groups] = layer;
    s->group_count[s->n_groups] = 0;
    s->dirty = 1;
    return s->n_groups++;
oom:
    seterr(err, "out of memory");
    return -1;
}

int pz_solver_add_item(pz_solver *s, int group, double score, const pz_solver_costs *costs, int family,
                       int noop, char *err) {
    if (group < 0 || group >= s->n_groups) {
        seterr(err, "add_item: no group %d", group);
        return -1;
    }
    if (!isfinite(score)) {
        seterr(err, "add_item: score of group %d is not finite", group);
        return -1;
    }
    if (grow((void **)&s->items, &s->cap_items, s->n_items + 1, sizeof *s->items)) {
        seterr(err, "out of memory");
        return -1;
    }
    table_item *it = &s->items[s->n_items++];
    it->group = group;
    it->score = score;
    if (costs)
        it->costs = *costs;
    else
        memset(&it->costs, 0, sizeof it->costs);
    it->family = family;
    it->noop = noop != 0;
    s->dirty = 1;
    return s->group_count[group]++;
}

int pz_solver_add_constraint(pz_solver *s, const char *name, double rhs, char *err) {
    if (isnan(rhs)) {
        seterr(err, "constraint %s: rhs is NaN", name ? name : "?");
        return -1;
    }
    if (grow((void **)&s->cons, &s->cap_cons, s->n_cons + 1, sizeof *s->cons)) {
        seterr(err, "out of memory");
        return -1;
    }
    table_row *c = &s->cons[s->n_cons];
    memset(c, 0, sizeof *c);
    c->name = strdup(name ? name : "constraint");
    if (!c->name) {
        seterr(err, "out of memory");
        return -1;
    }
    c->rhs = rhs;
    s->dirty = 1;
    return s->n_cons++;
}

int pz_solver_set_cost_weights(pz_solver *s, int con, double a_time, double a_weight, double a_kv,
                               double a_params, char *err) {
    if (con < 0 || con >= s->n_cons) {
        seterr(err, "no constraint %d", con);
        return -1;
    }
    table_row *c = &s->cons[con];
    c->a_time = a_time;
    c->a_weight = a_weight;
    c->a_kv = a_kv;
    c->a_params = a_params;
    s->dirty = 1;
    return 0;
}

int pz_solver_set_coef(pz_solver *s, int con, int group, int it, double coef, char *err) {
    if (con < 0 || con >= s->n_cons || group < 0 || group >= s->n_groups || it < 0 ||
        it >= s->group_count[group] || !isfinite(coef)) {
        seterr(err, "set_coef: bad constraint %d / group %d / item %d or coefficient", con, group, it);
        return -1;
    }
    // find the global index: the item-th item inserted into the group
    int gi = -1, k = 0;
    for (int i = 0; i < s->n_items; i++)
        if (s->items[i].group == group && k++ == it) {
            gi = i;
            break;
        }
    if (grow((void **)&s->expl, &s->cap_expl, s->n_expl + 1, sizeof *s->expl)) {
        seterr(err, "out of memory");
        return -1;
    }
    s->expl[s->n_expl++] = (explicit_coef){con, gi, coef};
    s->dirty = 1;
    return 0;
}

int pz_solver_set_rhs(pz_solver *s, int con, double rhs, char *err) {
    if (con < 0 || con >= s->n_cons || isnan(rhs)) {
        seterr(err, "set_rhs: bad constraint %d", con);
        return -1;
    }
    s->cons[con].rhs = rhs;
    return 0;
}

int pz_solver_add_runtime(pz_solver *s, const char *name, double t_max, char *err) {
    int c = pz_solver_add_constraint(s, name ? name : "runtime", t_max, err);
    if (c >= 0) pz_solver_set_cost_weights(s, c, 1, 0, 0, 0, err);
    return c;
}

int pz_solver_add_memory(pz_solver *s, const char *name, double kv_tokens, double m_max, char *err) {
    int c = pz_solver_add_constraint(s, name ? name : "memory", m_max, err);
    if (c >= 0) pz_solver_set_cost_weights(s, c, 0, 1, kv_tokens, 0, err);
    return c;
}

int pz_solver_add_params(pz_solver *s, const char *name, double p_max, char *err) {
    int c = pz_solver_add_constraint(s, name ? name : "params", p_max, err);
    if (c >= 0) pz_solver_set_cost_weights(s, c, 0, 0, 0, 1, err);
    return c;
}

static int finalize(pz_solver *s, char *err) {
    if (!s->dirty) return 0;
    free(s->order);
    free(s->A);
    s->order = malloc(((size_t)s->n_items + 1) * sizeof *s->order);
    s->A = calloc((size_t)s->n_cons * s->n_items + 1, sizeof *s->A);
    if (!s->order || !s->A) {
        seterr(err, "out of memory");
        return -1;
    }
    int pos = 0;
    for (int g = 0; g < s->n_groups; g++) {
        s->group_first[g] = pos;
        pos += s->group_count[g];
    }
    int *fill = calloc((size_t)s->n_groups + 1, sizeof *fill);
    if (!fill) {
        seterr(err, "out of memory");
        return -1;
    }
    for (int i = 0; i < s->n_items; i++) {
        int g = s->items[i].group;
        s->order[s->group_first[g] + fill[g]++] = i;
    }
    free(fill);
    for (int c = 0; c < s->n_cons; c++) {
        const table_row *k = &s->cons[c];
        double *row = s->A + (size_t)c * s->n_items;
        for (int i = 0; i < s->n_items; i++) {
            const pz_solver_costs *q = &s->items[i].costs;
            row[i] = k->a_time * q->time + k->a_weight * q->weight_bytes + k->a_kv * q->kv_bytes_per_token +
                     k->a_params * q->params;
        }
    }
    for (int e = 0; e < s->n_expl; e++)
        s->A[(size_t)s->expl[e].con * s->n_items + s->expl[e].item] += s->expl[e].coef;
    s->dirty = 0;
    return 0;
}

// ---- inspecting ----------------------------------------------------------------

int pz_solver_n_groups(const pz_solver *s) { return s->n_groups; }
int pz_solver_n_items(const pz_solver *s, int g) { return g >= 0 && g < s->n_groups ? s->group_count[g] : 0; }
int pz_solver_n_constraints(const pz_solver *s) { return s->n_cons; }
int pz_solver_group_layer(const pz_solver *s, int g) {
    return g >= 0 && g < s->n_groups ? s->group_layer[g] : -1;
}

// Insertion index of item `it` of group g (without finalize: the it-th item added to g), or -1.
static int find_item(const pz_solver *s, int g, int it) {
    if (g < 0 || g >= s->n_groups || it < 0 || it >= s->group_count[g]) return -1;
    if (!s->dirty) return gidx(s, g, it);
    for (int i = 0, k = 0; i < s->n_items; i++)
        if (s->items[i].group == g && k++ == it) return i;
    return -1;
}

int pz_solver_item_family(const pz_solver *s, int g, int it) {
    int i = find_item(s, g, it);
    return i < 0 ? -1 : s->items[i].family;
}

int pz_solver_item_noop(const pz_solver *s, int g, int it) {
    int i = find_item(s, g, it);
    return i < 0 ? -1 : s->items[i].noop;
}
const char *pz_solver_constraint_name(const pz_solver *s, int c) {
    return c >= 0 && c < s->n_cons ? s->cons[c].name : NULL;
}
double pz_solver_rhs(const pz_solver *s, int c) { return c >= 0 && c < s->n_cons ? s->cons[c].rhs : NAN; }

double pz_solver_score(const pz_solver *s, int g, int item) {
    if (finalize((pz_solver *)s, NULL) || g < 0 || g >= s->n_groups || item < 0 || item >= s->group_count[g])
        return NAN;
    return s->items[gidx(s, g, item)].score;
}

double pz_solver_coef(const pz_solver *s, int c, int g, int item) {
    if (finalize((pz_solver *)s, NULL) || c < 0 || c >= s->n_cons || g < 0 || g >= s->n_groups || item < 0 ||
        item >= s->group_count[g])
        return NAN;
    return s->A[(size_t)c * s->n_items + gidx(s, g, item)];
}

static int solution_alloc(const pz_solver *s, pz_solver_solution *sol, char *err) {
    memset(sol, 0, sizeof *sol);
    sol->n_groups = s->n_groups;
    sol->n_constraints = s->n_cons;
    sol->choice = malloc(((size_t)s->n_groups + 1) * sizeof *sol->choice);
    sol->value = calloc((size_t)s->n_cons + 1, sizeof *sol->value);
    if (!sol->choice || !sol->value) {
        pz_solver_solution_free(sol);
        seterr(err, "out of memory");
        return -1;
    }
    for (int g = 0; g < s->n_groups; g++) sol->choice[g] = -1;
    sol->objective = NAN;
    sol->bound = NAN;
    return 0;
}

// 1 if a row with a finite limit is exceeded.
static int violates(const pz_solver *s, const double *value) {
    for (int c = 0; c < s->n_cons; c++)
        if (isfinite(s->cons[c].rhs) && value[c] > s->cons[c].rhs) return 1;
    return 0;
}

// Objective and row values of a complete choice (no status change).
static void eval_choice(const pz_solver *s, const int *choice, double *objective, double *value) {
    double obj = 0;
    for (int c = 0; c < s->n_cons; c++) value[c] = 0;
    for (int g = 0; g < s->n_groups; g++) {
        int gi = gidx(s, g, choice[g]);
        obj += s->items[gi].score;
        for (int c = 0; c < s->n_cons; c++) value[c] += s->A[(size_t)c * s->n_items + gi];
    }
    *objective = obj;
}

int pz_solver_evaluate(pz_solver *s, const int *choice, pz_solver_solution *sol, char *err) {
    if (finalize(s, err) || solution_alloc(s, sol, err)) return -1;
    for (int g = 0; g < s->n_groups; g++) {
        if (choice[g] < 0 || choice[g] >= s->group_count[g]) {
            seterr(err, "evaluate: group %d has no item %d", g, choice[g]);
            pz_solver_solution_free(sol);
            return -1;
        }
        sol->choice[g] = choice[g];
    }
    eval_choice(s, choice, &sol->objective, sol->value);
    sol->status = violates(s, sol->value) ? PZ_SOLVER_INFEASIBLE : PZ_SOLVER_FEASIBLE;
    return 0;
}

// ---- the MIP -------------------------------------------------------------------

typedef struct {
    const double *obj;   // (n_items) objective per global item
    const int *use_con;  // (n_cons) 1 = enforce this row
    int n_div;           // diversity rows
    const int *div;      // (n_div, n_groups) chosen item index per group of each earlier solution
    double div_rhs;
    const int *incumbent;  // (n_groups) a feasible choice to start from, or NULL
    double t_start;        // when the caller's clock started (the time limit counts from it); 0 = now
} mip_spec;

typedef struct {
    double bound;
    int n_cols;
    double *inc_x;  // (n_cols + 1) 1-based incumbent for glp_ios_heur_sol, or NULL
    int given;
} cb_state;

static void mip_callback(glp_tree *T, void *info) {
    cb_state *st = info;
    int reason = glp_ios_reason(T);
    if (reason == GLP_IHEUR && st->inc_x && !st->given) {
        st->given = 1;
        // Only when the tree's problem is ours (no presolve: same columns).
        if (glp_get_num_cols(glp_ios_get_prob(T)) == st->n_cols) glp_ios_heur_sol(T, st->inc_x);
    }
    if (reason == GLP_ISELECT || reason == GLP_IBINGO || reason == GLP_IHEUR) {
        int node = glp_ios_best_node(T);
        if (node) st->bound = glp_ios_node_bound(T, node);
    }
}

static int in_div(const mip_spec *m, int n_groups, int d, int g, int item) {
    return m->div[(size_t)d * n_groups + g] == item;
}

static int mip_run(pz_solver *s, const pz_solver_params *p, const mip_spec *m, pz_solver_solution *sol,
                   char *err) {
    double t0 = m->t_start > 0 ? m->t_start : now_s();
    if (finalize(s, err) || solution_alloc(s, sol, err)) return -1;
    const int G = s->n_groups, N = s->n_items, C = s->n_cons;
    for (int g = 0; g < G; g++)
        if (s->group_count[g] == 0) {
            seterr(err, "group %d has no items", g);
            pz_solver_solution_free(sol);
            return -1;
        }
    int rc = -1;
    glp_prob *P = NULL;
    int *col_of = malloc(((size_t)N + 1) * sizeof *col_of);    // by position in order -> column (0 = pruned)
    int *item_of = malloc(((size_t)N + 1) * sizeof *item_of);  // column -> position in order
    int *ia = NULL, *ja = NULL;
    double *ar = NULL, *inc_x = NULL, *dj = NULL;
    if (!col_of || !item_of) goto oom;

    // dominance pruning, within each group, over the objective and the enforced rows
    int n_cols = 0;
    for (int g = 0; g < G; g++) {
        int f = s->group_first[g], n = s->group_count[g];
        for (int a = 0; a < n; a++) {
            int ga = s->order[f + a], dominated = 0;
            for (int b = 0; b < n && p->prune_dominated && !dominated; b++) {
                if (b == a) continue;
                int gb = s->order[f + b];
                int strict = 0, ok = 1;
                if (m->obj[gb] > m->obj[ga]) continue;
                if (m->obj[gb] < m->obj[ga]) strict = 1;
                for (int c = 0; c < C && ok; c++) {
                    if (!m->use_con[c] || !isfinite(s->cons[c].rhs)) continue;
                    double ca = s->A[(size_t)c * N + ga], cb = s->A[(size_t)c * N + gb];
                    if (cb > ca)
                        ok = 0;
                    else if (cb < ca)
                        strict = 1;
                }
                for (int d = 0; d < m->n_div && ok; d++) {
                    int ia_ = in_div(m, G, d, g, a), ib_ = in_div(m, G, d, g, b);
                    if (ib_ > ia_)
                        ok = 0;
                    else if (ib_ < ia_)
                        strict = 1;
                }
                if (ok && (strict || b < a)) dominated = 1;
            }
            col_of[f + a] = dominated ? 0 : ++n_cols;
            if (!dominated) item_of[n_cols] = f + a;
        }
    }

    P = glp_create_prob();
    glp_set_obj_dir(P, GLP_MIN);
    glp_add_cols(P, n_cols);
    for (int j = 1; j <= n_cols; j++) {
        glp_set_col_kind(P, j, GLP_BV);
        glp_set_obj_coef(P, j, m->obj[s->order[item_of[j]]]);
    }
    int n_rows = G;
    for (int c = 0; c < C; c++)
        if (m->use_con[c] && isfinite(s->cons[c].rhs)) n_rows++;
    n_rows += m->n_div;
    glp_add_rows(P, n_rows);
    size_t nz_cap = (size_t)n_cols * (1 + C + m->n_div) + 1;
    ia = malloc(nz_cap * sizeof *ia);
    ja = malloc(nz_cap * sizeof *ja);
    ar = malloc(nz_cap * sizeof *ar);
    if (!ia || !ja || !ar) goto oom;
    size_t nz = 0;
    int r = 0;
    for (int g = 0; g < G; g++) {  // exactly one item per group
        glp_set_row_bnds(P, ++r, GLP_FX, 1.0, 1.0);
        for (int a = 0; a < s->group_count[g]; a++) {
            int j = col_of[s->group_first[g] + a];
            if (j) {
                ++nz;
                ia[nz] = r, ja[nz] = j, ar[nz] = 1.0;
            }
        }
    }
    for (int c = 0; c < C; c++) {  // resource rows, scaled by their largest |coefficient|
        if (!m->use_con[c] || !isfinite(s->cons[c].rhs)) continue;
        const double *row = s->A + (size_t)c * N;
        double mx = 0;
        for (int j = 1; j <= n_cols; j++) mx = fmax(mx, fabs(row[s->order[item_of[j]]]));
        if (mx == 0) mx = 1;
        glp_set_row_bnds(P, ++r, GLP_UP, 0.0, s->cons[c].rhs / mx);
        for (int j = 1; j <= n_cols; j++) {
            double v = row[s->order[item_of[j]]];
            if (v != 0) {
                ++nz;
                ia[nz] = r, ja[nz] = j, ar[nz] = v / mx;
            }
        }
    }
    for (int d = 0; d < m->n_div; d++) {  // diversity cuts
        glp_set_row_bnds(P, ++r, GLP_UP, 0.0, floor(m->div_rhs + 1e-9));
        for (int g = 0; g < G; g++) {
            int j = col_of[s->group_first[g] + m->div[(size_t)d * G + g]];
            if (j) {
                ++nz;
                ia[nz] = r, ja[nz] = j, ar[nz] = 1.0;
            }
        }
    }
    glp_load_matrix(P, (int)nz, ia, ja, ar);

    cb_state st = {NAN, n_cols, NULL, 0};
    if (m->incumbent && !p->presolve) {  // GLPK's tree holds our columns only without presolve
        inc_x = calloc((size_t)n_cols + 1, sizeof *inc_x);
        if (!inc_x) goto oom;
        int ok = 1;
        for (int g = 0; g < G && ok; g++) {
            int j = col_of[s->group_first[g] + m->incumbent[g]];
            if (!j)
                ok = 0;  // the incumbent uses a pruned item: skip it
            else
                inc_x[j] = 1.0;
        }
        if (ok) st.inc_x = inc_x;
    }

    glp_iocp io;
    glp_init_iocp(&io);
    io.msg_lev = p->verbose ? GLP_MSG_ON : GLP_MSG_OFF;
    io.presolve = p->presolve ? GLP_ON : GLP_OFF;
    io.mip_gap = p->mip_gap;
    double tl = p->time_limit_s;
    io.tm_lim = tl > 0 && tl < 2e6 ? (int)((tl - (now_s() - t0)) * 1000.0) : INT_MAX;
    if (io.tm_lim < 1) io.tm_lim = 1;
    // Cover cuts are left off: GLPK 5.0's glp_cov_init aborts (glp_add_cols with
    // 0 columns) when no row qualifies, which happens on these problems.
    if (p->cuts) io.clq_cuts = io.mir_cuts = GLP_ON;
    if (p->branching >= GLP_BR_FFV && p->branching <= GLP_BR_PCH) io.br_tech = p->branching;
    if (p->backtracking >= GLP_BT_DFS && p->backtracking <= GLP_BT_BPH) io.bt_tech = p->backtracking;
    io.cb_func = mip_callback;
    io.cb_info = &st;
    if (!p->verbose) glp_term_out(GLP_OFF);
    int ret = 0, bound_invalid = 0;
    glp_smcp sm;
    glp_init_smcp(&sm);
    sm.msg_lev = io.msg_lev;
    sm.presolve = GLP_OFF;
    if (!p->presolve || p->reduced_cost_fixing) {  // glp_intopt without presolve needs an optimal LP basis
        glp_adv_basis(P, 0);
        ret = lp_solve(P, &sm);
    }
    if (ret == 0 && p->reduced_cost_fixing) {
        // Reduced-cost fixing with a growing window. With LP optimum z and reduced
        // costs d, every binary solution using column k costs at least z + d_k.
        // Solve the MIP over the columns with d_k <= delta only; if its optimum
        // is <= z + delta it is optimal for the whole problem, else (or if the
        // restricted problem is infeasible) widen delta and solve again.
        double z_lp = glp_get_obj_val(P);
        dj = malloc(((size_t)n_cols + 1) * sizeof *dj);
        if (!dj) goto oom;
        for (int j = 1; j <= n_cols; j++) dj[j] = glp_get_col_dual(P, j);
        double tol = 1e-9 * (1 + fabs(z_lp));
        double delta = 0.002 * (1 + fabs(z_lp));
        for (;;) {
            int removed = 0;
            for (int j = 1; j <= n_cols; j++) {
                if (dj[j] > delta + tol)
                    glp_set_col_bnds(P, j, GLP_FX, 0.0, 0.0), removed++;
                else
                    glp_set_col_bnds(P, j, GLP_DB, 0.0, 1.0);
            }
            double left = tl > 0 && tl < 2e6 ? tl - (now_s() - t0) : 2e6;
            io.tm_lim = left < 2e6 ? (int)(left * 1000.0) : INT_MAX;
            if (io.tm_lim < 1) io.tm_lim = 1;
            ret = 0;
            if (!p->presolve) ret = lp_solve(P, &sm);
            if (ret == 0) ret = glp_intopt(P, &io);
            if (!removed) break;  // that was the whole problem
            int ms = glp_mip_status(P);
            if (ret == 0 && ms == GLP_OPT) {
                double z = glp_mip_obj_val(P);
                if (z <= z_lp + delta + tol) break;  // certified
                delta = z - z_lp;                    // the next window holds this solution and certifies
                continue;
            }
            if (ret == GLP_ENOPFS || (ret == 0 && ms == GLP_NOFEAS)) {
                delta *= 8;
                continue;
            }
            if (ret == GLP_ETMLIM && ms == GLP_FEAS) {
                bound_invalid = 1;  // a bound of the restricted problem says nothing of the whole
                break;
            }
            if (ret == GLP_ETMLIM) {  // no solution in the window before the limit
                ret = GLP_ETMLIM;
                break;
            }
            break;
        }
    } else if (ret == 0) {
        ret = glp_intopt(P, &io);
    }
    if (!p->verbose) glp_term_out(GLP_ON);

    int mst = glp_mip_status(P);
    if (ret == GLP_ENOPFS || mst == GLP_NOFEAS) {
        sol->status = PZ_SOLVER_INFEASIBLE;
    } else if (ret != 0 && ret != GLP_ETMLIM && ret != GLP_EMIPGAP && ret != GLP_ESTOP) {
        seterr(err, "GLPK glp_intopt failed (code %d)", ret);
        goto done;
    } else if (mst == GLP_OPT || mst == GLP_FEAS) {
        sol->status = (ret == 0 && mst == GLP_OPT) ? PZ_SOLVER_OPTIMAL : PZ_SOLVER_FEASIBLE;
        for (int j = 1; j <= n_cols; j++) {
            if (glp_mip_col_val(P, j) > 0.5) {
                int pos = item_of[j], g = s->items[s->order[pos]].group;
                sol->choice[g] = pos - s->group_first[g];
            }
        }
        for (int g = 0; g < G; g++)
            if (sol->choice[g] < 0) {
                seterr(err, "GLPK solution leaves group %d empty", g);
                goto done;
            }
        double objsum = 0;
        for (int g = 0; g < G; g++) objsum += m->obj[gidx(s, g, sol->choice[g])];
        double dummy;
        eval_choice(s, sol->choice, &dummy, sol->value);
        sol->objective = objsum;
        sol->bound = sol->status == PZ_SOLVER_OPTIMAL ? objsum : bound_invalid ? NAN : fmin(st.bound, objsum);
    } else {
        sol->status = ret == GLP_ETMLIM ? PZ_SOLVER_NO_SOLUTION : PZ_SOLVER_INFEASIBLE;
    }
    rc = 0;
    goto done;
oom:
    seterr(err, "out of memory");
done:
    if (P) glp_delete_prob(P);
    free(col_of);
    free(item_of);
    free(ia);
    free(ja);
    free(ar);
    free(inc_x);
    free(dj);
    sol->seconds = now_s() - t0;
    if (rc) pz_solver_solution_free(sol);
    return rc;
}

static int score_vector(pz_solver *s, double **obj, int **use, char *err) {
    if (finalize(s, err)) return -1;
    *obj = malloc(((size_t)s->n_items + 1) * sizeof **obj);
    *use = malloc(((size_t)s->n_cons + 1) * sizeof **use);
    if (!*obj || !*use) {
        free(*obj);
        free(*use);
        seterr(err, "out of memory");
        return -1;
    }
    for (int i = 0; i < s->n_items; i++) (*obj)[i] = s->items[i].score;
    for (int c = 0; c < s->n_cons; c++) (*use)[c] = 1;
    return 0;
}

// The greedy baseline as a starting incumbent (handed to GLPK only without
// presolve) and as the fallback answer when the time limit leaves none.
// Before the MIP (for_fallback = 0) it runs only without presolve and may use
// a quarter of the time limit; after it (for_fallback = 1), a tenth.
static int *greedy_start(pz_solver *s, const pz_solver_params *p, int n_div, const int *div, double div_rhs,
                         int for_fallback) {
    if (!p->greedy_incumbent || (!for_fallback && p->presolve)) return NULL;
    pz_solver_solution g;
    double tl = p->time_limit_s;
    double max_s = tl > 0 && tl < 2e6 ? (for_fallback ? 0.1 : 0.25) * tl : INFINITY;
    if (pz_solver_greedy(s, max_s, &g, NULL)) return NULL;  // the MIP reports the same error itself
    int *ch = NULL;
    if (g.status == PZ_SOLVER_FEASIBLE) {
        int ok = 1;
        for (int d = 0; d < n_div && ok; d++) {
            int same = 0;
            for (int k = 0; k < s->n_groups; k++) same += div[(size_t)d * s->n_groups + k] == g.choice[k];
            if (same > floor(div_rhs + 1e-9)) ok = 0;
        }
        if (ok) {
            ch = g.choice;
            g.choice = NULL;
        }
    }
    pz_solver_solution_free(&g);
    return ch;
}

// Time limit and no solution from GLPK: answer with the greedy choice when it is feasible.
static void fallback(pz_solver *s, const pz_solver_params *p, int n_div, const int *div, double div_rhs,
                     const int *inc, pz_solver_solution *sol) {
    if (sol->status != PZ_SOLVER_NO_SOLUTION) return;
    int *mine = inc ? NULL : greedy_start(s, p, n_div, div, div_rhs, 1);
    if (!inc) inc = mine;
    if (!inc) return;
    memcpy(sol->choice, inc, (size_t)s->n_groups * sizeof *inc);
    free(mine);
    eval_choice(s, sol->choice, &sol->objective, sol->value);
    sol->status = PZ_SOLVER_FEASIBLE;
    sol->bound = NAN;
}

int pz_solver_solve(pz_solver *s, const pz_solver_params *params, pz_solver_solution *sol, char *err) {
    pz_solver_params p = params ? *params : pz_solver_default_params();
    double *obj;
    int *use;
    if (score_vector(s, &obj, &use, err)) return -1;
    double t0 = now_s();
    int *inc = greedy_start(s, &p, 0, NULL, 0, 0);
    mip_spec m = {obj, use, 0, NULL, 0, inc, t0};
    int rc = mip_run(s, &p, &m, sol, err);
    if (rc == 0) fallback(s, &p, 0, NULL, 0, inc, sol), sol->seconds = now_s() - t0;
    if (rc == 0) sol->objective = sol->status <= PZ_SOLVER_FEASIBLE ? sol->objective : NAN;
    free(inc);
    free(obj);
    free(use);
    return rc;
}

int pz_solver_solve_diverse(pz_solver *s, const pz_solver_params *params, int k, double alpha,
                            pz_solver_solution *sols, int *n_found, char *err) {
    pz_solver_params p = params ? *params : pz_solver_default_params();
    *n_found = 0;
    if (k <= 0) return 0;
    if (!(alpha >= 0) || alpha > 1) {
        seterr(err, "diversity alpha %g is outside [0, 1]", alpha);
        return -1;
    }
    double *obj;
    int *use;
    if (score_vector(s, &obj, &use, err)) return -1;
    int G = s->n_groups;
    int *div = malloc(((size_t)k * G + 1) * sizeof *div);
    if (!div) {
        free(obj);
        free(use);
        seterr(err, "out of memory");
        return -1;
    }
    double div_rhs = alpha * G;
    int rc = 0;
    for (int i = 0; i < k; i++) {
        double t0 = now_s();
        int *inc = greedy_start(s, &p, i, div, div_rhs, 0);
        mip_spec m = {obj, use, i, div, div_rhs, inc, t0};
        rc = mip_run(s, &p, &m, &sols[i], err);
        if (rc == 0) fallback(s, &p, i, div, div_rhs, inc, &sols[i]), sols[i].seconds = now_s() - t0;
        free(inc);
        if (rc) break;
        if (sols[i].status > PZ_SOLVER_FEASIBLE) {  // keep the answer that says why we stopped
            (*n_found)++;
            break;
        }
        memcpy(div + (size_t)i * G, sols[i].choice, (size_t)G * sizeof *div);
        (*n_found)++;
    }
    free(div);
    free(obj);
    free(use);
    return rc;
}

// ---- infeasibility ---------------------------------------------------------------

void pz_solver_infeasibility_free(pz_solver_infeasibility *inf) {
    if (!inf) return;
    if (inf->names)
        for (int c = 0; c < inf->n_constraints; c++) free(inf->names[c]);
    free(inf->names);
    free(inf->min_value);
    free(inf->rhs);
    free(inf->ratio);
    free(inf->violated);
    free(inf->exact);
    memset(inf, 0, sizeof *inf);
}

int pz_solver_explain(pz_solver *s, const pz_solver_params *params, pz_solver_infeasibility *out, char *err) {
    pz_solver_params p = params ? *params : pz_solver_default_params();
    p.greedy_incumbent = 0;
    memset(out, 0, sizeof *out);
    double *obj;
    int *use;
    if (score_vector(s, &obj, &use, err)) return -1;
    int C = s->n_cons, N = s->n_items;
    out->n_constraints = C;
    out->binding = -1;
    out->min_value = calloc((size_t)C + 1, sizeof(double));
    out->rhs = calloc((size_t)C + 1, sizeof(double));
    out->ratio = calloc((size_t)C + 1, sizeof(double));
    out->violated = calloc((size_t)C + 1, sizeof(int));
    out->exact = calloc((size_t)C + 1, sizeof(int));
    out->names = calloc((size_t)C + 1, sizeof(char *));
    int rc = -1;
    if (!out->min_value || !out->rhs || !out->ratio || !out->violated || !out->exact || !out->names) {
        seterr(err, "out of memory");
        goto done;
    }
    for (int c = 0; c < C; c++) {
        out->names[c] = strdup(s->cons[c].name);
        if (!out->names[c]) {
            seterr(err, "out of memory");
            goto done;
        }
        out->rhs[c] = s->cons[c].rhs;
    }
    // the full problem, any feasible point will do
    {
        for (int i = 0; i < N; i++) obj[i] = 0;
        mip_spec m = {obj, use, 0, NULL, 0, NULL, 0};
        pz_solver_solution sol;
        if (mip_run(s, &p, &m, &sol, err)) goto done;
        out->feasible = sol.status <= PZ_SOLVER_FEASIBLE;
        pz_solver_solution_free(&sol);
    }
    double worst = 0;
    for (int c = 0; c < C; c++) {
        for (int i = 0; i < N; i++) obj[i] = s->A[(size_t)c * N + i];
        for (int k = 0; k < C; k++) use[k] = k != c;
        mip_spec m = {obj, use, 0, NULL, 0, NULL, 0};
        pz_solver_solution sol;
        if (mip_run(s, &p, &m, &sol, err)) goto done;
        if (sol.status == PZ_SOLVER_OPTIMAL || sol.status == PZ_SOLVER_FEASIBLE) {
            out->exact[c] = sol.status == PZ_SOLVER_OPTIMAL;
            // a time-limited answer: the bound is what is proven achievable-or-better
            out->min_value[c] =
                out->exact[c] ? sol.objective : (isfinite(sol.bound) ? sol.bound : sol.objective);
        } else {
            out->min_value[c] = NAN;
        }
        pz_solver_solution_free(&sol);
        double r = s->cons[c].rhs, v = out->min_value[c];
        if (isfinite(r) && isfinite(v) && v > r) {
            out->violated[c] = 1;
            out->ratio[c] = r > 0 ? v / r : INFINITY;
            double sev = r > 0 ? v / r : INFINITY;
            if (out->binding < 0 || sev > worst) {
                out->binding = c;
                worst = sev;
            }
        } else {
            out->ratio[c] = isfinite(r) && r > 0 && isfinite(v) ? v / r : NAN;
        }
    }
    rc = 0;
done:
    free(obj);
    free(use);
    if (rc) pz_solver_infeasibility_free(out);
    return rc;
}

int pz_solver_infeasibility_format(const pz_solver_infeasibility *inf, char *buf, size_t n) {
    size_t len = 0;
    int w;
#define APPEND(...)                                                                   \
    do {                                                                              \
        w = snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, __VA_ARGS__); \
        if (w > 0) len += (size_t)w;                                                  \
    } while (0)
    if (n) buf[0] = 0;
    if (inf->feasible)
        APPEND("feasible");
    else if (inf->binding < 0)
        APPEND("infeasible: no single constraint is to blame; the constraints conflict jointly");
    else
        APPEND("infeasible");
    for (int c = 0; c < inf->n_constraints; c++) {
        if (!inf->violated[c]) continue;
        APPEND("; %s%s needs >= %.6g (x%.3g of the budget %.6g)%s", inf->names[c],
               c == inf->binding ? " (binding)" : "", inf->min_value[c], inf->ratio[c], inf->rhs[c],
               inf->exact[c] ? "" : " [bound, time limit]");
    }
    if (!inf->feasible)
        for (int c = 0; c < inf->n_constraints; c++)
            if (!inf->violated[c] && isfinite(inf->min_value[c]))
                APPEND("; best achievable %s under the others: %.6g", inf->names[c], inf->min_value[c]);
#undef APPEND
    return (int)len;
}
