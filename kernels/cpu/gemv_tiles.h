// gemv_tiles.h — what the register-tiled small-M kernels share
// (gemv.c for f32/bf16, gemv_fp8.c for e4m3): a tile's shape (nb weight rows
// × mb activation rows) must be a compile-time constant for its accumulators
// to live in registers, so the run-time remainder shapes are switched onto
// constant instantiations of the caller's TILE(nb, mb) macro (each kernel
// file adds its own AVX2 switch: their AVX2 tiles differ); plus the blocking
// of activation rows and the prefetch stepping. Internal to kernels/cpu.
#ifndef PZ_GEMV_TILES_H
#define PZ_GEMV_TILES_H

#include <immintrin.h>

// Activation rows in the next tile when `left` remain, for tiles of at most
// `mx` rows, avoiding a 1-row tile after wider ones where it can (a 1-row
// tile has fewer accumulator chains to hide the FMA latency with): with
// mx = 4, 16 = 4+4+4+4, 5 = 3+2, 9 = 4+3+2; with mx = 2, 16 = 2 x 8, 5 = 2+2+1.
static inline int m_tile(int left, int mx) {
    return left == mx + 1 ? (left + 1) / 2 : left < mx ? left : mx;
}

// Blocks of activation rows (passes) m_tile makes of M.
static inline int m_passes(int M, int mx) {
    int p = 0;
    for (int m = 0; m < M; m += m_tile(M - m, mx)) p++;
    return p;
}

// Software prefetch spread over a tile's passes: each kernel plans which
// lines (its own pf_plan), the tile loop fetches `per` of them at each point.
typedef struct {
    const char *p;  // next line to fetch
    int left;       // lines this pass still fetches
    int per;        // lines per prefetch point
} pf_state;

static inline __attribute__((always_inline)) void pf_step(pf_state *f) {
    for (int i = 0; i < f->per && f->left > 0; i++, f->left--, f->p += 64) _mm_prefetch(f->p, _MM_HINT_T0);
}

// Calls TILE(nb, 1) with a constant nb in 1..8.
#define TILE_M1(TILE, nb)                                                                          \
    switch (nb) {                                                                                  \
    case 1: TILE(1, 1); break;                                                                     \
    case 2: TILE(2, 1); break;                                                                     \
    case 3: TILE(3, 1); break;                                                                     \
    case 4: TILE(4, 1); break;                                                                     \
    case 5: TILE(5, 1); break;                                                                     \
    case 6: TILE(6, 1); break;                                                                     \
    case 7: TILE(7, 1); break;                                                                     \
    default: TILE(8, 1); break;                                                                    \
    }
#define TILE_CASE(TILE, nb, mb) case (nb) * 8 + (mb): TILE(nb, mb); break;
// Calls TILE(nb, mb) with constants: nb 1..8 when mb is 1, else nb 1..4, mb 2..4.
#define TILE_SWITCH_512(TILE, nb, mb)                                                              \
    do {                                                                                           \
        if ((mb) == 1) {                                                                           \
            TILE_M1(TILE, nb)                                                                      \
        } else {                                                                                   \
            switch ((nb) * 8 + (mb)) {                                                             \
            TILE_CASE(TILE, 1, 2) TILE_CASE(TILE, 2, 2) TILE_CASE(TILE, 3, 2) TILE_CASE(TILE, 4, 2) \
            TILE_CASE(TILE, 1, 3) TILE_CASE(TILE, 2, 3) TILE_CASE(TILE, 3, 3) TILE_CASE(TILE, 4, 3) \
            TILE_CASE(TILE, 1, 4) TILE_CASE(TILE, 2, 4) TILE_CASE(TILE, 3, 4)                       \
            default: TILE(4, 4); break;                                                            \
            }                                                                                      \
        }                                                                                          \
    } while (0)

#endif
