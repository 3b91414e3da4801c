// gemv.h — y[M,N] = x[M,K]·W[N,K]^T for small M (decode: one row per
// sequence, up to a few dozen sequences): each weight is streamed from
// memory once per call and used for all M rows of x from registers and L1,
// so one row is memory-bound and 16 rows run near the FMA peak. AVX-512 or
// AVX2+FMA when the processor has it (chosen at run time, see isa.h), plain
// C otherwise. bf16 weights are widened to fp32 exactly and multiplied with
// fp32 activations (no activation rounding). Row m of y depends only on row
// m of x, with the same summation order whatever M is, so a sequence's
// result does not depend on what it is batched with (at a given ISA level:
// the levels sum in different orders).
#ifndef PZ_CPU_GEMV_H
#define PZ_CPU_GEMV_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"
#include "isa.h"

// Any M works; it is meant for M <= PZ_GEMV_MAX_M. accumulate: y += instead of y =.
// Parallel over N with n_threads OpenMP threads. scratch: NULL, or at least
// pz_cpu_gemv_scratch_floats(M, K) floats, where the bf16 kernels keep a
// permuted copy of x: with AVX-512 it enables the faster bf16 kernel, with
// AVX2 the vector bf16 kernel at all (plain C without it); fp32 weights
// never need it.
void pz_cpu_gemv(float *y, int ldy, const float *x, int ldx, const void *w, pz_dt wt,
                 int M, int N, int K, int accumulate, int n_threads, float *scratch);
size_t pz_cpu_gemv_scratch_floats(int M, int K);

// The same product with e4m3 weights (kernels/fp8.h; gemv_fp8.c): y (= or
// +=) scale · (ch_scale ? ch_scale[n] : 1) · Σ_k x[m,k] · e4m3(w[n,k]).
// The bytes are widened in registers; fp32 accumulation, and the scales are
// applied once per output. ch_scale: NULL or N floats. scratch: NULL, or at
// least pz_cpu_gemv_e4m3_scratch_floats(M, K, n_threads) floats (n_threads
// as passed to pz_cpu_gemv_e4m3), where the AVX2 kernel keeps x * 2^64 for
// its integer-only widening (gemv_fp8.c; faster than the F16C one, and the
// same results unless |x| >= 2^64 or a product's magnitude is below 2^-70;
// without it, or with MXCSR.DAZ set, F16C) and, from a few rows on, each
// thread's tile of weight rows widened once for all rows (bit for bit the
// same results: the same widened values and order).
void pz_cpu_gemv_e4m3(float *y, int ldy, const float *x, int ldx, const uint8_t *w, int M, int N,
                      int K, float scale, const float *ch_scale, int accumulate, int n_threads, float *scratch);
size_t pz_cpu_gemv_e4m3_scratch_floats(int M, int K, int n_threads);
// For measurements: 0 makes the AVX2 level widen by F16C even with a
// scratch, 1 (the default) by integer operations then.
void pz_cpu_gemv_e4m3_use_int(int on);
// For measurements: 1 makes the AVX2 level widen e4m3 by a gather from the
// decode table instead (one row at a time), 0 (the default) by the shift.
void pz_cpu_gemv_e4m3_use_gather(int on);
// For measurements: the software prefetch distance of the vector e4m3
// kernels in weight bytes (0: prefetch the line being read, i.e. none; < 0:
// back to the default, PZ_GEMV_FP8_PREFETCH in gemv_fp8.c). Not thread-safe
// against running products.
void pz_cpu_gemv_e4m3_set_prefetch(int bytes);
// For measurements: the AVX2 level widens each tile of weight rows once into
// the scratch from m activation rows on (0: never; < 0: back to the default,
// PZ_GEMV_FP8_WIDE_M in gemv_fp8.c). Not thread-safe against running products.
void pz_cpu_gemv_e4m3_set_wide_m(int m);
// For measurements and tests: the AVX2 level's bf16 kernel uses 6 x 2 tiles
// (12 accumulators) from m activation rows on, 5 x 2 below (0: never; < 0:
// back to the default, PZ_GEMV_TILE6_M in gemv.c). Not thread-safe against
// running products.
void pz_cpu_gemv_set_tile6_m(int m);
// For measurements: the AVX2 kernel's software prefetch of weights,
// `tiles` weight tiles ahead of the one being computed (0: none; < 0: back
// to 1, the default). Not thread-safe against running products.
void pz_cpu_gemv_set_prefetch(int tiles);
// For measurements: 0 makes the AVX2 kernel work out each pass's prefetch
// share by pf_plan's divisions (the old way, and only 1 tile ahead), 1 (the
// default; < 0: back to it) once per call. Results unchanged. Not
// thread-safe against running products.
void pz_cpu_gemv_set_pf_flat(int on);
// For measurements: 0 makes the AVX2 6 x 2 bf16 tile step its prefetches
// by pf_step at every iteration (the old way), 1 (the default; < 0: back to
// it) prefetch a line at every iteration without tests where a pass's share
// allows. Results unchanged. Not thread-safe against running products.
void pz_cpu_gemv_set_pf_clamp(int on);
// Work sharing: with rows > 0 the AVX2 level's threads take their ranges in
// chunks of about `rows` weight rows and, done with their own, claim the
// chunks left in the others' (a thread woken late, or slowed by another
// process, leaves its tail to the one that is done); 0 keeps fixed ranges.
// Until this is called, the environment variable PZ_GEMV_STEAL_ROWS gives it
// (unset: PZ_GEMV_STEAL_DEFAULT). Results unchanged, bit for bit. Quiet
// serve A/B, 5 rounds (results/serve_cpu.md, 19:35 UTC): 16-stream ITL p50
// 1.1-5.7 % lower in every round, one stream ~1 % faster. Set it only
// around products, not while one runs.
#define PZ_GEMV_STEAL_DEFAULT 60
void pz_cpu_gemv_set_steal(int rows);

// matmul.c sends products of up to this many rows here.
#define PZ_GEMV_MAX_M 32
// Rows up to which every weight type stays in its row-invariant register
// kernel: the CPU backend's invariant_rows. (Every weight type, e4m3
// included, now stays there up to PZ_GEMV_MAX_M rows, matmul.c, so 32 would
// also keep results invariant; 16 is what the engine and server were
// measured with.)
#define PZ_GEMV_INVARIANT_M 16

#endif
