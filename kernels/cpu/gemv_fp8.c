// gemv_fp8.c — see gemv.h: the small-M product with e4m3 weights. The
// weight bytes are widened in registers and never stored wider: an e4m3
// code s.eeee.mmm, sign-extended to 16 bits, shifted left by 7 and with bit
// 14 cleared, is the fp16 pattern s.0eeee.mmm0000000, whose value is the
// e4m3 value / 2^8 (subnormals included: fp16's subnormal unit 2^-24 · 2^7
// is e4m3's 2^-9 / 2^8). The processor's fp16 -> fp32 conversion (F16C,
// exact) finishes the job, and the 2^8 joins the tensor scale applied once
// per output. Three integer operations and one (AVX-512) or two (AVX2)
// conversions per 16 weights; a 256-entry table gather measured slower
// (results/fp8_speed.md). With a scratch, AVX2 widens by integer
// operations alone instead (chunk_avx2; ~10-20 % faster here). NaN codes (which pz_f32_to_e4m3 makes only from
// NaN, and the model loader refuses) widen to 480 here, not NaN.
//
// The vector kernels work as gemv.c's: tiles of weight rows x activation
// rows with one vector accumulator per output; a thread walks its weight
// rows a tile at a time and runs all activation rows against each tile
// before the next, so the weights stream from memory once per call
// whatever M is. Widening costs more than bf16's, and each widened vector
// is shared by the tile's activation rows, so the AVX2 tile is taller in
// activation rows than gemv.c's (3 x 4 against 5 x 2; results/fp8_speed.md).
// From PZ_GEMV_FP8_WIDE_M (16) rows on, AVX2 instead widens each tile of weight
// rows once into a per-thread scratch and runs gemv.c's bf16 tile over it
// (rows_avx2_wide): the same values in the same order, so the same bits.
//
// Batch invariance: output (m, n) is one accumulator that takes the
// columns in order, 16 at a time (AVX2: the low 8, then the high 8), with
// the same instructions whatever tile it sits in, then one horizontal sum
// and the scales. So row m of y depends on row m of x alone
// (tests/test_kernels.c checks M = 1..32 against one row at a time).
#include "gemv.h"
#include "gemv_tiles.h"
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

// ---- tiles (the structure of gemv.c) ------------------------------------------------
// Tile shapes, weight rows x activation rows: AVX2 3 x 4 (12 accumulators,
// the 16-bit patterns and the two widened halves of one weight row; the
// activations are FMA memory operands); one activation row 4 x 1 (memory-
// bound). One thread, in cache, 16 x 1536 x 576 and 16 x 576 x 1536 (us,
// load ~18): 3 x 4 528 / 493, 2 x 6 563 / 524, 2 x 5 566 / 538; earlier
// (load ~8): 4 x 2 755 / 731, 1 x 8 565 / 595, 1 x 10 553 / 598, 2 x 4
// 517 / 483. AVX-512 4 x 4, one row 8 x 1, as gemv.c (not measured: no
// AVX-512 machine was at hand).
#define AVX2_NB 3
#define AVX2_MB 4
#define AVX512_NB 4
#define AVX512_MB 4

// Software prefetch: while tile [n, n + nb) is computed, the lines
// prefetch_bytes past its end (tile bytes, spread over the tile's passes,
// one for each block of activation rows, and over each pass's chunks),
// never past the thread's rows (end). Counted from the tile's start (as
// before), a 4-row tile of 1536 columns (6 KiB) reached past the distance
// and the prefetch fell inside the tile being read: batch-1 products of
// 576 x 1536, 30 layers, one thread, best of 5, took 2.60-2.72 ms then and
// 2.39-2.41 ms now; the other shapes the same within noise.
static inline pf_state pf_plan(const uint8_t *w, int n, int nb, const uint8_t *end, int K, int pass, int passes,
                               int points) {
    pf_state f = {NULL, 0, 0};
    if (prefetch_bytes <= 0) return f;
    const char *base = (const char *)w + (size_t)(n + nb) * K + prefetch_bytes;
    long bytes = (long)nb * K;
    if ((const char *)end - base < bytes) bytes = (const char *)end - base;
    if (bytes <= 0) return f;
    long lines = (bytes + 63) / 64;
    long lo = lines * pass / passes, hi = lines * (pass + 1) / passes;
    f.p = base + 64 * lo;
    f.left = (int)(hi - lo);
    f.per = points > 0 ? (f.left + points - 1) / points : f.left;
    return f;
}



// ---- AVX2 + FMA + F16C ------------------------------------------------------------
#define T256F __attribute__((target("avx2,fma,f16c")))

// 16 codes -> 16 fp16 patterns (values / 2^8).
T256F static inline __m256i e4m3_h16_avx2(__m128i b) {
    __m256i v = _mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7);
    return _mm256_and_si256(v, _mm256_set1_epi16((short)0xBFFF));
}

// One 16-column chunk of a tile: row i's 16 codes at w0 + i * ldw, widened
// once, meet every activation row's two 8-column halves (row j at
// x0 + j * ldx): the low half's product enters accumulator (i, j) first,
// then the high half's. WI selects the widening: 0 the F16C one above
// (values / 2^8); 1 integer operations alone, the code sign-extended to 32
// bits, shifted left by 20 and with bits 30..27 cleared: the fp32 pattern
// s.0000eeee.mmm0..., whose value is the e4m3 value * 2^-120 exactly (e4m3
// subnormals become fp32 denormals; the caller scales x by 2^64 so that the
// products are normal numbers again, see pz_cpu_gemv_e4m3).
T256F static inline __attribute__((always_inline)) __m256 e4m3_int8_avx2(const uint8_t *p) {
    __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(v, 20), _mm256_set1_epi32((int)0x87F00000u)));
}

T256F static inline __attribute__((always_inline)) void
chunk_avx2(__m256 a[8][4], const float *x0, size_t ldx, const uint8_t *w0, size_t ldw, const int NB,
           const int MB, const int WI) {
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++) {
        const uint8_t *wi = w0 + (size_t)i * ldw;
        __m256i h = WI ? _mm256_setzero_si256() : e4m3_h16_avx2(_mm_loadu_si128((const __m128i *)wi));
        __m256 lo = WI ? e4m3_int8_avx2(wi) : _mm256_cvtph_ps(_mm256_castsi256_si128(h));
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) a[i][j] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x0 + (size_t)j * ldx), a[i][j]);
        __m256 hi = WI ? e4m3_int8_avx2(wi + 8) : _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) a[i][j] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x0 + (size_t)j * ldx + 8), a[i][j]);
    }
}

// NB weight rows from n against MB activation rows: one accumulator per
// output, the columns in 16-column chunks in order, the tail (K % 16
// columns) from zero-padded copies of the weight bytes and of the
// activations, so an output's instructions do not depend on the tile.
T256F static inline __attribute__((always_inline)) void
tile_avx2(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int n, int K, float sc, const float *ch,
          int acc, pf_state pf, const int NB, const int MB, const int WI) {
    __m256 a[8][4];
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) a[i][j] = _mm256_setzero_ps();
    const uint8_t *wr = w + (size_t)n * K;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        pf_step(&pf);
        chunk_avx2(a, x + k, (size_t)ldx, wr + k, (size_t)K, NB, MB, WI);
    }
    if (k < K) {
        uint8_t tw[8][16];
        float tx[4][16];
        memset(tw, 0, sizeof tw);
        memset(tx, 0, sizeof tx);
        for (int i = 0; i < NB; i++) memcpy(tw[i], wr + (size_t)i * K + k, (size_t)(K - k));
        for (int j = 0; j < MB; j++) memcpy(tx[j], x + (size_t)j * ldx + k, sizeof(float) * (size_t)(K - k));
        chunk_avx2(a, tx[0], 16, tw[0], 16, NB, MB, WI);
    }
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) store_out(y, ldy, j, n + i, pz_hsum256(a[i][j]), sc, ch, acc);
}

// Calls TILE(nb, mb) with constants: nb 1..8 when mb is 1, else nb 1..3, mb 2..4.
#define TILE_SWITCH_AVX2(TILE, nb, mb)                                                             \
    do {                                                                                           \
        if ((mb) == 1) {                                                                           \
            TILE_M1(TILE, nb)                                                                      \
        } else {                                                                                   \
            switch ((nb) * 8 + (mb)) {                                                             \
            TILE_CASE(TILE, 1, 2) TILE_CASE(TILE, 2, 2) TILE_CASE(TILE, 3, 2)                      \
            TILE_CASE(TILE, 1, 3) TILE_CASE(TILE, 2, 3) TILE_CASE(TILE, 3, 3)                      \
            TILE_CASE(TILE, 1, 4) TILE_CASE(TILE, 2, 4)                                            \
            default: TILE(3, 4); break;                                                            \
            }                                                                                      \
        }                                                                                          \
    } while (0)

// Weight rows [n0, n1) a tile at a time, all activation rows against each
// tile before the next: the weights stream from memory once per call.
T256F static void rows_avx2(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int M, int n0,
                            int n1, int K, float sc, const float *ch, int acc, int wint) {
    const int nbmax = M == 1 ? 4 : AVX2_NB, passes = m_passes(M, AVX2_MB), points = (K + 15) / 16;
    const uint8_t *end = w + (size_t)n1 * K;
    for (int n = n0; n < n1; n += nbmax) {
        int nb = n1 - n < nbmax ? n1 - n : nbmax;
        for (int m = 0, mb, pass = 0; m < M; m += mb, pass++) {
            mb = m_tile(M - m, AVX2_MB);
            pf_state pf = pf_plan(w, n, nb, end, K, pass, passes, points);
            const float *xm = x + (size_t)m * ldx;
            float *ym = y + (size_t)m * ldy;
#define T(NB, MB) tile_avx2(ym, ldy, xm, ldx, w, n, K, sc, ch, acc, pf, NB, MB, 0)
#define TI(NB, MB) tile_avx2(ym, ldy, xm, ldx, w, n, K, sc, ch, acc, pf, NB, MB, 1)
            if (wint)
                TILE_SWITCH_AVX2(TI, nb, mb);
            else
                TILE_SWITCH_AVX2(T, nb, mb);
#undef T
#undef TI
        }
    }
}

// ---- AVX2, several activation rows: each tile widened once into L1 ----------------
// With M rows the register widening above repeats per block of activation
// rows (ceil(M / 4) times per weight row) and left the 16-row product
// compute-bound below bf16's (results/fp8_speed.md). Here a thread widens
// each tile of WIDE_NB weight rows once into its own scratch, and runs every
// block of activation rows against it with gemv.c's bf16 tile (5 x 2,
// widening by one unpack per 8 weights). The values are exactly the vectors
// chunk_avx2 makes: both widenings' fp32 results have 16 zero low bits, so
// they are stored as bf16 (half the bytes of fp32: a tile of 5 rows of 1536
// stays in L1), and the bf16 of each 16 columns is stored as 0-3, 8-11,
// 4-7, 12-15 so that unpacking with zeros gives columns 0-7, then 8-15, in
// order: each accumulator takes the same products in the same order as in
// chunk_avx2 (per 16 columns, the low 8, then the high 8) and output (m, n)
// is bit for bit the register path's, whatever M is. On the AVX2 EPYC here
// this pays from 16 rows: the bf16 tile keeps the FP pipes busy (2 FMAs
// and 1 unpack per 8 weights and row pair), so the widening cannot hide
// behind it and costs ~12 % at 16 rows, a little less than the register
// path's repeated but overlapped widening. Tried and slower: fp32 tiles
// (fp32 5 x 2 loop alone 75 GFLOP/s at 16 x 960 x 576, 4 x 3 82, against
// this loop's 79), widening the next tile inside the FMA loop (53-56; not
// understood, perhaps the stores holding up the loads), or after each pass
// of the tile (no gain).
#define WIDE_NB 5
#define WIDE_MB 2
#ifndef PZ_GEMV_FP8_WIDE_M
// From this many activation rows on. One thread, in cache, GFLOP/s widened
// once / in registers (bf16 gemv), `test_kernels perf-rows`: 960 x 576 at
// M = 8 61 / 67 (78), 12 67 / 67 (82), 16 70 / 67 (82), 32 76 / 67 (83);
// 576 x 1536 at 12 70 / 71 (86), 16 74 / 71 (87), 32 79 / 72 (86). The
// widening is paid once, the bf16 tile then runs at gemv.c's speed
// (results/fp8_speed.md).
#define PZ_GEMV_FP8_WIDE_M 16
#endif
static int wide_min_m = PZ_GEMV_FP8_WIDE_M;  // pz_cpu_gemv_e4m3_set_wide_m

void pz_cpu_gemv_e4m3_set_wide_m(int m) { wide_min_m = m < 0 ? PZ_GEMV_FP8_WIDE_M : m; }

// Floats (4 bytes) of a thread's widened tile: WIDE_NB rows of K rounded up
// to 16 bf16, plus 16 to start it on a 64-byte line.
static size_t wide_thread_floats(int K) {
    return (size_t)WIDE_NB * (size_t)((K + 15) / 16 * 8) + 16;
}
static float *line_up(float *p) { return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63); }

// Rows [n, n + nb) of w widened into ws: per 16 columns, row i's 16 bf16 at
// ws[((k / 16) * WIDE_NB + i) * 16], in the order above (one pointer with
// constant offsets reaches a chunk's rows); K rounded up to 16 with zero
// codes, as tile_avx2 pads its tail. WI: chunk_avx2's integer widening
// (sign-extend, << 4, & 0x87F0 is the top half of its fp32 pattern), else
// its F16C one (the fp32 values' top halves).
T256F static inline __attribute__((always_inline)) __m256i widen16_avx2(const uint8_t *p, const int WI) {
    __m128i b = _mm_loadu_si128((const __m128i *)p);
    if (WI) {
        // the codes reordered 0-3, 8-11, 4-7, 12-15 first (one byte shuffle)
        b = _mm_shuffle_epi8(b, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15));
        __m256i v = _mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 4);
        return _mm256_and_si256(v, _mm256_set1_epi16((short)0x87F0));
    }
    __m256i h = e4m3_h16_avx2(b);
    __m256i lo = _mm256_castps_si256(_mm256_cvtph_ps(_mm256_castsi256_si128(h)));
    __m256i hi = _mm256_castps_si256(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
    // per 128-bit lane: lo's 4 top halves, then hi's: 0-3, 8-11 | 4-7, 12-15
    return _mm256_packus_epi32(_mm256_srli_epi32(lo, 16), _mm256_srli_epi32(hi, 16));
}

T256F static void widen_rows_avx2(uint16_t *ws, const uint8_t *w, int n, int nb, int K, const int WI) {
    const int K16 = K / 16 * 16;
    for (int i = 0; i < nb; i++) {
        const uint8_t *wr = w + (size_t)(n + i) * K;
        uint16_t *d = ws + (size_t)i * 16;
        int k = 0;
        for (; k < K16; k += 16, d += 16 * WIDE_NB) _mm256_store_si256((__m256i *)d, widen16_avx2(wr + k, WI));
        if (k < K) {
            uint8_t tw[16];
            memset(tw, 0, sizeof tw);
            memcpy(tw, wr + k, (size_t)(K - k));
            _mm256_store_si256((__m256i *)d, widen16_avx2(tw, WI));
        }
    }
}

// One 16-column chunk: the widened rows at w0 (16 bf16 apart) against MB
// activation rows' 16 columns at x0 (as bf16_chunk_avx2 in gemv.c, the
// activations in natural order).
T256F static inline __attribute__((always_inline)) void
wide_chunk_avx2(__m256 a[8][4], const float *x0, size_t ldx, const uint16_t *w0, const int NB, const int MB) {
    const __m256i z = _mm256_setzero_si256();
    __m256 xv[4];
#pragma GCC unroll 4
    for (int j = 0; j < MB; j++) xv[j] = _mm256_loadu_ps(x0 + (size_t)j * ldx);
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++) {
        __m256i v = _mm256_load_si256((const __m256i *)(w0 + 16 * i));
        __m256 lo = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, v));
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) a[i][j] = _mm256_fmadd_ps(lo, xv[j], a[i][j]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < MB; j++) xv[j] = _mm256_loadu_ps(x0 + (size_t)j * ldx + 8);
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++) {
        __m256i v = _mm256_load_si256((const __m256i *)(w0 + 16 * i));
        __m256 hi = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, v));
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) a[i][j] = _mm256_fmadd_ps(hi, xv[j], a[i][j]);
    }
}

// NB widened rows (ws) against MB activation rows, 16 columns at a time;
// the tail (K % 16 columns) with zero-padded copies of the activations
// against the zero-padded widened rows, as in tile_avx2.
T256F static inline __attribute__((always_inline)) void
tile_wide_avx2(float *y, int ldy, const float *x, int ldx, const uint16_t *ws, int n, int K, float sc,
               const float *ch, int acc, pf_state pf, const int NB, const int MB) {
    __m256 a[8][4];
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) a[i][j] = _mm256_setzero_ps();
    const uint16_t *wc = ws;
    int k = 0;
    for (; k + 16 <= K; k += 16, wc += 16 * WIDE_NB) {
        pf_step(&pf);
        wide_chunk_avx2(a, x + k, (size_t)ldx, wc, NB, MB);
    }
    if (k < K) {
        float tx[4][16];
        memset(tx, 0, sizeof tx);
        for (int j = 0; j < MB; j++) memcpy(tx[j], x + (size_t)j * ldx + k, sizeof(float) * (size_t)(K - k));
        wide_chunk_avx2(a, tx[0], 16, wc, NB, MB);
    }
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) store_out(y, ldy, j, n + i, pz_hsum256(a[i][j]), sc, ch, acc);
}

// Calls TILE(nb, mb) with constants: nb 1..5, mb 1..2.
#define TILE_SWITCH_WIDE(TILE, nb, mb)                                                             \
    do {                                                                                           \
        switch ((nb) * 8 + (mb)) {                                                                 \
        TILE_CASE(TILE, 1, 1) TILE_CASE(TILE, 2, 1) TILE_CASE(TILE, 3, 1) TILE_CASE(TILE, 4, 1)    \
        TILE_CASE(TILE, 5, 1) TILE_CASE(TILE, 1, 2) TILE_CASE(TILE, 2, 2) TILE_CASE(TILE, 3, 2)    \
        TILE_CASE(TILE, 4, 2)                                                                      \
        default: TILE(5, 2); break;                                                                \
        }                                                                                          \
    } while (0)

// Weight rows [n0, n1), WIDE_NB at a time widened into ws (line-aligned),
// all activation rows against each tile before the next.
T256F static void rows_avx2_wide(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int M, int n0,
                                 int n1, int K, float sc, const float *ch, int acc, int wint, uint16_t *ws) {
    const int passes = m_passes(M, WIDE_MB), points = (K + 15) / 16;
    const uint8_t *end = w + (size_t)n1 * K;
    for (int n = n0; n < n1; n += WIDE_NB) {
        int nb = n1 - n < WIDE_NB ? n1 - n : WIDE_NB;
        if (wint)
            widen_rows_avx2(ws, w, n, nb, K, 1);
        else
            widen_rows_avx2(ws, w, n, nb, K, 0);
        for (int m = 0, mb, pass = 0; m < M; m += mb, pass++) {
            mb = m_tile(M - m, WIDE_MB);
            pf_state pf = pf_plan(w, n, nb, end, K, pass, passes, points);
            const float *xm = x + (size_t)m * ldx;
            float *ym = y + (size_t)m * ldy;
#define T(NB, MB) tile_wide_avx2(ym, ldy, xm, ldx, ws, n, K, sc, ch, acc, pf, NB, MB)
            TILE_SWITCH_WIDE(T, nb, mb);
#undef T
        }
    }
}
#undef TILE_SWITCH_WIDE

// The alternative measured against the shift above: 8 codes at a time
// through a gather from the 256-entry decode table (values not / 2^8), one
// weight row and one activation row at a time.
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

// 16 codes (the masked ones zero) -> 16 fp32 values / 2^8.
T512F static inline __m512 e4m3_f32_avx512(__m128i b) {
    __m256i v = _mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7);
    return _mm512_cvtph_ps(_mm256_and_si256(v, _mm256_set1_epi16((short)0xBFFF)));
}

// NB weight rows from n against MB activation rows, 16 columns per chunk
// (the tail masked), one accumulator per output.
T512F static inline __attribute__((always_inline)) void
tile_avx512(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int n, int K, float sc,
            const float *ch, int acc, pf_state pf, const int NB, const int MB) {
    __m512 a[8][4];
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) a[i][j] = _mm512_setzero_ps();
    const uint8_t *wr = w + (size_t)n * K;
    for (int k = 0; k < K; k += 16) {
        pf_step(&pf);
        __mmask16 mk = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1);
        __m512 xv[4];
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) xv[j] = _mm512_maskz_loadu_ps(mk, x + (size_t)j * ldx + k);
#pragma GCC unroll 8
        for (int i = 0; i < NB; i++) {
            __m512 wv = e4m3_f32_avx512(_mm_maskz_loadu_epi8(mk, wr + (size_t)i * K + k));
#pragma GCC unroll 4
            for (int j = 0; j < MB; j++) a[i][j] = _mm512_fmadd_ps(wv, xv[j], a[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < NB; i++)
#pragma GCC unroll 4
        for (int j = 0; j < MB; j++) store_out(y, ldy, j, n + i, _mm512_reduce_add_ps(a[i][j]), sc, ch, acc);
}


T512F static void rows_avx512(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int M, int n0,
                              int n1, int K, float sc, const float *ch, int acc) {
    const int nbmax = M == 1 ? 8 : AVX512_NB, passes = m_passes(M, AVX512_MB), points = (K + 15) / 16;
    const uint8_t *end = w + (size_t)n1 * K;
    for (int n = n0; n < n1; n += nbmax) {
        int nb = n1 - n < nbmax ? n1 - n : nbmax;
        for (int m = 0, mb, pass = 0; m < M; m += mb, pass++) {
            mb = m_tile(M - m, AVX512_MB);
            pf_state pf = pf_plan(w, n, nb, end, K, pass, passes, points);
            const float *xm = x + (size_t)m * ldx;
            float *ym = y + (size_t)m * ldy;
#define T(NB, MB) tile_avx512(ym, ldy, xm, ldx, w, n, K, sc, ch, acc, pf, NB, MB)
            TILE_SWITCH_512(T, nb, mb);
#undef T
        }
    }
}
#undef TILE_SWITCH_AVX2

static int gather_variant;     // pz_cpu_gemv_e4m3_use_gather (measurements only)
static int int_widening = 1;  // pz_cpu_gemv_e4m3_use_int (measurements only)

void pz_cpu_gemv_e4m3_use_gather(int on) { gather_variant = on; }
void pz_cpu_gemv_e4m3_use_int(int on) { int_widening = on; }

// x * 2^64 (M x K), then one widened tile per thread (rows_avx2_wide).
static size_t x_floats(int M, int K) { return ((size_t)M * (size_t)K + 15) / 16 * 16; }

size_t pz_cpu_gemv_e4m3_scratch_floats(int M, int K, int n_threads) {
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    return 16 + x_floats(M, K) + (size_t)nt * wide_thread_floats(K);
}

void pz_cpu_gemv_e4m3(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int M, int N,
                      int K, float scale, const float *ch_scale, int accumulate, int n_threads, float *scratch) {
    if (M <= 0 || N <= 0) return;
    pz_isa isa = pz_cpu_isa();
    if (isa >= PZ_ISA_AVX2 && !__builtin_cpu_supports("f16c")) isa = PZ_ISA_PLAIN;
    const int nbt = isa >= PZ_ISA_AVX512 ? AVX512_NB : AVX2_NB;  // a thread's rows: whole tiles
    int nblk = (N + nbt - 1) / nbt;
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if (nt > nblk) nt = nblk;
    // With several rows the product turns compute-bound: the weight bytes
    // count (M + 2) / 3 times (as in gemv.c).
    size_t wbytes = (size_t)N * (size_t)K * (size_t)(M + 2) / 3;
    size_t per = isa >= PZ_ISA_AVX512 ? PZ_GEMV_FP8_BYTES_PER_THREAD : PZ_GEMV_FP8_BYTES_PER_THREAD_AVX2;
    if ((size_t)nt > wbytes / per) nt = (int)(wbytes / per);
    if (nt < 1) nt = 1;
    float sc = scale * 256.0f;  // the F16C widening's values are e4m3 / 2^8
    // AVX2 with a scratch: the integer widening (chunk_avx2), on x * 2^64 in
    // the scratch. Weights e4m3 * 2^-120 times x * 2^64 are the F16C path's
    // (e4m3 / 2^8) * x times 2^-48 exactly, so the sums round identically
    // and y is bit for bit the F16C path's, as long as no product is below
    // fp32's normal range (|e4m3 * x| < 2^-70, where gradual underflow
    // loses low bits) and |x| < 2^64. It needs denormal inputs honoured: with
    // MXCSR.DAZ set (subnormal codes would read as 0) the F16C path runs.
    int wint = isa == PZ_ISA_AVX2 && scratch && !gather_variant && !(_mm_getcsr() & 0x40) && int_widening;
    int wide = isa == PZ_ISA_AVX2 && scratch && !gather_variant && wide_min_m > 0 && M >= wide_min_m;
    if (scratch) scratch = line_up(scratch);
    float *tiles = scratch ? scratch + x_floats(M, K) : NULL;
    if (wint) {
        const float up = 0x1p64f;
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) scratch[(size_t)m * K + k] = x[(size_t)m * ldx + k] * up;
        x = scratch;
        ldx = K;
        sc = scale * 0x1p56f;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = omp_get_thread_num(), T = omp_get_num_threads();
        int b0 = (int)((long)nblk * t / T), b1 = (int)((long)nblk * (t + 1) / T);
        int n0 = b0 * nbt, n1 = b1 * nbt < N ? b1 * nbt : N;
        if (n0 < n1) {
            if (isa >= PZ_ISA_AVX512)
                rows_avx512(y, ldy, x, ldx, w, M, n0, n1, K, sc, ch_scale, accumulate);
            else if (isa == PZ_ISA_AVX2 && gather_variant)
                rows_avx2_gather(y, ldy, x, ldx, w, M, n0, n1, K, sc, ch_scale, accumulate);
            else if (wide)
                rows_avx2_wide(y, ldy, x, ldx, w, M, n0, n1, K, sc, ch_scale, accumulate, wint,
                               (uint16_t *)line_up(tiles + (size_t)t * wide_thread_floats(K)));
            else if (isa == PZ_ISA_AVX2)
                rows_avx2(y, ldy, x, ldx, w, M, n0, n1, K, sc, ch_scale, accumulate, wint);
            else
                rows_ref(y, ldy, x, ldx, w, M, n0, n1, K, scale, ch_scale, accumulate);
        }
    }
}
