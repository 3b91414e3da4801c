// cmd_info.c — `puzzle info MODEL`: the architecture, the per-layer blocks,
// and parameter and KV-cache bytes, from the model's metadata alone (no
// weights are read, so it is instant even for large models).
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "common.h"
#include "config.h"
#include "model.h"

void pz_usage_info(FILE *out) {
    fprintf(out,
            "usage: puzzle info MODEL [--json]\n\n"
            "Describes MODEL (a GGUF file, a Hugging Face directory or its config.json):\n"
            "architecture, each layer's attention and FFN block, parameter count and\n"
            "bytes, and KV-cache bytes per token.\n\n"
            "  --json    machine-readable output\n");
}

static size_t attn_params(const pz_config *c, const pz_layer_spec *l) {
    size_t h = (size_t)c->hidden, q = (size_t)c->n_head * c->head_dim;
    switch (l->attn) {
    case PZ_ATTN_GQA: return h + 2 * h * q + 2 * h * (size_t)l->n_kv * c->head_dim;
    case PZ_ATTN_LINEAR: return h + h * h;
    default: return 0;
    }
}

static size_t ffn_params(const pz_config *c, const pz_layer_spec *l) {
    size_t h = (size_t)c->hidden;
    switch (l->ffn) {
    case PZ_FFN_SWIGLU: return h + 3 * h * (size_t)l->n_ff;
    case PZ_FFN_LINEAR: return h + h * h;
    default: return 0;
    }
}

static void block_name(const pz_layer_spec *l, char *a, char *f, size_t cap) {
    if (l->attn == PZ_ATTN_GQA) snprintf(a, cap, "gqa(kv=%d)", l->n_kv);
    else snprintf(a, cap, "%s", pz_attn_kind_name(l->attn));
    if (l->ffn == PZ_FFN_SWIGLU) snprintf(f, cap, "swiglu(%d)", l->n_ff);
    else snprintf(f, cap, "%s", pz_ffn_kind_name(l->ffn));
}

int pz_cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "puzzle info: unknown option '%s'\n", argv[i]);
            return PZ_EXIT_USAGE;
        } else if (!path) path = argv[i];
        else {
            fprintf(stderr, "puzzle info: one MODEL only ('%s' is extra)\n", argv[i]);
            return PZ_EXIT_USAGE;
        }
    }
    if (!path) {
        pz_usage_info(stderr);
        return PZ_EXIT_USAGE;
    }
    static pz_config c;
    char err[PZ_ERRLEN];
    if (pz_model_load_config(path, &c, err) != 0) {
        fprintf(stderr, "puzzle info: %s\n", err);
        return PZ_EXIT_FAIL;
    }
    size_t h = (size_t)c.hidden;
    size_t embed = (size_t)c.vocab * h, head = c.tie_embeddings ? 0 : (size_t)c.vocab * h;
    size_t total = embed + head + h, kv_elems = 0;
    int n_attn = 0, n_ffn = 0;
    for (int i = 0; i < c.n_layer; i++) {
        total += attn_params(&c, &c.layers[i]) + ffn_params(&c, &c.layers[i]);
        if (c.layers[i].attn == PZ_ATTN_GQA) kv_elems += 2 * (size_t)c.layers[i].n_kv * c.head_dim;
        n_attn += c.layers[i].attn == PZ_ATTN_GQA;
        n_ffn += c.layers[i].ffn == PZ_FFN_SWIGLU;
    }
    struct stat st;
    long long disk = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? (long long)st.st_size : -1;

    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "path", path);
        cJSON_AddNumberToObject(o, "n_layer", c.n_layer);
        cJSON_AddNumberToObject(o, "hidden", c.hidden);
        cJSON_AddNumberToObject(o, "n_head", c.n_head);
        cJSON_AddNumberToObject(o, "head_dim", c.head_dim);
        cJSON_AddNumberToObject(o, "vocab", c.vocab);
        cJSON_AddNumberToObject(o, "max_ctx", c.max_ctx);
        cJSON_AddNumberToObject(o, "rope_theta", c.rope_theta);
        cJSON_AddNumberToObject(o, "norm_eps", c.norm_eps);
        cJSON_AddBoolToObject(o, "tie_embeddings", c.tie_embeddings);
        cJSON_AddNumberToObject(o, "n_params", (double)total);
        cJSON_AddNumberToObject(o, "kv_bytes_per_token_bf16", (double)(kv_elems * 2));
        cJSON *arr = cJSON_AddArrayToObject(o, "layers");
        for (int i = 0; i < c.n_layer; i++) {
            const pz_layer_spec *l = &c.layers[i];
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "attn", pz_attn_kind_name(l->attn));
            cJSON_AddNumberToObject(e, "n_kv", l->n_kv);
            cJSON_AddStringToObject(e, "ffn", pz_ffn_kind_name(l->ffn));
            cJSON_AddNumberToObject(e, "n_ff", l->n_ff);
            cJSON_AddNumberToObject(e, "params", (double)(attn_params(&c, l) + ffn_params(&c, l)));
            cJSON_AddItemToArray(arr, e);
        }
        char *txt = cJSON_PrintUnformatted(o);
        printf("%s\n", txt);
        cJSON_free(txt);
        cJSON_Delete(o);
        return PZ_EXIT_OK;
    }

    printf("model         %s", path);
    if (disk >= 0) printf("  (%.1f MB on disk)", disk / 1e6);
    printf("\nshape         %d layers, hidden %d, %d query heads x %d, vocab %d, context %d\n", c.n_layer, c.hidden,
           c.n_head, c.head_dim, c.vocab, c.max_ctx);
    printf("rope          theta %g%s; RMSNorm eps %g; embeddings %s\n", c.rope_theta,
           c.rope_scaling == PZ_ROPE_SCALING_LLAMA3 ? " (llama3 scaling)" : "", c.norm_eps,
           c.tie_embeddings ? "tied" : "untied");
    printf("blocks        %d attention (gqa), %d swiglu FFN, of %d layers\n", n_attn, n_ffn, c.n_layer);
    printf("parameters    %.2f M  (%.1f MiB in bf16, %.1f MiB in fp32)\n", total / 1e6, total * 2 / 1048576.0,
           total * 4 / 1048576.0);
    printf("KV cache      %zu bytes/token in bf16 (%zu in fp32); %.1f MiB at %d tokens in bf16\n", kv_elems * 2,
           kv_elems * 4, kv_elems * 2.0 * c.max_ctx / 1048576.0, c.max_ctx);
    printf("\n%5s  %-12s %-14s %12s %12s\n", "layer", "attention", "ffn", "params", "KV B/tok");
    for (int i = 0; i < c.n_layer; i++) {
        const pz_layer_spec *l = &c.layers[i];
        char a[32], f[32];
        block_name(l, a, f, sizeof a);
        size_t kv = l->attn == PZ_ATTN_GQA ? 2 * (size_t)l->n_kv * c.head_dim * 2 : 0;
        printf("%5d  %-12s %-14s %12zu %12zu\n", i, a, f, attn_params(&c, l) + ffn_params(&c, l), kv);
    }
    return PZ_EXIT_OK;
}
