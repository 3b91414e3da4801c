// cuda_impl.h — private to kernels/cuda/: the CUDA backend's state and the
// launchers of its kernels. backend_cuda.c (C, compiled by the host
// compiler) owns the state and calls the launchers; each *.cu file of this
// folder holds one op family and defines its launchers with C linkage.
//
// Launchers enqueue on the given stream and return the launch's
// cudaError_t (cudaGetLastError after the launch); they never synchronize.
// Kernels that find bad input in device memory (a token id outside the
// vocabulary, a page id outside the pool) skip that row and record the
// first such fault in the device word `fault` (pz_cuda_fault); synchronize
// reads it back and reports it.
#ifndef PZ_CUDA_IMPL_H
#define PZ_CUDA_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "backend.h"
#include "cuda_plan.h"

#ifdef __cplusplus
extern "C" {
#endif

// The first device-side fault since the last synchronize (device memory;
// zero means none). code: PZ_CUDA_FAULT_*; a, b: details for the message.
typedef struct {
    int code, a, b, c;
} pz_cuda_fault;

enum { PZ_CUDA_FAULT_NONE = 0, PZ_CUDA_FAULT_TOKEN = 1, PZ_CUDA_FAULT_PAGE = 2 };

// Largest head_dim the attention kernel takes (8 values per lane of a warp).
#define PZ_CUDA_MAX_HEAD_DIM 256
// Rows up to which products run on the row-invariant kernel (gemv.cu) rather
// than cuBLASLt: backend.h's invariant_rows.
#define PZ_CUDA_GEMV_ROWS 8

typedef struct pz_cuda_graph pz_cuda_graph;  // graph.c
enum { PZ_GRAPH_OFF = 0, PZ_GRAPH_WARMUP, PZ_GRAPH_CAPTURE, PZ_GRAPH_REPLAY };

// The backend's state (pz_backend.impl). Scratch buffers grow on demand
// (growing waits for the device) and are reused op after op: the one stream
// orders every use.
typedef struct {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *ws;                 // cuBLASLt workspace
    size_t ws_bytes;
    void *xbuf;               // activations converted for a product (bf16 / e4m3)
    size_t xbuf_bytes;
    float *tbuf;              // a product's output before channel scaling; timed trials
    size_t tbuf_bytes;
    float *dev_f;             // device floats: [0] amax, [1] activation scale, [2] 1.0f
    pz_cuda_fault *fault;     // device word, zeroed at create and after each report
    pz_cuda_attn_desc *desc;  // attention descriptors (device)
    int desc_cap;
    pz_cuda_attn_desc *hdesc; // host staging of the same
    cudaEvent_t ev0, ev1;
    int trials;               // 1: time the heuristic's candidates once per shape
    char err[PZ_ERRLEN];      // the first failure since the last synchronize
    int failed;
    pz_cuda_graph *g;         // armed graph of this pass (graph.c), or NULL
    int gmode;                // PZ_GRAPH_*
    // Training ops (train_ops.c): bf16 copies of a product's operands, and
    // fp64 partial sums of norms and losses (with room for their totals).
    void *trbuf;
    size_t trbuf_bytes;
    double *dsum;
    size_t dsum_bytes;
} pz_cuda;

// Records a failure of an enqueued op (the first one is kept for synchronize).
void pz_cuda_fail(pz_cuda *c, const char *fmt, ...);
// Grows a scratch buffer to at least bytes; -1 with err on failure.
int pz_cuda_grow(void **p, size_t *cap, size_t bytes, char *err);

// ---- CUDA graphs (graph.c; the public side is backend_cuda.h) ----------------------
uint64_t pz_cuda_sig(uint64_t h, const void *p, size_t n);
pz_cuda_graph *pz_cuda_graph_new(size_t stage_bytes, char *err);
void pz_cuda_graph_delete(pz_cuda_graph *g);
int pz_cuda_graph_arm(pz_cuda *c, pz_cuda_graph *g, char *err);
// Every op calls this with its signature: 1 means "replaying: do not enqueue".
int pz_cuda_graph_op(pz_cuda *c, uint64_t sig);
// Host<->device copies while capturing or replaying (through pinned staging).
int pz_cuda_graph_copy(pz_cuda *c, void *dst, const void *src, size_t bytes, int d2h, char *err);
// Host bytes (attention descriptors) staged to a device slice of the graph;
// returns that slice (NULL with err on failure).
const void *pz_cuda_graph_stage(pz_cuda *c, const void *host, size_t bytes, uint64_t sig, char *err);
// synchronize: before the stream wait (ends the capture, launches), after it.
cudaError_t pz_cuda_graph_launch(pz_cuda *c);
void pz_cuda_graph_done(pz_cuda *c, int ok);

// ---- products through cuBLASLt (matmul_lt.c) ---------------------------------------
// prepare: checks the type and creates w->priv (the per-shape algorithm cache).
int pz_cuda_lt_prepare(pz_cuda *c, pz_weight *w, char *err);
void pz_cuda_lt_release(pz_cuda *c, pz_weight *w);
// The product of backend.h's matmul for any M (small M goes to gemv.cu).
int pz_cuda_lt_matmul(pz_cuda *c, float *y, int ldy, const float *x, int ldx, pz_dt xt,
                      const pz_weight *w, int M, int acc, char *err);

// ---- pointwise and norm (pointwise.cu, rmsnorm.cu, rope.cu, embed.cu) -------
cudaError_t pz_cu_rmsnorm(cudaStream_t s, float *y, const float *x, const float *w, int M, int n,
                          float eps);
cudaError_t pz_cu_rope(cudaStream_t s, float *x, int ld, const int32_t *pos, int M, int n_heads,
                       int head_dim, const float *inv_freq);
cudaError_t pz_cu_swiglu(cudaStream_t s, float *h, int ldh, const float *g, const float *u, int gu_ld,
                         int M, int n);
cudaError_t pz_cu_add(cudaStream_t s, float *y, const float *x, size_t n);
// table: (vocab, n) of type dt (f32 or bf16), rows ld elements apart.
cudaError_t pz_cu_embed(cudaStream_t s, float *y, const void *table, pz_dt dt, int ld, int vocab,
                        int n, const int32_t *ids, int M, pz_cuda_fault *fault);

// ---- FP8 and bf16 conversions (fp8.cu) --------------------------------------
// amax[0] = max |x| over the M x K block (ld), NaN elements skipped (so a
// NaN stays in its own row of an FP8 product); zeroed first, on the stream.
cudaError_t pz_cu_amax(cudaStream_t s, float *amax, const float *x, int ld, int M, int K);
// q[M,K] (contiguous) = saturate(x / scale) as e4m3 with scale read from the
// device float *scale; when scale_from_amax, *scale is first set to
// pz_fp8_scale(*amax) by the kernel (one thread) — the dynamic per-tensor
// scaling of an FP8 GEMM, done without a host round trip.
cudaError_t pz_cu_quant_e4m3(cudaStream_t s, uint8_t *q, const float *x, int ld, int M, int K,
                             float *scale, const float *amax);
// q[M,K] (contiguous) = bf16(x) (round to nearest even).
cudaError_t pz_cu_to_bf16(cudaStream_t s, uint16_t *q, const float *x, int ld, int M, int K);

// ---- products (gemv.cu): y[M,N] (ldy) = (acc ? y : 0) + x · Wᵀ · scale ---------
// W [N,K] rows ldw apart, of type wt (f32, bf16, e4m3). xt: f32 (as given) or
// e4m3 (rows quantized first: e4m3(x / x_scale) when x_scale > 0, else each
// row with its own amax scale; row-invariant either way). ch_scale (N, may
// be NULL) multiplies output channel n. M <= PZ_CUDA_GEMV_ROWS. xq (M·K
// bytes) and xs (M floats) are scratch for the quantized rows (e4m3 only).
cudaError_t pz_cu_gemv(cudaStream_t s, float *y, int ldy, const float *x, int ldx, pz_dt xt,
                       const void *w, pz_dt wt, int ldw, float scale, const float *ch_scale, int M,
                       int N, int K, int acc, float x_scale, uint8_t *xq, float *xs);
// y[M,N] (ldy) = (acc ? y : 0) + t[M,N] (ldt) · ch_scale[n]: the per-channel
// factor cuBLASLt cannot apply (t may equal y when acc is 0).
cudaError_t pz_cu_scale_cols(cudaStream_t s, float *y, int ldy, const float *t, int ldt,
                             const float *ch_scale, int M, int N, int acc);

// ---- KV cache and attention (attention.cu) --------------------------------------
// Page layout of one layer's pool: page p, KV head h, slot t (0..15),
// dimension d at element ((p·n_kv + h)·PZ_KV_PAGE + t)·head_dim + d.
cudaError_t pz_cu_kv_write(cudaStream_t s, const pz_kv_write *w, pz_cuda_fault *fault);
// seqs: n_seq flattened descriptors in device memory (cuda_plan.h), rows
// queries in all; one warp per (query row, head).
cudaError_t pz_cu_attention(cudaStream_t s, const pz_cuda_attn_desc *seqs, int n_seq, int rows,
                            int n_head, int n_kv, int head_dim);

// ---- training (bwd_norm.cu, bwd_attention.cu, adamw.cu; kernels/train.h) ----------
// The CPU reference kernels' definitions (kernels/cpu/bwd_*.h, adamw.h); sums
// that the CPU takes in double are taken in double here too, each over a
// fixed tree, so results are the same from run to run.
// RMSNorm forward as pz_cu_rmsnorm, rstd (M, may be NULL) receiving 1/rms per row.
cudaError_t pz_cu_rmsnorm_train(cudaStream_t s, float *y, float *rstd, const float *x, const float *w,
                                int M, int n, float eps);
// dx (NULL: skipped) = (acc ? dx : 0) + ∂L/∂x. dw (NULL: skipped) += ∂L/∂w,
// summed over rows in chunks of PZ_CU_NORM_CHUNK into part (ceil(M /
// PZ_CU_NORM_CHUNK)·n doubles of scratch), then the chunks in order.
#define PZ_CU_NORM_CHUNK 256
cudaError_t pz_cu_rmsnorm_bwd(cudaStream_t s, float *dx, int dx_acc, float *dw, const float *dy,
                              const float *x, const float *w, const float *rstd, int M, int n,
                              double *part);
// RoPE's backward in place (the inverse rotation), rows ld apart.
cudaError_t pz_cu_rope_bwd(cudaStream_t s, float *dx, int ld, const int32_t *pos, int M, int n_heads,
                           int head_dim, const float *inv_freq);
// dg = dh ⊙ u ⊙ silu'(g), du = dh ⊙ silu(g); (M·n) contiguous; dg may equal dh.
cudaError_t pz_cu_swiglu_bwd(cudaStream_t s, float *dg, float *du, const float *dh, const float *g,
                             const float *u, size_t n);
// Causal GQA attention over n_seq sequences of T rows (bwd_attention.h's
// layout), fp32, one warp per (query row, head): out and lse (M, n_head).
// head_dim even, <= PZ_CU_TRAIN_MAX_HEAD_DIM.
#define PZ_CU_TRAIN_MAX_HEAD_DIM 512
cudaError_t pz_cu_attn_train_fwd(cudaStream_t s, float *out, float *lse, const float *q,
                                 const float *k, const float *v, int n_seq, int T, int n_head,
                                 int n_kv, int head_dim);
// dq, dk, dv overwritten; D: (M, n_head) floats of scratch (dO·O per row and head).
cudaError_t pz_cu_attn_train_bwd(cudaStream_t s, float *dq, float *dk, float *dv, const float *dout,
                                 const float *q, const float *k, const float *v, const float *out,
                                 const float *lse, int n_seq, int T, int n_head, int n_kv,
                                 int head_dim, float *D);
// Chunked fp64 sums, PZ_CU_SUM_CHUNK elements per chunk: part[c] = Σ a² (b
// NULL) or Σ (a − b)² over chunk c; pz_cu_sum_chunks(n) is the chunk count.
#define PZ_CU_SUM_CHUNK 16384
size_t pz_cu_sum_chunks(size_t n);
cudaError_t pz_cu_sumsq_parts(cudaStream_t s, double *part, const float *a, const float *b, size_t n);
// *out = Σ part[0..n) over a fixed tree (one block).
cudaError_t pz_cu_sum_parts(cudaStream_t s, double *out, const double *part, size_t n);
// g *= min(1, max_norm / (sqrt(*norm2) + 1e-6)) (the factor in double, applied as float).
cudaError_t pz_cu_clip(cudaStream_t s, float *g, size_t n, const double *norm2, float max_norm);
// One AdamW update of n elements (adamw.h's formula; keep = 1 − lr·wd or 1).
cudaError_t pz_cu_adamw(cudaStream_t s, float *p, const float *g, float *m, float *v, size_t n,
                        float b1, float b2, float eps, float lr, float keep, float bc1, float bc2);
// d = c·(y − t) with c = 2·grad_scale / *den, unless *den == 0 (then d is left alone).
cudaError_t pz_cu_nmse_grad(cudaStream_t s, float *d, const float *t, const float *y, size_t n,
                            const double *den, float grad_scale);
// Per row r: part[r] = Σ(t−y)² / (Σt² + eps) (NaN when the denominator is
// not > 0); d (may be NULL) row r = 2·grad_scale / (rows·den_r) · (y − t).
cudaError_t pz_cu_token_nmse(cudaStream_t s, double *part, float *d, const float *t, const float *y,
                             int rows, int cols, float eps, float grad_scale);
// Global distillation's losses (train.h's cosine_loss and kl_loss), one block
// per row: part[r] = Σ_m (1 − cos) of row r over n_mat matrices mat_stride
// floats apart (t parent, c child), d (may be NULL) its gradient times
// grad_scale; part[r] = KL(softmax(p_r) ‖ softmax(q_r)), d (may be NULL, may
// equal q) grad_scale·(softmax(q_r) − softmax(p_r)).
cudaError_t pz_cu_cosine_loss(cudaStream_t s, double *part, float *d, const float *t, const float *c,
                              int n_mat, size_t mat_stride, int rows, int cols, double grad_scale);
cudaError_t pz_cu_kl_loss(cudaStream_t s, double *part, float *d, const float *p, const float *q,
                          int rows, int vocab, double grad_scale);
// C[M,N] (ldc) = (acc ? C : 0) + op(A)·op(B) (train.h's gemm), plain tiled
// kernel, fp32 (operands rounded to bf16 first when bf16): the fallback of
// shapes and alignments cuBLASLt takes no algorithm for.
cudaError_t pz_cu_gemm_fallback(cudaStream_t s, int ta, int tb, int M, int N, int K, const float *A,
                                int lda, const float *B, int ldb, float *C, int ldc, int acc, int bf16);

// The ops table of train.h (train_ops.c).
extern const pz_train_ops pz_cuda_train_ops;

// ---- sampling (sample.cu) -----------------------------------------------------
// out[m] = argmax over n of logits[m] (ld); the lowest index wins a tie; NaN
// rows give the index of the first NaN.
cudaError_t pz_cu_argmax(cudaStream_t s, int32_t *out, const float *logits, int ld, int M, int n);

#ifdef __cplusplus
}
#endif

#endif
