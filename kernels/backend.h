// backend.h — the small interface every compute backend fills: memory
// (alloc/free/copy) and the forward ops of a Llama-family transformer. The
// engine (runtime/engine.c) calls only through this struct, so a CUDA
// backend can slot in beside the CPU one. Callers ask supports(op, dtype)
// first and fall back (e.g. to fp32 weights) instead of failing.
//
// Conventions shared by every op:
// - Row-major matrices; "ld" arguments are row strides in elements.
// - Activations are fp32. Matmul weights are fp32 or bf16, stored [N, K]
//   (the Hugging Face [out, in] orientation).
// - RoPE is the Hugging Face "rotate_half" form: within each head, dimension
//   i rotates with i + head_dim/2.
// - Ops that can fail return 0 or -1 and write one line into err
//   (PZ_ERRLEN bytes, may be NULL); the others cannot fail on valid input.
// - All pointers passed to ops are in the backend's memory (host memory for
//   the CPU backend).
#ifndef PZ_BACKEND_H
#define PZ_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"

#ifndef PZ_ERRLEN
#define PZ_ERRLEN 512
#endif


typedef enum {
    PZ_OP_MATMUL = 0,
    PZ_OP_RMSNORM,
    PZ_OP_ROPE,
    PZ_OP_ATTENTION,
    PZ_OP_SWIGLU,
    PZ_OP_ADD,
    PZ_OP_EMBED,
    PZ_OP_COUNT
} pz_op;

typedef enum { PZ_BACKEND_CPU = 0, PZ_BACKEND_CUDA = 1 } pz_backend_kind;

typedef enum { PZ_COPY_H2D = 0, PZ_COPY_D2H = 1, PZ_COPY_D2D = 2 } pz_copy_kind;

// Llama RoPE frequency set-up; see pz_rope_inv_freq.
typedef struct {
    int head_dim;             // rotary dimension (= head_dim), even
    float theta;              // base, e.g. 10000 or 100000
    int llama3;               // 1: Llama-3 frequency scaling below
    float factor, low_freq_factor, high_freq_factor;
    int orig_ctx;             // original_max_position_embeddings
} pz_rope_params;

// One sequence's share of an attention call: n_q queries at consecutive
// positions pos0 .. pos0+n_q-1, attending causally to the keys/values at
// positions 0 .. pos0+n_q-1 (the cache must already hold the new ones).
// K and V are either plain row-major buffers (kv_ld > 0: rows of
// n_kv*head_dim values, kv_ld apart), or (kv_ld == 0) a KV cache in the
// backend's own layout, sized by kv_bytes for kv_cap positions and filled
// by kv_write. The CPU backend's cache keeps each KV head's K as one run of
// transposed blocks of 16 positions, [n_kv][cap/16][head_dim][16], so 16
// scores come out of one vector of fused multiply-adds, and V as
// [n_kv][cap][head_dim] (kernels/cpu/attention.h).
typedef struct {
    const float *q;   // (n_q, n_head*head_dim), rows q_ld apart
    int q_ld;
    float *out;       // (n_q, n_head*head_dim), rows out_ld apart
    int out_ld;
    const float *k;   // (pos0+n_q, n_kv*head_dim) rows kv_ld apart, or a cache (kv_ld 0)
    const float *v;   // same shape as k
    int kv_ld;        // > 0: row-major K/V; 0: the backend's cache layout
    int kv_cap;       // cache layout: the n_pos the cache was sized for
    int n_q;
    int pos0;
} pz_attn_seq;

typedef struct pz_backend pz_backend;
struct pz_backend {
    pz_backend_kind kind;
    const char *name;       // "cpu", "cuda"
    int n_threads;          // CPU: OpenMP threads for every op
    void *impl;             // backend-private state

    int (*supports)(const pz_backend *b, pz_op op, pz_dt dt);

    // Memory: alloc returns zeroed 64-byte-aligned memory or NULL; free(NULL)
    // is a no-op.
    void *(*alloc)(pz_backend *b, size_t bytes);
    void (*free)(pz_backend *b, void *p);
    void (*copy)(pz_backend *b, void *dst, const void *src, size_t bytes, pz_copy_kind kind);

    // y[M,N] (ldy) = (accumulate ? y : 0) + x[M,K] (ldx) · W[N,K]^T, W
    // dense with row stride K, of type wt.
    int (*matmul)(pz_backend *b, float *y, int ldy, const float *x, int ldx,
                  const void *w, pz_dt wt, int M, int N, int K, int accumulate, char *err);
    // y[M,n] = x / sqrt(mean(x^2) + eps) * w, per row (y may equal x).
    void (*rmsnorm)(pz_backend *b, float *y, const float *x, const float *w, int M, int n, float eps);
    // In place on x[M, n_heads*head_dim] (ld), row m at position pos[m];
    // inv_freq has head_dim/2 entries (pz_rope_inv_freq).
    void (*rope)(pz_backend *b, float *x, int ld, const int32_t *pos, int M,
                 int n_heads, int head_dim, const float *inv_freq);
    // Bytes of a K cache (and as many of a V cache) for one sequence of up
    // to n_pos positions in one layer.
    size_t (*kv_bytes)(const pz_backend *b, int n_kv, int head_dim, int n_pos);
    // Stores position pos (< cap) of one sequence whose cache was sized for
    // cap positions: k and v are (n_kv*head_dim).
    void (*kv_write)(pz_backend *b, float *k_cache, float *v_cache, int n_kv, int head_dim, int cap,
                     int pos, const float *k, const float *v);
    // Causal attention with grouped KV heads (query head h reads KV head
    // h / (n_head/n_kv)), scale 1/sqrt(head_dim), for n_seq sequences.
    int (*attention)(pz_backend *b, const pz_attn_seq *seqs, int n_seq,
                     int n_head, int n_kv, int head_dim, char *err);
    // h[M,n] (ldh) = silu(g) * u, g and u rows gu_ld apart.
    void (*swiglu)(pz_backend *b, float *h, int ldh, const float *g, const float *u, int gu_ld, int M, int n);
    // y[n] += x[n]
    void (*add)(pz_backend *b, float *y, const float *x, size_t n);
    // y[M,n] = table[ids[m]] (table (vocab, n) of type dt); -1 on a bad id.
    int (*embed)(pz_backend *b, float *y, const void *table, pz_dt dt, const int32_t *ids,
                 int M, int n, int vocab, char *err);

    void (*destroy)(pz_backend *b);
};

// Creates a backend of the given kind. n_threads <= 0 means every core.
// Returns NULL with err filled when the kind is not built in or fails to
// start. Free with pz_backend_free.
pz_backend *pz_backend_create(pz_backend_kind kind, int n_threads, char *err);
void pz_backend_free(pz_backend *b);

// inv_freq[i] = theta^(-2i/head_dim) for i < head_dim/2, with the Llama-3
// rescaling when p->llama3 (wavelengths above orig_ctx/low_freq_factor are
// divided by factor, below orig_ctx/high_freq_factor kept, smooth between).
void pz_rope_inv_freq(const pz_rope_params *p, float *inv_freq);

#endif
