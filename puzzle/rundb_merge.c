// rundb_merge.c — `puzzle merge-db` (see rundb.h): copying rows from a
// worker's database attached as "src" into this one.
#include "rundb_impl.h"

#include <stdio.h>
#include <string.h>

#include "common.h"

int pz_rundb_attach(pz_rundb *db, const char *path, char *err) {
    return rundb_exec(db, err, "ATTACH DATABASE ? AS src", "t", path) < 0 ? -1 : 0;
}

void pz_rundb_detach(pz_rundb *db) { rundb_script(db, "DETACH DATABASE src", NULL); }

#define BLOCK_COLS "block_id, layer, sub, attn_variant, ffn_variant, attn_kind, attn_size, ffn_kind, ffn_size, " \
                   "is_parent, needs_training"
#define RUN_COLS "block_id, status, mode, seed, seq_len, batch_windows, lr, threads, calib_tokens, calib_hash, " \
                 "steps, tokens, val_tokens, wall_s, tokens_per_s, init_val_nmse, final_val_nmse, "        \
                 "final_train_nmse, error, finished_at, loss, kept_init, init_val_global, final_val_global"

int pz_rundb_copy_block(pz_rundb *db, const char *block_id, const char *weight_file, char *err) {
    if (rundb_begin(db, err)) return -1;
    int rc = rundb_exec(db, err,
                        "INSERT OR IGNORE INTO main.blocks (" BLOCK_COLS ") SELECT " BLOCK_COLS
                        " FROM src.blocks WHERE block_id = ?",
                        "t", block_id) < 0 ||
             rundb_exec(db, err,
                        "INSERT INTO main.bld_runs (" RUN_COLS ") SELECT " RUN_COLS " FROM src.bld_runs "
                        "WHERE id = (SELECT run_id FROM src.blocks WHERE block_id = ?)",
                        "t", block_id) < 0;
    int64_t run = rundb_last_id(db);
    rc = rc ||
         rundb_exec(db, err,
                    "INSERT INTO main.loss_curves SELECT ?, step, train_nmse, val_nmse FROM src.loss_curves "
                    "WHERE run_id = (SELECT run_id FROM src.blocks WHERE block_id = ?)",
                    "Lt", run, block_id) < 0 ||
         rundb_exec(db, err,
                    "UPDATE main.blocks SET status = 'done', run_id = ?1, weight_file = ?3, "
                    "(init_method, n_params, sha256, updated_at) = "
                    "(SELECT init_method, n_params, sha256, updated_at FROM src.blocks WHERE block_id = ?2) "
                    "WHERE block_id = ?2",
                    "Ltt", run, block_id, weight_file) < 0;
    return rundb_end(db, rc ? -1 : 0, err);
}

int pz_rundb_copy_pending(pz_rundb *db, char *err) {
    if (rundb_begin(db, err)) return -1;
    int n = rundb_exec(db, err,
                       "INSERT OR IGNORE INTO main.blocks (" BLOCK_COLS ") SELECT " BLOCK_COLS
                       " FROM src.blocks WHERE status = 'pending'",
                       "");
    return rundb_end(db, n < 0 ? -1 : 0, err) ? -1 : n;
}

int pz_rundb_copy_parent_space(pz_rundb *db, char *err) {
    if (rundb_begin(db, err)) return -1;
    // Both databases are at this build's schema version (pz_rundb_open
    // migrated them), so their columns match one for one.
    int rc = rundb_exec(db, err, "INSERT INTO main.models SELECT * FROM src.models WHERE role = 'parent'", "") < 0 ||
             rundb_exec(db, err,
                        "INSERT INTO main.layers SELECT * FROM src.layers WHERE model_id IN "
                        "(SELECT id FROM src.models WHERE role = 'parent')",
                        "") < 0 ||
             rundb_exec(db, err, "INSERT INTO main.search_space SELECT * FROM src.search_space", "") < 0;
    return rundb_end(db, rc ? -1 : 0, err);
}

// The scores of "src" for blocks that this database holds as done with the
// same weights (same sha256, or both without a file); existing rows are kept.
int pz_rundb_copy_scores(pz_rundb *db, char *err) {
    if (rundb_begin(db, err)) return -1;
    int n = rundb_exec(db, err,
                       "INSERT OR IGNORE INTO main.scores SELECT s.* FROM src.scores s "
                       "JOIN src.blocks sb ON sb.block_id = s.block_id "
                       "JOIN main.blocks mb ON mb.block_id = s.block_id "
                       "WHERE mb.status = 'done' AND IFNULL(mb.sha256, '') = IFNULL(sb.sha256, '')",
                       "");
    return rundb_end(db, n < 0 ? -1 : 0, err) ? -1 : n;
}

// Timings depend on the variant shapes and the device only, so they hold for
// any library of this parent; rows already measured here are kept.
int pz_rundb_copy_profiles(pz_rundb *db, char *err) {
    if (rundb_begin(db, err)) return -1;
    int n = -1;
    if (rundb_exec(db, err, "INSERT OR IGNORE INTO main.hardware SELECT * FROM src.hardware", "") >= 0)
        n = rundb_exec(db, err, "INSERT OR IGNORE INTO main.profiles SELECT * FROM src.profiles", "");
    return rundb_end(db, n < 0 ? -1 : 0, err) ? -1 : n;
}
