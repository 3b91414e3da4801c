// init.c — see init.h.
#include "init.h"
#include "common.h"
#include "devmem.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// A backend copy of n host floats (NULL with err on failure); enqueued.
static float *dev_up(pz_backend *be, const float *host, size_t n, char *err) {
    float *d = pz_dev_alloc(be, n * sizeof(float), "init", err);
    if (d && be->copy(be, d, host, n * sizeof(float), PZ_COPY_H2D, err)) {
        be->free(be, d);
        return NULL;
    }
    return d;
}

// n floats of backend memory into host, then synchronize.
static int dev_down(pz_backend *be, float *host, const float *d, size_t n, char *err) {
    if (be->copy(be, host, d, n * sizeof(float), PZ_COPY_D2H, err)) return -1;
    return be->synchronize(be, err);
}

pz_init_params pz_init_default_params(void) {
    pz_init_params p = {.linear_lsq = 1, .ridge = 1e-3, .max_tokens = 8192, .token_limit = 0,
                        .n_threads = 1};
    return p;
}

void pz_init_kv_meanpool(float *child, const float *parent, int n_head, int n_kv_p, int n_kv_c,
                         int head_dim, int hidden) {
    const int gp = n_head / n_kv_p, gc = n_head / n_kv_c;
    const size_t row = (size_t)hidden * head_dim;  // one head's rows
    for (int j = 0; j < n_kv_c; j++) {
        float *dst = child + (size_t)j * row;
        memset(dst, 0, sizeof(float) * row);
        for (int h = j * gc; h < (j + 1) * gc; h++) {
            const float *src = parent + (size_t)(h / gp) * row;
            for (size_t i = 0; i < row; i++) dst[i] += src[i];
        }
        for (size_t i = 0; i < row; i++) dst[i] /= (float)gc;
    }
}

int pz_init_channel_scores(pz_backend *be, const pz_block_weights *w, float eps, const float *x,
                           long M, double *score, int n_threads, char *err) {
    const int H = w->hidden, F = w->ffn.size;
    if (!w->gate) return pz_err(err, "init: channel scores need a swiglu parent");
    const long CH = 512;
    // Host: the products' outputs gg, uu. Backend: the chunk's input, its
    // normalization, the gate and up outputs (dgu), the weights.
    float *gg = malloc(sizeof(float) * (size_t)CH * F), *uu = malloc(sizeof(float) * (size_t)CH * F);
    float *dx = pz_dev_alloc(be, sizeof(float) * (size_t)CH * H, "init", err);
    float *dxn = pz_dev_alloc(be, sizeof(float) * (size_t)CH * H, "init", err);
    float *drstd = pz_dev_alloc(be, sizeof(float) * CH, "init", err);
    float *dgu = pz_dev_alloc(be, sizeof(float) * 2 * (size_t)CH * F, "init", err);
    float *dnorm = dev_up(be, w->ffn_norm, (size_t)H, err);
    float *dgate = dev_up(be, w->gate, (size_t)F * H, err), *dupw = dev_up(be, w->up, (size_t)F * H, err);
    int rc = -1;
    if (!gg || !uu) {
        pz_err(err, "init: out of memory");
        goto out;
    }
    if (!dx || !dxn || !drstd || !dgu || !dnorm || !dgate || !dupw) goto out;
    for (int i = 0; i < F; i++) score[i] = 0;
    for (long r0 = 0; r0 < M; r0 += CH) {
        int n = (int)(M - r0 < CH ? M - r0 : CH);
        const size_t nF = (size_t)n * F;
        if (be->copy(be, dx, x + (size_t)r0 * H, sizeof(float) * (size_t)n * H, PZ_COPY_H2D, err)) goto out;
        be->train->rmsnorm_fwd(be, dxn, drstd, dx, dnorm, n, H, eps);
        if (be->train->linear_fwd(be, dgu, dxn, dgate, n, F, H, PZ_DT_F32, err) ||
            be->train->linear_fwd(be, dgu + nF, dxn, dupw, n, F, H, PZ_DT_F32, err) ||
            be->copy(be, gg, dgu, sizeof(float) * nF, PZ_COPY_D2H, err) ||
            dev_down(be, uu, dgu + nF, nF, err))
            goto out;
        // Rows in a fixed order per channel: deterministic for any thread count.
#pragma omp parallel for num_threads(n_threads) schedule(static)
        for (int i = 0; i < F; i++) {
            double s = 0;
            for (int r = 0; r < n; r++) {
                float gv = gg[(size_t)r * F + i], uv = uu[(size_t)r * F + i];
                s += fabs((double)gv / (1.0 + exp(-(double)gv)) * uv);
            }
            score[i] += s;
        }
    }
    for (int i = 0; i < F; i++) {
        double nd = 0;
        for (int r = 0; r < H; r++) nd += (double)w->down[(size_t)r * F + i] * w->down[(size_t)r * F + i];
        score[i] = score[i] / (double)(M > 0 ? M : 1) * sqrt(nd);
    }
    rc = 0;
out:
    free(gg);
    free(uu);
    float *dev[] = {dx, dxn, drstd, dgu, dnorm, dgate, dupw};
    for (int i = 0; i < 7; i++) be->free(be, dev[i]);
    return rc;
}

typedef struct {
    double s;
    int i;
} scored;
static int cmp_scored(const void *a, const void *b) {
    const scored *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}
static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

void pz_init_top_channels(const double *score, int n_ff, int n_keep, int *keep) {
    scored *v = malloc(sizeof(scored) * (size_t)n_ff);
    if (!v) {  // out of memory: fall back to the first channels
        for (int i = 0; i < n_keep; i++) keep[i] = i;
        return;
    }
    for (int i = 0; i < n_ff; i++) v[i] = (scored){isnan(score[i]) ? -1.0 : score[i], i};
    qsort(v, (size_t)n_ff, sizeof(scored), cmp_scored);
    for (int k = 0; k < n_keep; k++) keep[k] = v[k].i;
    qsort(keep, (size_t)n_keep, sizeof(int), cmp_int);
    free(v);
}

void pz_init_ffn_select(pz_block_weights *child, const pz_block_weights *parent, const int *keep,
                        int n_keep) {
    const int H = parent->hidden, F = parent->ffn.size;
    memcpy(child->ffn_norm, parent->ffn_norm, sizeof(float) * H);
    for (int k = 0; k < n_keep; k++) {
        memcpy(child->gate + (size_t)k * H, parent->gate + (size_t)keep[k] * H, sizeof(float) * H);
        memcpy(child->up + (size_t)k * H, parent->up + (size_t)keep[k] * H, sizeof(float) * H);
    }
    for (int r = 0; r < H; r++)
        for (int k = 0; k < n_keep; k++)
            child->down[(size_t)r * n_keep + k] = parent->down[(size_t)r * F + keep[k]];
}

int pz_init_linear_attn(pz_backend *be, float *W, const pz_block_weights *p, char *err) {
    if (!p->wq) return pz_err(err, "init: linear attention needs a gqa parent");
    const int H = p->hidden, hd = p->head_dim, nh = p->n_head, nkv = p->attn.size, gp = nh / nkv;
    const int qd = nh * hd, kvd = nkv * hd;
    // wos (H, kvd): the o_proj columns of the query heads of each KV group, summed.
    float *wos = calloc((size_t)H * kvd, sizeof(float));
    if (!wos) return pz_err(err, "init: out of memory");
    for (int o = 0; o < H; o++)
        for (int h = 0; h < nh; h++)
            for (int d = 0; d < hd; d++)
                wos[(size_t)o * kvd + (size_t)(h / gp) * hd + d] += p->wo[(size_t)o * qd + (size_t)h * hd + d];
    float *dwos = dev_up(be, wos, (size_t)H * kvd, err), *dwv = dev_up(be, p->wv, (size_t)kvd * H, err);
    float *dW = pz_dev_alloc(be, sizeof(float) * (size_t)H * H, "init", err);
    int rc = dwos && dwv && dW &&
                     !be->train->gemm(be, 0, 0, H, H, kvd, dwos, kvd, dwv, H, dW, H, 0, PZ_DT_F32, err) &&
                     !dev_down(be, W, dW, (size_t)H * H, err)
                 ? 0
                 : -1;
    free(wos);
    be->free(be, dwos), be->free(be, dwv), be->free(be, dW);
    return rc;
}

int pz_init_linear_ffn(pz_backend *be, float *W, const pz_block_weights *p, char *err) {
    if (!p->gate) return pz_err(err, "init: linear FFN needs a swiglu parent");
    const int H = p->hidden, F = p->ffn.size;
    float *ddown = dev_up(be, p->down, (size_t)H * F, err), *dupw = dev_up(be, p->up, (size_t)F * H, err);
    float *dW = pz_dev_alloc(be, sizeof(float) * (size_t)H * H, "init", err);
    int rc = ddown && dupw && dW &&
                     !be->train->gemm(be, 0, 0, H, H, F, ddown, F, dupw, H, dW, H, 0, PZ_DT_F32, err) &&
                     !dev_down(be, W, dW, (size_t)H * H, err)
                 ? 0
                 : -1;
    be->free(be, ddown), be->free(be, dupw), be->free(be, dW);
    return rc;
}

int pz_cholesky_solve(double *A, double *B, int n, int nrhs) {
    for (int j = 0; j < n; j++) {
        double d = A[(size_t)j * n + j];
        for (int k = 0; k < j; k++) d -= A[(size_t)j * n + k] * A[(size_t)j * n + k];
        if (!(d > 0)) return -1;
        d = sqrt(d);
        A[(size_t)j * n + j] = d;
        for (int i = j + 1; i < n; i++) {
            double s = A[(size_t)i * n + j];
            const double *ai = A + (size_t)i * n, *aj = A + (size_t)j * n;
            for (int k = 0; k < j; k++) s -= ai[k] * aj[k];
            A[(size_t)i * n + j] = s / d;
        }
    }
    // L·Z = B, then Lᵀ·X = Z, column block by column block (rows of B).
    for (int i = 0; i < n; i++) {
        double *bi = B + (size_t)i * nrhs;
        for (int k = 0; k < i; k++) {
            double l = A[(size_t)i * n + k];
            const double *bk = B + (size_t)k * nrhs;
            for (int c = 0; c < nrhs; c++) bi[c] -= l * bk[c];
        }
        double inv = 1.0 / A[(size_t)i * n + i];
        for (int c = 0; c < nrhs; c++) bi[c] *= inv;
    }
    for (int i = n - 1; i >= 0; i--) {
        double *bi = B + (size_t)i * nrhs;
        for (int k = i + 1; k < n; k++) {
            double l = A[(size_t)k * n + i];
            const double *bk = B + (size_t)k * nrhs;
            for (int c = 0; c < nrhs; c++) bi[c] -= l * bk[c];
        }
        double inv = 1.0 / A[(size_t)i * n + i];
        for (int c = 0; c < nrhs; c++) bi[c] *= inv;
    }
    return 0;
}

int pz_init_linear_lsq(pz_backend *be, float *W, const float *x, const float *y, long M, int hidden,
                       const float *norm, float eps, double ridge, char *err) {
    const int H = hidden;
    const long CH = 1024;
    // Backend: a chunk of x and y (one buffer), its normalization u, the norm
    // weight, G and B (one buffer); they come back once, at the end.
    float *G = calloc((size_t)H * H, sizeof(float)), *B = calloc((size_t)H * H, sizeof(float));
    double *Gd = malloc(sizeof(double) * (size_t)H * H), *Bd = malloc(sizeof(double) * (size_t)H * H);
    float *dxy = pz_dev_alloc(be, sizeof(float) * 2 * (size_t)CH * H, "init", err);
    float *du = pz_dev_alloc(be, sizeof(float) * (size_t)CH * H, "init", err);
    float *drstd = pz_dev_alloc(be, sizeof(float) * CH, "init", err);
    float *dGB = pz_dev_alloc(be, sizeof(float) * 2 * (size_t)H * H, "init", err);
    float *dnorm = dev_up(be, norm, (size_t)H, err);
    int rc = -1;
    if (!G || !B || !Gd || !Bd) {
        pz_err(err, "init: out of memory");
        goto out;
    }
    if (!dxy || !du || !drstd || !dGB || !dnorm) goto out;
    if (M <= 0) {
        pz_err(err, "init: least squares with no rows");
        goto out;
    }
    // G = UᵀU, B = UᵀY, accumulated chunk by chunk (fp32 products; the
    // chunks keep each partial sum short), then solved in double.
    for (long r0 = 0; r0 < M; r0 += CH) {
        int n = (int)(M - r0 < CH ? M - r0 : CH);
        const size_t nH = (size_t)n * H, HH = (size_t)H * H;
        float *dy = dxy + (size_t)CH * H;
        if (be->copy(be, dxy, x + (size_t)r0 * H, sizeof(float) * nH, PZ_COPY_H2D, err) ||
            be->copy(be, dy, y + (size_t)r0 * H, sizeof(float) * nH, PZ_COPY_H2D, err))
            goto out;
        be->train->rmsnorm_fwd(be, du, drstd, dxy, dnorm, n, H, eps);
        if (be->train->gemm(be, 1, 0, H, H, n, du, H, du, H, dGB, H, r0 > 0, PZ_DT_F32, err) ||
            be->train->gemm(be, 1, 0, H, H, n, du, H, dy, H, dGB + HH, H, r0 > 0, PZ_DT_F32, err))
            goto out;
    }
    if (be->copy(be, G, dGB, sizeof(float) * (size_t)H * H, PZ_COPY_D2H, err) ||
        dev_down(be, B, dGB + (size_t)H * H, (size_t)H * H, err))
        goto out;
    double tr = 0;
    for (int i = 0; i < H; i++) tr += G[(size_t)i * H + i];
    double lam = ridge * tr / H;
    if (!(lam > 0)) lam = 1e-12;
    for (size_t i = 0; i < (size_t)H * H; i++) Gd[i] = G[i], Bd[i] = B[i];
    for (int i = 0; i < H; i++) Gd[(size_t)i * H + i] += lam;
    if (pz_cholesky_solve(Gd, Bd, H, H)) {
        pz_err(err, "init: least-squares system is not positive definite");
        goto out;
    }
    // Bd = Wᵀ (in, out) → W (out, in).
    for (int o = 0; o < H; o++)
        for (int i = 0; i < H; i++) W[(size_t)o * H + i] = (float)Bd[(size_t)i * H + o];
    rc = 0;
out:
    be->free(be, dxy), be->free(be, du), be->free(be, drstd), be->free(be, dGB), be->free(be, dnorm);
    free(G);
    free(B);
    free(Gd);
    free(Bd);
    return rc;
}

// Rows [0, n) of a capture tensor as fp32 (malloc'ed).
static float *cap_rows(const pz_capture *cap, pz_cap_tensor t, long n, char *err) {
    float *x = malloc(sizeof(float) * (size_t)n * pz_capture_get_info(cap)->hidden);
    if (!x) return pz_err(err, "init: out of memory"), NULL;
    if (pz_capture_rows(cap, t, 0, n, x, err)) {
        free(x);
        return NULL;
    }
    return x;
}

static long calib_rows(const pz_capture *cap, const pz_init_params *p) {
    long n = pz_capture_get_info(cap)->n_tokens;
    if (p->token_limit > 0 && n > p->token_limit) n = p->token_limit;
    if (p->max_tokens > 0 && n > p->max_tokens) n = p->max_tokens;
    return n;
}

static int init_attn(pz_block_weights *out, const pz_block_weights *par, const pz_config *c,
                     const pz_capture *cap, const pz_init_params *p, pz_backend *be, char *method,
                     size_t mcap, char *err) {
    const int H = c->hidden;
    pz_variant v = out->attn;
    if (v.attn == PZ_ATTN_NOOP) return snprintf(method, mcap, "noop"), 0;
    memcpy(out->attn_norm, par->attn_norm, sizeof(float) * H);
    if (v.attn == PZ_ATTN_GQA) {
        const size_t qd = (size_t)c->n_head * c->head_dim;
        memcpy(out->wq, par->wq, sizeof(float) * qd * H);
        memcpy(out->wo, par->wo, sizeof(float) * qd * H);
        if (v.size == par->attn.size) {
            memcpy(out->wk, par->wk, sizeof(float) * (size_t)v.size * c->head_dim * H);
            memcpy(out->wv, par->wv, sizeof(float) * (size_t)v.size * c->head_dim * H);
            return snprintf(method, mcap, "parent"), 0;
        }
        pz_init_kv_meanpool(out->wk, par->wk, c->n_head, par->attn.size, v.size, c->head_dim, H);
        pz_init_kv_meanpool(out->wv, par->wv, c->n_head, par->attn.size, v.size, c->head_dim, H);
        return snprintf(method, mcap, "meanpool_kv"), 0;
    }
    // linear
    // A linear parent half is its own linear variant: copied, not refitted.
    if (par->attn.attn == PZ_ATTN_LINEAR) {
        memcpy(out->attn_lin, par->attn_lin, sizeof(float) * H * H);
        return snprintf(method, mcap, "parent"), 0;
    }
    if (p->linear_lsq && cap) {
        long n = calib_rows(cap, p);
        float *x = cap_rows(cap, PZ_CAP_ATTN_IN, n, err), *y = x ? cap_rows(cap, PZ_CAP_ATTN_OUT, n, err) : NULL;
        int rc = y ? pz_init_linear_lsq(be, out->attn_lin, x, y, n, H, out->attn_norm, c->norm_eps,
                                        p->ridge, err)
                   : -1;
        free(x);
        free(y);
        if (rc == 0) snprintf(method, mcap, "lsq");
        return rc;
    }
    snprintf(method, mcap, "wo_wv");
    return pz_init_linear_attn(be, out->attn_lin, par, err);
}

static int init_ffn(pz_block_weights *out, const pz_block_weights *par, const pz_config *c,
                    const pz_capture *cap, const pz_init_params *p, pz_backend *be, char *method,
                    size_t mcap, char *err) {
    const int H = c->hidden;
    pz_variant v = out->ffn;
    if (v.ffn == PZ_FFN_NOOP) return snprintf(method, mcap, "noop"), 0;
    if (v.ffn == PZ_FFN_SWIGLU) {
        const int F = par->ffn.size, K = v.size;
        int *keep = malloc(sizeof(int) * (size_t)K);
        if (!keep) return pz_err(err, "init: out of memory");
        int rc = 0;
        if (K == F) {
            for (int i = 0; i < K; i++) keep[i] = i;
            snprintf(method, mcap, "parent");
        } else if (!cap) {
            for (int i = 0; i < K; i++) keep[i] = i;
            snprintf(method, mcap, "truncate");
        } else {
            long n = calib_rows(cap, p);
            double *score = malloc(sizeof(double) * (size_t)F);
            float *x = cap_rows(cap, PZ_CAP_FFN_IN, n, err);
            rc = score && x ? pz_init_channel_scores(be, par, c->norm_eps, x, n, score, p->n_threads, err) : -1;
            if (rc == 0) pz_init_top_channels(score, F, K, keep);
            if (!score) pz_err(err, "init: out of memory");
            free(score);
            free(x);
            snprintf(method, mcap, "channel_contribution");
        }
        if (rc == 0) pz_init_ffn_select(out, par, keep, K);
        free(keep);
        return rc;
    }
    memcpy(out->ffn_norm, par->ffn_norm, sizeof(float) * H);
    // A linear parent half is its own linear variant: copied, not refitted.
    if (par->ffn.ffn == PZ_FFN_LINEAR) {
        memcpy(out->ffn_lin, par->ffn_lin, sizeof(float) * H * H);
        return snprintf(method, mcap, "parent"), 0;
    }
    if (p->linear_lsq && cap) {
        long n = calib_rows(cap, p);
        float *x = cap_rows(cap, PZ_CAP_FFN_IN, n, err), *y = x ? cap_rows(cap, PZ_CAP_FFN_OUT, n, err) : NULL;
        int rc = y ? pz_init_linear_lsq(be, out->ffn_lin, x, y, n, H, out->ffn_norm, c->norm_eps, p->ridge, err)
                   : -1;
        free(x);
        free(y);
        if (rc == 0) snprintf(method, mcap, "lsq");
        return rc;
    }
    snprintf(method, mcap, "wdown_wup");
    return pz_init_linear_ffn(be, out->ffn_lin, par, err);
}

int pz_init_block(pz_block_weights *out, const pz_model *parent, const pz_block *blk,
                  const pz_capture *cap, const pz_init_params *pp, char method[48], char *err) {
    pz_init_params p = pp ? *pp : pz_init_default_params();
    if (p.n_threads <= 0) p.n_threads = 1;
    const pz_config *c = &parent->cfg;
    pz_block_weights par;
    char ma[24] = "", mf[24] = "";
    memset(out, 0, sizeof *out);
    if (cap && pz_capture_get_info(cap)->layer != blk->layer)
        return pz_err(err, "init: capture of layer %d given for layer %d", pz_capture_get_info(cap)->layer,
                      blk->layer);
    if (pz_block_weights_from_parent(&par, parent, blk->layer, PZ_SUB_PAIR, err)) return -1;
    pz_backend *be = p.be ? p.be : pz_backend_create(p.backend, p.n_threads, err);
    int rc = -1;
    if (!be) goto out;
    if (pz_block_weights_alloc(out, c, blk->layer, blk->sub, blk->attn, blk->ffn, err)) goto out;
    if (blk->sub != PZ_SUB_FFN && init_attn(out, &par, c, cap, &p, be, ma, sizeof ma, err)) goto out;
    if (blk->sub != PZ_SUB_ATTN && init_ffn(out, &par, c, cap, &p, be, mf, sizeof mf, err)) goto out;
    if (method) {
        if (blk->sub == PZ_SUB_ATTN) snprintf(method, 48, "%s", ma);
        else if (blk->sub == PZ_SUB_FFN) snprintf(method, 48, "%s", mf);
        else snprintf(method, 48, "%s+%s", ma, mf);
    }
    rc = 0;
out:
    if (rc) pz_block_weights_free(out);
    pz_block_weights_free(&par);
    if (!p.be) pz_backend_free(be);
    return rc;
}
