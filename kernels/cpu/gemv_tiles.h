// gemv_tiles.h — the dispatch macros of the register-tiled small-M kernels
// (gemv.c for f32/bf16, gemv_fp8.c for e4m3): a tile's shape (nb weight rows
// × mb activation rows) must be a compile-time constant for its accumulators
// to live in registers, so the run-time remainder shapes are switched onto
// constant instantiations of the caller's TILE(nb, mb) macro. Each kernel
// file adds its own AVX2 switch (their AVX2 tiles differ); internal to
// kernels/cpu.
#ifndef PZ_GEMV_TILES_H
#define PZ_GEMV_TILES_H

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
