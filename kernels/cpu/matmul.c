// matmul.c — see matmul.h. The oneDNN path describes W[N,K] (row-major) as a
// K x N matrix with strides (1, K), so no weight copy or transpose is made.
#include "matmul.h"
#include "gemv.h"

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
#endif

static int kerr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static int kerr(char *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, PZ_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

// ---- fp32 -> bf16 -------------------------------------------------------------
static inline uint16_t f32_to_bf16_1(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
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
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16_1(src[i]);
}

// ---- the handle ---------------------------------------------------------------
#define MM_CACHE 96

typedef struct {
    int used;
    int M, N, K, ldx, ldy, wt, acc;
#if defined(PZ_USE_DNNL)
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, dst;
#endif
} mm_entry;

struct pz_cpu_mm {
    int n_threads;
    uint16_t *xbf;        // bf16 copy of the activations, grown on demand
    size_t xbf_cap;       // elements
    float *xperm;         // permuted activations for the small-M bf16 kernel, grown on demand
    size_t xperm_cap;     // floats
    float *wf32;          // OpenBLAS: a tile of bf16 weights widened to fp32
    size_t wf32_cap;      // floats
    int next_evict;
    mm_entry cache[MM_CACHE];
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
#elif defined(PZ_USE_OPENBLAS)
    return "OpenBLAS";
#else
    return "none";
#endif
}

static void set_threads(pz_cpu_mm *mm) {
    if (omp_get_max_threads() != mm->n_threads) omp_set_num_threads(mm->n_threads);
#if defined(PZ_USE_OPENBLAS)
    openblas_set_num_threads(mm->n_threads);  // the pthread build keeps its own pool
#endif
}

pz_cpu_mm *pz_cpu_matmul_create(int n_threads, char *err) {
    pz_cpu_mm *mm = calloc(1, sizeof *mm);
    if (!mm) {
        kerr(err, "matmul: out of memory");
        return NULL;
    }
    mm->n_threads = n_threads > 0 ? n_threads : omp_get_num_procs();
#if defined(PZ_USE_DNNL)
    if (dnnl_engine_create(&mm->eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&mm->stream, mm->eng, dnnl_stream_default_flags) != dnnl_success) {
        kerr(err, "matmul: oneDNN engine or stream creation failed");
        pz_cpu_matmul_free(mm);
        return NULL;
    }
#endif
    return mm;
}

static void entry_clear(mm_entry *e) {
#if defined(PZ_USE_DNNL)
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->src) dnnl_memory_destroy(e->src);
    if (e->wei) dnnl_memory_destroy(e->wei);
    if (e->dst) dnnl_memory_destroy(e->dst);
#endif
    memset(e, 0, sizeof *e);
}

void pz_cpu_matmul_free(pz_cpu_mm *mm) {
    if (!mm) return;
    for (int i = 0; i < MM_CACHE; i++)
        if (mm->cache[i].used) entry_clear(&mm->cache[i]);
#if defined(PZ_USE_DNNL)
    if (mm->stream) dnnl_stream_destroy(mm->stream);
    if (mm->eng) dnnl_engine_destroy(mm->eng);
#endif
    free(mm->xbf);
    free(mm->xperm);
    free(mm->wf32);
    free(mm);
}

#if defined(PZ_USE_DNNL)
static int ensure_xbf(pz_cpu_mm *mm, size_t n, char *err) {
    if (n <= mm->xbf_cap) return 0;
    uint16_t *p = aligned_alloc(64, ((n * 2 + 63) / 64) * 64);
    if (!p) return kerr(err, "matmul: out of memory for %zu bf16 activations", n);
    free(mm->xbf);
    mm->xbf = p;
    mm->xbf_cap = n;
    return 0;
}
#endif

#if defined(PZ_USE_OPENBLAS)
static int ensure_wf32(pz_cpu_mm *mm, size_t n, char *err) {
    if (n <= mm->wf32_cap) return 0;
    float *p = aligned_alloc(64, ((n * 4 + 63) / 64) * 64);
    if (!p) return kerr(err, "matmul: out of memory for %zu fp32 weights", n);
    free(mm->wf32);
    mm->wf32 = p;
    mm->wf32_cap = n;
    return 0;
}
#endif

int pz_cpu_matmul_bf16_rounds_activations(void) {
#if defined(PZ_USE_DNNL)
    return 1;
#else
    return 0;
#endif
}

#if defined(PZ_USE_DNNL)
#define DN(call, what)                                                                   \
    do {                                                                                 \
        dnnl_status_t st_ = (call);                                                      \
        if (st_ != dnnl_success) {                                                       \
            kerr(err, "matmul: oneDNN %s failed (status %d) at %s:%d", what, (int)st_,   \
                 __FILE__, __LINE__);                                                    \
            goto fail;                                                                   \
        }                                                                                \
    } while (0)

static mm_entry *dnnl_entry(pz_cpu_mm *mm, int M, int N, int K, int ldx, int ldy, pz_dt wt,
                            int acc, char *err) {
    for (int i = 0; i < MM_CACHE; i++) {
        mm_entry *e = &mm->cache[i];
        if (e->used && e->M == M && e->N == N && e->K == K && e->ldx == ldx && e->ldy == ldy &&
            e->wt == (int)wt && e->acc == acc)
            return e;
    }
    mm_entry *e = NULL;
    for (int i = 0; i < MM_CACHE && !e; i++)
        if (!mm->cache[i].used) e = &mm->cache[i];
    if (!e) {
        e = &mm->cache[mm->next_evict];
        mm->next_evict = (mm->next_evict + 1) % MM_CACHE;
        entry_clear(e);
    }
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_data_type_t dt = wt == PZ_DT_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t smd, wmd, dmd;
    dnnl_dims_t sd = {M, K}, ss = {wt == PZ_DT_BF16 ? K : ldx, 1};
    dnnl_dims_t wd = {K, N}, ws = {1, K};
    dnnl_dims_t dd = {M, N}, ds = {ldy, 1};
    DN(dnnl_memory_desc_init_by_strides(&smd, 2, sd, dt, ss), "src desc");
    DN(dnnl_memory_desc_init_by_strides(&wmd, 2, wd, dt, ws), "weights desc");
    DN(dnnl_memory_desc_init_by_strides(&dmd, 2, dd, dnnl_f32, ds), "dst desc");
    dnnl_matmul_desc_t md;
    DN(dnnl_matmul_desc_init(&md, &smd, &wmd, NULL, &dmd), "matmul desc");
    DN(dnnl_primitive_attr_create(&attr), "attr");
    if (acc) {
        DN(dnnl_post_ops_create(&po), "post ops");
        DN(dnnl_post_ops_append_sum(po, 1.0f), "sum post op");
        DN(dnnl_primitive_attr_set_post_ops(attr, po), "set post ops");
    }
    DN(dnnl_primitive_desc_create(&pd, &md, attr, mm->eng, NULL), "primitive desc");
    DN(dnnl_primitive_create(&e->prim, pd), "primitive");
    DN(dnnl_memory_create(&e->src, &smd, mm->eng, DNNL_MEMORY_NONE), "src memory");
    DN(dnnl_memory_create(&e->wei, &wmd, mm->eng, DNNL_MEMORY_NONE), "weights memory");
    DN(dnnl_memory_create(&e->dst, &dmd, mm->eng, DNNL_MEMORY_NONE), "dst memory");
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    if (po) dnnl_post_ops_destroy(po);
    e->used = 1;
    e->M = M, e->N = N, e->K = K, e->ldx = ldx, e->ldy = ldy, e->wt = (int)wt, e->acc = acc;
    return e;
fail:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (po) dnnl_post_ops_destroy(po);
    entry_clear(e);
    return NULL;
}
#endif

int pz_cpu_matmul_lib(pz_cpu_mm *mm, float *y, int ldy, const float *x, int ldx, const void *w,
                      pz_dt wt, int M, int N, int K, int accumulate, char *err) {
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0 || ldx < K || ldy < N) return kerr(err, "matmul: bad shape M=%d N=%d K=%d ldx=%d ldy=%d", M, N, K, ldx, ldy);
    set_threads(mm);
#if defined(PZ_USE_DNNL)
    const void *xin = x;
    if (wt == PZ_DT_BF16) {
        if (ensure_xbf(mm, (size_t)M * K, err)) return -1;
        for (int m = 0; m < M; m++) pz_cpu_f32_to_bf16(x + (size_t)m * ldx, mm->xbf + (size_t)m * K, (size_t)K);
        xin = mm->xbf;
    }
    mm_entry *e = dnnl_entry(mm, M, N, K, ldx, ldy, wt, accumulate, err);
    if (!e) return -1;
    DN(dnnl_memory_set_data_handle(e->src, (void *)xin), "set src");
    DN(dnnl_memory_set_data_handle(e->wei, (void *)w), "set weights");
    DN(dnnl_memory_set_data_handle(e->dst, y), "set dst");
    dnnl_exec_arg_t args[3] = {
        {DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->wei}, {DNNL_ARG_DST, e->dst}};
    DN(dnnl_primitive_execute(e->prim, mm->stream, 3, args), "execute");
    DN(dnnl_stream_wait(mm->stream), "stream wait");
    return 0;
fail:
    return -1;
#elif defined(PZ_USE_OPENBLAS)
    float beta = accumulate ? 1.0f : 0.0f;
    if (wt == PZ_DT_F32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, ldx,
                    (const float *)w, K, beta, y, ldy);
        return 0;
    }
    // Debian's OpenBLAS has no cblas_sbgemm: widen bf16 weights to fp32 a
    // tile of rows at a time (~4 MiB) and run sgemm on each tile.
    int nt = (int)((4u << 20) / ((size_t)K * 4));
    if (nt < 16) nt = 16;
    if (nt > N) nt = N;
    if (ensure_wf32(mm, (size_t)nt * K, err)) return -1;
    for (int n0 = 0; n0 < N; n0 += nt) {
        int nn = N - n0 < nt ? N - n0 : nt;
        const uint16_t *wb = (const uint16_t *)w + (size_t)n0 * K;
        for (size_t i = 0; i < (size_t)nn * K; i++) {
            uint32_t u = (uint32_t)wb[i] << 16;
            memcpy(&mm->wf32[i], &u, 4);
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, nn, K, 1.0f, x, ldx, mm->wf32, K, beta,
                    y + n0, ldy);
    }
    return 0;
#else
    pz_cpu_gemv(y, ldy, x, ldx, w, wt, M, N, K, accumulate, mm->n_threads, NULL);
    return 0;
#endif
}

int pz_cpu_matmul(pz_cpu_mm *mm, float *y, int ldy, const float *x, int ldx, const void *w,
                  pz_dt wt, int M, int N, int K, int accumulate, char *err) {
    if (M <= 0 || N <= 0) return 0;
    if (K <= 0 || ldx < K || ldy < N) return kerr(err, "matmul: bad shape M=%d N=%d K=%d ldx=%d ldy=%d", M, N, K, ldx, ldy);
    if (M <= PZ_GEMV_MAX_M) {
        float *scratch = NULL;
        if (wt == PZ_DT_BF16) {
            size_t need = pz_cpu_gemv_scratch_floats(M, K);
            if (need > mm->xperm_cap) {  // grows to the largest shape once, then never again
                float *p = aligned_alloc(64, (need * 4 + 63) / 64 * 64);
                if (p) {
                    free(mm->xperm);
                    mm->xperm = p;
                    mm->xperm_cap = need;
                }
            }
            if (need <= mm->xperm_cap) scratch = mm->xperm;
        }
        pz_cpu_gemv(y, ldy, x, ldx, w, wt, M, N, K, accumulate, mm->n_threads, scratch);
        return 0;
    }
    return pz_cpu_matmul_lib(mm, y, ldy, x, ldx, w, wt, M, N, K, accumulate, err);
}
