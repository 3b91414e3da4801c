// rundb.c — see rundb.h. The schema lives here, as a list of migrations:
// migration k brings a database from user_version k to k+1, in one
// transaction. Later stages append migrations (new tables, new columns) and
// never rewrite an earlier one.
#include "rundb.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "capture.h"
#include "common.h"
#include "weights.h"

struct pz_rundb {
    sqlite3 *db;
    int lock_fd;            // flock on blocks_dir (pz_rundb_lock), or -1
    char path[1024];
    char dir[1024];         // the database's directory ("." when none)
    char blocks_dir[1600];  // RUN.blocks (as usable from the current directory)
    char cache_dir[1600];   // RUN.cache
    char base_name[512];    // "RUN" (file name without ".db")
};

void pz_rundb_sql_error(char *err, sqlite3 *db, int rc, const char *file, int line) {
    const char *slash = strrchr(file, '/');
    pz_err(err, "sqlite: %s (%s, %s:%d)", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc), sqlite3_errstr(rc),
           slash ? slash + 1 : file, line);
}

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
};
#define N_MIGRATIONS (int)(sizeof(migrations) / sizeof(migrations[0]))

static int exec(pz_rundb *db, const char *sql, char *err) {
    char *msg = NULL;
    if (sqlite3_exec(db->db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    pz_err(err, "sqlite: %s", msg ? msg : sqlite3_errmsg(db->db));
    sqlite3_free(msg);
    return -1;
}

static int user_version(pz_rundb *db, int *v, char *err) {
    sqlite3_stmt *st = NULL;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db, "PRAGMA user_version", -1, &st, NULL));
    PZ_SQL(db->db, sqlite3_step(st));
    *v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
fail:
    sqlite3_finalize(st);
    return -1;
}

// Applies the migrations after the database's version, each in its own
// transaction with the version bump.
static int migrate(pz_rundb *db, char *err) {
    int v;
    if (user_version(db, &v, err)) return -1;
    if (v == N_MIGRATIONS) return 0;  // up to date: no write lock taken
    if (pz_rundb_begin(db, err) || user_version(db, &v, err)) goto fail;
    if (v > N_MIGRATIONS) {
        pz_err(err, "%s has schema version %d; this puzzle knows up to %d (a newer puzzle wrote it)",
               db->path, v, N_MIGRATIONS);
        goto fail;
    }
    for (; v < N_MIGRATIONS; v++) {
        char bump[64];
        snprintf(bump, sizeof bump, "PRAGMA user_version = %d", v + 1);
        if (exec(db, migrations[v], err) || exec(db, bump, err)) goto fail;
        if (v == 0 && exec(db, "INSERT INTO meta VALUES ('created_by', 'puzzle " PZ_VERSION "')", err))
            goto fail;
    }
    return pz_rundb_commit(db, err);
fail:
    pz_rundb_rollback(db);
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
    if (exec(db, "PRAGMA journal_mode = WAL", err) || exec(db, "PRAGMA foreign_keys = ON", err) ||
        exec(db, "PRAGMA synchronous = NORMAL", err)) {
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

sqlite3 *pz_rundb_sqlite(pz_rundb *db) { return db->db; }
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

int pz_rundb_begin(pz_rundb *db, char *err) { return exec(db, "BEGIN IMMEDIATE", err); }
int pz_rundb_commit(pz_rundb *db, char *err) { return exec(db, "COMMIT", err); }
void pz_rundb_rollback(pz_rundb *db) {
    if (!sqlite3_get_autocommit(db->db)) sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
}

// ---- parent and space -------------------------------------------------------------
static void sha256_hex(const void *data, size_t n, char hex[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Files that make up a model: the file itself, or config.json and every
// *.safetensors of a directory (sorted). *names malloc'ed (caller frees
// each and the array).
static int model_files(const char *path, char ***names, int *n, char *err) {
    *names = NULL, *n = 0;
    if (!pz_is_dir(path)) {
        if (!(*names = malloc(sizeof(char *))) || !((*names)[0] = strdup(path))) return pz_err(err, "out of memory");
        *n = 1;
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) return pz_err(err, "%s: %s", path, strerror(errno));
    struct dirent *e;
    int cap = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        int want = strcmp(e->d_name, "config.json") == 0 ||
                   (l > 12 && strcmp(e->d_name + l - 12, ".safetensors") == 0);
        if (!want) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            char **nn = realloc(*names, sizeof(char *) * (size_t)cap);
            if (!nn) break;
            *names = nn;
        }
        char full[2048];
        snprintf(full, sizeof full, "%s/%s", path, e->d_name);
        if (!((*names)[*n] = strdup(full))) break;
        (*n)++;
    }
    closedir(d);
    if (*n > 1) qsort(*names, (size_t)*n, sizeof(char *), cmp_str);
    return 0;
}

int pz_rundb_model_identity(const char *path, const pz_config *c, pz_rundb_model *out, char *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    snprintf(out->format, sizeof out->format, "%s", pz_is_dir(path) ? "hf" : "gguf");
    snprintf(out->config_hash, sizeof out->config_hash, "%016" PRIx64, pz_capture_config_hash(c));
    char **names;
    int n, rc = -1;
    if (model_files(path, &names, &n, err)) return -1;
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        struct stat sb;
        if (stat(names[i], &sb) == 0) total += (uint64_t)sb.st_size;
    }
    if (total > ((uint64_t)4 << 30)) {
        snprintf(out->identity, sizeof out->identity, "size:%" PRIu64, total);
        rc = 0;
    } else {
        // One file: its sha256. Several: the sha256 of their sha256 lines.
        char *list = calloc((size_t)n, 66), hex[65];
        if (!list) pz_err(err, "out of memory");
        for (int i = 0; list && i < n; i++) {
            if (pz_sha256_file(names[i], hex, err)) goto done;
            memcpy(list + 65 * i, hex, 64), list[65 * i + 64] = '\n';
        }
        if (list && n == 1) snprintf(out->identity, sizeof out->identity, "sha256:%.64s", list);
        else if (list) {
            sha256_hex(list, (size_t)n * 65, hex);
            snprintf(out->identity, sizeof out->identity, "sha256:%s", hex);
        }
        if (list) rc = 0;
    done:
        free(list);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

static void col_text(sqlite3_stmt *st, int i, char *dst, size_t cap) {
    const unsigned char *s = sqlite3_column_text(st, i);
    snprintf(dst, cap, "%s", s ? (const char *)s : "");
}

int pz_rundb_get_parent(pz_rundb *db, pz_rundb_model *out, char *err) {
    sqlite3_stmt *st = NULL;
    memset(out, 0, sizeof *out);
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db,
                                      "SELECT path, format, identity, config_hash FROM models WHERE role = 'parent'",
                                      -1, &st, NULL));
    int rc = sqlite3_step(st), found = rc == SQLITE_ROW;
    PZ_SQL(db->db, rc);
    if (found) {
        col_text(st, 0, out->path, sizeof out->path);
        col_text(st, 1, out->format, sizeof out->format);
        col_text(st, 2, out->identity, sizeof out->identity);
        col_text(st, 3, out->config_hash, sizeof out->config_hash);
    }
    sqlite3_finalize(st);
    return found;
fail:
    sqlite3_finalize(st);
    return -1;
}


// One models row (inside the caller's transaction); *id gets its rowid.
// solution_id <= 0: none.
static int insert_model(pz_rundb *db, const char *role, const pz_rundb_model *m, const pz_config *c,
                        long solution_id, sqlite3_int64 *id, char *err) {
    sqlite3_stmt *st = NULL;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db,
                                      "INSERT INTO models (role, path, format, identity, config_hash, n_layer, "
                                      "hidden, n_head, head_dim, vocab, n_params, solution_id) "
                                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                      -1, &st, NULL));
    sqlite3_bind_text(st, 1, role, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->path, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, m->format, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, m->identity, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, m->config_hash, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, c->n_layer);
    sqlite3_bind_int(st, 7, c->hidden);
    sqlite3_bind_int(st, 8, c->n_head);
    sqlite3_bind_int(st, 9, c->head_dim);
    sqlite3_bind_int(st, 10, c->vocab);
    sqlite3_bind_int64(st, 11, (sqlite3_int64)pz_config_n_params(c));
    if (solution_id > 0) sqlite3_bind_int64(st, 12, solution_id);
    PZ_SQL(db->db, sqlite3_step(st));
    sqlite3_finalize(st);
    *id = sqlite3_last_insert_rowid(db->db);
    return 0;
fail:
    sqlite3_finalize(st);
    return -1;
}

int pz_rundb_add_child(pz_rundb *db, const pz_rundb_model *m, const pz_config *c, long solution_id, char *err) {
    sqlite3_stmt *st = NULL;
    sqlite3_int64 id;
    if (pz_rundb_begin(db, err)) return -1;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db, "DELETE FROM models WHERE role = 'child' AND path = ?", -1, &st, NULL));
    sqlite3_bind_text(st, 1, m->path, -1, SQLITE_STATIC);
    PZ_SQL(db->db, sqlite3_step(st));
    sqlite3_finalize(st);
    st = NULL;
    if (insert_model(db, "child", m, c, solution_id, &id, err)) goto fail;
    return pz_rundb_commit(db, err);
fail:
    sqlite3_finalize(st);
    pz_rundb_rollback(db);
    return -1;
}

int pz_rundb_set_parent(pz_rundb *db, const pz_rundb_model *m, const pz_config *c, char *err) {
    sqlite3_stmt *st = NULL;
    sqlite3_int64 id;
    if (pz_rundb_begin(db, err)) return -1;
    if (insert_model(db, "parent", m, c, 0, &id, err)) goto fail;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db, "INSERT INTO layers VALUES (?, ?, ?, ?, ?, ?)", -1, &st, NULL));
    for (int l = 0; l < c->n_layer; l++) {
        const pz_layer_spec *s = &c->layers[l];
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int(st, 2, l);
        sqlite3_bind_text(st, 3, pz_attn_kind_name(s->attn), -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, s->n_kv);
        sqlite3_bind_text(st, 5, pz_ffn_kind_name(s->ffn), -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, s->n_ff);
        PZ_SQL(db->db, sqlite3_step(st));
    }
    sqlite3_finalize(st);
    return pz_rundb_commit(db, err);
fail:
    sqlite3_finalize(st);
    pz_rundb_rollback(db);
    return -1;
}

int pz_rundb_get_space(pz_rundb *db, char **json, char *err) {
    sqlite3_stmt *st = NULL;
    *json = NULL;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db, "SELECT json FROM search_space WHERE id = 1", -1, &st, NULL));
    int rc = sqlite3_step(st);
    PZ_SQL(db->db, rc);
    if (rc == SQLITE_ROW) {
        const char *s = (const char *)sqlite3_column_text(st, 0);
        if (!(*json = strdup(s ? s : ""))) {
            pz_err(err, "out of memory");
            goto fail;
        }
    }
    sqlite3_finalize(st);
    return *json != NULL;
fail:
    sqlite3_finalize(st);
    return -1;
}

int pz_rundb_set_space(pz_rundb *db, const char *json, char *err) {
    sqlite3_stmt *st = NULL;
    char hex[65];
    sha256_hex(json, strlen(json), hex);
    if (pz_rundb_begin(db, err)) return -1;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db, "INSERT INTO search_space (id, json, sha256) VALUES (1, ?, ?)", -1,
                                      &st, NULL));
    sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, hex, -1, SQLITE_STATIC);
    PZ_SQL(db->db, sqlite3_step(st));
    sqlite3_finalize(st);
    return pz_rundb_commit(db, err);
fail:
    sqlite3_finalize(st);
    pz_rundb_rollback(db);
    return -1;
}

// ---- blocks -----------------------------------------------------------------------
static const char *sub_name(pz_sub_kind s) { return s == PZ_SUB_ATTN ? "attn" : s == PZ_SUB_FFN ? "ffn" : "pair"; }

// INSERT OR IGNORE of the wanted blocks as 'pending', inside the caller's transaction.
static int insert_blocks(pz_rundb *db, const pz_block *blocks, const char *want, int n, char *err) {
    sqlite3_stmt *st = NULL;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db,
                                      "INSERT OR IGNORE INTO blocks (block_id, layer, sub, attn_variant, ffn_variant, "
                                      "attn_kind, attn_size, ffn_kind, ffn_size, is_parent, needs_training) "
                                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                      -1, &st, NULL));
    for (int i = 0; i < n; i++) {
        if (want && !want[i]) continue;
        const pz_block *b = &blocks[i];
        int has_a = b->sub != PZ_SUB_FFN, has_f = b->sub != PZ_SUB_ATTN;
        char av[32], fv[32];
        pz_variant_name(PZ_SUB_ATTN, &b->attn, av, sizeof av);
        pz_variant_name(PZ_SUB_FFN, &b->ffn, fv, sizeof fv);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        sqlite3_bind_text(st, 1, b->id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, b->layer);
        sqlite3_bind_text(st, 3, sub_name(b->sub), -1, SQLITE_STATIC);
        if (has_a) {
            sqlite3_bind_text(st, 4, av, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 6, pz_attn_kind_name((pz_attn_kind)b->attn.kind), -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 7, b->attn.size);
        }
        if (has_f) {
            sqlite3_bind_text(st, 5, fv, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(st, 8, pz_ffn_kind_name((pz_ffn_kind)b->ffn.kind), -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 9, b->ffn.size);
        }
        sqlite3_bind_int(st, 10, b->is_parent);
        sqlite3_bind_int(st, 11, b->needs_training);
        PZ_SQL(db->db, sqlite3_step(st));
    }
    sqlite3_finalize(st);
    return 0;
fail:
    sqlite3_finalize(st);
    return -1;
}

int pz_rundb_add_blocks(pz_rundb *db, const pz_block *blocks, const char *want, int n, char *err) {
    if (pz_rundb_begin(db, err)) return -1;
    if (insert_blocks(db, blocks, want, n, err)) {
        pz_rundb_rollback(db);
        return -1;
    }
    return pz_rundb_commit(db, err);
}

int pz_rundb_get_block_state(pz_rundb *db, const char *block_id, pz_rundb_block_state *out, char *err) {
    sqlite3_stmt *st = NULL;
    memset(out, 0, sizeof *out);
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db, "SELECT status, weight_file, sha256 FROM blocks WHERE block_id = ?",
                                      -1, &st, NULL));
    sqlite3_bind_text(st, 1, block_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    PZ_SQL(db->db, rc);
    if (rc == SQLITE_ROW) {
        out->found = 1;
        out->done = strcmp((const char *)sqlite3_column_text(st, 0), "done") == 0;
        col_text(st, 1, out->weight_file, sizeof out->weight_file);
        col_text(st, 2, out->sha256, sizeof out->sha256);
    }
    sqlite3_finalize(st);
    return 0;
fail:
    sqlite3_finalize(st);
    return -1;
}

static void bind_real(sqlite3_stmt *st, int i, double v) {
    if (v != v) sqlite3_bind_null(st, i);  // NAN -> NULL
    else sqlite3_bind_double(st, i, v);
}

// Inserts a bld_runs row (status, and r's numbers when r != NULL);
// *run_id receives its id.
static int insert_run(pz_rundb *db, const pz_block *b, const pz_rundb_bld_setup *s, const char *status,
                      const pz_bld_result *r, const char *error, sqlite3_int64 *run_id, char *err) {
    sqlite3_stmt *st = NULL;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db,
                                      "INSERT INTO bld_runs (block_id, status, mode, seed, seq_len, batch_windows, "
                                      "lr, threads, calib_tokens, calib_hash, steps, tokens, val_tokens, wall_s, "
                                      "tokens_per_s, init_val_nmse, final_val_nmse, final_train_nmse, error) "
                                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                      -1, &st, NULL));
    char hash[17];
    snprintf(hash, sizeof hash, "%016" PRIx64, s->calib_hash);
    sqlite3_bind_text(st, 1, b->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->mode, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)s->seed);
    sqlite3_bind_int(st, 5, s->seq_len);
    sqlite3_bind_int(st, 6, s->batch_windows);
    sqlite3_bind_double(st, 7, s->lr);
    sqlite3_bind_int(st, 8, s->threads);
    sqlite3_bind_int64(st, 9, s->calib_tokens);
    sqlite3_bind_text(st, 10, hash, -1, SQLITE_TRANSIENT);
    if (r) {
        sqlite3_bind_int64(st, 11, r->steps);
        sqlite3_bind_int64(st, 12, r->tokens);
        sqlite3_bind_int64(st, 13, r->val_tokens);
        bind_real(st, 14, r->wall_s);
        bind_real(st, 15, r->tokens_per_s);
        bind_real(st, 16, r->init_val_nmse);
        bind_real(st, 17, r->final_val_nmse);
        bind_real(st, 18, r->final_train_nmse);
    }
    if (error) sqlite3_bind_text(st, 19, error, -1, SQLITE_STATIC);
    PZ_SQL(db->db, sqlite3_step(st));
    sqlite3_finalize(st);
    *run_id = sqlite3_last_insert_rowid(db->db);
    return 0;
fail:
    sqlite3_finalize(st);
    return -1;
}

static int insert_curve(pz_rundb *db, sqlite3_int64 run_id, const pz_bld_result *r, char *err) {
    sqlite3_stmt *st = NULL;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db, "INSERT INTO loss_curves VALUES (?, ?, ?, ?)", -1, &st, NULL));
    for (int i = 0; i < r->n_points; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, run_id);
        sqlite3_bind_int64(st, 2, r->curve_step[i]);
        bind_real(st, 3, r->curve_train[i]);
        bind_real(st, 4, r->curve_val[i]);
        PZ_SQL(db->db, sqlite3_step(st));
    }
    sqlite3_finalize(st);
    return 0;
fail:
    sqlite3_finalize(st);
    return -1;
}

int pz_rundb_record_bld(pz_rundb *db, const pz_block *b, const pz_rundb_bld_setup *s, const pz_bld_result *r,
                        const char *weight_file, char *err) {
    sqlite3_stmt *st = NULL;
    sqlite3_int64 run_id;
    if (pz_rundb_begin(db, err)) return -1;
    // The block row must exist (the run references it).
    if (insert_blocks(db, b, NULL, 1, err) || insert_run(db, b, s, "done", r, NULL, &run_id, err) || insert_curve(db, run_id, r, err)) goto fail;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db,
                                      "UPDATE blocks SET status = 'done', init_method = ?, n_params = ?, "
                                      "weight_file = ?, sha256 = ?, run_id = ?, "
                                      "updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE block_id = ?",
                                      -1, &st, NULL));
    sqlite3_bind_text(st, 1, r->init_method, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)r->n_params);
    if (weight_file) {
        sqlite3_bind_text(st, 3, weight_file, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, r->sha256, -1, SQLITE_STATIC);
    }
    sqlite3_bind_int64(st, 5, run_id);
    sqlite3_bind_text(st, 6, b->id, -1, SQLITE_STATIC);
    PZ_SQL(db->db, sqlite3_step(st));
    sqlite3_finalize(st);
    return pz_rundb_commit(db, err);
fail:
    sqlite3_finalize(st);
    pz_rundb_rollback(db);
    return -1;
}

int pz_rundb_record_bld_failure(pz_rundb *db, const pz_block *b, const pz_rundb_bld_setup *s, const char *message,
                                char *err) {
    sqlite3_int64 run_id;
    if (pz_rundb_begin(db, err)) return -1;
    if (insert_blocks(db, b, NULL, 1, err) || insert_run(db, b, s, "failed", NULL, message, &run_id, err)) {
        pz_rundb_rollback(db);
        return -1;
    }
    return pz_rundb_commit(db, err);
}

// ---- events -----------------------------------------------------------------------
void pz_rundb_event(pz_rundb *db, const char *stage, const char *kind, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db->db, "INSERT INTO events (stage, kind, message) VALUES (?, ?, ?)", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, stage, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, msg, -1, SQLITE_STATIC);
        sqlite3_step(st);  // autocommit: its own transaction
    }
    sqlite3_finalize(st);
}

int pz_rundb_list_done(pz_rundb *db, pz_rundb_done_block **rows, int *n, char *err) {
    sqlite3_stmt *st = NULL;
    *rows = NULL, *n = 0;
    int cap = 0, rc;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db,
                                      "SELECT block_id, weight_file, sha256, needs_training FROM blocks "
                                      "WHERE status = 'done' ORDER BY layer, block_id",
                                      -1, &st, NULL));
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            pz_rundb_done_block *r = realloc(*rows, sizeof **rows * (size_t)cap);
            if (!r) {
                pz_err(err, "out of memory");
                goto fail;
            }
            *rows = r;
        }
        pz_rundb_done_block *r = &(*rows)[(*n)++];
        col_text(st, 0, r->block_id, sizeof r->block_id);
        col_text(st, 1, r->weight_file, sizeof r->weight_file);
        col_text(st, 2, r->sha256, sizeof r->sha256);
        r->needs_training = sqlite3_column_int(st, 3);
    }
    PZ_SQL(db->db, rc);
    sqlite3_finalize(st);
    return 0;
fail:
    sqlite3_finalize(st);
    free(*rows);
    *rows = NULL, *n = 0;
    return -1;
}

// ---- merging ----------------------------------------------------------------------
int pz_rundb_attach(pz_rundb *db, const char *path, char *err) {
    sqlite3_stmt *st = NULL;
    char *uri = sqlite3_mprintf("%s", path);
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db, "ATTACH DATABASE ? AS src", -1, &st, NULL));
    sqlite3_bind_text(st, 1, uri, -1, SQLITE_STATIC);
    PZ_SQL(db->db, sqlite3_step(st));
    sqlite3_finalize(st);
    sqlite3_free(uri);
    return 0;
fail:
    sqlite3_finalize(st);
    sqlite3_free(uri);
    return -1;
}

void pz_rundb_detach(pz_rundb *db) { sqlite3_exec(db->db, "DETACH DATABASE src", NULL, NULL, NULL); }

#define BLOCK_COLS "block_id, layer, sub, attn_variant, ffn_variant, attn_kind, attn_size, ffn_kind, ffn_size, " \
                   "is_parent, needs_training"
#define RUN_COLS "block_id, status, mode, seed, seq_len, batch_windows, lr, threads, calib_tokens, calib_hash, " \
                 "steps, tokens, val_tokens, wall_s, tokens_per_s, init_val_nmse, final_val_nmse, "        \
                 "final_train_nmse, error, finished_at"

// Runs one statement with text parameters (NULL binds NULL) and an
// optional int64 parameter at index 1 when id != 0.
static int run_sql(pz_rundb *db, const char *sql, sqlite3_int64 id, const char *a, const char *b, char *err) {
    sqlite3_stmt *st = NULL;
    PZ_SQL(db->db, sqlite3_prepare_v2(db->db, sql, -1, &st, NULL));
    int k = 1;
    if (id) sqlite3_bind_int64(st, k++, id);
    if (a) sqlite3_bind_text(st, k, a, -1, SQLITE_STATIC);
    k++;
    if (b) sqlite3_bind_text(st, k, b, -1, SQLITE_STATIC);
    PZ_SQL(db->db, sqlite3_step(st));
    sqlite3_finalize(st);
    return 0;
fail:
    sqlite3_finalize(st);
    return -1;
}

int pz_rundb_copy_block(pz_rundb *db, const char *block_id, const char *weight_file, char *err) {
    if (pz_rundb_begin(db, err)) return -1;
    if (run_sql(db, "INSERT OR IGNORE INTO main.blocks (" BLOCK_COLS ") SELECT " BLOCK_COLS
                    " FROM src.blocks WHERE block_id = ?",
                0, block_id, NULL, err) ||
        run_sql(db, "INSERT INTO main.bld_runs (" RUN_COLS ") SELECT " RUN_COLS " FROM src.bld_runs "
                    "WHERE id = (SELECT run_id FROM src.blocks WHERE block_id = ?)",
                0, block_id, NULL, err))
        goto fail;
    sqlite3_int64 run = sqlite3_last_insert_rowid(db->db);
    if (run_sql(db, "INSERT INTO main.loss_curves SELECT ?, step, train_nmse, val_nmse FROM src.loss_curves "
                    "WHERE run_id = (SELECT run_id FROM src.blocks WHERE block_id = ?)",
                run, block_id, NULL, err) ||
        run_sql(db, "UPDATE main.blocks SET status = 'done', run_id = ?1, weight_file = ?3, "
                    "(init_method, n_params, sha256, updated_at) = "
                    "(SELECT init_method, n_params, sha256, updated_at FROM src.blocks WHERE block_id = ?2) "
                    "WHERE block_id = ?2",
                run, block_id, weight_file, err))
        goto fail;
    return pz_rundb_commit(db, err);
fail:
    pz_rundb_rollback(db);
    return -1;
}

int pz_rundb_copy_pending(pz_rundb *db, char *err) {
    if (pz_rundb_begin(db, err)) return -1;
    if (run_sql(db, "INSERT OR IGNORE INTO main.blocks (" BLOCK_COLS ") SELECT " BLOCK_COLS
                    " FROM src.blocks WHERE status = 'pending'",
                0, NULL, NULL, err)) {
        pz_rundb_rollback(db);
        return -1;
    }
    int n = sqlite3_changes(db->db);
    return pz_rundb_commit(db, err) ? -1 : n;
}

int pz_rundb_copy_parent_space(pz_rundb *db, char *err) {
    if (pz_rundb_begin(db, err)) return -1;
    if (run_sql(db, "INSERT INTO main.models SELECT * FROM src.models WHERE role = 'parent'", 0, NULL, NULL, err) ||
        run_sql(db, "INSERT INTO main.layers SELECT * FROM src.layers WHERE model_id IN "
                    "(SELECT id FROM src.models WHERE role = 'parent')", 0, NULL, NULL, err) ||
        run_sql(db, "INSERT INTO main.search_space SELECT * FROM src.search_space", 0, NULL, NULL, err)) {
        pz_rundb_rollback(db);
        return -1;
    }
    return pz_rundb_commit(db, err);
}
