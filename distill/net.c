// net.c — see net.h.
#include "net.h"
#include "common.h"
#include "devmem.h"
#include "subblock.h"
#include "weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct pz_net {
    pz_backend *be;
    pz_config cfg;
    int max_rows, M, T;
    pz_dt prec;
    pz_sub_exec **ea, **ef;  // (n_layer) each
    int32_t *ids;            // (max_rows) the last forward's tokens (host)
    // The rest: backend memory.
    int32_t *dids;           // (max_rows) the same
    float *h;                // (n_layer+1, max_rows, hidden): h[0] embeddings, h[l+1] layer l's output
    float *x2;               // (n_layer, max_rows, hidden): the FFN input of layer l
    float *br;               // (max_rows, hidden) branch output / branch dx
    float *hn, *rstd;        // (max_rows, hidden), (max_rows): final norm
    float *logits;           // (max_rows, vocab)
    float *dh, *dx2, *dhn;   // (max_rows, hidden) backward scratch
};

static pz_variant attn_variant(const pz_layer_spec *s) {
    pz_variant v;
    memset(&v, 0, sizeof v);
    v.attn = s->attn;
    v.size = s->attn == PZ_ATTN_GQA ? s->n_kv : 0;
    return v;
}

static pz_variant ffn_variant(const pz_layer_spec *s) {
    pz_variant v;
    memset(&v, 0, sizeof v);
    v.ffn = s->ffn;
    v.size = s->ffn == PZ_FFN_SWIGLU ? s->n_ff : 0;
    return v;
}

// Layer l of m as a (non-owning) block-weights view for the sub-block runners.
static void layer_view(const pz_model *m, int l, pz_block_weights *w) {
    const pz_config *c = &m->cfg;
    const pz_layer_spec *s = &c->layers[l];
    const pz_layer_weights *lw = &m->layers[l];
    memset(w, 0, sizeof *w);
    w->layer = l, w->sub = PZ_SUB_PAIR, w->attn = attn_variant(s), w->ffn = ffn_variant(s);
    w->hidden = c->hidden, w->n_head = c->n_head, w->head_dim = c->head_dim;
    w->attn_norm = lw->attn_norm;
    if (s->attn == PZ_ATTN_GQA) {
        w->wq = lw->wq.data, w->wk = lw->wk.data, w->wv = lw->wv.data, w->wo = lw->wo.data;
    } else if (s->attn == PZ_ATTN_LINEAR) {
        w->attn_lin = lw->wo.data;
    }
    w->ffn_norm = lw->ffn_norm;
    if (s->ffn == PZ_FFN_SWIGLU) {
        w->gate = lw->w_gate.data, w->up = lw->w_up.data, w->down = lw->w_down.data;
    } else if (s->ffn == PZ_FFN_LINEAR) {
        w->ffn_lin = lw->w_down.data;
    }
}

static int check_model(const pz_net *n, const pz_model *m, const char *what, char *err) {
    if (m->wtype != PZ_DT_F32) return pz_err(err, "net: the %s model must hold fp32 weights", what);
    const pz_config *a = &n->cfg, *b = &m->cfg;
    if (a->n_layer != b->n_layer || a->hidden != b->hidden || a->vocab != b->vocab ||
        a->n_head != b->n_head || a->head_dim != b->head_dim ||
        memcmp(a->layers, b->layers, sizeof(pz_layer_spec) * (size_t)a->n_layer) != 0)
        return pz_err(err, "net: the %s model's architecture differs from the runner's", what);
    return 0;
}

pz_net *pz_net_create(const pz_model *m, int max_rows, pz_dt prec, pz_backend *be, char *err) {
    if (m->wtype != PZ_DT_F32) return pz_err(err, "net: the model must hold fp32 weights"), NULL;
    if (max_rows < 1) return pz_err(err, "net: max_rows %d", max_rows), NULL;
    pz_net *n = calloc(1, sizeof *n);
    if (!n) return pz_err(err, "net: out of memory"), NULL;
    n->be = be, n->cfg = m->cfg, n->max_rows = max_rows, n->prec = prec;
    const pz_config *c = &n->cfg;
    const size_t L = (size_t)c->n_layer, R = (size_t)max_rows, H = (size_t)c->hidden;
    n->ea = calloc(L, sizeof *n->ea);
    n->ef = calloc(L, sizeof *n->ef);
    n->ids = malloc(R * sizeof(int32_t));
    if (!n->ea || !n->ef || !n->ids) {
        pz_err(err, "net: out of memory (%d rows)", max_rows);
        goto fail;
    }
    const size_t fb = sizeof(float);
    if (!(n->dids = pz_dev_alloc(be, R * sizeof(int32_t), "net", err)) ||
        !(n->h = pz_dev_alloc(be, (L + 1) * R * H * fb, "net", err)) ||
        !(n->x2 = pz_dev_alloc(be, L * R * H * fb, "net", err)) ||
        !(n->br = pz_dev_alloc(be, R * H * fb, "net", err)) || !(n->hn = pz_dev_alloc(be, R * H * fb, "net", err)) ||
        !(n->rstd = pz_dev_alloc(be, R * fb, "net", err)) ||
        !(n->logits = pz_dev_alloc(be, R * (size_t)c->vocab * fb, "net", err)) ||
        !(n->dh = pz_dev_alloc(be, R * H * fb, "net", err)) || !(n->dx2 = pz_dev_alloc(be, R * H * fb, "net", err)) ||
        !(n->dhn = pz_dev_alloc(be, R * H * fb, "net", err)))
        goto fail;
    for (int l = 0; l < c->n_layer; l++) {
        n->ea[l] = pz_sub_exec_create(c, PZ_SUB_ATTN, attn_variant(&c->layers[l]), max_rows, prec, be, err);
        if (!n->ea[l]) goto fail;
        n->ef[l] = pz_sub_exec_create(c, PZ_SUB_FFN, ffn_variant(&c->layers[l]), max_rows, prec, be, err);
        if (!n->ef[l]) goto fail;
    }
    return n;
fail:
    pz_net_free(n);
    return NULL;
}

void pz_net_free(pz_net *n) {
    if (!n) return;
    for (int l = 0; l < n->cfg.n_layer; l++) {
        if (n->ea) pz_sub_exec_free(n->ea[l]);
        if (n->ef) pz_sub_exec_free(n->ef[l]);
    }
    free(n->ea), free(n->ef), free(n->ids);
    float *dev[] = {n->h, n->x2, n->br, n->hn, n->rstd, n->logits, n->dh, n->dx2, n->dhn};
    for (int i = 0; i < 9; i++) n->be->free(n->be, dev[i]);
    n->be->free(n->be, n->dids);
    free(n);
}

const float *pz_net_hidden(const pz_net *n, int l) {
    return n->h + (size_t)(l + 1) * n->max_rows * n->cfg.hidden;
}
float *pz_net_logits(pz_net *n) { return n->logits; }
int pz_net_rows(const pz_net *n) { return n->M; }

int pz_net_fwd(pz_net *n, const pz_model *m, const int32_t *ids, int n_seq, int T, char *err) {
    const pz_config *c = &n->cfg;
    const int M = n_seq * T, H = c->hidden;
    if (check_model(n, m, "given", err)) return -1;
    if (T < 1 || M < 1 || M > n->max_rows) return pz_err(err, "net: %d rows (max %d)", M, n->max_rows);
    for (int r = 0; r < M; r++)
        if (ids[r] < 0 || ids[r] >= c->vocab) return pz_err(err, "net: token id %d out of range", ids[r]);
    n->M = M, n->T = T;
    memcpy(n->ids, ids, sizeof(int32_t) * (size_t)M);
    const size_t RH = (size_t)n->max_rows * H, MH = (size_t)M * H;
    pz_backend *be = n->be;
    // The embedding rows: the ids go over once, the backend gathers.
    const pz_weight table = pz_weight_dense(m->tok_embd.data, PZ_DT_F32, c->vocab, H);
    if (be->copy(be, n->dids, ids, sizeof(int32_t) * (size_t)M, PZ_COPY_H2D, err) ||
        be->embed(be, n->h, &table, n->dids, M, err))
        return -1;
    for (int l = 0; l < c->n_layer; l++) {
        pz_block_weights w;
        layer_view(m, l, &w);
        float *hin = n->h + (size_t)l * RH, *x2 = n->x2 + (size_t)l * RH, *hout = hin + RH;
        if (pz_sub_exec_fwd(n->ea[l], &w, hin, n_seq, T, n->br, err)) return -1;
        if (be->copy(be, x2, hin, MH * sizeof(float), PZ_COPY_D2D, err)) return -1;
        be->add(be, x2, n->br, MH);  // x2 = hin + attn(hin)
        if (pz_sub_exec_fwd(n->ef[l], &w, x2, n_seq, T, n->br, err)) return -1;
        if (be->copy(be, hout, x2, MH * sizeof(float), PZ_COPY_D2D, err)) return -1;
        be->add(be, hout, n->br, MH);  // hout = x2 + ffn(x2)
    }
    const float *hL = n->h + (size_t)c->n_layer * RH;
    n->be->train->rmsnorm_fwd(n->be, n->hn, n->rstd, hL, m->out_norm, M, H, c->norm_eps);
    return n->be->train->linear_fwd(n->be, n->logits, n->hn, m->lm_head.data, M, c->vocab, H,
                                    n->prec, err);
}

int pz_net_bwd(pz_net *n, const pz_model *m, pz_model *grad, const float *dlogits,
               const float *const *dhid, char *err) {
    const pz_config *c = &n->cfg;
    const int M = n->M, H = c->hidden;
    if (M < 1) return pz_err(err, "net: backward without a forward");
    if (check_model(n, m, "given", err) || check_model(n, grad, "gradient", err)) return -1;
    const size_t RH = (size_t)n->max_rows * H, MH = (size_t)M * H;
    pz_backend *be = n->be;
    if (be->train->linear_bwd(be, n->dhn, 0, grad->lm_head.data, dlogits, n->hn, m->lm_head.data, M,
                              c->vocab, H, n->prec, err))
        return -1;
    const float *hL = n->h + (size_t)c->n_layer * RH;
    be->train->rmsnorm_bwd(be, n->dh, 0, grad->out_norm, n->dhn, hL, m->out_norm, n->rstd, M, H);
    for (int l = c->n_layer - 1; l >= 0; l--) {
        if (dhid && dhid[l]) be->add(be, n->dh, dhid[l], MH);
        pz_block_weights w, gw;
        layer_view(m, l, &w);
        layer_view(grad, l, &gw);
        const float *hin = n->h + (size_t)l * RH, *x2 = n->x2 + (size_t)l * RH;
        // hout = x2 + ffn(x2): ∂/∂x2 = dh + ffn'ᵀ·dh
        if (pz_sub_exec_bwd(n->ef[l], &w, &gw, x2, n->dh, n->br, err)) return -1;
        if (be->copy(be, n->dx2, n->dh, MH * sizeof(float), PZ_COPY_D2D, err)) return -1;
        be->add(be, n->dx2, n->br, MH);
        // x2 = hin + attn(hin)
        if (pz_sub_exec_bwd(n->ea[l], &w, &gw, hin, n->dx2, n->br, err)) return -1;
        if (be->copy(be, n->dh, n->dx2, MH * sizeof(float), PZ_COPY_D2D, err)) return -1;
        be->add(be, n->dh, n->br, MH);
    }
    // The embedding's gradient, row by row in order (repeated ids add up in row order).
    float *demb = grad->tok_embd.data;
    for (int r = 0; r < M; r++) be->add(be, demb + (size_t)n->ids[r] * H, n->dh + (size_t)r * H, (size_t)H);
    return 0;
}

double pz_net_fwd_flops(const pz_config *c, int rows, int T) {
    double f = 2.0 * rows * (double)c->hidden * c->vocab;
    for (int l = 0; l < c->n_layer; l++) {
        f += pz_sub_exec_fwd_flops(c, PZ_SUB_ATTN, attn_variant(&c->layers[l]), rows, T);
        f += pz_sub_exec_fwd_flops(c, PZ_SUB_FFN, ffn_variant(&c->layers[l]), rows, T);
    }
    return f;
}

// ---- models in backend memory -------------------------------------------------------------

static void *rebase(const void *p, const pz_model *host, void *arena) {
    return p ? (char *)arena + ((const char *)p - (const char *)host->arena) : NULL;
}

int pz_model_dev(pz_backend *be, const pz_model *host, int copy, pz_model *dev, char *err) {
    *dev = *host;
    if (host->wtype != PZ_DT_F32 || host->head8 || host->chs)
        return pz_err(err, "net: only fp32 models train on a backend");
    if (pz_dev_host_shared(be)) return 0;
    const int L = host->cfg.n_layer;
    dev->layers = malloc(sizeof(pz_layer_weights) * (size_t)(L > 0 ? L : 1));
    dev->arena = NULL;
    if (!dev->layers) return pz_err(err, "net: out of memory");
    void *a = pz_dev_alloc(be, host->arena_bytes, "net: model", err);
    if (!a) {
        free(dev->layers);
        dev->layers = host->layers;
        return -1;
    }
    dev->arena = a;
    dev->tok_embd.data = rebase(host->tok_embd.data, host, a);
    dev->lm_head.data = rebase(host->lm_head.data, host, a);
    dev->out_norm = rebase(host->out_norm, host, a);
    for (int l = 0; l < L; l++) {
        const pz_layer_weights *h = &host->layers[l];
        pz_layer_weights *d = &dev->layers[l];
        *d = *h;
        d->attn_norm = rebase(h->attn_norm, host, a), d->ffn_norm = rebase(h->ffn_norm, host, a);
        pz_mat *dm[] = {&d->wq, &d->wk, &d->wv, &d->wo, &d->w_gate, &d->w_up, &d->w_down};
        for (int i = 0; i < 7; i++) dm[i]->data = rebase(dm[i]->data, host, a);
    }
    if (copy && pz_model_dev_copy(be, dev, (pz_model *)host, 0, err)) {
        pz_model_dev_free(be, dev, host);
        return -1;
    }
    return 0;
}

void pz_model_dev_free(pz_backend *be, pz_model *dev, const pz_model *host) {
    if (dev->arena && dev->arena != host->arena) {
        be->free(be, dev->arena);
        if (dev->layers != host->layers) free(dev->layers);
    }
    memset(dev, 0, sizeof *dev);
}

int pz_model_dev_copy(pz_backend *be, pz_model *dev, pz_model *host, int to_host, char *err) {
    if (dev->arena == host->arena) return 0;
    if (dev->arena_bytes != host->arena_bytes) return pz_err(err, "net: model views differ in size");
    if (to_host)
        return be->copy(be, host->arena, dev->arena, host->arena_bytes, PZ_COPY_D2H, err) ||
                       be->synchronize(be, err)
                   ? -1
                   : 0;
    return be->copy(be, dev->arena, host->arena, host->arena_bytes, PZ_COPY_H2D, err);
}
