// gguf_write.c — pz_model_save_gguf (see model.h): a model and its tokenizer
// as a GGUF v3 file that pz_model_load and pz_tokenizer_from_gguf read back
// to the same weights, config and token ids, and that llama.cpp's reader
// accepts. Everything the loaders read is written here; a model the GGUF
// loader cannot represent (Llama-3 RoPE scaling, no attention anywhere) is
// refused rather than written lossily. Heterogeneous models are `deci` files
// in the layout llama.cpp's deci graph loads; the FFN kinds it has no
// tensors for are encoded as SwiGLUs computing the same function (gguf.h).
//
// Layout: header, key/values and tensor infos are built in memory, then the
// tensor data follows, each tensor at an offset aligned to 32 (the running
// sum of padded sizes, as ggml's reader requires). The file goes to a
// temporary name beside path, is fsync'ed and renamed.
#include "model.h"
#include "common.h"
#include "gguf.h"
#include "tensor.h"
#include "tokenizer_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_ALIGN 32
#define GGML_TYPE_F32 0
#define GGML_TYPE_BF16 30
#define LLAMA_FTYPE_ALL_F32 0
#define LLAMA_FTYPE_MOSTLY_BF16 32

// ---- a growable byte buffer for the header ------------------------------------
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} buf;

static void put(buf *b, const void *p, size_t n) {
    if (b->oom) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void put_strn(buf *b, const char *s, size_t n) {
    put_u64(b, n);
    put(b, s, n);
}
static void put_str(buf *b, const char *s) { put_strn(b, s, strlen(s)); }

// Key/value pairs: each helper writes the key, the type and the value.
typedef struct {
    buf b;
    int64_t n;
    char arch[8];
} kvs;

static void kv_key(kvs *k, const char *key, pz_gguf_type t) {
    char full[128];
    // "%s." keys are per architecture (llama.block_count, deci.block_count)
    if (key[0] == '.') snprintf(full, sizeof full, "%s%s", k->arch, key);
    else snprintf(full, sizeof full, "%s", key);
    put_str(&k->b, full);
    put_u32(&k->b, (uint32_t)t);
    k->n++;
}
static void kv_str(kvs *k, const char *key, const char *v) { kv_key(k, key, PZ_GGUF_STRING); put_str(&k->b, v); }
static void kv_u32(kvs *k, const char *key, uint32_t v) { kv_key(k, key, PZ_GGUF_U32); put_u32(&k->b, v); }
static void kv_f32(kvs *k, const char *key, float v) { kv_key(k, key, PZ_GGUF_F32); put(&k->b, &v, 4); }
static void kv_bool(kvs *k, const char *key, int v) {
    uint8_t x = v != 0;
    kv_key(k, key, PZ_GGUF_BOOL);
    put(&k->b, &x, 1);
}
static void kv_arr_head(kvs *k, const char *key, pz_gguf_type elem, uint64_t n) {
    kv_key(k, key, PZ_GGUF_ARRAY);
    put_u32(&k->b, (uint32_t)elem);
    put_u64(&k->b, n);
}

// Per-layer value of a deci array key.
typedef enum { PL_HEADS, PL_KV, PL_FF } per_layer;
static int32_t layer_value(const pz_config *c, int i, per_layer what) {
    const pz_layer_spec *s = &c->layers[i];
    switch (what) {
    case PL_HEADS: return s->attn == PZ_ATTN_NOOP ? 0 : c->n_head;
    case PL_KV: return s->attn == PZ_ATTN_GQA ? s->n_kv : 0;
    default:
        if (s->ffn == PZ_FFN_SWIGLU) return s->n_ff;
        if (s->ffn == PZ_FFN_LINEAR) return c->hidden;
        return s->attn == PZ_ATTN_NOOP ? 0 : PZ_GGUF_NOOP_FF;
    }
}

static void kv_layers(kvs *k, const char *key, const pz_config *c, per_layer what, int deci) {
    if (!deci) {
        kv_u32(k, key, (uint32_t)layer_value(c, 0, what));
        return;
    }
    kv_arr_head(k, key, PZ_GGUF_I32, (uint64_t)c->n_layer);  // what convert_hf_to_gguf.py writes
    for (int i = 0; i < c->n_layer; i++) {
        int32_t v = layer_value(c, i, what);
        put(&k->b, &v, 4);
    }
}

static int is_llama(const pz_config *c) {
    for (int i = 0; i < c->n_layer; i++) {
        const pz_layer_spec *s = &c->layers[i];
        if (s->attn != PZ_ATTN_GQA || s->ffn != PZ_FFN_SWIGLU || s->n_kv != c->layers[0].n_kv ||
            s->n_ff != c->layers[0].n_ff)
            return 0;
    }
    return 1;
}

// The tokenizer keys pz_tokenizer_from_gguf reads.
static int tokenizer_kvs(kvs *k, const pz_tokenizer *t, const char *path, char *err) {
    const char *pre = tok_gguf_pre_name(t);
    if (!pre) return pz_err(err, "%s: the tokenizer's pre-tokenizer has no GGUF name (smollm, gpt2, llama-bpe)", path);
    int32_t nv = pz_tokenizer_vocab_size(t);
    kv_str(k, "tokenizer.ggml.model", "gpt2");
    kv_str(k, "tokenizer.ggml.pre", pre);
    kv_arr_head(k, "tokenizer.ggml.tokens", PZ_GGUF_STRING, (uint64_t)nv);
    for (int32_t i = 0; i < nv; i++) {
        size_t len;
        const char *p = tok_piece_n(t, i, &len);
        char hole[32];
        if (!p) {  // an id no entry defines: a unique placeholder of type "unused"
            len = (size_t)snprintf(hole, sizeof hole, "[PZ_UNUSED_%d]", (int)i);
            p = hole;
        }
        put_strn(&k->b, p, len);
    }
    kv_arr_head(k, "tokenizer.ggml.token_type", PZ_GGUF_I32, (uint64_t)nv);
    for (int32_t i = 0; i < nv; i++) {
        int32_t ty = tok_gguf_token_type(t, i);
        put(&k->b, &ty, 4);
    }
    int32_t nm = tok_n_merges(t);
    kv_arr_head(k, "tokenizer.ggml.merges", PZ_GGUF_STRING, (uint64_t)nm);
    for (int32_t r = 0; r < nm; r++) {
        int32_t a = -1, b = -1;
        size_t la = 0, lb = 0;
        tok_merge_at(t, r, &a, &b);
        const char *pa = tok_piece_n(t, a, &la), *pb = tok_piece_n(t, b, &lb);
        if (!pa || !pb) return pz_err(err, "%s: tokenizer merge %d names an undefined token", path, (int)r);
        put_u64(&k->b, la + 1 + lb);
        put(&k->b, pa, la);
        put(&k->b, " ", 1);
        put(&k->b, pb, lb);
    }
    struct { const char *key; int32_t id; } ids[] = {
        {"tokenizer.ggml.bos_token_id", pz_tokenizer_bos(t)},
        {"tokenizer.ggml.eos_token_id", pz_tokenizer_eos(t)},
        {"tokenizer.ggml.unknown_token_id", tok_unk_id(t)},
        {"tokenizer.ggml.padding_token_id", tok_pad_id(t)},
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (ids[i].id >= 0) kv_u32(k, ids[i].key, (uint32_t)ids[i].id);
    kv_bool(k, "tokenizer.ggml.add_bos_token", pz_tokenizer_add_bos(t));
    kv_bool(k, "tokenizer.ggml.add_eos_token", tok_add_eos(t));
    const char *tmpl = pz_tokenizer_chat_template(t);
    if (tmpl) kv_str(k, "tokenizer.chat_template", tmpl);
    return 0;
}

static const char *base_name(const char *path, char *out, size_t cap) {
    const char *s = strrchr(path, '/');
    s = s ? s + 1 : path;
    if (!*s) s = "model";
    snprintf(out, cap, "%s", s);
    char *dot = strrchr(out, '.');
    if (dot && dot != out && strcmp(dot, ".gguf") == 0) *dot = 0;
    return out;
}

static int build_kvs(kvs *k, const pz_model *m, const pz_tokenizer *t, const char *path, char *err) {
    const pz_config *c = &m->cfg;
    int deci = !is_llama(c);
    snprintf(k->arch, sizeof k->arch, "%s", deci ? "deci" : "llama");
    char name[sizeof m->source];
    kv_str(k, "general.architecture", k->arch);
    kv_str(k, "general.type", "model");
    kv_str(k, "general.name", base_name(m->source[0] ? m->source : path, name, sizeof name));
    kv_u32(k, "general.file_type", m->wtype == PZ_DT_BF16 ? LLAMA_FTYPE_MOSTLY_BF16 : LLAMA_FTYPE_ALL_F32);
    kv_u32(k, "general.alignment", GGUF_ALIGN);
    kv_u32(k, ".context_length", (uint32_t)c->max_ctx);
    kv_u32(k, ".embedding_length", (uint32_t)c->hidden);
    kv_u32(k, ".block_count", (uint32_t)c->n_layer);
    kv_layers(k, ".feed_forward_length", c, PL_FF, deci);
    kv_layers(k, ".attention.head_count", c, PL_HEADS, deci);
    kv_layers(k, ".attention.head_count_kv", c, PL_KV, deci);
    kv_u32(k, ".attention.key_length", (uint32_t)c->head_dim);
    kv_u32(k, ".attention.value_length", (uint32_t)c->head_dim);
    kv_f32(k, ".attention.layer_norm_rms_epsilon", c->norm_eps);
    kv_u32(k, ".rope.dimension_count", (uint32_t)c->head_dim);
    kv_f32(k, ".rope.freq_base", c->rope_theta);
    kv_u32(k, ".vocab_size", (uint32_t)c->vocab);
    if (deci) {
        kv_arr_head(k, PZ_GGUF_FFN_KIND_KEY, PZ_GGUF_STRING, (uint64_t)c->n_layer);
        for (int i = 0; i < c->n_layer; i++) put_str(&k->b, pz_ffn_kind_name(c->layers[i].ffn));
    }
    if (t) return tokenizer_kvs(k, t, path, err);
    // No tokenizer: still carry the config's bos/eos, which the loader reads from these keys.
    if (c->bos_id >= 0) kv_u32(k, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_id);
    if (c->eos_id >= 0) kv_u32(k, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_id);
    return 0;
}

// ---- the file ------------------------------------------------------------------
typedef struct {
    int fd;
    char b[1 << 16];
    size_t n;
    int failed;
} out_file;

static void out_flush(out_file *o) {
    const char *p = o->b;
    while (o->n > 0 && !o->failed) {
        ssize_t k = write(o->fd, p, o->n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            o->failed = errno ? errno : EIO;
            break;
        }
        p += k;
        o->n -= (size_t)k;
    }
    o->n = 0;
}

static void out_put(out_file *o, const void *p, size_t n) {
    const char *c = p;
    while (n > 0 && !o->failed) {
        size_t k = sizeof o->b - o->n;
        if (k > n) k = n;
        memcpy(o->b + o->n, c, k);
        o->n += k;
        c += k;
        n -= k;
        if (o->n == sizeof o->b) out_flush(o);
    }
}

static void out_pad(out_file *o, uint64_t written) {
    static const char zeros[GGUF_ALIGN];
    out_put(o, zeros, (GGUF_ALIGN - written % GGUF_ALIGN) % GGUF_ALIGN);
}

static uint64_t align_up(uint64_t x) { return (x + GGUF_ALIGN - 1) / GGUF_ALIGN * GGUF_ALIGN; }

// Rows of w in file order. Q/K (perm) go back to the GGUF llama converter's
// adjacent-pair order: file row h*hd + 2i + j holds row h*hd + j*hd/2 + i,
// the inverse of what the loader applies.
static void out_weight(out_file *o, const pz_weight_info *w, int perm, int hd) {
    size_t es = w->type == PZ_DT_BF16 ? 2 : 4, row = es * (size_t)w->cols;
    if (!perm) {
        out_put(o, w->data, w->bytes);
        return;
    }
    int half = hd / 2;
    for (int f = 0; f < w->rows; f++) {
        int h = f / hd, r = f % hd, i = r / 2, j = r % 2;
        out_put(o, (const char *)w->data + (size_t)(h * hd + j * half + i) * row, row);
    }
}

// A tensor the model does not hold: the SwiGLU stand-ins for linear and
// noop FFNs (gguf.h). Matrices in the model's weight type, vectors in F32.
typedef enum { SYN_ZERO, SYN_CONST, SYN_EYE } syn_kind;
typedef struct {
    char name[64];
    int rows, cols, is_matrix;
    pz_dt type;
    syn_kind kind;
    float value;  // SYN_CONST: every element; SYN_EYE: the diagonal
} synth;

static size_t synth_bytes(const synth *t) {
    return (t->type == PZ_DT_BF16 ? 2 : 4) * (size_t)t->rows * (size_t)t->cols;
}

// Fills out (room for 5 * n_layer) with the stand-ins c needs; returns the count.
static int synth_table(const pz_config *c, pz_dt wt, synth *out) {
    int n = 0, H = c->hidden;
#define SYN(NAME, R, C, MAT, KIND, V) do { synth *t = &out[n++]; \
        snprintf(t->name, sizeof t->name, "blk.%d." NAME, i); t->rows = (R); t->cols = (C); \
        t->is_matrix = (MAT); t->type = (MAT) ? wt : PZ_DT_F32; t->kind = (KIND); t->value = (V); } while (0)
    for (int i = 0; i < c->n_layer; i++) {
        const pz_layer_spec *s = &c->layers[i];
        if (s->ffn == PZ_FFN_LINEAR) {
            SYN("ffn_gate.weight", H, H, 1, SYN_ZERO, 0);
            SYN("ffn_gate.bias", 1, H, 0, SYN_CONST, PZ_GGUF_LINEAR_GATE);
            SYN("ffn_up.weight", H, H, 1, SYN_EYE, 1 / PZ_GGUF_LINEAR_GATE);
        } else if (s->ffn == PZ_FFN_NOOP && s->attn != PZ_ATTN_NOOP) {
            SYN("ffn_norm.weight", 1, H, 0, SYN_CONST, 1);
            SYN("ffn_gate.weight", PZ_GGUF_NOOP_FF, H, 1, SYN_ZERO, 0);
            SYN("ffn_up.weight", PZ_GGUF_NOOP_FF, H, 1, SYN_ZERO, 0);
            SYN("ffn_down.weight", H, PZ_GGUF_NOOP_FF, 1, SYN_ZERO, 0);
        }
    }
#undef SYN
    return n;
}

static int out_synth(out_file *o, const synth *t) {
    float *row = calloc((size_t)t->cols, sizeof *row);
    uint16_t *b16 = calloc((size_t)t->cols, sizeof *b16);
    if (!row || !b16) {
        free(row);
        free(b16);
        return -1;
    }
    for (int r = 0; r < t->rows; r++) {
        for (int j = 0; j < t->cols; j++)
            row[j] = t->kind == SYN_CONST ? t->value : t->kind == SYN_EYE && j == r ? t->value : 0;
        if (t->type == PZ_DT_BF16) {
            pz_f32_to_bf16_row(row, b16, (size_t)t->cols);
            out_put(o, b16, 2 * (size_t)t->cols);
        } else {
            out_put(o, row, 4 * (size_t)t->cols);
        }
    }
    free(row);
    free(b16);
    return 0;
}

static int is_qk(const char *gguf_name) {
    size_t n = strlen(gguf_name);
    return (n > 14 && strcmp(gguf_name + n - 14, ".attn_q.weight") == 0) ||
           (n > 14 && strcmp(gguf_name + n - 14, ".attn_k.weight") == 0);
}

int pz_model_save_gguf(const pz_model *m, const pz_tokenizer *t, const char *path, char *err) {
    const pz_config *c = &m->cfg;
    if (m->tp > 1) return pz_err(err, "%s: a tensor-parallel shard is not a model to save", path);
    if (c->rope_scaling != PZ_ROPE_SCALING_NONE)
        return pz_err(err, "%s: Llama-3 RoPE scaling cannot be written: llama.cpp carries it only as "
                           "rope_freqs.weight, which pz_model_load refuses", path);
    int any_attn = 0;
    for (int i = 0; i < c->n_layer; i++) any_attn |= c->layers[i].attn != PZ_ATTN_NOOP;
    if (!any_attn) return pz_err(err, "%s: no layer has attention, so GGUF cannot carry the head count", path);
    if (c->head_dim % 2) return pz_err(err, "%s: odd head dimension %d", path, c->head_dim);
    if (m->wtype != PZ_DT_F32 && m->wtype != PZ_DT_BF16)
        return pz_err(err, "%s: GGUF has no %s type with tensor scales; write f32 or bf16", path,
                      pz_dt_name(m->wtype));
    if (t && pz_tokenizer_vocab_size(t) != c->vocab)
        return pz_err(err, "%s: the tokenizer has %d tokens, the model's vocabulary %d", path,
                      pz_tokenizer_vocab_size(t), c->vocab);

    kvs k = {0};
    buf ti = {0}, hdr = {0};
    out_file *o = NULL;
    int created = 0;
    char tmp[4096];
    int rc = -1, n = pz_model_n_weights(m), n_syn = 0;
    synth *syn = malloc(sizeof *syn * (5 * (size_t)c->n_layer + 1));
    if (!syn) return pz_err(err, "%s: out of memory", path);
    if (!is_llama(c)) n_syn = synth_table(c, m->wtype, syn);
    if (build_kvs(&k, m, t, path, err)) goto done;
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        pz_weight_info w;
        if (pz_model_weight_at(m, i, &w)) {
            pz_err(err, "%s: weight %d unavailable", path, i);
            goto done;
        }
        put_str(&ti, w.gguf_name);
        put_u32(&ti, w.is_matrix ? 2 : 1);
        put_u64(&ti, (uint64_t)w.cols);
        if (w.is_matrix) put_u64(&ti, (uint64_t)w.rows);
        put_u32(&ti, w.type == PZ_DT_BF16 ? GGML_TYPE_BF16 : GGML_TYPE_F32);
        put_u64(&ti, off);
        off = align_up(off + w.bytes);
    }
    for (int i = 0; i < n_syn; i++) {
        put_str(&ti, syn[i].name);
        put_u32(&ti, syn[i].is_matrix ? 2 : 1);
        put_u64(&ti, (uint64_t)syn[i].cols);
        if (syn[i].is_matrix) put_u64(&ti, (uint64_t)syn[i].rows);
        put_u32(&ti, syn[i].type == PZ_DT_BF16 ? GGML_TYPE_BF16 : GGML_TYPE_F32);
        put_u64(&ti, off);
        off = align_up(off + synth_bytes(&syn[i]));
    }
    if (k.b.oom || ti.oom) {
        pz_err(err, "%s: out of memory", path);
        goto done;
    }
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= sizeof tmp) {
        pz_err(err, "%s: path too long", path);
        goto done;
    }
    if (!(o = malloc(sizeof *o))) {
        pz_err(err, "%s: out of memory", path);
        goto done;
    }
    o->n = 0;
    o->failed = 0;
    if ((o->fd = mkstemp(tmp)) < 0) {
        pz_err(err, "%s: cannot create a temporary file: %s", path, strerror(errno));
        goto done;
    }
    created = 1;
    put(&hdr, "GGUF", 4);
    put_u32(&hdr, 3);
    put_u64(&hdr, (uint64_t)(n + n_syn));
    put_u64(&hdr, (uint64_t)k.n);
    if (hdr.oom) {
        pz_err(err, "%s: out of memory", path);
        goto done;
    }
    out_put(o, hdr.p, hdr.n);
    out_put(o, k.b.p, k.b.n);
    out_put(o, ti.p, ti.n);
    out_pad(o, hdr.n + k.b.n + ti.n);
    for (int i = 0; i < n && !o->failed; i++) {
        pz_weight_info w;
        pz_model_weight_at(m, i, &w);
        out_weight(o, &w, w.is_matrix && is_qk(w.gguf_name), c->head_dim);
        out_pad(o, w.bytes);
    }
    for (int i = 0; i < n_syn && !o->failed; i++) {
        if (out_synth(o, &syn[i])) {
            pz_err(err, "%s: out of memory", path);
            goto done;
        }
        out_pad(o, synth_bytes(&syn[i]));
    }
    out_flush(o);
    if (o->failed) {
        pz_err(err, "%s: write failed: %s", tmp, strerror(o->failed));
        goto done;
    }
    if (fchmod(o->fd, 0644) != 0 || fsync(o->fd) != 0) {
        pz_err(err, "%s: fsync failed: %s", tmp, strerror(errno));
        goto done;
    }
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) != 0) {
        pz_err(err, "%s: close failed: %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        pz_err(err, "%s: rename failed: %s", path, strerror(errno));
        goto done;
    }
    pz_fsync_dir_of(path);
    rc = 0;
done:
    if (created && rc != 0) {
        if (o->fd >= 0) close(o->fd);
        unlink(tmp);
    }
    free(o);
    free(syn);
    free(hdr.p);
    free(k.b.p);
    free(ti.p);
    return rc;
}
