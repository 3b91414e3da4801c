// realize.c — see realize.h. Validate every layer's request first (cheap,
// gives the error before any file is read), allocate the child with
// pz_model_alloc, copy the parent's shared tensors, then fill each layer
// half from the parent or from its block file, loading one layer's files at
// a time.
#include "realize.h"
#include "common.h"
#include "tensor.h"
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *half_name(pz_sub_kind h) { return h == PZ_SUB_ATTN ? "attention" : "FFN"; }

static char *vname(pz_sub_kind h, pz_variant v, char *buf, size_t cap) {
    return pz_variant_name(h, &v, buf, cap);
}


// Copies a parent matrix into a child matrix of the same shape, converting
// between fp32 and bf16 when the types differ (a parent whose matrices were
// pointed elsewhere may mix them).
static void copy_mat(pz_mat *dst, const pz_mat *src) {
    size_t n = (size_t)dst->rows * dst->cols;
    if (src->type == dst->type)
        memcpy(dst->data, src->data, n * (dst->type == PZ_DT_BF16 ? 2 : 4));
    else if (dst->type == PZ_DT_BF16)
        pz_f32_to_bf16_row((const float *)src->data, (uint16_t *)dst->data, n);
    else
        pz_bf16_to_f32_row((const uint16_t *)src->data, (float *)dst->data, n);
}

// Stores fp32 block data (dst's shape) into a child matrix.
static void store_f32(pz_mat *dst, const float *src) {
    size_t n = (size_t)dst->rows * dst->cols;
    if (dst->type == PZ_DT_BF16) pz_f32_to_bf16_row(src, (uint16_t *)dst->data, n);
    else memcpy(dst->data, src, n * sizeof(float));
}

// The variant the parent has for half h of spec s.
static pz_variant parent_variant(const pz_layer_spec *s, pz_sub_kind h) {
    return h == PZ_SUB_ATTN ? (pz_variant){.attn = s->attn, .size = s->n_kv}
                           : (pz_variant){.ffn = s->ffn, .size = s->n_ff};
}

// Checks the request for half h of layer l against the parent (without
// reading files) and writes the child's spec fields.
static int check_request(const pz_config *pc, int l, pz_sub_kind h, pz_variant v, const char *file,
                         pz_layer_spec *out, char *err) {
    char a[32], b[32];
    const int kind = h == PZ_SUB_ATTN ? (int)v.attn : (int)v.ffn;
    const int sized = h == PZ_SUB_ATTN ? (kind == PZ_ATTN_GQA) : (kind == PZ_FFN_SWIGLU);
    const int noop = pz_variant_is_noop(h, v);
    if (h == PZ_SUB_ATTN ? (kind < PZ_ATTN_GQA || kind > PZ_ATTN_NOOP) : (kind < PZ_FFN_SWIGLU || kind > PZ_FFN_NOOP))
        return pz_err(err, "layer %d %s: unknown kind %d", l, half_name(h), kind);
    if (sized && v.size <= 0)
        return pz_err(err, "layer %d %s: %s needs a positive size (got %d)", l, half_name(h),
                      h == PZ_SUB_ATTN ? "gqa" : "swiglu", v.size);
    if (!sized && v.size != 0)
        return pz_err(err, "layer %d %s: %s takes size 0 (got %d)", l, half_name(h),
                      vname(h, v, a, sizeof a), v.size);
    if (h == PZ_SUB_ATTN && v.attn == PZ_ATTN_GQA && pc->n_head % v.size)
        return pz_err(err, "layer %d attention: %d KV heads do not divide %d heads", l, v.size, pc->n_head);
    pz_variant pv = parent_variant(&pc->layers[l], h);
    if (!file && !noop && !pz_variant_eq(h, v, pv))
        return pz_err(err, "layer %d %s %s needs a block file: the parent has %s", l, half_name(h),
                      vname(h, v, a, sizeof a), vname(h, pv, b, sizeof b));
    if (h == PZ_SUB_ATTN) out->attn = v.attn, out->n_kv = v.size;
    else out->ffn = v.ffn, out->n_ff = v.size;
    return 0;
}

// Checks that a loaded block file holds half h of layer l as variant v.
static int check_block(const pz_block_weights *w, const char *file, int l, pz_sub_kind h, pz_variant v,
                       char *err) {
    char a[32], b[32];
    static const char *subs[] = {"attn", "ffn", "pair"};
    if (w->layer != l)
        return pz_err(err, "%s: block file is for layer %d, not layer %d (%s)", file, w->layer, l, half_name(h));
    int holds = w->sub == PZ_SUB_PAIR || w->sub == h;
    if (!holds)
        return pz_err(err, "%s: layer %d %s: the block file holds no %s half (sub %s)", file, l, half_name(h),
                      half_name(h), subs[w->sub]);
    pz_variant fv = h == PZ_SUB_ATTN ? w->attn : w->ffn;
    if (!pz_variant_eq(h, fv, v))
        return pz_err(err, "%s: layer %d %s: the block file holds %s, the child wants %s", file, l, half_name(h),
                      vname(h, fv, a, sizeof a), vname(h, v, b, sizeof b));
    return 0;
}

// Loads file for layer l, prefixing errors with the layer and half.
static int load_block(pz_block_weights *w, const pz_config *pc, const char *file, int l, pz_sub_kind h,
                      char *err) {
    char tmp[PZ_ERRLEN];
    if (pz_block_weights_load(w, pc, file, tmp)) return pz_err(err, "layer %d %s block: %s", l, half_name(h), tmp);
    return 0;
}

static void fill_attn_from_block(pz_layer_weights *L, const pz_block_weights *w, int H) {
    if (!w->attn_norm) return;  // noop
    memcpy(L->attn_norm, w->attn_norm, (size_t)H * sizeof(float));
    if (w->wq) {
        store_f32(&L->wq, w->wq);
        store_f32(&L->wk, w->wk);
        store_f32(&L->wv, w->wv);
        store_f32(&L->wo, w->wo);
    } else {
        store_f32(&L->wo, w->attn_lin);
    }
}

static void fill_ffn_from_block(pz_layer_weights *L, const pz_block_weights *w, int H) {
    if (!w->ffn_norm) return;  // noop
    memcpy(L->ffn_norm, w->ffn_norm, (size_t)H * sizeof(float));
    if (w->gate) {
        store_f32(&L->w_gate, w->gate);
        store_f32(&L->w_up, w->up);
        store_f32(&L->w_down, w->down);
    } else {
        store_f32(&L->w_down, w->ffn_lin);
    }
}

pz_model *pz_realize_child(const pz_model *parent, const pz_realize_layer *layers, char *err) {
    const pz_config *pc = &parent->cfg;
    const int H = pc->hidden;
    pz_config *cc = malloc(sizeof *cc);  // pz_config holds PZ_MAX_LAYERS specs: keep it off the stack
    if (!cc) {
        pz_err(err, "realize: out of memory");
        return NULL;
    }
    *cc = *pc;
    for (int l = 0; l < pc->n_layer; l++) {
        pz_layer_spec *s = &cc->layers[l];
        if (check_request(pc, l, PZ_SUB_ATTN, layers[l].attn, layers[l].attn_file, s, err) ||
            check_request(pc, l, PZ_SUB_FFN, layers[l].ffn, layers[l].ffn_file, s, err)) {
            free(cc);
            return NULL;
        }
    }
    pz_model *m = pz_model_alloc(cc, parent->wtype, err);
    free(cc);
    if (!m) return NULL;
    snprintf(m->format, sizeof m->format, "realized");

    copy_mat(&m->tok_embd, &parent->tok_embd);
    memcpy(m->out_norm, parent->out_norm, (size_t)H * sizeof(float));
    if (!pc->tie_embeddings) copy_mat(&m->lm_head, &parent->lm_head);  // tied: alloc aliased it to tok_embd

    pz_block_weights wa, wf;
    memset(&wa, 0, sizeof wa);
    memset(&wf, 0, sizeof wf);
    for (int l = 0; l < pc->n_layer; l++) {
        const pz_realize_layer *r = &layers[l];
        const pz_layer_weights *P = &parent->layers[l];
        pz_layer_weights *L = &m->layers[l];
        // Attention half.
        if (r->attn_file) {
            if (load_block(&wa, pc, r->attn_file, l, PZ_SUB_ATTN, err) ||
                check_block(&wa, r->attn_file, l, PZ_SUB_ATTN, r->attn, err))
                goto fail;
            fill_attn_from_block(L, &wa, H);
        } else if (r->attn.attn != PZ_ATTN_NOOP) {
            memcpy(L->attn_norm, P->attn_norm, (size_t)H * sizeof(float));
            if (r->attn.attn == PZ_ATTN_GQA) {
                copy_mat(&L->wq, &P->wq);
                copy_mat(&L->wk, &P->wk);
                copy_mat(&L->wv, &P->wv);
            }
            copy_mat(&L->wo, &P->wo);
        }
        // FFN half (a pair file named in both fields is read once).
        if (r->ffn_file) {
            const pz_block_weights *src = &wa;
            if (!r->attn_file || strcmp(r->attn_file, r->ffn_file) != 0) {
                if (load_block(&wf, pc, r->ffn_file, l, PZ_SUB_FFN, err)) goto fail;
                src = &wf;
            }
            if (check_block(src, r->ffn_file, l, PZ_SUB_FFN, r->ffn, err)) goto fail;
            fill_ffn_from_block(L, src, H);
        } else if (r->ffn.ffn != PZ_FFN_NOOP) {
            memcpy(L->ffn_norm, P->ffn_norm, (size_t)H * sizeof(float));
            if (r->ffn.ffn == PZ_FFN_SWIGLU) {
                copy_mat(&L->w_gate, &P->w_gate);
                copy_mat(&L->w_up, &P->w_up);
            }
            copy_mat(&L->w_down, &P->w_down);
        }
        pz_block_weights_free(&wa);
        pz_block_weights_free(&wf);
    }
    return m;
fail:
    pz_block_weights_free(&wa);
    pz_block_weights_free(&wf);
    pz_model_free(m);
    return NULL;
}
