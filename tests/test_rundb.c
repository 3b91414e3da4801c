// test_rundb.c — the run database's own files (puzzle/rundb*.c), without the
// CLI: the parent's whole configuration survives the database exactly (tied
// and untied embeddings, RoPE theta and Llama-3 scaling, FFN widths that are
// no multiple of 256) and is checked against its hash; a database from
// before schema version 5 (no models.config_json) still opens, migrates, and
// reads its parent's configuration from the recorded parent model or says
// how to record it; the statement helper's NULLs (NAN doubles, NULL
// strings, empty block ids) and a search's rows round-trip.
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "rundb.h"
#include "testmodel.h"
#include "testutil.h"

static int same_config(const pz_config *a, const pz_config *b) {
    int ok = a->n_layer == b->n_layer && a->hidden == b->hidden && a->n_head == b->n_head &&
             a->head_dim == b->head_dim && a->vocab == b->vocab && a->max_ctx == b->max_ctx &&
             a->rope_theta == b->rope_theta && a->norm_eps == b->norm_eps && a->tie_embeddings == b->tie_embeddings &&
             a->bos_id == b->bos_id && a->eos_id == b->eos_id && a->rope_scaling == b->rope_scaling &&
             a->rope_factor == b->rope_factor && a->rope_low_freq_factor == b->rope_low_freq_factor &&
             a->rope_high_freq_factor == b->rope_high_freq_factor && a->rope_orig_ctx == b->rope_orig_ctx;
    for (int l = 0; ok && l < a->n_layer; l++)
        ok = a->layers[l].attn == b->layers[l].attn && a->layers[l].n_kv == b->layers[l].n_kv &&
             a->layers[l].ffn == b->layers[l].ffn && a->layers[l].n_ff == b->layers[l].n_ff;
    return ok;
}

// Runs sql on the file directly (what an older puzzle, or a user, would do).
static int raw(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db) == SQLITE_OK ? sqlite3_exec(db, sql, NULL, NULL, NULL) : -1;
    if (rc != SQLITE_OK) fprintf(stderr, "raw sql failed: %s: %s\n", sql, db ? sqlite3_errmsg(db) : "?");
    sqlite3_close(db);
    return rc;
}

// One integer from a query on the file (-999 on failure).
static long raw_int(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    long v = -999;
    if (sqlite3_open(path, &db) == SQLITE_OK && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void test_config_round_trip(const char *dir) {
    for (int v = 0; v < PZ_TESTMODEL_VARIANTS; v++) {
        char path[1024], err[PZ_ERRLEN] = "";
        snprintf(path, sizeof path, "%s/rt%d.db", dir, v);
        static pz_config c, back;
        pz_testmodel_config(&c, v);
        c.rope_theta = v == 2 ? 100000.0f : 12345.678f, c.bos_id = 1, c.eos_id = v == 0 ? -1 : 2;
        pz_rundb *db = pz_rundb_open(path, 1, err);
        CHECKF(db, "%s", err);
        if (!db) continue;
        char file[1100];
        snprintf(file, sizeof file, "%s/model%d.gguf", dir, v);
        FILE *f = fopen(file, "w");
        if (f) fprintf(f, "not a model %d\n", v), fclose(f);
        pz_rundb_model m;
        CHECKF(pz_rundb_model_identity(file, &c, &m, err) == 0, "%s", err);
        CHECKF(pz_rundb_parent_config(db, &back, err) < 0 && strstr(err, "no parent"), "no parent: %s", err);
        CHECKF(pz_rundb_set_parent(db, &m, &c, err) == 0, "%s", err);
        CHECKF(pz_rundb_parent_config(db, &back, err) == 0, "variant %d: %s", v, err);
        CHECKF(same_config(&c, &back), "variant %d: the configuration read back differs", v);
        pz_rundb_model p;
        CHECK(pz_rundb_get_parent(db, &p, err) == 1 && p.has_config);
        pz_rundb_close(db);
        CHECK(raw_int(path, "PRAGMA user_version") == PZ_RUNDB_VERSION);
        // A stored configuration that no longer matches the row's hash is refused.
        raw(path, "UPDATE models SET config_json = json_set(config_json, '$.rope_theta', 5.5)");
        db = pz_rundb_open(path, 0, err);
        CHECKF(db && pz_rundb_parent_config(db, &back, err) < 0 && strstr(err, "config hash"), "tampered: %s", err);
        pz_rundb_close(db);
    }
}

// A database as puzzle wrote it before version 5: no config_json column.
static void test_old_database(const char *dir) {
    char model[1024], path[1024], err[PZ_ERRLEN] = "";
    snprintf(model, sizeof model, "%s/parent", dir);
    snprintf(path, sizeof path, "%s/old.db", dir);
    static pz_config c, back, other;
    pz_testmodel_config(&c, 1);  // tied, Llama-3 RoPE scaling
    pz_testmodel_config(&other, 0);
    CHECKF(pz_testmodel_write_hf(&c, PZ_DT_F32, 5, model, err) == 0, "%s", err);
    pz_rundb *db = pz_rundb_open(path, 1, err);
    pz_rundb_model m;
    CHECKF(db && pz_rundb_model_identity(model, &c, &m, err) == 0 && pz_rundb_set_parent(db, &m, &c, err) == 0, "%s",
           err);
    pz_rundb_close(db);
    CHECK(raw(path, "DROP VIEW context_block_scores; DROP TABLE context_scores; DROP TABLE context_rounds; "
                    "DROP VIEW eval_summary; DROP TABLE eval_chat; DROP TABLE evals; DROP TABLE distill_curves; "
                    "DROP TABLE distill_runs; DROP TABLE run_stages; "
                    "DROP TABLE layer_influence; ALTER TABLE models DROP COLUMN config_json; "
                    "ALTER TABLE bld_runs DROP COLUMN loss; ALTER TABLE bld_runs DROP COLUMN kept_init; "
                    "ALTER TABLE bld_runs DROP COLUMN init_val_global; "
                    "ALTER TABLE bld_runs DROP COLUMN final_val_global; "
                    "PRAGMA user_version = 4") == SQLITE_OK);
    CHECK(raw_int(path, "SELECT count(*) FROM pragma_table_info('models') WHERE name = 'config_json'") == 0);

    // It opens and migrates; the configuration comes from the parent model at
    // its recorded path and is then stored.
    db = pz_rundb_open(path, 0, err);
    CHECKF(db, "old database: %s", err);
    if (!db) return;
    pz_rundb_model p;
    CHECK(pz_rundb_get_parent(db, &p, err) == 1 && !p.has_config);
    CHECKF(pz_rundb_parent_config(db, &back, err) == 0, "fallback: %s", err);
    CHECKF(same_config(&c, &back), "fallback: the configuration read from the parent differs");
    CHECK(pz_rundb_get_parent(db, &p, err) == 1 && p.has_config);
    pz_rundb_close(db);
    CHECK(raw_int(path, "PRAGMA user_version") == PZ_RUNDB_VERSION);

    // Without the parent file: an error naming the fix; the fix (recording the
    // parent's configuration) works, and only with the parent's.
    raw(path, "UPDATE models SET config_json = NULL, path = 'gone/parent'");
    db = pz_rundb_open(path, 0, err);
    CHECKF(db && pz_rundb_parent_config(db, &back, err) < 0 && strstr(err, "puzzle build-library PARENT --db"),
           "no parent file: %s", err);
    CHECKF(pz_rundb_set_parent_config(db, &other, err) < 0 && strstr(err, "not the parent"), "%s", err);
    CHECKF(pz_rundb_set_parent_config(db, &c, err) == 0, "%s", err);
    CHECKF(pz_rundb_parent_config(db, &back, err) == 0 && same_config(&c, &back), "%s", err);
    pz_rundb_close(db);
}

// A search with a constraint and a solution: NULLs and values round-trip.
static void test_search_rows(const char *dir) {
    char path[1024], err[PZ_ERRLEN] = "";
    snprintf(path, sizeof path, "%s/search.db", dir);
    pz_rundb *db = pz_rundb_open(path, 1, err);
    CHECKF(db, "%s", err);
    if (!db) return;
    pz_rundb_search s = {"puzzle search", "mip", "cpu", "cpu: test", "f32", 1, 1, "decode:1x64", "auto", "kl",
                         "00ff", NAN, 1.5, NAN, NAN, NAN, NAN, 2, 0.2, 1, 100.0, 0.01, "solved", NULL, 1, 0.5};
    pz_rundb_solution_layer layers[2] = {
        {0, {.attn = PZ_ATTN_GQA, .size = 2}, {.ffn = PZ_FFN_SWIGLU, .size = 96}, "", "", "", "", 1, 1, 0},
        {1, {.attn = PZ_ATTN_NOOP}, {.ffn = PZ_FFN_LINEAR}, "", "", "", "L01.ffn.linear", 0, 0, 0.25},
    };
    pz_rundb_solution sol = {1, "optimal", 0.25, NAN, 1, 0.008, 125.0, 1.25, 0.008, NAN, 1e6, 2e5, 2, 0.1, layers, 2};
    pz_rundb_constraint con = {"throughput", 1, 0.5, NAN, INFINITY, 1, 1};
    long sid = 0, first = 0;
    CHECKF(pz_rundb_record_search(db, &s, &con, 1, &sol, 1, &sid, &first, err) == 0, "%s", err);
    CHECK(sid == 1 && first == 1);
    pz_rundb_search_row *sr = NULL;
    int n = 0;
    CHECKF(pz_rundb_list_searches(db, 0, &sr, &n, err) == 0 && n == 1, "%s", err);
    if (n == 1)
        CHECK(sr[0].id == 1 && isnan(sr[0].target_throughput) && sr[0].target_speedup == 1.5 &&
              !strcmp(sr[0].explanation, "") && !strcmp(sr[0].status, "solved"));
    free(sr);
    CHECK(pz_rundb_list_searches(db, 7, &sr, &n, err) == 0 && n == 0);
    free(sr);
    pz_rundb_solution_row r;
    CHECK(pz_rundb_get_solution(db, 1, &r, err) == 1 && r.speedup == 1.25 && isnan(r.ttft_s) && r.n_changed == 2);
    CHECK(pz_rundb_get_solution(db, 2, &r, err) == 0);
    pz_rundb_solution_layer *back = NULL;
    CHECKF(pz_rundb_solution_layers(db, 1, &back, &n, err) == 0 && n == 2, "%s", err);
    if (n == 2) {
        CHECK(back[0].attn.attn == PZ_ATTN_GQA && back[0].attn.size == 2 && back[0].ffn.size == 96 &&
              back[0].attn_is_parent && !back[0].attn_block[0]);
        CHECK(!strcmp(back[1].attn_variant, "noop") && !strcmp(back[1].ffn_block, "L01.ffn.linear") &&
              back[1].score == 0.25 && !back[1].ffn_is_parent);
    }
    free(back);
    pz_rundb_close(db);
    CHECK(raw_int(path, "SELECT count(*) FROM solutions WHERE bound IS NULL AND ttft_s IS NULL") == 1);
    CHECK(raw_int(path, "SELECT count(*) FROM search_constraints WHERE min_value IS NULL AND ratio = 1e999") == 1);
    CHECK(raw_int(path, "SELECT count(*) FROM searches WHERE explanation IS NULL AND max_memory IS NULL") == 1);
    CHECK(raw_int(path, "SELECT count(*) FROM solution_layers WHERE attn_block IS NULL") == 2);
}

int main(void) {
    char *dir = pz_test_tmpdir("rundb");
    if (!dir) return 1;
    test_config_round_trip(dir);
    test_old_database(dir);
    test_search_rows(dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
    return pz_test_finish("test_rundb");
}
