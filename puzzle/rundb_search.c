// rundb_search.c — searches and their solutions (`puzzle search`,
// `solutions`, `solution`, `realize`; see rundb.h): recording a search with
// its constraints, solutions and per-layer choices, and reading them back
// through the views.
#include "rundb_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static int insert_layers(pz_rundb *db, int64_t sol_id, const pz_rundb_solution *s, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "INSERT INTO solution_layers (solution_id, layer, attn_kind, attn_size, ffn_kind, ffn_size, "
                      "attn_variant, ffn_variant, attn_block, ffn_block, attn_is_parent, ffn_is_parent, score) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      ""))
        return -1;
    int rc = 0;
    for (int i = 0; !rc && i < s->n_layers; i++) {
        const pz_rundb_solution_layer *l = &s->layers[i];
        char at[32], ft[32];
        pz_variant_name(PZ_SUB_ATTN, &l->attn, at, sizeof at);
        pz_variant_name(PZ_SUB_FFN, &l->ffn, ft, sizeof ft);
        rc = rundb_rebind(&q, "Lititittttiid", sol_id, l->layer, pz_attn_kind_name(l->attn.attn),
                          l->attn.size, pz_ffn_kind_name(l->ffn.ffn), l->ffn.size, at, ft,
                          l->attn_block[0] ? l->attn_block : NULL, l->ffn_block[0] ? l->ffn_block : NULL,
                          l->attn_is_parent, l->ffn_is_parent, l->score) ||
             rundb_step(&q) < 0;
    }
    rundb_done(&q);
    return rc ? -1 : 0;
}

int pz_rundb_record_search(pz_rundb *db, const pz_rundb_search *s, const pz_rundb_constraint *cons, int n_cons,
                           const pz_rundb_solution *sols, int n_sols, long *search_id, long *first_solution_id,
                           char *err) {
    *search_id = 0, *first_solution_id = 0;
    if (rundb_begin(db, err)) return -1;
    int rc = rundb_exec(db, err,
                        "INSERT INTO searches (command, method, budget, device, dtype, n_devices, tp, scenario, "
                        "batch_mode, objective, data_hash, target_throughput, target_speedup, max_memory, "
                        "max_latency_s, max_ttft_s, max_params, n_wanted, diversity, parent_batch, "
                        "parent_throughput, parent_time_s, status, explanation, n_solutions, wall_s) VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "tttttiitttt" "dddddd" "ldldd" "ttid",
                        s->command, s->method, s->budget, s->device, s->dtype, s->n_devices, s->tp, s->scenario,
                        s->batch_mode, s->objective, s->data_hash, s->target_throughput, s->target_speedup,
                        s->max_memory, s->max_latency_s, s->max_ttft_s, s->max_params, s->n_wanted, s->diversity,
                        s->parent_batch, s->parent_throughput, s->parent_time_s, s->status, s->explanation,
                        s->n_solutions, s->wall_s) < 0;
    int64_t id = rundb_last_id(db);
    for (int c = 0; !rc && c < n_cons; c++) {
        const pz_rundb_constraint *k = &cons[c];
        rc = rundb_exec(db, err,
                        "INSERT INTO search_constraints (search_id, name, batch, rhs, min_value, ratio, violated, "
                        "binding) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        "Ltldddii", id, k->name, k->batch, k->rhs, k->min_value, k->ratio, k->violated,
                        k->binding) < 0;
    }
    for (int k = 0; !rc && k < n_sols; k++) {
        const pz_rundb_solution *f = &sols[k];
        rc = rundb_exec(db, err,
                        "INSERT INTO solutions (search_id, rank, status, objective, bound, batch, time_s, "
                        "throughput, speedup, latency_s, ttft_s, memory_bytes, params, n_changed, solve_s) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "Litddldddddddid", id, f->rank, f->status, f->objective, f->bound, f->batch, f->time_s,
                        f->throughput, f->speedup, f->latency_s, f->ttft_s, f->memory_bytes, f->params,
                        f->n_changed, f->solve_s) < 0;
        int64_t sol_id = rundb_last_id(db);
        if (!rc && k == 0) *first_solution_id = (long)sol_id;
        rc = rc || insert_layers(db, sol_id, f, err);
    }
    if (rundb_end(db, rc ? -1 : 0, err)) {
        *first_solution_id = 0;
        return -1;
    }
    *search_id = (long)id;
    return 0;
}

int pz_rundb_list_searches(pz_rundb *db, long search_id, pz_rundb_search_row **rows, int *n, char *err) {
    rundb_stmt q;
    int cap = 0, rc;
    *rows = NULL, *n = 0;
    if (rundb_prepare(db, &q, err,
                      "SELECT id, created_at, method, budget, scenario, objective, target_speedup, "
                      "target_throughput, status, IFNULL(explanation, ''), parent_throughput, tp, n_devices "
                      "FROM searches WHERE ?1 IS NULL OR id = ?1 ORDER BY id",
                      "k", search_id))
        return -1;
    while ((rc = rundb_step(&q)) == 1) {
        if (rundb_grow((void **)rows, *n, &cap, sizeof **rows, err)) {
            rc = -1;
            break;
        }
        pz_rundb_search_row *r = &(*rows)[(*n)++];
        memset(r, 0, sizeof *r);
        r->id = (long)rundb_int64(&q, 0);
        rundb_copy(&q, 1, r->created_at, sizeof r->created_at);
        rundb_copy(&q, 2, r->method, sizeof r->method);
        rundb_copy(&q, 3, r->budget, sizeof r->budget);
        rundb_copy(&q, 4, r->scenario, sizeof r->scenario);
        rundb_copy(&q, 5, r->objective, sizeof r->objective);
        r->target_speedup = rundb_double(&q, 6);
        r->target_throughput = rundb_double(&q, 7);
        rundb_copy(&q, 8, r->status, sizeof r->status);
        rundb_copy(&q, 9, r->explanation, sizeof r->explanation);
        r->parent_throughput = rundb_double(&q, 10);
        r->tp = rundb_int(&q, 11);
        r->n_devices = rundb_int(&q, 12);
    }
    return rundb_list_done(&q, rc, (void **)rows, n);
}

#define SUMMARY_COLS                                                                                       \
    "solution_id, search_id, rank, method, budget, scenario, objective, status, score, speedup, throughput, " \
    "time_s, latency_s, ttft_s, batch, memory_gib, params_m, n_changed"

static void read_summary(rundb_stmt *q, pz_rundb_solution_row *r) {
    memset(r, 0, sizeof *r);
    r->solution_id = (long)rundb_int64(q, 0);
    r->search_id = (long)rundb_int64(q, 1);
    r->rank = rundb_int(q, 2);
    rundb_copy(q, 3, r->method, sizeof r->method);
    rundb_copy(q, 4, r->budget, sizeof r->budget);
    rundb_copy(q, 5, r->scenario, sizeof r->scenario);
    rundb_copy(q, 6, r->objective, sizeof r->objective);
    rundb_copy(q, 7, r->status, sizeof r->status);
    r->score = rundb_double(q, 8);
    r->speedup = rundb_double(q, 9);
    r->throughput = rundb_double(q, 10);
    r->time_s = rundb_double(q, 11);
    r->latency_s = rundb_double(q, 12);
    r->ttft_s = rundb_double(q, 13);
    r->batch = (long)rundb_int64(q, 14);
    r->memory_gib = rundb_double(q, 15);
    r->params_m = rundb_double(q, 16);
    r->n_changed = rundb_int(q, 17);
}

int pz_rundb_list_solutions(pz_rundb *db, long search_id, pz_rundb_solution_row **rows, int *n, char *err) {
    rundb_stmt q;
    int cap = 0, rc;
    *rows = NULL, *n = 0;
    if (rundb_prepare(db, &q, err, "SELECT " SUMMARY_COLS " FROM solution_summary WHERE search_id = ? ORDER BY rank",
                      "l", search_id))
        return -1;
    while ((rc = rundb_step(&q)) == 1) {
        if (rundb_grow((void **)rows, *n, &cap, sizeof **rows, err)) {
            rc = -1;
            break;
        }
        read_summary(&q, &(*rows)[(*n)++]);
    }
    return rundb_list_done(&q, rc, (void **)rows, n);
}

int pz_rundb_get_solution(pz_rundb *db, long solution_id, pz_rundb_solution_row *out, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err, "SELECT " SUMMARY_COLS " FROM solution_summary WHERE solution_id = ?", "l",
                      solution_id))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1) read_summary(&q, out);
    rundb_done(&q);
    return rc;
}

int pz_rundb_solution_layers(pz_rundb *db, long solution_id, pz_rundb_solution_layer **rows, int *n, char *err) {
    rundb_stmt q;
    int cap = 0, rc;
    *rows = NULL, *n = 0;
    if (rundb_prepare(db, &q, err,
                      "SELECT layer, attn_kind, attn_size, ffn_kind, ffn_size, attn_variant, ffn_variant, "
                      "IFNULL(attn_block, ''), IFNULL(ffn_block, ''), attn_is_parent, ffn_is_parent, score "
                      "FROM solution_layers WHERE solution_id = ? ORDER BY layer",
                      "l", solution_id))
        return -1;
    while ((rc = rundb_step(&q)) == 1) {
        if (rundb_grow((void **)rows, *n, &cap, sizeof **rows, err)) {
            rc = -1;
            break;
        }
        pz_rundb_solution_layer *l = &(*rows)[*n];
        memset(l, 0, sizeof *l);
        l->layer = rundb_int(&q, 0);
        if (pz_attn_kind_parse(rundb_text(&q, 1), &l->attn.attn) ||
            pz_ffn_kind_parse(rundb_text(&q, 3), &l->ffn.ffn)) {
            rc = pz_err(err, "solution %ld has a bad layer row (layer %d)", solution_id, l->layer);
            break;
        }
        l->attn.size = rundb_int(&q, 2);
        l->ffn.size = rundb_int(&q, 4);
        rundb_copy(&q, 5, l->attn_variant, sizeof l->attn_variant);
        rundb_copy(&q, 6, l->ffn_variant, sizeof l->ffn_variant);
        rundb_copy(&q, 7, l->attn_block, sizeof l->attn_block);
        rundb_copy(&q, 8, l->ffn_block, sizeof l->ffn_block);
        l->attn_is_parent = rundb_int(&q, 9);
        l->ffn_is_parent = rundb_int(&q, 10);
        l->score = rundb_double(&q, 11);
        (*n)++;
    }
    return rundb_list_done(&q, rc, (void **)rows, n);
}
