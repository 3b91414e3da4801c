// search_ctx.c — search in context: see search_ctx.h.
#include "search_ctx.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "cli.h"
#include "common.h"
#include "model.h"
#include "score.h"
#include "tokenizer.h"
#include "weights.h"

pz_ctx_params pz_ctx_default_params(void) {
    return (pz_ctx_params){.rounds = 3, .tries = 4, .step_penalty = 0.005, .tokens = 0, .data = NULL,
                           .margin = INFINITY, .threads = 1, .prec = PZ_DT_F32};
}

int pz_ctx_block_weights(pz_rundb *db, const pz_model *m, const pz_rundb_done_block *b, pz_block_weights *w,
                         char *err) {
    memset(w, 0, sizeof *w);
    if (b->weight_file[0]) {
        char path[2100], hex[65];
        pz_rundb_resolve(db, b->weight_file, path, sizeof path);
        if (pz_sha256_file(path, hex, err)) return -1;
        if (b->sha256[0] && strcmp(hex, b->sha256))
            return pz_err(err, "%s: %s does not match its sha256 in the database", b->block_id, path);
        if (pz_block_weights_load(w, &m->cfg, path, err)) return -1;
        if (w->layer != b->layer || w->sub != b->sub) {
            pz_block_weights_free(w);
            return pz_err(err, "%s: %s holds layer %d, not the block's", b->block_id, path, w->layer);
        }
        return 0;
    }
    if (b->is_parent) return pz_block_weights_from_parent(w, m, b->layer, b->sub, err);
    int noop = (b->sub == PZ_SUB_FFN || b->attn.attn == PZ_ATTN_NOOP) &&
               (b->sub == PZ_SUB_ATTN || b->ffn.ffn == PZ_FFN_NOOP);
    if (!noop) return pz_err(err, "%s: a trained block without a weight file", b->block_id);
    return pz_block_weights_alloc(w, &m->cfg, b->layer, b->sub, b->attn, b->ffn, err);
}

// ---- loaded blocks ---------------------------------------------------------------------------
typedef struct {
    pz_rundb *db;
    const pz_model *m;
    pz_rundb_done_block *rows;
    int n_rows;
} library;

// The weights of one half of an item: its block (a PAIR block serves both
// halves), or the parent's half when the item names no block.
static int half_weights(const library *lib, int layer, pz_sub_kind half, const char *block_id, pz_block_weights *w,
                        char *err) {
    if (!block_id[0]) return pz_block_weights_from_parent(w, lib->m, layer, half, err);
    for (int i = 0; i < lib->n_rows; i++)
        if (!strcmp(lib->rows[i].block_id, block_id)) return pz_ctx_block_weights(lib->db, lib->m, &lib->rows[i], w, err);
    return pz_err(err, "block %s is not a finished block of the library", block_id);
}

// An item's halves: wa / wf point into store (2 slots); a PAIR block is loaded once.
static int item_weights(const library *lib, const pz_search_item *it, pz_block_weights store[2],
                        const pz_block_weights **wa, const pz_block_weights **wf, char *err) {
    *wa = *wf = NULL;
    memset(store, 0, 2 * sizeof *store);
    if (it->sub != PZ_SUB_FFN) {
        if (half_weights(lib, it->layer, PZ_SUB_ATTN, it->attn_block, &store[0], err)) return -1;
        *wa = &store[0];
    }
    if (it->sub != PZ_SUB_ATTN) {
        if (it->sub == PZ_SUB_PAIR && it->attn_block[0] && !strcmp(it->attn_block, it->ffn_block)) {
            *wf = &store[0];
        } else {
            if (half_weights(lib, it->layer, PZ_SUB_FFN, it->ffn_block, &store[1], err)) {
                pz_block_weights_free(&store[0]);
                return -1;
            }
            *wf = &store[1];
        }
    }
    return 0;
}

static void item_key(const pz_search_item *it, char *key, size_t cap) {
    const char *a = it->attn_block, *f = it->ffn_block;
    char pa[32], pf[32];
    snprintf(pa, sizeof pa, "L%02d.attn.parent", it->layer);
    snprintf(pf, sizeof pf, "L%02d.ffn.parent", it->layer);
    if (!a[0]) a = pa;
    if (!f[0]) f = pf;
    if (it->sub == PZ_SUB_ATTN) snprintf(key, cap, "%s", a);
    else if (it->sub == PZ_SUB_FFN) snprintf(key, cap, "%s", f);
    else if (!strcmp(a, f)) snprintf(key, cap, "%s", a);
    else snprintf(key, cap, "%s+%s", a, f);
}

// The child of a choice as the scorer's base: the weights of every group's
// item (owned by base[], 2 slots per group), pointers per layer.
typedef struct {
    pz_block_weights *store;  // (2 · n_groups)
    const pz_block_weights **attn, **ffn;  // (n_layer)
} base_child;

static void base_free(base_child *b, int n_groups) {
    if (b->store)
        for (int i = 0; i < 2 * n_groups; i++) pz_block_weights_free(&b->store[i]);
    free(b->store);
    free(b->attn);
    free(b->ffn);
    memset(b, 0, sizeof *b);
}

static int base_load(const library *lib, pz_search *s, const int *choice, base_child *b, char *err) {
    const int G = pz_search_n_groups(s), L = pz_search_parent(s)->n_layer;
    memset(b, 0, sizeof *b);
    b->store = calloc((size_t)G * 2, sizeof *b->store);
    b->attn = calloc((size_t)L, sizeof *b->attn);
    b->ffn = calloc((size_t)L, sizeof *b->ffn);
    if (!b->store || !b->attn || !b->ffn) {
        base_free(b, G);
        return pz_err(err, "out of memory");
    }
    for (int g = 0; g < G; g++) {
        const pz_search_item *it = pz_search_item_at(s, g, choice[g]);
        const pz_block_weights *wa, *wf;
        if (item_weights(lib, it, &b->store[2 * g], &wa, &wf, err)) {
            base_free(b, G);
            return -1;
        }
        if (wa) b->attn[it->layer] = wa;
        if (wf) b->ffn[it->layer] = wf;
    }
    return 0;
}

static int set_base(pz_scorer *sc, const library *lib, pz_search *s, const int *choice, base_child *b,
                    pz_score_result *r, char *err) {
    base_free(b, pz_search_n_groups(s));
    if (base_load(lib, s, choice, b, err) || pz_scorer_set_base(sc, b->attn, b->ffn, err)) return -1;
    pz_scorer_base(sc, r);
    return 0;
}

// ---- context windows ---------------------------------------------------------------------------
static int load_tokens(const char *data, const char *model, long want, long seq_len, int32_t **ids, long *n,
                       char *err) {
    size_t len;
    char *text = pz_read_file(data, (size_t)1 << 34, &len, err);
    if (!text) return -1;
    pz_tokenizer *tok = pz_tokenizer_load(model, err);
    int got = tok ? pz_tokenizer_encode(tok, text, len, 0, ids, err) : -1;
    pz_tokenizer_free(tok);
    free(text);
    if (got < 0) return -1;
    long use = got < want ? got : want;
    use -= use % seq_len;
    if (use < seq_len) {
        free(*ids);
        *ids = NULL;
        return pz_err(err, "%s gives %d tokens: the context needs at least one window of %ld", data, got, seq_len);
    }
    *n = use;
    return 0;
}

// The base's key: FNV-1a of its items' keys, in group order.
static void child_key(pz_search *s, const int *choice, char key[17]) {
    uint64_t h = 1469598103934665603ull;
    for (int g = 0; g < pz_search_n_groups(s); g++) {
        char ik[200];
        item_key(pz_search_item_at(s, g, choice[g]), ik, sizeof ik);
        for (const char *c = ik; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
        h = (h ^ '|') * 1099511628211ull;
    }
    snprintf(key, 17, "%016" PRIx64, h);
}

static int same_choice(const int *a, const int *b, int n) {
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static int record_round(pz_rundb *db, const char *key, int round, long sol, const char *status, const char *hash,
                        long seq_len, long tokens, const pz_score_result *r, double predicted, int n_rescored,
                        double wall, char *err) {
    pz_rundb_context_round row;
    memset(&row, 0, sizeof row);
    row.round = round, row.solution_id = sol;
    snprintf(row.status, sizeof row.status, "%s", status);
    snprintf(row.data_hash, sizeof row.data_hash, "%s", hash);
    row.seq_len = seq_len, row.tokens = tokens;
    row.kl = r->kl, row.top1 = r->top1, row.loss_delta = r->loss_delta;
    row.predicted = predicted, row.n_rescored = n_rescored, row.wall_s = wall;
    return pz_rundb_record_context_round(db, key, &row, err);
}

static int load_choice(pz_rundb *db, pz_search *s, long solution_id, int *choice, char *err) {
    pz_rundb_solution_layer *ls = NULL;
    int n = 0;
    if (pz_rundb_solution_layers(db, solution_id, &ls, &n, err)) return -1;
    int rc = n ? pz_search_choice_of(s, ls, n, choice, err) : pz_err(err, "solution %ld has no layers", solution_id);
    free(ls);
    return rc;
}

int pz_search_in_context(pz_rundb *db, pz_search *s, const char *search_key, const pz_ctx_params *p,
                         const int *choice0, long solution0, pz_ctx_solve_fn solve, void *user, long *best_solution,
                         char *err) {
    const int G = pz_search_n_groups(s);
    const long seq_len = pz_search_data_seq_len(s);
    int rc = -1, n_rounds = 0;
    char data[1024], hash[17], key[2048], parent_path[1200];
    int32_t *tok = NULL;
    long n_tok = 0;
    pz_model *m = NULL;
    pz_scorer *sc = NULL;
    library lib = {db, NULL, NULL, 0};
    base_child base = {0};
    pz_rundb_context_round *rounds = NULL;
    int *cur = malloc(sizeof(int) * (size_t)G), *next = malloc(sizeof(int) * (size_t)G);
    int *rnext = malloc(sizeof(int) * (size_t)G), need_pass = 0;
    double *orig = NULL, *dl = NULL;
    int *first = malloc(sizeof(int) * (size_t)(G + 1));
    if (!cur || !next || !rnext || !first) {
        pz_err(err, "out of memory");
        goto out;
    }
    // The one-shot scores (the fallback of candidates not rescored).
    first[0] = 0;
    for (int g = 0; g < G; g++) first[g + 1] = first[g] + pz_search_n_items(s, g);
    if (!(orig = malloc(sizeof(double) * (size_t)(first[G] ? first[G] : 1))) ||
        !(dl = malloc(sizeof(double) * (size_t)(first[G] ? first[G] : 1)))) {
        pz_err(err, "out of memory");
        goto out;
    }
    for (int g = 0; g < G; g++)
        for (int i = 0; i < pz_search_n_items(s, g); i++) orig[first[g] + i] = pz_search_item_at(s, g, i)->score;

    // The context windows: given, or the one-shot scores' own.
    long positions = 0;
    int got = pz_rundb_score_data(db, pz_search_data_hash(s), seq_len, data, sizeof data, &positions, err);
    if (got < 0) goto out;
    if (p->data) snprintf(data, sizeof data, "%s", p->data);
    else if (!got) {
        pz_err(err, "the scores %s name no data file: pass --context-data", pz_search_data_hash(s));
        goto out;
    }
    long want = p->tokens > 0 ? p->tokens : positions / (seq_len - 1) * seq_len;
    pz_rundb_model parent;
    int have = pz_rundb_get_parent(db, &parent, err);
    if (have <= 0) {
        if (!have) pz_err(err, "the run database has no parent");
        goto out;
    }
    snprintf(parent_path, sizeof parent_path, "%s", parent.path);
    if (load_tokens(data, parent_path, want, seq_len, &tok, &n_tok, err)) goto out;
    snprintf(hash, sizeof hash, "%016" PRIx64, pz_capture_tokens_hash(tok, n_tok));
    snprintf(key, sizeof key, "%s|context %s/%ld/%ld|margin %.6g|tries %d x %.6g|prec %s", search_key, hash, seq_len,
             n_tok, p->margin, p->tries, p->step_penalty, pz_dt_name(p->prec));

    if (pz_rundb_context_rounds(db, key, &rounds, &n_rounds, err)) goto out;
    if (n_rounds) {
        const pz_rundb_context_round *last = &rounds[n_rounds - 1];
        int ended = strcmp(last->status, "worse") == 0 || strcmp(last->status, "same") == 0;
        if (ended || last->round >= p->rounds) {
            long best = rounds[0].solution_id;
            double bkl = rounds[0].kl;
            for (int r = 1; r < n_rounds; r++)
                if (rounds[r].kl < bkl) bkl = rounds[r].kl, best = rounds[r].solution_id;
            fprintf(stderr, "in context: %d round%s stored (%s); the best child is solution %ld (KL %.5f); nothing "
                            "to do\n", n_rounds - 1, n_rounds == 2 ? "" : "s", ended ? "converged" : "round limit",
                    best, bkl);
            *best_solution = best;
            rc = 0;
            goto out;
        }
    }

    // The parent, the library and the scorer.
    if (!(m = pz_model_load(parent_path, PZ_DT_F32, err))) goto out;
    lib.m = m;
    if (pz_rundb_list_done(db, &lib.rows, &lib.n_rows, err)) goto out;
    pz_score_params sp = pz_score_default_params();
    sp.n_threads = p->threads, sp.prec = p->prec;
    double t0 = pz_now();
    if (!(sc = pz_scorer_create(m, tok, n_tok, (int)seq_len, &sp, err))) goto out;
    fprintf(stderr, "in context: %ld tokens (%ld windows of %ld, hash %s) of %s; parent pass %.1f s\n", n_tok,
            n_tok / seq_len, seq_len, hash, data, pz_now() - t0);

    pz_score_result br;
    long base_sol;
    int round;
    if (!n_rounds) {
        memcpy(cur, choice0, sizeof(int) * (size_t)G);
        base_sol = solution0, round = 0;
        t0 = pz_now();
        if (set_base(sc, &lib, s, cur, &base, &br, err)) goto out;
        if (record_round(db, key, 0, base_sol, "base", hash, seq_len, n_tok, &br, NAN, 0, pz_now() - t0, err))
            goto out;
        fprintf(stderr, "in context: round 0 (one-shot, solution %ld): measured KL %.5f, top-1 %.4f\n", base_sol,
                br.kl, br.top1);
    } else {  // resume from the last stored round (the best: every earlier one improved)
        const pz_rundb_context_round *last = &rounds[n_rounds - 1];
        base_sol = last->solution_id, round = last->round;
        if (load_choice(db, s, base_sol, cur, err) || set_base(sc, &lib, s, cur, &base, &br, err)) goto out;
        fprintf(stderr, "in context: resuming after round %d (solution %ld): measured KL %.5f (stored %.5f)\n", round,
                base_sol, br.kl, last->kl);
    }
    long best_sol = base_sol;
    double best_kl = br.kl;

    while (round < p->rounds && !pz_stop_signal) {
        round++;
        const double tr = pz_now();
        if (need_pass) {  // the cache holds the last child tried: back to the base
            if (pz_scorer_set_base(sc, base.attn, base.ffn, err)) goto out;
            need_pass = 0;
        }
        // Rescore the candidates in the base.
        int n_todo = 0, n_done = 0, n_scored = 0;
        for (int g = 0; g < G; g++)
            for (int i = 0; i < pz_search_n_items(s, g); i++)
                n_todo += i != cur[g] && fabs(orig[first[g] + i] - orig[first[g] + cur[g]]) <= p->margin;
        char bkey[17];
        child_key(s, cur, bkey);
        for (int g = 0; g < G && !pz_stop_signal; g++) {
            const double chosen = orig[first[g] + cur[g]];
            for (int i = 0; i < pz_search_n_items(s, g); i++) {
                const pz_search_item *it = pz_search_item_at(s, g, i);
                double delta = orig[first[g] + i] - chosen;  // the one-shot difference
                if (i == cur[g]) delta = 0;
                else if (fabs(delta) <= p->margin) {
                    char ik[200];
                    item_key(it, ik, sizeof ik);
                    pz_score_result r;
                    double bkl;
                    int have_s = pz_rundb_context_score(db, bkey, ik, hash, seq_len, &r, &bkl, err);
                    if (have_s < 0) goto out;
                    if (!have_s) {
                        pz_block_weights st[2];
                        const pz_block_weights *wa, *wf;
                        if (item_weights(&lib, it, st, &wa, &wf, err)) goto out;
                        int e = pz_scorer_score_halves(sc, it->layer, wa, wf, &r, err);
                        pz_block_weights_free(&st[0]);
                        pz_block_weights_free(&st[1]);
                        if (e || pz_rundb_record_context_score(db, bkey, base_sol, ik, hash, seq_len, &r, br.kl, err))
                            goto out;
                        bkl = br.kl;
                        n_scored++;
                    }
                    delta = r.kl - bkl;
                    n_done++;
                    if (n_done % 20 == 0 || n_done == n_todo)
                        fprintf(stderr, "  round %d: %d/%d candidates in context (%d scored now), %.0f s\n", round,
                                n_done, n_todo, n_scored, pz_now() - tr);
                }
                dl[first[g] + i] = delta;
            }
        }
        if (pz_stop_signal) break;
        // Solve again, with a penalty per changed group growing over the tries
        // (a trust region: the deltas are a first-order model around the
        // base), and measure each new child; the best measured is the round's.
        long r_sol = 0;
        double r_pred = NAN;
        pz_score_result r_res = br;
        base_child r_child = {0};
        int n_tries = 0, same = 0;
        for (int t = 0; t < p->tries && !pz_stop_signal; t++) {
            const double lambda = t == 0 ? 0 : p->step_penalty * (double)(1 << (t - 1));
            for (int g = 0; g < G; g++)
                for (int i = 0; i < pz_search_n_items(s, g); i++)
                    pz_search_set_score(s, g, i, dl[first[g] + i] + (i == cur[g] ? 0 : lambda));
            long sol = 0;
            double obj = NAN;
            int got_sol = solve(user, round, next, &sol, &obj, err);
            if (got_sol < 0) goto round_fail;
            if (got_sol > 0) break;
            if (same_choice(next, cur, G)) {  // a larger penalty chooses the base again too
                same = t == 0;
                break;
            }
            int n_diff = 0;
            double pred = br.kl;
            for (int g = 0; g < G; g++) n_diff += next[g] != cur[g], pred += dl[first[g] + next[g]];
            pz_score_result nr;
            base_child nb = {0};
            if (base_load(&lib, s, next, &nb, err)) goto round_fail;
            if (pz_scorer_set_base(sc, nb.attn, nb.ffn, err)) {
                base_free(&nb, G);
                goto round_fail;
            }
            need_pass = 1;  // the cache is this child's now
            pz_scorer_base(sc, &nr);
            n_tries++;
            fprintf(stderr, "  round %d try %d (penalty %.4g, solution %ld, %d group%s changed): predicted KL %.5f, "
                            "measured %.5f (base %.5f)\n", round, t, lambda, sol, n_diff, n_diff == 1 ? "" : "s",
                    pred, nr.kl, br.kl);
            if (nr.kl < r_res.kl) {
                base_free(&r_child, G);
                r_child = nb;
                r_res = nr, r_sol = sol, r_pred = pred;
                memcpy(rnext, next, sizeof(int) * (size_t)G);
            } else {
                base_free(&nb, G);
            }
        }
        if (pz_stop_signal) {
            base_free(&r_child, G);
            break;
        }
        if (!n_tries) {
            if (record_round(db, key, round, base_sol, "same", hash, seq_len, n_tok, &br, br.kl, n_todo,
                             pz_now() - tr, err))
                goto out;
            fprintf(stderr, "in context: round %d %s; converged\n", round,
                    same ? "chooses the base child again" : "finds no other solution");
            break;
        }
        const int better = r_sol != 0;
        if (record_round(db, key, round, better ? r_sol : base_sol, better ? "improved" : "worse", hash, seq_len,
                         n_tok, better ? &r_res : &br, r_pred, n_todo, pz_now() - tr, err)) {
            base_free(&r_child, G);
            goto out;
        }
        fprintf(stderr, "in context: round %d: %s (measured KL %.5f, base %.5f), %.0f s\n", round,
                better ? "improved" : "no try beats the base; stopping", r_res.kl, br.kl, pz_now() - tr);
        if (!better) break;
        base_free(&base, G);
        base = r_child;
        memcpy(cur, rnext, sizeof(int) * (size_t)G);
        br = r_res, base_sol = r_sol, best_sol = r_sol, best_kl = r_res.kl;
        continue;
    round_fail:
        base_free(&r_child, G);
        goto out;
    }
    if (pz_stop_signal)
        fprintf(stderr, "in context: interrupted (signal %d); rerun the same command to resume\n", (int)pz_stop_signal);
    *best_solution = best_sol;
    rc = 0;
    free(rounds);
    rounds = NULL;
    if (pz_rundb_context_rounds(db, key, &rounds, &n_rounds, err)) goto out;
    printf("\nin context (%ld tokens of %s, margin %.3g):\n%5s %8s %-9s %10s %10s %8s %9s %8s\n", n_tok, data,
           p->margin, "round", "solution", "status", "predicted", "KL", "top1", "rescored", "wall s");
    for (int r = 0; r < n_rounds; r++)
        printf("%5d %8ld %-9s %10.5f %10.5f %8.4f %9d %8.1f\n", rounds[r].round, rounds[r].solution_id,
               rounds[r].status, rounds[r].predicted, rounds[r].kl, rounds[r].top1, rounds[r].n_rescored,
               rounds[r].wall_s);
    printf("best child: solution %ld (measured KL %.5f on the context windows)\n", best_sol, best_kl);
out:
    pz_scorer_free(sc);  // before the blocks it borrows
    base_free(&base, G);
    pz_model_free(m);
    free(lib.rows);
    free(rounds);
    free(tok);
    free(cur);
    free(next);
    free(rnext);
    free(first);
    free(orig);
    free(dl);
    return rc;
}
