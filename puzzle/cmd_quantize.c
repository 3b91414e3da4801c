// cmd_quantize.c — `puzzle quantize MODEL --out DIR --dtype fp8`: writes an
// FP8 checkpoint in the Hugging Face layout vLLM and TensorRT-LLM read
// (docs/FP8.md). Weight scales come from the weights (pz_model_to_e4m3:
// per-tensor amax / 448); with --data, the static activation scales
// (input_scale) and, with --kv-dtype fp8, the KV-cache scales (k_scale,
// v_scale) come from the largest |value| the engine sees at each product's
// input and in the KV cache over windows of calibration text, divided by
// 448 (the max calibration of ModelOpt's and llm-compressor's FP8 recipes).
// Calibration runs the FP8-weight model with fp32 activations.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "engine.h"
#include "fp8.h"
#include "model.h"
#include "tokenizer.h"

void pz_usage_quantize(FILE *out) {
    fprintf(out,
            "usage: puzzle quantize MODEL --out DIR --dtype fp8 [--kv-dtype fp8] [--data FILE]\n"
            "                       [--scales tensor|channel] [--tokens N] [--ctx N] [--threads T]\n\n"
            "Writes MODEL as an FP8 Hugging Face checkpoint (float8_e4m3fn weights with\n"
            "weight_scale; embeddings and lm_head bf16) with quantization_config in config.json.\n\n"
            "  --out DIR          output directory (created)\n"
            "  --dtype fp8        weight type (e4m3, scales amax/448)\n"
            "  --data FILE        calibration text: static input_scale of every FP8 product\n"
            "                     (activation_scheme \"static\"); without it \"dynamic\"\n"
            "  --kv-dtype fp8     also calibrate KV-cache scales (k_scale, v_scale; needs --data)\n"
            "  --scales channel   one weight scale per output channel (weight_scale [out, 1],\n"
            "                     quantization_config in compressed-tensors form); default tensor\n"
            "  --tokens N         calibration tokens (default 4096)\n"
            "  --ctx N            calibration window (default 512)\n"
            "  --threads T        CPU threads (default: all cores)\n");
}

// Sets the model's scales from the calibration maxima (n_layer * PZ_ENGINE_AMAX).
static void apply_amax(pz_model *m, const float *amax, int kv) {
    for (int l = 0; l < m->cfg.n_layer; l++) {
        const float *a = amax + (size_t)l * PZ_ENGINE_AMAX;
        pz_layer_weights *L = &m->layers[l];
#define XS(i) (a[i] > 0 ? a[i] / PZ_E4M3_MAX : 1.0f)
        pz_mat *qkv[] = {&L->wq, &L->wk, &L->wv}, *gu[] = {&L->w_gate, &L->w_up};
        for (int j = 0; j < 3; j++)
            if (qkv[j]->type == PZ_DT_E4M3 && qkv[j]->data) qkv[j]->x_scale = XS(PZ_AMAX_QKV_IN);
        if (L->wo.type == PZ_DT_E4M3 && L->wo.data) L->wo.x_scale = XS(PZ_AMAX_O_IN);
        for (int j = 0; j < 2; j++)
            if (gu[j]->type == PZ_DT_E4M3 && gu[j]->data) gu[j]->x_scale = XS(PZ_AMAX_GU_IN);
        if (L->w_down.type == PZ_DT_E4M3 && L->w_down.data) L->w_down.x_scale = XS(PZ_AMAX_DOWN_IN);
        if (kv && m->cfg.layers[l].attn == PZ_ATTN_GQA) {
            L->k_scale = XS(PZ_AMAX_K);
            L->v_scale = XS(PZ_AMAX_V);
        }
#undef XS
    }
}

int pz_cmd_quantize(int argc, char **argv) {
    const char *path = NULL, *out = NULL, *data = NULL, *cmd = "quantize";
    long tokens = 4096, ctx = 512, threads = 0;
    int per_channel = 0;
    pz_dt wtype = PZ_DT_F32, kvt = PZ_DT_F32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--out")) {
            if (!(out = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--data")) {
            if (!(data = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--dtype") || !strcmp(a, "--kv-dtype")) {
            pz_dt *dst = a[2] == 'd' ? &wtype : &kvt;
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
            if (pz_dt_parse(v, dst) || *dst != PZ_DT_E4M3) {
                fprintf(stderr, "puzzle quantize: %s wants fp8, got '%s'\n", a, v);
                return PZ_EXIT_USAGE;
            }
        } else if (!strcmp(a, "--scales")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
            if (strcmp(v, "tensor") && strcmp(v, "channel")) {
                fprintf(stderr, "puzzle quantize: --scales must be tensor or channel, not %s\n", v);
                return PZ_EXIT_USAGE;
            }
            per_channel = !strcmp(v, "channel");
        } else if (!strcmp(a, "--tokens")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 2, 1L << 30, &tokens))
                return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--ctx")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 2, 1 << 20, &ctx)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--threads")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 0, 1024, &threads)) return PZ_EXIT_USAGE;
        } else if (a[0] == '-') {
            fprintf(stderr, "puzzle quantize: unknown option %s\n", a);
            return PZ_EXIT_USAGE;
        } else if (!path) {
            path = a;
        } else {
            fprintf(stderr, "puzzle quantize: unexpected argument %s\n", a);
            return PZ_EXIT_USAGE;
        }
    }
    if (!path || !out || wtype != PZ_DT_E4M3 || (kvt == PZ_DT_E4M3 && !data)) {
        pz_usage_quantize(stderr);
        return PZ_EXIT_USAGE;
    }
    char err[PZ_ERRLEN] = "";
    int rc = PZ_EXIT_FAIL;
    pz_model *m = NULL;
    pz_tokenizer *tok = NULL;
    pz_engine *e = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    float *amax = NULL;
    double t0 = pz_now();
    if (!(tok = pz_tokenizer_load(path, err))) goto fail;
    if (per_channel) {
        pz_model *f = pz_model_load(path, PZ_DT_F32, err);
        m = f ? pz_model_to_e4m3_ex(f, 1, err) : NULL;
        pz_model_free(f);
    } else {
        m = pz_model_load(path, PZ_DT_E4M3, err);
    }
    if (!m) goto fail;
    if (data) {
        size_t len;
        if (!(text = pz_read_file(data, (size_t)1 << 32, &len, err))) goto fail;
        int n = pz_tokenizer_encode(tok, text, len, 0, &ids, err);
        if (n < 0) goto fail;
        if (n < 2) {
            pz_err(err, "%s: needs at least 2 tokens of text, has %d", data, n);
            goto fail;
        }
        if (n > tokens) n = (int)tokens;
        if (ctx > m->cfg.max_ctx) ctx = m->cfg.max_ctx;
        if (!(amax = calloc((size_t)m->cfg.n_layer * PZ_ENGINE_AMAX, sizeof *amax))) {
            pz_err(err, "out of memory");
            goto fail;
        }
        pz_engine_params ep = pz_engine_default_params();
        ep.max_ctx = (int)ctx;
        ep.max_batch = ctx < 512 ? (int)ctx : 512;
        ep.n_threads = (int)threads;
        ep.amax = amax;
        if (!(e = pz_engine_create(m, ep, err))) goto fail;
        for (int p = 0; p < n; p += (int)ctx) {
            int w = n - p < ctx ? n - p : (int)ctx;
            pz_engine_slot_reset(e, 0);
            if (pz_engine_prefill(e, 0, ids + p, w, NULL, 0, err)) goto fail;
            double dt = pz_now() - t0;
            fprintf(stderr, "\rcalibration: %d / %d tokens, %.0f tok/s", p + w, n, (p + w) / (dt > 0 ? dt : 1));
        }
        fprintf(stderr, "\n");
        apply_amax(m, amax, kvt == PZ_DT_E4M3);
    }
    if (pz_model_save_hf(m, out, err) || pz_tokenizer_write_hf(tok, out, err)) goto fail;
    fprintf(stderr, "wrote %s: fp8 weights (%.1f MB), activation scales %s, KV scales %s, in %.1f s\n", out,
            pz_model_weight_bytes(m) / 1e6, data ? "static (calibrated)" : "dynamic (none written)",
            kvt == PZ_DT_E4M3 ? "calibrated" : "none", pz_now() - t0);
    rc = PZ_EXIT_OK;
    goto done;
fail:
    fprintf(stderr, "puzzle quantize: %s\n", err);
done:
    pz_engine_free(e);
    pz_model_free(m);
    pz_tokenizer_free(tok);
    free(text);
    free(ids);
    free(amax);
    return rc;
}
