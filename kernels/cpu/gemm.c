// gemm.c — see gemm.h. oneDNN describes every operand as a 2-D matrix with
// explicit strides, so a transposed operand is the same memory with its
// strides swapped: op(A) [M,K] is strides (lda, 1), or (1, lda) when ta.
// oneDNN 2.6 picks its brgemm kernels for all four transpose combinations
// in fp32 and bf16 (checked with dnnl_query_impl_info_str).
#include "gemm.h"
#include "gemv.h"  // pz_cpu_have_avx512_bf16
#include "isa.h"
#include "vexp.h"  // PZ_T256
#include "kerr.h"

#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(PZ_USE_DNNL)
#include <oneapi/dnnl/dnnl.h>
#elif defined(PZ_USE_OPENBLAS)
#include <cblas.h>
void openblas_set_num_threads(int);
#else
#error "kernels/cpu needs PZ_USE_DNNL or PZ_USE_OPENBLAS (CMake's PZ_BLAS)"
#endif

// ---- fp32 <-> bf16 ------------------------------------------------------------
static inline uint16_t f32_to_bf16_1(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

// The same rounding on 8 lanes: the bf16's bits, left in the high half of each
// 32-bit lane (the low half zero), so the lane read as fp32 is the rounded value.
PZ_T256 static inline __m256i bf16_round8(__m256i u) {
    const __m256i hi = _mm256_set1_epi32((int)0xffff0000u);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                     _mm256_set1_epi32(0x7f800000));
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb));
    r = _mm256_and_si256(r, hi);
    __m256i q = _mm256_or_si256(_mm256_and_si256(u, hi), _mm256_set1_epi32(0x400000));  // quiet NaN
    return _mm256_blendv_epi8(r, q, nan);
}

// n fp32 -> n bf16 (AVX2).
PZ_T256 static void f32_to_bf16_avx2(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i a = _mm256_srli_epi32(bf16_round8(_mm256_loadu_si256((const __m256i *)(src + i))), 16);
        __m256i b = _mm256_srli_epi32(bf16_round8(_mm256_loadu_si256((const __m256i *)(src + i + 8))), 16);
        // packus interleaves the 128-bit halves: a0-3 b0-3 a4-7 b4-7; the permute restores the order.
        __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xD8);
        _mm256_storeu_si256((__m256i *)(dst + i), p);
    }
    for (; i < n; i++) dst[i] = f32_to_bf16_1(src[i]);
}

static void round_f32_plain(const float *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)f32_to_bf16_1(src[i]) << 16;
        memcpy(&dst[i], &u, 4);
    }
}

// n fp32 -> the same values rounded to bf16, kept as fp32 (AVX2): one pass
// instead of a conversion to bf16 and a widening back.
PZ_T256 static void round_f32_avx2(const float *src, float *dst, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_si256((__m256i *)(dst + i), bf16_round8(_mm256_loadu_si256((const __m256i *)(src + i))));
    round_f32_plain(src + i, dst + i, n - i);
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
static void f32_to_bf16_avx512bf16(const float *src, uint16_t *dst, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
    for (; i < n; i++) dst[i] = f32_to_bf16_1(src[i]);
}

void pz_cpu_f32_to_bf16(const float *src, uint16_t *dst, size_t n) {
    if (pz_cpu_have_avx512_bf16()) {
        f32_to_bf16_avx512bf16(src, dst, n);
        return;
    }
    if (pz_cpu_isa() >= PZ_ISA_AVX2) {
        f32_to_bf16_avx2(src, dst, n);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16_1(src[i]);
}

void pz_cpu_f32_round_bf16(const float *src, float *dst, size_t n) {
    if (pz_cpu_isa() >= PZ_ISA_AVX2) round_f32_avx2(src, dst, n);
    else round_f32_plain(src, dst, n);
}

// rows x cols fp32 (rows ld apart) rounded to bf16 into dst, compact: bf16
// (uint16_t) when dt is PZ_DT_BF16, else the rounded values as fp32. Split
// over nt threads (each element is rounded on its own, so the result does
// not depend on nt); small operands stay on the calling thread.
static void round_rows(void *dst, const float *src, int rows, int cols, int ld, pz_dt dt, int nt) {
    const size_t n = (size_t)rows * cols, es = dt == PZ_DT_BF16 ? 2 : 4;
    // Contiguous: one flat range cut into pieces of a multiple of 64; else whole rows.
    const int flat = ld == cols;
    const long pieces = flat ? (long)((n + 16383) / 16384) : rows;
    if (n < 65536 || nt < 1) nt = 1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (long k = 0; k < pieces; k++) {
        const float *s = flat ? src + (size_t)k * 16384 : src + (size_t)k * ld;
        char *d = (char *)dst + (flat ? (size_t)k * 16384 : (size_t)k * cols) * es;
        size_t len = flat ? (n - (size_t)k * 16384 < 16384 ? n - (size_t)k * 16384 : 16384) : (size_t)cols;
        if (dt == PZ_DT_BF16) pz_cpu_f32_to_bf16(s, (uint16_t *)d, len);
        else pz_cpu_f32_round_bf16(s, (float *)d, len);
    }
}

// rows x cols bf16 (rows ld apart) -> compact fp32, exactly.
static void widen(float *dst, const uint16_t *src, int rows, int cols, int ld) {
    if (ld != cols) {
        for (int r = 0; r < rows; r++) widen(dst + (size_t)r * cols, src + (size_t)r * ld, 1, cols, cols);
        return;
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, 4);
    }
}

// ---- the handle ---------------------------------------------------------------
#define GEMM_CACHE 192

typedef struct {
    int used;
    int ta, tb, M, N, K, lda, ldb, ldc, dt, acc;
#if defined(PZ_USE_DNNL)
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c;
#endif
} gemm_entry;

typedef struct {
    void *p;  // 64-byte aligned
    size_t bytes;
} scratch;

struct pz_cpu_gm {
    int n_threads;
    scratch a, b;  // A and B rounded to bf16, compact (held in fp32 for fp32 products);
                   // b also holds a tile of a bf16 B widened to fp32
    int next_evict;
    gemm_entry cache[GEMM_CACHE];
#if defined(PZ_USE_DNNL)
    dnnl_engine_t eng;
    dnnl_stream_t stream;
#endif
};

const char *pz_cpu_matmul_library(void) {
#if defined(PZ_USE_DNNL)
    static char buf[64];
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
    return buf;
#else
    return "OpenBLAS";
#endif
}

// oneDNN 2.6 implements bf16 matmul only on AVX-512 cores; elsewhere (an
// AVX2-only EPYC, say) the primitive descriptor is "unimplemented". Ask it
// once with a tiny product, and widen bf16 operands to fp32 when it says no.
int pz_cpu_gemm_bf16_native(void) {
#if defined(PZ_USE_DNNL)
    static int native = -1;
    if (native >= 0) return native;
    int ok = 0;
    dnnl_engine_t eng = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_memory_desc_t amd, bmd, cmd;
    dnnl_dims_t ad = {16, 16}, as = {16, 1}, cs = {16, 1};
    dnnl_matmul_desc_t md;
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) == dnnl_success &&
        dnnl_memory_desc_init_by_strides(&amd, 2, ad, dnnl_bf16, as) == dnnl_success &&
        dnnl_memory_desc_init_by_strides(&bmd, 2, ad, dnnl_bf16, as) == dnnl_success &&
        dnnl_memory_desc_init_by_strides(&cmd, 2, ad, dnnl_f32, cs) == dnnl_success &&
        dnnl_matmul_desc_init(&md, &amd, &bmd, NULL, &cmd) == dnnl_success &&
        dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL) == dnnl_success)
        ok = 1;
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (eng) dnnl_engine_destroy(eng);
    native = ok;
    return native;
#else
    return 0;
#endif
}

int pz_cpu_gemm_threads(const pz_cpu_gm *g) { return g->n_threads; }

pz_cpu_gm *pz_cpu_gemm_create(int n_threads, char *err) {
    pz_cpu_gm *g = calloc(1, sizeof *g);
    if (!g) {
        pz_kerr(err, "gemm: out of memory");
        return NULL;
    }
    g->n_threads = n_threads > 0 ? n_threads : omp_get_num_procs();
#if defined(PZ_USE_DNNL)
    if (dnnl_engine_create(&g->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&g->stream, g->eng, dnnl_stream_default_flags) != dnnl_success) {
        pz_kerr(err, "gemm: oneDNN engine or stream creation failed");
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
    free(g->a.p);
    free(g->b.p);
    free(g);
}

// s grown to at least n bytes (contents lost), or NULL with err filled.
static void *scratch_get(scratch *s, size_t n, char *err) {
    if (n <= s->bytes) return s->p;
    void *q = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!q) {
        pz_kerr(err, "gemm: out of memory for %zu bytes of scratch", n);
        return NULL;
    }
    free(s->p);
    s->p = q;
    s->bytes = n;
    return q;
}

// rows x cols fp32 (rows ld apart) rounded to bf16 into s, compact: as bf16
// for a bf16 product (dt PZ_DT_BF16), else as the rounded fp32 values
// (exact). Returns the copy, or NULL with err filled.
static const void *round_bf16(pz_cpu_gm *g, scratch *s, const float *src, int rows, int cols, int ld,
                              pz_dt dt, char *err) {
    void *d = scratch_get(s, (size_t)rows * cols * (dt == PZ_DT_BF16 ? 2 : 4), err);
    if (d) round_rows(d, src, rows, cols, ld, dt, g->n_threads);
    return d;
}

// ---- one library call: A and B both of type dt (fp32 only for OpenBLAS) --------
#if defined(PZ_USE_DNNL)
#define DN(call, what)                                                                   \
    do {                                                                                 \
        dnnl_status_t st_ = (call);                                                      \
        if (st_ != dnnl_success) {                                                       \
            pz_kerr(err, "gemm: oneDNN %s failed (status %d) at %s:%d", what, (int)st_,  \
                    __FILE__, __LINE__);                                                 \
            goto fail;                                                                   \
        }                                                                                \
    } while (0)

static gemm_entry *dnnl_entry(pz_cpu_gm *g, int ta, int tb, int M, int N, int K, int lda,
                              int ldb, int ldc, pz_dt dt, int acc, char *err) {
    for (int i = 0; i < GEMM_CACHE; i++) {
        gemm_entry *e = &g->cache[i];
        if (e->used && e->ta == ta && e->tb == tb && e->M == M && e->N == N && e->K == K &&
            e->lda == lda && e->ldb == ldb && e->ldc == ldc && e->dt == (int)dt && e->acc == acc)
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
    dnnl_data_type_t ddt = dt == PZ_DT_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t amd, bmd, cmd;
    dnnl_dims_t ad = {M, K}, as = {ta ? 1 : lda, ta ? lda : 1};
    dnnl_dims_t bd = {K, N}, bs = {tb ? 1 : ldb, tb ? ldb : 1};
    dnnl_dims_t cd = {M, N}, cs = {ldc, 1};
    DN(dnnl_memory_desc_init_by_strides(&amd, 2, ad, ddt, as), "A desc");
    DN(dnnl_memory_desc_init_by_strides(&bmd, 2, bd, ddt, bs), "B desc");
    DN(dnnl_memory_desc_init_by_strides(&cmd, 2, cd, dnnl_f32, cs), "C desc");
    dnnl_matmul_desc_t md;
    DN(dnnl_matmul_desc_init(&md, &amd, &bmd, NULL, &cmd), "matmul desc");
    DN(dnnl_primitive_attr_create(&attr), "attr");
    if (acc) {  // C += through a sum post-op
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
    e->lda = lda, e->ldb = ldb, e->ldc = ldc, e->dt = (int)dt, e->acc = acc;
    return e;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (po) dnnl_post_ops_destroy(po);
    entry_clear(e);
    return NULL;
}
#endif

static int lib_gemm(pz_cpu_gm *g, int ta, int tb, int M, int N, int K, const void *A, int lda,
                    const void *B, int ldb, float *C, int ldc, int acc, pz_dt dt, char *err) {
#if defined(PZ_USE_DNNL)
    gemm_entry *e = dnnl_entry(g, ta, tb, M, N, K, lda, ldb, ldc, dt, acc, err);
    if (!e) return -1;
    DN(dnnl_memory_set_data_handle(e->a, (void *)A), "set A");
    DN(dnnl_memory_set_data_handle(e->b, (void *)B), "set B");
    DN(dnnl_memory_set_data_handle(e->c, C), "set C");
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    DN(dnnl_primitive_execute(e->prim, g->stream, 3, args), "execute");
    DN(dnnl_stream_wait(g->stream), "stream wait");
    return 0;
fail:
    return -1;
#else
    (void)g, (void)dt, (void)err;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
    return 0;
#endif
}

// ---- the product ----------------------------------------------------------------
int pz_cpu_gemm_ex(pz_cpu_gm *g, int ta, int tb, int M, int N, int K, const float *A, int lda,
                   const void *B, pz_dt bt, int ldb, float *C, int ldc, int accumulate,
                   pz_dt prec, char *err) {
    if (M < 0 || N < 0 || K < 0 || ldc < N || lda < (ta ? M : K) || ldb < (tb ? K : N) ||
        (prec != PZ_DT_F32 && prec != PZ_DT_BF16) || (bt != PZ_DT_F32 && bt != PZ_DT_BF16))
        return pz_kerr(err, "gemm: bad shape M=%d N=%d K=%d ta=%d tb=%d lda=%d ldb=%d ldc=%d prec=%d bt=%d",
                       M, N, K, ta, tb, lda, ldb, ldc, (int)prec, (int)bt);
    if (M == 0 || N == 0) return 0;
    if (K == 0) {
        if (!accumulate)
            for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, sizeof(float) * (size_t)N);
        return 0;
    }
    if (omp_get_max_threads() != g->n_threads) omp_set_num_threads(g->n_threads);
#if defined(PZ_USE_OPENBLAS)
    openblas_set_num_threads(g->n_threads);  // the pthread build keeps its own pool
#endif
    // dt: the type both operands have when they reach the library.
    pz_dt dt = pz_cpu_gemm_bf16_native() ? prec : PZ_DT_F32;
    const void *a = A, *b = B;
    if (prec == PZ_DT_BF16) {  // round the fp32 operands
        if (!(a = round_bf16(g, &g->a, A, ta ? K : M, ta ? M : K, lda, dt, err))) return -1;
        lda = ta ? M : K;
        if (bt == PZ_DT_F32) {
            if (!(b = round_bf16(g, &g->b, B, tb ? N : K, tb ? K : N, ldb, dt, err))) return -1;
            ldb = tb ? K : N, bt = dt;
        }
    }
    if (bt == dt) return lib_gemm(g, ta, tb, M, N, K, a, lda, b, ldb, C, ldc, accumulate, dt, err);
    // B stored bf16 into an fp32 product: widen it a tile of N (~4 MiB) at a time.
    int nt = (int)((4u << 20) / ((size_t)K * 4));
    if (nt < 16) nt = 16;
    if (nt > N) nt = N;
    float *bf = scratch_get(&g->b, (size_t)nt * K * 4, err);
    if (!bf) return -1;
    for (int n0 = 0; n0 < N; n0 += nt) {
        int nn = N - n0 < nt ? N - n0 : nt;
        if (tb)
            widen(bf, (const uint16_t *)b + (size_t)n0 * ldb, nn, K, ldb);
        else
            widen(bf, (const uint16_t *)b + n0, K, nn, ldb);
        if (lib_gemm(g, ta, tb, M, nn, K, a, lda, bf, tb ? K : nn, C + n0, ldc, accumulate,
                     PZ_DT_F32, err))
            return -1;
    }
    return 0;
}

int pz_cpu_gemm(pz_cpu_gm *g, int ta, int tb, int M, int N, int K, const float *A, int lda,
                const float *B, int ldb, float *C, int ldc, int accumulate, pz_dt prec, char *err) {
    return pz_cpu_gemm_ex(g, ta, tb, M, N, K, A, lda, B, PZ_DT_F32, ldb, C, ldc, accumulate, prec,
                          err);
}
