// config.c — Hugging Face config.json (LlamaForCausalLM, DeciLM /
// nemotron-nas) to and from pz_config, plus validation and size totals.
//
// The JSON is hostile input: every number is checked for type, range and
// integrality before it becomes an int, and anything we cannot run (biases,
// other activations, other RoPE scalings, sliding windows) is refused by name
// rather than silently ignored, since a wrong guess produces plausible
// nonsense rather than an error.
#include "config.h"
#include "common.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIM (1 << 20)     // hidden, head_dim, n_ff: far above any real model
#define MAX_HEADS 4096
#define MAX_VOCAB (1 << 24)
#define MAX_CTX (1 << 30)

const char *pz_attn_kind_name(pz_attn_kind k) {
    switch (k) {
    case PZ_ATTN_GQA: return "gqa";
    case PZ_ATTN_LINEAR: return "linear";
    case PZ_ATTN_NOOP: return "noop";
    }
    return "?";
}

const char *pz_ffn_kind_name(pz_ffn_kind k) {
    switch (k) {
    case PZ_FFN_SWIGLU: return "swiglu";
    case PZ_FFN_LINEAR: return "linear";
    case PZ_FFN_NOOP: return "noop";
    }
    return "?";
}

int pz_attn_kind_parse(const char *s, pz_attn_kind *out) {
    for (int k = PZ_ATTN_GQA; s && k <= PZ_ATTN_NOOP; k++)
        if (!strcmp(s, pz_attn_kind_name((pz_attn_kind)k))) return *out = (pz_attn_kind)k, 0;
    return -1;
}

int pz_ffn_kind_parse(const char *s, pz_ffn_kind *out) {
    for (int k = PZ_FFN_SWIGLU; s && k <= PZ_FFN_NOOP; k++)
        if (!strcmp(s, pz_ffn_kind_name((pz_ffn_kind)k))) return *out = (pz_ffn_kind)k, 0;
    return -1;
}

// HF: _find_multiple(int(2 * ffn_mult * n_embd / 3), 256), in doubles, in
// this order, so the truncation happens exactly where Python's does.
int pz_decilm_ffn_width(double ffn_mult, int hidden) {
    double x = 2.0 * ffn_mult * (double)hidden / 3.0;
    if (!(x >= 0) || x > (double)MAX_DIM) return -1;
    int n = (int)x;
    return (n + 255) / 256 * 256;
}

double pz_decilm_ffn_mult(int n_ff, int hidden) {
    if (n_ff <= 0 || n_ff % 256 != 0 || hidden <= 0 || n_ff > MAX_DIM) return -1;
    // Widths that round up to n_ff: n_ff - 255 <= 2*m*hidden/3 < n_ff + 1.
    double lo = (double)(n_ff - 255) * 3.0 / (2.0 * hidden);
    double scale = 1;
    for (int dec = 0; dec <= 9; dec++, scale *= 10) {
        double m = ceil(lo * scale) / scale;
        for (int k = 0; k < 3; k++, m += 1 / scale)  // guard against rounding at the edges
            if (pz_decilm_ffn_width(m, hidden) == n_ff) return m;
    }
    return -1;
}

// ---- reading --------------------------------------------------------------

typedef struct {
    const char *what;
    char *err;
} ctx;

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static int present(const cJSON *j) { return j && !cJSON_IsNull(j); }

// Reads an integer in [lo, hi]; absent or null leaves *out alone (returns 0)
// unless required.
static int get_int(ctx *c, const cJSON *o, const char *k, int lo, int hi, int required, int *out) {
    const cJSON *j = get(o, k);
    if (!present(j)) return required ? pz_err(c->err, "%s: \"%s\" is missing", c->what, k) : 0;
    double v = cJSON_IsNumber(j) ? j->valuedouble : NAN;
    if (!(v >= lo && v <= hi) || v != floor(v))
        return pz_err(c->err, "%s: \"%s\" must be an integer in [%d, %d]", c->what, k, lo, hi);
    *out = (int)v;
    return 0;
}

static int get_num(ctx *c, const cJSON *o, const char *k, float *out) {
    const cJSON *j = get(o, k);
    if (!present(j)) return 0;
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble) || fabs(j->valuedouble) > 3.0e38)
        return pz_err(c->err, "%s: \"%s\" must be a finite number", c->what, k);
    *out = (float)j->valuedouble;
    return 0;
}

static int get_bool(ctx *c, const cJSON *o, const char *k, int *out) {
    const cJSON *j = get(o, k);
    if (!present(j)) return 0;
    if (!cJSON_IsBool(j)) return pz_err(c->err, "%s: \"%s\" must be true or false", c->what, k);
    *out = cJSON_IsTrue(j);
    return 0;
}

// bos/eos: an int, a list of ints (the first is used), or null.
static int get_token(ctx *c, const cJSON *o, const char *k, int *out) {
    const cJSON *j = get(o, k);
    if (cJSON_IsArray(j)) {
        if (cJSON_GetArraySize(j) == 0) return 0;
        const cJSON *f = cJSON_GetArrayItem(j, 0);
        double v = cJSON_IsNumber(f) ? f->valuedouble : NAN;
        if (!(v >= 0 && v < MAX_VOCAB) || v != floor(v))
            return pz_err(c->err, "%s: \"%s\"[0] must be a token id", c->what, k);
        *out = (int)v;
        return 0;
    }
    return get_int(c, o, k, 0, MAX_VOCAB - 1, 0, out);
}

static int refuse_true(ctx *c, const cJSON *o, const char *k) {
    const cJSON *j = get(o, k);
    if (cJSON_IsTrue(j)) return pz_err(c->err, "%s: \"%s\": true is not supported", c->what, k);
    return 0;
}

static int read_rope(ctx *c, const cJSON *rs, pz_config *cfg) {
    if (!present(rs)) return 0;
    if (!cJSON_IsObject(rs)) return pz_err(c->err, "%s: rope scaling must be an object or null", c->what);
    if (get_num(c, rs, "rope_theta", &cfg->rope_theta)) return -1;  // rope_parameters carries it
    const cJSON *t = get(rs, "rope_type");
    if (!present(t)) t = get(rs, "type");
    const char *type = cJSON_IsString(t) ? t->valuestring : NULL;
    if (!type || strcmp(type, "default") == 0) return 0;
    if (strcmp(type, "llama3") != 0)
        return pz_err(c->err, "%s: rope scaling type \"%.40s\" is not supported (only llama3)", c->what, type);
    cfg->rope_scaling = PZ_ROPE_SCALING_LLAMA3;
    cfg->rope_factor = 8, cfg->rope_low_freq_factor = 1, cfg->rope_high_freq_factor = 4;
    cfg->rope_orig_ctx = 8192;
    if (get_num(c, rs, "factor", &cfg->rope_factor) || get_num(c, rs, "low_freq_factor", &cfg->rope_low_freq_factor) ||
        get_num(c, rs, "high_freq_factor", &cfg->rope_high_freq_factor) ||
        get_int(c, rs, "original_max_position_embeddings", 1, MAX_CTX, 0, &cfg->rope_orig_ctx))
        return -1;
    return 0;
}

static int read_block(ctx *c, const cJSON *b, int i, int n_head, int hidden, pz_layer_spec *L) {
    const cJSON *a = get(b, "attention"), *f = get(b, "ffn");
    if (!cJSON_IsObject(b) || !cJSON_IsObject(a) || !cJSON_IsObject(f))
        return pz_err(c->err, "%s: block_configs[%d] needs \"attention\" and \"ffn\" objects", c->what, i);
    int no_op = 0, linear = 0;
    if (get_bool(c, a, "no_op", &no_op) || get_bool(c, a, "replace_with_linear", &linear)) return -1;
    const char *unsupported[] = {"window_length", "num_sink_tokens", "sparsify"};
    for (int k = 0; k < 3; k++)
        if (present(get(a, unsupported[k])) && !cJSON_IsFalse(get(a, unsupported[k])))
            return pz_err(c->err, "%s: block_configs[%d].attention.%s is not supported", c->what, i, unsupported[k]);
    if (no_op && linear)
        return pz_err(c->err, "%s: block_configs[%d].attention is both no_op and replace_with_linear", c->what, i);
    if (no_op) {
        L->attn = PZ_ATTN_NOOP;
    } else if (linear) {
        L->attn = PZ_ATTN_LINEAR;
    } else {
        const cJSON *jg = get(a, "n_heads_in_group");
        double g = cJSON_IsNumber(jg) ? jg->valuedouble : NAN;
        if (!(g >= 1 && g <= n_head) || g != floor(g))
            return pz_err(c->err, "%s: block_configs[%d].attention.n_heads_in_group must be an integer in [1, %d]",
                          c->what, i, n_head);
        if (n_head % (int)g != 0)
            return pz_err(c->err, "%s: block_configs[%d]: n_heads_in_group %d does not divide %d heads", c->what, i,
                          (int)g, n_head);
        L->attn = PZ_ATTN_GQA;
        L->n_kv = n_head / (int)g;
    }
    no_op = linear = 0;
    if (get_bool(c, f, "no_op", &no_op) || get_bool(c, f, "replace_with_linear", &linear)) return -1;
    if (no_op && linear)
        return pz_err(c->err, "%s: block_configs[%d].ffn is both no_op and replace_with_linear", c->what, i);
    if (no_op) {
        L->ffn = PZ_FFN_NOOP;
    } else if (linear) {
        L->ffn = PZ_FFN_LINEAR;
    } else {
        L->ffn = PZ_FFN_SWIGLU;
        // Our extension: an exact width for sizes ffn_mult cannot express.
        if (present(get(f, "intermediate_size")))
            return get_int(c, f, "intermediate_size", 1, MAX_DIM, 1, &L->n_ff);
        const cJSON *m = get(f, "ffn_mult");
        double mult = cJSON_IsNumber(m) ? m->valuedouble : NAN;
        int w = mult > 0 ? pz_decilm_ffn_width(mult, hidden) : -1;
        if (w <= 0)
            return pz_err(c->err, "%s: block_configs[%d].ffn.ffn_mult must be a positive number giving a width up "
                          "to %d", c->what, i, MAX_DIM);
        L->n_ff = w;
    }
    return 0;
}

static int from_json(pz_config *cfg, const cJSON *root, ctx *c) {
    memset(cfg, 0, sizeof *cfg);
    if (!cJSON_IsObject(root)) return pz_err(c->err, "%s: not a JSON object", c->what);
    cfg->rope_theta = 10000.0f;  // LlamaConfig defaults
    cfg->norm_eps = 1e-6f;
    cfg->max_ctx = 2048;
    cfg->bos_id = cfg->eos_id = -1;
    const cJSON *act = get(root, "hidden_act");
    if (present(act) && !(cJSON_IsString(act) && strcmp(act->valuestring, "silu") == 0))
        return pz_err(c->err, "%s: hidden_act must be \"silu\"", c->what);
    if (refuse_true(c, root, "attention_bias") || refuse_true(c, root, "mlp_bias")) return -1;
    if (get_int(c, root, "num_hidden_layers", 1, PZ_MAX_LAYERS, 1, &cfg->n_layer) ||
        get_int(c, root, "hidden_size", 1, MAX_DIM, 1, &cfg->hidden) ||
        get_int(c, root, "num_attention_heads", 1, MAX_HEADS, 1, &cfg->n_head) ||
        get_int(c, root, "vocab_size", 1, MAX_VOCAB, 1, &cfg->vocab) ||
        get_int(c, root, "max_position_embeddings", 1, MAX_CTX, 0, &cfg->max_ctx) ||
        get_num(c, root, "rope_theta", &cfg->rope_theta) || get_num(c, root, "rms_norm_eps", &cfg->norm_eps) ||
        get_bool(c, root, "tie_word_embeddings", &cfg->tie_embeddings) ||
        get_token(c, root, "bos_token_id", &cfg->bos_id) || get_token(c, root, "eos_token_id", &cfg->eos_id))
        return -1;
    cfg->head_dim = cfg->hidden / cfg->n_head;
    if (get_int(c, root, "head_dim", 1, MAX_DIM, 0, &cfg->head_dim)) return -1;
    const cJSON *qc = get(root, "quantization_config");
    if (present(qc)) {
        const cJSON *qm = get(qc, "quant_method"), *as = get(qc, "activation_scheme");
        int ct = cJSON_IsString(qm) && strcmp(qm->valuestring, "compressed-tensors") == 0;
        if (!ct && (!cJSON_IsString(qm) || strcmp(qm->valuestring, "fp8") != 0))
            return pz_err(c->err, "%s: quantization_config.quant_method must be \"fp8\" or \"compressed-tensors\" "
                          "(the only quantized checkpoints read)", c->what);
        cfg->quant = PZ_DT_E4M3;
        cfg->quant_static = cJSON_IsString(as) && strcmp(as->valuestring, "static") == 0;
        cfg->quant_kv = present(get(qc, "kv_cache_scheme"));
        cfg->quant_channel = 0;
        if (ct) {
            // one config group of 8-bit float weights (llm-compressor's FP8 / FP8_DYNAMIC)
            const cJSON *groups = get(qc, "config_groups"), *g = NULL;
            int ng = 0;
            cJSON_ArrayForEach(g, groups) ng++;
            const cJSON *g0 = ng == 1 ? groups->child : NULL, *wq = g0 ? get(g0, "weights") : NULL;
            const cJSON *ty = get(wq, "type"), *nb = get(wq, "num_bits"), *sg = get(wq, "strategy");
            const cJSON *ia = g0 ? get(g0, "input_activations") : NULL, *dy = get(ia, "dynamic");
            if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "float") || !cJSON_IsNumber(nb) ||
                nb->valueint != 8 || !cJSON_IsString(sg) ||
                (strcmp(sg->valuestring, "tensor") && strcmp(sg->valuestring, "channel")))
                return pz_err(c->err, "%s: quantization_config: only one config group of 8-bit float weights "
                              "with strategy \"tensor\" or \"channel\" is read", c->what);
            cfg->quant_channel = strcmp(sg->valuestring, "channel") == 0;
            cfg->quant_static = present(ia) && cJSON_IsFalse(dy);
        }
    }
    const cJSON *rs = get(root, "rope_scaling");
    if (!present(rs)) rs = get(root, "rope_parameters");
    if (read_rope(c, rs, cfg)) return -1;

    const cJSON *blocks = get(root, "block_configs");
    if (present(blocks)) {
        if (!cJSON_IsArray(blocks) || cJSON_GetArraySize(blocks) != cfg->n_layer)
            return pz_err(c->err, "%s: block_configs must be a list of num_hidden_layers (%d) entries", c->what,
                          cfg->n_layer);
        int i = 0;
        const cJSON *b;
        cJSON_ArrayForEach(b, blocks) {
            if (read_block(c, b, i, cfg->n_head, cfg->hidden, &cfg->layers[i])) return -1;
            i++;
        }
    } else {
        int n_kv = cfg->n_head, n_ff = 0;
        if (get_int(c, root, "num_key_value_heads", 1, MAX_HEADS, 0, &n_kv) ||
            get_int(c, root, "intermediate_size", 1, MAX_DIM, 1, &n_ff))
            return -1;
        for (int i = 0; i < cfg->n_layer; i++)
            cfg->layers[i] = (pz_layer_spec){PZ_ATTN_GQA, n_kv, PZ_FFN_SWIGLU, n_ff};
    }
    char why[PZ_ERRLEN];
    return pz_config_validate(cfg, why) ? pz_err(c->err, "%s: %s", c->what, why) : 0;
}

int pz_config_from_hf_json(pz_config *cfg, const char *json, size_t len, const char *what, char *err) {
    ctx c = {what ? what : "config.json", err};
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return pz_err(err, "%s: not valid JSON", c.what);
    int rc = from_json(cfg, root, &c);
    cJSON_Delete(root);
    return rc;
}

int pz_config_from_hf_file(pz_config *cfg, const char *path, char *err) {
    size_t len;
    char *text = pz_read_file(path, 16u << 20, &len, err);
    if (!text) return -1;
    int rc = pz_config_from_hf_json(cfg, text, len, path, err);
    free(text);
    return rc;
}

// ---- validation and totals -------------------------------------------------

int pz_config_validate(const pz_config *c, char *err) {
    char tmp[PZ_ERRLEN];
    if (c->n_layer < 1 || c->n_layer > PZ_MAX_LAYERS) return pz_err(err, "n_layer %d out of range", c->n_layer);
    if (c->hidden < 1 || c->hidden > MAX_DIM) return pz_err(err, "hidden size %d out of range", c->hidden);
    if (c->n_head < 1 || c->n_head > MAX_HEADS) return pz_err(err, "n_head %d out of range", c->n_head);
    if (c->head_dim < 2 || c->head_dim > MAX_DIM || c->head_dim % 2)
        return pz_err(err, "head_dim %d must be even and positive (RoPE rotates pairs)", c->head_dim);
    if (c->vocab < 1 || c->vocab > MAX_VOCAB) return pz_err(err, "vocab size %d out of range", c->vocab);
    if (c->max_ctx < 1 || c->max_ctx > MAX_CTX) return pz_err(err, "max context %d out of range", c->max_ctx);
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta)) return pz_err(err, "rope_theta must be positive");
    if (!(c->norm_eps > 0) || !(c->norm_eps < 1)) return pz_err(err, "rms_norm_eps must be in (0, 1)");
    if (c->bos_id < -1 || c->bos_id >= c->vocab || c->eos_id < -1 || c->eos_id >= c->vocab)
        return pz_err(err, "bos_token_id %d / eos_token_id %d outside the vocabulary of %d", c->bos_id, c->eos_id, c->vocab);
    if (c->rope_scaling == PZ_ROPE_SCALING_LLAMA3) {
        if (!(c->rope_factor > 0) || !(c->rope_low_freq_factor > 0) ||
            !(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_orig_ctx < 1)
            return pz_err(err, "llama3 rope scaling needs factor > 0, high_freq_factor > low_freq_factor > 0 and "
                          "original_max_position_embeddings > 0");
    } else if (c->rope_scaling != PZ_ROPE_SCALING_NONE) {
        return pz_err(err, "unknown rope scaling %d", (int)c->rope_scaling);
    }
    for (int i = 0; i < c->n_layer; i++) {
        const pz_layer_spec *L = &c->layers[i];
        snprintf(tmp, sizeof tmp, "layer %d", i);
        switch (L->attn) {
        case PZ_ATTN_GQA:
            if (L->n_kv < 1 || c->n_head % L->n_kv != 0)
                return pz_err(err, "%s: %d KV heads do not divide %d heads", tmp, L->n_kv, c->n_head);
            break;
        case PZ_ATTN_LINEAR: case PZ_ATTN_NOOP:
            if (L->n_kv != 0) return pz_err(err, "%s: %s attention must have n_kv 0", tmp, pz_attn_kind_name(L->attn));
            break;
        default: return pz_err(err, "%s: unknown attention kind %d", tmp, (int)L->attn);
        }
        switch (L->ffn) {
        case PZ_FFN_SWIGLU:
            if (L->n_ff < 1 || L->n_ff > MAX_DIM) return pz_err(err, "%s: FFN width %d out of range", tmp, L->n_ff);
            break;
        case PZ_FFN_LINEAR: case PZ_FFN_NOOP:
            if (L->n_ff != 0) return pz_err(err, "%s: %s FFN must have n_ff 0", tmp, pz_ffn_kind_name(L->ffn));
            break;
        default: return pz_err(err, "%s: unknown FFN kind %d", tmp, (int)L->ffn);
        }
    }
    return 0;
}

// Sizes below are bounded by validate()'s limits, so size_t cannot overflow
// on a 64-bit host.
size_t pz_config_n_params(const pz_config *c) {
    size_t h = (size_t)c->hidden, qd = (size_t)c->n_head * (size_t)c->head_dim;
    size_t n = (size_t)c->vocab * h * (c->tie_embeddings ? 1 : 2) + h;  // embeddings, head, final norm
    for (int i = 0; i < c->n_layer; i++) {
        const pz_layer_spec *L = &c->layers[i];
        size_t kvd = (size_t)L->n_kv * (size_t)c->head_dim;
        if (L->attn == PZ_ATTN_GQA) n += h + h * qd + 2 * h * kvd + qd * h;
        else if (L->attn == PZ_ATTN_LINEAR) n += h + h * h;
        if (L->ffn == PZ_FFN_SWIGLU) n += h + 3 * h * (size_t)L->n_ff;
        else if (L->ffn == PZ_FFN_LINEAR) n += h + h * h;
    }
    return n;
}

size_t pz_config_kv_bytes_per_token(const pz_config *c, int bytes_per_elem) {
    size_t n = 0;
    for (int i = 0; i < c->n_layer; i++)
        if (c->layers[i].attn == PZ_ATTN_GQA)
            n += 2 * (size_t)c->layers[i].n_kv * (size_t)c->head_dim * (size_t)bytes_per_elem;
    return n;
}

// ---- writing --------------------------------------------------------------

// The shortest decimal that reads back as the same float, so 1e-5f is written
// as 1e-05 rather than 9.99999974737875e-06.
static cJSON *json_float(float f) {
    char b[48];
    for (int p = 6; p <= 9; p++) {
        snprintf(b, sizeof b, "%.*g", p, (double)f);
        if (strtof(b, NULL) == f) break;
    }
    return cJSON_CreateRaw(b);
}

static cJSON *json_double(double d) {
    char b[48];
    for (int p = 6; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, d);
        if (strtod(b, NULL) == d) break;
    }
    return cJSON_CreateRaw(b);
}

static void add_int(cJSON *o, const char *k, int v) { cJSON_AddItemToObject(o, k, cJSON_CreateNumber(v)); }

// Static per-tensor e4m3 KV scales, as llm-compressor writes them (both FP8 layouts).
static void add_kv_cache_scheme(cJSON *q) {
    cJSON *kv = cJSON_AddObjectToObject(q, "kv_cache_scheme");
    add_int(kv, "num_bits", 8);
    cJSON_AddStringToObject(kv, "type", "float");
    cJSON_AddStringToObject(kv, "strategy", "tensor");
    cJSON_AddBoolToObject(kv, "dynamic", 0);
    cJSON_AddBoolToObject(kv, "symmetric", 1);
}

int pz_config_is_plain_llama(const pz_config *c) {
    if (c->n_layer < 1) return 0;
    for (int i = 0; i < c->n_layer; i++) {
        const pz_layer_spec *L = &c->layers[i];
        if (L->attn != PZ_ATTN_GQA || L->ffn != PZ_FFN_SWIGLU || L->n_kv != c->layers[0].n_kv ||
            L->n_ff != c->layers[0].n_ff)
            return 0;
    }
    return 1;
}

char *pz_config_to_hf_json(const pz_config *c) { return pz_config_to_hf_json_as(c, 0); }

char *pz_config_to_hf_json_as(const pz_config *c, int llama) {
    if (llama && !pz_config_is_plain_llama(c)) return NULL;
    cJSON *r = cJSON_CreateObject();
    if (!r) return NULL;
    cJSON *arch = cJSON_AddArrayToObject(r, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(llama ? "LlamaForCausalLM" : "DeciLMForCausalLM"));
    cJSON_AddStringToObject(r, "model_type", llama ? "llama" : "nemotron-nas");
    add_int(r, "hidden_size", c->hidden);
    add_int(r, "num_hidden_layers", c->n_layer);
    add_int(r, "num_attention_heads", c->n_head);
    if (llama) add_int(r, "num_key_value_heads", c->layers[0].n_kv);
    add_int(r, "head_dim", c->head_dim);
    int max_ff = 0;  // LlamaConfig wants one intermediate_size: the widest
    for (int i = 0; i < c->n_layer; i++)
        if (c->layers[i].n_ff > max_ff) max_ff = c->layers[i].n_ff;
    if (max_ff > 0) add_int(r, "intermediate_size", max_ff);
    add_int(r, "vocab_size", c->vocab);
    add_int(r, "max_position_embeddings", c->max_ctx);
    cJSON_AddItemToObject(r, "rope_theta", json_float(c->rope_theta));
    cJSON_AddItemToObject(r, "rms_norm_eps", json_float(c->norm_eps));
    cJSON_AddBoolToObject(r, "tie_word_embeddings", c->tie_embeddings);
    if (c->bos_id >= 0) add_int(r, "bos_token_id", c->bos_id);
    else cJSON_AddNullToObject(r, "bos_token_id");
    if (c->eos_id >= 0) add_int(r, "eos_token_id", c->eos_id);
    else cJSON_AddNullToObject(r, "eos_token_id");
    cJSON_AddStringToObject(r, "hidden_act", "silu");
    cJSON_AddBoolToObject(r, "attention_bias", 0);
    cJSON_AddBoolToObject(r, "mlp_bias", 0);
    if (c->rope_scaling == PZ_ROPE_SCALING_LLAMA3) {
        cJSON *rs = cJSON_AddObjectToObject(r, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", "llama3");
        cJSON_AddItemToObject(rs, "factor", json_float(c->rope_factor));
        cJSON_AddItemToObject(rs, "low_freq_factor", json_float(c->rope_low_freq_factor));
        cJSON_AddItemToObject(rs, "high_freq_factor", json_float(c->rope_high_freq_factor));
        add_int(rs, "original_max_position_embeddings", c->rope_orig_ctx);
    } else {
        cJSON_AddNullToObject(r, "rope_scaling");
    }
    if (c->quant == PZ_DT_E4M3 && c->quant_channel) {
        // per-channel weight scales: vLLM's Fp8Config reads per-tensor ones
        // only, so the compressed-tensors form llm-compressor writes (its
        // CompressedTensorsW8A8Fp8 scheme reads weight_scale [out, 1])
        cJSON *q = cJSON_AddObjectToObject(r, "quantization_config");
        cJSON_AddStringToObject(q, "quant_method", "compressed-tensors");
        cJSON_AddStringToObject(q, "format", "float-quantized");
        cJSON_AddStringToObject(q, "quantization_status", "compressed");
        cJSON *g0 = cJSON_AddObjectToObject(cJSON_AddObjectToObject(q, "config_groups"), "group_0");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(g0, "targets"), cJSON_CreateString("Linear"));
        cJSON *wq = cJSON_AddObjectToObject(g0, "weights");
        add_int(wq, "num_bits", 8);
        cJSON_AddStringToObject(wq, "type", "float");
        cJSON_AddStringToObject(wq, "strategy", "channel");
        cJSON_AddBoolToObject(wq, "symmetric", 1);
        cJSON_AddBoolToObject(wq, "dynamic", 0);
        cJSON *ia = cJSON_AddObjectToObject(g0, "input_activations");
        add_int(ia, "num_bits", 8);
        cJSON_AddStringToObject(ia, "type", "float");
        cJSON_AddStringToObject(ia, "strategy", c->quant_static ? "tensor" : "token");
        cJSON_AddBoolToObject(ia, "symmetric", 1);
        cJSON_AddBoolToObject(ia, "dynamic", !c->quant_static);
        cJSON_AddItemToArray(cJSON_AddArrayToObject(q, "ignore"), cJSON_CreateString("lm_head"));
        if (c->quant_kv) add_kv_cache_scheme(q);
    } else if (c->quant == PZ_DT_E4M3) {
        // vLLM's Fp8Config (quant_method, activation_scheme, ignored_layers);
        // kv_cache_scheme as llm-compressor writes it (docs/FP8.md)
        cJSON *q = cJSON_AddObjectToObject(r, "quantization_config");
        cJSON_AddStringToObject(q, "quant_method", "fp8");
        cJSON_AddStringToObject(q, "activation_scheme", c->quant_static ? "static" : "dynamic");
        cJSON_AddStringToObject(q, "fmt", "e4m3");
        cJSON *ig = cJSON_AddArrayToObject(q, "ignored_layers");
        cJSON_AddItemToArray(ig, cJSON_CreateString("lm_head"));
        if (c->quant_kv) add_kv_cache_scheme(q);
    }
    cJSON *blocks = llama ? NULL : cJSON_AddArrayToObject(r, "block_configs");
    for (int i = 0; blocks && i < c->n_layer; i++) {
        const pz_layer_spec *L = &c->layers[i];
        cJSON *b = cJSON_CreateObject(), *a = cJSON_AddObjectToObject(b, "attention");
        cJSON *f = cJSON_AddObjectToObject(b, "ffn");
        cJSON_AddItemToArray(blocks, b);
        cJSON_AddBoolToObject(a, "no_op", L->attn == PZ_ATTN_NOOP);
        cJSON_AddBoolToObject(a, "replace_with_linear", L->attn == PZ_ATTN_LINEAR);
        if (L->attn == PZ_ATTN_GQA && L->n_kv > 0) add_int(a, "n_heads_in_group", c->n_head / L->n_kv);
        else cJSON_AddNullToObject(a, "n_heads_in_group");
        cJSON_AddBoolToObject(f, "no_op", L->ffn == PZ_FFN_NOOP);
        cJSON_AddBoolToObject(f, "replace_with_linear", L->ffn == PZ_FFN_LINEAR);
        if (L->ffn == PZ_FFN_SWIGLU) {
            double m = pz_decilm_ffn_mult(L->n_ff, c->hidden);
            if (m > 0) {
                cJSON_AddItemToObject(f, "ffn_mult", json_double(m));
            } else {
                // Not a multiple of 256: other readers get the nearest
                // multiplier, ours the exact width.
                double approx = round(1e6 * 3.0 * L->n_ff / (2.0 * c->hidden)) / 1e6;
                cJSON_AddItemToObject(f, "ffn_mult", json_double(approx));
                add_int(f, "intermediate_size", L->n_ff);
            }
        } else {
            cJSON_AddNullToObject(f, "ffn_mult");
        }
    }
    char *s = cJSON_Print(r);
    cJSON_Delete(r);
    return s;
}

int pz_config_write_hf_file(const pz_config *c, const char *path, char *err) {
    return pz_config_write_hf_file_as(c, path, 0, err);
}

int pz_config_write_hf_file_as(const pz_config *c, const char *path, int llama, char *err) {
    char why[PZ_ERRLEN];
    if (pz_config_validate(c, why) != 0) return pz_err(err, "%s: refusing to write an invalid config: %s", path, why);
    if (llama && !pz_config_is_plain_llama(c))
        return pz_err(err, "%s: a LlamaForCausalLM config needs the same attention and FFN in every layer", path);
    char *s = pz_config_to_hf_json_as(c, llama);
    if (!s) return pz_err(err, "%s: out of memory", path);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(s, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0) ok = 0;
    free(s);
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return pz_err(err, "%s: cannot write", path);
    }
    return 0;
}
