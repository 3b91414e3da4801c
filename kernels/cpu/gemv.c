// gemv.c — see gemv.h. The vector kernels walk W front to back, one row at
// a time against up to 4 (AVX-512) or 3 (AVX2, 16 vector registers)
// activation rows, so every weight byte is loaded once per block of
// activation rows, with 4 accumulators per activation row.
#include "gemv.h"
#include "vexp.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

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
// Weight bytes a product must stream before a second thread is woken for
// it, by kernel level. AVX-512 machines measured earlier saturate memory
// from one core, so small products stay on one; on the AVX2-only EPYC here
// one core does not (fp32 decode on one core streamed ~17 GB/s): with 4 MiB, 1 MiB,
// 512 KiB and 256 KiB per thread, batch-1 decode at 16 tokens of context
// ran at 33, 48-52, 51-56, 51-55 tok/s (fp32) and 54, 66-71, 80-87, 79-91
// (bf16) (bench_engine -e, both wait policies; results/engine_vs_llama_cpp.md).
#ifndef PZ_GEMV_BYTES_PER_THREAD
#define PZ_GEMV_BYTES_PER_THREAD (4u << 20)
#endif
#ifndef PZ_GEMV_BYTES_PER_THREAD_AVX2
#define PZ_GEMV_BYTES_PER_THREAD_AVX2 (512u << 10)
#endif


T512 static inline __attribute__((always_inline)) __m512 load_w(const void *w, pz_dt wt, size_t off, __mmask16 mk) {
    if (wt == PZ_DT_F32) return _mm512_maskz_loadu_ps(mk, (const float *)w + off);
    __m256i h = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)w + off);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// One weight row n against MB activation rows. The row is read front to
// back (the whole product is one sequential stream through W, which the
// hardware prefetcher follows best); chunk c of 16 columns goes to
// accumulator c % 4 whatever MB is, so results do not depend on MB.
T512 static inline __attribute__((always_inline)) void
gemv_row(float *y, int ldy, const float *x, int ldx, const void *w, pz_dt wt, int n, int K, int acc,
         const int MB) {
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) a[j][c] = _mm512_setzero_ps();
    const size_t row = (size_t)n * K;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512 wv = load_w(w, wt, row + k + 16 * c, 0xFFFF);
#pragma GCC unroll 4
            for (int j = 0; j < MB; j++)
                a[j][c] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + (size_t)j * ldx + k + 16 * c), a[j][c]);
        }
    }
    for (int c = 0; k < K; k += 16, c++) {
        __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 wv = load_w(w, wt, row + k, mk);
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) {
            __m512 xv = _mm512_maskz_loadu_ps(mk, x + (size_t)j * ldx + k);
            switch (c) {  // chunk index (k/16) % 4 == c, as in the main loop
            case 0: a[j][0] = _mm512_fmadd_ps(wv, xv, a[j][0]); break;
            case 1: a[j][1] = _mm512_fmadd_ps(wv, xv, a[j][1]); break;
            case 2: a[j][2] = _mm512_fmadd_ps(wv, xv, a[j][2]); break;
            default: a[j][3] = _mm512_fmadd_ps(wv, xv, a[j][3]); break;
            }
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < MB; j++) {
        __m512 t = _mm512_add_ps(_mm512_add_ps(a[j][0], a[j][1]), _mm512_add_ps(a[j][2], a[j][3]));
        float s = _mm512_reduce_add_ps(t);
        float *yp = y + (size_t)j * ldy + n;
        *yp = acc ? *yp + s : s;
    }
}

// bf16 weights, 32 columns per load: the low halves of the 32-bit lanes
// (shifted up) are the even columns as fp32, the high halves (masked) the odd
// ones, so no widening shuffle is needed. xp holds each activation row
// pre-permuted to match: per 32 columns, the 16 even then the 16 odd ones,
// zero-padded to Kp = round_up(K, 32). Chunk c of 32 columns goes to
// accumulator c % 4 whatever MB is.
T512 static inline __attribute__((always_inline)) void
gemv_row_bf16eo(float *y, int ldy, const float *xp, int Kp, const uint16_t *w, int n, int K, int acc,
                const int MB) {
    __m512 a[4][4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) a[j][c] = _mm512_setzero_ps();
    const uint16_t *wr = w + (size_t)n * K;
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    int k = 0;
    for (; k + 128 <= K; k += 128) {
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i v = _mm512_loadu_si512((const void *)(wr + k + 32 * c));
            __m512 ev = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
            __m512 od = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
#pragma GCC unroll 4
            for (int j = 0; j < MB; j++) {
                const float *xj = xp + (size_t)j * Kp + k + 32 * c;
                a[j][c] = _mm512_fmadd_ps(ev, _mm512_loadu_ps(xj), a[j][c]);
                a[j][c] = _mm512_fmadd_ps(od, _mm512_loadu_ps(xj + 16), a[j][c]);
            }
        }
    }
    for (int c = 0; k < K; k += 32, c++) {
        __mmask32 mk = K - k >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (K - k)) - 1);
        __m512i v = _mm512_maskz_loadu_epi16(mk, (const void *)(wr + k));
        __m512 ev = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
        __m512 od = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) {
            const float *xj = xp + (size_t)j * Kp + k;
            __m512 t = _mm512_mul_ps(ev, _mm512_loadu_ps(xj));
            t = _mm512_fmadd_ps(od, _mm512_loadu_ps(xj + 16), t);
            switch (c) {
            case 0: a[j][0] = _mm512_add_ps(a[j][0], t); break;
            case 1: a[j][1] = _mm512_add_ps(a[j][1], t); break;
            case 2: a[j][2] = _mm512_add_ps(a[j][2], t); break;
            default: a[j][3] = _mm512_add_ps(a[j][3], t); break;
            }
        }
    }
#pragma GCC unroll 4
    for (int j = 0; j < MB; j++) {
        __m512 t = _mm512_add_ps(_mm512_add_ps(a[j][0], a[j][1]), _mm512_add_ps(a[j][2], a[j][3]));
        float s = _mm512_reduce_add_ps(t);
        float *yp = y + (size_t)j * ldy + n;
        *yp = acc ? *yp + s : s;
    }
}

T512 static void gemv_rows_bf16eo(float *y, int ldy, const float *xp, int Kp, const uint16_t *w, int M,
                                  int n0, int n1, int K, int acc) {
    for (int m = 0; m < M; m += 4) {
        int mb = M - m < 4 ? M - m : 4;
        const float *xm = xp + (size_t)m * Kp;
        float *ym = y + (size_t)m * ldy;
        for (int n = n0; n < n1; n++) {
            switch (mb) {
            case 1: gemv_row_bf16eo(ym, ldy, xm, Kp, w, n, K, acc, 1); break;
            case 2: gemv_row_bf16eo(ym, ldy, xm, Kp, w, n, K, acc, 2); break;
            case 3: gemv_row_bf16eo(ym, ldy, xm, Kp, w, n, K, acc, 3); break;
            default: gemv_row_bf16eo(ym, ldy, xm, Kp, w, n, K, acc, 4); break;
            }
        }
    }
}

// The weight type is a template argument too, so the inner loop has no branch.
#define GEMV_ROWS(NAME, WT)                                                                        \
    T512 static void NAME(float *y, int ldy, const float *x, int ldx, const void *w, int M, int n0, \
                          int n1, int K, int acc) {                                                \
        for (int m = 0; m < M; m += 4) {                                                           \
            int mb = M - m < 4 ? M - m : 4;                                                        \
            const float *xm = x + (size_t)m * ldx;                                                 \
            float *ym = y + (size_t)m * ldy;                                                       \
            for (int n = n0; n < n1; n++) {                                                        \
                switch (mb) {                                                                      \
                case 1: gemv_row(ym, ldy, xm, ldx, w, WT, n, K, acc, 1); break;                    \
                case 2: gemv_row(ym, ldy, xm, ldx, w, WT, n, K, acc, 2); break;                    \
                case 3: gemv_row(ym, ldy, xm, ldx, w, WT, n, K, acc, 3); break;                    \
                default: gemv_row(ym, ldy, xm, ldx, w, WT, n, K, acc, 4); break;                   \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
GEMV_ROWS(gemv_rows_f32, PZ_DT_F32)
GEMV_ROWS(gemv_rows_bf16, PZ_DT_BF16)
#undef GEMV_ROWS

static void gemv_rows_avx512(float *y, int ldy, const float *x, int ldx, const void *w, pz_dt wt,
                             int M, int n0, int n1, int K, int acc) {
    if (wt == PZ_DT_F32)
        gemv_rows_f32(y, ldy, x, ldx, w, M, n0, n1, K, acc);
    else
        gemv_rows_bf16(y, ldy, x, ldx, w, M, n0, n1, K, acc);
}

// ---- AVX2 + FMA ---------------------------------------------------------------
// The same walk with 8-lane vectors: chunk c of 8 columns (fp32) or of 16
// columns (bf16) goes to accumulator c % 4 whatever MB is. Four accumulators
// per activation row cover the FMA latency; with up to 3 rows, 12 of the 16
// vector registers hold accumulators.
#define T256 PZ_T256

T256 static inline __attribute__((always_inline)) void
gemv_row_f32_avx2(float *y, int ldy, const float *x, int ldx, const float *w, int n, int K, int acc,
                  const int MB) {
    __m256 a[3][4];
#pragma GCC unroll 3
    for (int j = 0; j < 3; j++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) a[j][c] = _mm256_setzero_ps();
    const float *wr = w + (size_t)n * K;
    int k = 0;
    for (; k + 32 <= K; k += 32) {
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256 wv = _mm256_loadu_ps(wr + k + 8 * c);
#pragma GCC unroll 3
            for (int j = 0; j < MB; j++)
                a[j][c] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (size_t)j * ldx + k + 8 * c), a[j][c]);
        }
    }
    for (int c = 0; k < K; k += 8, c++) {
        __m256i mk = pz_lanes256(K - k);
        __m256 wv = _mm256_maskload_ps(wr + k, mk);
#pragma GCC unroll 3
        for (int j = 0; j < MB; j++) {
            __m256 xv = _mm256_maskload_ps(x + (size_t)j * ldx + k, mk);
            switch (c) {  // chunk index (k/8) % 4 == c, as in the main loop
            case 0: a[j][0] = _mm256_fmadd_ps(wv, xv, a[j][0]); break;
            case 1: a[j][1] = _mm256_fmadd_ps(wv, xv, a[j][1]); break;
            case 2: a[j][2] = _mm256_fmadd_ps(wv, xv, a[j][2]); break;
            default: a[j][3] = _mm256_fmadd_ps(wv, xv, a[j][3]); break;
            }
        }
    }
#pragma GCC unroll 3
    for (int j = 0; j < MB; j++) {
        float s = pz_hsum256(_mm256_add_ps(_mm256_add_ps(a[j][0], a[j][1]), _mm256_add_ps(a[j][2], a[j][3])));
        float *yp = y + (size_t)j * ldy + n;
        *yp = acc ? *yp + s : s;
    }
}

// bf16 weights, 16 columns per load, split into even and odd columns with a
// shift and a mask (as in gemv_row_bf16eo) against activations permuted per
// 16 columns: the 8 even, then the 8 odd ones, zero-padded to Kp =
// round_up(K, 16). Per chunk, t = even·x_even + odd·x_odd is added to its
// accumulator, so the accumulator chains wait on adds (3 cycles), not FMAs.
T256 static inline __attribute__((always_inline)) void
gemv_row_bf16_avx2(float *y, int ldy, const float *xp, int Kp, const uint16_t *w, int n, int K,
                   int acc, const int MB) {
    __m256 a[3][4];
#pragma GCC unroll 3
    for (int j = 0; j < 3; j++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) a[j][c] = _mm256_setzero_ps();
    const uint16_t *wr = w + (size_t)n * K;
    const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000u);
    int k = 0;
    for (; k + 64 <= K; k += 64) {
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(wr + k + 16 * c));
            __m256 ev = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            __m256 od = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
#pragma GCC unroll 3
            for (int j = 0; j < MB; j++) {
                const float *xj = xp + (size_t)j * Kp + k + 16 * c;
                __m256 t = _mm256_mul_ps(ev, _mm256_loadu_ps(xj));
                a[j][c] = _mm256_add_ps(a[j][c], _mm256_fmadd_ps(od, _mm256_loadu_ps(xj + 8), t));
            }
        }
    }
    for (int c = 0; k < K; k += 16, c++) {
        __m256i v;
        if (K - k >= 16) {
            v = _mm256_loadu_si256((const __m256i *)(wr + k));
        } else {
            uint16_t tail[16] = {0};
            memcpy(tail, wr + k, sizeof(uint16_t) * (size_t)(K - k));
            v = _mm256_loadu_si256((const __m256i *)tail);
        }
        __m256 ev = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
        __m256 od = _mm256_castsi256_ps(_mm256_and_si256(v, hi));
#pragma GCC unroll 3
        for (int j = 0; j < MB; j++) {
            const float *xj = xp + (size_t)j * Kp + k;
            __m256 t = _mm256_fmadd_ps(od, _mm256_loadu_ps(xj + 8), _mm256_mul_ps(ev, _mm256_loadu_ps(xj)));
            switch (c) {
            case 0: a[j][0] = _mm256_add_ps(a[j][0], t); break;
            case 1: a[j][1] = _mm256_add_ps(a[j][1], t); break;
            case 2: a[j][2] = _mm256_add_ps(a[j][2], t); break;
            default: a[j][3] = _mm256_add_ps(a[j][3], t); break;
            }
        }
    }
#pragma GCC unroll 3
    for (int j = 0; j < MB; j++) {
        float s = pz_hsum256(_mm256_add_ps(_mm256_add_ps(a[j][0], a[j][1]), _mm256_add_ps(a[j][2], a[j][3])));
        float *yp = y + (size_t)j * ldy + n;
        *yp = acc ? *yp + s : s;
    }
}

// x (fp32) or xp (bf16: permuted, rows Kp apart) against rows [n0, n1) of W.
T256 static void gemv_rows_avx2(float *y, int ldy, const float *x, int ldx, const void *w, pz_dt wt,
                                int M, int n0, int n1, int K, int acc) {
    for (int m = 0; m < M; m += 3) {
        int mb = M - m < 3 ? M - m : 3;
        const float *xm = x + (size_t)m * ldx;
        float *ym = y + (size_t)m * ldy;
        if (wt == PZ_DT_F32) {
            const float *wf = (const float *)w;
            for (int n = n0; n < n1; n++) {
                switch (mb) {
                case 1: gemv_row_f32_avx2(ym, ldy, xm, ldx, wf, n, K, acc, 1); break;
                case 2: gemv_row_f32_avx2(ym, ldy, xm, ldx, wf, n, K, acc, 2); break;
                default: gemv_row_f32_avx2(ym, ldy, xm, ldx, wf, n, K, acc, 3); break;
                }
            }
        } else {
            const uint16_t *wh = (const uint16_t *)w;
            for (int n = n0; n < n1; n++) {
                switch (mb) {
                case 1: gemv_row_bf16_avx2(ym, ldy, xm, ldx, wh, n, K, acc, 1); break;
                case 2: gemv_row_bf16_avx2(ym, ldy, xm, ldx, wh, n, K, acc, 2); break;
                default: gemv_row_bf16_avx2(ym, ldy, xm, ldx, wh, n, K, acc, 3); break;
                }
            }
        }
    }
}

// xp[m][..] = row m of x with each group of 2*half columns reordered: the
// half even ones, then the half odd ones, zero-padded to Kp (a multiple of
// 2*half). half = 16 for the AVX-512 kernel, 8 for the AVX2 one.
static void permute_x(float *xp, int Kp, const float *x, int ldx, int M, int K, int half) {
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * ldx;
        float *d = xp + (size_t)m * Kp;
        for (int k0 = 0; k0 < Kp; k0 += 2 * half)
            for (int i = 0; i < half; i++) {
                int e = k0 + 2 * i, o = e + 1;
                d[k0 + i] = e < K ? xr[e] : 0.0f;
                d[k0 + half + i] = o < K ? xr[o] : 0.0f;
            }
    }
}

size_t pz_cpu_gemv_scratch_floats(int M, int K) { return (size_t)M * (size_t)((K + 31) / 32 * 32); }

void pz_cpu_gemv(float *y, int ldy, const float *x, int ldx, const void *w, pz_dt wt,
                 int M, int N, int K, int accumulate, int n_threads, float *scratch) {
    if (M <= 0 || N <= 0) return;
    pz_isa isa = pz_cpu_isa();
    // Split N into per-thread ranges of whole 4-row blocks.
    int nblk = (N + 3) / 4;
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if (nt > nblk) nt = nblk;
    // A thread is worth waking only for a few hundred microseconds of
    // streaming: one core nearly saturates memory bandwidth on the machines
    // measured, and waking a sleeping OpenMP thread costs tens of
    // microseconds (OMP_WAIT_POLICY=passive).
    size_t wbytes = (size_t)N * (size_t)K * (wt == PZ_DT_BF16 ? 2 : 4);
    size_t per = isa >= PZ_ISA_AVX512 ? PZ_GEMV_BYTES_PER_THREAD : PZ_GEMV_BYTES_PER_THREAD_AVX2;
    if ((size_t)nt > wbytes / per) nt = (int)(wbytes / per);
    if (nt < 1) nt = 1;
    // bf16 weights with a vector kernel: x permuted into the scratch (the
    // AVX2 kernel cannot run without it, so it falls back to plain C then).
    int bf = wt == PZ_DT_BF16 && scratch != NULL && isa >= PZ_ISA_AVX2;
    int half = isa >= PZ_ISA_AVX512 ? 16 : 8;
    int Kp = (K + 2 * half - 1) / (2 * half) * (2 * half);
    if (bf) permute_x(scratch, Kp, x, ldx, M, K, half);
    if (wt == PZ_DT_BF16 && !bf && isa == PZ_ISA_AVX2) isa = PZ_ISA_PLAIN;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int b0 = (int)((long)nblk * t / T), b1 = (int)((long)nblk * (t + 1) / T);
        int n0 = b0 * 4, n1 = b1 * 4 < N ? b1 * 4 : N;
        if (n0 < n1) {
            if (bf && isa >= PZ_ISA_AVX512)
                gemv_rows_bf16eo(y, ldy, scratch, Kp, (const uint16_t *)w, M, n0, n1, K, accumulate);
            else if (isa >= PZ_ISA_AVX512)
                gemv_rows_avx512(y, ldy, x, ldx, w, wt, M, n0, n1, K, accumulate);
            else if (bf)
                gemv_rows_avx2(y, ldy, scratch, Kp, w, wt, M, n0, n1, K, accumulate);
            else if (isa == PZ_ISA_AVX2)
                gemv_rows_avx2(y, ldy, x, ldx, w, wt, M, n0, n1, K, accumulate);
            else
                gemv_rows_ref(y, ldy, x, ldx, w, wt, M, n0, n1, K, accumulate);
        }
    }
}
