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

// ---- sampling (sample.cu) -----------------------------------------------------
// out[m] = argmax over n of logits[m] (ld); the lowest index wins a tie; NaN
// rows give the index of the first NaN.
cudaError_t pz_cu_argmax(cudaStream_t s, int32_t *out, const float *logits, int ld, int M, int n);

#ifdef __cplusplus
}
#endif

#endif
