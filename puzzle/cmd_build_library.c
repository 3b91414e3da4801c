// cmd_build_library.c — `puzzle build-library PARENT --db RUN.db --data FILE`:
// the block library of docs/ARCHITECTURE.md "The pipeline", step 1, as a job that can
// be killed at any moment and rerun to finish, and split over machines.
//
// The job, in order:
//   1. Open (or create) RUN.db; record the parent (identity: sha256 of its
//      files) and the search space, or check that they match what the
//      database already holds — a database belongs to one parent and one
//      space. Without --space a database's stored space is used.
//   2. Lock the database's folders (pz_rundb_lock) and remove
//      temporary files a killed run left in RUN.blocks and RUN.cache.
//   3. Enumerate the blocks (pz_space_blocks), keep this shard's, and skip
//      those already done: row 'done' and, for trained blocks, the file
//      present with the sha256 of the row. If none remain, stop here
//      (nothing is loaded, so a finished rerun is quick).
//   4. Tokenize the calibration text (the first --tokens tokens, cut to
//      whole windows of --seq-len) and capture parent activations into
//      RUN.cache for the layers still to do, reusing valid captures (same
//      tokens, same parent architecture, same window length). The predicted
//      disk use is printed first, and free space checked.
//   5. Train each remaining block (pz_bld_train): the weights go to
//      RUN.blocks/ID.safetensors (temporary name, then rename), then the row
//      and its loss curve are written in one transaction. A kill between
//      the rename and the commit leaves a file without a row: the rerun
//      trains that block again (same seed, same result) over it.
// Blocks that need no training (the parent's own variant of a layer, and
// noop) are evaluated and recorded without a file: see rundb.h.
// SIGINT / SIGTERM stop the block in flight without saving it; the exit is
// non-zero and the message says that a rerun resumes. A second signal
// kills at once (the state on disk is consistent either way).
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "bld.h"
#include "capture.h"
#include "cli.h"
#include "common.h"
#include "model.h"
#include "rundb.h"
#include "space.h"
#include "tokenizer.h"
#include "weights.h"

#define CMD "build-library"

void pz_usage_build_library(FILE *out) {
    fprintf(out,
            "usage: puzzle build-library PARENT --db RUN.db --data FILE [options]\n\n"
            "Builds the block library: every attention and FFN variant of the search space for every\n"
            "layer, initialized from PARENT and trained by blockwise local distillation on the parent's\n"
            "activations over the calibration text. Rows go to the run database RUN.db, weights to\n"
            "RUN.blocks/, activation captures to RUN.cache/ (safe to delete afterwards).\n"
            "Interrupt or kill it at any time: rerunning the same command resumes.\n\n"
            "  --db RUN.db            run database (created when missing; required)\n"
            "  --data FILE            calibration text, UTF-8 (required)\n"
            "  --space FILE           search space JSON (default: the database's, else the default\n"
            "                         space for PARENT)\n"
            "  --tokens N             calibration tokens, from the start of FILE (default 32768)\n"
            "  --seq-len N            tokens per window (default 256)\n"
            "  --mode decoupled|coupled  train attention and FFN variants separately (default) or\n"
            "                         every (attention, FFN) pair of a layer together\n"
            "  --steps N              optimizer steps per block (default: one pass over the training\n"
            "                         windows)\n"
            "  --batch N              windows per step (default 4)\n"
            "  --lr X                 peak learning rate (default 3e-3)\n"
            "  --bld-loss token|global  training loss: normalized MSE per token (default; each token\n"
            "                         weighs the same) or over the whole batch (before issue 11:\n"
            "                         the attention-sink tokens dominate it). Blocks whose training\n"
            "                         ends worse than their initialization keep its weights\n"
            "  --seed S               batch order seed (default 1)\n"
            "  --shard I/N            build only blocks I, I+N, I+2N, ... of the enumeration\n"
            "                         (0 <= I < N); merge the databases with `puzzle merge-db`\n"
            "  --threads T            CPU threads (default: all cores)\n");
}

typedef struct {
    const char *parent, *db, *data, *space;
    long tokens, seq_len, steps, batch, threads, shard_i, shard_n;
    double lr;
    uint64_t seed;
    int coupled;
    pz_bld_loss loss;
} opts;


static int parse_args(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->tokens = 32768, o->seq_len = 256, o->batch = 4, o->lr = 3e-3, o->seed = 1, o->shard_n = 1;
    o->loss = PZ_BLD_LOSS_TOKEN;
    long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VALUE() if (!(v = pz_arg_value(CMD, argc, argv, &i))) return -1
#define INT(lo, hi, dst) do { VALUE(); if (pz_arg_int(CMD, a, v, lo, hi, dst)) return -1; } while (0)
        if (!strcmp(a, "--db")) { VALUE(); o->db = v; }
        else if (!strcmp(a, "--data")) { VALUE(); o->data = v; }
        else if (!strcmp(a, "--space")) { VALUE(); o->space = v; }
        else if (!strcmp(a, "--tokens")) INT(2, 1L << 40, &o->tokens);
        else if (!strcmp(a, "--seq-len")) INT(2, 1 << 20, &o->seq_len);
        else if (!strcmp(a, "--steps")) INT(0, 1L << 40, &o->steps);
        else if (!strcmp(a, "--batch")) INT(1, 1 << 20, &o->batch);
        else if (!strcmp(a, "--seed")) INT(0, INT64_MAX, &seed);
        else if (!strcmp(a, "--threads")) INT(0, 1024, &o->threads);
        else if (!strcmp(a, "--lr")) {
            VALUE();
            if (pz_arg_float(CMD, a, v, 1e-9, 10, &o->lr)) return -1;
        } else if (!strcmp(a, "--bld-loss")) {
            VALUE();
            if (pz_bld_loss_parse(v, &o->loss)) {
                fprintf(stderr, "puzzle " CMD ": --bld-loss wants token or global, got '%s'\n", v);
                return -1;
            }
        } else if (!strcmp(a, "--mode")) {
            VALUE();
            if (strcmp(v, "decoupled") && strcmp(v, "coupled")) {
                fprintf(stderr, "puzzle " CMD ": --mode wants decoupled or coupled, got '%s'\n", v);
                return -1;
            }
            o->coupled = !strcmp(v, "coupled");
        } else if (!strcmp(a, "--shard")) {
            VALUE();
            if (pz_parse_shard(v, &o->shard_i, &o->shard_n)) {
                fprintf(stderr, "puzzle " CMD ": --shard wants I/N with 0 <= I < N, got '%s'\n", v);
                return -1;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "puzzle " CMD ": unknown option '%s'\n", a);
            return -1;
        } else if (!o->parent) o->parent = a;
        else {
            fprintf(stderr, "puzzle " CMD ": one PARENT only ('%s' is extra)\n", a);
            return -1;
        }
#undef INT
#undef VALUE
    }
    o->seed = (uint64_t)seed;
    const char *missing = !o->parent ? "PARENT is missing" : !o->db ? "--db RUN.db is missing"
                          : !o->data ? "--data FILE is missing" : NULL;
    if (missing) {
        fprintf(stderr, "puzzle " CMD ": %s (see puzzle " CMD " --help)\n", missing);
        return -1;
    }
    if (o->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = n > 0 ? n : 1;
    }
    return 0;
}

// ---- database identity: parent and space -------------------------------------------
// Records the parent in a new database, or checks it is the one recorded.
static int check_parent(pz_rundb *db, const char *path, const pz_config *c, char *err) {
    pz_rundb_model have, want;
    int found = pz_rundb_get_parent(db, &have, err);
    if (found < 0 || pz_rundb_model_identity(path, c, &want, err)) return -1;
    if (!found) return pz_rundb_set_parent(db, &want, c, err);
    if (strcmp(have.identity, want.identity) || strcmp(have.config_hash, want.config_hash))
        return pz_err(err, "%s belongs to parent %s (%.19s...), and %s is a different model (%.19s...); use another --db",
                      pz_rundb_path(db), have.path, have.identity, path, want.identity);
    // A database from before the parent's configuration was stored: store it now.
    if (!have.has_config) return pz_rundb_set_parent_config(db, c, err);
    return 0;
}

// Fills s from --space, else the database's space, else the default; stores
// the canonical JSON in a new database, refuses a different one.
static int resolve_space(pz_rundb *db, const char *space_path, const pz_config *c, pz_space *s, char *err) {
    char *stored = NULL, *json = NULL;
    memset(s, 0, sizeof *s);  // pz_space_free is safe on it from here on
    int rc = -1, found = pz_rundb_get_space(db, &stored, err);
    if (found < 0) return -1;
    if (space_path) {
        if (pz_space_read_file(s, space_path, c, err)) goto out;
    } else if (found) {
        char what[1100];
        snprintf(what, sizeof what, "%s (search_space)", pz_rundb_path(db));
        if (pz_space_from_json(s, stored, strlen(stored), what, c, err)) goto out;
    } else if (pz_space_default(s, c, 0, err)) goto out;
    if (!(json = pz_space_to_json(s))) {
        pz_err(err, "out of memory");
        goto out;
    }
    if (!found) rc = pz_rundb_set_space(db, json, err);
    else if (strcmp(json, stored)) pz_err(err, "%s was built with another search space than %s; rerun without --space to "
                                          "use the database's, or use another --db", pz_rundb_path(db), space_path);
    else rc = 0;
out:
    if (rc) pz_space_free(s);
    free(stored);
    free(json);
    return rc;
}

// ---- files next to the database ------------------------------------------------------
// Removes temporary files of killed writers: "*.tmp.XXXXXX" (safetensors)
// and "*.tmp" (captures). Returns how many.
static int remove_strays(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (!strstr(e->d_name, ".tmp.") && !(l > 4 && strcmp(e->d_name + l - 4, ".tmp") == 0)) continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        n += unlink(p) == 0;
    }
    closedir(d);
    return n;
}

// ---- what is left to do --------------------------------------------------------------
// 1 when the block's row is done and, for a trained block, its file holds
// the recorded sha256.
static int block_done(pz_rundb *db, const pz_block *b, char *err) {
    pz_rundb_block_state st;
    if (pz_rundb_get_block_state(db, b->id, &st, err)) return -1;
    if (!st.done) return 0;
    if (!b->needs_training) return 1;
    if (!st.weight_file[0] || !st.sha256[0]) return 0;
    char path[2048], hex[65], e2[PZ_ERRLEN];
    pz_rundb_resolve(db, st.weight_file, path, sizeof path);
    if (!pz_file_exists(path) || pz_sha256_file(path, hex, e2)) return 0;
    return strcmp(hex, st.sha256) == 0;
}

// ---- calibration tokens and capture ------------------------------------------------------
static int load_tokens(const opts *o, int32_t **ids, long *n, char *err) {
    size_t len;
    char *text = pz_read_file(o->data, (size_t)1 << 34, &len, err);
    if (!text) return -1;
    pz_tokenizer *tok = pz_tokenizer_load(o->parent, err);
    int got = tok ? pz_tokenizer_encode(tok, text, len, 0, ids, err) : -1;
    pz_tokenizer_free(tok);
    free(text);
    if (got < 0) return -1;
    long use = got < o->tokens ? got : o->tokens;
    use -= use % o->seq_len;  // whole windows
    if (use / o->seq_len < 2) {
        free(*ids);
        *ids = NULL;
        return pz_err(err, "%s gives %d tokens: BLD needs at least 2 windows of --seq-len %ld (one held out)",
                      o->data, got, o->seq_len);
    }
    *n = use;
    return 0;
}

// On a terminal: one line redrawn; in a log: a line every 15 s.
typedef struct {
    double t0, last;
} cap_clock;

static int on_capture_progress(void *user, long done, long total, double tok_s) {
    cap_clock *ck = user;
    double now = pz_now();
    int tty = isatty(2);
    if (tty || now - ck->last >= 15 || done == total) {
        double eta = done > 0 ? (now - ck->t0) * (double)(total - done) / (double)done : -1;
        fprintf(stderr, "%scapture: window %ld/%ld, %.0f tokens/s, ETA %.0f s%s", tty ? "\r" : "", done, total,
                tok_s, eta, tty ? "   " : "\n");
        ck->last = now;
    }
    return pz_stop_signal != 0;
}

static void human_bytes(double b, char *buf, size_t cap) {
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4) b /= 1000, i++;
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

// Makes sure RUN.cache holds a valid capture of every layer in need[]
// (n_layer flags), capturing the missing ones in one parent pass.
static int prepare_capture(pz_rundb *db, const pz_model *m, const int32_t *tok, long n_tok, const opts *o,
                           const char *need, char *err) {
    const pz_config *c = &m->cfg;
    const char *dir = pz_rundb_cache_dir(db);
    uint64_t th = pz_capture_tokens_hash(tok, n_tok);
    int *missing = malloc(sizeof(int) * (size_t)c->n_layer), n_missing = 0, n_need = 0;
    if (!missing) return pz_err(err, "out of memory");
    for (int l = 0; l < c->n_layer; l++) {
        if (!need[l]) continue;
        n_need++;
        char e2[PZ_ERRLEN];
        pz_capture *cap = pz_capture_open(dir, l, c, th, e2);
        int ok = cap && pz_capture_get_info(cap)->seq_len == o->seq_len;
        pz_capture_close(cap);
        if (!ok) missing[n_missing++] = l;
    }
    int rc = 0;
    if (n_missing == 0) {
        fprintf(stderr, "capture: reusing %d layer captures in %s\n", n_need, dir);
    } else {
        pz_capture_params cp = pz_capture_default_params();
        cp.seq_len = (int)o->seq_len, cp.n_threads = (int)o->threads, cp.layers = missing, cp.n_layers = n_missing;
        cap_clock ck = {pz_now(), pz_now()};
        cp.progress = on_capture_progress, cp.user = &ck;
        size_t bytes = pz_capture_disk_bytes(c, n_tok, cp.seq_len, cp.dtype, n_missing);
        char hb[32], hf[32];
        human_bytes((double)bytes, hb, sizeof hb);
        fprintf(stderr, "capture: %d layers x %ld tokens -> %s in %s (%d reused)\n", n_missing, n_tok, hb, dir,
                n_need - n_missing);
        struct statvfs vf;
        if (statvfs(dir, &vf) == 0 && (double)vf.f_bavail * vf.f_frsize < (double)bytes * 1.02) {
            human_bytes((double)vf.f_bavail * vf.f_frsize, hf, sizeof hf);
            rc = pz_err(err, "the capture needs %s but %s has %s free; lower --tokens", hb, dir, hf);
        } else {
            double t0 = pz_now();
            rc = pz_capture_run(m, tok, n_tok, dir, &cp, err);
            if (isatty(2)) fprintf(stderr, "\n");
            if (rc == 0) {
                fprintf(stderr, "capture: done in %.1f s\n", pz_now() - t0);
                pz_rundb_event(db, "build-library", "capture", "%d layers, %ld tokens, %s, %.1f s", n_missing,
                               n_tok, hb, pz_now() - t0);
            }
        }
    }
    free(missing);
    return rc;
}

// ---- training ------------------------------------------------------------------------------
typedef struct {
    int index, total;          // block being trained (1-based) of the blocks to do
    const char *block_id;
    double t0;                 // start of training
    long rows;                 // tokens per step
    long steps_per_block;      // learned from the first callback when --steps is 0
    long tokens_done;          // training tokens of finished blocks
    long cur_tokens;           // of the block in flight
    int trainable_left;        // trainable blocks not yet started
    double last_print;
} job;

static void fmt_eta(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e8) snprintf(buf, cap, "?");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, cap, "%.0fs", s);
}

// Rate over the job so far, and the ETA of what is left (training tokens).
static void job_rate(const job *j, double *rate, double *eta) {
    double el = pz_now() - j->t0, done = (double)(j->tokens_done + j->cur_tokens);
    *rate = el > 0 ? done / el : 0;
    double left = -1;
    if (j->steps_per_block > 0)
        left = (double)j->trainable_left * (double)(j->steps_per_block * j->rows) +
               (double)(j->steps_per_block * j->rows - j->cur_tokens);
    *eta = *rate > 0 && left >= 0 ? left / *rate : -1;
}

static int on_bld_progress(void *user, const pz_bld_progress *p) {
    job *j = user;
    j->steps_per_block = p->total_steps;
    j->cur_tokens = p->step * j->rows;
    double now = pz_now();
    if (isatty(2) && now - j->last_print > 0.5) {
        double rate, eta;
        char e[32];
        job_rate(j, &rate, &eta);
        fmt_eta(eta, e, sizeof e);
        fprintf(stderr, "\r[block %d/%d] %s step %ld/%ld loss %.4f, %.0f tokens/s, ETA %s   \033[K", j->index,
                j->total, j->block_id, p->step, p->total_steps, p->loss, rate, e);
        j->last_print = now;
    }
    return pz_stop_signal != 0;
}

// Trains (or evaluates) one block and records it. Returns 0, 1 when it
// failed (recorded; the job goes on), -1 on a fatal error or interrupt.
static int run_block(pz_rundb *db, const pz_model *m, const pz_block *b, const pz_capture *cap,
                     const pz_bld_params *bp, const pz_rundb_bld_setup *setup, job *j, char *err) {
    char rel[1200], path[2400];
    pz_rundb_block_file(db, b->id, rel, sizeof rel, path, sizeof path);
    pz_bld_result r;
    char e2[PZ_ERRLEN];
    j->cur_tokens = 0;
    int rc = pz_bld_train(m, b, cap, bp, b->needs_training ? path : NULL, NULL, &r, e2);
    if (rc) {
        if (pz_stop_signal) return -1;
        pz_rundb_record_bld_failure(db, b, setup, e2, err);
        pz_rundb_event(db, "build-library", "error", "%s: %s", b->id, e2);
        fprintf(stderr, "%s[block %d/%d] %s failed: %s\n", isatty(2) ? "\r\033[K" : "", j->index, j->total, b->id, e2);
        return 1;
    }
    if (pz_rundb_record_bld(db, b, setup, &r, b->needs_training ? rel : NULL, err)) {
        pz_bld_result_free(&r);
        return -1;
    }
    j->tokens_done += r.tokens;
    j->cur_tokens = 0;
    double rate, eta;
    char e[32];
    job_rate(j, &rate, &eta);
    fmt_eta(eta, e, sizeof e);
    fprintf(stderr, "%s[block %d/%d] %-28s %-22s %s NMSE %.4f -> %.4f%s, %ld steps, %.1f s | %.0f tokens/s, "
            "ETA %s\n", isatty(2) ? "\r\033[K" : "", j->index, j->total, b->id, r.init_method,
            pz_bld_loss_name(r.loss), r.init_val_nmse, r.final_val_nmse, r.kept_init ? " (init kept)" : "",
            r.steps, r.wall_s, rate, e);
    pz_bld_result_free(&r);
    return 0;
}

// Trains the blocks flagged in todo[], layer by layer (one capture mapped
// at a time). Returns the number of failed blocks, or -1.
static int train_all(pz_rundb *db, const pz_model *m, const pz_block *blocks, int n, const char *todo, int n_todo,
                     const opts *o, uint64_t calib_hash, long calib_tokens, char *err) {
    pz_bld_params bp = pz_bld_default_params();
    bp.steps = o->steps, bp.batch_windows = (int)o->batch, bp.lr = (float)o->lr, bp.seed = o->seed;
    bp.n_threads = (int)o->threads, bp.init.n_threads = (int)o->threads, bp.loss = o->loss;
    pz_rundb_bld_setup setup = {o->coupled ? "coupled" : "decoupled", o->seed, (int)o->seq_len, (int)o->batch,
                                (int)o->threads, o->lr, calib_tokens, calib_hash, pz_bld_loss_name(o->loss)};
    job j = {.total = n_todo, .t0 = pz_now(), .rows = o->batch * o->seq_len, .steps_per_block = o->steps};
    bp.progress = on_bld_progress, bp.user = &j;
    for (int i = 0; i < n; i++) j.trainable_left += todo[i] && blocks[i].needs_training;
    pz_capture *cap = NULL;
    int failed = 0, rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (!todo[i]) continue;
        const pz_block *b = &blocks[i];
        if (!cap || pz_capture_get_info(cap)->layer != b->layer) {
            pz_capture_close(cap);
            if (!(cap = pz_capture_open(pz_rundb_cache_dir(db), b->layer, &m->cfg, calib_hash, err))) rc = -1;
        }
        j.index++, j.block_id = b->id;
        j.trainable_left -= b->needs_training;
        if (rc == 0 && pz_stop_signal) rc = -1;
        if (rc == 0) {
            int r = run_block(db, m, b, cap, &bp, &setup, &j, err);
            if (r < 0) rc = -1;
            failed += r > 0;
        }
    }
    pz_capture_close(cap);
    return rc ? -1 : failed;
}

// ---- the command --------------------------------------------------------------------------
static int interrupted_exit(pz_rundb *db, int done, int total) {
    if (isatty(2)) fprintf(stderr, "\n");
    pz_rundb_event(db, "build-library", "interrupted", "signal %d; %d of %d blocks done", (int)pz_stop_signal, done,
                   total);
    fprintf(stderr, "puzzle " CMD ": interrupted (signal %d) with %d of %d blocks of this shard done; rerun the same "
                    "command to resume\n", (int)pz_stop_signal, done, total);
    return PZ_EXIT_FAIL;
}

int pz_cmd_build_library(int argc, char **argv) {
    opts o;
    if (parse_args(argc, argv, &o)) return PZ_EXIT_USAGE;
    char err[PZ_ERRLEN] = "";
    int rc = PZ_EXIT_FAIL, have_space = 0, n_blocks = 0;
    pz_rundb *db = NULL;
    pz_model *m = NULL;
    pz_block *blocks = NULL;
    char *todo = NULL, *need = NULL;
    int32_t *tok = NULL;
    pz_space space;
    pz_config cfg;
    double t_start = pz_now();
    pz_install_stop_signals();

    if (access(o.data, R_OK) != 0) {
        pz_err(err, "%s: %s", o.data, strerror(errno));
        goto fail;
    }
    if (pz_model_load_config(o.parent, &cfg, err)) goto fail;
    if (!(db = pz_rundb_open(o.db, 1, err))) goto fail;
    if (check_parent(db, o.parent, &cfg, err)) goto fail;
    if (resolve_space(db, o.space, &cfg, &space, err)) goto fail;
    have_space = 1;
    if (pz_rundb_lock(db, err)) goto fail;
    int strays = remove_strays(pz_rundb_blocks_dir(db)) + remove_strays(pz_rundb_cache_dir(db));
    if (strays) {
        fprintf(stderr, "removed %d temporary file%s left by an interrupted run\n", strays, strays > 1 ? "s" : "");
        pz_rundb_event(db, "build-library", "cleanup", "removed %d temporary files", strays);
    }

    if (pz_space_blocks(&space, &cfg, o.coupled, &blocks, &n_blocks, err)) goto fail;
    todo = calloc((size_t)n_blocks + 1, 1);
    need = calloc((size_t)cfg.n_layer, 1);
    if (!todo || !need) {
        pz_err(err, "out of memory");
        goto fail;
    }
    int n_shard = 0, n_todo = 0, n_train = 0;
    for (int i = 0; i < n_blocks; i++) {
        if (!pz_block_in_shard(i, (int)o.shard_i, (int)o.shard_n)) continue;
        todo[i] = 1, n_shard++;
    }
    if (pz_rundb_add_blocks(db, blocks, todo, n_blocks, err)) goto fail;
    for (int i = 0; i < n_blocks; i++) {
        if (!todo[i]) continue;
        int d = block_done(db, &blocks[i], err);
        if (d < 0) goto fail;
        todo[i] = !d;
        n_todo += !d, n_train += !d && blocks[i].needs_training;
        if (!d) need[blocks[i].layer] = 1;
    }
    // Tokens before the summary, so that bad data is the only line printed.
    long n_tok = 0;
    if (n_todo > 0 && load_tokens(&o, &tok, &n_tok, err)) goto fail;
    fprintf(stderr, "%s: %d blocks (%s), shard %ld/%ld has %d: %d done, %d to do (%d to train)\n", o.db, n_blocks,
            o.coupled ? "coupled" : "decoupled", o.shard_i, o.shard_n, n_shard, n_shard - n_todo, n_todo, n_train);
    if (n_todo == 0) {
        fprintf(stderr, "nothing to do\n");
        rc = PZ_EXIT_OK;
        goto out;
    }
    if (!(m = pz_model_load(o.parent, PZ_DT_F32, err))) goto fail;
    if (prepare_capture(db, m, tok, n_tok, &o, need, err)) goto stopped_or_fail;
    pz_rundb_event(db, "build-library", "start", "shard %ld/%ld: %d blocks to do, %ld calibration tokens, %ld threads",
                   o.shard_i, o.shard_n, n_todo, n_tok, o.threads);
    int failed = train_all(db, m, blocks, n_blocks, todo, n_todo, &o, pz_capture_tokens_hash(tok, n_tok), n_tok, err);
    if (failed < 0) goto stopped_or_fail;
    double wall = pz_now() - t_start;
    pz_rundb_event(db, "build-library", "finish", "%d blocks in %.1f s, %d failed", n_todo - failed, wall, failed);
    if (failed) {
        pz_err(err, "%d of %d blocks failed (see the events table); rerun to retry them", failed, n_todo);
        goto fail;
    }
    fprintf(stderr, "done: %d blocks in %.1f s\n", n_todo, wall);
    rc = PZ_EXIT_OK;
    goto out;

stopped_or_fail:
    if (pz_stop_signal) {
        int left = 0;
        for (int i = 0; i < n_blocks; i++)
            if (todo[i]) {
                int d = block_done(db, &blocks[i], err);
                left += d == 0;
            }
        rc = interrupted_exit(db, n_shard - left, n_shard);
        goto out;
    }
fail:
    if (isatty(2)) fprintf(stderr, "\n");
    fprintf(stderr, "puzzle " CMD ": %s\n", err);
    rc = PZ_EXIT_FAIL;
out:
    if (have_space) pz_space_free(&space);
    free(blocks);
    free(todo);
    free(need);
    free(tok);
    pz_model_free(m);
    pz_rundb_close(db);
    return rc;
}
