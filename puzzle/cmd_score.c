// cmd_score.c — `puzzle score --db RUN.db --data FILE`: replace-1-block
// scores (docs/ARCHITECTURE.md "The pipeline", step 2) of every finished block of a
// run's library, as a job that can be killed at any moment and rerun to
// finish, and split over machines.
//
// The job, in order:
//   1. Open RUN.db (it must hold a parent: `puzzle build-library` made it).
//   2. Tokenize the held-out text: the first --tokens tokens, cut to whole
//      windows of --seq-len. Their hash (data_hash) and the window length
//      key the scores: a block already scored on the same windows is
//      skipped, so a rerun resumes and a finished rerun does nothing (it
//      loads no model).
//   3. The blocks: every row with status 'done' (trained, parent copies and
//      noop alike), in (layer, block_id) order; --shard I/N keeps those at
//      index I, I+N, ... of that list (so shards must run on the same
//      library; merge their databases with `puzzle merge-db`).
//   4. Load the parent (checked against the database's identity), run it
//      once over the windows (scoring/score.h: residual cache per layer and
//      the full parent log-probs), then score each block: trained blocks
//      from their file (sha256 checked against the row) and noop blocks as
//      empty halves; parent copies need no pass: they take the parent's own
//      metrics (KL 0, top-1 1, LM-loss change 0, exactly; pz_scorer_base).
//   5. Each score is one row of `scores`, written in its own transaction, so
//      a kill loses at most the block in flight. The parent pass also
//      measures each layer's block influence (ShortGPT; score.h), stored in
//      `layer_influence` for `puzzle search --method shortgpt`; a database
//      scored before it existed gets it from a rerun (parent pass only).
// SIGINT / SIGTERM stop after the block in flight; a second signal kills.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "model.h"
#include "rundb.h"
#include "score.h"
#include "search_ctx.h"
#include "capture.h"
#include "tokenizer.h"
#include "weights.h"

#define CMD "score"

void pz_usage_score(FILE *out) {
    fprintf(out,
            "usage: puzzle score --db RUN.db --data FILE [options]\n\n"
            "Replace-1-block scores of every finished block of RUN.db's library: the parent with only\n"
            "that block swapped in, on held-out text, against the parent itself. Stores per block\n"
            "KL(parent || child) of the next-token distributions, the LM-loss change (child - parent\n"
            "NLL, nats/token) and top-1 agreement in the `scores` table (view `block_scores`).\n"
            "Interrupt or kill it at any time: rerunning the same command resumes.\n\n"
            "  --db RUN.db            run database made by `puzzle build-library` (required)\n"
            "  --data FILE            held-out text, UTF-8 (required)\n"
            "  --parent MODEL         the parent model (default: the path recorded in RUN.db)\n"
            "  --tokens N             scoring tokens, from the start of FILE (default 2048)\n"
            "  --seq-len N            tokens per window (default 256)\n"
            "  --metric kl|loss|top1  the metric of the final best/worst summary (default kl;\n"
            "                         all three are always stored)\n"
            "  --prec f32|bf16        matrix-product type of the parent and child forwards (default\n"
            "                         f32; bf16 is faster where the CPU has bf16 products, ~1 %% noise\n"
            "                         on KL). Scores are keyed by block, data and --seq-len only:\n"
            "                         rescoring at another precision needs another database\n"
            "  --cache-stride K       keep the parent's residual stream at every K-th layer only\n"
            "                         (default 1: all; memory tokens x hidden x 4 B per kept layer)\n"
            "  --shard I/N            score only blocks I, I+N, ... of the finished blocks\n"
            "  --threads T            CPU threads (default: all cores)\n");
}

typedef struct {
    const char *db, *data, *parent, *metric;
    long tokens, seq_len, threads, shard_i, shard_n, stride;
    pz_dt prec;
} opts;


static int parse_args(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->tokens = 2048, o->seq_len = 256, o->shard_n = 1, o->stride = 1, o->metric = "kl";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VALUE() if (!(v = pz_arg_value(CMD, argc, argv, &i))) return -1
#define INT(lo, hi, dst) do { VALUE(); if (pz_arg_int(CMD, a, v, lo, hi, dst)) return -1; } while (0)
        if (!strcmp(a, "--db")) { VALUE(); o->db = v; }
        else if (!strcmp(a, "--data")) { VALUE(); o->data = v; }
        else if (!strcmp(a, "--parent")) { VALUE(); o->parent = v; }
        else if (!strcmp(a, "--tokens")) INT(2, 1L << 40, &o->tokens);
        else if (!strcmp(a, "--seq-len")) INT(2, 1 << 20, &o->seq_len);
        else if (!strcmp(a, "--threads")) INT(0, 1024, &o->threads);
        else if (!strcmp(a, "--cache-stride")) INT(1, 1 << 20, &o->stride);
        else if (!strcmp(a, "--prec")) {
            VALUE();
            if (pz_arg_wtype(CMD, v, &o->prec)) return -1;
            if (o->prec == PZ_DT_E4M3) {
                fprintf(stderr, "puzzle " CMD ": --prec wants f32 or bf16 (the precision of training products)\n");
                return -1;
            }
        } else if (!strcmp(a, "--metric")) {
            VALUE();
            if (strcmp(v, "kl") && strcmp(v, "loss") && strcmp(v, "top1")) {
                fprintf(stderr, "puzzle " CMD ": --metric wants kl, loss or top1, got '%s'\n", v);
                return -1;
            }
            o->metric = v;
        } else if (!strcmp(a, "--shard")) {
            VALUE();
            if (pz_parse_shard(v, &o->shard_i, &o->shard_n)) {
                fprintf(stderr, "puzzle " CMD ": --shard wants I/N with 0 <= I < N, got '%s'\n", v);
                return -1;
            }
        } else {
            fprintf(stderr, "puzzle " CMD ": unknown %s '%s'\n", a[0] == '-' ? "option" : "argument", a);
            return -1;
        }
#undef INT
#undef VALUE
    }
    const char *missing = !o->db ? "--db RUN.db is missing" : !o->data ? "--data FILE is missing" : NULL;
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

// ---- the blocks ------------------------------------------------------------------------
// The finished blocks (pz_rundb_list_done): ids, variants (kind -1 for a
// half a block does not set), weight files.
typedef pz_rundb_done_block blk;

static int load_tokens(const opts *o, const char *model, int32_t **ids, long *n, char *err) {
    size_t len;
    char *text = pz_read_file(o->data, (size_t)1 << 34, &len, err);
    if (!text) return -1;
    pz_tokenizer *tok = pz_tokenizer_load(model, err);
    int got = tok ? pz_tokenizer_encode(tok, text, len, 0, ids, err) : -1;
    pz_tokenizer_free(tok);
    free(text);
    if (got < 0) return -1;
    long use = got < o->tokens ? got : o->tokens;
    use -= use % o->seq_len;
    if (use < o->seq_len) {
        free(*ids);
        *ids = NULL;
        return pz_err(err, "%s gives %d tokens: scoring needs at least one window of --seq-len %ld", o->data, got,
                      o->seq_len);
    }
    *n = use;
    return 0;
}

static void fmt_eta(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e8) snprintf(buf, cap, "?");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, cap, "%.0fs", s);
}

// The best and worst few of this database's scores on these windows.
static void summary(pz_rundb *rdb, const char *hash, const opts *o) {
    for (int worst = 0; worst < 2; worst++) {
        pz_rundb_score_row rows[5];
        char err[PZ_ERRLEN];
        int n = pz_rundb_score_extremes(rdb, hash, o->seq_len, o->metric, worst, rows, 5, err);
        if (n < 0) continue;
        fprintf(stderr, "%s by %s:\n", worst ? "worst" : "best", o->metric);
        for (int i = 0; i < n; i++)
            fprintf(stderr, "  %-32s KL %.5f  dloss %+.5f  top1 %.4f\n", rows[i].block_id, rows[i].kl,
                    rows[i].loss_delta, rows[i].top1);
    }
}

int pz_cmd_score(int argc, char **argv) {
    opts o;
    if (parse_args(argc, argv, &o)) return PZ_EXIT_USAGE;
    char err[PZ_ERRLEN] = "", hash[17];
    int rc = PZ_EXIT_FAIL, n_blocks = 0;
    pz_rundb *db = NULL;
    pz_model *m = NULL;
    pz_scorer *sc = NULL;
    blk *blocks = NULL;
    char *todo = NULL;
    int32_t *tok = NULL;
    long n_tok = 0;
    pz_rundb_model parent;
    double t_start = pz_now();
    pz_install_stop_signals();

    if (access(o.data, R_OK) != 0) {
        pz_err(err, "%s: %s", o.data, strerror(errno));
        goto fail;
    }
    if (!(db = pz_rundb_open(o.db, 0, err))) goto fail;
    int found = pz_rundb_get_parent(db, &parent, err);
    if (found < 0) goto fail;
    if (!found) {
        pz_err(err, "%s has no parent model: build the library first (puzzle build-library)", o.db);
        goto fail;
    }
    const char *ppath = o.parent ? o.parent : parent.path;
    if (!pz_file_exists(ppath) && !pz_is_dir(ppath)) {
        pz_err(err, "parent %s not found; pass its path with --parent", ppath);
        goto fail;
    }
    if (pz_rundb_list_done(db, &blocks, &n_blocks, err)) goto fail;
    if (load_tokens(&o, ppath, &tok, &n_tok, err)) goto fail;
    snprintf(hash, sizeof hash, "%016" PRIx64, pz_capture_tokens_hash(tok, n_tok));
    if (!(todo = calloc((size_t)n_blocks + 1, 1))) {
        pz_err(err, "out of memory");
        goto fail;
    }
    int n_shard = 0, n_todo = 0;
    for (int i = 0; i < n_blocks; i++) {
        if (!pz_block_in_shard(i, (int)o.shard_i, (int)o.shard_n)) continue;
        n_shard++;
        int s = pz_rundb_is_scored(db, blocks[i].block_id, hash, o.seq_len, err);
        if (s < 0) goto fail;
        todo[i] = !s, n_todo += !s;
    }
    fprintf(stderr, "%s: %d finished blocks, shard %ld/%ld has %d: %d scored, %d to score on %ld tokens (%ld windows "
                    "of %ld) of %s\n",
            o.db, n_blocks, o.shard_i, o.shard_n, n_shard, n_shard - n_todo, n_todo, n_tok, n_tok / o.seq_len,
            o.seq_len, o.data);
    double *bi = NULL;
    int have_bi = 0;
    {
        pz_config pc;
        if (pz_rundb_parent_config(db, &pc, err) < 0) goto fail;
        if (!(bi = malloc(sizeof(double) * (size_t)(pc.n_layer > 0 ? pc.n_layer : 1)))) {
            pz_err(err, "out of memory");
            goto fail;
        }
        have_bi = pz_rundb_influence(db, hash, o.seq_len, bi, pc.n_layer, err);
        free(bi);
        if (have_bi < 0) goto fail;
    }
    if (n_todo == 0 && have_bi) {
        fprintf(stderr, "nothing to do\n");
        rc = PZ_EXIT_OK;
        goto out;
    }

    pz_rundb_model want;
    pz_config cfg;
    if (pz_model_load_config(ppath, &cfg, err) || pz_rundb_model_identity(ppath, &cfg, &want, err)) goto fail;
    if (strcmp(want.identity, parent.identity) || strcmp(want.config_hash, parent.config_hash)) {
        pz_err(err, "%s is not the parent of %s (%.19s..., the database's is %.19s...)", ppath, o.db, want.identity,
               parent.identity);
        goto fail;
    }
    if (!(m = pz_model_load(ppath, PZ_DT_F32, err))) goto fail;
    pz_score_params sp = pz_score_default_params();
    sp.n_threads = (int)o.threads, sp.prec = o.prec, sp.cache_stride = (int)o.stride;
    double t0 = pz_now();
    if (!(sc = pz_scorer_create(m, tok, n_tok, (int)o.seq_len, &sp, err))) goto fail;
    fprintf(stderr, "parent pass: %.1f s, parent NLL %.4f, scorer memory %.0f MB\n", pz_now() - t0,
            pz_scorer_parent_nll(sc), (double)pz_scorer_bytes(sc) / 1e6);
    pz_rundb_event(db, "score", "start", "shard %ld/%ld: %d blocks, %ld tokens (hash %s, seq_len %ld), %ld threads",
                   o.shard_i, o.shard_n, n_todo, n_tok, hash, o.seq_len, o.threads);
    if (!have_bi) {
        double *v = malloc(sizeof(double) * (size_t)m->cfg.n_layer);
        if (!v) {
            pz_err(err, "out of memory");
            goto fail;
        }
        pz_scorer_block_influence(sc, v);
        int e = pz_rundb_record_influence(db, hash, o.seq_len, n_tok, v, m->cfg.n_layer, err);
        int lo = 0;
        for (int l = 1; l < m->cfg.n_layer; l++)
            if (v[l] < v[lo]) lo = l;
        if (!e) fprintf(stderr, "block influence stored (lowest: layer %d, %.4f)\n", lo, v[lo]);
        free(v);
        if (e) goto fail;
    }

    pz_rundb_score_setup setup = {hash, o.seq_len, o.data, pz_dt_name(o.prec), o.threads};
    int done = 0;
    t0 = pz_now();
    for (int i = 0; i < n_blocks; i++) {
        if (!todo[i]) continue;
        if (pz_stop_signal) break;
        const blk *b = &blocks[i];
        pz_block_weights w;
        pz_score_result r;
        int e = 0;
        if (b->is_parent) {  // the parent itself: no pass (score.h, pz_scorer_base)
            pz_scorer_base(sc, &r);
        } else {
            if (pz_ctx_block_weights(db, m, b, &w, err)) goto fail;
            e = pz_scorer_score(sc, &w, &r, err);
            pz_block_weights_free(&w);
        }
        if (e || pz_rundb_record_score(db, b->block_id, &setup, &r, err)) goto fail;
        done++;
        double el = pz_now() - t0, rate = done / el;
        char eta[32];
        fmt_eta((n_todo - done) / rate, eta, sizeof eta);
        fprintf(stderr, "[%d/%d] %-30s KL %.5f  dloss %+.5f  top1 %.4f  %.1f s | %.2f blocks/s, %.0f tokens/s, ETA %s\n",
                done, n_todo, b->block_id, r.kl, r.loss_delta, r.top1, r.wall_s, rate, rate * (double)n_tok, eta);
    }
    if (pz_stop_signal) {
        pz_rundb_event(db, "score", "interrupted", "signal %d; %d of %d blocks scored", (int)pz_stop_signal, done, n_todo);
        fprintf(stderr, "puzzle " CMD ": interrupted (signal %d) with %d of %d blocks scored; rerun the same command "
                        "to resume\n", (int)pz_stop_signal, done, n_todo);
        goto out;
    }
    double wall = pz_now() - t_start;
    pz_rundb_event(db, "score", "finish", "%d blocks in %.1f s", done, wall);
    fprintf(stderr, "done: %d blocks in %.1f s\n", done, wall);
    summary(db, hash, &o);
    rc = PZ_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "puzzle " CMD ": %s\n", err);
    rc = PZ_EXIT_FAIL;
out:
    pz_scorer_free(sc);
    pz_model_free(m);
    free(blocks);
    free(todo);
    free(tok);
    pz_rundb_close(db);
    return rc;
}
