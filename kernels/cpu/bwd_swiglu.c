// bwd_swiglu.c — see bwd_swiglu.h.
#include "bwd_swiglu.h"
#include "bwd_rmsnorm.h"
#include "pointwise.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pz_cpu_swiglu_bwd(float *dg, float *du, const float *dh, const float *g, const float *u,
                       int M, int n, int n_threads) {
    size_t total = (size_t)M * n;
    int nt = total >= 65536 ? n_threads : 1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int m = 0; m < M; m++) {
        size_t o = (size_t)m * n;
        for (int i = 0; i < n; i++) {
            float gv = g[o + i], d = dh[o + i];
            float sg = 1.0f / (1.0f + expf(-gv));
            float silu = gv * sg;
            du[o + i] = d * silu;
            dg[o + i] = d * u[o + i] * sg * (1.0f + gv * (1.0f - sg));
        }
    }
}

struct pz_ffn_block_train {
    pz_ffn_block_cfg cfg;
    int max_rows, n_threads;
    int M;              // rows of the last forward
    float *xn;          // (M, hidden) normalized input
    float *rstd;        // (M)
    float *g, *u, *h;   // (M, n_ff) gate and up projections, silu(g) ⊙ u
    float *dh, *du;     // (M, n_ff) backward scratch; dg reuses dh
    float *dxn;         // (M, hidden)
    void *mem;
};

static int ferr(char *err, const char *what) {
    if (err) snprintf(err, PZ_ERRLEN, "ffn block (train): %s", what);
    return -1;
}

pz_ffn_block_train *pz_cpu_ffn_block_create(const pz_ffn_block_cfg *cfg, int max_rows,
                                            int n_threads, char *err) {
    if (cfg->hidden <= 0 || cfg->n_ff <= 0 || max_rows <= 0 ||
        (cfg->prec != PZ_DT_F32 && cfg->prec != PZ_DT_BF16)) {
        ferr(err, "bad block config");
        return NULL;
    }
    pz_ffn_block_train *s = calloc(1, sizeof *s);
    if (!s) {
        ferr(err, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->max_rows = max_rows;
    s->n_threads = n_threads > 0 ? n_threads : omp_get_num_procs();
    size_t M = (size_t)max_rows, H = (size_t)cfg->hidden, F = (size_t)cfg->n_ff;
    struct { float **p; size_t n; } tab[] = {
        {&s->xn, M * H}, {&s->rstd, M}, {&s->g, M * F}, {&s->u, M * F},
        {&s->h, M * F},  {&s->dh, M * F}, {&s->du, M * F}, {&s->dxn, M * H},
    };
    size_t total = 0, nt = sizeof tab / sizeof tab[0];
    for (size_t i = 0; i < nt; i++) total += (tab[i].n + 15) / 16 * 16;
    s->mem = aligned_alloc(64, total * sizeof(float));
    if (!s->mem) {
        free(s);
        ferr(err, "out of memory for saved activations");
        return NULL;
    }
    float *p = s->mem;
    for (size_t i = 0; i < nt; i++) {
        *tab[i].p = p;
        p += (tab[i].n + 15) / 16 * 16;
    }
    return s;
}

void pz_cpu_ffn_block_free(pz_ffn_block_train *s) {
    if (!s) return;
    free(s->mem);
    free(s);
}

int pz_cpu_ffn_block_fwd(pz_ffn_block_train *s, pz_cpu_gm *g, const pz_ffn_block_w *w,
                         const float *x, int M, float *y, char *err) {
    const pz_ffn_block_cfg *c = &s->cfg;
    int H = c->hidden, F = c->n_ff, nt = s->n_threads;
    if (M < 0 || M > s->max_rows) return ferr(err, "more rows than the handle was made for");
    s->M = M;
    if (M == 0) return 0;
    pz_cpu_rmsnorm_fwd_train(s->xn, s->rstd, x, w->norm, M, H, c->eps, nt);
    if (pz_cpu_linear_fwd(g, s->g, s->xn, w->gate, M, F, H, c->prec, err) ||
        pz_cpu_linear_fwd(g, s->u, s->xn, w->up, M, F, H, c->prec, err))
        return -1;
    pz_cpu_swiglu(s->h, F, s->g, s->u, F, M, F, nt);
    if (c->residual) memcpy(y, x, sizeof(float) * (size_t)M * H);
    return pz_cpu_gemm(g, 0, 1, M, H, F, s->h, F, w->down, F, y, H, c->residual, c->prec, err);
}

int pz_cpu_ffn_block_bwd(pz_ffn_block_train *s, pz_cpu_gm *g, const pz_ffn_block_w *w,
                         const pz_ffn_block_w *dw, const float *x, const float *dy, float *dx,
                         char *err) {
    const pz_ffn_block_cfg *c = &s->cfg;
    int M = s->M, H = c->hidden, F = c->n_ff, nt = s->n_threads;
    pz_dt pr = c->prec;
    if (M == 0 || (!dw && !dx)) return 0;
    if (pz_cpu_linear_bwd(g, s->dh, 0, dw ? dw->down : NULL, dy, s->h, w->down, M, H, F, pr, err))
        return -1;
    float *dg = s->dh;
    pz_cpu_swiglu_bwd(dg, s->du, s->dh, s->g, s->u, M, F, nt);
    if (pz_cpu_linear_bwd(g, s->dxn, 0, dw ? dw->gate : NULL, dg, s->xn, w->gate, M, F, H, pr, err) ||
        pz_cpu_linear_bwd(g, s->dxn, 1, dw ? dw->up : NULL, s->du, s->xn, w->up, M, F, H, pr, err))
        return -1;
    if (dx && c->residual) memcpy(dx, dy, sizeof(float) * (size_t)M * H);
    pz_cpu_rmsnorm_bwd(dx, c->residual, dw ? dw->norm : NULL, s->dxn, x, w->norm, s->rstd, M, H, nt);
    return 0;
}
