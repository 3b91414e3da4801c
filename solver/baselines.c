// baselines.c — the searches the MIP is compared against (issue 5 item 4):
// greedy swaps, one family (e.g. FFN width) everywhere, and dropping whole
// layers. They read the same table and return the same solution struct, so
// "what the program buys" is one subtraction.
#include "solver_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// Best-score item of a group (lowest index on ties).
static int best_item(const pz_solver *s, int g) {
  int best = 0;
  for (int a = 1; a < s->group_count[g]; a++)
    if (s->items[pz__gidx(s, g, a)].score < s->items[pz__gidx(s, g, best)].score) best = a;
  return best;
}

static double coef(const pz_solver *s, int c, int g, int a) {
  return s->A[(size_t)c * s->n_items + pz__gidx(s, g, a)];
}

static double score(const pz_solver *s, int g, int a) { return s->items[pz__gidx(s, g, a)].score; }

static void values_of(const pz_solver *s, const int *ch, double *v, double *obj) {
  for (int c = 0; c < s->n_cons; c++) v[c] = 0;
  *obj = 0;
  for (int g = 0; g < s->n_groups; g++) {
    *obj += score(s, g, ch[g]);
    for (int c = 0; c < s->n_cons; c++) v[c] += coef(s, c, g, ch[g]);
  }
}

// Final bookkeeping shared by the baselines.
static void finish(pz_solver *s, pz_solver_solution *sol) {
  values_of(s, sol->choice, sol->value, &sol->objective);
  sol->status = pz__excess(s, sol->value) > 0 ? PZ_SOLVER_INFEASIBLE : PZ_SOLVER_FEASIBLE;
  sol->bound = NAN;
}

static int start(pz_solver *s, pz_solver_solution *sol) {
  if (pz__finalize(s) || pz__solution_alloc(s, sol)) return -1;
  for (int g = 0; g < s->n_groups; g++) {
    if (s->group_count[g] == 0) {
      pz__seterr(s, "group %d has no items", g);
      pz_solver_solution_free(sol);
      return -1;
    }
    sol->choice[g] = best_item(s, g);
  }
  return 0;
}

int pz_solver_greedy(pz_solver *s, pz_solver_solution *sol) { return pz__greedy(s, sol, INFINITY); }

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int pz__greedy(pz_solver *s, pz_solver_solution *sol, double deadline) {
  if (start(s, sol)) return -1;
  const int C = s->n_cons;
  double *v = malloc(((size_t)C + 1) * sizeof *v), *w = malloc(((size_t)C + 1) * sizeof *w);
  if (!v || !w) {
    free(v);
    free(w);
    pz_solver_solution_free(sol);
    pz__seterr(s, "out of memory");
    return -1;
  }
  double obj;
  values_of(s, sol->choice, v, &obj);
  // Every accepted swap strictly lowers the excess, so this terminates; the
  // cap only guards against creeping by rounding.
  for (long iter = 0; iter < 100L * s->n_items + 100; iter++) {
    double ex = pz__excess(s, v);
    if (ex <= 0) break;
    if (isfinite(deadline) && mono_s() > deadline) break;  // out of time: report what we have
    int bg = -1, ba = -1;
    double best = INFINITY, best_red = 0;
    for (int g = 0; g < s->n_groups; g++) {
      int cur = sol->choice[g];
      for (int a = 0; a < s->group_count[g]; a++) {
        if (a == cur) continue;
        for (int c = 0; c < C; c++) w[c] = v[c] - coef(s, c, g, cur) + coef(s, c, g, a);
        double red = ex - pz__excess(s, w);
        if (!(red > 1e-15 * ex)) continue;
        double ds = score(s, g, a) - score(s, g, cur);
        double rate = ds / red;  // score paid per unit of excess removed (negative: a free gain)
        if (rate < best || (rate == best && red > best_red)) {
          best = rate, best_red = red, bg = g, ba = a;
        }
      }
    }
    if (bg < 0) break;  // no swap helps: give up
    for (int c = 0; c < C; c++) v[c] += coef(s, c, bg, ba) - coef(s, c, bg, sol->choice[bg]);
    sol->choice[bg] = ba;
  }
  free(v);
  free(w);
  finish(s, sol);
  return 0;
}

int pz_solver_uniform(pz_solver *s, pz_solver_solution *sol) {
  if (start(s, sol)) return -1;
  int max_fam = -1;
  for (int i = 0; i < s->n_items; i++)
    if (s->items[i].family > max_fam) max_fam = s->items[i].family;
  int G = s->n_groups, C = s->n_cons;
  int *ch = malloc(((size_t)G + 1) * sizeof *ch), *best = malloc(((size_t)G + 1) * sizeof *best);
  double *v = malloc(((size_t)C + 1) * sizeof *v);
  if (!ch || !best || !v) {
    free(ch);
    free(best);
    free(v);
    pz_solver_solution_free(sol);
    pz__seterr(s, "out of memory");
    return -1;
  }
  double best_obj = INFINITY, least_ex = INFINITY;
  int found = 0;
  memcpy(best, sol->choice, (size_t)G * sizeof *best);
  for (int f = 0; f <= max_fam; f++) {
    int used = 0;
    for (int g = 0; g < G; g++) {
      int pick = -1;
      for (int a = 0; a < s->group_count[g]; a++)
        if (s->items[pz__gidx(s, g, a)].family == f && (pick < 0 || score(s, g, a) < score(s, g, pick)))
          pick = a;
      if (pick >= 0) used = 1;
      ch[g] = pick >= 0 ? pick : best_item(s, g);
    }
    if (!used) continue;
    double obj;
    values_of(s, ch, v, &obj);
    double ex = pz__excess(s, v);
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
  finish(s, sol);
  return 0;
}

int pz_solver_drop_layers(pz_solver *s, pz_solver_solution *sol) {
  if (start(s, sol)) return -1;
  int G = s->n_groups, C = s->n_cons;
  int max_layer = -1;
  for (int g = 0; g < G; g++)
    if (s->group_layer[g] > max_layer) max_layer = s->group_layer[g];
  int L = max_layer + 1;
  int *noop = malloc(((size_t)G + 1) * sizeof *noop);       // the no-op item of each group
  int *droppable = calloc((size_t)L + 1, sizeof *droppable);  // every group of the layer has a no-op
  int *dropped = calloc((size_t)L + 1, sizeof *dropped);
  double *v = malloc(((size_t)C + 1) * sizeof *v), *w = malloc(((size_t)C + 1) * sizeof *w);
  if (!noop || !droppable || !dropped || !v || !w) {
    free(noop), free(droppable), free(dropped), free(v), free(w);
    pz_solver_solution_free(sol);
    pz__seterr(s, "out of memory");
    return -1;
  }
  for (int l = 0; l < L; l++) droppable[l] = 0;
  for (int g = 0; g < G; g++) {
    noop[g] = -1;
    for (int a = 0; a < s->group_count[g]; a++)
      if (s->items[pz__gidx(s, g, a)].noop) {
        noop[g] = a;
        break;
      }
    int l = s->group_layer[g];
    if (l >= 0) droppable[l] = droppable[l] == 0 ? (noop[g] >= 0 ? 1 : -1) : (noop[g] >= 0 ? droppable[l] : -1);
  }
  double obj;
  values_of(s, sol->choice, v, &obj);
  for (;;) {
    double ex = pz__excess(s, v);
    if (ex <= 0) break;
    int bl = -1;
    double best_ds = INFINITY;
    for (int l = 0; l < L; l++) {
      if (droppable[l] != 1 || dropped[l]) continue;
      double ds = 0;
      for (int c = 0; c < C; c++) w[c] = v[c];
      for (int g = 0; g < G; g++) {
        if (s->group_layer[g] != l) continue;
        ds += score(s, g, noop[g]) - score(s, g, sol->choice[g]);
        for (int c = 0; c < C; c++) w[c] += coef(s, c, g, noop[g]) - coef(s, c, g, sol->choice[g]);
      }
      if (!(pz__excess(s, w) < ex)) continue;
      if (ds < best_ds) best_ds = ds, bl = l;
    }
    if (bl < 0) break;
    dropped[bl] = 1;
    for (int g = 0; g < G; g++) {
      if (s->group_layer[g] != bl) continue;
      for (int c = 0; c < C; c++) v[c] += coef(s, c, g, noop[g]) - coef(s, c, g, sol->choice[g]);
      sol->choice[g] = noop[g];
    }
  }
  free(noop), free(droppable), free(dropped), free(v), free(w);
  finish(s, sol);
  return 0;
}
