// gemv_fp8.c — see gemv.h: the small-M product with e4m3 weights. The
// weight bytes are widened in registers and never stored wider: an e4m3
// code s.eeee.mmm, sign-extended to 16 bits, shifted left by 7 and with bit
// 14 cleared, is the fp16 pattern s.0eeee.mmm0000000, whose value is the
// e4m3 value / 2^8 (subnormals included: fp16's subnormal unit 2^-24 · 2^7
// is e4m3's 2^-9 / 2^8). The processor's fp16 -> fp32 conversion (F16C,
// exact) finishes the job, and the 2^8 joins the tensor scale applied once
// per output. Three integer operations and one (AVX-512) or two (AVX2)
// conversions per 16 weights; a 256-entry table gather measured slower
// (results/fp8_speed.md). NaN codes (which pz_f32_to_e4m3 makes only from
// NaN, and the model loader refuses) widen to 480 here, not NaN.
#include "gemv.h"
#include "fp8.h"
#include "vexp.h"

#include <immintrin.h>
#include <omp.h>
#include <string.h>

// Weight bytes per woken thread (see gemv.c): fp8 weights do more work per
// byte than bf16 ones, so a thread pays off for fewer of them.
#ifndef PZ_GEMV_FP8_BYTES_PER_THREAD
#define PZ_GEMV_FP8_BYTES_PER_THREAD (2u << 20)
#endif
#ifndef PZ_GEMV_FP8_BYTES_PER_THREAD_AVX2
#define PZ_GEMV_FP8_BYTES_PER_THREAD_AVX2 (256u << 10)
#endif

// Software prefetch distance in weight bytes (one prefetch per 64 weights).
// The rows of a product are contiguous, so this runs ahead across rows; past
// the end of the matrix it touches nothing (prefetches do not fault). On the
// AVX2 EPYC here the hardware prefetcher alone left the kernel waiting on
// DRAM: batch-1 products over one decode step's 106 M weights (2 threads,
// per-product best of 15) took 8.5-8.7 ms without, 7.1 / 6.5 / 5.9 / 5.7 ms
// with 512 / 1024 / 2048 / 4096 bytes (results/fp8_speed.md).
#ifndef PZ_GEMV_FP8_PREFETCH
#define PZ_GEMV_FP8_PREFETCH 4096
#endif
static int prefetch_bytes = PZ_GEMV_FP8_PREFETCH;  // pz_cpu_gemv_e4m3_set_prefetch

void pz_cpu_gemv_e4m3_set_prefetch(int bytes) { prefetch_bytes = bytes < 0 ? PZ_GEMV_FP8_PREFETCH : bytes; }

static inline void store_out(float *y, int ldy, int j, int n, float s, float sc, const float *ch, int acc) {
    float v = s * (ch ? sc * ch[n] : sc);
    float *yp = y + (size_t)j * ldy + n;
    *yp = acc ? *yp + v : v;
}

// ---- plain C: the decode table ----------------------------------------------------
static void rows_ref(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int M, int n0,
                     int n1, int K, float scale, const float *ch, int acc) {
    const float *tab = pz_e4m3_table();
    for (int n = n0; n < n1; n++) {
        const uint8_t *wr = w + (size_t)n * K;
        for (int m = 0; m < M; m++) {
            const float *xr = x + (size_t)m * ldx;
            float s = 0;
            for (int k = 0; k < K; k++) s += xr[k] * tab[wr[k]];
            store_out(y, ldy, m, n, s, scale, ch, acc);
        }
    }
}

// ---- AVX2 + FMA + F16C ------------------------------------------------------------
#define T256F __attribute__((target("avx2,fma,f16c")))

// 16 codes -> 16 fp16 patterns (values / 2^8).
T256F static inline __m256i e4m3_h16_avx2(__m128i b) {
    __m256i v = _mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7);
    return _mm256_and_si256(v, _mm256_set1_epi16((short)0xBFFF));
}

// One weight row against MB <= 3 activation rows. 16 columns per chunk; the
// two 8-column halves of chunk c go to accumulators 2(c%2) and 2(c%2)+1
// whatever MB is, so a row's result does not depend on its batch.
T256F static inline __attribute__((always_inline)) void
row_avx2(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int n, int K, float sc,
         const float *ch, int acc, const int MB) {
    __m256 a[3][4];
#pragma GCC unroll 3
    for (int j = 0; j < 3; j++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) a[j][c] = _mm256_setzero_ps();
    const uint8_t *wr = w + (size_t)n * K;
    const int pf = prefetch_bytes;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        _mm_prefetch((const char *)(wr + k + pf), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i h = e4m3_h16_avx2(_mm_loadu_si128((const __m128i *)(wr + k + 16 * c)));
            __m256 w0 = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
            __m256 w1 = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
#pragma GCC unroll 3
            for (int j = 0; j < MB; j++) {
                const float *xj = x + (size_t)j * ldx + k + 16 * c;
                a[j][2 * (c & 1)] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xj), a[j][2 * (c & 1)]);
                a[j][2 * (c & 1) + 1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xj + 8), a[j][2 * (c & 1) + 1]);
            }
        }
    }
    for (; k + 32 <= K; k += 32) {  // at most once
#pragma GCC unroll 2
        for (int c = 0; c < 2; c++) {
            __m256i h = e4m3_h16_avx2(_mm_loadu_si128((const __m128i *)(wr + k + 16 * c)));
            __m256 w0 = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
            __m256 w1 = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
#pragma GCC unroll 3
            for (int j = 0; j < MB; j++) {
                const float *xj = x + (size_t)j * ldx + k + 16 * c;
                a[j][2 * c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xj), a[j][2 * c]);
                a[j][2 * c + 1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xj + 8), a[j][2 * c + 1]);
            }
        }
    }
    for (int c = 0; k < K; k += 16, c ^= 1) {
        uint8_t tail[16] = {0};
        int r = K - k < 16 ? K - k : 16;
        memcpy(tail, wr + k, (size_t)r);
        __m256i h = e4m3_h16_avx2(_mm_loadu_si128((const __m128i *)tail));
        __m256 w0 = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
        __m256 w1 = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
        __m256i m0 = pz_lanes256(r), m1 = pz_lanes256(r - 8);
#pragma GCC unroll 3
        for (int j = 0; j < MB; j++) {
            const float *xj = x + (size_t)j * ldx + k;
            __m256 p0 = _mm256_mul_ps(w0, _mm256_maskload_ps(xj, m0));
            __m256 p1 = _mm256_mul_ps(w1, _mm256_maskload_ps(xj + 8, m1));
            if (c == 0) {
                a[j][0] = _mm256_add_ps(a[j][0], p0);
                a[j][1] = _mm256_add_ps(a[j][1], p1);
            } else {
                a[j][2] = _mm256_add_ps(a[j][2], p0);
                a[j][3] = _mm256_add_ps(a[j][3], p1);
            }
        }
    }
#pragma GCC unroll 3
    for (int j = 0; j < MB; j++)
        store_out(y, ldy, j, n,
                  pz_hsum256(_mm256_add_ps(_mm256_add_ps(a[j][0], a[j][1]), _mm256_add_ps(a[j][2], a[j][3]))),
                  sc, ch, acc);
}

T256F static void rows_avx2(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int M, int n0,
                            int n1, int K, float sc, const float *ch, int acc) {
    for (int m = 0; m < M; m += 3) {
        int mb = M - m < 3 ? M - m : 3;
        const float *xm = x + (size_t)m * ldx;
        float *ym = y + (size_t)m * ldy;
        for (int n = n0; n < n1; n++) {
            switch (mb) {
            case 1: row_avx2(ym, ldy, xm, ldx, w, n, K, sc, ch, acc, 1); break;
            case 2: row_avx2(ym, ldy, xm, ldx, w, n, K, sc, ch, acc, 2); break;
            default: row_avx2(ym, ldy, xm, ldx, w, n, K, sc, ch, acc, 3); break;
            }
        }
    }
}

// The alternative measured against the shift above: 8 codes at a time
// through a gather from the 256-entry decode table (values not / 2^8).
T256F static void rows_avx2_gather(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int M,
                                   int n0, int n1, int K, float sc, const float *ch, int acc) {
    const float *tab = pz_e4m3_table();
    for (int n = n0; n < n1; n++) {
        const uint8_t *wr = w + (size_t)n * K;
        for (int m = 0; m < M; m++) {
            const float *xr = x + (size_t)m * ldx;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            int k = 0;
            for (; k + 16 <= K; k += 16) {
                __m128i b = _mm_loadu_si128((const __m128i *)(wr + k));
                __m256 w0 = _mm256_i32gather_ps(tab, _mm256_cvtepu8_epi32(b), 4);
                __m256 w1 = _mm256_i32gather_ps(tab, _mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)), 4);
                a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr + k), a0);
                a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr + k + 8), a1);
            }
            float s = pz_hsum256(_mm256_add_ps(a0, a1));
            for (; k < K; k++) s += xr[k] * tab[wr[k]];
            store_out(y, ldy, m, n, s, sc / 256.0f, ch, acc);  // sc carries the 2^8 of the shift path
        }
    }
}

// ---- AVX-512 (+ F16C's 512-bit form, part of AVX512F) ---------------------------------
#define T512F __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))

T512F static inline __m512 e4m3_f32_avx512(__m128i b) {
    __m256i v = _mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7);
    return _mm512_cvtph_ps(_mm256_and_si256(v, _mm256_set1_epi16((short)0xBFFF)));
}

// One weight row against MB <= 4 activation rows; chunk c of 16 columns
// goes to accumulator c % 4 whatever MB is.
T512F static inline __attribute__((always_inline)) void
row_avx512(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int n, int K, float sc,
           const float *ch, int acc, const int MB) {
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) a[j][c] = _mm512_setzero_ps();
    const uint8_t *wr = w + (size_t)n * K;
    const int pf = prefetch_bytes;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        _mm_prefetch((const char *)(wr + k + pf), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512 wv = e4m3_f32_avx512(_mm_loadu_si128((const __m128i *)(wr + k + 16 * c)));
#pragma GCC unroll 4
            for (int j = 0; j < MB; j++)
                a[j][c] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + (size_t)j * ldx + k + 16 * c), a[j][c]);
        }
    }
    for (int c = 0; k < K; k += 16, c++) {
        __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 wv = e4m3_f32_avx512(_mm_maskz_loadu_epi8(mk, wr + k));
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) {
            __m512 p = _mm512_mul_ps(wv, _mm512_maskz_loadu_ps(mk, x + (size_t)j * ldx + k));
            switch (c) {
            case 0: a[j][0] = _mm512_add_ps(a[j][0], p); break;
            case 1: a[j][1] = _mm512_add_ps(a[j][1], p); break;
            case 2: a[j][2] = _mm512_add_ps(a[j][2], p); break;
            default: a[j][3] = _mm512_add_ps(a[j][3], p); break;
            }
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < MB; j++) {
        __m512 t = _mm512_add_ps(_mm512_add_ps(a[j][0], a[j][1]), _mm512_add_ps(a[j][2], a[j][3]));
        store_out(y, ldy, j, n, _mm512_reduce_add_ps(t), sc, ch, acc);
    }
}

T512F static void rows_avx512(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int M,
                              int n0, int n1, int K, float sc, const float *ch, int acc) {
    for (int m = 0; m < M; m += 4) {
        int mb = M - m < 4 ? M - m : 4;
        const float *xm = x + (size_t)m * ldx;
        float *ym = y + (size_t)m * ldy;
        for (int n = n0; n < n1; n++) {
            switch (mb) {
            case 1: row_avx512(ym, ldy, xm, ldx, w, n, K, sc, ch, acc, 1); break;
            case 2: row_avx512(ym, ldy, xm, ldx, w, n, K, sc, ch, acc, 2); break;
            case 3: row_avx512(ym, ldy, xm, ldx, w, n, K, sc, ch, acc, 3); break;
            default: row_avx512(ym, ldy, xm, ldx, w, n, K, sc, ch, acc, 4); break;
            }
        }
    }
}

static int gather_variant;  // pz_cpu_gemv_e4m3_use_gather (measurements only)

void pz_cpu_gemv_e4m3_use_gather(int on) { gather_variant = on; }

void pz_cpu_gemv_e4m3(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int M, int N,
                      int K, float scale, const float *ch_scale, int accumulate, int n_threads) {
    if (M <= 0 || N <= 0) return;
    pz_isa isa = pz_cpu_isa();
    if (isa >= PZ_ISA_AVX2 && !__builtin_cpu_supports("f16c")) isa = PZ_ISA_PLAIN;
    int nblk = (N + 3) / 4;
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if (nt > nblk) nt = nblk;
    size_t wbytes = (size_t)N * (size_t)K;
    size_t per = isa >= PZ_ISA_AVX512 ? PZ_GEMV_FP8_BYTES_PER_THREAD : PZ_GEMV_FP8_BYTES_PER_THREAD_AVX2;
    if ((size_t)nt > wbytes / per) nt = (int)(wbytes / per);
    if (nt < 1) nt = 1;
    const float sc = scale * 256.0f;  // the vector paths' fp16 values are e4m3 / 2^8
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int b0 = (int)((long)nblk * t / T), b1 = (int)((long)nblk * (t + 1) / T);
        int n0 = b0 * 4, n1 = b1 * 4 < N ? b1 * 4 : N;
        if (n0 < n1) {
            if (isa >= PZ_ISA_AVX512)
                rows_avx512(y, ldy, x, ldx, w, M, n0, n1, K, sc, ch_scale, accumulate);
            else if (isa == PZ_ISA_AVX2 && gather_variant)
                rows_avx2_gather(y, ldy, x, ldx, w, M, n0, n1, K, sc, ch_scale, accumulate);
            else if (isa == PZ_ISA_AVX2)
                rows_avx2(y, ldy, x, ldx, w, M, n0, n1, K, sc, ch_scale, accumulate);
            else
                rows_ref(y, ldy, x, ldx, w, M, n0, n1, K, scale, ch_scale, accumulate);
        }
    }
}
