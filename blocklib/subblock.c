// subblock.c — see subblock.h.
#include "subblock.h"
#include "common.h"
#include "devmem.h"

#include <stdlib.h>
#include <string.h>

struct pz_sub_exec {
    pz_sub_kind half;
    pz_variant v;
    pz_backend *be;
    int hidden, max_rows, M;
    pz_dt prec;
    float eps;
    pz_attn_block_train *attn;  // gqa
    pz_ffn_block_train *ffn;    // swiglu
    float *xn, *rstd, *dxn;     // linear, backend memory: (max_rows, hidden), (max_rows), (max_rows, hidden)
    pz_dev_zeros zeros;         // noop: zeroes y / dx
    int32_t *pos;               // gqa, host (the op copies it): (max_rows)
    float *inv_freq;            // gqa, host: (head_dim/2)
};

pz_sub_exec *pz_sub_exec_create(const pz_config *c, pz_sub_kind half, pz_variant v, int max_rows,
                                pz_dt prec, pz_backend *be, char *err) {
    pz_sub_exec *e = calloc(1, sizeof *e);
    if (!e) return pz_err(err, "subblock: out of memory"), NULL;
    e->half = half, e->v = v, e->hidden = c->hidden, e->max_rows = max_rows, e->prec = prec;
    e->be = be;
    e->eps = c->norm_eps;
    const size_t M = (size_t)max_rows, H = (size_t)c->hidden;
    int gqa = half == PZ_SUB_ATTN && v.attn == PZ_ATTN_GQA;
    int swi = half == PZ_SUB_FFN && v.ffn == PZ_FFN_SWIGLU;
    int lin = (half == PZ_SUB_ATTN || half == PZ_SUB_FFN) && pz_variant_is_linear(half, v);
    if (half != PZ_SUB_ATTN && half != PZ_SUB_FFN) {
        pz_err(err, "subblock: half must be attention or FFN");
        goto fail;
    }
    if (gqa) {
        pz_attn_block_cfg ac = {.hidden = c->hidden, .n_head = c->n_head, .n_kv = v.size,
                                .head_dim = c->head_dim, .eps = c->norm_eps, .residual = 0, .prec = prec};
        e->attn = be->train->attn_block_create(be, &ac, max_rows, err);
        e->pos = malloc(M * sizeof(int32_t));
        e->inv_freq = malloc(sizeof(float) * (size_t)(c->head_dim / 2 + 1));
        if (!e->attn) goto fail;
        if (!e->pos || !e->inv_freq) goto oom;
        pz_rope_params rp = {.head_dim = c->head_dim, .theta = c->rope_theta,
                             .llama3 = c->rope_scaling == PZ_ROPE_SCALING_LLAMA3,
                             .factor = c->rope_factor, .low_freq_factor = c->rope_low_freq_factor,
                             .high_freq_factor = c->rope_high_freq_factor, .orig_ctx = c->rope_orig_ctx};
        pz_rope_inv_freq(&rp, e->inv_freq);
    } else if (swi) {
        pz_ffn_block_cfg fc = {.hidden = c->hidden, .n_ff = v.size, .eps = c->norm_eps, .residual = 0,
                               .prec = prec};
        e->ffn = be->train->ffn_block_create(be, &fc, max_rows, err);
        if (!e->ffn) goto fail;
    } else if (lin) {
        if (!(e->xn = pz_dev_alloc(be, M * H * sizeof(float), "subblock", err)) ||
            !(e->dxn = pz_dev_alloc(be, M * H * sizeof(float), "subblock", err)) ||
            !(e->rstd = pz_dev_alloc(be, M * sizeof(float), "subblock", err)))
            goto fail;
    } else {
        size_t zb = M * H * sizeof(float);
        if (pz_dev_zeros_init(&e->zeros, be, zb < ((size_t)1 << 20) ? zb : (size_t)1 << 20, err)) goto fail;
    }
    return e;
oom:
    pz_err(err, "subblock: out of memory (%d rows)", max_rows);
fail:
    pz_sub_exec_free(e);
    return NULL;
}

void pz_sub_exec_free(pz_sub_exec *e) {
    if (!e) return;
    if (e->attn) e->be->train->attn_block_free(e->be, e->attn);
    if (e->ffn) e->be->train->ffn_block_free(e->be, e->ffn);
    if (e->xn) e->be->free(e->be, e->xn);
    if (e->dxn) e->be->free(e->be, e->dxn);
    if (e->rstd) e->be->free(e->be, e->rstd);
    pz_dev_zeros_free(&e->zeros, e->be);
    free(e->pos);
    free(e->inv_freq);
    free(e);
}

pz_sub_kind pz_sub_exec_half(const pz_sub_exec *e) { return e->half; }
pz_variant pz_sub_exec_variant(const pz_sub_exec *e) { return e->v; }

// The norm and matrix of a linear half.
static void lin_of(const pz_sub_exec *e, const pz_block_weights *w, float **norm, float **W) {
    *norm = e->half == PZ_SUB_ATTN ? w->attn_norm : w->ffn_norm;
    *W = e->half == PZ_SUB_ATTN ? w->attn_lin : w->ffn_lin;
}

static int check_w(const pz_sub_exec *e, const pz_block_weights *w, char *err) {
    pz_variant have = e->half == PZ_SUB_ATTN ? w->attn : w->ffn;
    int present = e->half == PZ_SUB_ATTN ? w->sub != PZ_SUB_FFN : w->sub != PZ_SUB_ATTN;
    if (!present || !pz_variant_eq(e->half, have, e->v))
        return pz_err(err, "subblock: weights do not match the variant");
    return 0;
}

int pz_sub_exec_fwd(pz_sub_exec *e, const pz_block_weights *w, const float *x,
                    int n_seq, int T, float *y, char *err) {
    const int M = n_seq * T, H = e->hidden;
    if (M <= 0 || M > e->max_rows) return pz_err(err, "subblock: %d rows (max %d)", M, e->max_rows);
    if (check_w(e, w, err)) return -1;
    e->M = M;
    if (e->attn) {
        for (int r = 0; r < M; r++) e->pos[r] = r % T;
        pz_attn_block_w aw = {w->attn_norm, w->wq, w->wk, w->wv, w->wo};
        return e->be->train->attn_block_fwd(e->be, e->attn, &aw, x, n_seq, T, e->pos, e->inv_freq, y, err);
    }
    if (e->ffn) {
        pz_ffn_block_w fw = {w->ffn_norm, w->gate, w->up, w->down};
        return e->be->train->ffn_block_fwd(e->be, e->ffn, &fw, x, M, y, err);
    }
    if (e->xn) {
        float *norm, *W;
        lin_of(e, w, &norm, &W);
        e->be->train->rmsnorm_fwd(e->be, e->xn, e->rstd, x, norm, M, H, e->eps);
        return e->be->train->linear_fwd(e->be, y, e->xn, W, M, H, H, e->prec, err);
    }
    return pz_dev_zero(&e->zeros, e->be, y, sizeof(float) * (size_t)M * H, err);  // noop
}

int pz_sub_exec_bwd(pz_sub_exec *e, const pz_block_weights *w,
                    const pz_block_weights *dw, const float *x, const float *dy, float *dx,
                    char *err) {
    const int M = e->M, H = e->hidden;
    if (e->attn) {
        pz_attn_block_w aw = {w->attn_norm, w->wq, w->wk, w->wv, w->wo};
        pz_attn_block_w ad;
        if (dw) ad = (pz_attn_block_w){dw->attn_norm, dw->wq, dw->wk, dw->wv, dw->wo};
        return e->be->train->attn_block_bwd(e->be, e->attn, &aw, dw ? &ad : NULL, x, dy, dx, err);
    }
    if (e->ffn) {
        pz_ffn_block_w fw = {w->ffn_norm, w->gate, w->up, w->down};
        pz_ffn_block_w fd;
        if (dw) fd = (pz_ffn_block_w){dw->ffn_norm, dw->gate, dw->up, dw->down};
        return e->be->train->ffn_block_bwd(e->be, e->ffn, &fw, dw ? &fd : NULL, x, dy, dx, err);
    }
    if (e->xn) {
        float *norm, *W, *dnorm = NULL, *dW = NULL;
        lin_of(e, w, &norm, &W);
        if (dw) lin_of(e, dw, &dnorm, &dW);
        if (!dx && !dnorm && !dW) return 0;
        int need_dxn = dx || dnorm;
        if (e->be->train->linear_bwd(e->be, need_dxn ? e->dxn : NULL, 0, dW, dy, e->xn, W, M, H, H, e->prec, err))
            return -1;
        if (need_dxn) e->be->train->rmsnorm_bwd(e->be, dx, 0, dnorm, e->dxn, x, norm, e->rstd, M, H);
        return 0;
    }
    return dx ? pz_dev_zero(&e->zeros, e->be, dx, sizeof(float) * (size_t)M * H, err) : 0;
}

double pz_sub_exec_fwd_flops(const pz_config *c, pz_sub_kind half, pz_variant v, int M, int T) {
    const double H = c->hidden, qd = (double)c->n_head * c->head_dim;
    if (pz_variant_is_linear(half, v)) return 2.0 * M * H * H;
    if (pz_variant_is_noop(half, v)) return 0;
    if (half == PZ_SUB_FFN) return 2.0 * M * 3.0 * H * v.size;
    double kvd = (double)v.size * c->head_dim;
    double proj = 2.0 * M * H * (2 * qd + 2 * kvd);
    double n_seq = (double)M / T;
    double att = n_seq * 2.0 * 2.0 * ((double)T * (T + 1) / 2) * qd;  // QK^T and PV
    return proj + att;
}
