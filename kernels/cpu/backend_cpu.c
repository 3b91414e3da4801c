// backend_cpu.c — fills the pz_backend interface with the CPU kernels of
// this folder, and hosts pz_backend_create (the switch over backend kinds).
#include "backend_cpu.h"
#include "attention.h"
#include "matmul.h"
#include "pointwise.h"
#include "rmsnorm.h"
#include "rope.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int cpu_supports(const pz_backend *b, pz_op op, pz_dt dt) {
    (void)b;
    switch (op) {
    case PZ_OP_MATMUL:
    case PZ_OP_EMBED: return dt == PZ_DT_F32 || dt == PZ_DT_BF16;
    case PZ_OP_RMSNORM:
    case PZ_OP_ROPE:
    case PZ_OP_ATTENTION:
    case PZ_OP_SWIGLU:
    case PZ_OP_ADD: return dt == PZ_DT_F32;
    default: return 0;
    }
}

// Memory comes zeroed. Large buffers (KV caches) are 2 MiB-aligned and advised for transparent
// huge pages, as decode streams through them once per token.
static void *cpu_alloc(pz_backend *b, size_t bytes) {
    (void)b;
    const size_t huge = (size_t)2 << 20;
    if (bytes >= huge) {
        size_t n = (bytes + huge - 1) / huge * huge;
        void *p = aligned_alloc(huge, n);
#ifdef MADV_HUGEPAGE
        if (p) madvise(p, n, MADV_HUGEPAGE);
#endif
        if (p) memset(p, 0, n);
        return p;
    }
    size_t n = (bytes + 63) / 64 * 64;
    if (n == 0) n = 64;
    void *p = aligned_alloc(64, n);
    if (p) memset(p, 0, n);
    return p;
}

static void cpu_free(pz_backend *b, void *p) {
    (void)b;
    free(p);
}

static void cpu_copy(pz_backend *b, void *dst, const void *src, size_t bytes, pz_copy_kind kind) {
    (void)b, (void)kind;
    if (bytes) memmove(dst, src, bytes);
}

static int cpu_matmul(pz_backend *b, float *y, int ldy, const float *x, int ldx, const void *w,
                      pz_dt wt, int M, int N, int K, int acc, char *err) {
    return pz_cpu_matmul((pz_cpu_mm *)b->impl, y, ldy, x, ldx, w, wt, M, N, K, acc, err);
}

static void cpu_rmsnorm(pz_backend *b, float *y, const float *x, const float *w, int M, int n, float eps) {
    pz_cpu_rmsnorm(y, x, w, M, n, eps, b->n_threads);
}

static void cpu_rope(pz_backend *b, float *x, int ld, const int32_t *pos, int M, int n_heads,
                     int head_dim, const float *inv_freq) {
    pz_cpu_rope(x, ld, pos, M, n_heads, head_dim, inv_freq, b->n_threads);
}

static int cpu_attention(pz_backend *b, const pz_attn_seq *seqs, int n_seq, int n_head, int n_kv,
                         int head_dim, char *err) {
    return pz_cpu_attention(seqs, n_seq, n_head, n_kv, head_dim, b->n_threads, err);
}

static size_t cpu_kv_bytes(const pz_backend *b, int n_kv, int head_dim, int n_pos) {
    (void)b;
    return pz_cpu_kv_bytes(n_kv, head_dim, n_pos);
}

static void cpu_kv_write(pz_backend *b, float *k_cache, float *v_cache, int n_kv, int head_dim, int cap,
                         int pos, const float *k, const float *v) {
    (void)b;
    pz_cpu_kv_write(k_cache, v_cache, n_kv, head_dim, cap, pos, k, v);
}

static void cpu_swiglu(pz_backend *b, float *h, int ldh, const float *g, const float *u, int gu_ld, int M, int n) {
    pz_cpu_swiglu(h, ldh, g, u, gu_ld, M, n, b->n_threads);
}

static void cpu_add(pz_backend *b, float *y, const float *x, size_t n) {
    pz_cpu_add(y, x, n, b->n_threads);
}

static int cpu_embed(pz_backend *b, float *y, const void *table, pz_dt dt, const int32_t *ids,
                     int M, int n, int vocab, char *err) {
    (void)b;
    int bad = pz_cpu_embed(y, table, dt, ids, M, n, vocab);
    if (bad >= 0) {
        if (err) snprintf(err, PZ_ERRLEN, "token id %d at position %d is outside the vocabulary (0..%d)", ids[bad], bad, vocab - 1);
        return -1;
    }
    return 0;
}

static void cpu_destroy(pz_backend *b) {
    pz_cpu_matmul_free((pz_cpu_mm *)b->impl);
    free(b);
}

pz_backend *pz_backend_cpu_create(int n_threads, char *err) {
    pz_backend *b = calloc(1, sizeof *b);
    if (!b) {
        if (err) snprintf(err, PZ_ERRLEN, "cpu backend: out of memory");
        return NULL;
    }
    b->kind = PZ_BACKEND_CPU;
    b->name = "cpu";
    b->n_threads = n_threads > 0 ? n_threads : omp_get_num_procs();
    b->impl = pz_cpu_matmul_create(b->n_threads, err);
    if (!b->impl) {
        free(b);
        return NULL;
    }
    b->supports = cpu_supports;
    b->alloc = cpu_alloc;
    b->free = cpu_free;
    b->copy = cpu_copy;
    b->matmul = cpu_matmul;
    b->rmsnorm = cpu_rmsnorm;
    b->rope = cpu_rope;
    b->kv_bytes = cpu_kv_bytes;
    b->kv_write = cpu_kv_write;
    b->attention = cpu_attention;
    b->swiglu = cpu_swiglu;
    b->add = cpu_add;
    b->embed = cpu_embed;
    b->destroy = cpu_destroy;
    return b;
}

pz_backend *pz_backend_create(pz_backend_kind kind, int n_threads, char *err) {
    switch (kind) {
    case PZ_BACKEND_CPU: return pz_backend_cpu_create(n_threads, err);
    default:
        if (err) snprintf(err, PZ_ERRLEN, "backend kind %d is not built into this binary", (int)kind);
        return NULL;
    }
}

void pz_backend_free(pz_backend *b) {
    if (b && b->destroy) b->destroy(b);
}
