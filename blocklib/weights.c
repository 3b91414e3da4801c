// weights.c — see weights.h.
#include "weights.h"
#include "common.h"
#include "tensor.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pz_block_weights_alloc(pz_block_weights *w, const pz_config *c, int layer, pz_sub_kind sub,
                           pz_variant attn, pz_variant ffn, char *err) {
    memset(w, 0, sizeof *w);
    if (layer < 0 || layer >= c->n_layer) return pz_err(err, "block: layer %d out of range", layer);
    w->layer = layer, w->sub = sub, w->hidden = c->hidden, w->n_head = c->n_head,
    w->head_dim = c->head_dim;
    const size_t H = (size_t)c->hidden, qd = (size_t)c->n_head * c->head_dim;
    int has_a = sub != PZ_SUB_FFN, has_f = sub != PZ_SUB_ATTN;
    if (has_a) w->attn = attn;
    else w->attn = (pz_variant){.attn = PZ_ATTN_NOOP, .size = 0};
    if (has_f) w->ffn = ffn;
    else w->ffn = (pz_variant){.ffn = PZ_FFN_NOOP, .size = 0};
    // Size table: (pointer, count) in arena order.
    struct { float **p; size_t n; } t[12];
    int nt = 0;
    if (has_a && attn.attn == PZ_ATTN_GQA) {
        if (attn.size <= 0 || c->n_head % attn.size) return pz_err(err, "block: bad n_kv %d", attn.size);
        size_t kvd = (size_t)attn.size * c->head_dim;
        t[nt].p = &w->attn_norm, t[nt++].n = H;
        t[nt].p = &w->wq, t[nt++].n = qd * H;
        t[nt].p = &w->wk, t[nt++].n = kvd * H;
        t[nt].p = &w->wv, t[nt++].n = kvd * H;
        t[nt].p = &w->wo, t[nt++].n = H * qd;
    } else if (has_a && attn.attn == PZ_ATTN_LINEAR) {
        t[nt].p = &w->attn_norm, t[nt++].n = H;
        t[nt].p = &w->attn_lin, t[nt++].n = H * H;
    }
    if (has_f && ffn.ffn == PZ_FFN_SWIGLU) {
        if (ffn.size <= 0) return pz_err(err, "block: bad n_ff %d", ffn.size);
        size_t F = (size_t)ffn.size;
        t[nt].p = &w->ffn_norm, t[nt++].n = H;
        t[nt].p = &w->gate, t[nt++].n = F * H;
        t[nt].p = &w->up, t[nt++].n = F * H;
        t[nt].p = &w->down, t[nt++].n = H * F;
    } else if (has_f && ffn.ffn == PZ_FFN_LINEAR) {
        t[nt].p = &w->ffn_norm, t[nt++].n = H;
        t[nt].p = &w->ffn_lin, t[nt++].n = H * H;
    }
    size_t total = 0;
    for (int i = 0; i < nt; i++) total += (t[i].n + 15) & ~(size_t)15;  // 64-byte aligned slices
    w->arena = total ? aligned_alloc(64, total * sizeof(float)) : NULL;
    if (total && !w->arena) return pz_err(err, "block: out of memory (%zu floats)", total);
    if (total) memset(w->arena, 0, total * sizeof(float));
    size_t off = 0;
    for (int i = 0; i < nt; i++) {
        *t[i].p = w->arena + off;
        off += (t[i].n + 15) & ~(size_t)15;
    }
    w->n_floats = total;
    return 0;
}

void pz_block_weights_free(pz_block_weights *w) {
    if (!w) return;
    free(w->arena);
    memset(w, 0, sizeof *w);
}

size_t pz_block_weights_count(const pz_block_weights *w) {
    size_t H = (size_t)w->hidden, qd = (size_t)w->n_head * w->head_dim, n = 0;
    if (w->wq) n += H + 2 * qd * H + 2 * (size_t)w->attn.size * w->head_dim * H;
    if (w->attn_lin) n += H + H * H;
    if (w->gate) n += H + 3 * (size_t)w->ffn.size * H;
    if (w->ffn_lin) n += H + H * H;
    return n;
}

static void mat_to_f32(float *dst, const pz_mat *m) {
    size_t n = (size_t)m->rows * m->cols;
    if (m->type == PZ_DT_F32) memcpy(dst, m->data, n * sizeof(float));
    else pz_bf16_to_f32_row((const uint16_t *)m->data, dst, n);
}

int pz_block_weights_from_parent(pz_block_weights *w, const pz_model *m, int layer,
                                 pz_sub_kind sub, char *err) {
    const pz_config *c = &m->cfg;
    if (layer < 0 || layer >= c->n_layer) return pz_err(err, "block: layer %d out of range", layer);
    const pz_layer_spec *s = &c->layers[layer];
    const pz_layer_weights *L = &m->layers[layer];
    if (pz_block_weights_alloc(w, c, layer, sub, (pz_variant){.attn = s->attn, .size = s->n_kv},
                               (pz_variant){.ffn = s->ffn, .size = s->n_ff}, err))
        return -1;
    const size_t H = (size_t)c->hidden;
    if (w->attn_norm) memcpy(w->attn_norm, L->attn_norm, H * sizeof(float));
    if (w->wq) {
        mat_to_f32(w->wq, &L->wq);
        mat_to_f32(w->wk, &L->wk);
        mat_to_f32(w->wv, &L->wv);
        mat_to_f32(w->wo, &L->wo);
    }
    if (w->attn_lin) mat_to_f32(w->attn_lin, &L->wo);
    if (w->ffn_norm) memcpy(w->ffn_norm, L->ffn_norm, H * sizeof(float));
    if (w->gate) {
        mat_to_f32(w->gate, &L->w_gate);
        mat_to_f32(w->up, &L->w_up);
        mat_to_f32(w->down, &L->w_down);
    }
    if (w->ffn_lin) mat_to_f32(w->ffn_lin, &L->w_down);
    return 0;
}

// ---- files ------------------------------------------------------------------

typedef struct {
    const char *suffix;
    float *data;
    int rows, cols;  // rows 0: a vector of cols
} named_t;

static int list_tensors(const pz_block_weights *w, named_t *t) {
    const int H = w->hidden, qd = w->n_head * w->head_dim;
    int n = 0;
    if (w->attn_norm) t[n++] = (named_t){"input_layernorm.weight", w->attn_norm, 0, H};
    if (w->wq) {
        int kvd = w->attn.size * w->head_dim;
        t[n++] = (named_t){"self_attn.q_proj.weight", w->wq, qd, H};
        t[n++] = (named_t){"self_attn.k_proj.weight", w->wk, kvd, H};
        t[n++] = (named_t){"self_attn.v_proj.weight", w->wv, kvd, H};
        t[n++] = (named_t){"self_attn.o_proj.weight", w->wo, H, qd};
    }
    if (w->attn_lin) t[n++] = (named_t){"self_attn.linear_attn.weight", w->attn_lin, H, H};
    if (w->ffn_norm) t[n++] = (named_t){"post_attention_layernorm.weight", w->ffn_norm, 0, H};
    if (w->gate) {
        int F = w->ffn.size;
        t[n++] = (named_t){"mlp.gate_proj.weight", w->gate, F, H};
        t[n++] = (named_t){"mlp.up_proj.weight", w->up, F, H};
        t[n++] = (named_t){"mlp.down_proj.weight", w->down, H, F};
    }
    if (w->ffn_lin) t[n++] = (named_t){"mlp.linear_mlp.weight", w->ffn_lin, H, H};
    return n;
}

static const char *sub_name(pz_sub_kind s) {
    return s == PZ_SUB_ATTN ? "attn" : s == PZ_SUB_FFN ? "ffn" : "pair";
}

int pz_block_weights_save(const pz_block_weights *w, const char *path, pz_st_dtype dtype,
                          const char *block_id, char sha256_hex[65], char *err) {
    if (dtype != PZ_ST_F32 && dtype != PZ_ST_BF16)
        return pz_err(err, "%s: block weights are saved as F32 or BF16", path);
    named_t t[12];
    int n = list_tensors(w, t);
    pz_st_writer *wr = pz_st_writer_new();
    uint16_t *bf = NULL;
    int rc = -1;
    if (!wr) return pz_err(err, "%s: out of memory", path);
    if (dtype == PZ_ST_BF16 && w->n_floats) {
        bf = malloc(w->n_floats * sizeof(uint16_t));
        if (!bf) {
            pz_err(err, "%s: out of memory", path);
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d.%s", w->layer, t[i].suffix);
        int64_t shape[2];
        int nd = t[i].rows ? 2 : 1;
        if (nd == 2) shape[0] = t[i].rows, shape[1] = t[i].cols;
        else shape[0] = t[i].cols;
        size_t cnt = (size_t)(t[i].rows ? t[i].rows : 1) * (size_t)t[i].cols;
        const void *data = t[i].data;
        if (bf) {
            uint16_t *dst = bf + (t[i].data - w->arena);
            pz_f32_to_bf16_row(t[i].data, dst, cnt);
            data = dst;
        }
        if (pz_st_writer_add(wr, name, dtype, nd, shape, data, err)) goto out;
    }
    char buf[64], a[24], f[24];
    snprintf(buf, sizeof buf, "%d", w->layer);
    pz_st_writer_set_metadata(wr, "layer", buf);
    pz_st_writer_set_metadata(wr, "sub", sub_name(w->sub));
    pz_st_writer_set_metadata(wr, "attn", pz_variant_name(PZ_SUB_ATTN, &w->attn, a, sizeof a));
    pz_st_writer_set_metadata(wr, "ffn", pz_variant_name(PZ_SUB_FFN, &w->ffn, f, sizeof f));
    if (block_id) pz_st_writer_set_metadata(wr, "block_id", block_id);
    pz_st_writer_set_metadata(wr, "format", "puzzle-block-1");
    if (pz_st_writer_write_file(wr, path, err)) goto out;
    if (sha256_hex && pz_sha256_file(path, sha256_hex, err)) goto out;
    rc = 0;
out:
    pz_st_writer_free(wr);
    free(bf);
    return rc;
}

static int parse_variant(const char *s, int is_attn, pz_variant *v) {
    if (!s) return -1;
    *v = (pz_variant){.size = 0};
    if (strcmp(s, "linear") == 0) {
        if (is_attn) v->attn = PZ_ATTN_LINEAR;
        else v->ffn = PZ_FFN_LINEAR;
        return 0;
    }
    if (strcmp(s, "noop") == 0) {
        if (is_attn) v->attn = PZ_ATTN_NOOP;
        else v->ffn = PZ_FFN_NOOP;
        return 0;
    }
    const char *pre = is_attn ? "gqa_kv" : "swiglu_";
    size_t k = strlen(pre);
    if (strncmp(s, pre, k) != 0) return -1;
    char *end;
    long x = strtol(s + k, &end, 10);
    if (*end || x <= 0 || x > 1 << 24) return -1;
    if (is_attn) *v = (pz_variant){.attn = PZ_ATTN_GQA, .size = (int)x};
    else *v = (pz_variant){.ffn = PZ_FFN_SWIGLU, .size = (int)x};
    return 0;
}

int pz_block_weights_load(pz_block_weights *w, const pz_config *c, const char *path, char *err) {
    memset(w, 0, sizeof *w);
    pz_st *st = pz_st_open(path, err);
    if (!st) return -1;
    int rc = -1;
    const char *ls = pz_st_metadata(st, "layer"), *ss = pz_st_metadata(st, "sub");
    pz_variant a = {.attn = PZ_ATTN_NOOP}, f = {.ffn = PZ_FFN_NOOP};
    if (!ls || !ss) {
        pz_err(err, "%s: not a block file (no layer/sub metadata)", path);
        goto out;
    }
    pz_sub_kind sub = strcmp(ss, "attn") == 0 ? PZ_SUB_ATTN : strcmp(ss, "ffn") == 0 ? PZ_SUB_FFN : PZ_SUB_PAIR;
    if ((sub != PZ_SUB_FFN && parse_variant(pz_st_metadata(st, "attn"), 1, &a)) ||
        (sub != PZ_SUB_ATTN && parse_variant(pz_st_metadata(st, "ffn"), 0, &f))) {
        pz_err(err, "%s: bad variant metadata", path);
        goto out;
    }
    if (pz_block_weights_alloc(w, c, atoi(ls), sub, a, f, err)) goto out;
    named_t t[12];
    int n = list_tensors(w, t);
    for (int i = 0; i < n; i++) {
        char name[128];
        snprintf(name, sizeof name, "model.layers.%d.%s", w->layer, t[i].suffix);
        const pz_st_tensor *x = pz_st_find(st, name);
        size_t cnt = (size_t)(t[i].rows ? t[i].rows : 1) * (size_t)t[i].cols;
        int nd = t[i].rows ? 2 : 1;
        if (!x || x->n_dims != nd || x->n_elems != cnt ||
            (nd == 2 && (x->shape[0] != t[i].rows || x->shape[1] != t[i].cols)) ||
            (x->dtype != PZ_ST_F32 && x->dtype != PZ_ST_BF16)) {
            pz_err(err, "%s: tensor %s missing or of the wrong shape/dtype", path, name);
            goto out;
        }
        if (x->dtype == PZ_ST_F32) memcpy(t[i].data, x->data, cnt * sizeof(float));
        else pz_bf16_to_f32_row((const uint16_t *)x->data, t[i].data, cnt);
    }
    rc = 0;
out:
    if (rc) pz_block_weights_free(w);
    pz_st_close(st);
    return rc;
}

int pz_sha256_file(const char *path, char hex[65], char *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return pz_err(err, "%s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    enum { CHUNK = 1 << 16 };
    unsigned char *b = malloc(CHUNK);
    ok = ok && b;
    size_t r;
    while (ok && (r = fread(b, 1, CHUNK, f)) > 0) ok = EVP_DigestUpdate(ctx, b, r) == 1;
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
    free(b);
    EVP_MD_CTX_free(ctx);
    fclose(f);
    if (!ok) return pz_err(err, "%s: sha256 failed", path);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}
