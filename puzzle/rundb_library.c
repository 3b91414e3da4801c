// rundb_library.c — the block library's rows (see rundb.h): the parent
// and children models with their whole configurations, the search space,
// the blocks and their BLD runs and loss curves.
#include "rundb_impl.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "capture.h"
#include "common.h"
#include "model.h"
#include "weights.h"

// ---- models ---------------------------------------------------------------------
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
            rundb_sha256_hex(list, (size_t)n * 65, hex);
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

int pz_rundb_get_parent(pz_rundb *db, pz_rundb_model *out, char *err) {
    rundb_stmt q;
    memset(out, 0, sizeof *out);
    if (rundb_prepare(db, &q, err, "SELECT path, format, identity, config_hash, config_json IS NOT NULL "
                                   "FROM models WHERE role = 'parent'", ""))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1) {
        rundb_copy(&q, 0, out->path, sizeof out->path);
        rundb_copy(&q, 1, out->format, sizeof out->format);
        rundb_copy(&q, 2, out->identity, sizeof out->identity);
        rundb_copy(&q, 3, out->config_hash, sizeof out->config_hash);
        out->has_config = rundb_int(&q, 4);
    }
    rundb_done(&q);
    return rc;
}

// One models row (inside the caller's transaction); *id gets its rowid.
// solution_id <= 0: none.
static int insert_model(pz_rundb *db, const char *role, const pz_rundb_model *m, const pz_config *c,
                        long solution_id, int64_t *id, char *err) {
    char *json = pz_config_to_hf_json(c);
    if (!json) return pz_err(err, "out of memory");
    int rc = rundb_exec(db, err,
                        "INSERT INTO models (role, path, format, identity, config_hash, n_layer, hidden, n_head, "
                        "head_dim, vocab, n_params, solution_id, config_json) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        "tttttiiiiiLkt", role, m->path, m->format, m->identity, m->config_hash, c->n_layer,
                        c->hidden, c->n_head, c->head_dim, c->vocab, (int64_t)pz_config_n_params(c), solution_id,
                        json);
    free(json);
    if (rc < 0) return -1;
    *id = rundb_last_id(db);
    return 0;
}

int pz_rundb_add_child(pz_rundb *db, const pz_rundb_model *m, const pz_config *c, long solution_id, char *err) {
    int64_t id;
    if (rundb_begin(db, err)) return -1;
    int rc = rundb_exec(db, err, "DELETE FROM models WHERE role = 'child' AND path = ?", "t", m->path) < 0 ||
             insert_model(db, "child", m, c, solution_id, &id, err);
    return rundb_end(db, rc ? -1 : 0, err);
}

int pz_rundb_set_parent(pz_rundb *db, const pz_rundb_model *m, const pz_config *c, char *err) {
    int64_t id;
    rundb_stmt q = {0};
    if (rundb_begin(db, err)) return -1;
    int rc = insert_model(db, "parent", m, c, 0, &id, err) ||
             rundb_prepare(db, &q, err, "INSERT INTO layers VALUES (?, ?, ?, ?, ?, ?)", "");
    for (int l = 0; !rc && l < c->n_layer; l++) {
        const pz_layer_spec *s = &c->layers[l];
        rc = rundb_rebind(&q, "Lititi", id, l, pz_attn_kind_name(s->attn), s->n_kv, pz_ffn_kind_name(s->ffn),
                          s->n_ff) ||
             rundb_step(&q) < 0;
    }
    rundb_done(&q);
    return rundb_end(db, rc ? -1 : 0, err);
}

// models.config_hash as c gives it (16 hex digits).
static void config_hash(const pz_config *c, char hex[17]) {
    snprintf(hex, 17, "%016" PRIx64, pz_capture_config_hash(c));
}

int pz_rundb_set_parent_config(pz_rundb *db, const pz_config *c, char *err) {
    pz_rundb_model p;
    char h[17];
    int found = pz_rundb_get_parent(db, &p, err);
    if (found <= 0) return found < 0 ? -1 : pz_err(err, "%s has no parent model", db->path);
    config_hash(c, h);
    if (strcmp(h, p.config_hash))
        return pz_err(err, "the configuration given is not the parent's of %s (config hash %s, the row's %s)",
                      db->path, h, p.config_hash);
    char *json = pz_config_to_hf_json(c);
    if (!json) return pz_err(err, "out of memory");
    if (rundb_begin(db, err)) {
        free(json);
        return -1;
    }
    int rc = rundb_exec(db, err, "UPDATE models SET config_json = ? WHERE role = 'parent'", "t", json) < 0;
    free(json);
    return rundb_end(db, rc ? -1 : 0, err);
}

int pz_rundb_parent_config(pz_rundb *db, pz_config *c, char *err) {
    rundb_stmt q;
    memset(c, 0, sizeof *c);
    if (rundb_prepare(db, &q, err, "SELECT path, config_hash, config_json FROM models WHERE role = 'parent'", ""))
        return -1;
    int rc = rundb_step(&q);
    if (rc <= 0) {
        rundb_done(&q);
        return rc < 0 ? -1
                      : pz_err(err, "%s has no parent model: build the library first (puzzle build-library)",
                               db->path);
    }
    char path[1024], want[17], have[17], what[1100];
    rundb_copy(&q, 0, path, sizeof path);
    rundb_copy(&q, 1, want, sizeof want);
    int stored = !rundb_is_null(&q, 2);
    snprintf(what, sizeof what, "%s (models.config_json)", db->path);
    rc = stored ? pz_config_from_hf_json(c, rundb_text(&q, 2), strlen(rundb_text(&q, 2)), what, err) : 0;
    rundb_done(&q);
    if (rc) return -1;
    if (!stored) {
        // A database from before schema version 5 records the parent's shape
        // but not its whole configuration. Explicit fallback: read it from the
        // parent model at its recorded path, if that is still the parent
        // (same config hash), and store it; otherwise ask for the parent.
        char e2[PZ_ERRLEN];
        if (pz_model_load_config(path, c, e2))
            return pz_err(err, "%s predates stored parent configurations and its parent %s cannot be read (%s): "
                               "record it by rerunning puzzle build-library PARENT --db %s --data TEXT",
                          db->path, path, e2, db->path);
        config_hash(c, have);
        if (strcmp(have, want))
            return pz_err(err, "%s predates stored parent configurations and %s is no longer its parent (config "
                               "hash %s, recorded %s): record it by rerunning puzzle build-library PARENT --db %s "
                               "--data TEXT",
                          db->path, path, have, want, db->path);
        return pz_rundb_set_parent_config(db, c, err);
    }
    config_hash(c, have);
    if (strcmp(have, want))
        return pz_err(err, "%s: the stored parent configuration does not match its config hash (%s, recorded %s)",
                      db->path, have, want);
    return 0;
}

// ---- search space -------------------------------------------------------------------
int pz_rundb_get_space(pz_rundb *db, char **json, char *err) {
    rundb_stmt q;
    *json = NULL;
    if (rundb_prepare(db, &q, err, "SELECT json FROM search_space WHERE id = 1", "")) return -1;
    int rc = rundb_step(&q);
    if (rc == 1 && !(*json = strdup(rundb_text(&q, 0)))) rc = pz_err(err, "out of memory");
    rundb_done(&q);
    return rc;
}

int pz_rundb_set_space(pz_rundb *db, const char *json, char *err) {
    char hex[65];
    rundb_sha256_hex(json, strlen(json), hex);
    if (rundb_begin(db, err)) return -1;
    int rc = rundb_exec(db, err, "INSERT INTO search_space (id, json, sha256) VALUES (1, ?, ?)", "tt", json, hex);
    return rundb_end(db, rc < 0 ? -1 : 0, err);
}

// ---- blocks -----------------------------------------------------------------------
// INSERT OR IGNORE of the wanted blocks as 'pending', inside the caller's transaction.
static int insert_blocks(pz_rundb *db, const pz_block *blocks, const char *want, int n, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err,
                      "INSERT OR IGNORE INTO blocks (block_id, layer, sub, attn_variant, ffn_variant, attn_kind, "
                      "attn_size, ffn_kind, ffn_size, is_parent, needs_training) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      ""))
        return -1;
    int rc = 0;
    for (int i = 0; !rc && i < n; i++) {
        if (want && !want[i]) continue;
        const pz_block *b = &blocks[i];
        int has_a = b->sub != PZ_SUB_FFN, has_f = b->sub != PZ_SUB_ATTN;
        char av[32], fv[32];
        pz_variant_name(PZ_SUB_ATTN, &b->attn, av, sizeof av);
        pz_variant_name(PZ_SUB_FFN, &b->ffn, fv, sizeof fv);
        // A half the block does not set: NULL variant, kind and size.
        rc = rundb_rebind(&q, "tittttptpii", b->id, b->layer, rundb_sub_name(b->sub), has_a ? av : NULL,
                          has_f ? fv : NULL, has_a ? pz_attn_kind_name(b->attn.attn) : NULL,
                          has_a ? &b->attn.size : NULL, has_f ? pz_ffn_kind_name(b->ffn.ffn) : NULL,
                          has_f ? &b->ffn.size : NULL, b->is_parent, b->needs_training) ||
             rundb_step(&q) < 0;
    }
    rundb_done(&q);
    return rc ? -1 : 0;
}

int pz_rundb_add_blocks(pz_rundb *db, const pz_block *blocks, const char *want, int n, char *err) {
    if (rundb_begin(db, err)) return -1;
    return rundb_end(db, insert_blocks(db, blocks, want, n, err), err);
}

int pz_rundb_get_block_state(pz_rundb *db, const char *block_id, pz_rundb_block_state *out, char *err) {
    rundb_stmt q;
    memset(out, 0, sizeof *out);
    if (rundb_prepare(db, &q, err, "SELECT status, weight_file, sha256 FROM blocks WHERE block_id = ?", "t",
                      block_id))
        return -1;
    int rc = rundb_step(&q);
    if (rc == 1) {
        out->found = 1;
        out->done = strcmp(rundb_text(&q, 0), "done") == 0;
        rundb_copy(&q, 1, out->weight_file, sizeof out->weight_file);
        rundb_copy(&q, 2, out->sha256, sizeof out->sha256);
    }
    rundb_done(&q);
    return rc < 0 ? -1 : 0;
}

// ---- BLD runs ---------------------------------------------------------------------
// Inserts a bld_runs row (status, and r's numbers when r != NULL);
// *run_id receives its id.
static int insert_run(pz_rundb *db, const pz_block *b, const pz_rundb_bld_setup *s, const char *status,
                      const pz_bld_result *r, const char *error, int64_t *run_id, char *err) {
    char hash[17];
    snprintf(hash, sizeof hash, "%016" PRIx64, s->calib_hash);
    const char *sql = "INSERT INTO bld_runs (block_id, status, mode, seed, seq_len, batch_windows, lr, threads, "
                      "calib_tokens, calib_hash, steps, tokens, val_tokens, wall_s, tokens_per_s, init_val_nmse, "
                      "final_val_nmse, final_train_nmse, error, loss, kept_init, init_val_global, "
                      "final_val_global) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    int rc;
    if (r)
        rc = rundb_exec(db, err, sql, "tttLiidiltllldddddttidd", b->id, status, s->mode, (int64_t)s->seed,
                        s->seq_len, s->batch_windows, s->lr, s->threads, s->calib_tokens, hash, r->steps,
                        r->tokens, r->val_tokens, r->wall_s, r->tokens_per_s, r->init_val_nmse,
                        r->final_val_nmse, r->final_train_nmse, error, pz_bld_loss_name(r->loss), r->kept_init,
                        r->init_val_global, r->final_val_global);
    else
        rc = rundb_exec(db, err, sql, "tttLiidilt--------tt---", b->id, status, s->mode, (int64_t)s->seed,
                        s->seq_len, s->batch_windows, s->lr, s->threads, s->calib_tokens, hash, error, s->loss);
    if (rc < 0) return -1;
    *run_id = rundb_last_id(db);
    return 0;
}

static int insert_curve(pz_rundb *db, int64_t run_id, const pz_bld_result *r, char *err) {
    rundb_stmt q;
    if (rundb_prepare(db, &q, err, "INSERT INTO loss_curves VALUES (?, ?, ?, ?)", "")) return -1;
    int rc = 0;
    for (int i = 0; !rc && i < r->n_points; i++)
        rc = rundb_rebind(&q, "Lldd", run_id, r->curve_step[i], r->curve_train[i], r->curve_val[i]) ||
             rundb_step(&q) < 0;
    rundb_done(&q);
    return rc ? -1 : 0;
}

int pz_rundb_record_bld(pz_rundb *db, const pz_block *b, const pz_rundb_bld_setup *s, const pz_bld_result *r,
                        const char *weight_file, char *err) {
    int64_t run_id;
    if (rundb_begin(db, err)) return -1;
    // The block row must exist (the run references it).
    int rc = insert_blocks(db, b, NULL, 1, err) || insert_run(db, b, s, "done", r, NULL, &run_id, err) ||
             insert_curve(db, run_id, r, err) ||
             rundb_exec(db, err,
                        "UPDATE blocks SET status = 'done', init_method = ?, n_params = ?, weight_file = ?, "
                        "sha256 = ?, run_id = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') "
                        "WHERE block_id = ?",
                        "tLttLt", r->init_method, (int64_t)r->n_params, weight_file, weight_file ? r->sha256 : NULL,
                        run_id, b->id) < 0;
    return rundb_end(db, rc ? -1 : 0, err);
}

int pz_rundb_record_bld_failure(pz_rundb *db, const pz_block *b, const pz_rundb_bld_setup *s, const char *message,
                                char *err) {
    int64_t run_id;
    if (rundb_begin(db, err)) return -1;
    int rc = insert_blocks(db, b, NULL, 1, err) || insert_run(db, b, s, "failed", NULL, message, &run_id, err);
    return rundb_end(db, rc ? -1 : 0, err);
}

// ---- finished blocks ---------------------------------------------------------------------
int rundb_read_done(rundb_stmt *q, int first, pz_rundb_done_block *b, char *err) {
    memset(b, 0, sizeof *b);
    rundb_copy(q, first, b->block_id, sizeof b->block_id);
    b->layer = rundb_int(q, first + 1);
    b->sub = (pz_sub_kind)rundb_sub_parse(rundb_text(q, first + 2));
    if (rundb_variant(1, rundb_text(q, first + 3), rundb_int(q, first + 4), &b->attn) ||
        rundb_variant(0, rundb_text(q, first + 5), rundb_int(q, first + 6), &b->ffn))
        return pz_err(err, "block %s has an unknown variant kind", b->block_id);
    b->is_parent = rundb_int(q, first + 7);
    b->needs_training = rundb_int(q, first + 8);
    rundb_copy(q, first + 9, b->weight_file, sizeof b->weight_file);
    rundb_copy(q, first + 10, b->sha256, sizeof b->sha256);
    return 0;
}

int pz_rundb_list_done(pz_rundb *db, pz_rundb_done_block **rows, int *n, char *err) {
    rundb_stmt q;
    int cap = 0, rc;
    *rows = NULL, *n = 0;
    if (rundb_prepare(db, &q, err,
                      "SELECT " RUNDB_DONE_COLS " FROM blocks b WHERE b.status = 'done' "
                      "ORDER BY b.layer, b.block_id",
                      ""))
        return -1;
    while ((rc = rundb_step(&q)) == 1) {
        if (rundb_grow((void **)rows, *n, &cap, sizeof **rows, err) || rundb_read_done(&q, 0, &(*rows)[*n], err)) {
            rc = -1;
            break;
        }
        (*n)++;
    }
    return rundb_list_done(&q, rc, (void **)rows, n);
}
