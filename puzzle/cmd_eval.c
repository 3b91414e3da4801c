// cmd_eval.c — `puzzle eval MODEL --text FILE`: perplexity over fixed
// windows, and, against a reference model, the mean KL(ref‖model) of the
// next-token distributions and their top-1 agreement.
//
// Protocol "windows" (the default; shared with tests/ref/smollm2_numpy.py so
// the figures compare): tokens = encode(text) with no BOS and special tokens
// not parsed; windows of ctx tokens at offsets 0, ctx, 2ctx, ... (a last
// partial window counts when it has >= 2 tokens); each window starts from an
// empty cache; position t of a window predicts token t+1 of that window.
//
// Protocol "llama-perplexity" (llama.cpp's tools/perplexity, so the two
// tools' numbers compare directly): tokens = BOS (when the tokenizer adds
// one) + encode(text); at least 2·ctx of them; only whole chunks of ctx
// tokens at offsets 0, ctx, 2ctx, ...; each chunk's first token replaced by
// BOS (when added); positions ctx/2 .. ctx-2 of a chunk are scored, each
// predicting the next token, so every scored token has at least ctx/2
// tokens of context.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "comm.h"
#include "common.h"
#include "engine.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

void pz_usage_eval(FILE *out) {
    fprintf(out,
            "usage: puzzle eval MODEL --text FILE [options]\n\n"
            "Perplexity of MODEL on FILE (UTF-8 text), over windows of --ctx tokens.\n"
            "With --ref MODEL2: also mean KL(MODEL2 ‖ MODEL) of next-token distributions\n"
            "and top-1 agreement, on the same windows (both models share a tokenizer).\n\n"
            "  --text FILE        evaluation text (required)\n"
            "  --ctx N            window length in tokens (default 512)\n"
            "  --protocol P       windows (default: every position of each window scored) or\n"
            "                     llama-perplexity (llama.cpp's: BOS first, whole chunks only,\n"
            "                     second half of each chunk scored)\n"
            "  --chunks N         llama-perplexity: at most N chunks (llama-perplexity --chunks)\n"
            "  --max-tokens N     evaluate only the first N tokens (default: all)\n"
            "  --skip-tokens N    start after the first N tokens (e.g. past the windows `puzzle score` used)\n"
            "  --ref MODEL2       reference model for KL and agreement\n"
            "  --dtype f32|bf16|fp8  weight type in memory (default f32; fp8: e4m3 with tensor scales,\n"
            "                     quantized at load unless the checkpoint is FP8)\n"
            "  --kv-dtype T       KV cache f32 (default), bf16 or fp8 (e4m3 with the checkpoint's\n"
            "                     k_scale / v_scale, 1 where absent)\n"
            "  --fp8-head         with --dtype fp8: lm_head in e4m3 too (default bf16)\n"
            "  --act-fp8          FP8 products also quantize their activations (e4m3, static input\n"
            "                     scales: an FP8 checkpoint from `puzzle quantize`)\n"
            "  --ref-dtype T      weight type of the --ref model (default: --dtype)\n"
            "  --threads T        CPU threads (default: all cores)\n"
            "  --json             print the result as one JSON object\n"
            "  --tp N             tensor parallel over N processes started by mpirun -np N (rank 0\n"
            "                     reports; a --ref model runs whole on rank 0; docs/TP.md)\n");
}

static volatile sig_atomic_t interrupted = 0;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

// log-softmax normalizer of one row: returns log(sum exp(x)).
static double log_sum_exp(const float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

// KL(p‖q) for logits rows p (reference) and q (model).
static double kl_rows(const float *p, const float *q, int n) {
    double lp = log_sum_exp(p, n), lq = log_sum_exp(q, n), kl = 0;
    for (int i = 0; i < n; i++) {
        double a = p[i] - lp;
        kl += exp(a) * (a - (q[i] - lq));
    }
    return kl > 0 ? kl : 0;  // rounding can leave a tiny negative
}

typedef struct {
    pz_model *m;
    pz_engine *e;
} loaded;

static int load(const char *path, pz_dt wtype, int act_fp8, pz_dt kvt, int head8, int ctx, int threads,
                pz_comm *comm, loaded *out, char *err) {
    if (!(out->m = comm ? pz_model_load_shard(path, wtype, comm->size, comm->rank, PZ_ENGINE_TP_ALIGN, err)
                        : pz_model_load(path, wtype, err)))
        return -1;
    if (head8 && pz_model_e4m3_head(out->m, err)) return -1;
    pz_engine_params ep = pz_engine_default_params();
    ep.act_fp8 = act_fp8;
    ep.kv_type = kvt;
    ep.n_slots = 1;
    ep.max_ctx = ctx;
    ep.max_batch = ctx < 512 ? ctx : 512;
    ep.n_threads = threads;
    ep.comm = comm;
    if (!(out->e = pz_engine_create(out->m, ep, err))) return -1;
    return 0;
}

int pz_cmd_eval(int argc, char **argv) {
    const char *path = NULL, *text_path = NULL, *ref_path = NULL, *cmd = "eval";
    long ctx = 512, max_tokens = 0, skip_tokens = 0, threads = 0, chunks = 0, tp = 1;
    const char *tp_init = NULL;
    int json = 0, llama_ppl = 0, act_fp8 = 0, ref_dt_set = 0, head8 = 0;
    pz_dt wtype = PZ_DT_F32, ref_wtype = PZ_DT_F32, kvt = PZ_DT_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int t = pz_arg_tp(cmd, argc, argv, &i, &tp, &tp_init);
        if (t < 0) return PZ_EXIT_USAGE;
        if (t) continue;
        if (!strcmp(a, "--text")) {
            if (!(text_path = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--ref")) {
            if (!(ref_path = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 2, 1 << 20, &ctx)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--skip-tokens")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 0, 1L << 40, &skip_tokens))
                return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--max-tokens")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 2, 1L << 40, &max_tokens))
                return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 0, 1024, &threads)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--dtype")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_wtype(cmd, v, &wtype)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--ref-dtype")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_wtype(cmd, v, &ref_wtype)) return PZ_EXIT_USAGE;
            ref_dt_set = 1;
        } else if (!strcmp(a, "--kv-dtype")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_wtype(cmd, v, &kvt)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--fp8-head")) {
            head8 = 1;
        } else if (!strcmp(a, "--act-fp8")) {
            act_fp8 = 1;
        } else if (!strcmp(a, "--protocol")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
            if (!strcmp(v, "llama-perplexity")) llama_ppl = 1;
            else if (!strcmp(v, "windows")) llama_ppl = 0;
            else {
                fprintf(stderr, "puzzle eval: --protocol must be windows or llama-perplexity, not '%s'\n", v);
                return PZ_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--chunks")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 1L << 30, &chunks))
                return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--json")) json = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "puzzle eval: unknown option '%s'\n", a);
            return PZ_EXIT_USAGE;
        } else if (!path) path = a;
        else {
            fprintf(stderr, "puzzle eval: one MODEL only ('%s' is extra; use --ref for a reference)\n", a);
            return PZ_EXIT_USAGE;
        }
    }
    if (!path || !text_path) {
        fprintf(stderr, "puzzle eval: %s\n", !path ? "MODEL is missing" : "--text FILE is missing");
        pz_usage_eval(stderr);
        return PZ_EXIT_USAGE;
    }
    if (chunks && !llama_ppl) {
        fprintf(stderr, "puzzle eval: --chunks goes with --protocol llama-perplexity\n");
        return PZ_EXIT_USAGE;
    }
    if (llama_ppl && ctx % 2) {
        fprintf(stderr, "puzzle eval: --protocol llama-perplexity needs an even --ctx\n");
        return PZ_EXIT_USAGE;
    }

    char err[PZ_ERRLEN];
    int rc = PZ_EXIT_FAIL;
    pz_tokenizer *tok = NULL;
    loaded mod = {0}, ref = {0};
    char *text = NULL;
    int32_t *ids = NULL, *win = NULL;
    float *lg = NULL, *lg_ref = NULL;
    pz_comm *comm = NULL;
    pz_backend *tpb = NULL;

    if (pz_cli_tp_open((int)tp, PZ_BACKEND_CPU, (int)threads, tp_init, &comm, &tpb, err)) goto fail;
    size_t text_len;
    if (!(text = pz_read_file(text_path, (size_t)1 << 32, &text_len, err))) goto fail;
    if (!(tok = pz_tokenizer_load(path, err))) goto fail;
    int n_tok = pz_tokenizer_encode(tok, text, text_len, 0, &ids, err);
    if (n_tok < 0) goto fail;
    if (skip_tokens) {
        long keep = n_tok > skip_tokens ? n_tok - skip_tokens : 0;
        memmove(ids, ids + (n_tok - keep), (size_t)keep * sizeof *ids);
        n_tok = (int)keep;
    }
    int bos = -1;
    if (llama_ppl && pz_tokenizer_add_bos(tok)) {  // common_tokenize(ctx, text, add_special = true)
        if ((bos = pz_tokenizer_bos(tok)) < 0) {
            pz_err(err, "%s: the tokenizer adds BOS but defines no BOS token", path);
            goto fail;
        }
        int32_t *grown = realloc(ids, ((size_t)n_tok + 1) * sizeof *ids);
        if (!grown) {
            pz_err(err, "out of memory");
            goto fail;
        }
        ids = grown;
        memmove(ids + 1, ids, (size_t)n_tok * sizeof *ids);
        ids[0] = bos;
        n_tok++;
    }
    if (max_tokens && n_tok > max_tokens) n_tok = (int)max_tokens;
    if (llama_ppl && n_tok < 2 * ctx) {
        pz_err(err, "%s: llama-perplexity needs at least %ld tokens (2 x --ctx), the text has %d", text_path,
               2 * ctx, n_tok);
        goto fail;
    }
    if (n_tok < 2) {
        pz_err(err, "%s: needs at least 2 tokens of text%s, has %d", text_path,
               skip_tokens ? " after --skip-tokens" : "", n_tok);
        goto fail;
    }
    if (load(path, wtype, act_fp8, kvt, head8, (int)ctx, (int)threads, comm, &mod, err)) goto fail;
    if (comm && comm->rank != 0) {  // tensor parallel: the other ranks run rank 0's calls
        if (pz_engine_follow(mod.e, err)) goto fail;
        rc = PZ_EXIT_OK;
        goto done;
    }
    if (ctx > mod.m->cfg.max_ctx) {
        pz_err(err, "--ctx %ld exceeds the model's context of %d", ctx, mod.m->cfg.max_ctx);
        goto fail;
    }
    if (ref_path) {
        if (load(ref_path, ref_dt_set ? ref_wtype : wtype, 0, PZ_DT_F32, 0, (int)ctx, (int)threads, NULL, &ref, err))
            goto fail;
        if (ref.m->cfg.vocab != mod.m->cfg.vocab) {
            pz_err(err, "%s has vocabulary %d but %s has %d: KL needs the same vocabulary", ref_path,
                   ref.m->cfg.vocab, path, mod.m->cfg.vocab);
            goto fail;
        }
    }
    int vocab = mod.m->cfg.vocab;
    for (int i = 0; i < n_tok; i++)
        if (ids[i] < 0 || ids[i] >= vocab) {
            pz_err(err, "token id %d is outside the model's vocabulary of %d", ids[i], vocab);
            goto fail;
        }
    lg = malloc((size_t)ctx * vocab * sizeof(float));
    win = malloc((size_t)ctx * sizeof *win);
    if (ref_path) lg_ref = malloc((size_t)ctx * vocab * sizeof(float));
    if (!lg || !win || (ref_path && !lg_ref)) {
        pz_err(err, "out of memory for %ld x %d logits", ctx, vocab);
        goto fail;
    }

    signal(SIGINT, on_sigint);
    double nll = 0, nll_ref = 0, kl = 0;
    long count = 0, agree = 0;
    double t0 = pz_now(), last_report = t0;
    int n_windows = (n_tok + (int)ctx - 1) / (int)ctx, first = 0;
    if (llama_ppl) {
        n_windows = n_tok / (int)ctx;  // whole chunks only
        if (chunks && n_windows > chunks) n_windows = (int)chunks;
        first = (int)ctx / 2;
    }
    for (int w = 0; w < n_windows && !interrupted; w++) {
        int off = w * (int)ctx, len = n_tok - off < ctx ? n_tok - off : (int)ctx;
        if (len < 2) break;
        memcpy(win, ids + off, (size_t)len * sizeof *win);
        if (bos >= 0) win[0] = bos;  // llama-perplexity: BOS starts every chunk
        pz_engine_slot_reset(mod.e, 0);
        if (pz_engine_prefill(mod.e, 0, win, len, lg, 1, err)) goto fail;
        if (ref_path) {
            pz_engine_slot_reset(ref.e, 0);
            if (pz_engine_prefill(ref.e, 0, win, len, lg_ref, 1, err)) goto fail;
        }
        for (int t = first; t + 1 < len; t++) {
            const float *row = lg + (size_t)t * vocab;
            int next = win[t + 1];
            nll += log_sum_exp(row, vocab) - row[next];
            if (ref_path) {
                const float *rr = lg_ref + (size_t)t * vocab;
                nll_ref += log_sum_exp(rr, vocab) - rr[next];
                kl += kl_rows(rr, row, vocab);
                agree += pz_argmax(rr, vocab) == pz_argmax(row, vocab);
            }
            count++;
        }
        double now = pz_now();
        if (!json && (now - last_report > 2 || w + 1 == n_windows)) {
            double rate = (off + len) / (now - t0);
            fprintf(stderr, "\r[%d/%d windows] %d tokens, %.0f tok/s, ppl %.4f, ETA %.0f s   ", w + 1, n_windows,
                    off + len, rate, exp(nll / count), (n_tok - off - len) / (rate > 0 ? rate : 1));
            last_report = now;
        }
    }
    if (!json) fprintf(stderr, "\n");
    if (count == 0) {
        pz_err(err, "no window had two tokens");
        goto fail;
    }
    double secs = pz_now() - t0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", path);
        cJSON_AddStringToObject(o, "text", text_path);
        cJSON_AddNumberToObject(o, "ctx", (double)ctx);
        cJSON_AddStringToObject(o, "protocol", llama_ppl ? "llama-perplexity" : "windows");
        cJSON_AddNumberToObject(o, "tokens_scored", (double)count);
        cJSON_AddNumberToObject(o, "perplexity", exp(nll / count));
        cJSON_AddNumberToObject(o, "nll", nll / count);
        if (ref_path) {
            cJSON_AddStringToObject(o, "ref", ref_path);
            cJSON_AddNumberToObject(o, "ref_perplexity", exp(nll_ref / count));
            cJSON_AddNumberToObject(o, "kl", kl / count);
            cJSON_AddNumberToObject(o, "top1_agreement", (double)agree / count);
        }
        cJSON_AddNumberToObject(o, "seconds", secs);
        cJSON_AddBoolToObject(o, "interrupted", interrupted);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        printf("%s on %s: %ld tokens scored (ctx %ld, %s protocol, %s weights)%s\n", path, text_path, count, ctx,
               llama_ppl ? "llama-perplexity" : "windows", pz_dt_name(wtype),
               interrupted ? " — interrupted, partial result" : "");
        printf("perplexity        %.4f  (mean NLL %.5f nats)\n", exp(nll / count), nll / count);
        if (ref_path) {
            printf("ref perplexity    %.4f  (%s)\n", exp(nll_ref / count), ref_path);
            printf("KL(ref || model)  %.6f nats/token\n", kl / count);
            printf("top-1 agreement   %.4f\n", (double)agree / count);
        }
        printf("time              %.1f s (%.0f tokens/s)\n", secs, count / secs);
    }
    rc = interrupted ? 130 : PZ_EXIT_OK;
    goto done;
fail:
    if (comm && comm->size > 1)
        fprintf(stderr, "puzzle eval: rank %d: %s\n", comm->rank, err);
    else
        fprintf(stderr, "puzzle eval: %s\n", err);
done:
    free(lg);
    free(win);
    free(lg_ref);
    free(ids);
    free(text);
    pz_engine_free(mod.e);
    pz_model_free(mod.m);
    pz_engine_free(ref.e);
    pz_model_free(ref.m);
    pz_tokenizer_free(tok);
    pz_comm_free(comm);
    if (tpb) pz_backend_free(tpb);
    return rc;
}
