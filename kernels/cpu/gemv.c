// gemv.c — see gemv.h. The AVX-512 kernel takes 4 weight rows at a time
// and up to 4 activation rows, 16 accumulators in registers, so every weight
// byte is loaded once per 4 activation rows and every activation load is
// reused for 4 weight rows.
#include "gemv.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

int pz_cpu_have_avx512(void) {
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl");
    }
    return have;
}

int pz_cpu_have_avx512_bf16(void) {
    static int have = -1;
    if (have < 0) {
        // cpuid leaf 7 subleaf 1, eax bit 5 = AVX512_BF16.
        unsigned a = 0, b = 0, c = 0, d = 0;
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(1));
        have = pz_cpu_have_avx512() && ((a >> 5) & 1);
    }
    return have;
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// ---- plain C ---------------------------------------------------------------
static void gemv_rows_ref(float *y, int ldy, const float *x, int ldx, const void *w, pz_dt wt,
                          int M, int n0, int n1, int K, int acc) {
    for (int n = n0; n < n1; n++) {
        for (int m = 0; m < M; m++) {
            const float *xr = x + (size_t)m * ldx;
            float s = 0;
            if (wt == PZ_DT_F32) {
                const float *wr = (const float *)w + (size_t)n * K;
                for (int k = 0; k < K; k++) s += xr[k] * wr[k];
            } else {
                const uint16_t *wr = (const uint16_t *)w + (size_t)n * K;
                for (int k = 0; k < K; k++) s += xr[k] * bf16_to_f32(wr[k]);
            }
            float *yp = y + (size_t)m * ldy + n;
            *yp = acc ? *yp + s : s;
        }
    }
}

// ---- AVX-512 ----------------------------------------------------------------
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

T512 static inline __m512 load_w(const void *w, pz_dt wt, size_t off, __mmask16 mk) {
    if (wt == PZ_DT_F32) return _mm512_maskz_loadu_ps(mk, (const float *)w + off);
    __m256i h = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + off);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// NB weight rows (n..n+NB-1) x MB activation rows (m..m+MB-1).
T512 static inline __attribute__((always_inline)) void
gemv_tile(float *y, int ldy, const float *x, int ldx, const void *w, pz_dt wt, int n, int K,
          int acc, const int NB, const int MB) {
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) a[i][j] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[4], xv[4];
#pragma GCC unroll 4
        for (int i = 0; i < NB; i++) wv[i] = load_w(w, wt, (size_t)(n + i) * K + k, 0xFFFF);
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) xv[j] = _mm512_loadu_ps(x + (size_t)j * ldx + k);
#pragma GCC unroll 4
        for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
            for (int j = 0; j < MB; j++) a[i][j] = _mm512_fmadd_ps(wv[i], xv[j], a[i][j]);
    }
    if (k < K) {
        __mmask16 mk = (__mmask16)((1u << (K - k)) - 1);
        __m512 wv[4], xv[4];
#pragma GCC unroll 4
        for (int i = 0; i < NB; i++) wv[i] = load_w(w, wt, (size_t)(n + i) * K + k, mk);
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) xv[j] = _mm512_maskz_loadu_ps(mk, x + (size_t)j * ldx + k);
#pragma GCC unroll 4
        for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
            for (int j = 0; j < MB; j++) a[i][j] = _mm512_fmadd_ps(wv[i], xv[j], a[i][j]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) {
            float s = _mm512_reduce_add_ps(a[i][j]);
            float *yp = y + (size_t)j * ldy + n + i;
            *yp = acc ? *yp + s : s;
        }
}

T512 static void gemv_rows_avx512(float *y, int ldy, const float *x, int ldx, const void *w,
                                  pz_dt wt, int M, int n0, int n1, int K, int acc) {
    for (int m = 0; m < M; m += 4) {
        int mb = M - m < 4 ? M - m : 4;
        const float *xm = x + (size_t)m * ldx;
        float *ym = y + (size_t)m * ldy;
        int n = n0;
        for (; n + 4 <= n1; n += 4) {
            switch (mb) {
            case 1: gemv_tile(ym, ldy, xm, ldx, w, wt, n, K, acc, 4, 1); break;
            case 2: gemv_tile(ym, ldy, xm, ldx, w, wt, n, K, acc, 4, 2); break;
            case 3: gemv_tile(ym, ldy, xm, ldx, w, wt, n, K, acc, 4, 3); break;
            default: gemv_tile(ym, ldy, xm, ldx, w, wt, n, K, acc, 4, 4); break;
            }
        }
        for (; n < n1; n++) {
            switch (mb) {
            case 1: gemv_tile(ym, ldy, xm, ldx, w, wt, n, K, acc, 1, 1); break;
            case 2: gemv_tile(ym, ldy, xm, ldx, w, wt, n, K, acc, 1, 2); break;
            case 3: gemv_tile(ym, ldy, xm, ldx, w, wt, n, K, acc, 1, 3); break;
            default: gemv_tile(ym, ldy, xm, ldx, w, wt, n, K, acc, 1, 4); break;
            }
        }
    }
}

void pz_cpu_gemv(float *y, int ldy, const float *x, int ldx, const void *w, pz_dt wt,
                 int M, int N, int K, int accumulate, int n_threads) {
    if (M <= 0 || N <= 0) return;
    int avx = pz_cpu_have_avx512();
    // Split N into per-thread ranges of whole 4-row blocks.
    int nblk = (N + 3) / 4;
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if (nt > nblk) nt = nblk;
    // Small products are not worth waking threads for.
    if ((size_t)N * (size_t)K < 16384) nt = 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int b0 = (int)((long)nblk * t / T), b1 = (int)((long)nblk * (t + 1) / T);
        int n0 = b0 * 4, n1 = b1 * 4 < N ? b1 * 4 : N;
        if (n0 < n1) {
            if (avx)
                gemv_rows_avx512(y, ldy, x, ldx, w, wt, M, n0, n1, K, accumulate);
            else
                gemv_rows_ref(y, ldy, x, ldx, w, wt, M, n0, n1, K, accumulate);
        }
    }
}
