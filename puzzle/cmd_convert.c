// cmd_convert.c — `puzzle convert MODEL --out DIR`: writes any model we can
// load (GGUF or HF) as a Hugging Face DeciLM directory: config.json with
// block_configs, safetensors weights, tokenizer.json + tokenizer_config.json.
// The same writer produces realized children, so converting the parent and
// comparing it with the original (eval --ref) checks the whole path.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "common.h"
#include "model.h"
#include "tokenizer.h"

void pz_usage_convert(FILE *out) {
    fprintf(out,
            "usage: puzzle convert MODEL --out DIR [--dtype f32|bf16|fp8]\n\n"
            "Writes MODEL as a Hugging Face DeciLM directory (config.json with block_configs,\n"
            "model.safetensors, tokenizer.json, tokenizer_config.json). Quantized GGUF weights\n"
            "are dequantized.\n\n"
            "  --out DIR          output directory (created; existing files are replaced)\n"
            "  --dtype f32|bf16|fp8  weight type written (default bf16; fp8: the FP8 checkpoint layout\n"
            "                     of docs/FP8.md without activation scales; `puzzle quantize` calibrates)\n");
}

int pz_cmd_convert(int argc, char **argv) {
    const char *path = NULL, *out = NULL, *cmd = "convert";
    pz_dt wtype = PZ_DT_BF16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--out")) {
            if (!(out = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--dtype")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_wtype(cmd, v, &wtype)) return PZ_EXIT_USAGE;
        } else if (a[0] == '-') {
            fprintf(stderr, "puzzle convert: unknown option '%s'\n", a);
            return PZ_EXIT_USAGE;
        } else if (!path) path = a;
        else {
            fprintf(stderr, "puzzle convert: one MODEL only ('%s' is extra)\n", a);
            return PZ_EXIT_USAGE;
        }
    }
    if (!path || !out) {
        fprintf(stderr, "puzzle convert: %s\n", !path ? "MODEL is missing" : "--out DIR is missing");
        pz_usage_convert(stderr);
        return PZ_EXIT_USAGE;
    }
    char err[PZ_ERRLEN];
    int rc = PZ_EXIT_FAIL;
    pz_tokenizer *tok = NULL;
    pz_model *m = NULL;
    if (!(tok = pz_tokenizer_load(path, err))) goto fail;
    if (!(m = pz_model_load(path, wtype, err))) goto fail;
    if (mkdir(out, 0755) != 0 && !pz_is_dir(out)) {
        pz_err(err, "%s: cannot create the output directory", out);
        goto fail;
    }
    if (pz_model_save_hf(m, out, err) != 0) goto fail;
    if (pz_tokenizer_write_hf(tok, out, err) != 0) goto fail;
    fprintf(stderr, "wrote %s (%d layers, %.1f MB of %s weights)\n", out, m->cfg.n_layer,
            pz_model_weight_bytes(m) / 1e6, pz_dt_name(wtype));
    rc = PZ_EXIT_OK;
    goto done;
fail:
    fprintf(stderr, "puzzle convert: %s\n", err);
done:
    pz_model_free(m);
    pz_tokenizer_free(tok);
    return rc;
}
