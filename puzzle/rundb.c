// rundb.c — see rundb.h. The schema lives here, as a list of migrations:
// migration k brings a database from user_version k to k+1, in one
// transaction. Later stages append migrations (new tables, new columns) and
// never rewrite an earlier one. Also here: opening, paths, the lock,
// transactions, the event log, and the statement helper (rundb_impl.h) that
// every rundb*.c file runs its SQL through.
#include "rundb_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common.h"

// ---- schema ---------------------------------------------------------------------
static const char *const migrations[] = {
    // 0 -> 1: the block library (issue 3).
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n"
    "CREATE TABLE models (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  role TEXT NOT NULL CHECK (role IN ('parent', 'child')),\n"
    "  path TEXT NOT NULL, format TEXT NOT NULL,\n"
    "  identity TEXT NOT NULL, config_hash TEXT NOT NULL,\n"
    "  n_layer INTEGER NOT NULL, hidden INTEGER NOT NULL, n_head INTEGER NOT NULL,\n"
    "  head_dim INTEGER NOT NULL, vocab INTEGER NOT NULL, n_params INTEGER,\n"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));\n"
    "CREATE UNIQUE INDEX models_one_parent ON models(role) WHERE role = 'parent';\n"
    "CREATE TABLE layers (\n"
    "  model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,\n"
    "  layer INTEGER NOT NULL,\n"
    "  attn TEXT NOT NULL, n_kv INTEGER NOT NULL, ffn TEXT NOT NULL, n_ff INTEGER NOT NULL,\n"
    "  PRIMARY KEY (model_id, layer)) WITHOUT ROWID;\n"
    "CREATE TABLE search_space (\n"
    "  id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL, sha256 TEXT NOT NULL);\n"
    "CREATE TABLE blocks (\n"
    "  block_id TEXT PRIMARY KEY,\n"
    "  layer INTEGER NOT NULL,\n"
    "  sub TEXT NOT NULL CHECK (sub IN ('attn', 'ffn', 'pair')),\n"
    "  attn_variant TEXT, ffn_variant TEXT,\n"
    "  attn_kind TEXT, attn_size INTEGER, ffn_kind TEXT, ffn_size INTEGER,\n"
    "  is_parent INTEGER NOT NULL, needs_training INTEGER NOT NULL,\n"
    "  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done')),\n"
    "  init_method TEXT, n_params INTEGER, weight_file TEXT, sha256 TEXT,\n"
    "  run_id INTEGER REFERENCES bld_runs(id),\n"
    "  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),\n"
    "  CHECK (status = 'pending' OR run_id IS NOT NULL));\n"
    "CREATE INDEX blocks_layer ON blocks(layer);\n"
    "CREATE TABLE bld_runs (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  block_id TEXT NOT NULL REFERENCES blocks(block_id),\n"
    "  status TEXT NOT NULL CHECK (status IN ('done', 'failed')),\n"
    "  mode TEXT NOT NULL, seed INTEGER, seq_len INTEGER, batch_windows INTEGER, lr REAL,\n"
    "  threads INTEGER, calib_tokens INTEGER, calib_hash TEXT,\n"
    "  steps INTEGER, tokens INTEGER, val_tokens INTEGER, wall_s REAL, tokens_per_s REAL,\n"
    "  init_val_nmse REAL, final_val_nmse REAL, final_train_nmse REAL, error TEXT,\n"
    "  finished_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));\n"
    "CREATE INDEX bld_runs_block ON bld_runs(block_id);\n"
    "CREATE TABLE loss_curves (\n"
    "  run_id INTEGER NOT NULL REFERENCES bld_runs(id) ON DELETE CASCADE,\n"
    "  step INTEGER NOT NULL, train_nmse REAL, val_nmse REAL,\n"
    "  PRIMARY KEY (run_id, step)) WITHOUT ROWID;\n"
    "CREATE TABLE events (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),\n"
    "  stage TEXT NOT NULL, kind TEXT NOT NULL, message TEXT NOT NULL);\n"
    "CREATE VIEW library AS\n"
    "  SELECT b.block_id, b.layer, b.sub, b.attn_variant, b.ffn_variant, b.status,\n"
    "         b.is_parent, b.needs_training, b.init_method, b.n_params, b.weight_file, b.sha256,\n"
    "         r.mode, r.steps, r.tokens, r.wall_s, r.tokens_per_s,\n"
    "         r.init_val_nmse, r.final_val_nmse, r.final_train_nmse\n"
    "  FROM blocks b LEFT JOIN bld_runs r ON r.id = b.run_id;\n"
    "CREATE VIEW library_curves AS\n"
    "  SELECT b.block_id, c.step, c.train_nmse, c.val_nmse\n"
    "  FROM blocks b JOIN loss_curves c ON c.run_id = b.run_id;\n",
    // Profiling (`puzzle profile`): one row per distinct sub-block variant
    // (part, kind, size) x scenario x device x dtype, shared by every layer
    // with that variant (timings depend on shapes only); block_profiles joins
    // them to the blocks. part 'embed'/'head' are the embedding and LM head.
    "CREATE TABLE hardware (\n"
    "  device TEXT PRIMARY KEY, kind TEXT NOT NULL, threads INTEGER, json TEXT,\n"
    "  measured INTEGER NOT NULL,\n"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));\n"
    "CREATE TABLE profiles (\n"
    "  part TEXT NOT NULL CHECK (part IN ('attn', 'ffn', 'embed', 'head')),\n"
    "  kind TEXT NOT NULL, size INTEGER NOT NULL,\n"
    "  scenario TEXT NOT NULL, phase TEXT NOT NULL, batch INTEGER NOT NULL, len INTEGER NOT NULL,\n"
    "  device TEXT NOT NULL REFERENCES hardware(device), dtype TEXT NOT NULL,\n"
    "  median_s REAL NOT NULL, p10_s REAL NOT NULL, p90_s REAL NOT NULL, repeats INTEGER NOT NULL,\n"
    "  param_bytes REAL, kv_bytes_per_token REAL, measured INTEGER NOT NULL,\n"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),\n"
    "  PRIMARY KEY (part, kind, size, scenario, device, dtype));\n"
    "CREATE VIEW block_profiles AS\n"
    "  SELECT b.block_id, b.layer, p.*\n"
    "  FROM blocks b JOIN profiles p\n"
    "    ON (p.part = 'attn' AND p.kind = b.attn_kind AND p.size = IFNULL(b.attn_size, 0))\n"
    "    OR (p.part = 'ffn' AND p.kind = b.ffn_kind AND p.size = IFNULL(b.ffn_size, 0));\n",
    // Replace-1-block scores (`puzzle score`): one row per block x scoring
    // data (data_hash: pz_capture_tokens_hash of the token windows) x window
    // length; kl = mean KL(parent || child), loss_delta = child - parent NLL
    // (nats per token), top1 = argmax agreement. block_scores joins blocks.
    "CREATE TABLE scores (\n"
    "  block_id TEXT NOT NULL REFERENCES blocks(block_id),\n"
    "  data_hash TEXT NOT NULL, seq_len INTEGER NOT NULL, tokens INTEGER NOT NULL,\n"
    "  kl REAL NOT NULL, loss_delta REAL NOT NULL, top1 REAL NOT NULL,\n"
    "  parent_nll REAL, child_nll REAL, data TEXT, prec TEXT, threads INTEGER, wall_s REAL,\n"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),\n"
    "  PRIMARY KEY (block_id, data_hash, seq_len)) WITHOUT ROWID;\n"
    "CREATE VIEW block_scores AS\n"
    "  SELECT b.block_id, b.layer, b.sub, b.attn_variant, b.ffn_variant, b.is_parent, b.init_method,\n"
    "         b.n_params, s.kl, s.loss_delta, s.top1, s.parent_nll, s.child_nll, s.tokens, s.seq_len,\n"
    "         s.data_hash, s.wall_s\n"
    "  FROM blocks b JOIN scores s ON s.block_id = b.block_id;\n",
    // Searches (`puzzle search`): one row per invocation with its budget,
    // scenario and limits; its rows (constraints, with the closest feasible
    // value when infeasible); its solutions ranked 1.. (predicted numbers) and
    // their per-layer choices. Views: solution_summary (one line per
    // solution with its search), solution_choices (the layers with block
    // files), pareto_front (solutions no other of the same budget, scenario
    // and objective beats on both score and predicted speed-up).
    "CREATE TABLE searches (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),\n"
    "  command TEXT NOT NULL, method TEXT NOT NULL, budget TEXT NOT NULL, device TEXT NOT NULL,\n"
    "  dtype TEXT, n_devices INTEGER NOT NULL, tp INTEGER NOT NULL, scenario TEXT NOT NULL,\n"
    "  batch_mode TEXT NOT NULL, objective TEXT NOT NULL, data_hash TEXT NOT NULL,\n"
    "  target_throughput REAL, target_speedup REAL, max_memory REAL, max_latency_s REAL, max_ttft_s REAL,\n"
    "  max_params REAL, n_wanted INTEGER NOT NULL, diversity REAL,\n"
    "  parent_batch INTEGER, parent_throughput REAL, parent_time_s REAL,\n"
    "  status TEXT NOT NULL CHECK (status IN ('solved', 'infeasible', 'no_solution')),\n"
    "  explanation TEXT, n_solutions INTEGER NOT NULL, wall_s REAL NOT NULL);\n"
    "CREATE TABLE search_constraints (\n"
    "  search_id INTEGER NOT NULL REFERENCES searches(id) ON DELETE CASCADE,\n"
    "  name TEXT NOT NULL, batch INTEGER NOT NULL, rhs REAL, min_value REAL, ratio REAL,\n"
    "  violated INTEGER, binding INTEGER,\n"
    "  PRIMARY KEY (search_id, name)) WITHOUT ROWID;\n"
    "CREATE TABLE solutions (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  search_id INTEGER NOT NULL REFERENCES searches(id) ON DELETE CASCADE,\n"
    "  rank INTEGER NOT NULL, status TEXT NOT NULL, objective REAL NOT NULL, bound REAL,\n"
    "  batch INTEGER NOT NULL, time_s REAL NOT NULL, throughput REAL NOT NULL, speedup REAL,\n"
    "  latency_s REAL, ttft_s REAL, memory_bytes REAL NOT NULL, params REAL NOT NULL,\n"
    "  n_changed INTEGER NOT NULL, solve_s REAL,\n"
    "  UNIQUE (search_id, rank));\n"
    "CREATE TABLE solution_layers (\n"
    "  solution_id INTEGER NOT NULL REFERENCES solutions(id) ON DELETE CASCADE,\n"
    "  layer INTEGER NOT NULL,\n"
    "  attn_kind TEXT NOT NULL, attn_size INTEGER NOT NULL, ffn_kind TEXT NOT NULL, ffn_size INTEGER NOT NULL,\n"
    "  attn_variant TEXT NOT NULL, ffn_variant TEXT NOT NULL,\n"
    "  attn_block TEXT, ffn_block TEXT, attn_is_parent INTEGER NOT NULL, ffn_is_parent INTEGER NOT NULL,\n"
    "  score REAL NOT NULL,\n"
    "  PRIMARY KEY (solution_id, layer)) WITHOUT ROWID;\n"
    "CREATE VIEW solution_summary AS\n"
    "  SELECT s.id AS solution_id, s.search_id, s.rank, q.method, q.budget, q.scenario, q.objective,\n"
    "         q.target_speedup, q.target_throughput, s.status, s.objective AS score, s.batch, s.speedup,\n"
    "         s.throughput, s.time_s, s.latency_s, s.ttft_s, s.memory_bytes / 1073741824.0 AS memory_gib,\n"
    "         s.params / 1e6 AS params_m, s.n_changed, q.created_at\n"
    "  FROM solutions s JOIN searches q ON q.id = s.search_id;\n"
    "CREATE VIEW solution_choices AS\n"
    "  SELECT l.solution_id, l.layer, l.attn_variant, l.ffn_variant, l.attn_is_parent, l.ffn_is_parent,\n"
    "         l.attn_block, l.ffn_block, ba.weight_file AS attn_file, bf.weight_file AS ffn_file, l.score\n"
    "  FROM solution_layers l LEFT JOIN blocks ba ON ba.block_id = l.attn_block\n"
    "       LEFT JOIN blocks bf ON bf.block_id = l.ffn_block;\n"
    "ALTER TABLE models ADD COLUMN solution_id INTEGER REFERENCES solutions(id) ON DELETE SET NULL;\n"
    "CREATE VIEW pareto_front AS\n"
    "  SELECT a.* FROM solution_summary a\n"
    "  WHERE NOT EXISTS (SELECT 1 FROM solution_summary b\n"
    "    WHERE b.budget = a.budget AND b.scenario = a.scenario AND b.objective = a.objective\n"
    "      AND b.solution_id <> a.solution_id AND b.score <= a.score AND b.speedup >= a.speedup\n"
    "      AND (b.score < a.score OR b.speedup > a.speedup));\n",
    // The parent's (and each child's) whole configuration, as its config.json
    // (pz_config_to_hf_json): every stage reads the parent from it instead of
    // rebuilding it from the shape columns. NULL in rows written before.
    "ALTER TABLE models ADD COLUMN config_json TEXT;\n",
    // Block influence of each parent layer (ShortGPT: 1 - mean cos(layer
    // input, layer output)), measured by `puzzle score` on its windows; the
    // order of `puzzle search --method shortgpt`.
    "CREATE TABLE layer_influence (\n"
    "  data_hash TEXT NOT NULL, seq_len INTEGER NOT NULL, layer INTEGER NOT NULL,\n"
    "  tokens INTEGER NOT NULL, bi REAL NOT NULL,\n"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),\n"
    "  PRIMARY KEY (data_hash, seq_len, layer)) WITHOUT ROWID;\n",
    // Issue 11: BLD trains with a chosen loss ('token': per-token normalized
    // MSE, 'global': the normalized MSE over the batch, what every earlier
    // run used); init/final_val_nmse are of that loss, *_global the global
    // NMSE on the same windows; kept_init = 1 when training did not beat the
    // initialization and its weights were kept.
    "ALTER TABLE bld_runs ADD COLUMN loss TEXT;\n"
    "ALTER TABLE bld_runs ADD COLUMN kept_init INTEGER;\n"
    "ALTER TABLE bld_runs ADD COLUMN init_val_global REAL;\n"
    "ALTER TABLE bld_runs ADD COLUMN final_val_global REAL;\n"
    "UPDATE bld_runs SET loss = 'global', init_val_global = init_val_nmse,\n"
    "  final_val_global = final_val_nmse, kept_init = CASE status WHEN 'done' THEN 0 END;\n",
    // Issue 11, the pipeline's end: distillation runs (`puzzle distill --db`)
    // with their loss curves; evaluations (`puzzle eval --db`) of the parent,
    // children before and after distillation and baselines, identified by
    // path + solution + role, with their chat replies; and the stages
    // `puzzle run` finished (stage + the key of its inputs -> its result).
    "CREATE TABLE distill_runs (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  child_path TEXT NOT NULL, teacher_path TEXT NOT NULL, out_dir TEXT NOT NULL,\n"
    "  solution_id INTEGER REFERENCES solutions(id) ON DELETE SET NULL,\n"
    "  status TEXT NOT NULL CHECK (status IN ('done', 'stopped', 'failed')),\n"
    "  data TEXT, data_sha256 TEXT, data_tokens INTEGER,\n"
    "  tokens INTEGER, seq_len INTEGER, batch INTEGER, accum INTEGER, ranks INTEGER, threads INTEGER,\n"
    "  lr REAL, lr_min_ratio REAL, warmup INTEGER, weight_decay REAL, prec TEXT, seed INTEGER,\n"
    "  steps INTEGER, total_steps INTEGER, tokens_done INTEGER, resumed_at_step INTEGER,\n"
    "  wall_s REAL, tokens_per_s REAL, first_loss REAL, last_loss REAL, error TEXT,\n"
    "  finished_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));\n"
    "CREATE TABLE distill_curves (\n"
    "  run_id INTEGER NOT NULL REFERENCES distill_runs(id) ON DELETE CASCADE,\n"
    "  step INTEGER NOT NULL, tokens INTEGER NOT NULL, loss REAL NOT NULL, cos_loss REAL NOT NULL,\n"
    "  kl REAL NOT NULL, lr REAL NOT NULL, grad_norm REAL,\n"
    "  PRIMARY KEY (run_id, step)) WITHOUT ROWID;\n"
    "CREATE TABLE evals (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  model_path TEXT NOT NULL,\n"
    "  role TEXT NOT NULL CHECK (role IN ('parent', 'child', 'distilled', 'baseline')),\n"
    "  solution_id INTEGER REFERENCES solutions(id) ON DELETE SET NULL, label TEXT,\n"
    "  ref_path TEXT,\n"
    "  text_name TEXT, text_sha256 TEXT, text_tokens INTEGER, skip_tokens INTEGER, ctx INTEGER,\n"
    "  perplexity REAL, nll REAL, kl REAL, top1 REAL, ref_perplexity REAL,\n"
    "  decode_tok_s REAL, prefill_tok_s REAL, ref_decode_tok_s REAL, ref_prefill_tok_s REAL,\n"
    "  decode_speedup REAL, prefill_speedup REAL, speed_ctx INTEGER, speed_rounds INTEGER,\n"
    "  chat_file TEXT, chat_sha256 TEXT, chat_n INTEGER, chat_max_tokens INTEGER, chat_parent_ll REAL,\n"
    "  chat_top1 REAL,\n"
    "  threads INTEGER, wall_s REAL,\n"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));\n"
    "CREATE INDEX evals_model ON evals(model_path, role);\n"
    "CREATE TABLE eval_chat (\n"
    "  eval_id INTEGER NOT NULL REFERENCES evals(id) ON DELETE CASCADE,\n"
    "  idx INTEGER NOT NULL, prompt TEXT NOT NULL, reply TEXT NOT NULL, reply_tokens INTEGER NOT NULL,\n"
    "  parent_ll REAL, top1 REAL, top1_tokens INTEGER, reply_ids TEXT,\n"
    "  PRIMARY KEY (eval_id, idx)) WITHOUT ROWID;\n"
    "CREATE VIEW eval_summary AS\n"
    "  SELECT e.id AS eval_id, e.role, IFNULL(e.label, e.role) AS label, e.model_path, e.solution_id,\n"
    "         q.method, s.speedup AS predicted_speedup, s.params / 1e6 AS params_m,\n"
    "         e.text_name, e.text_tokens, e.perplexity,\n"
    "         e.perplexity / (SELECT p.perplexity FROM evals p WHERE p.role = 'parent'\n"
    "            AND p.text_sha256 = e.text_sha256 AND p.skip_tokens IS e.skip_tokens AND p.ctx IS e.ctx\n"
    "            AND p.text_tokens IS e.text_tokens ORDER BY p.id DESC LIMIT 1) AS ppl_vs_parent,\n"
    "         e.kl, e.top1, e.decode_tok_s, e.prefill_tok_s, e.decode_speedup, e.prefill_speedup,\n"
    "         e.chat_n, e.chat_parent_ll, e.chat_top1, e.created_at\n"
    "  FROM evals e LEFT JOIN solutions s ON s.id = e.solution_id\n"
    "       LEFT JOIN searches q ON q.id = s.search_id\n"
    "  WHERE e.id = (SELECT max(x.id) FROM evals x WHERE x.model_path = e.model_path AND x.role = e.role\n"
    "                AND x.text_sha256 IS e.text_sha256);\n"
    "CREATE TABLE run_stages (\n"
    "  stage TEXT NOT NULL, key TEXT NOT NULL, result TEXT,\n"
    "  wall_s REAL, finished_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),\n"
    "  PRIMARY KEY (stage, key)) WITHOUT ROWID;\n",
    // Issue 11, search in context (`puzzle search --in-context`): scores of
    // candidate blocks swapped into a child (the base: base_key names its
    // blocks, base_solution_id a stored solution that has them) instead of
    // the parent, KL still against the parent; and the rounds of
    // each in-context run (run_key: the search's options and the context
    // windows), round 0 being the one-shot child.
    "CREATE TABLE context_scores (\n"
    "  base_key TEXT NOT NULL, base_solution_id INTEGER REFERENCES solutions(id) ON DELETE SET NULL,\n"
    "  item TEXT NOT NULL,\n"
    "  data_hash TEXT NOT NULL, seq_len INTEGER NOT NULL, tokens INTEGER NOT NULL,\n"
    "  kl REAL NOT NULL, loss_delta REAL NOT NULL, top1 REAL NOT NULL, base_kl REAL NOT NULL, wall_s REAL,\n"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),\n"
    "  PRIMARY KEY (base_key, item, data_hash, seq_len)) WITHOUT ROWID;\n"
    "CREATE TABLE context_rounds (\n"
    "  run_key TEXT NOT NULL, round INTEGER NOT NULL,\n"
    "  solution_id INTEGER NOT NULL REFERENCES solutions(id) ON DELETE CASCADE,\n"
    "  status TEXT NOT NULL CHECK (status IN ('base', 'improved', 'worse', 'same')),\n"
    "  data_hash TEXT NOT NULL, seq_len INTEGER NOT NULL, tokens INTEGER NOT NULL,\n"
    "  kl REAL NOT NULL, top1 REAL NOT NULL, loss_delta REAL NOT NULL, predicted REAL,\n"
    "  n_rescored INTEGER NOT NULL, wall_s REAL,\n"
    "  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),\n"
    "  PRIMARY KEY (run_key, round)) WITHOUT ROWID;\n"
    "CREATE VIEW context_block_scores AS\n"
    "  SELECT base_key, base_solution_id, item, data_hash, seq_len, tokens, kl, kl - base_kl AS delta, loss_delta, top1,\n"
    "         wall_s FROM context_scores;\n",
    // Issue 11: the loss a distillation run optimized (`puzzle distill --loss-cos
    // --loss-kl --loss-lm --kl-temperature`); NULL for runs recorded before.
    "ALTER TABLE distill_runs ADD COLUMN loss_cos REAL;\n"
    "ALTER TABLE distill_runs ADD COLUMN loss_kl REAL;\n"
    "ALTER TABLE distill_runs ADD COLUMN loss_lm REAL;\n"
    "ALTER TABLE distill_runs ADD COLUMN kl_temperature REAL;\n",
};
#define N_MIGRATIONS (int)(sizeof(migrations) / sizeof(migrations[0]))
_Static_assert(N_MIGRATIONS == PZ_RUNDB_VERSION, "PZ_RUNDB_VERSION is the number of migrations");

// ---- statements ------------------------------------------------------------------------
static int sql_fail(char *err, sqlite3 *db, int rc, const char *file, int line) {
    const char *slash = strrchr(file, '/');
    pz_err(err, "sqlite: %s (%s, %s:%d)", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), sqlite3_errstr(rc),
           slash ? slash + 1 : file, line);
    return -1;
}

static int bind_all(rundb_stmt *q, const char *types, va_list ap) {
    int n = (int)strlen(types);
    if (n != sqlite3_bind_parameter_count(q->st))
        return pz_err(q->err, "internal: %d parameters bound to a statement of %d (%s:%d)", n,
                      sqlite3_bind_parameter_count(q->st), q->file, q->line);
    for (int i = 0; i < n; i++) {
        int k = i + 1, rc;
        switch (types[i]) {
        case 'i': rc = sqlite3_bind_int(q->st, k, va_arg(ap, int)); break;
        case 'l': rc = sqlite3_bind_int64(q->st, k, (sqlite3_int64)va_arg(ap, long)); break;
        case 'p': {
            const int *v = va_arg(ap, const int *);
            rc = v ? sqlite3_bind_int(q->st, k, *v) : sqlite3_bind_null(q->st, k);
            break;
        }
        case 'k': {
            long v = va_arg(ap, long);
            rc = v > 0 ? sqlite3_bind_int64(q->st, k, (sqlite3_int64)v) : sqlite3_bind_null(q->st, k);
            break;
        }
        case 'L': rc = sqlite3_bind_int64(q->st, k, (sqlite3_int64)va_arg(ap, int64_t)); break;
        case 'd': {
            double v = va_arg(ap, double);
            rc = isnan(v) ? sqlite3_bind_null(q->st, k) : sqlite3_bind_double(q->st, k, v);
            break;
        }
        case 't': {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(q->st, k, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(q->st, k);
            break;
        }
        case '-': rc = sqlite3_bind_null(q->st, k); break;
        default: return pz_err(q->err, "internal: bind type '%c' (%s:%d)", types[i], q->file, q->line);
        }
        if (rc != SQLITE_OK) return sql_fail(q->err, q->db->db, rc, q->file, q->line);
    }
    return 0;
}

static int prepare_v(pz_rundb *db, rundb_stmt *q, char *err, const char *file, int line, const char *sql,
                     const char *types, va_list ap) {
    *q = (rundb_stmt){db, NULL, err, file, line};
    int rc = sqlite3_prepare_v2(db->db, sql, -1, &q->st, NULL);
    if (rc != SQLITE_OK) return sql_fail(err, db->db, rc, file, line);
    if (*types && bind_all(q, types, ap)) {
        rundb_done(q);
        return -1;
    }
    return 0;
}

int rundb_prepare_at(pz_rundb *db, rundb_stmt *q, char *err, const char *file, int line, const char *sql,
                     const char *types, ...) {
    va_list ap;
    va_start(ap, types);
    int rc = prepare_v(db, q, err, file, line, sql, types, ap);
    va_end(ap);
    return rc;
}

int rundb_rebind(rundb_stmt *q, const char *types, ...) {
    sqlite3_reset(q->st);
    sqlite3_clear_bindings(q->st);
    va_list ap;
    va_start(ap, types);
    int rc = bind_all(q, types, ap);
    va_end(ap);
    return rc;
}

int rundb_step(rundb_stmt *q) {
    int rc = sqlite3_step(q->st);
    if (rc == SQLITE_ROW) return 1;
    if (rc == SQLITE_DONE) return 0;
    return sql_fail(q->err, q->db->db, rc, q->file, q->line);
}

void rundb_done(rundb_stmt *q) {
    sqlite3_finalize(q->st);  // NULL is a no-op
    q->st = NULL;
}

const char *rundb_text(rundb_stmt *q, int i) {
    const unsigned char *t = sqlite3_column_text(q->st, i);
    return t ? (const char *)t : "";
}
void rundb_copy(rundb_stmt *q, int i, char *dst, size_t cap) { snprintf(dst, cap, "%s", rundb_text(q, i)); }
int rundb_int(rundb_stmt *q, int i) { return sqlite3_column_int(q->st, i); }
int64_t rundb_int64(rundb_stmt *q, int i) { return (int64_t)sqlite3_column_int64(q->st, i); }
double rundb_double(rundb_stmt *q, int i) { return rundb_is_null(q, i) ? NAN : sqlite3_column_double(q->st, i); }
int rundb_is_null(rundb_stmt *q, int i) { return sqlite3_column_type(q->st, i) == SQLITE_NULL; }

int rundb_exec_at(pz_rundb *db, char *err, const char *file, int line, const char *sql, const char *types, ...) {
    rundb_stmt q;
    va_list ap;
    va_start(ap, types);
    int rc = prepare_v(db, &q, err, file, line, sql, types, ap);
    va_end(ap);
    if (rc) return -1;
    while ((rc = rundb_step(&q)) == 1) {}
    rundb_done(&q);
    return rc < 0 ? -1 : sqlite3_changes(db->db);
}

int rundb_script(pz_rundb *db, const char *sql, char *err) {
    char *msg = NULL;
    if (sqlite3_exec(db->db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    pz_err(err, "sqlite: %s", msg ? msg : sqlite3_errmsg(db->db));
    sqlite3_free(msg);
    return -1;
}

int64_t rundb_last_id(pz_rundb *db) { return (int64_t)sqlite3_last_insert_rowid(db->db); }

int rundb_begin(pz_rundb *db, char *err) { return rundb_script(db, "BEGIN IMMEDIATE", err); }
int rundb_commit(pz_rundb *db, char *err) { return rundb_script(db, "COMMIT", err); }
void rundb_rollback(pz_rundb *db) {
    if (!sqlite3_get_autocommit(db->db)) sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
}
int rundb_end(pz_rundb *db, int rc, char *err) {
    if (rc == 0 && rundb_commit(db, err) == 0) return 0;
    rundb_rollback(db);
    return -1;
}

// ---- shared by the stage files ------------------------------------------------------------
void rundb_sha256_hex(const void *data, size_t n, char hex[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

const char *rundb_sub_name(pz_sub_kind s) { return s == PZ_SUB_ATTN ? "attn" : s == PZ_SUB_FFN ? "ffn" : "pair"; }
int rundb_sub_parse(const char *s) {
    return !strcmp(s, "attn") ? PZ_SUB_ATTN : !strcmp(s, "ffn") ? PZ_SUB_FFN : PZ_SUB_PAIR;
}

int rundb_variant(int attn_half, const char *kind, int size, pz_variant *v) {
    *v = (pz_variant){.size = 0};  // an absent half: kind 0, size 0 (the block's sub says it is absent)
    if (!kind || !*kind) return 0;
    v->size = size;
    return attn_half ? pz_attn_kind_parse(kind, &v->attn) : pz_ffn_kind_parse(kind, &v->ffn);
}

int rundb_list_done(rundb_stmt *q, int rc, void **rows, int *n) {
    rundb_done(q);
    if (rc >= 0) return 0;
    free(*rows);
    *rows = NULL, *n = 0;
    return -1;
}

int rundb_grow(void **arr, int n, int *cap, size_t elem, char *err) {
    if (n < *cap) return 0;
    int c = *cap ? 2 * *cap : 64;
    void *p = realloc(*arr, elem * (size_t)c);
    if (!p) return pz_err(err, "out of memory");
    *arr = p, *cap = c;
    return 0;
}

// ---- schema versions -------------------------------------------------------------------------
static int user_version(pz_rundb *db, int *v, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err, "PRAGMA user_version", "")) return -1;
    int rc = rundb_step(&q);
    if (rc == 1) *v = rundb_int(&q, 0);
    rundb_done(&q);
    return rc == 1 ? 0 : rc < 0 ? -1 : pz_err(err, "PRAGMA user_version returned nothing");
}

// Applies the migrations after the database's version, each with its
// version bump, in one transaction.
static int migrate(pz_rundb *db, char *err) {
    int v;
    if (user_version(db, &v, err)) return -1;
    if (v == N_MIGRATIONS) return 0;  // up to date: no write lock taken
    if (rundb_begin(db, err) || user_version(db, &v, err)) goto fail;
    if (v > N_MIGRATIONS) {
        pz_err(err, "%s has schema version %d; this puzzle knows up to %d (a newer puzzle wrote it)",
               db->path, v, N_MIGRATIONS);
        goto fail;
    }
    for (; v < N_MIGRATIONS; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        if (rundb_script(db, migrations[v], err) || rundb_script(db, bump, err)) goto fail;
        if (v == 0 && rundb_script(db, "INSERT INTO meta VALUES ('created_by', 'puzzle " PZ_VERSION "')", err))
            goto fail;
    }
    return rundb_commit(db, err);
fail:
    rundb_rollback(db);
    return -1;
}

// ---- open / close -----------------------------------------------------------------
static void set_paths(pz_rundb *db, const char *path) {
    snprintf(db->path, sizeof db->path, "%s", path);
    const char *slash = strrchr(path, '/');
    if (slash) snprintf(db->dir, sizeof db->dir, "%.*s", (int)(slash - path) > 0 ? (int)(slash - path) : 1, path);
    else snprintf(db->dir, sizeof db->dir, ".");
    const char *name = slash ? slash + 1 : path;
    size_t n = strlen(name);
    if (n > 3 && strcmp(name + n - 3, ".db") == 0) n -= 3;
    snprintf(db->base_name, sizeof db->base_name, "%.*s", (int)n, name);
    snprintf(db->blocks_dir, sizeof db->blocks_dir, "%s/%s.blocks", db->dir, db->base_name);
    snprintf(db->cache_dir, sizeof db->cache_dir, "%s/%s.cache", db->dir, db->base_name);
}

pz_rundb *pz_rundb_open(const char *path, int create, char *err) {
    pz_rundb *db = calloc(1, sizeof *db);
    if (!db) return pz_err(err, "out of memory"), NULL;
    db->lock_fd = -1;
    set_paths(db, path);
    if (!create && !pz_file_exists(path)) {
        pz_err(err, "%s: no such database", path);
        free(db);
        return NULL;
    }
    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, &db->db, flags, NULL);
    if (rc != SQLITE_OK) {
        pz_err(err, "%s: cannot open: %s", path, db->db ? sqlite3_errmsg(db->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(db->db, 30000);
    // Reading the schema first also rejects files that are not databases.
    if (rundb_script(db, "PRAGMA journal_mode = WAL", err) || rundb_script(db, "PRAGMA foreign_keys = ON", err) ||
        rundb_script(db, "PRAGMA synchronous = NORMAL", err)) {
        pz_err(err, "%s: not a usable SQLite database", path);
        goto fail;
    }
    if (migrate(db, err)) goto fail;
    return db;
fail:
    sqlite3_close(db->db);
    free(db);
    return NULL;
}

void pz_rundb_close(pz_rundb *db) {
    if (!db) return;
    if (db->lock_fd >= 0) close(db->lock_fd);
    sqlite3_close(db->db);
    free(db);
}

const char *pz_rundb_path(const pz_rundb *db) { return db->path; }
const char *pz_rundb_dir(const pz_rundb *db) { return db->dir; }
const char *pz_rundb_blocks_dir(const pz_rundb *db) { return db->blocks_dir; }
const char *pz_rundb_cache_dir(const pz_rundb *db) { return db->cache_dir; }

void pz_rundb_block_file(const pz_rundb *db, const char *block_id, char *rel, size_t rel_cap, char *path,
                         size_t path_cap) {
    snprintf(rel, rel_cap, "%s.blocks/%s.safetensors", db->base_name, block_id);
    pz_rundb_resolve(db, rel, path, path_cap);
}

void pz_rundb_resolve(const pz_rundb *db, const char *rel, char *path, size_t cap) {
    if (rel[0] == '/' || strcmp(db->dir, ".") == 0) snprintf(path, cap, "%s", rel);
    else snprintf(path, cap, "%s/%s", db->dir, rel);
}

static int ensure_dir(const char *path, char *err) {
    if (mkdir(path, 0755) == 0 || (errno == EEXIST && pz_is_dir(path))) return 0;
    return pz_err(err, "cannot create %s: %s", path, strerror(errno));
}

int pz_rundb_lock(pz_rundb *db, char *err) {
    if (db->lock_fd >= 0) return 0;
    if (ensure_dir(db->blocks_dir, err) || ensure_dir(db->cache_dir, err)) return -1;
    int fd = open(db->blocks_dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return pz_err(err, "%s: %s", db->blocks_dir, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return pz_err(err, "another puzzle process is writing to %s (%s is locked)", db->path, db->blocks_dir);
    }
    db->lock_fd = fd;
    return 0;
}

// ---- events -----------------------------------------------------------------------
void pz_rundb_event(pz_rundb *db, const char *stage, const char *kind, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    // autocommit: its own transaction; a failure is ignored (err NULL)
    rundb_exec(db, NULL, "INSERT INTO events (stage, kind, message) VALUES (?, ?, ?)", "ttt", stage, kind, msg);
}
