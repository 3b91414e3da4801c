// model.c — see model.h. One table (weight_table) lists every weight of a
// config with its Hugging Face name, its GGUF name and its shape; allocation,
// both loaders and the writer all walk it, so they cannot disagree.
#include "model.h"
#include "common.h"
#include "gguf.h"
#include "safetensors.h"
#include "tensor.h"
#include "fp8.h"
#include "tp_plan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define HUGE_PAGE ((size_t)2 << 20)

typedef struct {
    char hf[96];      // Hugging Face name
    char gg[64];      // GGUF name
    pz_mat *mat;      // matrix slot, or NULL for a norm vector
    float **vec;      // norm vector slot, or NULL
    int rows, cols;   // vectors: rows = 1
    int perm_heads;   // GGUF Q/K: heads whose rows are in adjacent-pair order
    int tied_head;    // lm_head of a tied model: no storage of its own
    char why[64];     // which config values give the shape, for error messages
    int frows, fcols; // the tensor's shape in the file (rows, cols: what is stored; they differ
    int r0, c0;       // in a tensor-parallel shard, which keeps rows/cols from r0/c0 of the file's)
} wdesc;

static int table_cap(const pz_config *c) { return 4 + 9 * c->n_layer; }

// A tensor-parallel shard (m->tp > 1): the sharded matrices of t keep only
// rank m->tp_rank's rows (q/k/v, gate/up) or columns (o_proj, down_proj),
// per runtime/tp_plan.h. The plan was checked when the model was made.
static void shard_table(const pz_model *m, wdesc *t, int n) {
    const int hd = m->cfg.head_dim;
    for (int l = 0; l < m->cfg.n_layer; l++) {
        pz_tp_layer P;
        if (pz_tp_plan_layer(&m->cfg, l, m->tp, m->tp_rank, m->tp_align, &P, NULL)) continue;
        const pz_layer_weights *L = &m->layers[l];
        for (int i = 0; i < n; i++) {
            wdesc *d = &t[i];
            if (!d->mat) continue;
            if (P.attn_mode == PZ_TP_SHARDED) {
                if (d->mat == &L->wq) d->r0 = P.q_head0 * hd, d->rows = P.n_q * hd;
                if (d->mat == &L->wk || d->mat == &L->wv) d->r0 = P.kv_head0 * hd, d->rows = P.n_kv * hd;
                if (d->mat == &L->wo) d->c0 = P.q_head0 * hd, d->cols = P.n_q * hd;
            }
            if (P.ffn_mode == PZ_TP_SHARDED) {
                if (d->mat == &L->w_gate || d->mat == &L->w_up) d->r0 = P.ff0, d->rows = P.n_ff;
                if (d->mat == &L->w_down) d->c0 = P.ff0, d->cols = P.n_ff;
            }
        }
    }
}

// Fills t (table_cap entries) for m; returns the count. Order = arena order.
static int weight_table(pz_model *m, wdesc *t) {
    const pz_config *c = &m->cfg;
    int n = 0, H = c->hidden, hd = c->head_dim;
#define VEC(HF, GG, SLOT) do { wdesc *d = &t[n++]; memset(d, 0, sizeof *d); \
        snprintf(d->hf, sizeof d->hf, "%s", HF); snprintf(d->gg, sizeof d->gg, "%s", GG); \
        d->vec = &(SLOT); d->rows = d->frows = 1; d->cols = d->fcols = H; \
        snprintf(d->why, sizeof d->why, "hidden %d", H); } while (0)
#define MAT(HF, GG, SLOT, R, C, PERM) do { wdesc *d = &t[n++]; memset(d, 0, sizeof *d); \
        snprintf(d->hf, sizeof d->hf, "%s", HF); snprintf(d->gg, sizeof d->gg, "%s", GG); \
        d->mat = &(SLOT); d->rows = d->frows = (R); d->cols = d->fcols = (C); d->perm_heads = (PERM); } while (0)
#define WHY(...) snprintf(t[n - 1].why, sizeof t[n - 1].why, __VA_ARGS__)
    MAT("model.embed_tokens.weight", "token_embd.weight", m->tok_embd, c->vocab, H, 0);
    WHY("vocab %d x hidden %d", c->vocab, H);
    char hf[96], gg[64];
    for (int i = 0; i < c->n_layer; i++) {
        const pz_layer_spec *s = &c->layers[i];
        pz_layer_weights *L = &m->layers[i];
#define NAMES(HFS, GGS) (snprintf(hf, sizeof hf, "model.layers.%d." HFS, i), \
                         snprintf(gg, sizeof gg, "blk.%d." GGS, i))
        if (s->attn != PZ_ATTN_NOOP) {
            NAMES("input_layernorm.weight", "attn_norm.weight");
            VEC(hf, gg, L->attn_norm);
            WHY("the norm of layer %d's %s attention, hidden %d", i, pz_attn_kind_name(s->attn), H);
        }
        if (s->attn == PZ_ATTN_GQA) {
            NAMES("self_attn.q_proj.weight", "attn_q.weight");
            MAT(hf, gg, L->wq, c->n_head * hd, H, c->n_head);
            WHY("%d heads x head dim %d, hidden %d", c->n_head, hd, H);
            NAMES("self_attn.k_proj.weight", "attn_k.weight");
            MAT(hf, gg, L->wk, s->n_kv * hd, H, s->n_kv);
            WHY("%d KV heads x head dim %d, hidden %d", s->n_kv, hd, H);
            NAMES("self_attn.v_proj.weight", "attn_v.weight");
            MAT(hf, gg, L->wv, s->n_kv * hd, H, 0);
            WHY("%d KV heads x head dim %d, hidden %d", s->n_kv, hd, H);
            NAMES("self_attn.o_proj.weight", "attn_output.weight");
            MAT(hf, gg, L->wo, H, c->n_head * hd, 0);
            WHY("hidden %d, %d heads x head dim %d", H, c->n_head, hd);
        } else if (s->attn == PZ_ATTN_LINEAR) {
            NAMES("self_attn.linear_attn.weight", "attn_output.weight");
            MAT(hf, gg, L->wo, H, H, 0);
            WHY("linear attention, hidden %d", H);
        }
        if (s->ffn != PZ_FFN_NOOP) {
            NAMES("post_attention_layernorm.weight", "ffn_norm.weight");
            VEC(hf, gg, L->ffn_norm);
            WHY("the norm of layer %d's %s FFN, hidden %d", i, pz_ffn_kind_name(s->ffn), H);
        }
        if (s->ffn == PZ_FFN_SWIGLU) {
            NAMES("mlp.gate_proj.weight", "ffn_gate.weight");
            MAT(hf, gg, L->w_gate, s->n_ff, H, 0);
            WHY("FFN width %d, hidden %d", s->n_ff, H);
            NAMES("mlp.up_proj.weight", "ffn_up.weight");
            MAT(hf, gg, L->w_up, s->n_ff, H, 0);
            WHY("FFN width %d, hidden %d", s->n_ff, H);
            NAMES("mlp.down_proj.weight", "ffn_down.weight");
            MAT(hf, gg, L->w_down, H, s->n_ff, 0);
            WHY("hidden %d, FFN width %d", H, s->n_ff);
        } else if (s->ffn == PZ_FFN_LINEAR) {
            // GGUF: llama.cpp's deci graph has no linear FFN; the writer stores
            // W as ffn_down of a SwiGLU whose gate is constant (gguf_write.c).
            NAMES("mlp.linear_mlp.weight", "ffn_down.weight");
            MAT(hf, gg, L->w_down, H, H, 0);
            WHY("linear FFN, hidden %d", H);
        }
#undef NAMES
    }
    VEC("model.norm.weight", "output_norm.weight", m->out_norm);
    MAT("lm_head.weight", "output.weight", m->lm_head, c->vocab, H, 0);
    WHY("vocab %d x hidden %d", c->vocab, H);
    t[n - 1].tied_head = c->tie_embeddings;
#undef WHY
#undef VEC
#undef MAT
    if (m->tp > 1) shard_table(m, t, n);
    return n;
}

static size_t elem_bytes(pz_dt t) { return pz_dt_size(t); }

// The stored type of matrix d in a model of weight type wt: an e4m3 model
// keeps the embedding table, and the output head, in bf16 (an embedding is
// a lookup, not a product, and FP8 checkpoints leave lm_head unquantized).
static pz_dt mat_type(const wdesc *d, pz_dt wt) {
    if (wt == PZ_DT_E4M3 && (strcmp(d->hf, "model.embed_tokens.weight") == 0 || strcmp(d->hf, "lm_head.weight") == 0))
        return PZ_DT_BF16;
    return wt;
}

// Assigns every pointer of the table into base (or only measures when base
// is NULL). Each tensor starts 64-byte aligned, except that wk/wv follow wq
// and w_up follows w_gate with no gap, so the engine can run the fused
// products [q;k;v] and [gate;up] as one matmul each.
static size_t layout(wdesc *t, int n, pz_dt wt, char *base) {
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        wdesc *d = &t[i];
        int glued = i > 0 && (strstr(d->hf, "k_proj") || strstr(d->hf, "v_proj") || strstr(d->hf, "up_proj"));
        if (!glued) off = (off + 63) & ~(size_t)63;
        if (d->vec) {
            if (base) *d->vec = (float *)(base + off);
            off += sizeof(float) * (size_t)d->cols;
        } else {
            pz_dt mt = mat_type(d, wt);
            if (base) {
                d->mat->type = mt;
                d->mat->rows = d->rows;
                d->mat->cols = d->cols;
                d->mat->data = d->tied_head ? NULL : base + off;
                d->mat->scale = 1.0f;
                d->mat->x_scale = 0.0f;
                d->mat->ch_scale = NULL;
            }
            if (!d->tied_head) off += elem_bytes(mt) * (size_t)d->rows * (size_t)d->cols;
        }
    }
    return (off + 63) & ~(size_t)63;
}

// pz_model_alloc, or (tp > 1) the storage of rank's shard.
static pz_model *model_alloc(const pz_config *cfg, pz_dt wtype, int tp, int rank, int align, char *err) {
    if (pz_config_validate(cfg, err)) return NULL;
    if (tp > 1) {
        pz_tp_layer P;
        for (int l = 0; l < cfg->n_layer; l++)
            if (pz_tp_plan_layer(cfg, l, tp, rank, align, &P, err)) return NULL;
    }
    if (wtype != PZ_DT_F32 && wtype != PZ_DT_BF16 && wtype != PZ_DT_E4M3) {
        pz_err(err, "unknown weight type %d", (int)wtype);
        return NULL;
    }
    pz_model *m = calloc(1, sizeof *m);
    wdesc *t = NULL;
    if (!m) goto oom;
    m->cfg = *cfg;
    m->wtype = wtype;
    m->tp = tp > 1 ? tp : 1;
    m->tp_rank = tp > 1 ? rank : 0;
    m->tp_align = tp > 1 ? align : 0;
    m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    t = malloc(sizeof *t * (size_t)table_cap(cfg));
    if (!m->layers || !t) goto oom;
    int n = weight_table(m, t);
    m->arena_bytes = layout(t, n, wtype, NULL);
    // 2 MiB-aligned and advised for transparent huge pages: decode streams
    // every weight once per token, and with 4 KiB pages the TLB misses cost
    // a measurable share of the bandwidth.
    m->arena_bytes = (m->arena_bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    m->arena = aligned_alloc(HUGE_PAGE, m->arena_bytes);
    if (!m->arena) goto oom;
#ifdef MADV_HUGEPAGE
    madvise(m->arena, m->arena_bytes, MADV_HUGEPAGE);  // advisory; failure is harmless
#endif
    memset(m->arena, 0, m->arena_bytes);
    layout(t, n, wtype, m->arena);
    if (cfg->tie_embeddings) m->lm_head.data = m->tok_embd.data;
    free(t);
    return m;
oom:
    free(t);
    pz_err(err, "out of memory allocating a model of %zu weight bytes", m ? m->arena_bytes : 0);
    pz_model_free(m);
    return NULL;
}

pz_model *pz_model_alloc(const pz_config *cfg, pz_dt wtype, char *err) {
    return model_alloc(cfg, wtype, 1, 0, 0, err);
}

void pz_model_free(pz_model *m) {
    if (!m) return;
    free(m->head8);
    free(m->chs);
    free(m->arena);
    free(m->layers);
    free(m);
}

size_t pz_model_weight_bytes(const pz_model *m) {
    wdesc *t = malloc(sizeof *t * (size_t)table_cap(&m->cfg));
    if (!t) return 0;
    int n = weight_table((pz_model *)m, t);  // only takes addresses of m's fields
    size_t bytes = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].tied_head) continue;
        if (t[i].mat == &m->lm_head && m->head8) continue;  // counted below
        bytes += (t[i].vec ? 4 : elem_bytes(mat_type(&t[i], m->wtype))) * (size_t)t[i].rows * t[i].cols;
    }
    if (m->head8) bytes += (size_t)m->lm_head.rows * (m->lm_head.cols + 4);
    free(t);
    return bytes;
}

int pz_model_n_weights(const pz_model *m) {
    wdesc *t = malloc(sizeof *t * (size_t)table_cap(&m->cfg));
    if (!t) return 0;
    int n = weight_table((pz_model *)m, t);
    int k = 0;
    for (int i = 0; i < n; i++) k += !t[i].tied_head;
    free(t);
    return k;
}

int pz_model_weight_at(const pz_model *m, int idx, pz_weight_info *out) {
    wdesc *t = malloc(sizeof *t * (size_t)table_cap(&m->cfg));
    if (!t) return -1;
    int n = weight_table((pz_model *)m, t), k = 0, rc = -1;
    for (int i = 0; i < n; i++) {
        if (t[i].tied_head) continue;
        if (k++ != idx) continue;
        memset(out, 0, sizeof *out);
        snprintf(out->name, sizeof out->name, "%s", t[i].hf);
        snprintf(out->gguf_name, sizeof out->gguf_name, "%s", t[i].gg);
        out->rows = t[i].rows;
        out->cols = t[i].cols;
        if (t[i].vec) {
            out->data = *t[i].vec;
            out->type = PZ_DT_F32;
            out->is_matrix = 0;
        } else {
            out->data = t[i].mat->data;
            out->type = t[i].mat->type;
            out->is_matrix = 1;
            out->scale = t[i].mat->scale;
            out->x_scale = t[i].mat->x_scale;
            out->ch_scale = t[i].mat->ch_scale;
        }
        out->bytes = pz_dt_size(out->type) * (size_t)out->rows * out->cols;
        rc = 0;
        break;
    }
    free(t);
    return rc;
}

// ---- storing one converted tensor ---------------------------------------------
// src: frows*fcols fp32 values in the file's row order; stored: rows
// r0.. and columns c0.. of them (all of them but in a shard). perm_heads >
// 0: rows are GGUF adjacent-pair order within each head of hd rows; HF row
// h*hd + j*hd/2 + i comes from file row h*hd + 2i + j.
static void store_f32_rows(const wdesc *d, const float *src, int hd) {
    size_t cols = (size_t)d->cols;
    for (int r = 0; r < d->rows; r++) {
        int from = d->r0 + r;
        if (d->perm_heads > 0) {
            int h = from / hd, w = from % hd, half = hd / 2;
            int j = w / half, i = w % half;
            from = h * hd + 2 * i + j;
        }
        const float *s = src + (size_t)from * d->fcols + d->c0;
        if (d->vec) {
            memcpy(*d->vec, s, sizeof(float) * cols);
        } else if (d->mat->type == PZ_DT_F32) {
            memcpy((float *)d->mat->data + (size_t)r * cols, s, sizeof(float) * cols);
        } else {
            pz_f32_to_bf16_row(s, (uint16_t *)d->mat->data + (size_t)r * cols, cols);
        }
    }
}

// ---- GGUF --------------------------------------------------------------------------
static int gguf_int(const pz_gguf *g, const char *arch, const char *key, int64_t *out, int required,
                    const char *path, char *err) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    if (pz_gguf_get_i64(g, k, out) == 0) return 0;
    pz_gguf_type et;
    uint64_t n;
    if (pz_gguf_get_arr(g, k, &et, &n) == 0 && n > 0 && pz_gguf_arr_i64(g, k, 0, out) == 0) return 0;
    if (required) return pz_err(err, "%s: missing metadata key %s", path, k);
    return 1;
}

// Per-layer value of a key that may be a scalar or a per-layer array.
static int gguf_layer_int(const pz_gguf *g, const char *arch, const char *key, int layer, int n_layer,
                          int64_t dflt, int64_t *out, const char *path, char *err) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    pz_gguf_type et;
    uint64_t n;
    if (pz_gguf_get_arr(g, k, &et, &n) == 0) {
        if (n != (uint64_t)n_layer)
            return pz_err(err, "%s: %s has %llu entries for %d layers", path, k, (unsigned long long)n, n_layer);
        if (pz_gguf_arr_i64(g, k, (uint64_t)layer, out))
            return pz_err(err, "%s: %s is not an integer array", path, k);
        return 0;
    }
    if (pz_gguf_get_i64(g, k, out) == 0) return 0;
    *out = dflt;
    return 0;
}

// Layer i's FFN from its width ff and the kinds our writer records (gguf.h:
// linear and noop FFNs travel as SwiGLU stand-ins). c->layers[i].attn is set.
static int gguf_ffn_kind(const pz_gguf *g, const char *arch, int i, int64_t ff, pz_config *c,
                         const char *path, char *err) {
    pz_layer_spec *L = &c->layers[i];
    char bias[64];
    snprintf(bias, sizeof bias, "blk.%d.ffn_gate.bias", i);
    int has_bias = pz_gguf_find_tensor(g, bias) != NULL;
    pz_gguf_type et;
    uint64_t n;
    pz_ffn_kind kind = ff == 0 ? PZ_FFN_NOOP : PZ_FFN_SWIGLU;
    if (pz_gguf_get_arr(g, PZ_GGUF_FFN_KIND_KEY, &et, &n) == 0) {
        pz_gguf_str ks;
        char name[16];
        if (et != PZ_GGUF_STRING || n != (uint64_t)c->n_layer)
            return pz_err(err, "%s: %s must list a string for each of the %d layers", path, PZ_GGUF_FFN_KIND_KEY,
                          c->n_layer);
        if (pz_gguf_arr_str(g, PZ_GGUF_FFN_KIND_KEY, (uint64_t)i, &ks) || ks.len >= sizeof name)
            return pz_err(err, "%s: %s[%d] is not an FFN kind", path, PZ_GGUF_FFN_KIND_KEY, i);
        memcpy(name, ks.data, ks.len);
        name[ks.len] = 0;
        if (pz_ffn_kind_parse(name, &kind))
            return pz_err(err, "%s: %s[%d] is \"%s\" (swiglu, linear or noop)", path, PZ_GGUF_FFN_KIND_KEY, i, name);
    }
    int64_t want = -1;  // the width the kind implies, when fixed
    if (kind == PZ_FFN_LINEAR) want = c->hidden;
    else if (kind == PZ_FFN_NOOP) want = L->attn == PZ_ATTN_NOOP ? 0 : PZ_GGUF_NOOP_FF;
    if (kind == PZ_FFN_NOOP && ff == 0) want = 0;  // also fine: nothing stored
    if (want >= 0 && ff != want)
        return pz_err(err, "%s: layer %d has a %s FFN (%s) but %s.feed_forward_length is %lld, not %lld", path, i,
                      pz_ffn_kind_name((pz_ffn_kind)kind), PZ_GGUF_FFN_KIND_KEY, arch, (long long)ff, (long long)want);
    if (kind == PZ_FFN_SWIGLU && ff <= 0)
        return pz_err(err, "%s: layer %d has a swiglu FFN but %s.feed_forward_length is %lld", path, i, arch,
                      (long long)ff);
    if (has_bias != (kind == PZ_FFN_LINEAR))
        return pz_err(err, "%s: %s %s, but layer %d's FFN is %s (FFN biases are only the linear-FFN stand-in)",
                      path, bias, has_bias ? "is present" : "is missing", i, pz_ffn_kind_name((pz_ffn_kind)kind));
    L->ffn = kind;
    L->n_ff = kind == PZ_FFN_SWIGLU ? (int)ff : 0;
    return 0;
}

static int gguf_config(const pz_gguf *g, pz_config *c, const char *path, char *err) {
    memset(c, 0, sizeof *c);
    pz_gguf_str s;
    char arch[32];
    if (pz_gguf_get_str(g, "general.architecture", &s) || s.len == 0 || s.len >= sizeof arch)
        return pz_err(err, "%s: missing general.architecture", path);
    memcpy(arch, s.data, s.len);
    arch[s.len] = 0;
    int deci = strcmp(arch, "deci") == 0;
    if (!deci && strcmp(arch, "llama") != 0)
        return pz_err(err, "%s: architecture '%s' is not supported (llama, deci)", path, arch);
    int64_t v;
    if (gguf_int(g, arch, "block_count", &v, 1, path, err)) return -1;
    if (v <= 0 || v > PZ_MAX_LAYERS) return pz_err(err, "%s: block_count %lld out of range", path, (long long)v);
    c->n_layer = (int)v;
    if (gguf_int(g, arch, "embedding_length", &v, 1, path, err)) return -1;
    c->hidden = (int)v;
    // The query head count may be a per-layer array (deci): take the largest.
    int64_t nh = 0;
    for (int i = 0; i < c->n_layer; i++) {
        if (gguf_layer_int(g, arch, "attention.head_count", i, c->n_layer, 0, &v, path, err)) return -1;
        if (v > nh) nh = v;
    }
    if (nh <= 0 || nh > 65536) return pz_err(err, "%s: missing or bad %s.attention.head_count", path, arch);
    c->n_head = (int)nh;
    c->head_dim = c->hidden / c->n_head;
    if (gguf_int(g, arch, "attention.key_length", &v, 0, path, err) == 0) c->head_dim = (int)v;
    if (gguf_int(g, arch, "rope.dimension_count", &v, 0, path, err) == 0 && v != c->head_dim)
        return pz_err(err, "%s: partial rotary embedding (rope.dimension_count %lld, head dim %d) is not supported",
                      path, (long long)v, c->head_dim);
    c->max_ctx = 4096;
    if (gguf_int(g, arch, "context_length", &v, 0, path, err) == 0) c->max_ctx = (int)v;
    char k[128];
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    if (pz_gguf_get_f32(g, k, &c->norm_eps)) return pz_err(err, "%s: missing %s", path, k);
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    if (pz_gguf_get_f32(g, k, &c->rope_theta)) c->rope_theta = 10000.0f;
    if (pz_gguf_find_tensor(g, "rope_freqs.weight"))
        return pz_err(err, "%s: rope_freqs.weight (baked Llama-3 RoPE scaling) is not supported yet", path);
    const pz_gguf_tensor *te = pz_gguf_find_tensor(g, "token_embd.weight");
    if (!te || te->n_dims != 2) return pz_err(err, "%s: missing or malformed token_embd.weight", path);
    if (te->ne[1] < 1 || te->ne[1] > (1u << 24))
        return pz_err(err, "%s: token_embd.weight has %llu rows", path, (unsigned long long)te->ne[1]);
    c->vocab = (int)te->ne[1];
    if (gguf_int(g, arch, "vocab_size", &v, 0, path, err) == 0 && v != c->vocab)
        return pz_err(err, "%s: %s.vocab_size is %lld but token_embd.weight has %d rows", path, arch, (long long)v,
                      c->vocab);
    c->tie_embeddings = pz_gguf_find_tensor(g, "output.weight") == NULL;
    c->bos_id = c->eos_id = -1;
    if (pz_gguf_get_i64(g, "tokenizer.ggml.bos_token_id", &v) == 0) c->bos_id = (int)v;
    if (pz_gguf_get_i64(g, "tokenizer.ggml.eos_token_id", &v) == 0) c->eos_id = (int)v;
    for (int i = 0; i < c->n_layer; i++) {
        int64_t h, kv, ff;
        if (gguf_layer_int(g, arch, "attention.head_count", i, c->n_layer, nh, &h, path, err) ||
            gguf_layer_int(g, arch, "attention.head_count_kv", i, c->n_layer, h, &kv, path, err) ||
            gguf_layer_int(g, arch, "feed_forward_length", i, c->n_layer, -1, &ff, path, err))
            return -1;
        if (ff < 0) return pz_err(err, "%s: missing %s.feed_forward_length", path, arch);
        pz_layer_spec *L = &c->layers[i];
        if (h == 0) L->attn = PZ_ATTN_NOOP;
        else if (kv == 0) L->attn = PZ_ATTN_LINEAR;
        else {
            if (h != nh) return pz_err(err, "%s: layer %d has %lld query heads, others %lld (unsupported)", path, i, (long long)h, (long long)nh);
            L->attn = PZ_ATTN_GQA;
            L->n_kv = (int)kv;
        }
        if (gguf_ffn_kind(g, arch, i, ff, c, path, err)) return -1;
    }
    return pz_config_validate(c, err);
}

// The SwiGLU stand-in tensors of layer i (gguf.h) with their shapes
// [rows, cols] and the value every element must have (diag: on the diagonal,
// zero elsewhere; NAN: any). Returns the count (0 when the layer has none).
typedef struct {
    char name[64];
    int rows, cols;
    float value;
    int diag;
} standin;

static int standins(const pz_config *c, int i, int64_t ff, standin *out) {
    const pz_layer_spec *L = &c->layers[i];
    int H = c->hidden, n = 0;
#define ST(NAME, R, C, V, D) (snprintf(out[n].name, sizeof out[n].name, "blk.%d." NAME, i), \
                              out[n].rows = (R), out[n].cols = (C), out[n].value = (V), out[n].diag = (D), n++)
    if (L->ffn == PZ_FFN_LINEAR) {
        ST("ffn_gate.weight", H, H, 0, 0);
        ST("ffn_gate.bias", 1, H, PZ_GGUF_LINEAR_GATE, 0);
        ST("ffn_up.weight", H, H, 1 / PZ_GGUF_LINEAR_GATE, 1);
    } else if (L->ffn == PZ_FFN_NOOP && ff > 0) {
        ST("ffn_norm.weight", 1, H, NAN, 0);
        ST("ffn_gate.weight", (int)ff, H, 0, 0);
        ST("ffn_up.weight", (int)ff, H, 0, 0);
        ST("ffn_down.weight", H, (int)ff, 0, 0);
    }
#undef ST
    return n;
}

static int64_t gguf_ff(const pz_gguf *g, const char *arch, int i, int n_layer) {
    int64_t ff = 0;
    if (gguf_layer_int(g, arch, "feed_forward_length", i, n_layer, 0, &ff, "", NULL)) return 0;
    return ff;
}

// Checks that every stand-in holds exactly what makes llama.cpp's SwiGLU
// compute the block we load in its place, and that the file has no tensor
// the metadata does not account for (a layer beyond block_count, a sub-block
// the metadata says is absent). names: the table's GGUF names, n of them.
static int gguf_check_tensors(const pz_gguf *g, const pz_config *c, const char *arch, wdesc *t, int n,
                              int values, const char *path, char *err) {
    int64_t nt = pz_gguf_n_tensors(g);
    for (int64_t k = 0; k < nt; k++) {
        const pz_gguf_tensor *gt = pz_gguf_tensor_at(g, k);
        int known = 0;
        for (int i = 0; i < n && !known; i++) known = !t[i].tied_head && strcmp(t[i].gg, gt->name) == 0;
        int layer = -1;
        if (sscanf(gt->name, "blk.%d.", &layer) == 1 && layer >= 0 && layer < c->n_layer && !known) {
            standin st[5];
            int ns = standins(c, layer, gguf_ff(g, arch, layer, c->n_layer), st);
            for (int j = 0; j < ns && !known; j++) known = strcmp(st[j].name, gt->name) == 0;
        }
        if (known) continue;
        if (layer >= c->n_layer)
            return pz_err(err, "%s: tensor %s belongs to layer %d, but %s.block_count is %d", path, gt->name, layer,
                          arch, c->n_layer);
        if (layer >= 0) {
            const pz_layer_spec *L = &c->layers[layer];
            return pz_err(err, "%s: tensor %s is not used by layer %d, which the metadata makes %s attention and %s FFN",
                          path, gt->name, layer, pz_attn_kind_name(L->attn), pz_ffn_kind_name(L->ffn));
        }
        return pz_err(err, "%s: unexpected tensor %s", path, gt->name);
    }
    for (int i = 0; i < c->n_layer; i++) {
        standin st[5];
        int ns = standins(c, i, gguf_ff(g, arch, i, c->n_layer), st);
        for (int j = 0; j < ns; j++) {
            const pz_gguf_tensor *gt = pz_gguf_find_tensor(g, st[j].name);
            if (!gt) return pz_err(err, "%s: missing tensor %s (the %s FFN stand-in of layer %d)", path, st[j].name,
                                   pz_ffn_kind_name(c->layers[i].ffn), i);
            int vec = st[j].rows == 1;
            if (vec ? (gt->n_dims != 1 || gt->ne[0] != (uint64_t)st[j].cols)
                    : (gt->n_dims != 2 || gt->ne[0] != (uint64_t)st[j].cols || gt->ne[1] != (uint64_t)st[j].rows))
                return pz_err(err, "%s: tensor %s has the wrong shape for layer %d's %s FFN stand-in", path, st[j].name,
                              i, pz_ffn_kind_name(c->layers[i].ffn));
            if (!values || isnan(st[j].value)) continue;
            if (!pz_dtype_supported(gt->type))
                return pz_err(err, "%s: tensor %s has unsupported type %d", path, gt->name, (int)gt->type);
            float *row = malloc(sizeof(float) * (size_t)gt->n_elems);
            if (!row) return pz_err(err, "%s: out of memory", path);
            pz_to_f32(gt->type, gt->data, row, (size_t)gt->n_elems);
            size_t bad = (size_t)-1;
            for (size_t e = 0; e < gt->n_elems && bad == (size_t)-1; e++) {
                size_t r = e / (size_t)st[j].cols, col = e % (size_t)st[j].cols;
                float want = st[j].diag ? (r == col ? st[j].value : 0) : st[j].value;
                if (row[e] != want) bad = e;
            }
            float got = bad != (size_t)-1 ? row[bad] : 0;
            free(row);
            if (bad != (size_t)-1)
                return pz_err(err, "%s: tensor %s element %zu is %g: layer %d's %s FFN stand-in must hold exactly %g%s",
                              path, st[j].name, bad, (double)got, i, pz_ffn_kind_name(c->layers[i].ffn),
                              (double)st[j].value, st[j].diag ? " on the diagonal and 0 elsewhere" : "");
        }
    }
    return 0;
}

// tp > 1: only rank's shard (model_alloc).
static pz_model *load_gguf(const char *path, pz_dt wt, int tp, int rank, int align, char *err) {
    pz_gguf *g = pz_gguf_open(path, err);
    if (!g) return NULL;
    pz_model *m = NULL;
    wdesc *t = NULL;
    float *tmp = NULL;
    pz_config cfg;
    if (gguf_config(g, &cfg, path, err)) goto fail;
    if (!(m = model_alloc(&cfg, wt, tp, rank, align, err))) goto fail;
    t = malloc(sizeof *t * (size_t)table_cap(&cfg));
    if (!t) goto oom;
    int n = weight_table(m, t);
    layout(t, n, wt, m->arena);
    pz_gguf_str as;
    char arch[32] = "";
    if (pz_gguf_get_str(g, "general.architecture", &as) == 0 && as.len < sizeof arch) {
        memcpy(arch, as.data, as.len);
        arch[as.len] = 0;
    }
    if (gguf_check_tensors(g, &cfg, arch, t, n, 1, path, err)) goto fail;
    size_t maxel = 0;
    for (int i = 0; i < n; i++)
        if ((size_t)t[i].frows * t[i].fcols > maxel) maxel = (size_t)t[i].frows * t[i].fcols;
    if (!(tmp = malloc(sizeof(float) * maxel))) goto oom;
    for (int i = 0; i < n; i++) {
        wdesc *d = &t[i];
        if (d->tied_head) continue;
        const pz_gguf_tensor *gt = pz_gguf_find_tensor(g, d->gg);
        if (!gt) {
            pz_err(err, "%s: missing tensor %s (the metadata needs it: %s)", path, d->gg, d->why);
            goto fail;
        }
        int ok = d->vec ? (gt->n_dims == 1 && gt->ne[0] == (uint64_t)d->fcols)
                        : (gt->n_dims == 2 && gt->ne[0] == (uint64_t)d->fcols && gt->ne[1] == (uint64_t)d->frows);
        if (!ok) {
            pz_err(err, "%s: tensor %s has shape [%llu, %llu] (innermost first), but the metadata says [%d, %d] (%s)",
                   path, d->gg, (unsigned long long)gt->ne[0], (unsigned long long)(gt->n_dims > 1 ? gt->ne[1] : 1),
                   d->fcols, d->frows, d->why);
            goto fail;
        }
        if (!pz_dtype_supported(gt->type)) {
            pz_err(err, "%s: tensor %s has unsupported type %d", path, d->gg, (int)gt->type);
            goto fail;
        }
        pz_to_f32(gt->type, gt->data, tmp, (size_t)gt->n_elems);
        if (d->perm_heads > 0 && cfg.head_dim % 2) {
            pz_err(err, "%s: odd head dimension %d", path, cfg.head_dim);
            goto fail;
        }
        store_f32_rows(d, tmp, cfg.head_dim);
    }
    if (cfg.tie_embeddings) m->lm_head.data = m->tok_embd.data;
    snprintf(m->source, sizeof m->source, "%s", path);
    snprintf(m->format, sizeof m->format, "gguf");
    free(tmp);
    free(t);
    pz_gguf_close(g);
    return m;
oom:
    pz_err(err, "%s: out of memory", path);
fail:
    free(tmp);
    free(t);
    pz_model_free(m);
    pz_gguf_close(g);
    return NULL;
}

// ---- Hugging Face directory ---------------------------------------------------------
static int hf_config_path(const char *path, char *buf, size_t cap) {
    if (pz_is_dir(path)) {
        pz_path_join(buf, cap, path, "config.json");
        return 0;
    }
    snprintf(buf, cap, "%s", path);
    return 0;
}

// A checkpoint tensor of a layer the config does not have, or of a
// sub-block the config says the layer lacks (its projections, norms), is a
// contradiction, never ignored. Other names (quantization scales, buffers
// such as rotary_emb.inv_freq) are left to the loader that knows them.
static int hf_check_layers(const pz_st *st, const pz_config *c, const wdesc *t, int n, const char *dir, char *err) {
    static const char *const parts[] = {"input_layernorm.", "post_attention_layernorm.", "self_attn.q_proj.",
                                        "self_attn.k_proj.", "self_attn.v_proj.", "self_attn.o_proj.",
                                        "self_attn.linear_attn.", "mlp.gate_proj.", "mlp.up_proj.",
                                        "mlp.down_proj.", "mlp.linear_mlp."};
    int64_t nt = pz_st_n_tensors(st);
    for (int64_t k = 0; k < nt; k++) {
        const char *name = pz_st_tensor_at(st, k)->name;
        int layer = -1, pos = 0;
        if (sscanf(name, "model.layers.%d.%n", &layer, &pos) != 1 || pos == 0 || layer < 0) continue;
        if (layer >= c->n_layer)
            return pz_err(err, "%s: tensor %s belongs to layer %d, but config.json has num_hidden_layers %d", dir,
                          name, layer, c->n_layer);
        int weight = 0;
        for (size_t p = 0; p < sizeof parts / sizeof parts[0] && !weight; p++)
            weight = strncmp(name + pos, parts[p], strlen(parts[p])) == 0 && strstr(name + pos, ".weight") &&
                     strcmp(strstr(name + pos, ".weight"), ".weight") == 0;
        if (!weight) continue;
        int known = 0;
        for (int i = 0; i < n && !known; i++) known = strcmp(t[i].hf, name) == 0;
        if (!known) {
            const pz_layer_spec *L = &c->layers[layer];
            return pz_err(err, "%s: tensor %s is not used by layer %d, which config.json makes %s attention and %s "
                          "FFN", dir, name, layer, pz_attn_kind_name(L->attn), pz_ffn_kind_name(L->ffn));
        }
    }
    return 0;
}

static int glued(const wdesc *t, int i);

// A scale tensor of an FP8 checkpoint: one F32 value (0-dim or [1]).
// 0 and *v set, 1 when absent, -1 with err when malformed.
static int st_scalar(const pz_st *st, const char *name, float *v, const char *dir, char *err) {
    const pz_st_tensor *s = pz_st_find(st, name);
    if (!s) return 1;
    if (s->dtype != PZ_ST_F32 || s->n_elems != 1)
        return pz_err(err, "%s: %s must be one F32 value (%s, %llu values)", dir, name, pz_st_dtype_name(s->dtype),
                      (unsigned long long)s->n_elems);
    memcpy(v, s->data, 4);
    if (!(*v > 0) || !isfinite(*v)) return pz_err(err, "%s: %s is %g, not a positive scale", dir, name, (double)*v);
    return 0;
}

// FP8 tensors of matrix d (an F8_E4M3 X.weight): its weight_scale and
// optional input_scale. weight_scale is one value (*ws; *per_row 0) or, per
// output channel, d->frows values of shape [frows] or [frows, 1] in F32 or
// BF16 (rows r0.. of them into rs; *per_row 1, *ws 1), as compressed-tensors
// writes them.
static int hf_fp8_scales(const pz_st *st, const wdesc *d, float *ws, float *xs, float *rs, int *per_row,
                         const char *dir, char *err) {
    char nm[128];
    size_t base = strlen(d->hf) - strlen(".weight");
    snprintf(nm, sizeof nm, "%.*s.weight_scale", (int)base, d->hf);
    const pz_st_tensor *t = pz_st_find(st, nm);
    *per_row = t && t->n_elems > 1;
    if (*per_row) {  // the full matrix's frows scales; a shard keeps its rows [r0, r0 + rows)
        if ((t->dtype != PZ_ST_F32 && t->dtype != PZ_ST_BF16) || t->n_elems != (uint64_t)d->frows ||
            t->shape[0] != d->frows || t->n_dims > 2 || (t->n_dims == 2 && t->shape[1] != 1))
            return pz_err(err, "%s: %s must be one F32 value or %d F32/BF16 values of shape [%d] or [%d, 1]",
                          dir, nm, d->frows, d->frows, d->frows);
        if (t->dtype == PZ_ST_F32) memcpy(rs, (const float *)t->data + d->r0, sizeof(float) * (size_t)d->rows);
        else pz_bf16_to_f32_row((const uint16_t *)t->data + d->r0, rs, (size_t)d->rows);
        for (int r = 0; r < d->rows; r++)
            if (!(rs[r] > 0) || !isfinite(rs[r]))
                return pz_err(err, "%s: %s[%d] is %g, not a positive scale", dir, nm, d->r0 + r, (double)rs[r]);
        *ws = 1;
    }
    int r = *per_row ? 0 : st_scalar(st, nm, ws, dir, err);
    if (r) return r < 0 ? -1 : pz_err(err, "%s: %s is F8_E4M3 but %s is missing", dir, d->hf, nm);
    snprintf(nm, sizeof nm, "%.*s.input_scale", (int)base, d->hf);
    *xs = 0;
    return st_scalar(st, nm, xs, dir, err) < 0 ? -1 : 0;
}

// Glued e4m3 matrices (q/k/v, gate/up) with different scales are
// requantized to the largest (vLLM's requantize_with_max_scale), so each
// group runs as one product; their input scales become the largest too.
static void fp8_unify_groups(wdesc *t, int n) {
    for (int i = 0; i < n; i++) {
        if (!t[i].mat || t[i].mat->type != PZ_DT_E4M3 || glued(t, i)) continue;
        int g1 = i + 1;
        while (g1 < n && glued(t, g1)) g1++;
        float ws = 0, xs = 0;
        int per_row = 0;  // per-channel scales need no common tensor scale
        for (int j = i; j < g1; j++) {
            if (t[j].mat->scale > ws) ws = t[j].mat->scale;
            if (t[j].mat->x_scale > xs) xs = t[j].mat->x_scale;
            per_row |= t[j].mat->ch_scale != NULL;
        }
        for (int j = i; j < g1; j++) {
            pz_mat *a = t[j].mat;
            if (!per_row && a->scale != ws) {
                uint8_t *q = a->data;
                float f = a->scale / ws;
                for (size_t k = 0; k < (size_t)a->rows * a->cols; k++) q[k] = pz_f32_to_e4m3(pz_e4m3_to_f32(q[k]) * f);
                a->scale = ws;
            }
            a->x_scale = xs;
        }
    }
}

static pz_model *load_hf(const char *dir, pz_dt wt, int tp, int rank, int align, char *err) {
    char cpath[1100];
    pz_config cfg;
    hf_config_path(dir, cpath, sizeof cpath);
    if (pz_config_from_hf_file(&cfg, cpath, err)) return NULL;
    pz_st *st = pz_st_open(dir, err);
    if (!st) return NULL;
    pz_model *m = NULL;
    wdesc *t = NULL;
    float *tmp = NULL, *rs = NULL;  // rs: one matrix's per-channel weight scales
    if (!(m = model_alloc(&cfg, wt, tp, rank, align, err))) goto fail;
    t = malloc(sizeof *t * (size_t)table_cap(&cfg));
    if (!t) goto oom;
    int n = weight_table(m, t);
    layout(t, n, wt, m->arena);
    if (hf_check_layers(st, &cfg, t, n, dir, err)) goto fail;
    size_t maxcols = 0, maxrows = 0, nch = 0;
    for (int i = 0; i < n; i++) {
        if ((size_t)t[i].cols > maxcols) maxcols = (size_t)t[i].cols;
        if ((size_t)t[i].rows > maxrows) maxrows = (size_t)t[i].rows;
        if (!t[i].tied_head && !t[i].vec && t[i].mat->type == PZ_DT_E4M3) nch += (size_t)t[i].rows;
    }
    if (!(tmp = malloc(sizeof(float) * maxcols)) || !(rs = malloc(sizeof(float) * maxrows))) goto oom;
    if (wt == PZ_DT_E4M3 && cfg.quant_channel && !(m->chs = malloc(sizeof(float) * (nch ? nch : 1)))) goto oom;
    for (int i = 0; i < n; i++) {
        wdesc *d = &t[i];
        if (d->tied_head) continue;
        const pz_st_tensor *s = pz_st_find(st, d->hf);
        if (!s) {
            pz_err(err, "%s: missing tensor %s (config.json needs it: %s)", dir, d->hf, d->why);
            goto fail;
        }
        int ok = d->vec ? (s->n_dims == 1 && s->shape[0] == d->fcols)
                        : (s->n_dims == 2 && s->shape[0] == d->frows && s->shape[1] == d->fcols);
        if (!ok) {
            if (d->vec)
                pz_err(err, "%s: tensor %s has shape [%lld%s%lld], but config.json says [%d] (%s)", dir, d->hf,
                       (long long)(s->n_dims > 0 ? s->shape[0] : 0), s->n_dims > 1 ? ", " : "",
                       (long long)(s->n_dims > 1 ? s->shape[1] : 0), d->fcols, d->why);
            else
                pz_err(err, "%s: tensor %s has shape [%lld%s%lld], but config.json says [%d, %d] (%s)", dir, d->hf,
                       (long long)(s->n_dims > 0 ? s->shape[0] : 0), s->n_dims > 1 ? ", " : "",
                       (long long)(s->n_dims > 1 ? s->shape[1] : 0), d->frows, d->fcols, d->why);
            goto fail;
        }
        int f8 = s->dtype == PZ_ST_F8_E4M3 && d->mat;
        if (s->dtype != PZ_ST_F32 && s->dtype != PZ_ST_BF16 && s->dtype != PZ_ST_F16 && !f8) {
            pz_err(err, "%s: tensor %s has dtype %s (F32, BF16, F16%s expected)", dir, d->hf,
                   pz_st_dtype_name(s->dtype), d->mat ? " or F8_E4M3" : "");
            goto fail;
        }
        float ws = 1, xs = 0;
        int per_row = 0;
        if (f8 && hf_fp8_scales(st, d, &ws, &xs, rs, &per_row, dir, err)) goto fail;
        if (d->mat && d->mat->type == PZ_DT_E4M3) {
            if (!f8) {
                pz_err(err, "%s: tensor %s is %s in an FP8 checkpoint; load it with --dtype bf16 or f32", dir, d->hf,
                       pz_st_dtype_name(s->dtype));
                goto fail;
            }
            for (int r = 0; r < d->rows; r++)  // the codes as they are (a shard's rows and columns)
                memcpy((uint8_t *)d->mat->data + (size_t)r * d->cols,
                       (const uint8_t *)s->data + (size_t)(d->r0 + r) * d->fcols + d->c0, (size_t)d->cols);
            d->mat->scale = ws;
            d->mat->x_scale = xs;
            d->mat->ch_scale = NULL;
            if (per_row && !m->chs) {
                pz_err(err, "%s: %s.weight_scale has one value per channel, but config.json's quantization_config "
                       "does not say strategy \"channel\"", dir, d->hf);
                goto fail;
            }
            if (per_row) {  // into m->chs at this matrix's place in table order
                size_t off = 0;
                for (int j = 0; j < i; j++)
                    if (!t[j].tied_head && !t[j].vec && t[j].mat->type == PZ_DT_E4M3) off += (size_t)t[j].rows;
                memcpy(m->chs + off, rs, sizeof(float) * (size_t)d->rows);
                d->mat->ch_scale = m->chs + off;
            }
            continue;
        }
        // Row by row, so no full-size temporary is needed; bf16 -> bf16 is a copy.
        size_t cols = (size_t)d->cols;
        for (int r = 0; r < d->rows; r++) {
            const char *src = (const char *)s->data +
                              ((size_t)(d->r0 + r) * d->fcols + d->c0) * (size_t)pz_st_dtype_size(s->dtype);
            if (d->mat && d->mat->type == PZ_DT_BF16 && s->dtype == PZ_ST_BF16) {
                memcpy((uint16_t *)d->mat->data + (size_t)r * cols, src, 2 * cols);
                continue;
            }
            if (s->dtype == PZ_ST_F32) memcpy(tmp, src, 4 * cols);
            else if (f8) pz_e4m3_to_f32_row((const uint8_t *)src, tmp, cols, per_row ? rs[r] : ws);
            else if (s->dtype == PZ_ST_BF16) pz_bf16_to_f32_row((const uint16_t *)src, tmp, cols);
            else pz_to_f32(PZ_F16, src, tmp, cols);
            wdesc one = *d;
            one.rows = 1;
            one.perm_heads = 0;
            one.r0 = one.c0 = 0;  // tmp holds this row's slice
            one.fcols = d->cols;
            if (one.mat) {
                pz_mat row = *d->mat;
                row.data = (char *)d->mat->data + (size_t)r * cols * elem_bytes(d->mat->type);
                one.mat = &row;
                store_f32_rows(&one, tmp, cfg.head_dim);
            } else {
                store_f32_rows(&one, tmp, cfg.head_dim);
            }
        }
    }
    if (cfg.tie_embeddings) m->lm_head.data = m->tok_embd.data;
    if (wt == PZ_DT_E4M3) fp8_unify_groups(t, n);
    for (int l = 0; l < cfg.n_layer && cfg.quant == PZ_DT_E4M3; l++) {
        // KV scales, as llm-compressor (self_attn.k_scale) or ModelOpt (self_attn.k_proj.k_scale) name them
        char nm[128];
        float *dst[2] = {&m->layers[l].k_scale, &m->layers[l].v_scale};
        for (int kv = 0; kv < 2; kv++) {
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.%s_scale", l, kv ? "v" : "k");
            int r = st_scalar(st, nm, dst[kv], dir, err);
            if (r == 1) {
                snprintf(nm, sizeof nm, "model.layers.%d.self_attn.%s_proj.%s_scale", l, kv ? "v" : "k", kv ? "v" : "k");
                r = st_scalar(st, nm, dst[kv], dir, err);
            }
            if (r < 0) goto fail;
            if (r == 1) *dst[kv] = 0;
        }
    }
    snprintf(m->source, sizeof m->source, "%s", dir);
    snprintf(m->format, sizeof m->format, "hf");
    free(tmp);
    free(rs);
    free(t);
    pz_st_close(st);
    return m;
oom:
    pz_err(err, "%s: out of memory", dir);
fail:
    free(tmp);
    free(rs);
    free(t);
    pz_model_free(m);
    pz_st_close(st);
    return NULL;
}

// ---- FP8 ---------------------------------------------------------------------------
// Matrix i of a weight table shares its scale group with matrix i-1 when it
// is glued to it in the arena (k/v after q, up after gate): the engine runs
// such a group as one product, which needs one tensor scale. vLLM does the
// same when it fuses them (the largest of the scales).
static int glued(const wdesc *t, int i) {
    return i > 0 && t[i].mat && t[i - 1].mat &&
           (strstr(t[i].hf, "k_proj") || strstr(t[i].hf, "v_proj") || strstr(t[i].hf, "up_proj"));
}

// Matrix a (any type, e4m3 with its row scales) as fp32.
static void mat_to_f32(const pz_mat *a, float *f) {
    size_t ne = (size_t)a->rows * a->cols;
    if (a->type == PZ_DT_F32) memcpy(f, a->data, sizeof(float) * ne);
    else if (a->type == PZ_DT_BF16) pz_bf16_to_f32_row(a->data, f, ne);
    else if (!a->ch_scale) pz_e4m3_to_f32_row(a->data, f, ne, a->scale);
    else
        for (int r = 0; r < a->rows; r++)
            pz_e4m3_to_f32_row((const uint8_t *)a->data + (size_t)r * a->cols, f + (size_t)r * a->cols,
                               (size_t)a->cols, a->scale * a->ch_scale[r]);
}

pz_model *pz_model_to_e4m3(const pz_model *src, char *err) { return pz_model_to_e4m3_ex(src, 0, err); }

pz_model *pz_model_to_e4m3_ex(const pz_model *src, int per_channel, char *err) {
    if (src->tp > 1) {
        pz_err(err, "%s: a tensor-parallel shard cannot be quantized (its tensor scales would be its own)",
               src->source);
        return NULL;
    }
    pz_model *m = pz_model_alloc(&src->cfg, PZ_DT_E4M3, err);
    if (!m) return NULL;
    int cap = table_cap(&src->cfg);
    wdesc *ts = malloc(sizeof *ts * (size_t)cap), *tm = malloc(sizeof *tm * (size_t)cap);
    int rc = 0;
    if (!ts || !tm) rc = pz_err(err, "out of memory converting to fp8");
    int n = rc ? 0 : weight_table((pz_model *)src, ts);
    if (!rc) weight_table(m, tm);
    size_t nch = 0, och = 0;  // per-channel: rows of every e4m3 matrix, in table order
    for (int i = 0; i < n && per_channel; i++)
        if (!tm[i].tied_head && !tm[i].vec && tm[i].mat->type == PZ_DT_E4M3) nch += (size_t)tm[i].rows;
    if (!rc && nch && !(m->chs = malloc(sizeof(float) * nch))) rc = pz_err(err, "out of memory converting to fp8");
    snprintf(m->source, sizeof m->source, "%s", src->source);
    snprintf(m->format, sizeof m->format, "%s", src->format);
    for (int i = 0; i < n && rc == 0; i++) {
        if (ts[i].tied_head) continue;
        if (ts[i].vec) {
            memcpy(*tm[i].vec, *ts[i].vec, sizeof(float) * (size_t)ts[i].cols);
            continue;
        }
        const pz_mat *a = ts[i].mat;
        pz_mat *b = tm[i].mat;
        size_t ne = (size_t)a->rows * a->cols;
        float *f = malloc(sizeof(float) * ne);
        if (!f) {
            rc = pz_err(err, "out of memory converting %s to fp8", ts[i].hf);
            break;
        }
        mat_to_f32(a, f);
        if (b->type == PZ_DT_BF16) {
            pz_f32_to_bf16_row(f, b->data, ne);
        } else if (per_channel) {
            float *ch = m->chs + och;
            for (int r = 0; r < a->rows && !rc; r++) {
                const float *fr = f + (size_t)r * a->cols;
                if (pz_e4m3_scale_for(fr, (size_t)a->cols, &ch[r]))
                    rc = pz_err(err, "%s holds a NaN or an infinity", ts[i].hf);
                else
                    pz_f32_to_e4m3_row(fr, (uint8_t *)b->data + (size_t)r * a->cols, (size_t)a->cols, 1.0f / ch[r]);
            }
            och += (size_t)a->rows;
            b->scale = 1;
            b->ch_scale = ch;
            b->x_scale = a->type == PZ_DT_E4M3 ? a->x_scale : 0;
        } else {
            // the group's scale: amax over the matrices glued together
            int g1 = i + 1;
            while (g1 < n && glued(ts, g1)) g1++;
            float sc = 0;
            if (!glued(ts, i)) {
                for (int j = i; j < g1; j++) {
                    const pz_mat *aj = ts[j].mat;
                    size_t nj = (size_t)aj->rows * aj->cols;
                    float *fj = j == i ? f : malloc(sizeof(float) * nj), s1;
                    if (!fj) { rc = pz_err(err, "out of memory converting to fp8"); break; }
                    if (j != i) mat_to_f32(aj, fj);
                    if (pz_e4m3_scale_for(fj, nj, &s1)) rc = pz_err(err, "%s holds a NaN or an infinity", ts[j].hf);
                    if (j != i) free(fj);
                    if (rc) break;
                    if (j == i || s1 > sc) sc = s1;
                }
            } else {
                sc = tm[i - 1].mat->scale;
            }
            b->scale = sc;
            b->x_scale = a->type == PZ_DT_E4M3 ? a->x_scale : 0;
            if (!rc) pz_f32_to_e4m3_row(f, b->data, ne, 1.0f / sc);
        }
        free(f);
    }
    free(ts);
    free(tm);
    if (rc) {
        pz_model_free(m);
        return NULL;
    }
    for (int l = 0; l < src->cfg.n_layer; l++) {
        m->layers[l].k_scale = src->layers[l].k_scale;
        m->layers[l].v_scale = src->layers[l].v_scale;
    }
    return m;
}

int pz_model_e4m3_head(pz_model *m, char *err) {
    pz_mat *h = &m->lm_head;
    if (m->wtype != PZ_DT_E4M3 || h->type != PZ_DT_BF16 || !h->data)
        return pz_err(err, "an e4m3 lm_head needs an fp8 model with a bf16 head");
    size_t cols = (size_t)h->cols, n = (size_t)h->rows * cols, qb = (n + 63) / 64 * 64;
    float *f = malloc(sizeof(float) * cols);
    uint8_t *q = aligned_alloc(64, qb + sizeof(float) * (size_t)h->rows);
    if (!f || !q) {
        free(f), free(q);
        return pz_err(err, "out of memory quantizing lm_head");
    }
    float *ch = (float *)(q + qb);
    for (int r = 0; r < h->rows; r++) {
        pz_bf16_to_f32_row((const uint16_t *)h->data + (size_t)r * cols, f, cols);
        if (pz_e4m3_scale_for(f, cols, &ch[r])) {
            free(f), free(q);
            return pz_err(err, "lm_head row %d holds a NaN or an infinity", r);
        }
        pz_f32_to_e4m3_row(f, q + (size_t)r * cols, cols, 1.0f / ch[r]);
    }
    free(f);
    free(m->head8);
    m->head8 = q;
    h->data = q;
    h->type = PZ_DT_E4M3;
    h->scale = 1.0f;
    h->ch_scale = ch;
    h->x_scale = 0;
    return 0;
}

pz_model *pz_model_load(const char *path, pz_dt wtype, char *err) {
    if (wtype == PZ_DT_E4M3) {
        pz_config qc;
        char cpath[1100];
        if (pz_is_dir(path) && (hf_config_path(path, cpath, sizeof cpath), pz_file_exists(cpath)) &&
            pz_config_from_hf_file(&qc, cpath, err) == 0 && qc.quant == PZ_DT_E4M3)
            return load_hf(path, PZ_DT_E4M3, 1, 0, 0, err);  // an FP8 checkpoint: the codes as stored
        // else loaded in fp32 (4 bytes a weight for a moment), then quantized
        pz_model *f = pz_model_load(path, PZ_DT_F32, err);
        if (!f || f->wtype == PZ_DT_E4M3) return f;
        pz_model *q = pz_model_to_e4m3(f, err);
        pz_model_free(f);
        return q;
    }
    if (pz_is_dir(path)) return load_hf(path, wtype, 1, 0, 0, err);
    if (!pz_file_exists(path)) {
        pz_err(err, "%s: no such file or directory", path);
        return NULL;
    }
    return load_gguf(path, wtype, 1, 0, 0, err);
}

pz_model *pz_model_load_shard(const char *path, pz_dt wtype, int tp, int rank, int align, char *err) {
    if (tp <= 1) return pz_model_load(path, wtype, err);
    if (rank < 0 || rank >= tp || align < 1) {
        pz_err(err, "%s: shard %d of %d (align %d)", path, rank, tp, align);
        return NULL;
    }
    if (wtype == PZ_DT_E4M3) {
        pz_config qc;
        char cpath[1100];
        if (pz_is_dir(path) && (hf_config_path(path, cpath, sizeof cpath), pz_file_exists(cpath)) &&
            pz_config_from_hf_file(&qc, cpath, err) == 0 && qc.quant == PZ_DT_E4M3)
            return load_hf(path, PZ_DT_E4M3, tp, rank, align, err);  // the stored codes and tensor scales
        // Quantized at load: the tensor scales come from whole tensors, so the whole model.
        return pz_model_load(path, wtype, err);
    }
    if (pz_is_dir(path)) return load_hf(path, wtype, tp, rank, align, err);
    if (!pz_file_exists(path)) {
        pz_err(err, "%s: no such file or directory", path);
        return NULL;
    }
    return load_gguf(path, wtype, tp, rank, align, err);
}

int pz_model_load_config(const char *path, pz_config *cfg, char *err) {
    size_t n = strlen(path);
    if (pz_is_dir(path) || (n >= 5 && strcmp(path + n - 5, ".json") == 0)) {
        char cpath[1100];
        hf_config_path(path, cpath, sizeof cpath);
        return pz_config_from_hf_file(cfg, cpath, err);
    }
    pz_gguf *g = pz_gguf_open(path, err);
    if (!g) return -1;
    int rc = gguf_config(g, cfg, path, err);
    // The same contradictions pz_model_load refuses, from the tensor infos
    // alone (no weight is read): shapes, tensors beyond the metadata.
    pz_model shell = {0};
    wdesc *t = NULL;
    pz_gguf_str as;
    char arch[32] = "";
    if (rc == 0 && pz_gguf_get_str(g, "general.architecture", &as) == 0 && as.len < sizeof arch) {
        memcpy(arch, as.data, as.len);
        arch[as.len] = 0;
    }
    if (rc == 0) {
        shell.cfg = *cfg;
        shell.layers = calloc((size_t)cfg->n_layer, sizeof *shell.layers);
        t = malloc(sizeof *t * (size_t)table_cap(cfg));
        if (!shell.layers || !t) rc = pz_err(err, "%s: out of memory", path);
    }
    int nw = rc == 0 ? weight_table(&shell, t) : 0;
    for (int i = 0; i < nw && rc == 0; i++) {
        if (t[i].tied_head) continue;
        const pz_gguf_tensor *gt = pz_gguf_find_tensor(g, t[i].gg);
        if (!gt) {
            rc = pz_err(err, "%s: missing tensor %s (the metadata needs it: %s)", path, t[i].gg, t[i].why);
        } else if (t[i].vec ? (gt->n_dims != 1 || gt->ne[0] != (uint64_t)t[i].cols)
                            : (gt->n_dims != 2 || gt->ne[0] != (uint64_t)t[i].cols ||
                               gt->ne[1] != (uint64_t)t[i].rows)) {
            rc = pz_err(err, "%s: tensor %s has shape [%llu, %llu] (innermost first), but the metadata says [%d, %d] "
                        "(%s)", path, t[i].gg, (unsigned long long)gt->ne[0],
                        (unsigned long long)(gt->n_dims > 1 ? gt->ne[1] : 1), t[i].cols, t[i].rows, t[i].why);
        }
    }
    if (rc == 0) rc = gguf_check_tensors(g, cfg, arch, t, nw, 0, path, err);
    free(t);
    free(shell.layers);
    pz_gguf_close(g);
    return rc;
}

// ---- writing a Hugging Face directory (DeciLM; a plain Llama in FP8 as Llama) -----------
int pz_model_save_hf(const pz_model *m, const char *dir, char *err) {
    if (m->tp > 1) return pz_err(err, "%s: a tensor-parallel shard is not a model to save", dir);
    if (m->head8)
        return pz_err(err, "%s: the e4m3 lm_head is a runtime option FP8 checkpoints do not carry; save the model "
                      "before pz_model_e4m3_head", dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return pz_err(err, "%s: %s", dir, strerror(errno));
    char cpath[1100];
    pz_path_join(cpath, sizeof cpath, dir, "config.json");
    pz_config *cfg = malloc(sizeof *cfg);
    int n = pz_model_n_weights(m), rc = 0;
    // the scales, 0-dim F32 tensors: 2 per matrix, 2 per layer (live until written)
    float *sc = malloc(sizeof(float) * (size_t)(2 * n + 2 * m->cfg.n_layer + 1));
    float *chw = NULL;  // per-channel: every e4m3 matrix's weight_scale [rows, 1]
    size_t nrows = 0, och = 0;
    if (!cfg || !sc) {
        free(cfg), free(sc);
        return pz_err(err, "%s: out of memory", dir);
    }
    *cfg = m->cfg;
    if (m->wtype == PZ_DT_E4M3) {
        cfg->quant = PZ_DT_E4M3;
        cfg->quant_static = cfg->quant_kv = 0;
        for (int i = 0; i < n; i++) {
            pz_weight_info wi;
            if (pz_model_weight_at(m, i, &wi) == 0 && wi.type == PZ_DT_E4M3 && wi.x_scale > 0) cfg->quant_static = 1;
        }
        for (int l = 0; l < m->cfg.n_layer; l++)
            if (m->layers[l].k_scale > 0) cfg->quant_kv = 1;
        for (int i = 0; i < n; i++) {
            pz_weight_info wi;
            if (pz_model_weight_at(m, i, &wi) == 0 && wi.type == PZ_DT_E4M3) {
                nrows += (size_t)wi.rows;
                if (wi.ch_scale) cfg->quant_channel = 1;
            }
        }
    } else {
        cfg->quant = PZ_DT_F32;
    }
    if (m->wtype == PZ_DT_E4M3 && cfg->quant_channel && !(chw = malloc(sizeof(float) * (nrows ? nrows : 1))))
        rc = pz_err(err, "%s: out of memory", dir);
    // An FP8 checkpoint is for serving engines, which read a plain Llama's
    // LlamaForCausalLM config natively but "nemotron-nas" only with NVIDIA's
    // remote code (results/fp8_loaders.md); other checkpoints stay DeciLM.
    int llama = m->wtype == PZ_DT_E4M3 && pz_config_is_plain_llama(cfg);
    if (rc == 0) rc = pz_config_write_hf_file_as(cfg, cpath, llama, err);
    free(cfg);
    pz_st_writer *w = rc ? NULL : pz_st_writer_new();
    if (!w) {
        free(sc), free(chw);
        return rc ? -1 : pz_err(err, "%s: out of memory", dir);
    }
    int ns = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        pz_weight_info wi;
        if (pz_model_weight_at(m, i, &wi)) {
            rc = pz_err(err, "%s: weight %d unavailable", dir, i);
            break;
        }
        int64_t shape[2] = {wi.is_matrix ? wi.rows : wi.cols, wi.cols};
        pz_st_dtype sd = wi.type == PZ_DT_BF16 ? PZ_ST_BF16 : wi.type == PZ_DT_E4M3 ? PZ_ST_F8_E4M3 : PZ_ST_F32;
        rc = pz_st_writer_add(w, wi.name, sd, wi.is_matrix ? 2 : 1, shape, wi.data, err);
        if (rc == 0 && wi.type == PZ_DT_E4M3) {
            char nm[128];
            size_t base = strlen(wi.name) - strlen(".weight");
            snprintf(nm, sizeof nm, "%.*s.weight_scale", (int)base, wi.name);
            if (chw) {  // [rows, 1], as compressed-tensors' "channel" strategy stores it
                int64_t cs[2] = {wi.rows, 1};
                for (int r = 0; r < wi.rows; r++) chw[och + r] = wi.scale * (wi.ch_scale ? wi.ch_scale[r] : 1.0f);
                rc = pz_st_writer_add(w, nm, PZ_ST_F32, 2, cs, chw + och, err);
                och += (size_t)wi.rows;
            } else {
                sc[ns] = wi.scale;
                rc = pz_st_writer_add(w, nm, PZ_ST_F32, 0, shape, &sc[ns++], err);
            }
            if (rc == 0 && wi.x_scale > 0) {
                snprintf(nm, sizeof nm, "%.*s.input_scale", (int)base, wi.name);
                sc[ns] = wi.x_scale;
                rc = pz_st_writer_add(w, nm, PZ_ST_F32, 0, shape, &sc[ns++], err);
            }
        }
    }
    for (int l = 0; l < m->cfg.n_layer && rc == 0 && m->wtype == PZ_DT_E4M3; l++) {
        const pz_layer_weights *L = &m->layers[l];
        if (!(L->k_scale > 0) || m->cfg.layers[l].attn != PZ_ATTN_GQA) continue;
        char nm[128];
        int64_t none[1] = {0};
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.k_scale", l);
        sc[ns] = L->k_scale;
        rc = pz_st_writer_add(w, nm, PZ_ST_F32, 0, none, &sc[ns++], err);
        snprintf(nm, sizeof nm, "model.layers.%d.self_attn.v_scale", l);
        sc[ns] = L->v_scale > 0 ? L->v_scale : 1.0f;
        if (rc == 0) rc = pz_st_writer_add(w, nm, PZ_ST_F32, 0, none, &sc[ns++], err);
    }
    if (rc == 0) {
        pz_st_writer_set_metadata(w, "format", "pt");
        rc = pz_st_writer_write_dir(w, dir, (size_t)4 << 30, err);
    }
    pz_st_writer_free(w);
    free(sc);
    free(chw);
    return rc;
}
