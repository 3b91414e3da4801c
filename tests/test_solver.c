// test_solver.c — the GLPK search (solver/solver.h) against brute force on
// small random instances: the MIP optimum, feasibility of every answer, the
// diversity cut between all pairs, the infeasibility explanation (binding
// constraint and the minimal achievable left side), the baselines, and the
// time limit.
// labels: cpu
#include "solver.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAXG 8
#define MAXC 4

typedef struct {
    int G, C;
    int n[MAXG];
    double score[MAXG][6];
    double a[MAXC][MAXG][6];  // row coefficients (as the solver reports them)
    double rhs[MAXC];
} inst;

static double urand(uint64_t *st) { return (double)(pz_test_rand_u64(st) >> 11) / 9007199254740992.0; }
static int irand(uint64_t *st, int lo, int hi) {
    return lo + (int)(pz_test_rand_u64(st) % (uint64_t)(hi - lo + 1));
}

// Random instance: groups in pairs per layer (attention, FFN) when `pairs`,
// item 0 of every group a no-op (zero cost, bad score). Rows: runtime and
// memory from cost vectors, plus an explicit row. feasible_bias > 0.5 makes
// budgets generous.
static pz_solver *make(uint64_t *st, inst *in, int pairs, double lo_frac, double hi_frac) {
    pz_solver *s = pz_solver_new(NULL);
    in->G = irand(st, 4, 6);
    if (pairs && in->G % 2) in->G++;
    double kv_tokens = 1 + 10 * urand(st);
    for (int g = 0; g < in->G; g++) {
        pz_solver_add_group(s, pairs ? g / 2 : g, NULL);
        in->n[g] = irand(st, 2, 5);
        for (int i = 0; i < in->n[g]; i++) {
            double q = i == 0 ? 0 : urand(st);  // "width": more = better and costlier
            pz_solver_costs c = {q * (0.5 + urand(st)), q * (1 + urand(st)), q * urand(st),
                                 q * 1e3 * urand(st)};
            double sc = i == 0 ? 1.5 + urand(st) : (1 - q) * urand(st) + 0.1 * urand(st);
            int it = pz_solver_add_item(s, g, sc, &c, i % 3, i == 0, NULL);
            CHECK(it == i);
        }
    }
    in->C = 3;
    pz_solver_add_runtime(s, "runtime", 0, NULL);
    pz_solver_add_memory(s, "memory", kv_tokens, 0, NULL);
    int ex = pz_solver_add_constraint(s, "latency", 0, NULL);
    for (int g = 0; g < in->G; g++)
        for (int i = 1; i < in->n[g]; i++) pz_solver_set_coef(s, ex, g, i, urand(st), NULL);
    for (int c = 0; c < in->C; c++) {
        double mn = 0, mx = 0;
        for (int g = 0; g < in->G; g++) {
            double lo = INFINITY, hi = -INFINITY;
            for (int i = 0; i < in->n[g]; i++) {
                in->a[c][g][i] = pz_solver_coef(s, c, g, i);
                lo = fmin(lo, in->a[c][g][i]);
                hi = fmax(hi, in->a[c][g][i]);
            }
            mn += lo, mx += hi;
        }
        double f = lo_frac + (hi_frac - lo_frac) * urand(st);
        in->rhs[c] = mn + f * (mx - mn);
        pz_solver_set_rhs(s, c, in->rhs[c], NULL);
    }
    for (int g = 0; g < in->G; g++)
        for (int i = 0; i < in->n[g]; i++) in->score[g][i] = pz_solver_score(s, g, i);
    return s;
}

static int next_combo(const inst *in, int *ch) {
    for (int g = 0; g < in->G; g++) {
        if (++ch[g] < in->n[g]) return 1;
        ch[g] = 0;
    }
    return 0;
}

static void lhs(const inst *in, const int *ch, double *v, double *obj) {
    *obj = 0;
    for (int c = 0; c < in->C; c++) v[c] = 0;
    for (int g = 0; g < in->G; g++) {
        *obj += in->score[g][ch[g]];
        for (int c = 0; c < in->C; c++) v[c] += in->a[c][g][ch[g]];
    }
}

static int feasible(const inst *in, const double *v, int skip) {
    for (int c = 0; c < in->C; c++)
        if (c != skip && v[c] > in->rhs[c] + 1e-9 * fmax(1, fabs(in->rhs[c]))) return 0;
    return 1;
}

static int overlap(const inst *in, const int *x, const int *y) {
    int k = 0;
    for (int g = 0; g < in->G; g++) k += x[g] == y[g];
    return k;
}

// Best objective over combos meeting all rows and the diversity cuts vs prev.
static double brute_best(const inst *in, int n_prev, int prev[][MAXG], double alpha) {
    int ch[MAXG] = {0};
    double best = INFINITY, v[MAXC], obj;
    do {
        lhs(in, ch, v, &obj);
        if (!feasible(in, v, -1)) continue;
        int ok = 1;
        for (int p = 0; p < n_prev && ok; p++)
            if (overlap(in, ch, prev[p]) > floor(alpha * in->G + 1e-9)) ok = 0;
        if (ok && obj < best) best = obj;
    } while (next_combo(in, ch));
    return best;
}

static void check_solution_values(const inst *in, const pz_solver_solution *s, const char *what) {
    double v[MAXC], obj;
    for (int g = 0; g < in->G; g++) CHECKF(s->choice[g] >= 0 && s->choice[g] < in->n[g], "%s", what);
    lhs(in, s->choice, v, &obj);
    CHECKF(fabs(obj - s->objective) <= 1e-9, "%s: objective %.12g vs %.12g", what, s->objective, obj);
    for (int c = 0; c < in->C; c++)
        CHECKF(fabs(v[c] - s->value[c]) <= 1e-9 * fmax(1, fabs(v[c])), "%s", what);
    CHECKF(feasible(in, v, -1), "%s: a returned solution violates a constraint", what);
}

static void test_random(void) {
    uint64_t st = 12345;
    pz_solver_params cfg[4];
    cfg[0] = pz_solver_default_params();   // presolve, pruning, reduced-cost window
    cfg[1] = cfg[0], cfg[1].presolve = 0;  // LP first, greedy incumbent
    cfg[2] = cfg[0], cfg[2].prune_dominated = 0, cfg[2].cuts = 1, cfg[2].reduced_cost_fixing = 0;
    cfg[3] = cfg[0], cfg[3].reduced_cost_fixing = 0, cfg[3].presolve = 0;
    int n_feas = 0, n_infeas = 0, n_base_ok[3] = {0};
    for (int t = 0; t < 400; t++) {
        inst in;
        int pairs = t % 2;
        // a quarter of the instances get budgets that are likely infeasible
        double lo = (t % 4 == 3) ? -0.3 : 0.05, hi = (t % 4 == 3) ? 0.2 : 0.9;
        pz_solver *s = make(&st, &in, pairs, lo, hi);
        double best = brute_best(&in, 0, NULL, 1);
        pz_solver_params p = cfg[(t / 4) % 4];
        pz_solver_solution sol;
        CHECK(pz_solver_solve(s, &p, &sol, NULL) == 0);
        if (isfinite(best)) {
            n_feas++;
            CHECKF(sol.status == PZ_SOLVER_OPTIMAL, "t=%d status %s", t, pz_solver_status_name(sol.status));
            if (sol.status == PZ_SOLVER_OPTIMAL) {
                CHECKF(fabs(sol.objective - best) <= 1e-9, "t=%d mip %.12g brute %.12g", t, sol.objective,
                       best);
                check_solution_values(&in, &sol, "mip");
            }
            // diverse solutions: each is the brute-force best under the earlier cuts
            double alpha = (t % 3 == 0) ? 0.5 : 0.8;
            pz_solver_solution ds[4];
            int nf = 0;
            CHECK(pz_solver_solve_diverse(s, &p, 4, alpha, ds, &nf, NULL) == 0);
            int prev[4][MAXG];
            int n_prev = 0;
            for (int i = 0; i < nf; i++) {
                double b = brute_best(&in, n_prev, prev, alpha);
                if (ds[i].status <= PZ_SOLVER_FEASIBLE) {
                    CHECKF(fabs(ds[i].objective - b) <= 1e-9, "t=%d diverse %d: %.12g vs %.12g", t, i,
                           ds[i].objective, b);
                    check_solution_values(&in, &ds[i], "diverse");
                    for (int j = 0; j < n_prev; j++)
                        CHECKF(overlap(&in, ds[i].choice, prev[j]) <= floor(alpha * in.G + 1e-9),
                               "t=%d pair %d,%d", t, j, i);
                    memcpy(prev[n_prev++], ds[i].choice, sizeof(int) * in.G);
                } else {
                    CHECKF(ds[i].status == PZ_SOLVER_INFEASIBLE && !isfinite(b), "t=%d diverse %d stop", t,
                           i);
                }
                pz_solver_solution_free(&ds[i]);
            }
            CHECK(nf >= 1);
        } else {
            n_infeas++;
            CHECKF(sol.status == PZ_SOLVER_INFEASIBLE, "t=%d: infeasible instance reported %s", t,
                   pz_solver_status_name(sol.status));
            pz_solver_infeasibility inf;
            CHECK(pz_solver_explain(s, &p, &inf, NULL) == 0);
            CHECK(!inf.feasible);
            int any_violated = 0, bind = -1;
            double worst = 0;
            for (int c = 0; c < in.C; c++) {
                // brute force: min of row c over combos meeting the other rows
                int ch[MAXG] = {0};
                double mn = INFINITY, v[MAXC], obj;
                do {
                    lhs(&in, ch, v, &obj);
                    if (feasible(&in, v, c) && v[c] < mn) mn = v[c];
                } while (next_combo(&in, ch));
                if (isfinite(mn)) {
                    CHECKF(fabs(inf.min_value[c] - mn) <= 1e-9 * fmax(1, fabs(mn)),
                           "t=%d c=%d min %.12g brute %.12g", t, c, inf.min_value[c], mn);
                } else {
                    CHECKF(isnan(inf.min_value[c]), "t=%d c=%d: others infeasible, got %g", t, c,
                           inf.min_value[c]);
                }
                int viol = isfinite(mn) && mn > in.rhs[c];
                CHECKF(inf.violated[c] == viol, "t=%d c=%d violated %d brute %d", t, c, inf.violated[c],
                       viol);
                if (viol) {
                    any_violated = 1;
                    double r = in.rhs[c] > 0 ? mn / in.rhs[c] : INFINITY;
                    if (bind < 0 || r > worst) bind = c, worst = r;
                    if (in.rhs[c] > 0) CHECK(fabs(inf.ratio[c] - r) <= 1e-9 * r);
                }
            }
            CHECKF(inf.binding == bind, "t=%d binding %d brute %d", t, inf.binding, bind);
            if (any_violated) {
                char msg[512];
                pz_solver_infeasibility_format(&inf, msg, sizeof msg);
                CHECKF(strstr(msg, inf.names[inf.binding]) && strstr(msg, "needs >="), "%s", msg);
            }
            pz_solver_infeasibility_free(&inf);
        }
        pz_solver_solution_free(&sol);

        // baselines: feasible when they say so, never better than the optimum,
        // and never "feasible" on an infeasible instance
        for (int b = 0; b < 3; b++) {
            pz_solver_solution bs;
            int rc = b == 0   ? pz_solver_greedy(s, 0, &bs, NULL)
                     : b == 1 ? pz_solver_uniform(s, &bs, NULL)
                              : pz_solver_drop_layers(s, &bs, NULL);
            CHECK(rc == 0);
            double v[MAXC], obj;
            lhs(&in, bs.choice, v, &obj);
            CHECK(fabs(obj - bs.objective) <= 1e-9);
            if (bs.status == PZ_SOLVER_FEASIBLE) {
                n_base_ok[b]++;
                CHECKF(feasible(&in, v, -1), "t=%d baseline %d says feasible but is not", t, b);
                CHECKF(bs.objective >= best - 1e-9, "t=%d baseline %d beats the optimum", t, b);
            } else {
                CHECKF(bs.status == PZ_SOLVER_INFEASIBLE && !feasible(&in, v, -1), "t=%d baseline %d status",
                       t, b);
            }
            pz_solver_solution_free(&bs);
        }
        pz_solver_free(s);
    }
    printf("random: %d feasible, %d infeasible instances; baselines feasible greedy %d uniform %d drop %d\n",
           n_feas, n_infeas, n_base_ok[0], n_base_ok[1], n_base_ok[2]);
    CHECK(n_feas > 100 && n_infeas > 20);
    CHECK(n_base_ok[0] > 50 && n_base_ok[1] > 10 && n_base_ok[2] > 10);
}

// A named infeasibility: memory alone is impossible; runtime is fine.
static void test_explain_named(void) {
    pz_solver *s = pz_solver_new(NULL);
    for (int g = 0; g < 3; g++) {
        pz_solver_add_group(s, g, NULL);
        pz_solver_costs big = {2, 10, 0, 0}, small = {1, 6, 0, 0};
        pz_solver_add_item(s, g, 0.0, &big, 0, 0, NULL);
        pz_solver_add_item(s, g, 1.0, &small, 1, 0, NULL);
    }
    pz_solver_add_runtime(s, "runtime", 5, NULL);
    int mem = pz_solver_add_memory(s, "memory", 0, 15, NULL);  // min possible 18
    pz_solver_solution sol;
    CHECK(pz_solver_solve(s, NULL, &sol, NULL) == 0);
    CHECK(sol.status == PZ_SOLVER_INFEASIBLE);
    pz_solver_solution_free(&sol);
    pz_solver_infeasibility inf;
    CHECK(pz_solver_explain(s, NULL, &inf, NULL) == 0);
    CHECK(inf.binding == mem);
    CHECK(fabs(inf.min_value[mem] - 18) < 1e-9 && fabs(inf.ratio[mem] - 1.2) < 1e-9);
    CHECK(!inf.violated[0] && isnan(inf.min_value[0]));  // no child meets memory, so no fastest one
    char msg[512];
    pz_solver_infeasibility_format(&inf, msg, sizeof msg);
    printf("explain: %s\n", msg);
    CHECK(strstr(msg, "memory (binding) needs >= 18") != NULL);
    pz_solver_infeasibility_free(&inf);
    // runtime binding instead: the fastest child that meets memory takes 3
    pz_solver_set_rhs(s, 0, 2.5, NULL);
    pz_solver_set_rhs(s, mem, 25, NULL);
    CHECK(pz_solver_explain(s, NULL, &inf, NULL) == 0);
    CHECK(inf.binding == 0 && fabs(inf.min_value[0] - 3) < 1e-9 && fabs(inf.ratio[0] - 1.2) < 1e-9);
    pz_solver_infeasibility_format(&inf, msg, sizeof msg);
    printf("explain: %s\n", msg);
    CHECK(strstr(msg, "runtime (binding) needs >= 3") != NULL);
    pz_solver_infeasibility_free(&inf);
    pz_solver_free(s);
}

// A large, tight instance: the time limit is honoured.
static void test_time_limit(void) {
    uint64_t st = 99;
    pz_solver *s = pz_solver_new(NULL);
    int G = 300, K = 54;
    for (int g = 0; g < G; g++) {
        pz_solver_add_group(s, g, NULL);
        for (int i = 0; i < K; i++) {
            double q = urand(&st);
            pz_solver_costs c = {q + 0.3 * urand(&st), q + 0.3 * urand(&st), 0, q + 0.3 * urand(&st)};
            pz_solver_add_item(s, g, (1 - q) + 0.3 * urand(&st), &c, i % 9, i == 0, NULL);
        }
    }
    pz_solver_add_runtime(s, "runtime", 0.5 * G, NULL);
    pz_solver_add_memory(s, "memory", 0, 0.55 * G, NULL);
    pz_solver_add_params(s, "params", 0.6 * G, NULL);
    pz_solver_params p = pz_solver_default_params();
    p.time_limit_s = 0.3;
    pz_solver_solution sol;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    CHECK(pz_solver_solve(s, &p, &sol, NULL) == 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double el = (b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec);
    printf("time limit 0.3 s: status %s in %.3f s (objective %g, bound %g)\n",
           pz_solver_status_name(sol.status), el, sol.objective, sol.bound);
    // Generous: the limit must be honoured, on a loaded machine and under sanitizers.
    CHECKF(el < 0.3 + 4, "took %.3f s", el);
    CHECK(sol.status != PZ_SOLVER_INFEASIBLE);
    if (sol.status <= PZ_SOLVER_FEASIBLE)
        for (int c = 0; c < 3; c++) CHECK(sol.value[c] <= pz_solver_rhs(s, c) * (1 + 1e-9));
    pz_solver_solution_free(&sol);
    pz_solver_free(s);
}

// Medium instances (too big for brute force): the reduced-cost window, the
// plain MIP and no-presolve all prove the same optimum, also under diversity cuts.
static void test_window_agrees(void) {
    uint64_t st = 7;
    for (int t = 0; t < 12; t++) {
        pz_solver *s = pz_solver_new(NULL);
        int G = 30, K = 12;
        for (int g = 0; g < G; g++) {
            pz_solver_add_group(s, g, NULL);
            for (int i = 0; i < K; i++) {
                double q = urand(&st);
                pz_solver_costs c = {q + 0.2 * urand(&st), q + 0.2 * urand(&st), 0, q};
                pz_solver_add_item(s, g, (1 - q) * (1 - q) + 0.2 * urand(&st), &c, i % 4, i == 0, NULL);
            }
        }
        pz_solver_add_runtime(s, "runtime", (0.3 + 0.4 * urand(&st)) * G, NULL);
        pz_solver_add_memory(s, "memory", 0, (0.3 + 0.4 * urand(&st)) * G, NULL);
        pz_solver_params a = pz_solver_default_params(), b = a, c = a;
        b.reduced_cost_fixing = 0;
        c.presolve = 0;
        pz_solver_solution x[3][3];
        int n[3];
        CHECK(pz_solver_solve_diverse(s, &a, 3, 0.8, x[0], &n[0], NULL) == 0);
        CHECK(pz_solver_solve_diverse(s, &b, 3, 0.8, x[1], &n[1], NULL) == 0);
        CHECK(pz_solver_solve_diverse(s, &c, 3, 0.8, x[2], &n[2], NULL) == 0);
        CHECK(n[0] == n[1] && n[1] == n[2]);
        for (int i = 0; i < n[0] && i < n[1] && i < n[2]; i++) {
            CHECK(x[0][i].status == x[1][i].status && x[1][i].status == x[2][i].status);
            if (x[0][i].status == PZ_SOLVER_OPTIMAL && x[1][i].status == PZ_SOLVER_OPTIMAL &&
                x[2][i].status == PZ_SOLVER_OPTIMAL) {
                // ties may pick different choices (and then different later cuts): compare the first
                if (i == 0)
                    CHECKF(fabs(x[0][0].objective - x[1][0].objective) <= 1e-9 &&
                               fabs(x[0][0].objective - x[2][0].objective) <= 1e-9,
                           "t=%d window %.12g plain %.12g no-presolve %.12g", t, x[0][0].objective,
                           x[1][0].objective, x[2][0].objective);
                for (int k = 0; k < 3; k++)
                    for (int r = 0; r < 2; r++) CHECK(x[k][i].value[r] <= pz_solver_rhs(s, r) * (1 + 1e-9));
            }
        }
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < n[k]; i++) pz_solver_solution_free(&x[k][i]);
        pz_solver_free(s);
    }
}

// Every failure writes one line into the caller's buffer (and none is needed).
static void test_errors(void) {
    char err[PZ_ERRLEN] = "";
    pz_solver *s = pz_solver_new(err);
    CHECK(s != NULL);
    CHECK(pz_solver_add_item(s, 0, 1.0, NULL, 0, 0, err) < 0);
    CHECKF(strstr(err, "solver: add_item: no group 0") != NULL, "%s", err);
    CHECK(pz_solver_add_item(s, 0, 1.0, NULL, 0, 0, NULL) < 0);  // no buffer: still refused
    CHECK(pz_solver_add_group(s, 0, err) == 0);
    err[0] = 0;
    CHECK(pz_solver_add_item(s, 0, NAN, NULL, 0, 0, err) < 0);
    CHECKF(strstr(err, "not finite") != NULL, "%s", err);
    CHECK(pz_solver_add_constraint(s, "x", NAN, err) < 0);
    CHECKF(strstr(err, "x: rhs is NaN") != NULL, "%s", err);
    CHECK(pz_solver_set_coef(s, 5, 0, 0, 1.0, err) < 0);
    CHECKF(strstr(err, "set_coef") != NULL, "%s", err);
    CHECK(pz_solver_add_group(s, 1, err) == 1);  // empty group
    CHECK(pz_solver_add_item(s, 0, 1.0, NULL, 0, 0, err) == 0);
    pz_solver_solution sol;
    err[0] = 0;
    CHECK(pz_solver_solve(s, NULL, &sol, err) < 0);
    CHECKF(strstr(err, "group 1 has no items") != NULL, "%s", err);
    CHECK(pz_solver_solve(s, NULL, &sol, NULL) < 0);
    for (int b = 0; b < 3; b++) {
        err[0] = 0;
        int rc = b == 0   ? pz_solver_greedy(s, 0, &sol, err)
                 : b == 1 ? pz_solver_uniform(s, &sol, err)
                          : pz_solver_drop_layers(s, &sol, err);
        CHECKF(rc < 0 && strstr(err, "group 1 has no items") != NULL, "baseline %d: %s", b, err);
    }
    int ch[2] = {0, 0};
    CHECK(pz_solver_evaluate(s, ch, &sol, err) < 0);
    CHECKF(strstr(err, "group 1 has no item 0") != NULL, "%s", err);
    pz_solver_free(s);
}

// drop-layers by score drops the layer whose removal costs least; by a
// given key (ShortGPT's block influence) the layer with the smallest key.
static void test_drop_by_key(void) {
    char err[PZ_ERRLEN] = "";
    pz_solver *s = pz_solver_new(err);
    const double noop_score[3] = {1, 5, 3};
    for (int l = 0; l < 3; l++)
        for (int h = 0; h < 2; h++) {
            int g = pz_solver_add_group(s, l, err);
            pz_solver_costs keep = {1, 0, 0, 0}, gone = {0, 0, 0, 0};
            CHECK(pz_solver_add_item(s, g, 0, &keep, -1, 0, err) == 0);
            CHECK(pz_solver_add_item(s, g, noop_score[l] / 2, &gone, -1, 1, err) == 1);
        }
    int c = pz_solver_add_constraint(s, "runtime", 4.5, err);
    CHECK(c >= 0 && pz_solver_set_cost_weights(s, c, 1, 0, 0, 0, err) == 0);
    pz_solver_solution a, b;
    CHECKF(pz_solver_drop_layers(s, &a, err) == 0, "%s", err);
    CHECK(a.status == PZ_SOLVER_FEASIBLE && a.choice[0] == 1 && a.choice[1] == 1 && a.choice[2] == 0 &&
          a.choice[4] == 0);
    const double key[3] = {0.9, 0.1, 0.5};
    CHECKF(pz_solver_drop_layers_by(s, key, 3, &b, err) == 0, "%s", err);
    CHECK(b.status == PZ_SOLVER_FEASIBLE && b.choice[0] == 0 && b.choice[2] == 1 && b.choice[3] == 1 &&
          b.choice[4] == 0);
    CHECK(pz_solver_drop_layers_by(s, NULL, 0, &b, err) < 0);
    pz_solver_solution_free(&a);
    pz_solver_solution_free(&b);
    pz_solver_free(s);
}

int main(void) {
    test_drop_by_key();
    test_errors();
    test_explain_named();
    test_random();
    test_window_agrees();
    test_time_limit();
    return pz_test_finish("test_solver");
}
