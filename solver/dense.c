// dense.c — the heuristics' dense copy of a problem (dense.h).
#include "dense.h"
#include "seterr.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void pz_dense_free(pz_dense *d) {
    if (!d) return;
    free(d->first);
    free(d->count);
    free(d->layer);
    free(d->score);
    free(d->family);
    free(d->noop);
    free(d->coef);
    free(d->rhs);
    memset(d, 0, sizeof *d);
}

int pz_dense_init(pz_dense *d, const pz_solver *s, char *err) {
    memset(d, 0, sizeof *d);
    int G = pz_solver_n_groups(s), C = pz_solver_n_constraints(s), N = 0;
    for (int g = 0; g < G; g++) {
        int n = pz_solver_n_items(s, g);
        if (n == 0) return seterr(err, "group %d has no items", g);
        N += n;
    }
    d->n_groups = G, d->n_items = N, d->n_cons = C;
    d->first = malloc(((size_t)G + 1) * sizeof *d->first);
    d->count = malloc(((size_t)G + 1) * sizeof *d->count);
    d->layer = malloc(((size_t)G + 1) * sizeof *d->layer);
    d->score = malloc(((size_t)N + 1) * sizeof *d->score);
    d->family = malloc(((size_t)N + 1) * sizeof *d->family);
    d->noop = malloc(((size_t)N + 1) * sizeof *d->noop);
    d->coef = malloc(((size_t)C * N + 1) * sizeof *d->coef);
    d->rhs = malloc(((size_t)C + 1) * sizeof *d->rhs);
    if (!d->first || !d->count || !d->layer || !d->score || !d->family || !d->noop || !d->coef || !d->rhs)
        goto oom;
    for (int g = 0, pos = 0; g < G; g++) {
        d->first[g] = pos;
        d->count[g] = pz_solver_n_items(s, g);
        d->layer[g] = pz_solver_group_layer(s, g);
        for (int a = 0; a < d->count[g]; a++, pos++) {
            d->score[pos] = pz_solver_score(s, g, a);
            if (isnan(d->score[pos])) goto oom;  // scores are finite: the table could not be indexed
            d->family[pos] = pz_solver_item_family(s, g, a);
            d->noop[pos] = pz_solver_item_noop(s, g, a);
            for (int c = 0; c < C; c++) d->coef[(size_t)c * N + pos] = pz_solver_coef(s, c, g, a);
        }
    }
    for (int c = 0; c < C; c++) d->rhs[c] = pz_solver_rhs(s, c);
    return 0;
oom:
    pz_dense_free(d);
    return seterr(err, "out of memory");
}

int pz_dense_best_item(const pz_dense *d, int g) {
    int best = 0;
    for (int a = 1; a < d->count[g]; a++)
        if (pz_dense_score(d, g, a) < pz_dense_score(d, g, best)) best = a;
    return best;
}

void pz_dense_values(const pz_dense *d, const int *choice, double *value, double *objective) {
    for (int c = 0; c < d->n_cons; c++) value[c] = 0;
    *objective = 0;
    for (int g = 0; g < d->n_groups; g++) {
        *objective += pz_dense_score(d, g, choice[g]);
        for (int c = 0; c < d->n_cons; c++) value[c] += pz_dense_coef(d, c, g, choice[g]);
    }
}

double pz_dense_excess(const pz_dense *d, const double *value) {
    double e = 0;
    for (int c = 0; c < d->n_cons; c++) {
        double r = d->rhs[c];
        if (!isfinite(r)) continue;
        double x = value[c] - r;
        if (x > 0) e += x / fmax(fabs(r), 1e-300);
    }
    return e;
}

int pz_dense_start(const pz_dense *d, pz_solver_solution *sol, char *err) {
    memset(sol, 0, sizeof *sol);
    sol->n_groups = d->n_groups;
    sol->n_constraints = d->n_cons;
    sol->choice = malloc(((size_t)d->n_groups + 1) * sizeof *sol->choice);
    sol->value = calloc((size_t)d->n_cons + 1, sizeof *sol->value);
    if (!sol->choice || !sol->value) {
        pz_solver_solution_free(sol);
        return seterr(err, "out of memory");
    }
    for (int g = 0; g < d->n_groups; g++) sol->choice[g] = pz_dense_best_item(d, g);
    sol->objective = NAN;
    sol->bound = NAN;
    return 0;
}

void pz_dense_finish(const pz_dense *d, pz_solver_solution *sol) {
    pz_dense_values(d, sol->choice, sol->value, &sol->objective);
    sol->status = pz_dense_excess(d, sol->value) > 0 ? PZ_SOLVER_INFEASIBLE : PZ_SOLVER_FEASIBLE;
    sol->bound = NAN;
}
