// rundb_scores.c — replace-1-block scores (`puzzle score`, see rundb.h):
// recording them, and reading them back for the summary and the search.
#include "rundb_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

int pz_rundb_pick_scores(pz_rundb *db, const char *data_hash, char hash[17], long *seq_len, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "SELECT data_hash, seq_len, count(*) FROM scores WHERE ?1 IS NULL OR data_hash = ?1 "
                      "GROUP BY 1, 2 ORDER BY 3 DESC, max(created_at) DESC LIMIT 1",
                      "t", data_hash))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1) {
        rundb_copy(&q, 0, hash, 17);
        *seq_len = (long)rundb_int64(&q, 1);
    }
    rundb_done(&q);
    return rc;
}

int pz_rundb_is_scored(pz_rundb *db, const char *block_id, const char *data_hash, long seq_len, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err, "SELECT 1 FROM scores WHERE block_id = ? AND data_hash = ? AND seq_len = ?",
                      "ttl", block_id, data_hash, seq_len))
        return -1;
    int rc = rundb_step(&q);
    rundb_done(&q);
    return rc;
}

int pz_rundb_record_score(pz_rundb *db, const char *block_id, const pz_rundb_score_setup *s,
                          const pz_score_result *r, char *err) {
    if (rundb_begin(db, err)) return -1;
    int rc = rundb_exec(db, err,
                        "INSERT OR REPLACE INTO scores (block_id, data_hash, seq_len, tokens, kl, loss_delta, top1, "
                        "parent_nll, child_nll, data, prec, threads, wall_s) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "ttlldddddttld", block_id, s->data_hash, s->seq_len, r->tokens, r->kl, r->loss_delta,
                        r->top1, r->parent_nll, r->child_nll, s->data, s->prec, s->threads, r->wall_s);
    return rundb_end(db, rc < 0 ? -1 : 0, err);
}

int pz_rundb_record_influence(pz_rundb *db, const char *data_hash, long seq_len, long tokens, const double *bi,
                              int n_layer, char *err) {
    if (rundb_begin(db, err)) return -1;
    int rc = 0;
    for (int l = 0; l < n_layer && rc >= 0; l++)
        rc = rundb_exec(db, err,
                        "INSERT OR REPLACE INTO layer_influence (data_hash, seq_len, layer, tokens, bi) "
                        "VALUES (?, ?, ?, ?, ?)",
                        "tllld", data_hash, seq_len, (long)l, tokens, bi[l]);
    return rundb_end(db, rc < 0 ? -1 : 0, err);
}

int pz_rundb_influence(pz_rundb *db, const char *data_hash, long seq_len, double *bi, int n_layer, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "SELECT layer, bi FROM layer_influence WHERE data_hash = ? AND seq_len = ? ORDER BY layer",
                      "tl", data_hash, seq_len))
        return -1;
    int n = 0, rc;
    while ((rc = rundb_step(&q)) == 1) {
        int l = sqlite3_column_int(q.st, 0);
        if (l >= 0 && l < n_layer) bi[l] = sqlite3_column_double(q.st, 1), n++;
    }
    rundb_done(&q);
    return rc < 0 ? -1 : n == n_layer;
}

int pz_rundb_score_extremes(pz_rundb *db, const char *data_hash, long seq_len, const char *metric, int worst,
                            pz_rundb_score_row *rows, int cap, char *err) {
    // Identifiers cannot be parameters: the column comes from this fixed list.
    const char *col = !strcmp(metric, "kl") ? "kl" : !strcmp(metric, "loss") ? "loss_delta" : "top1";
    int desc = worst ^ !strcmp(metric, "top1");
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT block_id, kl, loss_delta, top1 FROM block_scores WHERE data_hash = ? AND seq_len = ? "
             "AND is_parent = 0 ORDER BY %s %s LIMIT ?",
             col, desc ? "DESC" : "ASC");
    rundb_stmt q;
    if (rundb_prepare(db, &q, err, sql, "tli", data_hash, seq_len, cap)) return -1;
    int n = 0, rc = 0;
    while (n < cap && (rc = rundb_step(&q)) == 1) {
        rundb_copy(&q, 0, rows[n].block_id, sizeof rows[n].block_id);
        rows[n].kl = rundb_double(&q, 1);
        rows[n].loss_delta = rundb_double(&q, 2);
        rows[n].top1 = rundb_double(&q, 3);
        n++;
    }
    rundb_done(&q);
    return rc < 0 ? -1 : n;
}

int pz_rundb_list_scored(pz_rundb *db, const char *data_hash, long seq_len, pz_rundb_scored_block **rows, int *n,
                         char *err) {
    rundb_stmt q;
    int cap = 0, rc;
    *rows = NULL, *n = 0;
    if (rundb_prepare(db, &q, err,
                      "SELECT " RUNDB_DONE_COLS ", s.kl, s.loss_delta FROM blocks b LEFT JOIN scores s ON "
                      "s.block_id = b.block_id AND s.data_hash = ? AND s.seq_len = ? WHERE b.status = 'done' "
                      "ORDER BY b.layer, b.block_id",
                      "tl", data_hash, seq_len))
        return -1;
    while ((rc = rundb_step(&q)) == 1) {
        if (rundb_grow((void **)rows, *n, &cap, sizeof **rows, err) || rundb_read_done(&q, 0, &(*rows)[*n].b, err)) {
            rc = -1;
            break;
        }
        (*rows)[*n].kl = rundb_double(&q, 11);
        (*rows)[*n].loss_delta = rundb_double(&q, 12);
        (*n)++;
    }
    return rundb_list_done(&q, rc, (void **)rows, n);
}
