// greedy.c — the greedy baseline (solver.h): cheapest swaps until every row
// holds. The MIP (solver.c) also starts from it and falls back to it when the
// time limit leaves GLPK no solution; it reaches the problem only through
// solver.h, by way of the dense copy (dense.h).
#include "dense.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int pz_solver_greedy(pz_solver *s, double max_seconds, pz_solver_solution *sol, char *err) {
    double deadline = max_seconds > 0 && isfinite(max_seconds) ? now_s() + max_seconds : INFINITY;
    pz_dense d;
    if (pz_dense_init(&d, s, err)) return -1;
    if (pz_dense_start(&d, sol, err)) {
        pz_dense_free(&d);
        return -1;
    }
    const int C = d.n_cons;
    double *v = malloc(((size_t)C + 1) * sizeof *v), *w = malloc(((size_t)C + 1) * sizeof *w);
    if (!v || !w) {
        free(v);
        free(w);
        pz_solver_solution_free(sol);
        pz_dense_free(&d);
        if (err) snprintf(err, PZ_ERRLEN, "solver: out of memory");
        return -1;
    }
    double obj;
    pz_dense_values(&d, sol->choice, v, &obj);
    // Every accepted swap strictly lowers the excess, so this terminates; the
    // cap only guards against creeping by rounding.
    for (long iter = 0; iter < 100L * d.n_items + 100; iter++) {
        double ex = pz_dense_excess(&d, v);
        if (ex <= 0) break;
        if (isfinite(deadline) && now_s() > deadline) break;  // out of time: report what we have
        int bg = -1, ba = -1;
        double best = INFINITY, best_red = 0;
        for (int g = 0; g < d.n_groups; g++) {
            int cur = sol->choice[g];
            for (int a = 0; a < d.count[g]; a++) {
                if (a == cur) continue;
                for (int c = 0; c < C; c++)
                    w[c] = v[c] - pz_dense_coef(&d, c, g, cur) + pz_dense_coef(&d, c, g, a);
                double red = ex - pz_dense_excess(&d, w);
                if (!(red > 1e-15 * ex)) continue;
                double ds = pz_dense_score(&d, g, a) - pz_dense_score(&d, g, cur);
                double rate = ds / red;  // score paid per unit of excess removed (negative: a free gain)
                if (rate < best || (rate == best && red > best_red)) {
                    best = rate, best_red = red, bg = g, ba = a;
                }
            }
        }
        if (bg < 0) break;  // no swap helps: give up
        for (int c = 0; c < C; c++)
            v[c] += pz_dense_coef(&d, c, bg, ba) - pz_dense_coef(&d, c, bg, sol->choice[bg]);
        sol->choice[bg] = ba;
    }
    free(v);
    free(w);
    pz_dense_finish(&d, sol);
    pz_dense_free(&d);
    return 0;
}
