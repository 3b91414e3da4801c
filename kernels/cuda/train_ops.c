// train_ops.c — the CUDA backend's training ops (kernels/train.h: the
// general product, the linear layer, RMSNorm, the attention and SwiGLU
// sub-blocks forward and backward, AdamW, the NMSE losses), so that
// Blockwise Local Distillation, scoring and global distillation run on a
// GPU through the same interface as on the CPU. The definitions are those
// of the CPU reference kernels (kernels/cpu/bwd_*.h, adamw.h); the
// sub-blocks are composed from the same steps in the same order.
//
// Products: cuBLASLt, row-major C = op(A)·op(B) mapped onto its
// column-major Cᵀ = op(B)ᵀ·op(A)ᵀ; fp32 operands with fp32 compute (no
// TF32), or, for PZ_DT_BF16, both operands rounded to bf16 into scratch and
// multiplied bf16 x bf16 -> fp32. The heuristic's first algorithm for the
// shape and the operands' alignment is taken (no timed trials, so a shape
// always runs the same algorithm, and split-K never reduces in place in the
// output: deterministic on one GPU); shapes it has
// none for run on a plain tiled kernel (gemm_train.cu). Attention, norms,
// the optimizer and the losses are this folder's kernels; every reduction
// is over a fixed tree, so results are bit-identical from run to run.
//
// Ops are enqueued on the backend's stream like the inference ops; the
// ones train.h gives no err (rmsnorm_*) record failures for synchronize;
// adamw_step and the losses return a host number, so they wait for the
// stream (NAN on failure, recorded for synchronize). Training ops are not
// captured into CUDA graphs: called while a graph is armed they fail.
#include "cuda_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pz_cuda *C(const pz_backend *b) { return (pz_cuda *)b->impl; }

static int terr(char *err, const char *fmt, const char *what) {
    if (err) snprintf(err, PZ_ERRLEN, fmt, what);
    return -1;
}

static int cu_ok(char *err, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    if (err) snprintf(err, PZ_ERRLEN, "cuda %s: %s", what, cudaGetErrorString(e));
    return -1;
}

static int no_graph(pz_cuda *c, char *err, const char *op) {
    if (!c->g) return 0;
    if (err) snprintf(err, PZ_ERRLEN, "cuda %s: training ops cannot run while a CUDA graph is armed", op);
    return -1;
}

// ---- the general product ---------------------------------------------------------
static size_t align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    size_t al = 256;
    while (al > 1 && a % al) al /= 2;
    return al;
}

// One cuBLASLt product of row-major C[M,N] (ldc) = (acc ? C : 0) +
// op(A)·op(B) with A, B of type t (f32 or bf16). 1: no algorithm (the
// caller falls back); 0 done; -1 error.
static int lt_gemm(pz_cuda *c, int ta, int tb, int M, int N, int K, const void *A, int lda,
                   const void *B, int ldb, cudaDataType_t t, float *Cm, int ldc, int acc, char *err) {
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    int rc = -1;
    // Column-major view: Cᵀ[N,M] = op(B)ᵀ[N,K] · op(A)ᵀ[K,M]. Row-major B
    // [K,N] is column-major [N,K] (no transpose); row-major B [N,K] (tb) is
    // column-major [K,N], transposed. Likewise for A.
    cublasOperation_t oa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, ob = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t st = cublasLtMatmulDescCreate(&desc, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &oa, sizeof oa);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &ob, sizeof ob);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&la, t, tb ? K : N, tb ? N : K, ldb);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatrixLayoutCreate(&lb, t, ta ? M : K, ta ? K : M, lda);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, N, M, ldc);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasLtMatmulPreferenceCreate(&pref);
    if (st != CUBLAS_STATUS_SUCCESS) {
        if (err) snprintf(err, PZ_ERRLEN, "cuBLASLt gemm descriptors: status %d", (int)st);
        goto done;
    }
    uint64_t wsb = c->ws_bytes;
    uint32_t a_al = (uint32_t)align_of(B), b_al = (uint32_t)align_of(A), c_al = (uint32_t)align_of(Cm);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &a_al, sizeof a_al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &b_al, sizeof b_al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &c_al, sizeof c_al);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &c_al, sizeof c_al);
    // Split-K only with a separate reduction in workspace, never "in place"
    // in the output (whose order of partial sums need not be fixed).
    uint32_t red = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE | CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &red, sizeof red);
    cublasLtMatmulHeuristicResult_t res;
    int n = 0;
    st = cublasLtMatmulAlgoGetHeuristic(c->lt, desc, la, lb, lc, lc, pref, 1, &res, &n);
    if (st != CUBLAS_STATUS_SUCCESS || n == 0 || res.state != CUBLAS_STATUS_SUCCESS) {
        rc = 1;
        goto done;
    }
    float alpha = 1.0f, beta = acc ? 1.0f : 0.0f;
    st = cublasLtMatmul(c->lt, desc, &alpha, B, la, A, lb, &beta, Cm, lc, Cm, lc, &res.algo, c->ws,
                        c->ws_bytes, c->stream);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) rc = 1;
    else if (st != CUBLAS_STATUS_SUCCESS) {
        if (err) snprintf(err, PZ_ERRLEN, "cuBLASLt gemm %dx%dx%d: status %d", M, N, K, (int)st);
    } else
        rc = 0;
done:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (lc) cublasLtMatrixLayoutDestroy(lc);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (desc) cublasLtMatmulDescDestroy(desc);
    return rc;
}

static int cu_gemm(pz_backend *b, int ta, int tb, int M, int N, int K, const float *A, int lda,
                   const float *B, int ldb, float *Cm, int ldc, int acc, pz_dt prec, char *err) {
    pz_cuda *c = C(b);
    if (no_graph(c, err, "gemm")) return -1;
    if (M < 0 || N < 0 || K < 0 || (prec != PZ_DT_F32 && prec != PZ_DT_BF16) || ldc < N ||
        lda < (ta ? M : K) || ldb < (tb ? K : N) || lda < 1 || ldb < 1) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda gemm: bad shape (M %d N %d K %d, lda %d ldb %d ldc %d, %s)",
                          M, N, K, lda, ldb, ldc, pz_dt_name(prec));
        return -1;
    }
    if (M == 0 || N == 0) return 0;
    if (K == 0) {  // C = acc ? C : 0
        if (acc) return 0;
        return cu_ok(err, cudaMemset2DAsync(Cm, (size_t)ldc * sizeof(float), 0, (size_t)N * sizeof(float),
                                            (size_t)M, c->stream), "gemm (K = 0)");
    }
    int rc;
    if (prec == PZ_DT_F32) {
        rc = lt_gemm(c, ta, tb, M, N, K, A, lda, B, ldb, CUDA_R_32F, Cm, ldc, acc, err);
    } else {
        // Both operands rounded to bf16, contiguous (ld = their columns).
        int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
        size_t abytes = ((size_t)ar * ac * 2 + 255) / 256 * 256, bbytes = (size_t)br * bc * 2;
        if (pz_cuda_grow(&c->trbuf, &c->trbuf_bytes, abytes + bbytes, err)) return -1;
        uint16_t *a16 = c->trbuf, *b16 = (uint16_t *)((char *)c->trbuf + abytes);
        if (cu_ok(err, pz_cu_to_bf16(c->stream, a16, A, lda, ar, ac), "gemm: bf16 A") ||
            cu_ok(err, pz_cu_to_bf16(c->stream, b16, B, ldb, br, bc), "gemm: bf16 B"))
            return -1;
        rc = lt_gemm(c, ta, tb, M, N, K, a16, ac, b16, bc, CUDA_R_16BF, Cm, ldc, acc, err);
    }
    if (rc <= 0) return rc;
    return cu_ok(err, pz_cu_gemm_fallback(c->stream, ta, tb, M, N, K, A, lda, B, ldb, Cm, ldc, acc,
                                          prec == PZ_DT_BF16),
                 "gemm (fallback kernel)");
}

static int cu_linear_fwd(pz_backend *b, float *y, const float *x, const float *w, int M, int N, int K,
                         pz_dt prec, char *err) {
    return cu_gemm(b, 0, 1, M, N, K, x, K, w, K, y, N, 0, prec, err);
}

static int cu_linear_bwd(pz_backend *b, float *dx, int dx_acc, float *dw, const float *dy,
                         const float *x, const float *w, int M, int N, int K, pz_dt prec, char *err) {
    if (dx && cu_gemm(b, 0, 0, M, K, N, dy, N, w, K, dx, K, dx_acc, prec, err)) return -1;
    if (dw && cu_gemm(b, 1, 0, N, K, M, dy, N, x, K, dw, K, 1, prec, err)) return -1;
    return 0;
}

// ---- RMSNorm --------------------------------------------------------------------------
static void cu_rmsnorm_fwd(pz_backend *b, float *y, float *rstd, const float *x, const float *w, int M,
                           int n, float eps) {
    pz_cuda *c = C(b);
    cudaError_t e = pz_cu_rmsnorm_train(c->stream, y, rstd, x, w, M, n, eps);
    if (e != cudaSuccess) pz_cuda_fail(c, "rmsnorm (train): %s", cudaGetErrorString(e));
}

static int norm_bwd(pz_cuda *c, float *dx, int dx_acc, float *dw, const float *dy, const float *x,
                    const float *w, const float *rstd, int M, int n, char *err) {
    if (M <= 0 || n <= 0) return 0;
    if (dw) {
        size_t chunks = ((size_t)M + PZ_CU_NORM_CHUNK - 1) / PZ_CU_NORM_CHUNK;
        if (pz_cuda_grow((void **)&c->dsum, &c->dsum_bytes, chunks * (size_t)n * sizeof(double), err))
            return -1;
    }
    return cu_ok(err, pz_cu_rmsnorm_bwd(c->stream, dx, dx_acc, dw, dy, x, w, rstd, M, n, c->dsum),
                 "rmsnorm backward");
}

static void cu_rmsnorm_bwd(pz_backend *b, float *dx, int dx_acc, float *dw, const float *dy,
                           const float *x, const float *w, const float *rstd, int M, int n) {
    pz_cuda *c = C(b);
    char e[PZ_ERRLEN];
    if (norm_bwd(c, dx, dx_acc, dw, dy, x, w, rstd, M, n, e)) pz_cuda_fail(c, "%s", e);
}

// ---- one allocation of float-sized slots -------------------------------------------------
typedef struct {
    float **p;
    size_t n;
} slot;

static void *carve(slot *tab, size_t nt, char *err, const char *what) {
    size_t total = 0;
    for (size_t i = 0; i < nt; i++) total += (tab[i].n + 63) / 64 * 64;  // 256-byte aligned
    void *mem = NULL;
    cudaError_t e = cudaMalloc(&mem, total * sizeof(float));
    if (e != cudaSuccess) {
        if (err) snprintf(err, PZ_ERRLEN, "%s: %zu bytes of saved activations: %s", what,
                          total * sizeof(float), cudaGetErrorString(e));
        return NULL;
    }
    float *p = mem;
    for (size_t i = 0; i < nt; i++) {
        *tab[i].p = p;
        p += (tab[i].n + 63) / 64 * 64;
    }
    return mem;
}

// ---- the attention sub-block -------------------------------------------------------------
typedef struct {
    pz_attn_block_cfg cfg;
    int max_rows, n_seq, T;
    float *xn, *rstd, *q, *k, *v, *att, *lse, *inv_freq;
    int32_t *pos;
    float *datt, *dq, *dk, *dv, *dxn, *D;
    void *mem;
} cu_attn;

static pz_attn_block_train *cu_attn_create(pz_backend *b, const pz_attn_block_cfg *cfg, int max_rows,
                                           char *err) {
    (void)b;
    int d = cfg->head_dim;
    if (d <= 0 || d % 2 || d > PZ_CU_TRAIN_MAX_HEAD_DIM || cfg->n_head <= 0 || cfg->n_kv <= 0 ||
        cfg->n_head % cfg->n_kv || cfg->hidden <= 0 || max_rows <= 0 ||
        (cfg->prec != PZ_DT_F32 && cfg->prec != PZ_DT_BF16)) {
        if (err) snprintf(err, PZ_ERRLEN, "attention (train, cuda): bad block config (n_head=%d n_kv=%d "
                          "head_dim=%d)", cfg->n_head, cfg->n_kv, d);
        return NULL;
    }
    cu_attn *s = calloc(1, sizeof *s);
    if (!s) {
        terr(err, "attention (train, cuda): %s", "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->max_rows = max_rows;
    size_t M = (size_t)max_rows, H = (size_t)cfg->hidden;
    size_t nq = (size_t)cfg->n_head * d, nkv = (size_t)cfg->n_kv * d, nh = (size_t)cfg->n_head;
    float *pos_slot = NULL;
    slot tab[] = {
        {&s->xn, M * H},   {&s->rstd, M},      {&s->q, M * nq},          {&s->k, M * nkv},
        {&s->v, M * nkv},  {&s->att, M * nq},  {&s->lse, M * nh},        {&s->inv_freq, (size_t)d / 2},
        {&pos_slot, M},    {&s->datt, M * nq}, {&s->dq, M * nq},         {&s->dk, M * nkv},
        {&s->dv, M * nkv}, {&s->dxn, M * H},   {&s->D, M * nh},
    };
    if (!(s->mem = carve(tab, sizeof tab / sizeof tab[0], err, "attention (train, cuda)"))) {
        free(s);
        return NULL;
    }
    s->pos = (int32_t *)(void *)pos_slot;
    return (pz_attn_block_train *)s;
}

static void cu_attn_free(pz_backend *b, pz_attn_block_train *h) {
    cu_attn *s = (cu_attn *)h;
    if (!s) return;
    cudaStreamSynchronize(C(b)->stream);  // no enqueued op still uses the activations
    cudaFree(s->mem);
    free(s);
}

static int cu_attn_fwd(pz_backend *b, pz_attn_block_train *h, const pz_attn_block_w *w, const float *x,
                       int n_seq, int T, const int32_t *pos, const float *inv_freq, float *y, char *err) {
    cu_attn *s = (cu_attn *)h;
    pz_cuda *c = C(b);
    const pz_attn_block_cfg *cf = &s->cfg;
    int H = cf->hidden, d = cf->head_dim, nq = cf->n_head * d, nkv = cf->n_kv * d;
    if (no_graph(c, err, "attention block")) return -1;
    if (n_seq < 0 || T < 0 || (long)n_seq * T > s->max_rows)
        return terr(err, "attention (train, cuda): %s", "more rows than the handle was made for");
    s->n_seq = n_seq, s->T = T;
    int M = n_seq * T;
    if (M == 0) return 0;
    // From pageable host memory the copies are staged before they return.
    if (cu_ok(err, cudaMemcpyAsync(s->pos, pos, sizeof(int32_t) * (size_t)M, cudaMemcpyHostToDevice, c->stream),
              "attention block: positions") ||
        cu_ok(err, cudaMemcpyAsync(s->inv_freq, inv_freq, sizeof(float) * (size_t)(d / 2),
                                   cudaMemcpyHostToDevice, c->stream), "attention block: inv_freq") ||
        cu_ok(err, pz_cu_rmsnorm_train(c->stream, s->xn, s->rstd, x, w->norm, M, H, cf->eps), "attention block: norm"))
        return -1;
    if (cu_linear_fwd(b, s->q, s->xn, w->wq, M, nq, H, cf->prec, err) ||
        cu_linear_fwd(b, s->k, s->xn, w->wk, M, nkv, H, cf->prec, err) ||
        cu_linear_fwd(b, s->v, s->xn, w->wv, M, nkv, H, cf->prec, err))
        return -1;
    if (cu_ok(err, pz_cu_rope(c->stream, s->q, nq, s->pos, M, cf->n_head, d, s->inv_freq), "attention block: rope") ||
        cu_ok(err, pz_cu_rope(c->stream, s->k, nkv, s->pos, M, cf->n_kv, d, s->inv_freq), "attention block: rope") ||
        cu_ok(err, pz_cu_attn_train_fwd(c->stream, s->att, s->lse, s->q, s->k, s->v, n_seq, T, cf->n_head,
                                        cf->n_kv, d), "attention block: attention"))
        return -1;
    if (cf->residual &&
        cu_ok(err, cudaMemcpyAsync(y, x, sizeof(float) * (size_t)M * H, cudaMemcpyDeviceToDevice, c->stream),
              "attention block: residual"))
        return -1;
    return cu_gemm(b, 0, 1, M, H, nq, s->att, nq, w->wo, nq, y, H, cf->residual, cf->prec, err);
}

static int cu_attn_bwd(pz_backend *b, pz_attn_block_train *h, const pz_attn_block_w *w,
                       const pz_attn_block_w *dw, const float *x, const float *dy, float *dx, char *err) {
    cu_attn *s = (cu_attn *)h;
    pz_cuda *c = C(b);
    const pz_attn_block_cfg *cf = &s->cfg;
    int M = s->n_seq * s->T, H = cf->hidden, d = cf->head_dim, nq = cf->n_head * d, nkv = cf->n_kv * d;
    pz_dt pr = cf->prec;
    if (no_graph(c, err, "attention block")) return -1;
    if (M == 0 || (!dw && !dx)) return 0;
    if (cu_linear_bwd(b, s->datt, 0, dw ? dw->wo : NULL, dy, s->att, w->wo, M, H, nq, pr, err)) return -1;
    if (cu_ok(err, pz_cu_attn_train_bwd(c->stream, s->dq, s->dk, s->dv, s->datt, s->q, s->k, s->v, s->att,
                                        s->lse, s->n_seq, s->T, cf->n_head, cf->n_kv, d, s->D),
              "attention block: attention backward") ||
        cu_ok(err, pz_cu_rope_bwd(c->stream, s->dq, nq, s->pos, M, cf->n_head, d, s->inv_freq), "attention block: rope") ||
        cu_ok(err, pz_cu_rope_bwd(c->stream, s->dk, nkv, s->pos, M, cf->n_kv, d, s->inv_freq), "attention block: rope"))
        return -1;
    if (cu_linear_bwd(b, s->dxn, 0, dw ? dw->wq : NULL, s->dq, s->xn, w->wq, M, nq, H, pr, err) ||
        cu_linear_bwd(b, s->dxn, 1, dw ? dw->wk : NULL, s->dk, s->xn, w->wk, M, nkv, H, pr, err) ||
        cu_linear_bwd(b, s->dxn, 1, dw ? dw->wv : NULL, s->dv, s->xn, w->wv, M, nkv, H, pr, err))
        return -1;
    if (dx && cf->residual &&
        cu_ok(err, cudaMemcpyAsync(dx, dy, sizeof(float) * (size_t)M * H, cudaMemcpyDeviceToDevice, c->stream),
              "attention block: residual"))
        return -1;
    return norm_bwd(c, dx, cf->residual, dw ? dw->norm : NULL, s->dxn, x, w->norm, s->rstd, M, H, err);
}

// ---- the SwiGLU sub-block ------------------------------------------------------------------
typedef struct {
    pz_ffn_block_cfg cfg;
    int max_rows, M;
    float *xn, *rstd, *g, *u, *h, *dh, *du, *dxn;
    void *mem;
} cu_ffn;

static pz_ffn_block_train *cu_ffn_create(pz_backend *b, const pz_ffn_block_cfg *cfg, int max_rows,
                                         char *err) {
    (void)b;
    if (cfg->hidden <= 0 || cfg->n_ff <= 0 || max_rows <= 0 ||
        (cfg->prec != PZ_DT_F32 && cfg->prec != PZ_DT_BF16)) {
        terr(err, "ffn block (train, cuda): %s", "bad block config");
        return NULL;
    }
    cu_ffn *s = calloc(1, sizeof *s);
    if (!s) {
        terr(err, "ffn block (train, cuda): %s", "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->max_rows = max_rows;
    size_t M = (size_t)max_rows, H = (size_t)cfg->hidden, F = (size_t)cfg->n_ff;
    slot tab[] = {
        {&s->xn, M * H}, {&s->rstd, M},   {&s->g, M * F},  {&s->u, M * F},
        {&s->h, M * F},  {&s->dh, M * F}, {&s->du, M * F}, {&s->dxn, M * H},
    };
    if (!(s->mem = carve(tab, sizeof tab / sizeof tab[0], err, "ffn block (train, cuda)"))) {
        free(s);
        return NULL;
    }
    return (pz_ffn_block_train *)s;
}

static void cu_ffn_free(pz_backend *b, pz_ffn_block_train *h) {
    cu_ffn *s = (cu_ffn *)h;
    if (!s) return;
    cudaStreamSynchronize(C(b)->stream);
    cudaFree(s->mem);
    free(s);
}

static int cu_ffn_fwd(pz_backend *b, pz_ffn_block_train *hd, const pz_ffn_block_w *w, const float *x,
                      int M, float *y, char *err) {
    cu_ffn *s = (cu_ffn *)hd;
    pz_cuda *c = C(b);
    const pz_ffn_block_cfg *cf = &s->cfg;
    int H = cf->hidden, F = cf->n_ff;
    if (no_graph(c, err, "ffn block")) return -1;
    if (M < 0 || M > s->max_rows) return terr(err, "ffn block (train, cuda): %s", "more rows than the handle was made for");
    s->M = M;
    if (M == 0) return 0;
    if (cu_ok(err, pz_cu_rmsnorm_train(c->stream, s->xn, s->rstd, x, w->norm, M, H, cf->eps), "ffn block: norm") ||
        cu_linear_fwd(b, s->g, s->xn, w->gate, M, F, H, cf->prec, err) ||
        cu_linear_fwd(b, s->u, s->xn, w->up, M, F, H, cf->prec, err) ||
        cu_ok(err, pz_cu_swiglu(c->stream, s->h, F, s->g, s->u, F, M, F), "ffn block: swiglu"))
        return -1;
    if (cf->residual &&
        cu_ok(err, cudaMemcpyAsync(y, x, sizeof(float) * (size_t)M * H, cudaMemcpyDeviceToDevice, c->stream),
              "ffn block: residual"))
        return -1;
    return cu_gemm(b, 0, 1, M, H, F, s->h, F, w->down, F, y, H, cf->residual, cf->prec, err);
}

static int cu_ffn_bwd(pz_backend *b, pz_ffn_block_train *hd, const pz_ffn_block_w *w,
                      const pz_ffn_block_w *dw, const float *x, const float *dy, float *dx, char *err) {
    cu_ffn *s = (cu_ffn *)hd;
    pz_cuda *c = C(b);
    const pz_ffn_block_cfg *cf = &s->cfg;
    int M = s->M, H = cf->hidden, F = cf->n_ff;
    pz_dt pr = cf->prec;
    if (no_graph(c, err, "ffn block")) return -1;
    if (M == 0 || (!dw && !dx)) return 0;
    if (cu_linear_bwd(b, s->dh, 0, dw ? dw->down : NULL, dy, s->h, w->down, M, H, F, pr, err)) return -1;
    float *dg = s->dh;
    if (cu_ok(err, pz_cu_swiglu_bwd(c->stream, dg, s->du, s->dh, s->g, s->u, (size_t)M * F), "ffn block: swiglu backward") ||
        cu_linear_bwd(b, s->dxn, 0, dw ? dw->gate : NULL, dg, s->xn, w->gate, M, F, H, pr, err) ||
        cu_linear_bwd(b, s->dxn, 1, dw ? dw->up : NULL, s->du, s->xn, w->up, M, F, H, pr, err))
        return -1;
    if (dx && cf->residual &&
        cu_ok(err, cudaMemcpyAsync(dx, dy, sizeof(float) * (size_t)M * H, cudaMemcpyDeviceToDevice, c->stream),
              "ffn block: residual"))
        return -1;
    return norm_bwd(c, dx, cf->residual, dw ? dw->norm : NULL, s->dxn, x, w->norm, s->rstd, M, H, err);
}

// ---- the optimizer and the losses ---------------------------------------------------------
// Reads n doubles back after the stream's work; -1 (recorded) on failure.
static int read_back(pz_cuda *c, double *h, const double *d, size_t n, const char *what) {
    cudaError_t e = cudaMemcpyAsync(h, d, n * sizeof(double), cudaMemcpyDeviceToHost, c->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        pz_cuda_fail(c, "%s: %s", what, cudaGetErrorString(e));
        return -1;
    }
    return 0;
}

static int launched(pz_cuda *c, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    pz_cuda_fail(c, "%s: %s", what, cudaGetErrorString(e));
    return -1;
}

static int grow_sum(pz_cuda *c, size_t n, const char *what) {
    char e[PZ_ERRLEN];
    if (!pz_cuda_grow((void **)&c->dsum, &c->dsum_bytes, (n + 1) * sizeof(double), e)) return 0;
    pz_cuda_fail(c, "%s: %s", what, e);
    return -1;
}

static double cu_adamw_step(pz_backend *b, pz_adamw_tensor *t, int n, long step, float lr,
                            const pz_adamw_params *hp) {
    pz_cuda *c = C(b);
    if (c->g) {
        pz_cuda_fail(c, "adamw: training ops cannot run while a CUDA graph is armed");
        return NAN;
    }
    size_t parts = 0;
    for (int i = 0; i < n; i++) parts += pz_cu_sum_chunks(t[i].n);
    if (grow_sum(c, parts + 1, "adamw")) return NAN;
    double *total = c->dsum, *part = c->dsum + 1;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (launched(c, pz_cu_sumsq_parts(c->stream, part + off, t[i].g, NULL, t[i].n), "adamw: gradient norm"))
            return NAN;
        off += pz_cu_sum_chunks(t[i].n);
    }
    if (launched(c, pz_cu_sum_parts(c->stream, total, part, parts), "adamw: gradient norm")) return NAN;
    if (hp->clip_norm > 0)
        for (int i = 0; i < n; i++)
            if (launched(c, pz_cu_clip(c->stream, t[i].g, t[i].n, total, hp->clip_norm), "adamw: clipping"))
                return NAN;
    if (step < 1) step = 1;
    const float bc1 = (float)(1.0 / (1.0 - pow(hp->beta1, (double)step)));
    const float bc2 = (float)(1.0 / (1.0 - pow(hp->beta2, (double)step)));
    for (int i = 0; i < n; i++) {
        float keep = t[i].decay ? 1.0f - lr * hp->weight_decay : 1.0f;
        if (launched(c, pz_cu_adamw(c->stream, t[i].p, t[i].g, t[i].m, t[i].v, t[i].n, hp->beta1, hp->beta2,
                                    hp->eps, lr, keep, bc1, bc2), "adamw: update"))
            return NAN;
    }
    double s2 = 0;
    if (read_back(c, &s2, total, 1, "adamw")) return NAN;
    return sqrt(s2);
}

static double cu_nmse_loss(pz_backend *b, const float *y_parent, const float *y_child, size_t n,
                           float *d_child, float grad_scale) {
    pz_cuda *c = C(b);
    size_t nc = pz_cu_sum_chunks(n);
    if (c->g) {
        pz_cuda_fail(c, "nmse: training ops cannot run while a CUDA graph is armed");
        return NAN;
    }
    if (nc == 0) return NAN;  // ‖y_parent‖ = 0
    if (grow_sum(c, 2 + 2 * nc, "nmse")) return NAN;
    double *sums = c->dsum, *pden = c->dsum + 2, *pnum = pden + nc;
    if (launched(c, pz_cu_sumsq_parts(c->stream, pden, y_parent, NULL, n), "nmse") ||
        launched(c, pz_cu_sumsq_parts(c->stream, pnum, y_parent, y_child, n), "nmse") ||
        launched(c, pz_cu_sum_parts(c->stream, sums, pden, nc), "nmse") ||
        launched(c, pz_cu_sum_parts(c->stream, sums + 1, pnum, nc), "nmse") ||
        (d_child && launched(c, pz_cu_nmse_grad(c->stream, d_child, y_parent, y_child, n, sums, grad_scale),
                             "nmse gradient")))
        return NAN;
    double h[2];
    if (read_back(c, h, sums, 2, "nmse")) return NAN;
    return h[0] == 0 ? NAN : h[1] / h[0];
}

static double cu_token_nmse_loss(pz_backend *b, const float *y_parent, const float *y_child, int rows,
                                 int cols, float eps, float *d_child, float grad_scale) {
    pz_cuda *c = C(b);
    if (rows < 1 || cols < 1) return NAN;
    if (c->g) {
        pz_cuda_fail(c, "token nmse: training ops cannot run while a CUDA graph is armed");
        return NAN;
    }
    if (grow_sum(c, (size_t)rows + 1, "token nmse")) return NAN;
    double *total = c->dsum, *part = c->dsum + 1;
    if (launched(c, pz_cu_token_nmse(c->stream, part, d_child, y_parent, y_child, rows, cols, eps, grad_scale),
                 "token nmse") ||
        launched(c, pz_cu_sum_parts(c->stream, total, part, (size_t)rows), "token nmse"))
        return NAN;
    double s = 0;
    if (read_back(c, &s, total, 1, "token nmse")) return NAN;
    return s * (1.0 / rows);
}

// Row terms into dsum[1..rows], their sum (a fixed tree) into dsum[0], read back.
static double cu_cosine_loss(pz_backend *b, const float *y_parent, const float *y_child, int n_mat,
                             size_t mat_stride, int rows, int cols, float *d_child, double grad_scale) {
    pz_cuda *c = C(b);
    if (n_mat < 1 || rows < 1 || cols < 1) return NAN;
    if (c->g) {
        pz_cuda_fail(c, "cosine loss: training ops cannot run while a CUDA graph is armed");
        return NAN;
    }
    if (grow_sum(c, (size_t)rows + 1, "cosine loss")) return NAN;
    double *total = c->dsum, *part = c->dsum + 1;
    if (launched(c, pz_cu_cosine_loss(c->stream, part, d_child, y_parent, y_child, n_mat, mat_stride, rows,
                                      cols, grad_scale), "cosine loss") ||
        launched(c, pz_cu_sum_parts(c->stream, total, part, (size_t)rows), "cosine loss"))
        return NAN;
    double s = 0;
    if (read_back(c, &s, total, 1, "cosine loss")) return NAN;
    return s;
}

static double cu_kl_loss(pz_backend *b, const float *logits_parent, const float *logits_child, int rows,
                         int vocab, float *d_child, double grad_scale) {
    pz_cuda *c = C(b);
    if (rows < 1 || vocab < 1) return NAN;
    if (c->g) {
        pz_cuda_fail(c, "KL loss: training ops cannot run while a CUDA graph is armed");
        return NAN;
    }
    if (grow_sum(c, (size_t)rows + 1, "KL loss")) return NAN;
    double *total = c->dsum, *part = c->dsum + 1;
    if (launched(c, pz_cu_kl_loss(c->stream, part, d_child, logits_parent, logits_child, rows, vocab,
                                  grad_scale), "KL loss") ||
        launched(c, pz_cu_sum_parts(c->stream, total, part, (size_t)rows), "KL loss"))
        return NAN;
    double s = 0;
    if (read_back(c, &s, total, 1, "KL loss")) return NAN;
    return s;
}

const pz_train_ops pz_cuda_train_ops = {
    .gemm = cu_gemm,
    .linear_fwd = cu_linear_fwd,
    .linear_bwd = cu_linear_bwd,
    .rmsnorm_fwd = cu_rmsnorm_fwd,
    .rmsnorm_bwd = cu_rmsnorm_bwd,
    .attn_block_create = cu_attn_create,
    .attn_block_free = cu_attn_free,
    .attn_block_fwd = cu_attn_fwd,
    .attn_block_bwd = cu_attn_bwd,
    .ffn_block_create = cu_ffn_create,
    .ffn_block_free = cu_ffn_free,
    .ffn_block_fwd = cu_ffn_fwd,
    .ffn_block_bwd = cu_ffn_bwd,
    .adamw_step = cu_adamw_step,
    .nmse_loss = cu_nmse_loss,
    .token_nmse_loss = cu_token_nmse_loss,
    .cosine_loss = cu_cosine_loss,
    .kl_loss = cu_kl_loss,
};
