// gemv.c — see gemv.h. The vector kernels work on tiles of 5 weight rows by
// 2 activation rows (AVX2: 16 vector registers; bf16 weights 6 by 2, from
// two activation rows on) or 4 by 4 (AVX-512: 32),
// one vector accumulator per output: each weight vector, widened once,
// meets every activation row of the tile, and each activation vector every
// weight row. A thread walks its weight rows a tile at a time and runs all
// activation rows against them before moving on, so the weights are
// streamed from memory once per call whatever M is (the tile's rows stay in
// L1 while the activation rows, at most a few hundred KiB, come from L2).
//
// Batch invariance: output (m, n) is one accumulator that takes the columns
// in order, chunk by chunk, with the same instructions whatever tile it sits
// in (the tile shape only decides which outputs are computed side by side),
// then one horizontal sum. So row m of y depends on row m of x alone.
#include "gemv.h"
#include "gemv_tiles.h"
#include "vexp.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
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

// Weight bytes (times a cost factor that grows with M, see pz_cpu_gemv) a
// product must stream before a second thread is woken for it, by kernel
// level. AVX-512 machines measured earlier saturate memory from one core, so
// small products stay on one; on the AVX2-only EPYC here one core does not
// (fp32 decode on one core streamed ~17 GB/s): with 4 MiB, 1 MiB, 512 KiB and
// 256 KiB per thread, batch-1 decode at 16 tokens of context ran at 33,
// 48-52, 51-56, 51-55 tok/s (fp32) and 54, 66-71, 80-87, 79-91 (bf16)
// (bench_engine -e, both wait policies; results/engine_vs_llama_cpp.md).
#ifndef PZ_GEMV_BYTES_PER_THREAD
#define PZ_GEMV_BYTES_PER_THREAD (4u << 20)
#endif
#ifndef PZ_GEMV_BYTES_PER_THREAD_AVX2
#define PZ_GEMV_BYTES_PER_THREAD_AVX2 (512u << 10)
#endif

// Tile shapes: weight rows x activation rows, by level; with one activation
// row, 8 weight rows on AVX-512 and 4 on AVX2 (memory-bound there: fewer
// concurrent row streams measured ~5% faster than 8 on the EPYC). A thread's
// range of weight rows is whole tiles (but the last). Measured on the AVX2
// EPYC here (one thread, bf16, 12 x 960 x 576): 5 x 2 81, 3 x 3 77, 4 x 2
// 70, 6 x 2 63 and 4 x 3 62 GFLOP/s (4 x 3 and 6 x 2 spill registers); the
// bf16 6 x 2 tile in assembly with its sums taken 8 at a time
// (tile_bf16_6x2_avx2) then beat 5 x 2 by 10-12 % at 16 rows.
#define AVX2_NB 5
#define AVX2_MB 2
#define AVX512_NB 4
#define AVX512_MB 4

// Software prefetch of the next tile's weights while this one is computed.
// A tile's rows are short streams (K elements each) that the hardware
// prefetchers pick up late when W comes from memory; on the EPYC here the
// old one-row-at-a-time kernel, one long sequential stream, decoded one row
// ~25% faster than tiles without this (weights on huge pages). The next
// tile's lines are fetched in address order, spread evenly over every pass
// of the tile (one per block of activation rows) and over its chunks: a
// burst would fill the miss buffers and stall the loads.
//
// The lines for pass `pass` of `passes` over the tile [n, n + nb) of rows
// of K elements of esz bytes, by a loop with `points` prefetch points. The
// next tile ends at n1 (the thread's range).
static inline pf_state pf_plan(const void *w, size_t esz, int n, int nb, int n1, int K, int pass,
                               int passes, int points) {
    pf_state f = {NULL, 0, 0};
    int nn = n1 - (n + nb) < nb ? n1 - (n + nb) : nb;
    if (nn <= 0) return f;
    const char *base = (const char *)w + (size_t)(n + nb) * (size_t)K * esz;
    long lines = (long)(((size_t)nn * (size_t)K * esz + 63) / 64);
    long lo = lines * pass / passes, hi = lines * (pass + 1) / passes;
    f.p = base + 64 * lo;
    f.left = (int)(hi - lo);
    f.per = points > 0 ? (f.left + points - 1) / points : f.left;
    return f;
}

// ---- AVX-512 ----------------------------------------------------------------
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

// fp32 weights: NB weight rows from n against MB activation rows, 16
// columns per chunk (the tail masked).
T512 static inline __attribute__((always_inline)) void
tile_f32_512(float *y, int ldy, const float *x, int ldx, const float *w, int n, int K, int acc,
             pf_state pf, const int NB, const int MB) {
    __m512 a[8][4];
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) a[i][j] = _mm512_setzero_ps();
    const float *wr = w + (size_t)n * K;
    for (int k = 0; k < K; k += 16) {
        pf_step(&pf);
        __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 xv[4];
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) xv[j] = _mm512_maskz_loadu_ps(mk, x + (size_t)j * ldx + k);
#pragma GCC unroll 8
        for (int i = 0; i < NB; i++) {
            __m512 wv = _mm512_maskz_loadu_ps(mk, wr + (size_t)i * K + k);
#pragma GCC unroll 4
            for (int j = 0; j < MB; j++) a[i][j] = _mm512_fmadd_ps(wv, xv[j], a[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) {
            float s = _mm512_reduce_add_ps(a[i][j]);
            float *yp = y + (size_t)j * ldy + n + i;
            *yp = acc ? *yp + s : s;
        }
}

// bf16 weights, 32 columns per load: the low halves of the 32-bit lanes
// (shifted up) are the even columns as fp32, the high halves (masked) the
// odd ones, so widening takes one instruction per 16 weights. xp holds each
// activation row pre-permuted to match: per 32 columns, the 16 even then the
// 16 odd ones, zero-padded to Kp = round_up(K, 32). Per chunk an accumulator
// takes the even product, then the odd one.
T512 static inline __attribute__((always_inline)) void
tile_bf16_512(float *y, int ldy, const float *xp, int Kp, const uint16_t *w, int n, int K, int acc,
              pf_state pf, const int NB, const int MB) {
    __m512 a[8][4];
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) a[i][j] = _mm512_setzero_ps();
    const uint16_t *wr = w + (size_t)n * K;
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    for (int k = 0; k < K; k += 32) {
        pf_step(&pf);
        __mmask32 mk = K - k >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << (K - k)) - 1);
        __m512 xv[4];
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) xv[j] = _mm512_loadu_ps(xp + (size_t)j * Kp + k);
#pragma GCC unroll 8
        for (int i = 0; i < NB; i++) {
            __m512i v = _mm512_maskz_loadu_epi16(mk, wr + (size_t)i * K + k);
            __m512 ev = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
#pragma GCC unroll 4
            for (int j = 0; j < MB; j++) a[i][j] = _mm512_fmadd_ps(ev, xv[j], a[i][j]);
        }
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) xv[j] = _mm512_loadu_ps(xp + (size_t)j * Kp + k + 16);
#pragma GCC unroll 8
        for (int i = 0; i < NB; i++) {
            __m512i v = _mm512_maskz_loadu_epi16(mk, wr + (size_t)i * K + k);
            __m512 od = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
#pragma GCC unroll 4
            for (int j = 0; j < MB; j++) a[i][j] = _mm512_fmadd_ps(od, xv[j], a[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) {
            float s = _mm512_reduce_add_ps(a[i][j]);
            float *yp = y + (size_t)j * ldy + n + i;
            *yp = acc ? *yp + s : s;
        }
}

// Calls TILE(nb, mb) with constants: nb 1..8 when mb is 1, else nb 1..5, mb 2.
#define TILE_SWITCH_AVX2(TILE, nb, mb)                                                             \
    do {                                                                                           \
        if ((mb) == 1) {                                                                           \
            TILE_M1(TILE, nb)                                                                      \
        } else {                                                                                   \
            switch (nb) {                                                                          \
            case 1: TILE(1, 2); break;                                                             \
            case 2: TILE(2, 2); break;                                                             \
            case 3: TILE(3, 2); break;                                                             \
            case 4: TILE(4, 2); break;                                                             \
            default: TILE(5, 2); break;                                                            \
            }                                                                                      \
        }                                                                                          \
    } while (0)

// x (fp32) or xp (bf16: permuted, rows Kp apart) against weight rows [n0, n1).
T512 static void gemv_rows_avx512(float *y, int ldy, const float *x, int ldx, const void *w, pz_dt wt,
                                  int M, int n0, int n1, int K, int acc) {
    const int nbmax = M == 1 ? 8 : AVX512_NB, passes = m_passes(M, AVX512_MB);
    const size_t esz = wt == PZ_DT_F32 ? 4 : 2;
    const int points = wt == PZ_DT_F32 ? (K + 15) / 16 : (K + 31) / 32;
    for (int n = n0; n < n1; n += nbmax) {
        int nb = n1 - n < nbmax ? n1 - n : nbmax;
        for (int m = 0, mb, pass = 0; m < M; m += mb, pass++) {
            mb = m_tile(M - m, AVX512_MB);
            pf_state pf = pf_plan(w, esz, n, nb, n1, K, pass, passes, points);
            const float *xm = x + (size_t)m * ldx;
            float *ym = y + (size_t)m * ldy;
            if (wt == PZ_DT_F32) {
#define T(NB, MB) tile_f32_512(ym, ldy, xm, ldx, (const float *)w, n, K, acc, pf, NB, MB)
                TILE_SWITCH_512(T, nb, mb);
#undef T
            } else {
#define T(NB, MB) tile_bf16_512(ym, ldy, xm, ldx, (const uint16_t *)w, n, K, acc, pf, NB, MB)
                TILE_SWITCH_512(T, nb, mb);
#undef T
            }
        }
    }
}

// ---- AVX2 + FMA ---------------------------------------------------------------
// The same tiles with 8-lane vectors and at most 2 activation rows: 10
// accumulators, 2 activation vectors, the weight vector in use and the mask
// fit the 16 registers.
#define T256 PZ_T256

T256 static inline __attribute__((always_inline)) void
tile_f32_avx2(float *y, int ldy, const float *x, int ldx, const float *w, int n, int K, int acc,
              pf_state pf, const int NB, const int MB) {
    __m256 a[8][3];
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 3
        for (int j = 0; j < MB; j++) a[i][j] = _mm256_setzero_ps();
    const float *wr = w + (size_t)n * K;
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        if (!(k & 8)) pf_step(&pf);
        __m256 xv[3];
#pragma GCC unroll 3
        for (int j = 0; j < MB; j++) xv[j] = _mm256_loadu_ps(x + (size_t)j * ldx + k);
#pragma GCC unroll 8
        for (int i = 0; i < NB; i++) {
            __m256 wv = _mm256_loadu_ps(wr + (size_t)i * K + k);
#pragma GCC unroll 3
            for (int j = 0; j < MB; j++) a[i][j] = _mm256_fmadd_ps(wv, xv[j], a[i][j]);
        }
    }
    if (k < K) {
        __m256i mk = pz_lanes256(K - k);
        __m256 xv[3];
#pragma GCC unroll 3
        for (int j = 0; j < MB; j++) xv[j] = _mm256_maskload_ps(x + (size_t)j * ldx + k, mk);
#pragma GCC unroll 8
        for (int i = 0; i < NB; i++) {
            __m256 wv = _mm256_maskload_ps(wr + (size_t)i * K + k, mk);
#pragma GCC unroll 3
            for (int j = 0; j < MB; j++) a[i][j] = _mm256_fmadd_ps(wv, xv[j], a[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 3
        for (int j = 0; j < MB; j++) {
            float s = pz_hsum256(a[i][j]);
            float *yp = y + (size_t)j * ldy + n + i;
            *yp = acc ? *yp + s : s;
        }
}

// bf16 weights, 16 columns per load, widened by unpacking with zeros: each
// 128-bit lane's low 4 bf16 become fp32 (columns 0-3 and 8-11), then its
// high 4 (4-7 and 12-15), one instruction per 8 weights (with the load
// folded in; the shift-and-mask split of tile_bf16_512 took ~7% more time
// at M = 16 here, measured alternated). The activations are permuted to
// match per 16 columns (permute_x_quads), zero-padded to Kp =
// round_up(K, 16). The weight tail is copied into zero-padded rows.
T256 static inline __attribute__((always_inline)) void
bf16_chunk_avx2(__m256 a[8][3], const float *xp, int Kp, int k, const uint16_t *w0, size_t ldw,
                const int NB, const int MB) {
    const __m256i z = _mm256_setzero_si256();
    __m256 xv[3];
#pragma GCC unroll 3
    for (int j = 0; j < MB; j++) xv[j] = _mm256_loadu_ps(xp + (size_t)j * Kp + k);
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(w0 + (size_t)i * ldw));
        __m256 lo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, v));
#pragma GCC unroll 3
        for (int j = 0; j < MB; j++) a[i][j] = _mm256_fmadd_ps(lo, xv[j], a[i][j]);
    }
#pragma GCC unroll 3
    for (int j = 0; j < MB; j++) xv[j] = _mm256_loadu_ps(xp + (size_t)j * Kp + k + 8);
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(w0 + (size_t)i * ldw));
        __m256 hi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, v));
#pragma GCC unroll 3
        for (int j = 0; j < MB; j++) a[i][j] = _mm256_fmadd_ps(hi, xv[j], a[i][j]);
    }
}

T256 static inline __attribute__((always_inline)) void
tile_bf16_avx2(float *y, int ldy, const float *xp, int Kp, const uint16_t *w, int n, int K, int acc,
               pf_state pf, const int NB, const int MB) {
    __m256 a[8][3];
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 3
        for (int j = 0; j < MB; j++) a[i][j] = _mm256_setzero_ps();
    const uint16_t *wr = w + (size_t)n * K;
    int k = 0;
    // One 16-column chunk per iteration: with two, GCC interleaved them and
    // spilled an accumulator of the 5 x 2 tile to the stack, putting a
    // store-to-load forward into its FMA chain (~65 against ~75 GFLOP/s).
    for (; k + 16 <= K; k += 16) {
        if (!(k & 16)) pf_step(&pf);
        bf16_chunk_avx2(a, xp, Kp, k, wr + k, (size_t)K, NB, MB);
    }
    if (k < K) {
        uint16_t tail[8][16];
        memset(tail, 0, sizeof tail);
        for (int i = 0; i < NB; i++) memcpy(tail[i], wr + (size_t)i * K + k, sizeof(uint16_t) * (size_t)(K - k));
        bf16_chunk_avx2(a, xp, Kp, k, tail[0], 16, NB, MB);
    }
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 3
        for (int j = 0; j < MB; j++) {
            float s = pz_hsum256(a[i][j]);
            float *yp = y + (size_t)j * ldy + n + i;
            *yp = acc ? *yp + s : s;
        }
}

// Horizontal sums of several vectors at once, each by pz_hsum256's tree
// ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)), the same additions with
// the same operands, so bit for bit pz_hsum256's results: per pair of
// vectors the 128-bit halves added (lo + hi), then within each half lanes
// 0 + 2 and 1 + 3, then those two. Returns the sums of A..H in order.
T256 static inline __attribute__((always_inline)) __m256
hsum8_avx2(__m256 A, __m256 B, __m256 C, __m256 D, __m256 E, __m256 F, __m256 G, __m256 H) {
#define HALVES(X, Y) _mm256_add_ps(_mm256_permute2f128_ps(X, Y, 0x20), _mm256_permute2f128_ps(X, Y, 0x31))
#define PAIRS(P, Q)                                                                                \
    _mm256_add_ps(_mm256_shuffle_ps(P, Q, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(P, Q, _MM_SHUFFLE(3, 2, 3, 2)))
    // [sA | sB] ..., then [tA tC | tB tD] with t = (s0 + s2, s1 + s3)
    __m256 q1 = PAIRS(HALVES(A, B), HALVES(C, D)), q2 = PAIRS(HALVES(E, F), HALVES(G, H));
    // [A C E G | B D F H]
    __m256 r = _mm256_add_ps(_mm256_shuffle_ps(q1, q2, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm256_shuffle_ps(q1, q2, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// The sums of A..D in order (as hsum8_avx2).
T256 static inline __attribute__((always_inline)) __m128 hsum4_avx2(__m256 A, __m256 B, __m256 C, __m256 D) {
    __m256 q = PAIRS(HALVES(A, B), HALVES(C, D));
    // [A C A C | B D B D]
    __m256 r = _mm256_add_ps(_mm256_shuffle_ps(q, q, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm256_shuffle_ps(q, q, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm_unpacklo_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
#undef HALVES
#undef PAIRS
}

// The 6 x 2 bf16 tile: 12 accumulators, so 12 independent FMA chains where
// the 5 x 2 tile has 10 (Zen 2: 2 FMA pipes x 5 cycles latency = 10, with
// no slack for the widening's unpacks that share a pipe with the FMAs).
// With the 2 activation vectors, the zero and the widened weight vector it
// needs all 16 registers, which GCC did not manage without spilling (63
// GFLOP/s, above), so a chunk is written in assembly; the arithmetic is
// bf16_chunk_avx2's, instruction for instruction (unpack with zero, then
// vfmadd231ps acc += w * x, low half then high half), so every output gets
// the same FMA sequence as in the other tiles. The 12 sums at the end are
// taken 8 and 4 at a time (hsum8_avx2: half of the gain over 5 x 2 at 16
// rows; 12 pz_hsum256 calls per pass of a K = 576 tile cost ~5 %). pw: row 0
// at the chunk's column, pw3 row 3; lw: bytes between weight rows; lx:
// between activation rows.
#define BF16_6X2_HALF(UNPACK, XOFF, WOFF)                                                          \
    "vmovups " XOFF "(%[px]), %%ymm12\n\t"                                                         \
    "vmovups " XOFF "(%[px],%[lx]), %%ymm13\n\t"                                                   \
    UNPACK " " WOFF "(%[pw]), %%ymm14, %%ymm15\n\t"                                                \
    "vfmadd231ps %%ymm12, %%ymm15, %[a00]\n\t"                                                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[a01]\n\t"                                                     \
    UNPACK " " WOFF "(%[pw],%[lw]), %%ymm14, %%ymm15\n\t"                                          \
    "vfmadd231ps %%ymm12, %%ymm15, %[a10]\n\t"                                                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[a11]\n\t"                                                     \
    UNPACK " " WOFF "(%[pw],%[lw],2), %%ymm14, %%ymm15\n\t"                                        \
    "vfmadd231ps %%ymm12, %%ymm15, %[a20]\n\t"                                                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[a21]\n\t"                                                     \
    UNPACK " " WOFF "(%[pw3]), %%ymm14, %%ymm15\n\t"                                               \
    "vfmadd231ps %%ymm12, %%ymm15, %[a30]\n\t"                                                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[a31]\n\t"                                                     \
    UNPACK " " WOFF "(%[pw3],%[lw]), %%ymm14, %%ymm15\n\t"                                         \
    "vfmadd231ps %%ymm12, %%ymm15, %[a40]\n\t"                                                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[a41]\n\t"                                                     \
    UNPACK " " WOFF "(%[pw3],%[lw],2), %%ymm14, %%ymm15\n\t"                                       \
    "vfmadd231ps %%ymm12, %%ymm15, %[a50]\n\t"                                                     \
    "vfmadd231ps %%ymm13, %%ymm15, %[a51]\n\t"

// One 16-column chunk (columns XOFF/4 .. of px, WOFF/2 .. of pw).
#define BF16_6X2_CHUNK(XOFF, XOFF8, WOFF)                                                          \
    __asm__("vpxor %%xmm14, %%xmm14, %%xmm14\n\t"                                                  \
            BF16_6X2_HALF("vpunpcklwd", XOFF, WOFF) BF16_6X2_HALF("vpunpckhwd", XOFF8, WOFF)      \
            : [a00] "+x"(a00), [a01] "+x"(a01), [a10] "+x"(a10), [a11] "+x"(a11),                   \
              [a20] "+x"(a20), [a21] "+x"(a21), [a30] "+x"(a30), [a31] "+x"(a31),                   \
              [a40] "+x"(a40), [a41] "+x"(a41), [a50] "+x"(a50), [a51] "+x"(a51)                    \
            : [px] "r"(px), [lx] "r"(lx), [pw] "r"(pw), [pw3] "r"(pw3), [lw] "r"(lw)                       \
            : "xmm12", "xmm13", "xmm14", "xmm15", "memory")

static int pf_clamp = 1;  // pz_cpu_gemv_set_pf_clamp
void pz_cpu_gemv_set_pf_clamp(int on) { pf_clamp = on < 0 ? 1 : on; }

T256 static void tile_bf16_6x2_avx2(float *y, int ldy, const float *xp, int Kp, const uint16_t *w, int n,
                                    int K, int acc, pf_state pf) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00;
    __m256 a30 = a00, a31 = a00, a40 = a00, a41 = a00, a50 = a00, a51 = a00;
    const uint16_t *wr = w + (size_t)n * K;
    const long lx = (long)Kp * 4;
    long lw = (long)K * 2;
    int k = 0;
    if (pf_clamp && pf.per == 1 && pf.left > 0) {
        // One line per iteration (pf.per is 1 from 8 activation rows on at these shapes), the
        // share's last line again once it is done (an L1 hit): no tests or counts in the loop.
        // pf_step's took 2-5 % of the tile at 16 and 32 rows (`test_kernels perf-cold 7 base
        // step`, results/serve_cpu.md).
        const char *pp = pf.p;
        long last = 64L * (pf.left - 1);
        for (long off = 0; k + 32 <= K; k += 32, off += 64) {
            _mm_prefetch(pp + (off < last ? off : last), _MM_HINT_T0);
            const float *px = xp + k;
            const uint16_t *pw = wr + k, *pw3 = pw + 3 * (size_t)K;
            BF16_6X2_CHUNK("0", "32", "0");
            BF16_6X2_CHUNK("64", "96", "32");
        }
        pf.left = 0;
    }
    for (; k + 32 <= K; k += 32) {
        pf_step(&pf);
        const float *px = xp + k;
        const uint16_t *pw = wr + k, *pw3 = pw + 3 * (size_t)K;
        BF16_6X2_CHUNK("0", "32", "0");
        BF16_6X2_CHUNK("64", "96", "32");
    }
    if (k + 16 <= K) {
        pf_step(&pf);
        const float *px = xp + k;
        const uint16_t *pw = wr + k, *pw3 = pw + 3 * (size_t)K;
        BF16_6X2_CHUNK("0", "32", "0");
        k += 16;
    }
    if (k < K) {
        uint16_t tail[6][16];
        memset(tail, 0, sizeof tail);
        for (int i = 0; i < 6; i++) memcpy(tail[i], wr + (size_t)i * K + k, sizeof(uint16_t) * (size_t)(K - k));
        const float *px = xp + k;
        const uint16_t *pw = tail[0], *pw3 = tail[3];
        lw = 32;
        BF16_6X2_CHUNK("0", "32", "0");
    }
    // The 12 sums, pz_hsum256's tree for each, 8 then 4 at a time.
    __m256 s8 = hsum8_avx2(a00, a10, a20, a30, a40, a50, a01, a11);
    __m128 s4 = hsum4_avx2(a21, a31, a41, a51);
    __m128 lo = _mm256_castps256_ps128(s8), hi = _mm256_extractf128_ps(s8, 1);
    float *y0 = y + n, *y1 = y + (size_t)ldy + n;
    if (acc) {
        lo = _mm_add_ps(_mm_loadu_ps(y0), lo);
        hi = _mm_add_ps(_mm_loadh_pi(_mm_loadl_pi(_mm_setzero_ps(), (const __m64 *)(y0 + 4)),
                                     (const __m64 *)y1), hi);
        s4 = _mm_add_ps(_mm_loadu_ps(y1 + 2), s4);
    }
    _mm_storeu_ps(y0, lo);
    _mm_storel_pi((__m64 *)(y0 + 4), hi);
    _mm_storeh_pi((__m64 *)y1, hi);
    _mm_storeu_ps(y1 + 2, s4);
}

#ifndef PZ_GEMV_TILE6_M
// From this many activation rows on (one row keeps its 4 x 1 tiles). One
// thread, in cache, GFLOP/s 5 x 2 / 6 x 2, `test_kernels perf-tile 60`
// (alternated): 960 x 576 at M = 2 54 / 68, 4 69 / 79, 8 75 / 83, 16 81 / 89;
// 3072 x 576 at 16 79 / 87; 576 x 1536 at 2 60 / 74, 16 87 / 97
// (results/serve_cpu.md). Odd M's last row runs 6 x 1.
#define PZ_GEMV_TILE6_M 2
#endif
static int tile6_min_m = PZ_GEMV_TILE6_M;  // pz_cpu_gemv_set_tile6_m
void pz_cpu_gemv_set_tile6_m(int m) { tile6_min_m = m < 0 ? PZ_GEMV_TILE6_M : m; }

// How far ahead the AVX2 kernel prefetches, in tiles (pz_cpu_gemv_set_prefetch).
static int pf_tiles = 1;
void pz_cpu_gemv_set_prefetch(int tiles) { pf_tiles = tiles < 0 ? 1 : tiles; }
static int pf_flat = 1;  // pz_cpu_gemv_set_pf_flat
void pz_cpu_gemv_set_pf_flat(int on) { pf_flat = on < 0 ? 1 : on; }

// The prefetch plans: pass p over a tile fetches lines [p * share, (p + 1) *
// share) of the tile pf_tiles on (the AVX-512 kernel's pf_plan spreads them
// alike but divides per pass: three 64-bit divisions per pass cost 0.1-0.8 %
// at 16 and 32 rows here, `test_kernels perf-cold 9 base div`, and prefetching
// 2 or 3 tiles ahead was 0.5-2 % slower than 1). pf_end: where prefetching
// stops (the end of the thread's range; n1 ends the rows computed).
T256 static void gemv_rows_avx2(float *y, int ldy, const float *x, int ldx, const void *w, pz_dt wt,
                                int M, int n0, int n1, int pf_end, int K, int acc) {
    const int t6 = wt == PZ_DT_BF16 && tile6_min_m > 0 && M >= tile6_min_m;
    const int nbmax = M == 1 ? 4 : t6 ? 6 : AVX2_NB, passes = m_passes(M, AVX2_MB);
    const size_t esz = wt == PZ_DT_F32 ? 4 : 2, row_bytes = (size_t)K * esz;
    const int points = wt == PZ_DT_F32 ? (K + 15) / 16 : K / 32;
    // A full tile's lines, a pass's share of them, lines per prefetch point.
    const long full = (long)((nbmax * row_bytes + 63) / 64), full_share = (full + passes - 1) / passes;
    const int full_per = points > 0 ? (int)((full_share + points - 1) / points) : (int)full_share;
    for (int n = n0; n < n1; n += nbmax) {
        int nb = n1 - n < nbmax ? n1 - n : nbmax;
        // The tile to prefetch: [t0, t1), cut at the end of the range.
        int t0 = n + pf_tiles * nbmax, t1 = pf_end - t0 < nbmax ? pf_end : t0 + nbmax;
        if (pf_tiles == 0 || t1 < t0) t1 = t0;
        long lines = full, share = full_share;
        int per = full_per;
        if (t1 - t0 != nbmax) {
            lines = (long)(((size_t)(t1 - t0) * row_bytes + 63) / 64);
            share = (lines + passes - 1) / passes;
            per = points > 0 ? (int)((share + points - 1) / points) : (int)share;
        }
        for (int m = 0, mb, pass = 0; m < M; m += mb, pass++) {
            mb = m_tile(M - m, AVX2_MB);
            pf_state pf;
            if (pf_flat) {
                long lo = pass * share < lines ? pass * share : lines;
                long hi = lo + share < lines ? lo + share : lines;
                pf.p = (const char *)w + (size_t)t0 * row_bytes + 64 * lo;
                pf.left = (int)(hi - lo);
                pf.per = per;
            } else if (pf_tiles == 1) {
                pf = pf_plan(w, esz, n, nb, pf_end, K, pass, passes, points);
            } else {
                pf = (pf_state){NULL, 0, 0};
            }
            const float *xm = x + (size_t)m * ldx;
            float *ym = y + (size_t)m * ldy;
            if (wt == PZ_DT_F32) {
#define T(NB, MB) tile_f32_avx2(ym, ldy, xm, ldx, (const float *)w, n, K, acc, pf, NB, MB)
                TILE_SWITCH_AVX2(T, nb, mb);
#undef T
            } else if (nb == 6 && mb == 2) {
                tile_bf16_6x2_avx2(ym, ldy, xm, ldx, (const uint16_t *)w, n, K, acc, pf);
            } else if (nb == 6) {
                tile_bf16_avx2(ym, ldy, xm, ldx, (const uint16_t *)w, n, K, acc, pf, 6, 1);
            } else {
#define T(NB, MB) tile_bf16_avx2(ym, ldy, xm, ldx, (const uint16_t *)w, n, K, acc, pf, NB, MB)
                TILE_SWITCH_AVX2(T, nb, mb);
#undef T
            }
        }
    }
}
#undef TILE_SWITCH_AVX2

// xp[m][..] = row m of x with each group of 2*half columns reordered: the
// half even ones, then the half odd ones, zero-padded to Kp (a multiple of
// 2*half), for the AVX-512 kernel (half = 16); half = 8 selects the AVX2
// kernel's layout instead (permute_x_quads). Runs on one
// thread before every bf16 product (121 per decode step of the reference
// model), so the whole groups are split with AVX2 shuffles (half must be a
// multiple of 8 there), 16 columns at a time; the plain loop did ~5 us per
// 16 x 576 call.
static void permute_x_ref(float *xp, int Kp, const float *x, int ldx, int M, int K, int half, int k_from) {
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * ldx;
        float *d = xp + (size_t)m * Kp;
        for (int k0 = k_from; k0 < Kp; k0 += 2 * half)
            for (int i = 0; i < half; i++) {
                int e = k0 + 2 * i, o = e + 1;
                d[k0 + i] = e < K ? xr[e] : 0.0f;
                d[k0 + half + i] = o < K ? xr[o] : 0.0f;
            }
    }
}

T256 static void permute_x_avx2(float *xp, int Kp, const float *x, int ldx, int M, int K, int half) {
    int kfull = K / (2 * half) * (2 * half);
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * ldx;
        float *d = xp + (size_t)m * Kp;
        for (int k0 = 0; k0 < kfull; k0 += 2 * half)
            for (int i = 0; i < half; i += 8) {
                __m256 a = _mm256_loadu_ps(xr + k0 + 2 * i), b = _mm256_loadu_ps(xr + k0 + 2 * i + 8);
                // per 128-bit lane: a0 a2 b0 b2 | a4 a6 b4 b6, then lanes' 64-bit halves in order
                __m256 ev = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
                __m256 od = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
                ev = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(ev), _MM_SHUFFLE(3, 1, 2, 0)));
                od = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(od), _MM_SHUFFLE(3, 1, 2, 0)));
                _mm256_storeu_ps(d + k0 + i, ev);
                _mm256_storeu_ps(d + k0 + half + i, od);
            }
    }
    if (kfull < Kp) permute_x_ref(xp, Kp, x, ldx, M, K, half, kfull);
}

// The AVX2 kernel's layout: per 16 columns, columns 0-3 and 8-11, then 4-7
// and 12-15 (what unpacking 16 bf16 with zeros gives, bf16_chunk_avx2).
static const int quad16[16] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15};
T256 static void permute_x_quads(float *xp, int Kp, const float *x, int ldx, int M, int K) {
    int kfull = K / 16 * 16;
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * ldx;
        float *d = xp + (size_t)m * Kp;
        for (int k0 = 0; k0 < kfull; k0 += 16) {
            __m256 a = _mm256_loadu_ps(xr + k0), b = _mm256_loadu_ps(xr + k0 + 8);
            _mm256_storeu_ps(d + k0, _mm256_permute2f128_ps(a, b, 0x20));
            _mm256_storeu_ps(d + k0 + 8, _mm256_permute2f128_ps(a, b, 0x31));
        }
        for (int k0 = kfull; k0 < Kp; k0 += 16)
            for (int j = 0; j < 16; j++) d[k0 + j] = k0 + quad16[j] < K ? xr[k0 + quad16[j]] : 0.0f;
    }
}

static void permute_x(float *xp, int Kp, const float *x, int ldx, int M, int K, int half) {
    if (half == 8)
        permute_x_quads(xp, Kp, x, ldx, M, K);
    else if (pz_cpu_isa() >= PZ_ISA_AVX2 && half % 8 == 0)
        permute_x_avx2(xp, Kp, x, ldx, M, K, half);
    else
        permute_x_ref(xp, Kp, x, ldx, M, K, half, 0);
}

// Chunk rows of the AVX2 level's work sharing (pz_cpu_gemv_set_steal); -1:
// not yet read from PZ_GEMV_STEAL_ROWS.
static int steal_rows = -1;
void pz_cpu_gemv_set_steal(int rows) { __atomic_store_n(&steal_rows, rows < 0 ? 0 : rows, __ATOMIC_RELAXED); }
static int steal_chunk_rows(void) {
    int r = __atomic_load_n(&steal_rows, __ATOMIC_RELAXED);
    if (r < 0) {
        const char *e = getenv("PZ_GEMV_STEAL_ROWS");
        r = e ? atoi(e) : PZ_GEMV_STEAL_DEFAULT;
        if (r < 0) r = 0;
        __atomic_store_n(&steal_rows, r, __ATOMIC_RELAXED);
    }
    return r;
}

size_t pz_cpu_gemv_scratch_floats(int M, int K) { return (size_t)M * (size_t)((K + 31) / 32 * 32); }

void pz_cpu_gemv(float *y, int ldy, const float *x, int ldx, const void *w, pz_dt wt,
                 int M, int N, int K, int accumulate, int n_threads, float *scratch) {
    if (M <= 0 || N <= 0) return;
    pz_isa isa = pz_cpu_isa();
    // Split N into per-thread ranges of whole tiles.
    const int nbt = isa >= PZ_ISA_AVX512 ? AVX512_NB : AVX2_NB;
    int nblk = (N + nbt - 1) / nbt;
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if (nt > nblk) nt = nblk;
    // A thread is worth waking only for a few hundred microseconds of work:
    // one core nearly saturates memory bandwidth on the machines measured,
    // and waking a sleeping OpenMP thread costs tens of microseconds
    // (OMP_WAIT_POLICY=passive). With several rows the product turns
    // compute-bound, so the weight bytes count (M + 2) / 3 times.
    size_t wbytes = (size_t)N * (size_t)K * (wt == PZ_DT_BF16 ? 2 : 4) * (size_t)(M + 2) / 3;
    size_t per = isa >= PZ_ISA_AVX512 ? PZ_GEMV_BYTES_PER_THREAD : PZ_GEMV_BYTES_PER_THREAD_AVX2;
    if ((size_t)nt > wbytes / per) nt = (int)(wbytes / per);
    if (nt < 1) nt = 1;
    // bf16 weights with a vector kernel: x permuted into the scratch (the
    // vector kernels cannot run without it, so they fall back to plain C then).
    int bf = wt == PZ_DT_BF16 && scratch != NULL && isa >= PZ_ISA_AVX2;
    int half = isa >= PZ_ISA_AVX512 ? 16 : 8;
    int Kp = (K + 2 * half - 1) / (2 * half) * (2 * half);
    if (bf) permute_x(scratch, Kp, x, ldx, M, K, half);
    if (wt == PZ_DT_BF16 && !bf) isa = PZ_ISA_PLAIN;
    const float *xa = bf ? scratch : x;
    int lda = bf ? Kp : ldx;
    // Work sharing (pz_cpu_gemv_set_steal): each thread's range in chunks
    // of `steal` blocks, which a thread done with its own claims from the
    // others' (one counter per range, a cache line each).
    int srows = nt > 1 && isa == PZ_ISA_AVX2 ? steal_chunk_rows() : 0;
    int steal = srows > 0 ? (srows + nbt - 1) / nbt : 0;
    struct {
        int next;
        char pad[60];
    } claim[64];
    if (steal)
        for (int i = 0; i < nt && i < 64; i++) claim[i].next = 0;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int b0 = (int)((long)nblk * t / T), b1 = (int)((long)nblk * (t + 1) / T);
        int n0 = b0 * nbt, n1 = b1 * nbt < N ? b1 * nbt : N;
        if (steal && T > 1 && T <= 64) {
            // Own range first, then the others', chunk by chunk as claimed.
            for (int r = 0; r < T; r++) {
                int o = (t + r) % T;
                int rb0 = (int)((long)nblk * o / T), rb1 = (int)((long)nblk * (o + 1) / T);
                int end = rb1 * nbt < N ? rb1 * nbt : N;
                for (;;) {
                    int c0 = rb0 + __atomic_fetch_add(&claim[o].next, steal, __ATOMIC_RELAXED);
                    if (c0 >= rb1) break;
                    int c1 = c0 + steal < rb1 ? c0 + steal : rb1;
                    gemv_rows_avx2(y, ldy, xa, lda, w, wt, M, c0 * nbt, c1 * nbt < N ? c1 * nbt : N, end, K,
                                   accumulate);
                }
            }
        } else if (n0 < n1) {
            if (isa >= PZ_ISA_AVX512)
                gemv_rows_avx512(y, ldy, xa, lda, w, wt, M, n0, n1, K, accumulate);
            else if (isa == PZ_ISA_AVX2)
                gemv_rows_avx2(y, ldy, xa, lda, w, wt, M, n0, n1, n1, K, accumulate);
            else
                gemv_rows_ref(y, ldy, x, ldx, w, wt, M, n0, n1, K, accumulate);
        }
    }
}
