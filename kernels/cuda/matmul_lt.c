// matmul_lt.c — matrix products through cuBLASLt: y[M,N] = x[M,K] · Wᵀ with
// W the Hugging Face [N,K] weight, mapped onto cuBLASLt's column-major
// "TN" call with no transposes (A = W transposed, B = x, D = y; m = N,
// n = M, k = K). Types:
//   W f32:  fp32 x as given, fp32 compute (no TF32), fp32 out;
//   W bf16: x rounded to bf16 into scratch, bf16 x bf16 -> fp32;
//   W e4m3, xt = e4m3: x quantized to e4m3 with the weight's static input
//           scale (x_scale, the checkpoint's input_scale), or, when it has
//           none, with a per-tensor scale made on the device from the
//           activations' amax (the "dynamic" scheme; the CPU backend
//           refuses that case); the weight's scale and the activations'
//           go to cuBLASLt through the A/B scale pointers; fp32
//           accumulation and output;
//   W e4m3, xt = f32: fp32 activations as given, as on the CPU: cuBLASLt
//           has no fp32 x e4m3 product, so this runs on gemv.cu's kernel
//           8 rows per pass (exact, but each pass streams the weight).
// Per-output-channel weight scales are applied after the product.
// Products of at most PZ_CUDA_GEMV_ROWS rows, FP8 shapes cuBLASLt cannot
// take (dimensions and leading dimensions not multiples of 16, misaligned
// pointers) and shapes for which the heuristic finds no algorithm also run
// on gemv.cu's kernel.
//
// The algorithm is chosen once per shape (M, ldx, ldy) and cached in
// w->priv: the heuristic's candidates are each timed once on the actual
// operands (into scratch) and the fastest kept; during a CUDA-graph capture,
// or with trials off, the heuristic's first choice is taken untimed.
#include "cuda_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LT_CACHE 16   // shapes remembered per weight
#define LT_CANDS 8    // heuristic candidates asked for

typedef struct {
    int used;
    int M, ldx, ldy;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, ld;
    cublasLtMatmulAlgo_t algo;
    int no_algo;  // the heuristic found none: use the fallback kernel
} lt_entry;

typedef struct {
    float *d_scale;  // device: [0] the weight's scale (A scale pointer), [1] x_scale (B, when > 0)
    lt_entry e[LT_CACHE];
    int next;        // round-robin victim when full
} lt_weight;

static const char *lt_status(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "architecture mismatch";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "not supported";
    default: return "error";
    }
}

#define LT_CHECK(call, what)                                                                     \
    do {                                                                                         \
        cublasStatus_t st_ = (call);                                                             \
        if (st_ != CUBLAS_STATUS_SUCCESS) {                                                      \
            if (err) snprintf(err, PZ_ERRLEN, "cuBLASLt %s: %s (%d) at %s:%d", what,             \
                              lt_status(st_), (int)st_, __FILE__, __LINE__);                     \
            return -1;                                                                           \
        }                                                                                        \
    } while (0)

#define CU_CHECK(call, what)                                                                     \
    do {                                                                                         \
        cudaError_t ce_ = (call);                                                                \
        if (ce_ != cudaSuccess) {                                                                \
            if (err) snprintf(err, PZ_ERRLEN, "%s: %s at %s:%d", what, cudaGetErrorString(ce_),  \
                              __FILE__, __LINE__);                                               \
            return -1;                                                                           \
        }                                                                                        \
    } while (0)

int pz_cuda_lt_prepare(pz_cuda *c, pz_weight *w, char *err) {
    (void)c;
    if (w->type != PZ_DT_F32 && w->type != PZ_DT_BF16 && w->type != PZ_DT_E4M3) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda backend: no matmul for %s weights", pz_dt_name(w->type));
        return -1;
    }
    if (w->rows <= 0 || w->cols <= 0 || w->ld < w->cols || !w->data) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda backend: bad weight %dx%d (ld %d)", w->rows, w->cols, w->ld);
        return -1;
    }
    if (!(w->scale > 0) || isinf(w->scale) || !(w->x_scale >= 0) || isinf(w->x_scale)) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda backend: weight scale %g, input scale %g", (double)w->scale,
                          (double)w->x_scale);
        return -1;
    }
    lt_weight *lw = calloc(1, sizeof *lw);
    if (!lw) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda backend: out of memory");
        return -1;
    }
    float sc[2] = {w->scale, w->x_scale};
    cudaError_t e = cudaMalloc((void **)&lw->d_scale, sizeof sc);
    if (e == cudaSuccess) e = cudaMemcpy(lw->d_scale, sc, sizeof sc, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        cudaFree(lw->d_scale);
        free(lw);
        if (err) snprintf(err, PZ_ERRLEN, "cuda backend: weight scale: %s", cudaGetErrorString(e));
        return -1;
    }
    w->priv = lw;
    return 0;
}

static void entry_free(lt_entry *en) {
    if (!en->used) return;
    if (en->la) cublasLtMatrixLayoutDestroy(en->la);
    if (en->lb) cublasLtMatrixLayoutDestroy(en->lb);
    if (en->ld) cublasLtMatrixLayoutDestroy(en->ld);
    if (en->desc) cublasLtMatmulDescDestroy(en->desc);
    memset(en, 0, sizeof *en);
}

void pz_cuda_lt_release(pz_cuda *c, pz_weight *w) {
    (void)c;
    lt_weight *lw = w->priv;
    if (!lw) return;
    for (int i = 0; i < LT_CACHE; i++) entry_free(&lw->e[i]);
    cudaFree(lw->d_scale);
    free(lw);
    w->priv = NULL;
}

static cudaDataType_t lt_type(pz_dt t) {
    return t == PZ_DT_BF16 ? CUDA_R_16BF : t == PZ_DT_E4M3 ? CUDA_R_8F_E4M3 : CUDA_R_32F;
}

// One launch of the product for an entry (beta 0 or 1), D = y.
static cublasStatus_t lt_run(pz_cuda *c, const lt_entry *en, const cublasLtMatmulAlgo_t *algo,
                             const pz_weight *w, const void *xb, float *y, float alpha, float beta) {
    return cublasLtMatmul(c->lt, en->desc, &alpha, w->data, en->la, xb, en->lb, &beta, y, en->ld, y,
                          en->ld, algo, c->ws, c->ws_bytes, c->stream);
}

// Builds the descriptors of (M, ldx, ldy) and chooses the algorithm.
static int entry_make(pz_cuda *c, lt_entry *en, const pz_weight *w, const lt_weight *lw, int M,
                      int ldx, int ldy, const void *xb, char *err) {
    const int N = w->rows, K = w->cols;
    const cudaDataType_t t = lt_type(w->type);
    en->used = 1;
    en->M = M, en->ldx = ldx, en->ldy = ldy;
    LT_CHECK(cublasLtMatmulDescCreate(&en->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "desc");
    cublasOperation_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    LT_CHECK(cublasLtMatmulDescSetAttribute(en->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT), "transa");
    LT_CHECK(cublasLtMatmulDescSetAttribute(en->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN), "transb");
    if (w->type == PZ_DT_E4M3) {
        const void *as = lw->d_scale, *bs = w->x_scale > 0 ? lw->d_scale + 1 : c->dev_f + 1;
        LT_CHECK(cublasLtMatmulDescSetAttribute(en->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &as, sizeof as), "A scale");
        LT_CHECK(cublasLtMatmulDescSetAttribute(en->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &bs, sizeof bs), "B scale");
    }
    LT_CHECK(cublasLtMatrixLayoutCreate(&en->la, t, K, N, w->ld), "A layout");
    LT_CHECK(cublasLtMatrixLayoutCreate(&en->lb, t, K, M, ldx), "B layout");
    LT_CHECK(cublasLtMatrixLayoutCreate(&en->ld, CUDA_R_32F, N, M, ldy), "D layout");

    cublasLtMatmulPreference_t pref;
    LT_CHECK(cublasLtMatmulPreferenceCreate(&pref), "preference");
    uint64_t wsb = c->ws_bytes;
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb);
    cublasLtMatmulHeuristicResult_t res[LT_CANDS];
    int n = 0;
    cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(c->lt, en->desc, en->la, en->lb, en->ld, en->ld,
                                                       pref, LT_CANDS, res, &n);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || n == 0) {
        en->no_algo = 1;
        return 0;
    }
    int best = 0;
    enum cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(c->stream, &cap);
    if (c->trials && n > 1 && cap == cudaStreamCaptureStatusNone) {
        // Time each candidate once (after one warm-up launch) into scratch.
        if (pz_cuda_grow((void **)&c->tbuf, &c->tbuf_bytes, (size_t)M * ldy * sizeof(float), err)) return -1;
        float best_ms = 0;
        best = -1;
        for (int i = 0; i < n; i++) {
            if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
            if (lt_run(c, en, &res[i].algo, w, xb, c->tbuf, 1.0f, 0.0f) != CUBLAS_STATUS_SUCCESS) continue;
            CU_CHECK(cudaEventRecord(c->ev0, c->stream), "event");
            cublasStatus_t s2 = lt_run(c, en, &res[i].algo, w, xb, c->tbuf, 1.0f, 0.0f);
            CU_CHECK(cudaEventRecord(c->ev1, c->stream), "event");
            CU_CHECK(cudaEventSynchronize(c->ev1), "algorithm trial");
            float ms = 0;
            CU_CHECK(cudaEventElapsedTime(&ms, c->ev0, c->ev1), "event time");
            if (s2 == CUBLAS_STATUS_SUCCESS && (best < 0 || ms < best_ms)) best = i, best_ms = ms;
        }
        if (best < 0) {
            en->no_algo = 1;
            return 0;
        }
    }
    en->algo = res[best].algo;
    return 0;
}

// The fallback: gemv.cu's kernel, 8 rows per launch.
static int lt_fallback(pz_cuda *c, float *y, int ldy, const float *x, int ldx, pz_dt xt,
                       const pz_weight *w, int M, int acc, char *err) {
    if (xt == PZ_DT_E4M3 &&
        pz_cuda_grow(&c->xbuf, &c->xbuf_bytes, (size_t)PZ_CUDA_GEMV_ROWS * w->cols, err))
        return -1;
    for (int m0 = 0; m0 < M; m0 += PZ_CUDA_GEMV_ROWS) {
        int mr = M - m0 < PZ_CUDA_GEMV_ROWS ? M - m0 : PZ_CUDA_GEMV_ROWS;
        CU_CHECK(pz_cu_gemv(c->stream, y + (size_t)m0 * ldy, ldy, x + (size_t)m0 * ldx, ldx, xt,
                            w->data, w->type, w->ld, w->scale, w->ch_scale, mr, w->rows, w->cols,
                            acc, w->x_scale, c->xbuf, c->dev_f + 4),
                 "matmul (gemv)");
    }
    return 0;
}

static int fp8_ok(const pz_weight *w, const float *y, int ldy) {
    return w->rows % 16 == 0 && w->cols % 16 == 0 && w->ld % 16 == 0 && ldy % 4 == 0 &&
           (uintptr_t)w->data % 16 == 0 && (uintptr_t)y % 16 == 0;
}

int pz_cuda_lt_matmul(pz_cuda *c, float *y, int ldy, const float *x, int ldx, pz_dt xt,
                      const pz_weight *w, int M, int acc, char *err) {
    lt_weight *lw = w->priv;
    if (!lw) {
        if (err) snprintf(err, PZ_ERRLEN, "cuda backend: matmul with a weight not prepared for it");
        return -1;
    }
    if (M <= 0) return 0;
    if (M <= PZ_CUDA_GEMV_ROWS || (w->type == PZ_DT_E4M3 && (xt == PZ_DT_F32 || !fp8_ok(w, y, ldy))))
        return lt_fallback(c, y, ldy, x, ldx, xt, w, M, acc, err);
    const int K = w->cols, N = w->rows;
    // The B operand: x as given (f32), or converted into scratch (contiguous).
    const void *xb = x;
    int bld = ldx;
    if (w->type == PZ_DT_BF16) {
        if (pz_cuda_grow(&c->xbuf, &c->xbuf_bytes, (size_t)M * K * 2, err)) return -1;
        CU_CHECK(pz_cu_to_bf16(c->stream, c->xbuf, x, ldx, M, K), "matmul: bf16 activations");
        xb = c->xbuf, bld = K;
    } else if (w->type == PZ_DT_E4M3) {
        if (pz_cuda_grow(&c->xbuf, &c->xbuf_bytes, (size_t)M * K, err)) return -1;
        if (w->x_scale > 0) {  // static: the scale the product's B pointer reads
            CU_CHECK(pz_cu_quant_e4m3(c->stream, c->xbuf, x, ldx, M, K, lw->d_scale + 1, NULL),
                     "matmul: e4m3 activations");
        } else {               // dynamic: amax, then the scale, on the device
            CU_CHECK(pz_cu_amax(c->stream, c->dev_f, x, ldx, M, K), "matmul: amax");
            CU_CHECK(pz_cu_quant_e4m3(c->stream, c->xbuf, x, ldx, M, K, c->dev_f + 1, c->dev_f),
                     "matmul: e4m3 activations");
        }
        xb = c->xbuf, bld = K;
    }
    // The destination: y itself, or scratch when channel scales follow.
    float *d = y;
    int dld = ldy;
    if (w->ch_scale) {
        if (pz_cuda_grow((void **)&c->tbuf, &c->tbuf_bytes, (size_t)M * N * sizeof(float), err)) return -1;
        d = c->tbuf, dld = N;
    }
    lt_entry *en = NULL;
    for (int i = 0; i < LT_CACHE; i++)
        if (lw->e[i].used && lw->e[i].M == M && lw->e[i].ldx == bld && lw->e[i].ldy == dld) en = &lw->e[i];
    if (!en) {
        int slot = -1;
        for (int i = 0; i < LT_CACHE && slot < 0; i++)
            if (!lw->e[i].used) slot = i;
        if (slot < 0) slot = lw->next, lw->next = (lw->next + 1) % LT_CACHE;
        en = &lw->e[slot];
        entry_free(en);
        // Trials write into tbuf; with channel scales d is tbuf too, which is fine:
        // the real product below overwrites it.
        if (entry_make(c, en, w, lw, M, bld, dld, xb, err)) {
            entry_free(en);
            return -1;
        }
        if (w->ch_scale) d = c->tbuf;  // the trials may have grown it
    }
    if (en->no_algo) return lt_fallback(c, y, ldy, x, ldx, xt, w, M, acc, err);
    float alpha = w->type == PZ_DT_E4M3 ? 1.0f : w->scale;
    float beta = acc && !w->ch_scale ? 1.0f : 0.0f;
    LT_CHECK(lt_run(c, en, &en->algo, w, xb, d, alpha, beta), "matmul");
    if (w->ch_scale)
        CU_CHECK(pz_cu_scale_cols(c->stream, y, ldy, c->tbuf, N, w->ch_scale, M, N, acc),
                 "matmul: channel scales");
    return 0;
}
