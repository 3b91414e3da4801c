// cmd_solutions.c — inspecting searches: `puzzle solutions --db RUN.db`
// lists every search with its solutions (or its infeasibility answer);
// `puzzle solution --db RUN.db ID` prints one solution's layers.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "rundb.h"

void pz_usage_solutions(FILE *out) {
    fprintf(out,
            "usage: puzzle solutions --db RUN.db [--search ID]\n\n"
            "Lists the searches stored in the run database, newest last, each with its solutions\n"
            "(rank, score, predicted speed-up, throughput, memory, parameters) or, when the budget\n"
            "was infeasible, the answer: the binding constraint and the closest feasible value.\n"
            "The same data: sqlite3 RUN.db 'SELECT * FROM solution_summary'.\n");
}

void pz_usage_solution(FILE *out) {
    fprintf(out,
            "usage: puzzle solution --db RUN.db ID\n\n"
            "Prints solution ID: its search, its predicted numbers, and per layer the attention and\n"
            "FFN variants chosen, the library blocks and their scores ('*' marks a change from the\n"
            "parent). The same data: sqlite3 RUN.db 'SELECT * FROM solution_choices WHERE solution_id = ID'.\n");
}

static const char *txt(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

static int parse_db(const char *cmd, int argc, char **argv, const char **db, const char **id, const char *id_opt) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--db")) {
            if (!(*db = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (id_opt && !strcmp(argv[i], id_opt)) {
            if (!(*id = pz_arg_value(cmd, argc, argv, &i))) return -1;
        } else if (argv[i][0] != '-' && !id_opt && !*id) {
            *id = argv[i];
        } else {
            fprintf(stderr, "puzzle %s: unknown %s '%s'\n", cmd, argv[i][0] == '-' ? "option" : "argument", argv[i]);
            return -1;
        }
    }
    if (!*db) {
        fprintf(stderr, "puzzle %s: --db is missing\n", cmd);
        return -1;
    }
    if (*id) {
        char *end;
        long v = strtol(*id, &end, 10);
        if (end == *id || *end || v < 1) {
            fprintf(stderr, "puzzle %s: '%s' is not an id (a positive integer)\n", cmd, *id);
            return -1;
        }
    }
    return 0;
}

int pz_cmd_solutions(int argc, char **argv) {
    const char *dbp = NULL, *sid = NULL;
    if (parse_db("solutions", argc, argv, &dbp, &sid, "--search")) return PZ_EXIT_USAGE;
    char err[PZ_ERRLEN];
    pz_rundb *rdb = pz_rundb_open(dbp, 0, err);
    if (!rdb) {
        fprintf(stderr, "puzzle solutions: %s\n", err);
        return PZ_EXIT_FAIL;
    }
    sqlite3 *db = pz_rundb_sqlite(rdb);
    sqlite3_stmt *q = NULL, *s = NULL;
    int n = 0, rc = PZ_EXIT_FAIL;
    PZ_SQL(db, sqlite3_prepare_v2(db, "SELECT id, created_at, method, budget, scenario, objective, target_speedup, "
                                      "target_throughput, status, IFNULL(explanation, ''), parent_throughput, tp, "
                                      "n_devices FROM searches WHERE ?1 IS NULL OR id = ?1 ORDER BY id", -1, &q, NULL));
    if (sid) sqlite3_bind_int64(q, 1, atol(sid));
    PZ_SQL(db, sqlite3_prepare_v2(db, "SELECT solution_id, rank, status, score, speedup, throughput, batch, "
                                      "memory_gib, params_m, n_changed FROM solution_summary WHERE search_id = ? "
                                      "ORDER BY rank", -1, &s, NULL));
    int r;
    while ((r = sqlite3_step(q)) == SQLITE_ROW) {
        n++;
        char target[64] = "no throughput target";
        if (sqlite3_column_type(q, 6) != SQLITE_NULL) snprintf(target, sizeof target, "speedup >= %.3gx", sqlite3_column_double(q, 6));
        else if (sqlite3_column_type(q, 7) != SQLITE_NULL)
            snprintf(target, sizeof target, ">= %.4g tok/s", sqlite3_column_double(q, 7));
        printf("search %lld  %s  %s  budget %s (tp %d of %d)  %s  %s  objective %s  -> %s\n",
               sqlite3_column_int64(q, 0), txt(q, 1), txt(q, 2), txt(q, 3), sqlite3_column_int(q, 11),
               sqlite3_column_int(q, 12), txt(q, 4), target, txt(q, 5), txt(q, 8));
        if (strcmp(txt(q, 8), "solved")) {
            printf("    %s\n\n", txt(q, 9));
            continue;
        }
        printf("    %6s %4s %-9s %10s %8s %12s %6s %8s %9s %7s\n", "id", "rank", "status", "score", "speedup", "tok/s",
               "batch", "mem GiB", "params M", "changed");
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, sqlite3_column_int64(q, 0));
        while ((r = sqlite3_step(s)) == SQLITE_ROW)
            printf("    %6lld %4d %-9s %10.5g %7.3fx %12.5g %6lld %8.4g %9.2f %7d\n", sqlite3_column_int64(s, 0),
                   sqlite3_column_int(s, 1), txt(s, 2), sqlite3_column_double(s, 3), sqlite3_column_double(s, 4),
                   sqlite3_column_double(s, 5), sqlite3_column_int64(s, 6), sqlite3_column_double(s, 7),
                   sqlite3_column_double(s, 8), sqlite3_column_int(s, 9));
        PZ_SQL(db, r);
        printf("\n");
    }
    PZ_SQL(db, r);
    if (!n) printf(sid ? "no search %s in %s\n" : "no searches in %s yet (puzzle search)\n", sid ? sid : dbp, dbp);
    rc = sid && !n ? PZ_EXIT_FAIL : PZ_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "puzzle solutions: %s\n", err);
out:
    sqlite3_finalize(q);
    sqlite3_finalize(s);
    pz_rundb_close(rdb);
    return rc;
}

int pz_cmd_solution(int argc, char **argv) {
    const char *dbp = NULL, *sid = NULL;
    if (parse_db("solution", argc, argv, &dbp, &sid, NULL)) return PZ_EXIT_USAGE;
    if (!sid) {
        fprintf(stderr, "puzzle solution: the solution ID is missing (puzzle solutions lists them)\n");
        return PZ_EXIT_USAGE;
    }
    char err[PZ_ERRLEN];
    pz_rundb *rdb = pz_rundb_open(dbp, 0, err);
    if (!rdb) {
        fprintf(stderr, "puzzle solution: %s\n", err);
        return PZ_EXIT_FAIL;
    }
    sqlite3 *db = pz_rundb_sqlite(rdb);
    sqlite3_stmt *h = NULL, *l = NULL;
    int rc = PZ_EXIT_FAIL;
    PZ_SQL(db, sqlite3_prepare_v2(db, "SELECT search_id, rank, method, budget, scenario, objective, status, score, "
                                      "speedup, throughput, batch, time_s, latency_s, ttft_s, memory_gib, params_m, "
                                      "n_changed FROM solution_summary WHERE solution_id = ?", -1, &h, NULL));
    sqlite3_bind_int64(h, 1, atol(sid));
    int r = sqlite3_step(h);
    PZ_SQL(db, r);
    if (r != SQLITE_ROW) {
        pz_err(err, "no solution %s in %s (puzzle solutions lists them)", sid, dbp);
        goto fail;
    }
    printf("solution %s: rank %d of search %lld (%s, budget %s, %s, objective %s), %s\n", sid, sqlite3_column_int(h, 1),
           sqlite3_column_int64(h, 0), txt(h, 2), txt(h, 3), txt(h, 4), txt(h, 5), txt(h, 6));
    printf("predicted: score %.5g, %.3fx the parent, %.5g tok/s at batch %lld, pass %.4g ms, step %.4g ms",
           sqlite3_column_double(h, 7), sqlite3_column_double(h, 8), sqlite3_column_double(h, 9),
           sqlite3_column_int64(h, 10), sqlite3_column_double(h, 11) * 1e3, sqlite3_column_double(h, 12) * 1e3);
    if (sqlite3_column_type(h, 13) != SQLITE_NULL) printf(", TTFT %.4g ms", sqlite3_column_double(h, 13) * 1e3);
    printf(",\n           %.4g GiB per device, %.2f M parameters, %d sub-blocks changed\n\n", sqlite3_column_double(h, 14),
           sqlite3_column_double(h, 15), sqlite3_column_int(h, 16));
    PZ_SQL(db, sqlite3_prepare_v2(db, "SELECT layer, attn_variant, ffn_variant, attn_is_parent, ffn_is_parent, "
                                      "IFNULL(attn_block, '-'), IFNULL(ffn_block, '-'), score FROM solution_choices "
                                      "WHERE solution_id = ? ORDER BY layer", -1, &l, NULL));
    sqlite3_bind_int64(l, 1, atol(sid));
    printf("%5s  %-12s %-14s %10s   %s\n", "layer", "attention", "ffn", "score", "blocks");
    while ((r = sqlite3_step(l)) == SQLITE_ROW) {
        char a[40], f[40];
        snprintf(a, sizeof a, "%s%s", txt(l, 1), sqlite3_column_int(l, 3) ? "" : "*");
        snprintf(f, sizeof f, "%s%s", txt(l, 2), sqlite3_column_int(l, 4) ? "" : "*");
        printf("%5d  %-12s %-14s %10.4g   %s, %s\n", sqlite3_column_int(l, 0), a, f, sqlite3_column_double(l, 7),
               txt(l, 5), txt(l, 6));
    }
    PZ_SQL(db, r);
    printf("\n(* = changed from the parent; score = replace-1-block score of the layer's choices)\n");
    rc = PZ_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "puzzle solution: %s\n", err);
out:
    sqlite3_finalize(h);
    sqlite3_finalize(l);
    pz_rundb_close(rdb);
    return rc;
}
