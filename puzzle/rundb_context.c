// rundb_context.c — search in context (`puzzle search --in-context`, see
// rundb.h): the scores of candidates swapped into a child, keyed by that
// child's solution, and the rounds of each in-context run, so that a rerun
// continues where a killed one stopped.
#include "rundb_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int pz_rundb_context_score(pz_rundb *db, const char *base_key, const char *item, const char *data_hash,
                           long seq_len, pz_score_result *r, double *base_kl, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "SELECT kl, loss_delta, top1, tokens, wall_s, base_kl FROM context_scores "
                      "WHERE base_key = ? AND item = ? AND data_hash = ? AND seq_len = ?",
                      "tttl", base_key, item, data_hash, seq_len))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1) {
        memset(r, 0, sizeof *r);
        r->kl = rundb_double(&q, 0), r->loss_delta = rundb_double(&q, 1), r->top1 = rundb_double(&q, 2);
        r->tokens = r->loss_tokens = (long)rundb_int64(&q, 3);
        r->wall_s = rundb_double(&q, 4);
        *base_kl = rundb_double(&q, 5);
    }
    rundb_done(&q);
    return rc;
}

int pz_rundb_record_context_score(pz_rundb *db, const char *base_key, long base_solution_id, const char *item,
                                  const char *data_hash, long seq_len, const pz_score_result *r, double base_kl,
                                  char *err) {
    if (rundb_begin(db, err)) return -1;
    int rc = rundb_exec(db, err,
                        "INSERT OR REPLACE INTO context_scores (base_key, base_solution_id, item, data_hash, seq_len, "
                        "tokens, kl, loss_delta, top1, base_kl, wall_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "tkttllddddd", base_key, base_solution_id, item, data_hash, seq_len, r->tokens, r->kl, r->loss_delta,
                        r->top1, base_kl, r->wall_s);
    return rundb_end(db, rc < 0 ? -1 : 0, err);
}

int pz_rundb_context_rounds(pz_rundb *db, const char *run_key, pz_rundb_context_round **rows, int *n, char *err) {
    *rows = NULL, *n = 0;
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "SELECT round, solution_id, status, data_hash, seq_len, tokens, kl, top1, loss_delta, "
                      "predicted, n_rescored, wall_s FROM context_rounds WHERE run_key = ? ORDER BY round",
                      "t", run_key))
        return -1;
    int cap = 0, rc;
    while ((rc = rundb_step(&q)) == 1) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            pz_rundb_context_round *g = realloc(*rows, sizeof **rows * (size_t)cap);
            if (!g) {
                rc = pz_err(err, "out of memory");
                break;
            }
            *rows = g;
        }
        pz_rundb_context_round *r = &(*rows)[(*n)++];
        memset(r, 0, sizeof *r);
        r->round = rundb_int(&q, 0);
        r->solution_id = (long)rundb_int64(&q, 1);
        rundb_copy(&q, 2, r->status, sizeof r->status);
        rundb_copy(&q, 3, r->data_hash, sizeof r->data_hash);
        r->seq_len = (long)rundb_int64(&q, 4), r->tokens = (long)rundb_int64(&q, 5);
        r->kl = rundb_double(&q, 6), r->top1 = rundb_double(&q, 7), r->loss_delta = rundb_double(&q, 8);
        r->predicted = rundb_double(&q, 9);
        r->n_rescored = rundb_int(&q, 10);
        r->wall_s = rundb_double(&q, 11);
    }
    rundb_done(&q);
    if (rc < 0) {
        free(*rows);
        *rows = NULL, *n = 0;
        return -1;
    }
    return 0;
}

int pz_rundb_record_context_round(pz_rundb *db, const char *run_key, const pz_rundb_context_round *r, char *err) {
    if (rundb_begin(db, err)) return -1;
    int rc = rundb_exec(db, err,
                        "INSERT OR REPLACE INTO context_rounds (run_key, round, solution_id, status, data_hash, "
                        "seq_len, tokens, kl, top1, loss_delta, predicted, n_rescored, wall_s) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "tiLttllddddid", run_key, r->round, (int64_t)r->solution_id, r->status, r->data_hash,
                        r->seq_len, r->tokens, r->kl, r->top1, r->loss_delta, r->predicted, r->n_rescored,
                        r->wall_s);
    return rundb_end(db, rc < 0 ? -1 : 0, err);
}

int pz_rundb_score_data(pz_rundb *db, const char *data_hash, long seq_len, char *data, size_t cap, long *positions,
                        char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "SELECT data, tokens FROM scores WHERE data_hash = ? AND seq_len = ? AND data IS NOT NULL "
                      "ORDER BY created_at DESC LIMIT 1",
                      "tl", data_hash, seq_len))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1) {
        rundb_copy(&q, 0, data, cap);
        *positions = (long)rundb_int64(&q, 1);
    }
    rundb_done(&q);
    return rc;
}
