// cmd_distill.c — `puzzle distill CHILD --teacher PARENT --data FILE...
// --tokens N --out DIR`: global knowledge distillation of a realized child
// against its parent (distill/distill.h), resumable from the checkpoint in
// DIR, data-parallel under mpirun when built with MPI. Writes the trained
// child into DIR as a Hugging Face DeciLM directory (config.json,
// model.safetensors, tokenizer files) beside gkd_checkpoint.bin,
// gkd_losses.tsv and distill.json.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "comm.h"
#include "common.h"
#include "distill.h"
#include "model.h"
#include "rundb.h"
#include "tokenizer.h"
#ifdef PZ_HAVE_MPI
#include "comm_mpi.h"
#endif

#define MAX_DATA 64

void pz_usage_distill(FILE *out) {
    fprintf(out,
            "usage: puzzle distill CHILD --teacher PARENT --data FILE [FILE...] --out DIR [options]\n\n"
            "Global knowledge distillation: trains the whole CHILD (a realized DeciLM directory, or any\n"
            "model with PARENT's layer count, width and vocabulary) to match PARENT with\n"
            "  L = wc * sum over layers of mean(1 - cos(h_child, h_parent))\n"
            "    + wk * T^2 * mean KL(parent_T || child_T) + wl * mean CE(child, next token)\n"
            "(by default wc = wk = 1, wl = 0, T = 1: the paper's loss), AdamW with linear warm-up\n"
            "and cosine decay, fp32 master weights.\n"
            "Every step: a teacher forward, a child forward and backward, per micro-batch.\n"
            "Checkpoints go to DIR/gkd_checkpoint.bin (atomic); a killed run rerun with the same\n"
            "options and --resume continues and ends bit-identical (same --threads). Under mpirun\n"
            "(built with MPI) the micro-batches of a step are dealt to the ranks and the gradients\n"
            "all-reduced: the same global batch as one process.\n\n"
            "  --teacher PARENT       the parent model (GGUF or HF directory; required)\n"
            "  --data FILE...         training text, UTF-8 (one or more files; required)\n"
            "  --out DIR              output directory (created; required)\n"
            "  --tokens N             training tokens (default 65536)\n"
            "  --seq N                tokens per window (default 256)\n"
            "  --batch N              windows per micro-batch (default 4)\n"
            "  --accum N              micro-batches per optimizer step, over all ranks (default 1)\n"
            "  --lr X                 peak learning rate (default 2e-4)\n"
            "  --lr-min-ratio X       final lr / peak (default 0.1)\n"
            "  --warmup N             warm-up steps (default: 5%% of the steps)\n"
            "  --weight-decay X       AdamW decoupled weight decay on matrices (default 0.1)\n"
            "  --prec bf16|f32        matrix-product precision (default bf16)\n"
            "  --seed N               window order (default 1)\n"
            "  --loss-cos W           weight wc of the hidden-state cosine term (default 1)\n"
            "  --loss-kl W            weight wk of the KL term (default 1)\n"
            "  --loss-lm W            weight wl of the next-token cross-entropy (default 0; the last\n"
            "                         token of a window, having no next token, takes KL there)\n"
            "  --kl-temperature T     temperature of the KL term (default 1; not with --loss-lm)\n"
            "  --checkpoint-every N   steps between checkpoints (default 50; 0: only at the end)\n"
            "  --resume               continue from DIR's checkpoint if there is one\n"
            "  --threads T            CPU threads (default: all cores)\n"
            "  --db RUN.db            also record the run and its loss curve in this run database\n"
            "                         (distill_runs, distill_curves; a stopped or failed run too)\n"
            "  --solution ID          the solution CHILD realizes (default: the database's child row\n"
            "                         at CHILD's path, if any)\n"
            "  --quiet                no progress lines\n");
}

typedef struct {
    int quiet;
} progress_state;

static void fmt_dur(char *buf, size_t cap, double s) {
    if (s < 0 || s != s) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%lds", t);
}

static int on_progress(void *user, const pz_distill_progress *p) {
    progress_state *st = user;
    if (!st->quiet) {
        char el[32], eta[32];
        fmt_dur(el, sizeof el, p->elapsed_s);
        fmt_dur(eta, sizeof eta, p->eta_s);
        char lm[48] = "";
        if (!isnan(p->lm)) snprintf(lm, sizeof lm, ", LM %.4f", p->lm);
        printf("step %ld/%ld  cos %.4f, KL %.4f%s  lr %.3g  |g| %.3g  %.0f tok/s  %s  ETA %s%s\n",
               p->step, p->total_steps, p->cos_loss, p->kl, lm, p->lr, p->grad_norm,
               p->tokens_per_s, el, eta, p->checkpointed ? "  [checkpoint]" : "");
        fflush(stdout);
    }
    return pz_stop_signal ? PZ_DISTILL_STOP : 0;
}

static int load_tokens(const char *model, const char *const *files, int n_files, int32_t **out,
                       long *n_out, pz_tokenizer **tok_out, char *err) {
    pz_tokenizer *tok = pz_tokenizer_load(model, err);
    if (!tok) return -1;
    int32_t *all = NULL;
    long n = 0;
    for (int f = 0; f < n_files; f++) {
        size_t len;
        char *text = pz_read_file(files[f], (size_t)1 << 34, &len, err);
        if (!text) goto fail;
        int32_t *ids = NULL;
        int got = pz_tokenizer_encode(tok, text, len, 0, &ids, err);
        free(text);
        if (got < 0) goto fail;
        int32_t *grown = realloc(all, sizeof(int32_t) * (size_t)(n + got + 1));
        if (!grown) {
            free(ids);
            pz_err(err, "out of memory");
            goto fail;
        }
        all = grown;
        memcpy(all + n, ids, sizeof(int32_t) * (size_t)got);
        n += got;
        free(ids);
    }
    *out = all, *n_out = n, *tok_out = tok;
    return 0;
fail:
    free(all);
    pz_tokenizer_free(tok);
    return -1;
}

static int write_summary(const char *dir, const char *child, const char *teacher, const char *const *files,
                         int n_files, const pz_distill_params *p, int ranks, long n_tokens,
                         const pz_distill_result *r, const pz_config *c, char *err) {
    char path[4096], tmp[4200];
    pz_path_join(path, sizeof path, dir, "distill.json");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return pz_err(err, "cannot write %s: %s", tmp, strerror(errno));
    int last = r->n_points - 1;
    fprintf(f, "{\n  \"child\": \"%s\",\n  \"teacher\": \"%s\",\n  \"data\": [", child, teacher);
    for (int i = 0; i < n_files; i++) fprintf(f, "%s\"%s\"", i ? ", " : "", files[i]);
    fprintf(f, "],\n  \"data_tokens\": %ld,\n", n_tokens);
    fprintf(f, "  \"loss\": \"%g*sum_layers(1-cos) + %g*T^2*KL(parent_T||child_T) + %g*CE(next token)\",\n",
            p->loss.cos, p->loss.kl, p->loss.lm);
    fprintf(f, "  \"loss_weights\": {\"cos\": %g, \"kl\": %g, \"lm\": %g, \"temperature\": %g},\n", p->loss.cos,
            p->loss.kl, p->loss.lm, p->loss.temperature);
    fprintf(f, "  \"tied_embeddings\": %s,\n", c->tie_embeddings ? "true" : "false");
    fprintf(f, "  \"seq\": %d, \"batch\": %d, \"accum\": %d, \"ranks\": %d,\n", p->seq, p->batch, p->accum, ranks);
    fprintf(f, "  \"lr\": %g, \"lr_min_ratio\": %g, \"weight_decay\": %g, \"prec\": \"%s\", \"seed\": %llu,\n",
            p->lr, p->lr_min_ratio, p->adam.weight_decay, p->prec == PZ_DT_BF16 ? "bf16" : "f32",
            (unsigned long long)p->seed);
    fprintf(f, "  \"steps\": %ld, \"tokens\": %ld, \"resumed_at_step\": %ld, \"wall_s_this_process\": %.1f,\n",
            r->steps, r->tokens, r->start_step, r->wall_s);
    if (last >= 0)
        fprintf(f, "  \"first_step\": {\"cos_loss\": %.6f, \"kl\": %.6f},\n  \"last_step\": {\"cos_loss\": %.6f, \"kl\": %.6f}\n",
                r->curve_cos[0], r->curve_kl[0], r->curve_cos[last], r->curve_kl[last]);
    else
        fprintf(f, "  \"first_step\": null,\n  \"last_step\": null\n");
    fprintf(f, "}\n");
    if (fclose(f) || rename(tmp, path)) return pz_err(err, "writing %s failed", path);
    return 0;
}

// A float option as the decimal it was given as (its 7 significant digits), so
// that 2e-4 is stored as 0.0002, not as the float's 0.000199999995.
static double dec(float v) {
    char b[32];
    snprintf(b, sizeof b, "%.7g", v);
    return strtod(b, NULL);
}

// The run as distill_runs records it (rank 0, with --db). status "failed" carries why.
static int record_run(const char *db_path, long solution, const char *child, const char *teacher,
                      const char *out, const char *const *files, int n_files, const int32_t *tokens,
                      long n_tokens, const pz_distill_params *p, int ranks, int threads,
                      const pz_distill_result *r, const char *status, const char *why, char *err) {
    char data[4096] = "", sha[65] = "";
    for (int i = 0; i < n_files; i++)
        snprintf(data + strlen(data), sizeof data - strlen(data), "%s%s", i ? " " : "", files[i]);
    if (tokens) pz_rundb_sha256_hex(tokens, sizeof(int32_t) * (size_t)n_tokens, sha);
    long per_step = (long)p->seq * p->batch * p->accum;
    pz_rundb_distill_run d = {
        .child = child, .teacher = teacher, .out_dir = out, .solution_id = solution, .status = status,
        .data = data, .data_sha256 = tokens ? sha : NULL, .data_tokens = n_tokens, .tokens = p->tokens,
        .seq_len = p->seq, .batch = p->batch, .accum = p->accum, .ranks = ranks, .threads = threads,
        .lr = dec(p->lr), .lr_min_ratio = dec(p->lr_min_ratio), .weight_decay = dec(p->adam.weight_decay),
        .loss_cos = dec(p->loss.cos), .loss_kl = dec(p->loss.kl), .loss_lm = dec(p->loss.lm),
        .kl_temperature = dec(p->loss.temperature),
        .warmup = p->warmup, .prec = p->prec == PZ_DT_BF16 ? "bf16" : "f32", .seed = p->seed,
        .steps = r->steps, .total_steps = (p->tokens + per_step - 1) / per_step, .tokens_done = r->tokens,
        .resumed_at_step = r->start_step, .wall_s = r->wall_s,
        .tokens_per_s = r->wall_s > 0 ? (double)(r->steps - r->start_step) * per_step / r->wall_s : NAN,
        .error = why, .n_points = r->n_points, .cos_loss = r->curve_cos, .kl = r->curve_kl,
        .lr_curve = r->curve_lr, .grad_norm = r->curve_gnorm, .tokens_per_step = per_step};
    pz_rundb *db = pz_rundb_open(db_path, 1, err);
    if (!db) return -1;
    int rc = pz_rundb_record_distill(db, &d, NULL, err);
    pz_rundb_close(db);
    return rc;
}

int pz_cmd_distill(int argc, char **argv) {
    const char *cmd = "distill", *child_path = NULL, *teacher_path = NULL, *out = NULL, *db_path = NULL;
    long solution = 0;
    const char *files[MAX_DATA];
    int n_files = 0, quiet = 0;
    long threads = 0;
    pz_distill_params p = pz_distill_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        long iv;
        double fv;
#define VAL() if (!(v = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE
#define INT(lo, hi) VAL(); if (pz_arg_int(cmd, a, v, lo, hi, &iv)) return PZ_EXIT_USAGE
#define FLT(lo, hi) VAL(); if (pz_arg_float(cmd, a, v, lo, hi, &fv)) return PZ_EXIT_USAGE
        if (!strcmp(a, "--teacher")) { VAL(); teacher_path = v; }
        else if (!strcmp(a, "--out")) { VAL(); out = v; }
        else if (!strcmp(a, "--db")) { VAL(); db_path = v; }
        else if (!strcmp(a, "--solution")) { INT(1, 1L << 40); solution = iv; }
        else if (!strcmp(a, "--data")) {
            VAL();
            do {
                if (n_files == MAX_DATA) {
                    fprintf(stderr, "puzzle distill: at most %d --data files\n", MAX_DATA);
                    return PZ_EXIT_USAGE;
                }
                files[n_files++] = argv[i];
            } while (i + 1 < argc && argv[i + 1][0] != '-' && ++i);
        }
        else if (!strcmp(a, "--tokens")) { INT(1, 1L << 40); p.tokens = iv; }
        else if (!strcmp(a, "--seq")) { INT(2, 1 << 16); p.seq = (int)iv; }
        else if (!strcmp(a, "--batch")) { INT(1, 1 << 16); p.batch = (int)iv; }
        else if (!strcmp(a, "--accum")) { INT(1, 1 << 16); p.accum = (int)iv; }
        else if (!strcmp(a, "--lr")) { FLT(0, 1); p.lr = (float)fv; }
        else if (!strcmp(a, "--lr-min-ratio")) { FLT(0, 1); p.lr_min_ratio = (float)fv; }
        else if (!strcmp(a, "--warmup")) { INT(0, 1L << 40); p.warmup = iv; }
        else if (!strcmp(a, "--weight-decay")) { FLT(0, 10); p.adam.weight_decay = (float)fv; }
        else if (!strcmp(a, "--seed")) { INT(0, 1L << 62); p.seed = (uint64_t)iv; }
        else if (!strcmp(a, "--loss-cos")) { FLT(0, 1000); p.loss.cos = (float)fv; }
        else if (!strcmp(a, "--loss-kl")) { FLT(0, 1000); p.loss.kl = (float)fv; }
        else if (!strcmp(a, "--loss-lm")) { FLT(0, 1000); p.loss.lm = (float)fv; }
        else if (!strcmp(a, "--kl-temperature")) { FLT(0.05, 20); p.loss.temperature = (float)fv; }
        else if (!strcmp(a, "--checkpoint-every")) { INT(0, 1L << 30); p.checkpoint_every = (int)iv; }
        else if (!strcmp(a, "--threads")) { INT(0, 1024); threads = iv; }
        else if (!strcmp(a, "--prec")) {
            VAL();
            if (!strcmp(v, "bf16")) p.prec = PZ_DT_BF16;
            else if (!strcmp(v, "f32") || !strcmp(v, "fp32")) p.prec = PZ_DT_F32;
            else {
                fprintf(stderr, "puzzle distill: --prec wants bf16 or f32, got '%s'\n", v);
                return PZ_EXIT_USAGE;
            }
        }
        else if (!strcmp(a, "--resume")) p.resume = 1;
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "puzzle distill: unknown option '%s'\n", a);
            return PZ_EXIT_USAGE;
        } else if (!child_path) child_path = a;
        else {
            fprintf(stderr, "puzzle distill: one CHILD only ('%s' is extra)\n", a);
            return PZ_EXIT_USAGE;
        }
#undef VAL
#undef INT
#undef FLT
    }
    const char *missing = !child_path ? "CHILD is missing" : !teacher_path ? "--teacher PARENT is missing"
                        : !n_files ? "--data FILE is missing" : !out ? "--out DIR is missing" : NULL;
    if (missing) {
        fprintf(stderr, "puzzle distill: %s (see puzzle distill --help)\n", missing);
        return PZ_EXIT_USAGE;
    }

    char err[PZ_ERRLEN] = "";
    int rc = PZ_EXIT_FAIL;
    pz_model *teacher = NULL, *child = NULL;
    pz_tokenizer *tok = NULL;
    int32_t *tokens = NULL;
    long n_tokens = 0;
    pz_distill_result res;
    memset(&res, 0, sizeof res);
    pz_comm *comm = NULL;
    pz_backend *be = pz_backend_create(PZ_BACKEND_CPU, (int)threads, err);
    if (!be) goto fail;
#ifdef PZ_HAVE_MPI
    if (pz_comm_mpi_launched()) {
        if (!(comm = pz_comm_mpi_create(be, err))) goto fail;
    }
#endif
    if (!comm && !(comm = pz_comm_single_create(be, err))) goto fail;
    progress_state ps = {quiet || comm->rank != 0};
    if (comm->rank == 0 && mkdir(out, 0755) != 0 && !pz_is_dir(out)) {
        pz_err(err, "cannot create %s: %s", out, strerror(errno));
        goto fail;
    }
    if (comm->barrier(comm, err)) goto fail;
    if (!(teacher = pz_model_load(teacher_path, PZ_DT_F32, err))) goto fail;
    if (!(child = pz_model_load(child_path, PZ_DT_F32, err))) goto fail;
    if (load_tokens(child_path, files, n_files, &tokens, &n_tokens, &tok, err)) goto fail;
    if (!ps.quiet) {
        long rows = (long)p.seq * p.batch * p.accum;
        printf("distill: %s <- %s: %ld data tokens (%ld windows of %d), %ld training tokens = %ld steps of %ld; "
               "%d rank%s, %d threads; embeddings %s\n",
               child_path, teacher_path, n_tokens, n_tokens / p.seq, p.seq, p.tokens, (p.tokens + rows - 1) / rows,
               rows, comm->size, comm->size > 1 ? "s" : "", be->n_threads,
               child->cfg.tie_embeddings ? "tied (one table, both gradients)" : "untied");
        fflush(stdout);
    }
    pz_install_stop_signals();
    p.progress = on_progress, p.user = &ps;
    if (pz_distill_run(teacher, child, tokens, n_tokens, out, &p, be, comm, &res, err)) {
        char err2[PZ_ERRLEN];
        if (db_path && comm->rank == 0 &&
            record_run(db_path, solution, child_path, teacher_path, out, files, n_files, tokens, n_tokens, &p,
                       comm->size, be->n_threads, &res, "failed", err, err2))
            fprintf(stderr, "puzzle distill: recording the failure in %s: %s\n", db_path, err2);
        goto fail;
    }
    if (comm->rank == 0) {
        if (pz_model_save_hf(child, out, err) || pz_tokenizer_write_hf(tok, out, err)) goto fail;
        if (write_summary(out, child_path, teacher_path, files, n_files, &p, comm->size, n_tokens, &res,
                          &child->cfg, err))
            goto fail;
        long per_step = (long)p.seq * p.batch * p.accum, total = (p.tokens + per_step - 1) / per_step;
        if (db_path && record_run(db_path, solution, child_path, teacher_path, out, files, n_files, tokens,
                                  n_tokens, &p, comm->size, be->n_threads, &res,
                                  res.steps >= total ? "done" : "stopped", NULL, err))
            goto fail;
        if (!quiet)
            printf("distill: %ld steps, %ld tokens; wrote %s (config.json, model.safetensors, gkd_losses.tsv, "
                   "distill.json)\n", res.steps, res.tokens, out);
    }
    rc = PZ_EXIT_OK;
    goto done;
fail:
    fprintf(stderr, "puzzle distill: %s\n", err);
done:
    pz_distill_result_free(&res);
    pz_model_free(teacher);
    pz_model_free(child);
    pz_tokenizer_free(tok);
    free(tokens);
    pz_comm_free(comm);
    pz_backend_free(be);
    return rc;
}
