// bwd_linear.c — see bwd_linear.h. oneDNN describes every operand as a 2-D
// matrix with explicit strides, so a transposed operand is the same memory
// with its strides swapped: op(A) [M,K] is strides (lda, 1), or (1, lda)
// when ta. oneDNN 2.6 picks its brgemm kernels for all four transpose
// combinations in fp32 and bf16 (checked with dnnl_query_impl_info_str).
#include "bwd_linear.h"
#include "matmul.h"

#include <omp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(PZ_USE_DNNL)
#include <oneapi/dnnl/dnnl.h>
#elif defined(PZ_USE_OPENBLAS)
#include <cblas.h>
void openblas_set_num_threads(int);
#endif

static int gerr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int gerr(char *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, PZ_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#define GEMM_CACHE 192

typedef struct {
    int used;
    int ta, tb, M, N, K, lda, ldb, ldc, prec, acc;
#if defined(PZ_USE_DNNL)
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
#endif
} gemm_entry;

struct pz_cpu_gm {
    int n_threads;
    uint16_t *abf, *bbf;      // bf16 copies of A and B, grown on demand
    size_t abf_cap, bbf_cap;  // elements
    float *ar, *br;           // without oneDNN: A and B rounded to bf16, held in fp32
    size_t ar_cap, br_cap;
    int next_evict;
    gemm_entry cache[GEMM_CACHE];
#if defined(PZ_USE_DNNL)
    dnnl_engine_t eng;
    dnnl_stream_t stream;
#endif
};

int pz_cpu_gemm_threads(const pz_cpu_gm *g) { return g->n_threads; }

pz_cpu_gm *pz_cpu_gemm_create(int n_threads, char *err) {
    pz_cpu_gm *g = calloc(1, sizeof *g);
    if (!g) {
        gerr(err, "gemm: out of memory");
        return NULL;
    }
    g->n_threads = n_threads > 0 ? n_threads : omp_get_num_procs();
#if defined(PZ_USE_DNNL)
    if (dnnl_engine_create(&g->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&g->stream, g->eng, dnnl_stream_default_flags) != dnnl_success) {
        gerr(err, "gemm: oneDNN engine or stream creation failed");
        pz_cpu_gemm_free(g);
        return NULL;
    }
#endif
    return g;
}

static void entry_clear(gemm_entry *e) {
#if defined(PZ_USE_DNNL)
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->a) dnnl_memory_destroy(e->a);
    if (e->b) dnnl_memory_destroy(e->b);
    if (e->c) dnnl_memory_destroy(e->c);
#endif
    memset(e, 0, sizeof *e);
}

void pz_cpu_gemm_free(pz_cpu_gm *g) {
    if (!g) return;
    for (int i = 0; i < GEMM_CACHE; i++)
        if (g->cache[i].used) entry_clear(&g->cache[i]);
#if defined(PZ_USE_DNNL)
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->eng) dnnl_engine_destroy(g->eng);
#endif
    free(g->abf);
    free(g->bbf);
    free(g->ar);
    free(g->br);
    free(g);
}

static int grow(uint16_t **p, size_t *cap, size_t n, char *err) {
    if (n <= *cap) return 0;
    uint16_t *q = aligned_alloc(64, ((n * 2 + 63) / 64) * 64);
    if (!q) return gerr(err, "gemm: out of memory for %zu bf16 values", n);
    free(*p);
    *p = q;
    *cap = n;
    return 0;
}

#if defined(PZ_USE_DNNL)
// rows x cols fp32 (rows ld apart) -> compact bf16.
static void to_bf16(uint16_t *dst, const float *src, int rows, int cols, int ld) {
    if (ld == cols) {
        pz_cpu_f32_to_bf16(src, dst, (size_t)rows * cols);
        return;
    }
    for (int r = 0; r < rows; r++)
        pz_cpu_f32_to_bf16(src + (size_t)r * ld, dst + (size_t)r * cols, (size_t)cols);
}

#define DN(call, what)                                                                   \
    do {                                                                                 \
        dnnl_status_t st_ = (call);                                                      \
        if (st_ != dnnl_success) {                                                       \
            gerr(err, "gemm: oneDNN %s failed (status %d) at %s:%d", what, (int)st_,     \
                 __FILE__, __LINE__);                                                    \
            goto fail;                                                                   \
        }                                                                                \
    } while (0)

static gemm_entry *dnnl_entry(pz_cpu_gm *g, int ta, int tb, int M, int N, int K, int lda,
                              int ldb, int ldc, pz_dt prec, int acc, char *err) {
    for (int i = 0; i < GEMM_CACHE; i++) {
        gemm_entry *e = &g->cache[i];
        if (e->used && e->ta == ta && e->tb == tb && e->M == M && e->N == N && e->K == K &&
            e->lda == lda && e->ldb == ldb && e->ldc == ldc && e->prec == (int)prec && e->acc == acc)
            return e;
    }
    gemm_entry *e = NULL;
    for (int i = 0; i < GEMM_CACHE && !e; i++)
        if (!g->cache[i].used) e = &g->cache[i];
    if (!e) {
        e = &g->cache[g->next_evict];
        g->next_evict = (g->next_evict + 1) % GEMM_CACHE;
        entry_clear(e);
    }
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_data_type_t dt = prec == PZ_DT_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t amd, bmd, cmd;
    dnnl_dims_t ad = {M, K}, as = {ta ? 1 : lda, ta ? lda : 1};
    dnnl_dims_t bd = {K, N}, bs = {tb ? 1 : ldb, tb ? ldb : 1};
    dnnl_dims_t cd = {M, N}, cs = {ldc, 1};
    DN(dnnl_memory_desc_init_by_strides(&amd, 2, ad, dt, as), "A desc");
    DN(dnnl_memory_desc_init_by_strides(&bmd, 2, bd, dt, bs), "B desc");
    DN(dnnl_memory_desc_init_by_strides(&cmd, 2, cd, dnnl_f32, cs), "C desc");
    dnnl_matmul_desc_t md;
    DN(dnnl_matmul_desc_init(&md, &amd, &bmd, NULL, &cmd), "matmul desc");
    DN(dnnl_primitive_attr_create(&attr), "attr");
    if (acc) {
        DN(dnnl_post_ops_create(&po), "post ops");
        DN(dnnl_post_ops_append_sum(po, 1.0f), "sum post op");
        DN(dnnl_primitive_attr_set_post_ops(attr, po), "set post ops");
    }
    DN(dnnl_primitive_desc_create(&pd, &md, attr, g->eng, NULL), "primitive desc");
    DN(dnnl_primitive_create(&e->prim, pd), "primitive");
    DN(dnnl_memory_create(&e->a, &amd, g->eng, DNNL_MEMORY_NONE), "A memory");
    DN(dnnl_memory_create(&e->b, &bmd, g->eng, DNNL_MEMORY_NONE), "B memory");
    DN(dnnl_memory_create(&e->c, &cmd, g->eng, DNNL_MEMORY_NONE), "C memory");
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    if (po) dnnl_post_ops_destroy(po);
    e->used = 1;
    e->ta = ta, e->tb = tb, e->M = M, e->N = N, e->K = K;
    e->lda = lda, e->ldb = ldb, e->ldc = ldc, e->prec = (int)prec, e->acc = acc;
    return e;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (po) dnnl_post_ops_destroy(po);
    entry_clear(e);
    return NULL;
}
#else
// Without oneDNN, bf16 products are fp32 products of operands rounded to
// bf16 (a bf16 x bf16 product is exact in fp32, so this is the same
// arithmetic), which needs no cblas_sbgemm (Debian's OpenBLAS lacks it).
static int growf(float **p, size_t *cap, size_t n, char *err) {
    if (n <= *cap) return 0;
    float *q = aligned_alloc(64, ((n * 4 + 63) / 64) * 64);
    if (!q) return gerr(err, "gemm: out of memory for %zu values", n);
    free(*p);
    *p = q;
    *cap = n;
    return 0;
}

static void round_bf16(float *dst, const float *src, int rows, int cols, int ld, uint16_t *tmp) {
    for (int r = 0; r < rows; r++) {
        pz_cpu_f32_to_bf16(src + (size_t)r * ld, tmp, (size_t)cols);
        for (int c = 0; c < cols; c++) {
            uint32_t u = (uint32_t)tmp[c] << 16;
            memcpy(&dst[(size_t)r * cols + c], &u, 4);
        }
    }
}
#if !defined(PZ_USE_OPENBLAS)
// No library: plain loops in double, parallel over rows of C.
static void gemm_plain(int ta, int tb, int M, int N, int K, const float *A, int lda,
                       const float *B, int ldb, float *C, int ldc, int acc, int nt) {
#pragma omp parallel for num_threads(nt) if (nt > 1 && M > 1) schedule(static)
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++)
                s += (double)(ta ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k]) *
                     (tb ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n]);
            float *c = &C[(size_t)m * ldc + n];
            *c = acc ? *c + (float)s : (float)s;
        }
}
#endif
#endif

int pz_cpu_gemm(pz_cpu_gm *g, int ta, int tb, int M, int N, int K, const float *A, int lda,
                const float *B, int ldb, float *C, int ldc, int accumulate, pz_dt prec, char *err) {
    if (M < 0 || N < 0 || K < 0 || ldc < N || lda < (ta ? M : K) || ldb < (tb ? K : N) ||
        (prec != PZ_DT_F32 && prec != PZ_DT_BF16))
        return gerr(err, "gemm: bad shape M=%d N=%d K=%d ta=%d tb=%d lda=%d ldb=%d ldc=%d prec=%d",
                    M, N, K, ta, tb, lda, ldb, ldc, (int)prec);
    if (M == 0 || N == 0) return 0;
    if (K == 0) {
        if (!accumulate)
            for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, sizeof(float) * (size_t)N);
        return 0;
    }
    if (omp_get_max_threads() != g->n_threads) omp_set_num_threads(g->n_threads);
#if defined(PZ_USE_OPENBLAS)
    openblas_set_num_threads(g->n_threads);
#endif
#if defined(PZ_USE_DNNL)
    const void *a = A, *b = B;
    if (prec == PZ_DT_BF16) {
        int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
        if (grow(&g->abf, &g->abf_cap, (size_t)ar * ac, err) ||
            grow(&g->bbf, &g->bbf_cap, (size_t)br * bc, err))
            return -1;
        to_bf16(g->abf, A, ar, ac, lda);
        to_bf16(g->bbf, B, br, bc, ldb);
        a = g->abf, b = g->bbf, lda = ac, ldb = bc;
    }
    gemm_entry *e = dnnl_entry(g, ta, tb, M, N, K, lda, ldb, ldc, prec, accumulate, err);
    if (!e) return -1;
    DN(dnnl_memory_set_data_handle(e->a, (void *)a), "set A");
    DN(dnnl_memory_set_data_handle(e->b, (void *)b), "set B");
    DN(dnnl_memory_set_data_handle(e->c, C), "set C");
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    DN(dnnl_primitive_execute(e->prim, g->stream, 3, args), "execute");
    DN(dnnl_stream_wait(g->stream), "stream wait");
    return 0;
fail:
    return -1;
#else
    if (prec == PZ_DT_BF16) {
        int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
        int wide = ac > bc ? ac : bc;
        if (growf(&g->ar, &g->ar_cap, (size_t)ar * ac, err) ||
            growf(&g->br, &g->br_cap, (size_t)br * bc, err) ||
            grow(&g->abf, &g->abf_cap, (size_t)wide, err))
            return -1;
        round_bf16(g->ar, A, ar, ac, lda, g->abf);
        round_bf16(g->br, B, br, bc, ldb, g->abf);
        A = g->ar, B = g->br, lda = ac, ldb = bc;
    }
#if defined(PZ_USE_OPENBLAS)
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, 1.0f, A, lda, B, ldb, accumulate ? 1.0f : 0.0f, C, ldc);
#else
    gemm_plain(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate, g->n_threads);
#endif
    return 0;
#endif
}

int pz_cpu_linear_fwd(pz_cpu_gm *g, float *y, const float *x, const float *w, int M, int N,
                      int K, pz_dt prec, char *err) {
    return pz_cpu_gemm(g, 0, 1, M, N, K, x, K, w, K, y, N, 0, prec, err);
}

int pz_cpu_linear_bwd(pz_cpu_gm *g, float *dx, int dx_acc, float *dw, const float *dy,
                      const float *x, const float *w, int M, int N, int K, pz_dt prec, char *err) {
    // dx[M,K] = dy[M,N]·W[N,K]
    if (dx && pz_cpu_gemm(g, 0, 0, M, K, N, dy, N, w, K, dx, K, dx_acc, prec, err)) return -1;
    // dW[N,K] += dy[M,N]ᵀ·x[M,K]
    if (dw && pz_cpu_gemm(g, 1, 0, N, K, M, dy, N, x, K, dw, K, 1, prec, err)) return -1;
    return 0;
}
