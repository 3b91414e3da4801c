// backend.h — the interface every compute backend fills (v2: what a GPU
// needs). The engine (runtime/engine.c), the block library, scoring and
// distillation call only through this struct, so a CUDA backend slots in
// beside the CPU one and serves every stage. Callers ask supports(op, dtype)
// first and fall back (e.g. to fp32 weights) instead of failing.
//
// Memory. Every pointer an op takes is backend memory: weights, token ids,
// positions, activations, logits and the KV cache. alloc/free manage it;
// copy moves bytes between host and backend (H2D, D2H) or within the
// backend (D2D). upload_weights hands a model's whole weight arena (one
// allocation carved by a size table) to the backend once; the CPU backend
// uses host memory as its own, so there it returns the host pointer itself
// and copies nothing.
//
// Stream. Ops are enqueued on the backend's one stream, in order. An op's
// results (and the bytes of a D2H copy) may be read from the host only
// after synchronize, which also reports any failure of the ops enqueued
// since the last synchronize (a device fault, a launch error). Ops that
// check their arguments, or can fail for a reason the caller must see at
// once (a bad token id, an unsupported shape), return 0 / -1 with err
// filled; the pointwise ops cannot fail on valid input and return nothing.
// The CPU backend runs each op to completion before returning.
//
// Conventions shared by every op:
// - Row-major matrices; "ld" arguments are row strides in elements.
// - Activations are fp32 unless an op says otherwise.
// - Matmul weights are prepared weights (pz_weight): [N, K] (the Hugging
//   Face [out, in] orientation), of any element type the backend supports.
// - RoPE is the Hugging Face "rotate_half" form: within each head, dimension
//   i rotates with i + head_dim/2.
// - err is PZ_ERRLEN bytes and may be NULL.
#ifndef PZ_BACKEND_H
#define PZ_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "train.h"

#ifndef PZ_ERRLEN
#define PZ_ERRLEN 512
#endif

typedef enum {
    PZ_OP_MATMUL = 0,  // dt: the weight type
    PZ_OP_RMSNORM,
    PZ_OP_ROPE,
    PZ_OP_ATTENTION,   // dt: the KV-cache type
    PZ_OP_SWIGLU,
    PZ_OP_ADD,
    PZ_OP_EMBED,       // dt: the table type
    PZ_OP_TRAIN,       // every training op below; dt: the product precision
    PZ_OP_COUNT
} pz_op;

typedef enum { PZ_BACKEND_CPU = 0, PZ_BACKEND_CUDA = 1 } pz_backend_kind;

typedef enum { PZ_COPY_H2D = 0, PZ_COPY_D2H = 1, PZ_COPY_D2D = 2 } pz_copy_kind;

// A matmul weight prepared for one backend. data is [rows, cols] in backend
// memory, rows ld elements apart (ld >= cols), of element type `type`.
// Dequantized value of element (n, k) = data[n, k] · scale · (ch_scale ?
// ch_scale[n] : 1): scale is 1 for f32/bf16; FP8 weights carry their
// per-tensor scale here and optionally per-output-channel scales (backend
// memory, rows floats). priv is the backend's own state for this weight
// (CUDA: cuBLASLt layouts and the algorithm chosen for it), made by
// prepare_weight and released by release_weight; the CPU backend keeps
// none. The weight does not own data or ch_scale. x_scale is the static
// per-tensor input scale a matmul with xt = PZ_DT_E4M3 quantizes the
// activations with (e4m3(x / x_scale), as an FP8 GEMM's input; the
// checkpoints' input_scale); 0 when the weight has none.
typedef struct {
    const void *data;
    pz_dt type;
    int rows, cols, ld;
    float scale;
    const float *ch_scale;
    float x_scale;
    void *priv;
} pz_weight;

// A dense weight over data (rows x cols, ld = cols, scale 1, no channel
// scales, not yet prepared).
pz_weight pz_weight_dense(const void *data, pz_dt type, int rows, int cols);

// Llama RoPE frequency set-up; see pz_rope_inv_freq.
typedef struct {
    int head_dim;             // rotary dimension (= head_dim), even
    float theta;              // base, e.g. 10000 or 100000
    int llama3;               // 1: Llama-3 frequency scaling below
    float factor, low_freq_factor, high_freq_factor;
    int orig_ctx;             // original_max_position_embeddings
} pz_rope_params;

// The KV cache is paged: one pool of pages per attention layer, each page
// holding PZ_KV_PAGE consecutive positions of every KV head of that layer
// (sized by kv_page_bytes for the layer's KV heads), and each sequence
// reaches its positions through a page table: position j lives in page
// pages[j / PZ_KV_PAGE] at offset j % PZ_KV_PAGE. Sequences that share a
// prefix share its pages. The page layout is the backend's own; the CPU
// backend keeps, per page and KV head, K transposed as [head_dim][16] (16
// scores come out of one vector of fused multiply-adds) and V as
// [16][head_dim] (kernels/cpu/attention.h). Element type: kv_type (f32;
// bf16 and FP8 e4m3 where supports(PZ_OP_ATTENTION, dt) says so), FP8
// values dequantized as value · k_scale (K) or · v_scale (V).
#define PZ_KV_PAGE 16

// One sequence's share of an attention call: n_q queries at consecutive
// positions pos0 .. pos0+n_q-1, attending causally to the keys/values at
// positions 0 .. pos0+n_q-1 (the cache must already hold the new ones).
// K and V are either plain row-major fp32 buffers (kv_ld > 0: rows of
// n_kv*head_dim values, kv_ld apart), or (kv_ld == 0) a layer's page pools
// with this sequence's page table. The descriptors themselves are host
// memory (launch arguments); what they point to is backend memory.
typedef struct {
    const float *q;   // (n_q, n_head*head_dim), rows q_ld apart
    int q_ld;
    float *out;       // (n_q, n_head*head_dim), rows out_ld apart
    int out_ld;
    const void *k;    // (pos0+n_q, n_kv*head_dim) rows kv_ld apart, or the layer's K page pool
    const void *v;    // same shape as k (the V page pool)
    int kv_ld;        // > 0: row-major fp32 K/V; 0: paged
    const int32_t *pages;  // paged: page ids of positions 0.. (ceil((pos0+n_q)/PZ_KV_PAGE) entries)
    pz_dt kv_type;    // paged: element type of the pools
    float k_scale, v_scale;  // paged FP8: dequantization scales (1 otherwise)
    int n_q;
    int pos0;
} pz_attn_seq;

// One kv_write call: R rows of new keys and values into one layer's page
// pools, row r to page row_page[r] at offset pos[r] % PZ_KV_PAGE. kv holds
// row r's K at kv + r*ld and its V at kv + r*ld + n_kv*head_dim (fp32);
// they are stored as kv_type (FP8: value / k_scale, saturated). row_page
// and pos are backend memory; page ids are < n_pages.
typedef struct {
    void *k_pool, *v_pool;
    int n_pages;
    int n_kv, head_dim;
    pz_dt kv_type;
    float k_scale, v_scale;
    const float *kv;
    int ld;
    const int32_t *row_page;  // (R)
    const int32_t *pos;       // (R)
    int R;
} pz_kv_write;

typedef struct pz_backend pz_backend;
typedef struct pz_graph pz_graph;  // a captured pass (graph_create)
struct pz_backend {
    pz_backend_kind kind;
    const char *name;       // "cpu", "cuda"
    int n_threads;          // CPU: OpenMP threads for every op
    int invariant_rows;     // matmul: the most rows that keep results row-invariant (>= 1)
    int rowwise_prefill;    // 1: a batch-invariant engine splits prefill products by
                            // invariant_rows too (the small-M kernel costs here no more per row
                            // than the library); 0: fixed padded library blocks (engine.c)
    void *impl;             // backend-private state

    int (*supports)(const pz_backend *b, pz_op op, pz_dt dt);

    // ---- memory and the stream ---------------------------------------------
    // alloc returns zeroed 64-byte-aligned backend memory or NULL; free(NULL)
    // is a no-op.
    void *(*alloc)(pz_backend *b, size_t bytes);
    void (*free)(pz_backend *b, void *p);
    // Enqueued; for D2H the host bytes are valid after synchronize.
    int (*copy)(pz_backend *b, void *dst, const void *src, size_t bytes, pz_copy_kind kind, char *err);
    // The host arena of `bytes` bytes as backend memory: the same bytes at
    // the same offsets. Release with free_weights. NULL with err on failure.
    void *(*upload_weights)(pz_backend *b, const void *host, size_t bytes, char *err);
    void (*free_weights)(pz_backend *b, void *p);
    // Waits for every enqueued op; -1 with err filled if any failed.
    int (*synchronize)(pz_backend *b, char *err);

    // ---- inference ops -------------------------------------------------------
    // Fills w->priv for this backend (and checks the type is supported).
    int (*prepare_weight)(pz_backend *b, pz_weight *w, char *err);
    void (*release_weight)(pz_backend *b, pz_weight *w);
    // y[M,N] (ldy) = (accumulate ? y : 0) + x[M,K] (ldx) · W^T, with N =
    // w->rows, K = w->cols. xt: the activations' type as they enter the
    // product (PZ_DT_F32: fp32 as given; a narrower type quantizes them
    // first, as an FP8 GEMM does).
    //
    // Row results may depend on M (different kernels, summation orders, or
    // activation rounding for larger M). Products of at most invariant_rows
    // rows are row-invariant: row m of y depends only on row m of x, w and
    // the backend, whatever M is. Callers that need a sequence's result not
    // to depend on its batch-mates (a server's decode) split by it.
    int (*matmul)(pz_backend *b, float *y, int ldy, const float *x, int ldx, pz_dt xt,
                  const pz_weight *w, int M, int accumulate, char *err);
    // y[M,n] = x / sqrt(mean(x^2) + eps) * w, per row (y may equal x).
    void (*rmsnorm)(pz_backend *b, float *y, const float *x, const float *w, int M, int n, float eps);
    // In place on x[M, n_heads*head_dim] (ld), row m at position pos[m];
    // inv_freq has head_dim/2 entries (pz_rope_inv_freq).
    void (*rope)(pz_backend *b, float *x, int ld, const int32_t *pos, int M,
                 int n_heads, int head_dim, const float *inv_freq);
    // Bytes of one K page (and as many of a V page) of one layer: PZ_KV_PAGE
    // positions of n_kv heads, elements of type dt. 0 if dt is unsupported.
    size_t (*kv_page_bytes)(const pz_backend *b, int n_kv, int head_dim, pz_dt dt);
    // Stores all rows of one call (see pz_kv_write); -1 on a page id out of
    // range or an unsupported type.
    int (*kv_write)(pz_backend *b, const pz_kv_write *w, char *err);
    // Causal attention with grouped KV heads (query head h reads KV head
    // h / (n_head/n_kv)), scale 1/sqrt(head_dim), for n_seq sequences.
    int (*attention)(pz_backend *b, const pz_attn_seq *seqs, int n_seq,
                     int n_head, int n_kv, int head_dim, char *err);
    // h[M,n] (ldh) = silu(g) * u, g and u rows gu_ld apart.
    void (*swiglu)(pz_backend *b, float *h, int ldh, const float *g, const float *u, int gu_ld, int M, int n);
    // y[n] += x[n]
    void (*add)(pz_backend *b, float *y, const float *x, size_t n);
    // y[M,n] = table[ids[m]] (table: (vocab, n), a dense weight); -1 on a bad id.
    int (*embed)(pz_backend *b, float *y, const pz_weight *table, const int32_t *ids, int M,
                 char *err);

    // ---- training ops (BLD, scoring, distillation; kernels/train.h) ----------
    const pz_train_ops *train;

    // ---- captured passes (optional: all three NULL where the backend has none)
    // A graph replays one fixed sequence of op calls as a single launch (the
    // engine's decode step, one graph per batch-size bucket). graph_begin
    // arms g for the op calls up to the next synchronize: g's first pass runs
    // eagerly (warm-up), its second is captured, later ones replay it. Every
    // pass of one graph must make the same op calls on the same backend
    // buffers with the same sizes; host data may change (host-to-device
    // copies no longer than the captured ones; device-to-host copies of the
    // same length, into any host buffer). A pass that differs, or a capture
    // the backend cannot make, fails at synchronize and breaks g: free it and
    // go on eagerly (or with a new graph). stage_bytes: the most host data
    // one pass moves (copies both ways, plus the backend's own per-op data
    // such as attention descriptors). graph_free also disarms g if a pass
    // was abandoned before its synchronize; the caller then synchronizes
    // once to drop that pass's error. Graphs are owned by the caller.
    pz_graph *(*graph_create)(pz_backend *b, size_t stage_bytes, char *err);
    void (*graph_free)(pz_backend *b, pz_graph *g);
    int (*graph_begin)(pz_backend *b, pz_graph *g, char *err);

    void (*destroy)(pz_backend *b);
};

// Creates a backend of the given kind. n_threads <= 0 means every core.
// Returns NULL with err filled when the kind is not built in or fails to
// start. Free with pz_backend_free.
pz_backend *pz_backend_create(pz_backend_kind kind, int n_threads, char *err);
void pz_backend_free(pz_backend *b);
// "cpu" -> PZ_BACKEND_CPU, "cuda" -> PZ_BACKEND_CUDA; 0 or -1.
int pz_backend_kind_parse(const char *s, pz_backend_kind *kind);
const char *pz_backend_kind_name(pz_backend_kind kind);

// inv_freq[i] = theta^(-2i/head_dim) for i < head_dim/2, with the Llama-3
// rescaling when p->llama3 (wavelengths above orig_ctx/low_freq_factor are
// divided by factor, below orig_ctx/high_freq_factor kept, smooth between).
void pz_rope_inv_freq(const pz_rope_params *p, float *inv_freq);

#endif
