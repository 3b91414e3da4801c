// rundb.h — the run database: one SQLite file per run that every pipeline
// stage reads and writes (DESIGN.md "Run database (SQLite)"). Only the CLI
// (puzzle/) includes this; the libraries below report results through
// return values and callbacks, and the commands record them here.
//
// File layout next to a database RUN.db (RUN = the path without ".db"):
//   RUN.db            the database (WAL mode: RUN.db-wal, RUN.db-shm while open)
//   RUN.blocks/       block weight files, one safetensors file per trained block
//   RUN.cache/        parent activation captures (scratch; safe to delete)
// Weight file paths are stored relative to the database's directory.
//
// Schema version 1 (PRAGMA user_version; later stages add tables and bump
// it through rundb.c's migration list — existing tables only gain columns):
//   meta(key, value)                 creator, versions
//   models(id, role, path, format, identity, config_hash, n_layer, hidden,
//          n_head, head_dim, vocab, n_params, created_at)
//                                    role 'parent' (exactly one per run) or
//                                    'child'; identity "sha256:<hex>" of the
//                                    weights or "size:<bytes>" above 4 GiB
//   layers(model_id, layer, attn, n_kv, ffn, n_ff)   the model's own blocks
//   search_space(id = 1, json, sha256)                the space, canonical JSON
//   blocks(block_id, layer, sub, attn_variant, ffn_variant, attn_kind,
//          attn_size, ffn_kind, ffn_size, is_parent, needs_training,
//          status 'pending'|'done', init_method, n_params, weight_file,
//          sha256, run_id, updated_at)
//                                    one row per library block; 'done' with a
//                                    run_id once trained (or evaluated, for
//                                    blocks without training)
//   bld_runs(id, block_id, status 'done'|'failed', mode, seed, seq_len,
//            batch_windows, lr, threads, calib_tokens, calib_hash, steps,
//            tokens, val_tokens, wall_s, tokens_per_s, init_val_nmse,
//            final_val_nmse, final_train_nmse, error, finished_at)
//                                    one row per BLD attempt of a block
//   loss_curves(run_id, step, train_nmse, val_nmse)
//   events(id, at, stage, kind, message)               the log
// Views:
//   library        one row per block (id, layer, sub, variants, status, is_parent,
//                  needs_training, init_method, n_params, weight_file, sha256) with its
//                  current run's numbers (mode, steps, tokens, wall_s, tokens_per_s,
//                  init_val_nmse, final_val_nmse, final_train_nmse); NMSE is NULL where
//                  undefined (a noop block of a layer whose parent half is noop: 0/0)
//   library_curves (block_id, step, train_nmse, val_nmse) of current runs
//
// Profiling migration (`puzzle profile`, scoring/profile.h):
//   hardware(device, kind, threads, json, measured, created_at)
//                                    device = the description string, e.g.
//                                    "cpu: AMD EPYC (2 threads)"; json = its
//                                    `profile --calibrate --db` hardware JSON
//   profiles(part 'attn'|'ffn'|'embed'|'head', kind, size, scenario
//            "prefill:BxS"|"decode:BxC", phase, batch, len, device, dtype,
//            median_s, p10_s, p90_s, repeats, param_bytes,
//            kv_bytes_per_token, measured, created_at)
//                                    one row per distinct variant (timings
//                                    depend on shapes only, so all layers
//                                    share it); noop rows are exactly 0
//   view block_profiles: every block (attn/ffn) joined with its variant's rows
//
// Scoring migration (`puzzle score`, scoring/score.h):
//   scores(block_id, data_hash, seq_len, tokens, kl, loss_delta, top1,
//          parent_nll, child_nll, data, prec, threads, wall_s, created_at)
//                                    one row per block x scoring windows
//                                    (data_hash: pz_capture_tokens_hash of the
//                                    tokens, hex) x window length
//   view block_scores: the blocks joined with their scores
//
// Search migration (`puzzle search`, `puzzle realize`; puzzle/search.h):
//   searches(id, created_at, command, method, budget, device, dtype,
//            n_devices, tp, scenario, batch_mode, objective, data_hash,
//            target_throughput, target_speedup, max_memory, max_latency_s,
//            max_ttft_s, max_params, n_wanted, diversity, parent_batch,
//            parent_throughput, parent_time_s, status 'solved'|'infeasible'|
//            'no_solution', explanation, n_solutions, wall_s)
//   search_constraints(search_id, name, batch, rhs, min_value, ratio,
//            violated, binding)   the rows of an unsolved search, as
//                                  pz_solver_explain found them
//   solutions(id, search_id, rank, status, objective, bound, batch, time_s,
//            throughput, speedup, latency_s, ttft_s, memory_bytes, params,
//            n_changed, solve_s)   predicted numbers of each solution
//   solution_layers(solution_id, layer, attn_kind, attn_size, ffn_kind,
//            ffn_size, attn_variant, ffn_variant, attn_block, ffn_block,
//            attn_is_parent, ffn_is_parent, score)
//   models.solution_id             the solution a realized child came from
//   views solution_summary, solution_choices (with block files), pareto_front
//
// Parents and blocks without training: the parent's own variant of a layer
// ("L07.ffn.swiglu_1536") and noop blocks are rows with init_method
// "parent" / "noop", status 'done', no weight_file and no sha256 — the
// parent's weights are the parent model's (identified by models.identity),
// a noop has none. Their bld_run has 0 steps and the validation NMSE of
// the block as it is (0 for the parent, 1 for noop).
//
// Errors: functions return 0 (or a count / 1 = found) and -1 with one line
// in err; nothing here prints. Every write runs inside a transaction.
#ifndef PZ_RUNDB_H
#define PZ_RUNDB_H

#include <sqlite3.h>
#include <stdint.h>

#include "bld.h"
#include "config.h"
#include "space.h"

#define PZ_RUNDB_VERSION 1

// Checks an SQLite status inside rundb.c-style code: on anything but
// SQLITE_OK / SQLITE_ROW / SQLITE_DONE, fills err with the statement's
// message, file and line, and jumps to the local label `fail`.
#define PZ_SQL(db, call)                                                                          \
    do {                                                                                          \
        int rc_ = (call);                                                                         \
        if (rc_ != SQLITE_OK && rc_ != SQLITE_ROW && rc_ != SQLITE_DONE) {                        \
            pz_rundb_sql_error(err, (db), rc_, __FILE__, __LINE__);                               \
            goto fail;                                                                            \
        }                                                                                         \
    } while (0)
void pz_rundb_sql_error(char *err, sqlite3 *db, int rc, const char *file, int line);

typedef struct pz_rundb pz_rundb;

// Opens path (creating it when create != 0, else it must exist), sets WAL
// mode, a 30 s busy timeout and foreign keys, and creates or migrates the
// schema. A database of a newer schema than this build knows is refused.
// Close with pz_rundb_close.
pz_rundb *pz_rundb_open(const char *path, int create, char *err);
void pz_rundb_close(pz_rundb *db);
sqlite3 *pz_rundb_sqlite(pz_rundb *db);
// The database path as given, its directory, and the sibling folders
// (RUN.blocks, RUN.cache): pointers live as long as db.
const char *pz_rundb_path(const pz_rundb *db);
const char *pz_rundb_dir(const pz_rundb *db);
const char *pz_rundb_blocks_dir(const pz_rundb *db);
const char *pz_rundb_cache_dir(const pz_rundb *db);
// "RUN.blocks/ID.safetensors" relative to the database's directory (for the
// row), and the same as a path usable from the current directory.
void pz_rundb_block_file(const pz_rundb *db, const char *block_id, char *rel, size_t rel_cap,
                         char *path, size_t path_cap);
// rel (as stored in a row) to a path usable from the current directory.
void pz_rundb_resolve(const pz_rundb *db, const char *rel, char *path, size_t cap);

// Creates RUN.blocks and RUN.cache and takes an exclusive lock (flock on
// RUN.blocks, held until pz_rundb_close) so that one writer of block files
// works on a database at a time. Fails at once when another holds it.
int pz_rundb_lock(pz_rundb *db, char *err);

int pz_rundb_begin(pz_rundb *db, char *err);   // BEGIN IMMEDIATE
int pz_rundb_commit(pz_rundb *db, char *err);
void pz_rundb_rollback(pz_rundb *db);          // safe when no transaction is open

// ---- parent and search space ------------------------------------------------------
typedef struct {
    char path[1024];
    char format[16];       // "gguf" or "hf"
    char identity[80];     // "sha256:<64 hex>" or "size:<bytes>"
    char config_hash[17];  // 16 hex digits of pz_capture_config_hash
} pz_rundb_model;

// The identity of the model at path (a GGUF file or an HF directory): the
// sha256 of the file (of the config.json and every *.safetensors file, in
// name order, for a directory) up to 4 GiB of weights, else their size.
int pz_rundb_model_identity(const char *path, const pz_config *c, pz_rundb_model *out, char *err);

// Reads the parent row: returns 1 and fills out, 0 when there is none.
int pz_rundb_get_parent(pz_rundb *db, pz_rundb_model *out, char *err);
// Records the parent and its layers (one transaction). There must be none.
int pz_rundb_set_parent(pz_rundb *db, const pz_rundb_model *m, const pz_config *c, char *err);
// Records a realized child (role 'child') of solution_id at m->path,
// replacing an earlier row of that path (one transaction).
int pz_rundb_add_child(pz_rundb *db, const pz_rundb_model *m, const pz_config *c, long solution_id, char *err);
// The stored space JSON (*json malloc'ed; caller frees): 1, or 0 when none.
int pz_rundb_get_space(pz_rundb *db, char **json, char *err);
int pz_rundb_set_space(pz_rundb *db, const char *json, char *err);

// ---- blocks ----------------------------------------------------------------------
// Inserts blocks[i] for every i with want[i] (want NULL: all) as 'pending'
// when absent (one transaction); existing rows are left alone.
int pz_rundb_add_blocks(pz_rundb *db, const pz_block *blocks, const char *want, int n, char *err);

typedef struct {
    int found, done;
    char weight_file[1024];  // "" when none
    char sha256[65];         // "" when none
} pz_rundb_block_state;
int pz_rundb_get_block_state(pz_rundb *db, const char *block_id, pz_rundb_block_state *st, char *err);

// How a block was trained (what bld_runs records beside pz_bld_result).
typedef struct {
    const char *mode;       // "decoupled" / "coupled"
    uint64_t seed;
    int seq_len, batch_windows, threads;
    double lr;
    long calib_tokens;
    uint64_t calib_hash;    // pz_capture_tokens_hash of the calibration tokens
} pz_rundb_bld_setup;

// One transaction: a bld_runs row ('done'), its loss curve, and the block
// row set to 'done' with r's init method, parameter count, weight_file
// (rel; NULL for none) and sha256, pointing at the new run.
int pz_rundb_record_bld(pz_rundb *db, const pz_block *b, const pz_rundb_bld_setup *s,
                        const pz_bld_result *r, const char *weight_file, char *err);
// A failed attempt: a bld_runs row 'failed' with the message; the block
// row is left as it was.
int pz_rundb_record_bld_failure(pz_rundb *db, const pz_block *b, const pz_rundb_bld_setup *s,
                                const char *message, char *err);

// The blocks with status 'done' (*rows malloc'ed; caller frees).
typedef struct {
    char block_id[80];
    char weight_file[1024];  // "" when none
    char sha256[65];
    int needs_training;
} pz_rundb_done_block;
int pz_rundb_list_done(pz_rundb *db, pz_rundb_done_block **rows, int *n, char *err);

// ---- merging (puzzle merge-db) -------------------------------------------------------
// Attaches the database at path (which must exist) as schema "src" / detaches it.
int pz_rundb_attach(pz_rundb *db, const char *path, char *err);
void pz_rundb_detach(pz_rundb *db);
// One transaction: block_id's row from "src" with its current run and loss
// curve (the run under a new id here), the row's weight_file set to rel
// (NULL: none). Replaces this database's row of that block.
int pz_rundb_copy_block(pz_rundb *db, const char *block_id, const char *weight_file, char *err);
// Inserts the 'pending' block rows of "src" that are absent here; returns
// how many, or -1.
int pz_rundb_copy_pending(pz_rundb *db, char *err);
// Copies the parent model (with its layers) and the search space of "src"
// into a database that has neither (one transaction).
int pz_rundb_copy_parent_space(pz_rundb *db, char *err);

// ---- events ----------------------------------------------------------------------
// Appends to the log (its own transaction). Failures are ignored: the log
// must never stop a run.
void pz_rundb_event(pz_rundb *db, const char *stage, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
