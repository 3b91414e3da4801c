// cmd_generate.c — `puzzle generate MODEL -p TEXT`: prefill the prompt, then
// sample and stream tokens to stdout until -n tokens, end of sequence or
// Ctrl-C. Timing goes to stderr so stdout holds only the text.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "comm.h"
#include "common.h"
#include "engine.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

void pz_usage_generate(FILE *out) {
    fprintf(out,
            "usage: puzzle generate MODEL -p TEXT [options]\n\n"
            "Streams a continuation of TEXT to standard output (greedy at --temp 0).\n\n"
            "  -p, --prompt TEXT   the prompt (special tokens such as <|im_start|> are parsed)\n"
            "  -n N                tokens to generate (default 128)\n"
            "  --temp T            sampling temperature, 0 = greedy (default 0)\n"
            "  --top-p P           nucleus sampling mass (default 1)\n"
            "  --seed S            random seed for sampling (default 1)\n"
            "  --chat              wrap the prompt as a user turn in the model's chat format\n"
            "  --system TEXT       system message for --chat\n"
            "  --dtype f32|bf16|fp8  weight type in memory (default bf16; fp8: e4m3, quantized at load)\n"
            "  --kv-dtype f32|bf16|fp8  KV cache element type (default bf16, as puzzle serve)\n"
            "  --fp8-head          with --dtype fp8: lm_head in e4m3 too (default bf16)\n"
            "  --threads T         CPU threads (default: all cores)\n"
            "  --ignore-eos        keep going past the end-of-sequence token\n"
            "  --device cpu|cuda   where the engine runs (default cpu)\n"
            "  --tp N              tensor parallel over N processes, one per rank (CPU: mpirun -np N;\n"
            "                      CUDA: one per GPU with --tp-init file:PATH|tcp:HOST:PORT); rank 0\n"
            "                      prints (docs/TP.md)\n");
}

static volatile sig_atomic_t interrupted = 0;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

int pz_cmd_generate(int argc, char **argv) {
    const char *path = NULL, *prompt = NULL, *system_msg = NULL;
    long n_gen = 128, seed = 1, threads = 0, tp = 1;
    const char *tp_init = NULL;
    double temp = 0, top_p = 1;
    int chat = 0, ignore_eos = 0;
    pz_dt wtype = PZ_DT_BF16, kvt = PZ_DT_BF16;  // serve's defaults: serve == generate
    pz_backend_kind device = PZ_BACKEND_CPU;
    int head8 = 0;
    const char *cmd = "generate";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int t = pz_arg_tp(cmd, argc, argv, &i, &tp, &tp_init);
        if (t < 0) return PZ_EXIT_USAGE;
        if (t) continue;
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!(prompt = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--system")) {
            if (!(system_msg = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "-n")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 0, 1 << 20, &n_gen)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--seed")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 0, 0x7fffffffL, &seed)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 0, 1024, &threads)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--temp")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 0, 100, &temp)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--top-p")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_float(cmd, a, v, 0, 1, &top_p)) return PZ_EXIT_USAGE;
            if (top_p <= 0) {
                fprintf(stderr, "puzzle generate: --top-p must be > 0\n");
                return PZ_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--fp8-head")) {
            head8 = 1;
        } else if (!strcmp(a, "--kv-dtype")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_wtype(cmd, v, &kvt)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--dtype")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_wtype(cmd, v, &wtype)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--device")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
            if (pz_backend_kind_parse(v, &device)) {
                fprintf(stderr, "puzzle generate: --device wants cpu or cuda, got '%s'\n", v);
                return PZ_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = 1;
        else if (a[0] == '-') {
            fprintf(stderr, "puzzle generate: unknown option '%s'\n", a);
            return PZ_EXIT_USAGE;
        } else if (!path) path = a;
        else {
            fprintf(stderr, "puzzle generate: one MODEL only ('%s' is extra)\n", a);
            return PZ_EXIT_USAGE;
        }
    }
    if (!path || !prompt) {
        fprintf(stderr, "puzzle generate: %s\n", !path ? "MODEL is missing" : "-p TEXT is missing");
        pz_usage_generate(stderr);
        return PZ_EXIT_USAGE;
    }

    char err[PZ_ERRLEN];
    int rc = PZ_EXIT_FAIL;
    pz_tokenizer *tok = NULL;
    pz_model *m = NULL;
    pz_engine *e = NULL;
    int32_t *ids = NULL;
    float *logits = NULL;
    void *scratch = NULL;  // sampler's candidate list, allocated once
    char *text = NULL;
    pz_comm *comm = NULL;
    pz_backend *tpb = NULL;
    int tp_loaded = 0;  // tensor parallel: every rank got its shard (pz_cli_tp_loaded)

    if (pz_cli_tp_open((int)tp, device, (int)threads, tp_init, &comm, &tpb, err)) goto fail;
    if (!(tok = pz_tokenizer_load(path, err))) goto fail;
    if (chat) {
        const char *roles[2] = {"system", "user"}, *contents[2] = {system_msg, prompt};
        int off = system_msg ? 0 : 1;
        if (!(text = pz_tokenizer_chat_render(tok, roles + off, contents + off, 2 - off, 1, err))) goto fail;
    } else if (!(text = strdup(prompt))) {
        pz_err(err, "out of memory");
        goto fail;
    }
    // special tokens parsed, BOS when the model wants it and the text does not start with it
    int n_prompt = pz_tokenizer_encode_prompt(tok, text, strlen(text), &ids, err);
    if (n_prompt < 0) goto fail;
    if (n_prompt == 0) {
        pz_err(err, "the prompt is empty after tokenization");
        goto fail;
    }
    double t0 = pz_now();
    // Tensor parallel: each rank reads only its shard of the weights.
    if (!(m = comm ? pz_model_load_shard(path, wtype, comm->size, comm->rank, PZ_ENGINE_TP_ALIGN, err)
                   : pz_model_load(path, wtype, err)))
        goto fail;
    if (head8 && pz_model_e4m3_head(m, err)) goto fail;
    double t_load = pz_now() - t0;
    if (pz_tokenizer_vocab_size(tok) > m->cfg.vocab) {
        pz_err(err, "%s: tokenizer has %d tokens but the model's vocabulary is %d", path,
               pz_tokenizer_vocab_size(tok), m->cfg.vocab);
        goto fail;
    }
    pz_engine_params ep = pz_engine_default_params();
    ep.n_threads = (int)threads;
    ep.n_slots = 1;
    ep.kv_type = kvt;
    ep.batch_invariant = 1;  // the same products as `puzzle serve`, so its outputs match this bit for bit
    long need = n_prompt + n_gen;
    if (need > m->cfg.max_ctx) {
        pz_err(err, "prompt (%d tokens) + -n %ld exceeds the model's context of %d", n_prompt, n_gen, m->cfg.max_ctx);
        goto fail;
    }
    ep.max_ctx = (int)need;
    ep.comm = comm;
    ep.backend = device;
    if (pz_cli_tp_loaded(comm, err)) goto fail;
    tp_loaded = 1;
    if (!(e = pz_engine_create(m, ep, err))) goto fail;
    if (comm && comm->rank != 0) {  // tensor parallel: the other ranks run rank 0's calls
        if (pz_engine_follow(e, err)) goto fail;
        rc = PZ_EXIT_OK;
        goto done;
    }
    int vocab = m->cfg.vocab;
    logits = malloc((size_t)vocab * sizeof(float));
    scratch = malloc(pz_sampler_scratch_bytes(vocab));
    if (!logits || !scratch) {
        pz_err(err, "out of memory");
        goto fail;
    }

    signal(SIGINT, on_sigint);
    double t1 = pz_now();
    if (pz_engine_prefill(e, 0, ids, n_prompt, logits, 0, err) != 0) goto fail;
    double t_prefill = pz_now() - t1;

    pz_sampler smp = pz_sampler_init((float)temp, (float)top_p, (uint64_t)seed);
    pz_utf8_stream us = {0};
    int32_t stops[8];  // EOS, and with --chat the template's end-of-turn tokens
    int n_stops = chat ? pz_tokenizer_chat_stop_ids(tok, stops, 8) : 0;
    if (!chat && pz_tokenizer_eos(tok) >= 0) stops[n_stops++] = pz_tokenizer_eos(tok);
    int n_done = 0, slot = 0;
    double t2 = pz_now();
    while (n_done < n_gen && !interrupted) {
        int32_t next = pz_sampler_sample_scratch(&smp, logits, vocab, scratch);
        n_done++;
        int stop = 0;
        for (int k = 0; k < n_stops; k++) stop |= next == stops[k];
        if (!ignore_eos && stop) break;
        char piece[256];
        size_t np = pz_tokenizer_stream(tok, &us, next, 1, piece, sizeof piece);
        fwrite(piece, 1, np, stdout);
        fflush(stdout);
        if (n_done >= n_gen) break;
        if (pz_engine_decode(e, &slot, &next, 1, logits, err) != 0) goto fail;
    }
    double t_decode = pz_now() - t2;
    char tail[8];
    fwrite(tail, 1, pz_tokenizer_stream_flush(&us, tail, sizeof tail), stdout);
    printf("\n");
    fflush(stdout);
    fprintf(stderr,
            "%s%s: loaded in %.2f s (%s weights); prompt %d tokens at %.1f tok/s; generated %d tokens at %.1f tok/s\n",
            interrupted ? "interrupted; " : "", path, t_load, pz_dt_name(wtype), n_prompt,
            n_prompt / (t_prefill > 0 ? t_prefill : 1e-9), n_done, n_done / (t_decode > 0 ? t_decode : 1e-9));
    rc = interrupted ? 130 : PZ_EXIT_OK;
    goto done;
fail:
    pz_cli_tp_fail("generate", comm, tp_loaded, err);
done:
    free(logits);
    free(scratch);
    free(ids);
    free(text);
    pz_engine_free(e);
    pz_model_free(m);
    pz_tokenizer_free(tok);
    pz_comm_free(comm);
    if (tpb) pz_backend_free(tpb);
    return rc;
}
