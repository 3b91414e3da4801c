// cmd_realize.c — `puzzle realize --db RUN.db --solution ID --out DIR`:
// writes a search solution's child as a Hugging Face DeciLM directory
// (config.json with block_configs, safetensors, tokenizer files) from the
// parent and the library's block files (blocklib/realize.h), optionally as
// GGUF too, and records it in the run database as a child model.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "common.h"
#include "model.h"
#include "realize.h"
#include "rundb.h"
#include "tokenizer.h"
#include "weights.h"

void pz_usage_realize(FILE *out) {
    fprintf(out,
            "usage: puzzle realize --db RUN.db --solution ID --out DIR [--gguf FILE] [--dtype f32|bf16|fp8]\n"
            "                      [--scales tensor|channel] [--parent PATH]\n\n"
            "Writes solution ID (puzzle solutions lists them) as a Hugging Face DeciLM directory:\n"
            "config.json with block_configs, model.safetensors, tokenizer.json, tokenizer_config.json.\n"
            "The parent's unchanged sub-blocks, embeddings and head are copied; replaced sub-blocks come\n"
            "from the library's block files, each checked against its recorded sha256. The child is\n"
            "recorded in the run database (models, role 'child', with its solution id).\n\n"
            "  --out DIR      output directory (created; existing files are replaced)\n"
            "  --gguf FILE    also write a GGUF file (architecture llama or deci)\n"
            "  --dtype        weight type written: bf16 (default), f32, or fp8 (the FP8 checkpoint\n"
            "                 layout of docs/FP8.md: e4m3 weights with weight_scale; no GGUF)\n"
            "  --scales       fp8 weight scales: tensor (default; one per matrix) or channel (one per\n"
            "                 output channel, weight_scale [out, 1], as puzzle quantize --scales channel)\n"
            "  --parent PATH  the parent model, when it has moved since the library was built\n");
}

// A block's file, resolved, after checking it against the recorded sha256.
static int block_file(pz_rundb *db, const char *block_id, char *path, size_t cap, char *err) {
    pz_rundb_block_state st;
    if (pz_rundb_get_block_state(db, block_id, &st, err)) return -1;
    if (!st.found || !st.done || !st.weight_file[0])
        return pz_err(err, "block %s has no finished weight file in the library", block_id);
    pz_rundb_resolve(db, st.weight_file, path, cap);
    char got[65];
    if (pz_sha256_file(path, got, err)) return -1;
    if (st.sha256[0] && strcmp(st.sha256, got))
        return pz_err(err, "%s: sha256 %.12s... differs from the library's %.12s... (the file changed since "
                           "build-library; rebuild the block)", path, got, st.sha256);
    return 0;
}

static int record_child(pz_rundb *db, const char *dir, long solution, const pz_model *m, char *err) {
    pz_rundb_model id;
    if (pz_rundb_model_identity(dir, &m->cfg, &id, err)) return -1;
    return pz_rundb_add_child(db, &id, &m->cfg, solution, err);
}

int pz_cmd_realize(int argc, char **argv) {
    const char *cmd = "realize", *dbp = NULL, *out = NULL, *gguf = NULL, *ppath_opt = NULL, *v;
    long sol = 0;
    pz_dt wtype = PZ_DT_BF16;
    int per_channel = -1;  // -1: --scales not given
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--db")) {
            if (!(dbp = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--out")) {
            if (!(out = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--gguf")) {
            if (!(gguf = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--parent")) {
            if (!(ppath_opt = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--solution")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_int(cmd, a, v, 1, 1L << 62, &sol))
                return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--dtype")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i)) || pz_arg_wtype(cmd, v, &wtype)) return PZ_EXIT_USAGE;
        } else if (!strcmp(a, "--scales")) {
            if (!(v = pz_arg_value(cmd, argc, argv, &i))) return PZ_EXIT_USAGE;
            if (strcmp(v, "tensor") && strcmp(v, "channel")) {
                fprintf(stderr, "puzzle realize: --scales must be tensor or channel, not %s\n", v);
                return PZ_EXIT_USAGE;
            }
            per_channel = !strcmp(v, "channel");
        } else {
            fprintf(stderr, "puzzle realize: unknown %s '%s'\n", a[0] == '-' ? "option" : "argument", a);
            return PZ_EXIT_USAGE;
        }
    }
    if (!dbp || !sol || (!out && !gguf)) {
        fprintf(stderr, "puzzle realize: %s is missing (see puzzle realize --help)\n",
                !dbp ? "--db" : !sol ? "--solution ID" : "--out DIR");
        return PZ_EXIT_USAGE;
    }
    if (per_channel >= 0 && wtype != PZ_DT_E4M3) {
        fprintf(stderr, "puzzle realize: --scales goes with --dtype fp8\n");
        return PZ_EXIT_USAGE;
    }
    char err[PZ_ERRLEN];
    int rc = PZ_EXIT_FAIL;
    pz_rundb *db = NULL;
    pz_model *parent = NULL, *child = NULL;
    pz_tokenizer *tok = NULL;
    pz_rundb_solution_layer *rows = NULL;
    pz_realize_layer *layers = NULL;
    char (*files)[2][1024] = NULL;
    double t0 = pz_now();

    if (!(db = pz_rundb_open(dbp, 0, err))) goto fail;
    pz_rundb_model prow;
    int found = pz_rundb_get_parent(db, &prow, err);
    if (found <= 0) {
        if (!found) pz_err(err, "%s has no parent model", dbp);
        goto fail;
    }
    const char *ppath = ppath_opt ? ppath_opt : prow.path;
    pz_config pcfg;
    pz_rundb_model want;
    if (pz_model_load_config(ppath, &pcfg, err)) {
        if (!ppath_opt) snprintf(err + strlen(err), PZ_ERRLEN - strlen(err), " (pass the parent with --parent)");
        goto fail;
    }
    if (pz_rundb_model_identity(ppath, &pcfg, &want, err)) goto fail;
    if (strcmp(want.identity, prow.identity) || strcmp(want.config_hash, prow.config_hash)) {
        pz_err(err, "%s is not the parent of %s", ppath, dbp);
        goto fail;
    }
    int n_layer = pcfg.n_layer;
    layers = calloc((size_t)n_layer, sizeof *layers);
    files = calloc((size_t)n_layer, sizeof *files);
    unsigned char seen[PZ_MAX_LAYERS] = {0};
    if (!layers || !files) {
        pz_err(err, "out of memory");
        goto fail;
    }
    int n_rows = 0, n_changed = 0;
    if (pz_rundb_solution_layers(db, sol, &rows, &n_rows, err)) goto fail;
    for (int i = 0; i < n_rows; i++) {
        const pz_rundb_solution_layer *row = &rows[i];
        int l = row->layer;
        if (l < 0 || l >= n_layer || seen[l]) {
            pz_err(err, "solution %ld has a bad layer row (layer %d)", sol, l);
            goto fail;
        }
        pz_realize_layer *L = &layers[l];
        seen[l] = 1;
        L->attn = row->attn, L->ffn = row->ffn;
        // A changed half with a library block takes the block's file; the
        // parent's own halves and noops take none.
        for (int h = 0; h < 2; h++) {
            int is_parent = h ? row->ffn_is_parent : row->attn_is_parent;
            const char *blk = h ? row->ffn_block : row->attn_block;
            int noop = h ? L->ffn.ffn == PZ_FFN_NOOP : L->attn.attn == PZ_ATTN_NOOP;
            if (is_parent) continue;
            n_changed++;
            if (noop) continue;
            if (!*blk) {
                pz_err(err, "solution %ld layer %d: a changed %s without a library block", sol, l,
                       h ? "FFN" : "attention");
                goto fail;
            }
            if (h && L->attn_file && !strcmp(blk, row->attn_block))  // a coupled block: checked once
                snprintf(files[l][1], sizeof files[l][1], "%s", files[l][0]);
            else if (block_file(db, blk, files[l][h], sizeof files[l][h], err))
                goto fail;
            if (h) L->ffn_file = files[l][h];
            else L->attn_file = files[l][h];
        }
    }
    if (n_rows == 0) {
        pz_err(err, "no solution %ld in %s (puzzle solutions lists them)", sol, dbp);
        goto fail;
    }
    if (n_rows != n_layer) {
        pz_err(err, "solution %ld has %d layer rows, the parent %d layers", sol, n_rows, n_layer);
        goto fail;
    }
    fprintf(stderr, "realize: solution %ld, %d of %d sub-blocks changed; loading the parent %s\n", sol, n_changed,
            2 * n_layer, ppath);
    if (!(tok = pz_tokenizer_load(ppath, err))) goto fail;
    // fp8: the child is realized in f32 and quantized as a whole (scales of
    // its own weights, per tensor or per output channel, BLD-trained blocks
    // included), as puzzle quantize does a model
    if (!(parent = pz_model_load(ppath, wtype == PZ_DT_E4M3 ? PZ_DT_F32 : wtype, err))) goto fail;
    if (!(child = pz_realize_child(parent, layers, err))) goto fail;
    pz_model_free(parent);
    parent = NULL;
    if (wtype == PZ_DT_E4M3) {
        pz_model *q = pz_model_to_e4m3_ex(child, per_channel > 0, err);
        if (!q) goto fail;
        pz_model_free(child);
        child = q;
    }
    if (out) {
        if (mkdir(out, 0755) != 0 && !pz_is_dir(out)) {
            pz_err(err, "%s: cannot create the output directory", out);
            goto fail;
        }
        if (pz_model_save_hf(child, out, err) || pz_tokenizer_write_hf(tok, out, err)) goto fail;
    }
    if (gguf && pz_model_save_gguf(child, tok, gguf, err)) goto fail;
    if (out && record_child(db, out, sol, child, err)) goto fail;
    pz_rundb_event(db, "realize", "finish", "solution %ld -> %s%s%s", sol, out ? out : "", out && gguf ? ", " : "",
                   gguf ? gguf : "");
    fprintf(stderr, "wrote %s%s%s: %d layers, %d sub-blocks changed, %.2f M parameters (parent %.2f M), %.1f MB of %s "
                    "weights, in %.1f s\n",
            out ? out : "", out && gguf ? " and " : "", gguf ? gguf : "", n_layer, n_changed,
            pz_config_n_params(&child->cfg) / 1e6, pz_config_n_params(&pcfg) / 1e6, pz_model_weight_bytes(child) / 1e6,
            pz_dt_name(wtype), pz_now() - t0);
    rc = PZ_EXIT_OK;
    goto out;
fail:
    fprintf(stderr, "puzzle realize: %s\n", err);
out:
    free(rows);
    free(layers);
    free(files);
    pz_model_free(parent);
    pz_model_free(child);
    pz_tokenizer_free(tok);
    pz_rundb_close(db);
    return rc;
}
