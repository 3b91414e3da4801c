// baselines.c — two more searches the MIP is compared against (issue 5 item
// 4): one family (e.g. FFN width) everywhere, and dropping whole layers (the
// greedy swaps are in greedy.c). They read the same table, through solver.h
// by way of the dense copy (dense.h), and return the same solution struct, so
// "what the program buys" is one subtraction.
#include "dense.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int oom(pz_solver_solution *sol, pz_dense *d, char *err) {
    pz_solver_solution_free(sol);
    pz_dense_free(d);
    if (err) snprintf(err, PZ_ERRLEN, "solver: out of memory");
    return -1;
}

int pz_solver_uniform(pz_solver *s, pz_solver_solution *sol, char *err) {
    pz_dense d;
    if (pz_dense_init(&d, s, err)) return -1;
    if (pz_dense_start(&d, sol, err)) {
        pz_dense_free(&d);
        return -1;
    }
    int max_fam = -1;
    for (int i = 0; i < d.n_items; i++)
        if (d.family[i] > max_fam) max_fam = d.family[i];
    int G = d.n_groups, C = d.n_cons;
    int *ch = malloc(((size_t)G + 1) * sizeof *ch), *best = malloc(((size_t)G + 1) * sizeof *best);
    double *v = malloc(((size_t)C + 1) * sizeof *v);
    if (!ch || !best || !v) {
        free(ch);
        free(best);
        free(v);
        return oom(sol, &d, err);
    }
    double best_obj = INFINITY, least_ex = INFINITY;
    int found = 0;
    memcpy(best, sol->choice, (size_t)G * sizeof *best);
    for (int f = 0; f <= max_fam; f++) {
        int used = 0;
        for (int g = 0; g < G; g++) {
            int pick = -1;
            for (int a = 0; a < d.count[g]; a++)
                if (d.family[d.first[g] + a] == f &&
                    (pick < 0 || pz_dense_score(&d, g, a) < pz_dense_score(&d, g, pick)))
                    pick = a;
            if (pick >= 0) used = 1;
            ch[g] = pick >= 0 ? pick : pz_dense_best_item(&d, g);
        }
        if (!used) continue;
        double obj;
        pz_dense_values(&d, ch, v, &obj);
        double ex = pz_dense_excess(&d, v);
        if (ex <= 0 && obj < best_obj) {
            found = 1, best_obj = obj;
            memcpy(best, ch, (size_t)G * sizeof *best);
        } else if (!found && ex < least_ex) {  // remember the closest miss
            least_ex = ex;
            memcpy(best, ch, (size_t)G * sizeof *best);
        }
    }
    memcpy(sol->choice, best, (size_t)G * sizeof *best);
    free(ch);
    free(best);
    free(v);
    pz_dense_finish(&d, sol);
    pz_dense_free(&d);
    return 0;
}

// key == NULL: drop by least score increase; else by smallest key[layer]
// (layers without a key, l >= n_key, are never dropped).
static int drop_layers(pz_solver *s, const double *key, int n_key, pz_solver_solution *sol, char *err) {
    pz_dense d;
    if (pz_dense_init(&d, s, err)) return -1;
    if (pz_dense_start(&d, sol, err)) {
        pz_dense_free(&d);
        return -1;
    }
    int G = d.n_groups, C = d.n_cons;
    int max_layer = -1;
    for (int g = 0; g < G; g++)
        if (d.layer[g] > max_layer) max_layer = d.layer[g];
    int L = max_layer + 1;
    int *noop = malloc(((size_t)G + 1) * sizeof *noop);         // the no-op item of each group
    int *droppable = calloc((size_t)L + 1, sizeof *droppable);  // every group of the layer has a no-op
    int *dropped = calloc((size_t)L + 1, sizeof *dropped);
    double *v = malloc(((size_t)C + 1) * sizeof *v), *w = malloc(((size_t)C + 1) * sizeof *w);
    if (!noop || !droppable || !dropped || !v || !w) {
        free(noop), free(droppable), free(dropped), free(v), free(w);
        return oom(sol, &d, err);
    }
    for (int g = 0; g < G; g++) {
        noop[g] = -1;
        for (int a = 0; a < d.count[g]; a++)
            if (d.noop[d.first[g] + a]) {
                noop[g] = a;
                break;
            }
        int l = d.layer[g];
        if (l >= 0)
            droppable[l] = droppable[l] == 0 ? (noop[g] >= 0 ? 1 : -1) : (noop[g] >= 0 ? droppable[l] : -1);
    }
    double obj;
    pz_dense_values(&d, sol->choice, v, &obj);
    for (;;) {
        double ex = pz_dense_excess(&d, v);
        if (ex <= 0) break;
        int bl = -1;
        double best_ds = INFINITY;
        for (int l = 0; l < L; l++) {
            if (droppable[l] != 1 || dropped[l]) continue;
            double ds = 0;
            for (int c = 0; c < C; c++) w[c] = v[c];
            for (int g = 0; g < G; g++) {
                if (d.layer[g] != l) continue;
                ds += pz_dense_score(&d, g, noop[g]) - pz_dense_score(&d, g, sol->choice[g]);
                for (int c = 0; c < C; c++)
                    w[c] += pz_dense_coef(&d, c, g, noop[g]) - pz_dense_coef(&d, c, g, sol->choice[g]);
            }
            if (!(pz_dense_excess(&d, w) < ex)) continue;
            if (key) {
                if (l >= n_key || !isfinite(key[l])) continue;
                ds = key[l];
            }
            if (ds < best_ds) best_ds = ds, bl = l;
        }
        if (bl < 0) break;
        dropped[bl] = 1;
        for (int g = 0; g < G; g++) {
            if (d.layer[g] != bl) continue;
            for (int c = 0; c < C; c++)
                v[c] += pz_dense_coef(&d, c, g, noop[g]) - pz_dense_coef(&d, c, g, sol->choice[g]);
            sol->choice[g] = noop[g];
        }
    }
    free(noop), free(droppable), free(dropped), free(v), free(w);
    pz_dense_finish(&d, sol);
    pz_dense_free(&d);
    return 0;
}

int pz_solver_drop_layers(pz_solver *s, pz_solver_solution *sol, char *err) {
    return drop_layers(s, NULL, 0, sol, err);
}

int pz_solver_drop_layers_by(pz_solver *s, const double *key, int n_key, pz_solver_solution *sol,
                             char *err) {
    if (!key || n_key < 1) {
        if (err) snprintf(err, PZ_ERRLEN, "drop-layers: no layer keys given");
        return -1;
    }
    return drop_layers(s, key, n_key, sol, err);
}
