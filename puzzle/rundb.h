// rundb.h — the run database: one SQLite file per run that every pipeline
// stage reads and writes (docs/ARCHITECTURE.md "Run database (SQLite)"). Only the CLI
// (puzzle/) includes this; the libraries below report results through
// return values and callbacks, and the commands record them here through
// the typed functions below, which take and return C structs. All SQL lives
// in puzzle/rundb*.c, one file per stage: rundb.c (open, schema and its
// migrations, events, the statement helper of rundb_impl.h),
// rundb_library.c (models, search space, blocks, BLD runs), rundb_scores.c,
// rundb_profiles.c, rundb_search.c (searches, solutions, their views),
// rundb_merge.c (puzzle merge-db) and rundb_eval.c (distillation runs,
// evaluations, `puzzle run`'s stages, `puzzle report`'s data sets).
//
// File layout next to a database RUN.db (RUN = the path without ".db"):
//   RUN.db            the database (WAL mode: RUN.db-wal, RUN.db-shm while open)
//   RUN.blocks/       block weight files, one safetensors file per trained block
//   RUN.cache/        parent activation captures (scratch; safe to delete)
// Weight file paths are stored relative to the database's directory.
//
// Schema version PZ_RUNDB_VERSION (PRAGMA user_version; each stage added
// tables through rundb.c's migration list — existing tables only gain columns):
//   meta(key, value)                 creator, versions
//   models(id, role, path, format, identity, config_hash, n_layer, hidden,
//          n_head, head_dim, vocab, n_params, created_at, solution_id,
//          config_json)
//                                    role 'parent' (exactly one per run) or
//                                    'child'; identity "sha256:<hex>" of the
//                                    weights or "size:<bytes>" above 4 GiB;
//                                    config_json the model's whole
//                                    configuration as pz_config_to_hf_json
//                                    writes it (a DeciLM config.json; NULL in
//                                    databases from before version 5)
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
//            final_val_nmse, final_train_nmse, error, finished_at,
//            loss 'token'|'global', kept_init, init_val_global, final_val_global)
//                                    one row per BLD attempt of a block; the
//                                    *_nmse columns are of `loss` (schema 7;
//                                    older rows: 'global')
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
// Search in context (`puzzle search --in-context`, version 9):
//   context_scores(base_key, base_solution_id, item, data_hash, seq_len,
//            tokens, kl, loss_delta, top1, base_kl, wall_s)  a candidate
//                                  swapped into the child base_key (a hash of
//                                  its blocks; base_solution_id one stored
//                                  solution of it); KL against the
//                                  parent; view context_block_scores adds
//                                  delta = kl - base_kl
//   context_rounds(run_key, round, solution_id, status, data_hash, seq_len,
//            tokens, kl, top1, loss_delta, predicted, n_rescored, wall_s)
//
// Pipeline-end migration (`puzzle distill --db`, `puzzle eval --db`, `puzzle
// run`, `puzzle report`; rundb_eval.c):
//   distill_runs(id, child_path, teacher_path, out_dir, solution_id, status
//            'done'|'stopped'|'failed', data, data_sha256, data_tokens, tokens,
//            seq_len, batch, accum, ranks, threads, lr, lr_min_ratio, warmup,
//            weight_decay, prec, seed, steps, total_steps, tokens_done,
//            resumed_at_step, wall_s, tokens_per_s, first_loss, last_loss,
//            error, finished_at, loss_cos, loss_kl, loss_lm, kl_temperature)
//                                    one row per `puzzle distill` process; the
//                                    loss weights NULL in rows from before schema 10
//   distill_curves(run_id, step, tokens, loss, cos_loss, kl, lr, grad_norm)
//                                    every step from 1 (resumed ones included)
//   evals(id, model_path, role 'parent'|'child'|'distilled'|'baseline',
//         solution_id, label, ref_path, text_name, text_sha256, text_tokens,
//         skip_tokens, ctx, perplexity, nll, kl, top1, ref_perplexity,
//         decode_tok_s, prefill_tok_s, ref_decode_tok_s, ref_prefill_tok_s,
//         decode_speedup, prefill_speedup, speed_ctx, speed_rounds, chat_file,
//         chat_sha256, chat_n, chat_max_tokens, chat_parent_ll, chat_top1,
//         threads, wall_s, created_at)               one row per `puzzle eval --db`; NULL where
//                                    not measured; text_tokens = tokens scored
//   eval_chat(eval_id, idx, prompt, reply, reply_tokens, parent_ll, top1,
//             top1_tokens, reply_ids)  (reply_ids: the reply's token ids, spaces between)          the model's greedy reply to chat prompt idx,
//                                    the parent's mean log-likelihood of it
//                                    (nats/token), the model's top-1 agreement
//                                    along the parent's own greedy reply
//   view eval_summary: the newest eval per model, role and text, with its
//                      solution's predicted speed-up and perplexity / parent's
//   run_stages(stage, key, result, wall_s, finished_at)
//                                    the stages `puzzle run` finished: key says
//                                    what went in (options, data hashes, the
//                                    previous stage's key), result what came out
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
// Arrays returned through `T **rows, int *n` are malloc'ed: the caller frees
// them with free().
#ifndef PZ_RUNDB_H
#define PZ_RUNDB_H

#include <stddef.h>
#include <stdint.h>

#include "bld.h"
#include "config.h"
#include "costmodel.h"
#include "profile.h"
#include "score.h"
#include "space.h"

// 0 -> 1 library, 1 -> 2 profiles, 2 -> 3 scores, 3 -> 4 searches,
// 4 -> 5 models.config_json, 5 -> 6 layer_influence, 6 -> 7 bld_runs.loss,
// kept_init, init_val_global, final_val_global, 7 -> 8 distill_runs,
// distill_curves, evals, eval_chat, eval_summary, run_stages, 8 -> 9
// context_scores, context_rounds, 9 -> 10 distill_runs.loss_cos, loss_kl,
// loss_lm, kl_temperature.
#define PZ_RUNDB_VERSION 10

typedef struct pz_rundb pz_rundb;

// Opens path (creating it when create != 0, else it must exist), sets WAL
// mode, a 30 s busy timeout and foreign keys, and creates or migrates the
// schema. A database of a newer schema than this build knows is refused.
// Close with pz_rundb_close.
pz_rundb *pz_rundb_open(const char *path, int create, char *err);
void pz_rundb_close(pz_rundb *db);
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

// ---- events (rundb.c) -----------------------------------------------------------------
// Appends to the log (its own transaction). Failures are ignored: the log
// must never stop a run.
void pz_rundb_event(pz_rundb *db, const char *stage, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

// ---- parent, children and search space (rundb_library.c) ---------------------------------
typedef struct {
    char path[1024];
    char format[16];       // "gguf" or "hf"
    char identity[80];     // "sha256:<64 hex>" or "size:<bytes>"
    char config_hash[17];  // 16 hex digits of pz_capture_config_hash
    int has_config;        // models.config_json is stored (pz_rundb_get_parent)
} pz_rundb_model;

// The identity of the model at path (a GGUF file or an HF directory): the
// sha256 of the file (of the config.json and every *.safetensors file, in
// name order, for a directory) up to 4 GiB of weights, else their size.
int pz_rundb_model_identity(const char *path, const pz_config *c, pz_rundb_model *out, char *err);

// Reads the parent row: returns 1 and fills out, 0 when there is none.
int pz_rundb_get_parent(pz_rundb *db, pz_rundb_model *out, char *err);
// Records the parent, its whole configuration and its layers (one
// transaction). There must be none.
int pz_rundb_set_parent(pz_rundb *db, const pz_rundb_model *m, const pz_config *c, char *err);
// Stores c as the parent row's configuration (for a database from before
// version 5, whose parent row has none); c must hash to the row's config_hash.
int pz_rundb_set_parent_config(pz_rundb *db, const pz_config *c, char *err);
// The parent's whole configuration, the one way every stage reads it: the
// stored config JSON, checked against the row's config_hash. A database
// from before version 5 has none stored; then (explicit fallback) the
// config is read from the parent model at its recorded path when that still
// hashes to the row's config_hash, and stored for next time; otherwise the
// error names the fix (rerunning puzzle build-library PARENT --db RUN.db
// --data TEXT, which records it before any other work).
int pz_rundb_parent_config(pz_rundb *db, pz_config *c, char *err);
// Records a realized child (role 'child') of solution_id at m->path with its
// configuration, replacing an earlier row of that path (one transaction).
int pz_rundb_add_child(pz_rundb *db, const pz_rundb_model *m, const pz_config *c, long solution_id, char *err);
// The stored space JSON (*json malloc'ed; caller frees): 1, or 0 when none.
int pz_rundb_get_space(pz_rundb *db, char **json, char *err);
int pz_rundb_set_space(pz_rundb *db, const char *json, char *err);

// ---- blocks and BLD runs (rundb_library.c) -------------------------------------------------
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
    const char *loss;       // "token" / "global" (pz_bld_loss_name)
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

// A finished block (status 'done') as the later stages use it.
typedef struct {
    char block_id[80];
    int layer;
    pz_sub_kind sub;
    pz_variant attn, ffn;    // kind -1 (size 0) for a half the block does not set
    int is_parent, needs_training;
    char weight_file[1024];  // "" when none
    char sha256[65];         // "" when none
} pz_rundb_done_block;
// The finished blocks in (layer, block_id) order.
int pz_rundb_list_done(pz_rundb *db, pz_rundb_done_block **rows, int *n, char *err);

// ---- scores (rundb_scores.c) ----------------------------------------------------------------
// The scoring windows to use: those of data_hash (NULL: the (data_hash,
// seq_len) that covers the most blocks, the newest on a tie). 1 with hash
// (17 bytes) and *seq_len set, 0 when there are none.
int pz_rundb_pick_scores(pz_rundb *db, const char *data_hash, char hash[17], long *seq_len, char *err);
// 1 when the block has a score on these windows, 0 when not, -1 on error.
int pz_rundb_is_scored(pz_rundb *db, const char *block_id, const char *data_hash, long seq_len, char *err);

// What scores records beside pz_score_result.
typedef struct {
    const char *data_hash;  // pz_capture_tokens_hash of the windows, hex
    long seq_len;
    const char *data;       // the text file scored
    const char *prec;       // product type, e.g. "f32"
    long threads;
} pz_rundb_score_setup;
// Records (or replaces) one block's score (one transaction).
int pz_rundb_record_score(pz_rundb *db, const char *block_id, const pz_rundb_score_setup *s,
                          const pz_score_result *r, char *err);

// Block influence of the parent's n_layer layers on these windows (one
// transaction, replacing any).
int pz_rundb_record_influence(pz_rundb *db, const char *data_hash, long seq_len, long tokens, const double *bi,
                              int n_layer, char *err);
// Reads them into bi (n_layer): 1 when every layer has one, 0 when not, -1 on error.
int pz_rundb_influence(pz_rundb *db, const char *data_hash, long seq_len, double *bi, int n_layer, char *err);

typedef struct {
    char block_id[80];
    double kl, loss_delta, top1;
} pz_rundb_score_row;
// Up to cap non-parent blocks scored on (data_hash, seq_len), best first by
// metric ("kl", "loss" or "top1"; higher top1 is better), or worst first.
// Returns the count or -1.
int pz_rundb_score_extremes(pz_rundb *db, const char *data_hash, long seq_len, const char *metric, int worst,
                            pz_rundb_score_row *rows, int cap, char *err);

// A finished block with its score on (data_hash, seq_len): kl and
// loss_delta NAN when it has none.
typedef struct {
    pz_rundb_done_block b;
    double kl, loss_delta;
} pz_rundb_scored_block;
// The finished blocks in (layer, block_id) order with their scores; an
// unknown variant kind is an error.
int pz_rundb_list_scored(pz_rundb *db, const char *data_hash, long seq_len, pz_rundb_scored_block **rows, int *n,
                         char *err);

// ---- hardware and profiles (rundb_profiles.c) ------------------------------------------------
// Records a CPU device (and its calibration JSON, when given; NULL keeps any
// stored one).
int pz_rundb_store_device(pz_rundb *db, const char *device, int threads, const char *json, char *err);
// The device's stored hardware JSON (*json malloc'ed; caller frees): 1, or 0
// when the device has no row or no JSON.
int pz_rundb_device_json(pz_rundb *db, const char *device, char **json, char *err);

// One profiles row.
typedef struct {
    char part[8];          // "attn", "ffn", "embed", "head"
    char kind[16];         // variant kind name, or the part for embed/head
    int size;
    char scenario[48];     // "prefill:BxS" / "decode:BxC"
    pz_scenario pass;      // the same, parsed (phase, batch, len)
    char device[256], dtype[8];
    double median_s, p10_s, p90_s;
    int repeats;
    double param_bytes, kv_bytes_per_token;  // 0 when NULL
    int measured;
} pz_rundb_profile;

// 1 when a measured row of this variant, scenario, device and dtype exists.
int pz_rundb_have_profile(pz_rundb *db, const char *part, const char *kind, int size, const char *scenario,
                          const char *device, const char *dtype, char *err);
// Records (or replaces) a measured row (one transaction); p->scenario and
// p->pass must agree.
int pz_rundb_store_profile(pz_rundb *db, const pz_rundb_profile *p, char *err);
// The rows of device and dtype (measured ones only when measured_only), in
// (part DESC, kind, size DESC, phase DESC, batch, len) order.
int pz_rundb_list_profiles(pz_rundb *db, const char *device, const char *dtype, int measured_only,
                           pz_rundb_profile **rows, int *n, char *err);

typedef struct {
    char device[256], dtype[8];
} pz_rundb_device_dtype;
// The distinct (device, dtype) pairs with measured profiles on CPU devices,
// limited to device and dtype when given (NULL: any).
int pz_rundb_cpu_profiled(pz_rundb *db, const char *device, const char *dtype, pz_rundb_device_dtype **rows,
                          int *n, char *err);

// The distinct sub-block variants to profile: every attention and FFN
// variant of the blocks and the parent's own (which a search space may
// leave out), in (part, kind, size DESC) order; embed/head not included.
typedef struct {
    pz_prof_variant v;  // part PZ_PROF_ATTN or PZ_PROF_FFN
    char kind[16];      // the kind's name
} pz_rundb_variant;
int pz_rundb_list_variants(pz_rundb *db, pz_rundb_variant **rows, int *n, char *err);

// ---- searches and solutions (rundb_search.c) ------------------------------------------------
// A searches row. Doubles that are NAN and strings that are NULL are stored as NULL.
typedef struct {
    const char *command, *method, *budget, *device, *dtype;
    int n_devices, tp;
    const char *scenario, *batch_mode, *objective, *data_hash;
    double target_throughput, target_speedup, max_memory, max_latency_s, max_ttft_s, max_params;
    long n_wanted;
    double diversity;
    long parent_batch;
    double parent_throughput, parent_time_s;
    const char *status;       // 'solved' | 'infeasible' | 'no_solution'
    const char *explanation;
    int n_solutions;
    double wall_s;
} pz_rundb_search;

// A search_constraints row (the rows of an unsolved search).
typedef struct {
    const char *name;
    long batch;
    double rhs, min_value, ratio;  // NAN: NULL
    int violated, binding;
} pz_rundb_constraint;

// A solution_layers row.
typedef struct {
    int layer;
    pz_variant attn, ffn;
    char attn_variant[32], ffn_variant[32];  // names (written from attn/ffn by record_search)
    char attn_block[80], ffn_block[80];      // "" = NULL (no library block)
    int attn_is_parent, ffn_is_parent;
    double score;
} pz_rundb_solution_layer;

// A solutions row with its layers.
typedef struct {
    int rank;
    const char *status;
    double objective, bound;  // NAN: NULL
    long batch;
    double time_s, throughput, speedup, latency_s, ttft_s, memory_bytes, params;
    int n_changed;
    double solve_s;
    const pz_rundb_solution_layer *layers;
    int n_layers;
} pz_rundb_solution;

// One transaction: the search, its constraints and its solutions with their
// layers. *search_id and *first_solution_id (0 when none) receive the ids.
int pz_rundb_record_search(pz_rundb *db, const pz_rundb_search *s, const pz_rundb_constraint *cons, int n_cons,
                           const pz_rundb_solution *sols, int n_sols, long *search_id, long *first_solution_id,
                           char *err);

// A stored search as `puzzle solutions` lists it.
typedef struct {
    long id;
    char created_at[32], method[32], budget[96], scenario[64], objective[16], status[16];
    char explanation[2048];
    double target_speedup, target_throughput, parent_throughput;  // NAN: NULL
    int tp, n_devices;
} pz_rundb_search_row;
// The searches, in id order (search_id > 0: that one only).
int pz_rundb_list_searches(pz_rundb *db, long search_id, pz_rundb_search_row **rows, int *n, char *err);

// One line of the solution_summary view.
typedef struct {
    long solution_id, search_id;
    int rank;
    char method[32], budget[96], scenario[64], objective[16], status[32];
    double score, speedup, throughput, time_s, latency_s, ttft_s;  // NAN: NULL
    long batch;
    double memory_gib, params_m;
    int n_changed;
} pz_rundb_solution_row;
// The solutions of a search, by rank.
int pz_rundb_list_solutions(pz_rundb *db, long search_id, pz_rundb_solution_row **rows, int *n, char *err);
// One solution: 1 and *out filled, 0 when there is none.
int pz_rundb_get_solution(pz_rundb *db, long solution_id, pz_rundb_solution_row *out, char *err);
// A solution's layers in layer order (none: *n = 0); an unknown variant kind is an error.
int pz_rundb_solution_layers(pz_rundb *db, long solution_id, pz_rundb_solution_layer **rows, int *n, char *err);

// ---- distillation, evaluations, pipeline stages, reports (rundb_eval.c) ---------------------
// sha256 of n bytes as 64 hex digits (for data hashes the commands store).
void pz_rundb_sha256_hex(const void *data, size_t n, char hex[65]);
// One `puzzle distill` process: its setup, its outcome and its loss curve.
typedef struct {
    const char *child, *teacher, *out_dir;
    long solution_id;         // 0: looked up (models.solution_id of a child row at child's path)
    const char *status;       // "done", "stopped", "failed"
    const char *data;         // the data files, space-separated
    const char *data_sha256;  // of the training tokens (hex)
    long data_tokens, tokens;
    int seq_len, batch, accum, ranks, threads;
    double lr, lr_min_ratio, weight_decay;
    double loss_cos, loss_kl, loss_lm, kl_temperature;  // the loss's weights (pz_gkd_loss)
    long warmup;
    const char *prec;
    uint64_t seed;
    long steps, total_steps, tokens_done, resumed_at_step;
    double wall_s, tokens_per_s;
    const char *error;        // NULL unless failed
    int n_points;             // curve: one entry per step from step 1 (may be 0)
    const double *cos_loss, *kl, *lr_curve, *grad_norm;
    long tokens_per_step;
} pz_rundb_distill_run;
// One transaction: the run row and its curve; *id (may be NULL) receives its id.
int pz_rundb_record_distill(pz_rundb *db, const pz_rundb_distill_run *r, long *id, char *err);

// One chat prompt's result within an evaluation.
typedef struct {
    const char *prompt, *reply;
    const int32_t *reply_ids;  // reply_tokens ids (may be NULL)
    int reply_tokens;
    double parent_ll;   // mean log-likelihood per reply token under the parent (nats)
    double top1;        // agreement with the parent's greedy reply, teacher-forced
    int top1_tokens;    // length of the parent's reply
} pz_rundb_chat_row;
// One `puzzle eval --db`: NAN (or NULL / 0 for strings and counts) where not measured.
typedef struct {
    const char *model_path, *role, *label, *ref_path;
    long solution_id;   // 0: looked up (models.solution_id of a child row at model_path)
    const char *text_name, *text_sha256;
    long text_tokens, skip_tokens, ctx;
    double perplexity, nll, kl, top1, ref_perplexity;
    double decode_tok_s, prefill_tok_s, ref_decode_tok_s, ref_prefill_tok_s;
    double decode_speedup, prefill_speedup;
    int speed_ctx, speed_rounds;
    const char *chat_file, *chat_sha256;
    int chat_n, chat_max_tokens;
    double chat_parent_ll, chat_top1;
    const pz_rundb_chat_row *chat;  // chat_n rows
    int threads;
    double wall_s;
} pz_rundb_eval;
int pz_rundb_record_eval(pz_rundb *db, const pz_rundb_eval *e, long *id, char *err);
// The newest eval of (model_path, role) on text_sha256 (NULL: any text) that has
// chat rows when want_chat: 1 and *id set, 0 when none.
int pz_rundb_find_eval(pz_rundb *db, const char *model_path, const char *role, const char *text_sha256,
                       int want_chat, long *id, char *err);

// The parent's own greedy chat replies, as the newest eval of role 'parent' at
// parent_path on these prompts (chat_sha256, n of them, at most max_tokens each)
// stored them: 1 with ids[i] (malloc'ed; caller frees each and the arrays) and
// lens[i] filled for i < n, 0 when there is no such eval.
int pz_rundb_parent_chat(pz_rundb *db, const char *parent_path, const char *chat_sha256, int n, int max_tokens,
                         int32_t **ids, int *lens, char *err);

// `puzzle run`'s stages: 1 and result (cap bytes; may be NULL) copied when stage
// finished with this key, 0 when not.
int pz_rundb_stage_done(pz_rundb *db, const char *stage, const char *key, char *result, size_t cap, char *err);
int pz_rundb_stage_finish(pz_rundb *db, const char *stage, const char *key, const char *result, double wall_s,
                          char *err);
// The rank-1 solution of the newest search (method NULL: any): 1 and *id, 0 when it
// found none.
int pz_rundb_newest_solution(pz_rundb *db, const char *method, long *id, char *err);
// The model row role 'child' recorded at path: 1 with *solution_id, else 0.
int pz_rundb_child_solution(pz_rundb *db, const char *path, long *solution_id, char *err);

// Reports (`puzzle report`): the rows of a named data set, each passed to fn as
// n column strings (NULL for SQL NULL) after one call with the column names
// (row index -1). Names: see pz_rundb_report_sets. fn returns 0 to go on.
// Returns the number of rows or -1.
typedef int (*pz_rundb_row_fn)(void *user, int row, int n, const char *const *cols);
int pz_rundb_report_rows(pz_rundb *db, const char *set, long arg, pz_rundb_row_fn fn, void *user, char *err);
// The data set names, NULL-terminated.
extern const char *const pz_rundb_report_sets[];

// ---- search in context (rundb_context.c) ------------------------------------------------------
// The score of a candidate (item: its block id, or "ATTN+FFN" for a pair of
// two blocks) swapped into the child named base_key (a hash of its blocks),
// on (data_hash, seq_len): 1 with *r filled (kl, loss_delta, top1, tokens,
// wall_s) and *base_kl, 0 when there is none, -1 on error.
int pz_rundb_context_score(pz_rundb *db, const char *base_key, const char *item, const char *data_hash,
                           long seq_len, pz_score_result *r, double *base_kl, char *err);
// Records (or replaces) one (one transaction); base_solution_id: a stored
// solution of that child.
int pz_rundb_record_context_score(pz_rundb *db, const char *base_key, long base_solution_id, const char *item,
                                  const char *data_hash, long seq_len, const pz_score_result *r, double base_kl,
                                  char *err);

// The text file and the positions (windows × (seq_len − 1)) of the newest
// score on (data_hash, seq_len): 1, or 0 when there is none.
int pz_rundb_score_data(pz_rundb *db, const char *data_hash, long seq_len, char *data, size_t cap, long *positions,
                        char *err);

// One round of an in-context search.
typedef struct {
    int round;              // 0: the one-shot child
    long solution_id;       // the round's child
    char status[16];        // 'base' (round 0), 'improved', 'worse' (measured), 'same' (the MIP chose the base again)
    char data_hash[40];
    long seq_len, tokens;
    double kl, top1, loss_delta;  // the child measured against the parent on the context windows
    double predicted;       // the round's MIP objective: base KL + sum of in-context deltas (NAN: none)
    int n_rescored;         // candidates scored in the base of the round before
    double wall_s;
} pz_rundb_context_round;
// The rounds of run_key in order (none: *n = 0; *rows malloc'ed).
int pz_rundb_context_rounds(pz_rundb *db, const char *run_key, pz_rundb_context_round **rows, int *n, char *err);
int pz_rundb_record_context_round(pz_rundb *db, const char *run_key, const pz_rundb_context_round *r, char *err);

// ---- merging, puzzle merge-db (rundb_merge.c) ------------------------------------------------
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
// Copies the parent model (with its layers and configuration) and the
// search space of "src" into a database that has neither (one transaction).
int pz_rundb_copy_parent_space(pz_rundb *db, char *err);
// Copies the scores of "src" whose block is here and that are not; returns
// how many, or -1.
int pz_rundb_copy_scores(pz_rundb *db, char *err);
// Copies the hardware and profile rows of "src" not present here; returns
// how many profile rows, or -1.
int pz_rundb_copy_profiles(pz_rundb *db, char *err);

#endif
