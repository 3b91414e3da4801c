// bwd_attention.c — see bwd_attention.h.
#include "bwd_attention.h"
#include "bwd_rmsnorm.h"
#include "bwd_rope.h"
#include "rope.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int aerr(char *err, const char *what, int n_head, int n_kv, int head_dim) {
    if (err)
        snprintf(err, PZ_ERRLEN, "attention (train): %s (n_head=%d n_kv=%d head_dim=%d)", what,
                 n_head, n_kv, head_dim);
    return -1;
}

static int bad_shape(int n_seq, int T, int n_head, int n_kv, int head_dim) {
    return n_seq < 0 || T < 0 || head_dim <= 0 || head_dim % 2 ||
           head_dim > PZ_ATTN_TRAIN_MAX_HEAD_DIM || n_head <= 0 || n_kv <= 0 || n_head % n_kv;
}

// ---- reference: plain loops -----------------------------------------------------
static inline float dotf(const float *a, const float *b, int d) {
    float s = 0;
#pragma omp simd reduction(+ : s)
    for (int i = 0; i < d; i++) s += a[i] * b[i];
    return s;
}

static inline void axpyf(float *y, float a, const float *x, int d) {
#pragma omp simd
    for (int i = 0; i < d; i++) y[i] += a * x[i];
}

static int threads_for(int n_threads, long items) {
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    return items < 2 ? 1 : nt;
}

int pz_cpu_attn_train_fwd_ref(float *out, float *lse, const float *q, const float *k,
                              const float *v, int n_seq, int T, int n_head, int n_kv, int head_dim,
                              int n_threads, char *err) {
    if (bad_shape(n_seq, T, n_head, n_kv, head_dim))
        return aerr(err, "unsupported shape", n_head, n_kv, head_dim);
    const int d = head_dim, group = n_head / n_kv;
    const size_t ldq = (size_t)n_head * d, ldkv = (size_t)n_kv * d;
    const float scale = 1.0f / sqrtf((float)d);
    const long items = (long)n_seq * T * n_head;
    if (items == 0) return 0;
    const int nt = threads_for(n_threads, items);
    float *buf = malloc(sizeof(float) * (size_t)T * nt);
    if (!buf) return aerr(err, "out of memory", n_head, n_kv, head_dim);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *sc = buf + (size_t)T * omp_get_thread_num();
        float acc[PZ_ATTN_TRAIN_MAX_HEAD_DIM];
#pragma omp for schedule(dynamic, 4)
        for (long it = 0; it < items; it++) {
            int h = (int)(it % n_head);
            long r = it / n_head;
            int b = (int)(r / T), t = T - 1 - (int)(r % T);  // more keys first
            size_t row = (size_t)b * T + t;
            const float *qi = q + row * ldq + (size_t)h * d;
            const float *kb = k + (size_t)b * T * ldkv + (size_t)(h / group) * d;
            const float *vb = v + (size_t)b * T * ldkv + (size_t)(h / group) * d;
            float mx = -INFINITY;
            for (int j = 0; j <= t; j++) {
                sc[j] = dotf(qi, kb + (size_t)j * ldkv, d) * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            memset(acc, 0, sizeof(float) * (size_t)d);
            double l = 0;
            for (int j = 0; j <= t; j++) {
                float p = expf(sc[j] - mx);
                l += p;
                axpyf(acc, p, vb + (size_t)j * ldkv, d);
            }
            float inv = (float)(1.0 / l);
            float *o = out + row * ldq + (size_t)h * d;
            for (int i = 0; i < d; i++) o[i] = acc[i] * inv;
            lse[row * n_head + h] = mx + (float)log(l);
        }
    }
    free(buf);
    return 0;
}

// D[row, h] = dO·O for every query row and head.
static void attn_delta(float *D, const float *dout, const float *out, long items, int d, int nt) {
#pragma omp parallel for num_threads(nt) if (nt > 1 && items > 64) schedule(static)
    for (long it = 0; it < items; it++) {
        size_t off = (size_t)it * d;  // row·ldq + h·d
        D[it] = dotf(dout + off, out + off, d);
    }
}

int pz_cpu_attn_bwd_ref(float *dq, float *dk, float *dv, const float *dout, const float *q,
                        const float *k, const float *v, const float *out, const float *lse,
                        int n_seq, int T, int n_head, int n_kv, int head_dim, int n_threads,
                        char *err) {
    if (bad_shape(n_seq, T, n_head, n_kv, head_dim))
        return aerr(err, "unsupported shape", n_head, n_kv, head_dim);
    const int d = head_dim, group = n_head / n_kv;
    const size_t ldq = (size_t)n_head * d, ldkv = (size_t)n_kv * d;
    const float scale = 1.0f / sqrtf((float)d);
    const size_t M = (size_t)n_seq * T;
    const long items = (long)M * n_head, kitems = (long)M * n_kv;
    if (items == 0) return 0;
    const int nt = threads_for(n_threads, items);
    float *D = malloc(sizeof(float) * M * n_head);
    if (!D) return aerr(err, "out of memory", n_head, n_kv, head_dim);
    attn_delta(D, dout, out, items, d, nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float acc[PZ_ATTN_TRAIN_MAX_HEAD_DIM], acck[PZ_ATTN_TRAIN_MAX_HEAD_DIM];
        // dQ, one (query, head) at a time.
#pragma omp for schedule(dynamic, 4)
        for (long it = 0; it < items; it++) {
            int h = (int)(it % n_head);
            long r = it / n_head;
            int b = (int)(r / T), t = T - 1 - (int)(r % T);
            size_t row = (size_t)b * T + t;
            const float *qi = q + row * ldq + (size_t)h * d;
            const float *doi = dout + row * ldq + (size_t)h * d;
            const float *kb = k + (size_t)b * T * ldkv + (size_t)(h / group) * d;
            const float *vb = v + (size_t)b * T * ldkv + (size_t)(h / group) * d;
            float li = lse[row * n_head + h], Di = D[row * n_head + h];
            memset(acc, 0, sizeof(float) * (size_t)d);
            for (int j = 0; j <= t; j++) {
                const float *kj = kb + (size_t)j * ldkv;
                float p = expf(dotf(qi, kj, d) * scale - li);
                float ds = p * (dotf(doi, vb + (size_t)j * ldkv, d) - Di);
                axpyf(acc, ds, kj, d);
            }
            float *o = dq + row * ldq + (size_t)h * d;
            for (int i = 0; i < d; i++) o[i] = acc[i] * scale;
        }
        // dK and dV, one (key, KV head) at a time, over the group's query heads.
#pragma omp for schedule(dynamic, 4)
        for (long it = 0; it < kitems; it++) {
            int g = (int)(it % n_kv);
            long r = it / n_kv;
            int b = (int)(r / T), j = (int)(r % T);
            size_t row = (size_t)b * T + j;
            const float *kj = k + row * ldkv + (size_t)g * d;
            const float *vj = v + row * ldkv + (size_t)g * d;
            memset(acc, 0, sizeof(float) * (size_t)d);
            memset(acck, 0, sizeof(float) * (size_t)d);
            for (int h = g * group; h < (g + 1) * group; h++)
                for (int t = j; t < T; t++) {
                    size_t qrow = (size_t)b * T + t;
                    const float *qi = q + qrow * ldq + (size_t)h * d;
                    const float *doi = dout + qrow * ldq + (size_t)h * d;
                    float p = expf(dotf(qi, kj, d) * scale - lse[qrow * n_head + h]);
                    axpyf(acc, p, doi, d);
                    float ds = p * (dotf(doi, vj, d) - D[qrow * n_head + h]);
                    axpyf(acck, ds, qi, d);
                }
            float *ok = dk + row * ldkv + (size_t)g * d, *ov = dv + row * ldkv + (size_t)g * d;
            for (int i = 0; i < d; i++) {
                ok[i] = acck[i] * scale;
                ov[i] = acc[i];
            }
        }
    }
    free(D);
    return 0;
}

// ---- tiled: matrix products through pz_cpu_gemm --------------------------------------
// Queries in blocks of TB rows; a block [t0, t1) sees keys [0, t1). For each
// block and head the scores are one product, the softmax is pointwise on
// the TB x t1 tile, and everything else is products again. About 2x the
// causal minimum of flops, at oneDNN's rate instead of scalar loops'. At
// most 16 block sizes (TB grows with T), so the gemm handle's primitive
// cache holds every shape.
static int block_rows(int T) {
    int tb = (T + 15) / 16;
    tb = (tb + 15) / 16 * 16;
    return tb < 128 ? 128 : tb;
}

int pz_cpu_attn_train_fwd(pz_cpu_gm *g, float *out, float *lse, const float *q, const float *k,
                          const float *v, int n_seq, int T, int n_head, int n_kv, int head_dim,
                          char *err) {
    if (bad_shape(n_seq, T, n_head, n_kv, head_dim))
        return aerr(err, "unsupported shape", n_head, n_kv, head_dim);
    if ((long)n_seq * T == 0) return 0;
    const int d = head_dim, group = n_head / n_kv, TB = block_rows(T), nt = pz_cpu_gemm_threads(g);
    const int ldq = n_head * d, ldkv = n_kv * d;
    const float scale = 1.0f / sqrtf((float)d);
    int tbmax = TB < T ? TB : T;
    float *P = malloc(sizeof(float) * (size_t)tbmax * T);
    if (!P) return aerr(err, "out of memory", n_head, n_kv, head_dim);
    for (int b = 0; b < n_seq; b++)
        for (int t0 = 0; t0 < T; t0 += TB) {
            int tb = T - t0 < TB ? T - t0 : TB, t1 = t0 + tb;
            size_t r0 = (size_t)b * T + t0;
            for (int h = 0; h < n_head; h++) {
                const float *Qb = q + r0 * ldq + (size_t)h * d;
                const float *Kb = k + (size_t)b * T * ldkv + (size_t)(h / group) * d;
                const float *Vb = v + (size_t)b * T * ldkv + (size_t)(h / group) * d;
                if (pz_cpu_gemm(g, 0, 1, tb, t1, d, Qb, ldq, Kb, ldkv, P, t1, 0, PZ_DT_F32, err))
                    goto fail;
#pragma omp parallel for num_threads(nt) if (nt > 1 && (long)tb * t1 >= 8192) schedule(static)
                for (int i = 0; i < tb; i++) {
                    float *pr = P + (size_t)i * t1;
                    int n = t0 + i + 1;  // keys 0..t0+i
                    float mx = -INFINITY;
                    for (int j = 0; j < n; j++) mx = fmaxf(mx, pr[j] *= scale);
                    double l = 0;
                    for (int j = 0; j < n; j++) l += (pr[j] = expf(pr[j] - mx));
                    float inv = (float)(1.0 / l);
                    for (int j = 0; j < n; j++) pr[j] *= inv;
                    for (int j = n; j < t1; j++) pr[j] = 0;
                    lse[(r0 + i) * n_head + h] = mx + (float)log(l);
                }
                if (pz_cpu_gemm(g, 0, 0, tb, d, t1, P, t1, Vb, ldkv, out + r0 * ldq + (size_t)h * d,
                                ldq, 0, PZ_DT_F32, err))
                    goto fail;
            }
        }
    free(P);
    return 0;
fail:
    free(P);
    return -1;
}

int pz_cpu_attn_bwd(pz_cpu_gm *g, float *dq, float *dk, float *dv, const float *dout,
                    const float *q, const float *k, const float *v, const float *out,
                    const float *lse, int n_seq, int T, int n_head, int n_kv, int head_dim,
                    char *err) {
    if (bad_shape(n_seq, T, n_head, n_kv, head_dim))
        return aerr(err, "unsupported shape", n_head, n_kv, head_dim);
    const size_t M = (size_t)n_seq * T;
    if (M == 0) return 0;
    const int d = head_dim, group = n_head / n_kv, TB = block_rows(T), nt = pz_cpu_gemm_threads(g);
    const int ldq = n_head * d, ldkv = n_kv * d;
    const float scale = 1.0f / sqrtf((float)d);
    int tbmax = TB < T ? TB : T;
    float *P = malloc(sizeof(float) * (size_t)tbmax * T * 2), *dP = P + (size_t)tbmax * T;
    float *D = malloc(sizeof(float) * M * n_head);
    if (!P || !D) {
        free(P), free(D);
        return aerr(err, "out of memory", n_head, n_kv, head_dim);
    }
    attn_delta(D, dout, out, (long)M * n_head, d, nt);
    memset(dk, 0, sizeof(float) * M * ldkv);
    memset(dv, 0, sizeof(float) * M * ldkv);
    for (int b = 0; b < n_seq; b++)
        for (int t0 = 0; t0 < T; t0 += TB) {
            int tb = T - t0 < TB ? T - t0 : TB, t1 = t0 + tb;
            size_t r0 = (size_t)b * T + t0;
            for (int h = 0; h < n_head; h++) {
                size_t qo = r0 * ldq + (size_t)h * d;
                size_t ko = (size_t)b * T * ldkv + (size_t)(h / group) * d;
                // S = Q·Kᵀ and dP = dO·Vᵀ for the tile.
                if (pz_cpu_gemm(g, 0, 1, tb, t1, d, q + qo, ldq, k + ko, ldkv, P, t1, 0, PZ_DT_F32, err) ||
                    pz_cpu_gemm(g, 0, 1, tb, t1, d, dout + qo, ldq, v + ko, ldkv, dP, t1, 0, PZ_DT_F32, err))
                    goto fail;
                // P = exp(scale·S − lse), dS = scale·P ⊙ (dP − D), both zero above the diagonal.
#pragma omp parallel for num_threads(nt) if (nt > 1 && (long)tb * t1 >= 8192) schedule(static)
                for (int i = 0; i < tb; i++) {
                    float *pr = P + (size_t)i * t1, *dr = dP + (size_t)i * t1;
                    float li = lse[(r0 + i) * n_head + h], Di = D[(r0 + i) * n_head + h];
                    int n = t0 + i + 1;
                    for (int j = 0; j < n; j++) {
                        float p = expf(pr[j] * scale - li);
                        pr[j] = p;
                        dr[j] = scale * p * (dr[j] - Di);
                    }
                    for (int j = n; j < t1; j++) pr[j] = dr[j] = 0;
                }
                // dQ = dS·K, dK += dSᵀ·Q, dV += Pᵀ·dO.
                if (pz_cpu_gemm(g, 0, 0, tb, d, t1, dP, t1, k + ko, ldkv, dq + qo, ldq, 0, PZ_DT_F32, err) ||
                    pz_cpu_gemm(g, 1, 0, t1, d, tb, dP, t1, q + qo, ldq, dk + ko, ldkv, 1, PZ_DT_F32, err) ||
                    pz_cpu_gemm(g, 1, 0, t1, d, tb, P, t1, dout + qo, ldq, dv + ko, ldkv, 1, PZ_DT_F32, err))
                    goto fail;
            }
        }
    free(P), free(D);
    return 0;
fail:
    free(P), free(D);
    return -1;
}

// ---- the sub-block ------------------------------------------------------------
struct pz_attn_block_train {
    pz_attn_block_cfg cfg;
    int max_rows, n_threads;
    int n_seq, T;          // of the last forward (0 before the first)
    // Saved by the forward:
    float *xn;             // (M, hidden) normalized input
    float *rstd;           // (M)
    float *q;              // (M, n_head·d) after RoPE
    float *k, *v;          // (M, n_kv·d), k after RoPE
    float *att;            // (M, n_head·d) attention output
    float *lse;            // (M, n_head)
    float *inv_freq;       // (d/2)
    int32_t *pos;          // (M)
    // Backward scratch:
    float *datt, *dq;      // (M, n_head·d)
    float *dk, *dv;        // (M, n_kv·d)
    float *dxn;            // (M, hidden)
    void *mem;             // the one allocation all of the above live in
};

pz_attn_block_train *pz_cpu_attn_block_create(const pz_attn_block_cfg *cfg, int max_rows,
                                              int n_threads, char *err) {
    if (bad_shape(1, 1, cfg->n_head, cfg->n_kv, cfg->head_dim) || cfg->hidden <= 0 ||
        max_rows <= 0 || (cfg->prec != PZ_DT_F32 && cfg->prec != PZ_DT_BF16)) {
        aerr(err, "bad block config", cfg->n_head, cfg->n_kv, cfg->head_dim);
        return NULL;
    }
    pz_attn_block_train *s = calloc(1, sizeof *s);
    if (!s) {
        aerr(err, "out of memory", cfg->n_head, cfg->n_kv, cfg->head_dim);
        return NULL;
    }
    s->cfg = *cfg;
    s->max_rows = max_rows;
    s->n_threads = n_threads > 0 ? n_threads : omp_get_num_procs();
    size_t M = (size_t)max_rows, H = (size_t)cfg->hidden, d = (size_t)cfg->head_dim;
    size_t nq = (size_t)cfg->n_head * d, nkv = (size_t)cfg->n_kv * d;
    // Sizes in floats, each rounded up to 16 (64 bytes); pos (int32) takes
    // a float-sized slot per row.
    float *pos_slot = NULL;
    struct { float **p; size_t n; } tab[] = {
        {&s->xn, M * H},    {&s->rstd, M},    {&s->q, M * nq},   {&s->k, M * nkv},
        {&s->v, M * nkv},   {&s->att, M * nq}, {&s->lse, M * cfg->n_head},
        {&s->inv_freq, d / 2}, {&pos_slot, M}, {&s->datt, M * nq}, {&s->dq, M * nq},
        {&s->dk, M * nkv},  {&s->dv, M * nkv}, {&s->dxn, M * H},
    };
    size_t total = 0, nt = sizeof tab / sizeof tab[0];
    for (size_t i = 0; i < nt; i++) total += (tab[i].n + 15) / 16 * 16;
    s->mem = aligned_alloc(64, total * sizeof(float));
    if (!s->mem) {
        free(s);
        aerr(err, "out of memory for saved activations", cfg->n_head, cfg->n_kv, cfg->head_dim);
        return NULL;
    }
    float *p = s->mem;
    for (size_t i = 0; i < nt; i++) {
        *tab[i].p = p;
        p += (tab[i].n + 15) / 16 * 16;
    }
    s->pos = (int32_t *)(void *)pos_slot;
    return s;
}

void pz_cpu_attn_block_free(pz_attn_block_train *s) {
    if (!s) return;
    free(s->mem);
    free(s);
}

int pz_cpu_attn_block_fwd(pz_attn_block_train *s, pz_cpu_gm *g, const pz_attn_block_w *w,
                          const float *x, int n_seq, int T, const int32_t *pos,
                          const float *inv_freq, float *y, char *err) {
    const pz_attn_block_cfg *c = &s->cfg;
    int M = n_seq * T, H = c->hidden, d = c->head_dim, nt = s->n_threads;
    int nq = c->n_head * d, nkv = c->n_kv * d;
    if (n_seq < 0 || T < 0 || (long)n_seq * T > s->max_rows)
        return aerr(err, "more rows than the handle was made for", c->n_head, c->n_kv, d);
    s->n_seq = n_seq, s->T = T;
    if (M == 0) return 0;
    memcpy(s->pos, pos, sizeof(int32_t) * (size_t)M);
    memcpy(s->inv_freq, inv_freq, sizeof(float) * (size_t)(d / 2));
    pz_cpu_rmsnorm_fwd_train(s->xn, s->rstd, x, w->norm, M, H, c->eps, nt);
    if (pz_cpu_linear_fwd(g, s->q, s->xn, w->wq, M, nq, H, c->prec, err) ||
        pz_cpu_linear_fwd(g, s->k, s->xn, w->wk, M, nkv, H, c->prec, err) ||
        pz_cpu_linear_fwd(g, s->v, s->xn, w->wv, M, nkv, H, c->prec, err))
        return -1;
    pz_cpu_rope(s->q, nq, s->pos, M, c->n_head, d, s->inv_freq, nt);
    pz_cpu_rope(s->k, nkv, s->pos, M, c->n_kv, d, s->inv_freq, nt);
    if (pz_cpu_attn_train_fwd(g, s->att, s->lse, s->q, s->k, s->v, n_seq, T, c->n_head, c->n_kv,
                              d, err))
        return -1;
    if (c->residual) memcpy(y, x, sizeof(float) * (size_t)M * H);
    return pz_cpu_gemm(g, 0, 1, M, H, nq, s->att, nq, w->wo, nq, y, H, c->residual, c->prec, err);
}

int pz_cpu_attn_block_bwd(pz_attn_block_train *s, pz_cpu_gm *g, const pz_attn_block_w *w,
                          const pz_attn_block_w *dw, const float *x, const float *dy, float *dx,
                          char *err) {
    const pz_attn_block_cfg *c = &s->cfg;
    int M = s->n_seq * s->T, H = c->hidden, d = c->head_dim, nt = s->n_threads;
    int nq = c->n_head * d, nkv = c->n_kv * d;
    pz_dt pr = c->prec;
    if (M == 0 || (!dw && !dx)) return 0;
    if (pz_cpu_linear_bwd(g, s->datt, 0, dw ? dw->wo : NULL, dy, s->att, w->wo, M, H, nq, pr, err))
        return -1;
    if (pz_cpu_attn_bwd(g, s->dq, s->dk, s->dv, s->datt, s->q, s->k, s->v, s->att, s->lse,
                        s->n_seq, s->T, c->n_head, c->n_kv, d, err))
        return -1;
    pz_cpu_rope_bwd(s->dq, nq, s->pos, M, c->n_head, d, s->inv_freq, nt);
    pz_cpu_rope_bwd(s->dk, nkv, s->pos, M, c->n_kv, d, s->inv_freq, nt);
    if (pz_cpu_linear_bwd(g, s->dxn, 0, dw ? dw->wq : NULL, s->dq, s->xn, w->wq, M, nq, H, pr, err) ||
        pz_cpu_linear_bwd(g, s->dxn, 1, dw ? dw->wk : NULL, s->dk, s->xn, w->wk, M, nkv, H, pr, err) ||
        pz_cpu_linear_bwd(g, s->dxn, 1, dw ? dw->wv : NULL, s->dv, s->xn, w->wv, M, nkv, H, pr, err))
        return -1;
    if (dx && c->residual) memcpy(dx, dy, sizeof(float) * (size_t)M * H);
    pz_cpu_rmsnorm_bwd(dx, c->residual, dw ? dw->norm : NULL, s->dxn, x, w->norm, s->rstd, M, H, nt);
    return 0;
}
