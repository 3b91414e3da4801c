// cmd_solutions.c — inspecting searches: `puzzle solutions --db RUN.db`
// lists every search with its solutions (or its infeasibility answer);
// `puzzle solution --db RUN.db ID` prints one solution's layers.
#include <math.h>
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

// A NULL number (NAN) prints as 0, as the columns always have.
static double num(double x) { return isnan(x) ? 0 : x; }

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
    pz_rundb_search_row *q = NULL;
    pz_rundb_solution_row *s = NULL;
    int n = 0, ns = 0, rc = PZ_EXIT_FAIL;
    if (pz_rundb_list_searches(rdb, sid ? atol(sid) : 0, &q, &n, err)) goto fail;
    for (int i = 0; i < n; i++) {
        const pz_rundb_search_row *r = &q[i];
        char target[64] = "no throughput target";
        if (!isnan(r->target_speedup)) snprintf(target, sizeof target, "speedup >= %.3gx", r->target_speedup);
        else if (!isnan(r->target_throughput))
            snprintf(target, sizeof target, ">= %.4g tok/s", r->target_throughput);
        printf("search %ld  %s  %s  budget %s (tp %d of %d)  %s  %s  objective %s  -> %s\n", r->id, r->created_at,
               r->method, r->budget, r->tp, r->n_devices, r->scenario, target, r->objective, r->status);
        if (strcmp(r->status, "solved")) {
            printf("    %s\n\n", r->explanation);
            continue;
        }
        printf("    %6s %4s %-9s %10s %8s %12s %6s %8s %9s %7s\n", "id", "rank", "status", "score", "speedup", "tok/s",
               "batch", "mem GiB", "params M", "changed");
        free(s);
        if (pz_rundb_list_solutions(rdb, r->id, &s, &ns, err)) goto fail;
        for (int k = 0; k < ns; k++)
            printf("    %6ld %4d %-9s %10.5g %7.3fx %12.5g %6ld %8.4g %9.2f %7d\n", s[k].solution_id, s[k].rank,
                   s[k].status, s[k].score, num(s[k].speedup), s[k].throughput, s[k].batch, s[k].memory_gib,
                   s[k].params_m, s[k].n_changed);
        printf("\n");
    }
    if (!n) printf(sid ? "no search %s in %s\n" : "no searches in %s yet (puzzle search)\n", sid ? sid : dbp, dbp);
    rc = sid && !n ? PZ_EXIT_FAIL : PZ_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "puzzle solutions: %s\n", err);
out:
    free(q);
    free(s);
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
    pz_rundb_solution_row h;
    pz_rundb_solution_layer *l = NULL;
    int rc = PZ_EXIT_FAIL, nl = 0;
    int found = pz_rundb_get_solution(rdb, atol(sid), &h, err);
    if (found < 0) goto fail;
    if (!found) {
        pz_err(err, "no solution %s in %s (puzzle solutions lists them)", sid, dbp);
        goto fail;
    }
    printf("solution %s: rank %d of search %ld (%s, budget %s, %s, objective %s), %s\n", sid, h.rank, h.search_id,
           h.method, h.budget, h.scenario, h.objective, h.status);
    printf("predicted: score %.5g, %.3fx the parent, %.5g tok/s at batch %ld, pass %.4g ms, step %.4g ms", h.score,
           num(h.speedup), h.throughput, h.batch, h.time_s * 1e3, num(h.latency_s) * 1e3);
    if (!isnan(h.ttft_s)) printf(", TTFT %.4g ms", h.ttft_s * 1e3);
    printf(",\n           %.4g GiB per device, %.2f M parameters, %d sub-blocks changed\n\n", h.memory_gib, h.params_m,
           h.n_changed);
    if (pz_rundb_solution_layers(rdb, atol(sid), &l, &nl, err)) goto fail;
    printf("%5s  %-12s %-14s %10s   %s\n", "layer", "attention", "ffn", "score", "blocks");
    for (int i = 0; i < nl; i++) {
        char a[40], f[40];
        snprintf(a, sizeof a, "%s%s", l[i].attn_variant, l[i].attn_is_parent ? "" : "*");
        snprintf(f, sizeof f, "%s%s", l[i].ffn_variant, l[i].ffn_is_parent ? "" : "*");
        printf("%5d  %-12s %-14s %10.4g   %s, %s\n", l[i].layer, a, f, l[i].score,
               l[i].attn_block[0] ? l[i].attn_block : "-", l[i].ffn_block[0] ? l[i].ffn_block : "-");
    }
    printf("\n(* = changed from the parent; score = replace-1-block score of the layer's choices)\n");
    rc = PZ_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "puzzle solution: %s\n", err);
out:
    free(l);
    pz_rundb_close(rdb);
    return rc;
}
