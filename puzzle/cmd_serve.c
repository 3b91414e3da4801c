// cmd_serve.c — `puzzle serve MODEL`: the OpenAI-compatible HTTP server
// (serve/). Parses options, listens at once (/health says 503 while the
// model loads), loads tokenizer, model and engine, then serves until
// SIGTERM or SIGINT, which drain: no new requests, the accepted ones finish.
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat_template.h"
#include "cli.h"
#include "comm.h"
#include "common.h"
#include "engine.h"
#include "model.h"
#include "scheduler.h"
#include "server.h"
#include "tokenizer.h"

void pz_usage_serve(FILE *out) {
    fprintf(out,
            "usage: puzzle serve MODEL [options]\n\n"
            "Serves MODEL over an OpenAI-compatible HTTP API (/v1/chat/completions,\n"
            "/v1/completions, /v1/models, /health, /metrics) with continuous batching,\n"
            "a paged KV cache shared by all requests and prefix reuse (docs/SERVE.md).\n\n"
            "  --host H          address to listen on (default 127.0.0.1)\n"
            "  --port P          TCP port, 0 = any free one (default 8080)\n"
            "  --threads T       CPU threads for the engine (default: all cores)\n"
            "  --max-seqs N      sequences decoded together (engine slots; default 32)\n"
            "  --kv-tokens N     KV pool size in tokens, shared by all sequences\n"
            "                    (default: max-seqs x ctx, at most 32768)\n"
            "  --ctx N           context per sequence, prompt + completion (default min(model, 4096))\n"
            "  --api-key KEY     require 'Authorization: Bearer KEY' on /v1/*\n"
            "                    (default: $PUZZLE_API_KEY when set)\n"
            "  --queue N         requests waiting beyond what free slots take, before 503 (default 256)\n"
            "  --timeout S       idle/stalled connection timeout, seconds (default 30)\n"
            "  --drain S         on SIGTERM, seconds to let accepted requests finish (default 60)\n"
            "  --name NAME       model id in /v1/models and responses (default: MODEL's file name)\n"
            "  --chat-template F chat format: chatml, llama3, llama2, mistral, gemma, phi3, zephyr,\n"
            "                    deepseek-r1\n"
            "                    (default: recognized from the model's template; chatml without one)\n"
            "  --dtype f32|bf16|fp8  weight type in memory (default bf16; fp8: e4m3 with tensor\n"
            "                    scales, an FP8 checkpoint as stored or quantized at load, docs/FP8.md)\n"
            "  --kv-dtype f32|bf16|fp8  KV cache element type (default bf16, as vLLM's 'auto'\n"
            "                    for a bf16 model; fp8 with the checkpoint's k_scale / v_scale)\n"
            "  --device cpu|cuda where the engine runs (default cpu)\n"
            "  --separate-steps  decode rows and prompt chunks in two engine calls per step\n"
            "                    (default: one call where the engine's results are the same)\n"
            "  --tp N            tensor parallel over N processes, one per rank (CPU: mpirun -np N;\n"
            "                    CUDA: one per GPU with --tp-init file:PATH|tcp:HOST:PORT); rank 0\n"
            "                    serves HTTP, the others follow its engine (docs/TP.md)\n");
}

int pz_cmd_serve(int argc, char **argv) {
    const char *path = NULL, *host = "127.0.0.1", *api_key = getenv("PUZZLE_API_KEY"), *name = NULL;
    const char *chat_template = NULL;
    long tp = 1;
    const char *tp_init = NULL;
    long port = 8080, threads = 0, max_seqs = 32, kv_tokens = 0, ctx = 0, queue = 256, timeout = 30, drain = 60;
    // bf16 KV by default: half the bytes that decode attention reads per step
    // (16 streams at 256 tokens: +15 % throughput, results/serve_cpu.md), and
    // what vLLM ('auto': the model dtype) and llama-server (f16) keep.
    pz_dt wtype = PZ_DT_BF16, kvt = PZ_DT_BF16;
    pz_backend_kind device = PZ_BACKEND_CPU;
    const char *cmd = "serve";
    int separate_steps = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        struct {
            const char *opt;
            long lo, hi, *out;
        } ints[] = {{"--port", 0, 65535, &port},        {"--threads", 0, 1024, &threads},
                    {"--max-seqs", 1, 512, &max_seqs}, {"--kv-tokens", 16, 1L << 26, &kv_tokens},
                    {"--ctx", 16, 1L << 22, &ctx},      {"--queue", 0, 1 << 20, &queue},
                    {"--timeout", 1, 3600, &timeout},   {"--drain", 0, 86400, &drain}};
        int matched = 0;
        for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
            if (!strcmp(a, ints[k].opt)) {
                if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, ints[k].lo, ints[k].hi, ints[k].out))
                    return PZ_EXIT_USAGE;
                matched = 1;
            }
        if (matched) continue;
        int t = pz_arg_tp(cmd, argc, argv, &i, &tp, &tp_init);
        if (t < 0) return PZ_EXIT_USAGE;
        if (t) continue;
        if (!strcmp(a, "--host")) {
            if (!(host = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--api-key")) {
            if (!(api_key = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--name")) {
            if (!(name = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--chat-template")) {
            if (!(chat_template = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--separate-steps")) {
            separate_steps = 1;
        } else if (!strcmp(a, "--kv-dtype")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_wtype(cmd, v, &kvt)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--dtype")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_wtype(cmd, v, &wtype)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--device")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
            if (pz_backend_kind_parse(v, &device)) {
                fprintf(stderr, "puzzle serve: --device wants cpu or cuda, got '%s'\n", v);
                return PZ_EXIT_USAGE;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "puzzle serve: unknown option '%s'\n", a);
            return PZ_EXIT_USAGE;
        } else if (!path) {
            path = a;
        } else {
            fprintf(stderr, "puzzle serve: one MODEL only ('%s' is extra)\n", a);
            return PZ_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "puzzle serve: MODEL is missing\n");
        pz_usage_serve(stderr);
        return PZ_EXIT_USAGE;
    }
    if (api_key && !*api_key) api_key = NULL;
    char model_name[256];
    if (name) {
        snprintf(model_name, sizeof model_name, "%s", name);
    } else {  // the file or directory name, without a trailing slash
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s", path);
        size_t n = strlen(tmp);
        while (n > 1 && tmp[n - 1] == '/') tmp[--n] = 0;
        snprintf(model_name, sizeof model_name, "%s", basename(tmp));
    }

    char err[PZ_ERRLEN];
    int rc = PZ_EXIT_FAIL;
    pz_metrics metrics;
    pz_metrics_init(&metrics);
    pz_tokenizer *tok = NULL;
    pz_model *m = NULL;
    pz_engine *e = NULL;
    pz_sched *s = NULL;
    pz_server *sv = NULL;
    pz_comm *comm = NULL;
    pz_backend *tpb = NULL;
    int tp_loaded = 0;  // tensor parallel: every rank got its shard (pz_cli_tp_loaded)
    signal(SIGPIPE, SIG_IGN);
    pz_install_stop_signals();
    if (pz_cli_tp_open((int)tp, device, (int)threads, tp_init, &comm, &tpb, err)) goto fail;
    int follower = comm && comm->rank != 0;  // tensor parallel: only rank 0 serves
    if (follower) {
        // Rank 0 drains and then frees its engine, which releases this one:
        // the launcher's forwarded SIGINT/SIGTERM must not end it first.
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
    }
    pz_server_params sp = {.host = host, .port = (int)port, .api_key = api_key, .model_name = model_name,
                           .timeout_s = (int)timeout};
    if (!follower && !(sv = pz_server_start(sp, &metrics, err))) goto fail;
    if (!follower)
        fprintf(stderr, "puzzle serve: listening on http://%s%s%s:%d (loading %s)\n",
                strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", pz_server_port(sv), path);
    double t0 = pz_now();
    if (!(tok = pz_tokenizer_load(path, err))) goto fail;
    // a template of no known family is refused here, not rendered as something else
    if (chat_template ? pz_tokenizer_set_chat_format(tok, chat_template, err) != 0 : !pz_tokenizer_chat_format(tok)) {
        if (!chat_template)
            pz_err(err, "%s: the model's chat template is of no family puzzle renders; name one with "
                   "--chat-template (%s)", path, pz_chat_family_list());
        goto fail;
    }
    if (!(m = comm ? pz_model_load_shard(path, wtype, comm->size, comm->rank, PZ_ENGINE_TP_ALIGN, err)
                   : pz_model_load(path, wtype, err)))  // tensor parallel: only this rank's shard
        goto fail;
    if (pz_tokenizer_vocab_size(tok) > m->cfg.vocab) {
        pz_err(err, "%s: tokenizer has %d tokens but the model's vocabulary is %d", path, pz_tokenizer_vocab_size(tok),
               m->cfg.vocab);
        goto fail;
    }
    pz_engine_params ep = pz_engine_default_params();
    ep.n_threads = (int)threads;
    ep.n_slots = (int)max_seqs;
    if (ctx) {
        if (ctx > m->cfg.max_ctx) {
            pz_err(err, "--ctx %ld exceeds the model's context of %d", ctx, m->cfg.max_ctx);
            goto fail;
        }
        ep.max_ctx = (int)ctx;
    }
    if (!kv_tokens) {  // every sequence can fill its context, up to 32768 tokens in all
        long c = ctx ? ctx : (m->cfg.max_ctx < 4096 ? m->cfg.max_ctx : 4096);
        kv_tokens = max_seqs * c < 32768 ? max_seqs * c : 32768;
        if (kv_tokens < c + PZ_KV_PAGE * 8) kv_tokens = c + PZ_KV_PAGE * 8;
    }
    ep.kv_pages = (int)((kv_tokens + PZ_KV_PAGE - 1) / PZ_KV_PAGE);
    ep.prefix_cache = 1;
    ep.batch_invariant = 1;  // a request's tokens do not depend on what it is batched with
    ep.backend = device;
    ep.kv_type = kvt;
    ep.comm = comm;
    if (pz_cli_tp_loaded(comm, err)) goto fail;
    tp_loaded = 1;
    if (!(e = pz_engine_create(m, ep, err))) goto fail;
    if (follower) {
        if (pz_engine_follow(e, err)) goto fail;
        rc = PZ_EXIT_OK;
        goto done;
    }
    pz_sched_params pp = {.max_queue = (int)queue, .prefill_chunk = 256, .separate_steps = separate_steps};
    if (!(s = pz_sched_create(e, tok, &metrics, model_name, pp, err))) goto fail;
    pz_server_ready(sv, s, tok);
    pz_kv_stats st;
    pz_engine_kv_stats(e, &st);
    fprintf(stderr,
            "puzzle serve: ready in %.1f s: %s (%s weights, %s), %d sequences, context %d, KV pool %d pages x %d tokens "
            "(%.1f MiB%s), chat format %s\n",
            pz_now() - t0, model_name, pz_dt_name(wtype), pz_backend_kind_name(device), pz_engine_n_slots(e),
            pz_engine_max_ctx(e), st.pages_total, st.page_tokens, pz_engine_kv_bytes(e) / 1048576.0,
            comm ? " per rank, tensor parallel" : "",
            pz_chat_family_name(pz_chat_format_family(pz_tokenizer_chat_format(tok))));
    if (comm) fprintf(stderr, "puzzle serve: tensor parallel over %d ranks (%s)\n", comm->size, comm->name);
    // Tensor parallel: a failed rank fails the request in flight (an error
    // reply) and every later engine call; a group missing a rank cannot go
    // on, so the server stops and exits non-zero.
    while (!pz_stop_signal && !(comm && comm->health != PZ_COMM_OK)) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (comm && comm->health != PZ_COMM_OK) {
        pz_server_drain(sv, 2.0);  // the replies already failed go out; the rest fail fast
        pz_server_stop(sv);
        sv = NULL;
        pz_sched_free(s);  // the engine thread is gone: its message can be read
        s = NULL;
        const char *why = pz_engine_tp_error(e);
        snprintf(err, sizeof err, "%.*s; the server stops", PZ_ERRLEN - 32, why ? why : "tensor parallel: the job failed");
        goto fail;
    }
    fprintf(stderr, "puzzle serve: %s: draining (at most %ld s)\n", pz_stop_signal == SIGINT ? "SIGINT" : "SIGTERM",
            drain);
    int drained = pz_server_drain(sv, (double)drain);
    fprintf(stderr, "puzzle serve: %s\n", drained ? "drained, exiting" : "drain timed out; unfinished requests cancelled");
    rc = PZ_EXIT_OK;
    goto done;
fail:
    pz_cli_tp_fail("serve", comm, tp_loaded, err);
done:
    pz_server_stop(sv);  // before the scheduler: connection threads hold jobs
    pz_sched_free(s);
    pz_engine_free(e);
    pz_model_free(m);
    pz_tokenizer_free(tok);
    pz_comm_free(comm);
    if (tpb) pz_backend_free(tpb);
    pz_metrics_destroy(&metrics);
    return rc;
}
