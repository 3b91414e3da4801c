// profile.h — measured cost of one sub-block variant on the local device
// (docs/ARCHITECTURE.md step 2, "Profiling"), and calibration of the local CPU as a
// hardware description for the roofline model (step 3).
//
// A variant is timed in isolation with the runtime's own backend ops, in the
// same sequence the engine runs them (runtime/engine.c forward(): fused
// [q;k;v] and [gate;up] products, RoPE, KV writes, attention over the
// backend's cache layout, residual accumulate), on random weights of the
// variant's shapes: the time depends on the shapes only, not on the values.
// So each distinct (sub-block kind, size) of a library is profiled once and
// the result holds for every layer that has that variant (the caller shares
// it; `puzzle profile` stores one row per variant, and the run database's
// block_profiles view joins it to every block).
//
// Scenarios (pz_scenario, costmodel.h): prefill B×S = B sequences of S
// tokens from an empty cache (B·S rows through the products in one pass —
// the engine would split prompts beyond its max_batch into chunks — causal
// attention, S KV writes per sequence); decode B×C = B sequences each adding
// one token to a KV cache already holding C positions (random contents).
//
// Weights are read cache-cold: each run uses the next of several copies of
// the variant's weights (p->cold_bytes), as in a full model whose weights do
// not fit the caches; a single copy stayed in L2/L3 and timed decode 1.5-2x
// faster than a whole-model pass can run.
//
// Several variants are timed together, interleaved (pz_profile_variants):
// `warmup` untimed rounds, then `repeats` timed rounds, each of which runs
// every variant once, in an order that rotates by one each round. On a shared
// machine a change of load then falls on every variant alike instead of on
// whichever variant was being timed at the time (timed one after another, a
// parent's FFN measured during a burst looked 1.8x slower than in a quiet
// run while the narrow FFNs measured after it did not, and the search chose
// a child too slow for its target). Per variant the median over rounds and
// the 10th/90th percentiles (nearest rank) are reported: the median, not the
// minimum, because a burst covering fewer than half the rounds leaves it
// unmoved, while the minimum is one lucky run (a single cache- or
// turbo-favoured round sets it). Interleaving cannot undo load that slows
// variants unequally (memory-bandwidth contention slows the wide,
// memory-bound products more than narrow ones): under sustained load the
// wide/narrow ratio of the p10s spread less than that of the medians
// (measured with bench/profile_order.sh). A noop sub-block runs
// nothing in the engine, so it is not timed: its result is exactly 0 with
// repeats = 0.
#ifndef PZ_PROFILE_H
#define PZ_PROFILE_H

#include <stddef.h>

#include "backend.h"
#include "config.h"
#include "costmodel.h"

typedef enum { PZ_PROF_ATTN = 0, PZ_PROF_FFN = 1, PZ_PROF_EMBED = 2, PZ_PROF_HEAD = 3 } pz_prof_part;

typedef struct {
    pz_prof_part part;
    union {                 // the kind, typed by the part (unused for EMBED/HEAD)
        pz_attn_kind attn;  // PZ_PROF_ATTN
        pz_ffn_kind ffn;    // PZ_PROF_FFN
    };
    int size;  // n_kv (gqa) or n_ff (swiglu); 0 otherwise
} pz_prof_variant;

typedef struct {
    pz_dt dtype;   // weight type of the products (PZ_DT_F32, PZ_DT_BF16, or PZ_DT_E4M3: fp8
                   // matrices with a tensor scale; embedding and head in bf16 as in fp8 models)
    int warmup;    // untimed runs first (default 2)
    int repeats;   // timed runs (default 10): rounds when timed together
    unsigned long long seed;  // random weights (default 1)
    size_t cold_bytes;        // rotate over copies of the weights so that at least this many bytes
                              // of weights (of all variants timed together, at most 32 copies) are
                              // read between two runs of one copy: each run reads its weights from
                              // memory as in a full model whose weights exceed the caches;
                              // 0: one copy, cache-warm timings (default 256 MiB)
    size_t max_group_bytes;   // variants timed together hold at most this many bytes of weights
                              // (one copy each; more rows are timed in consecutive groups, each
                              // interleaved; a variant alone may exceed it); 0: no limit
                              // (default 4 GiB)
    int sequential;           // 1: the old order, all runs of one variant, then the next's
                              // (for comparisons and tests; default 0, interleaved rounds)
    // Test hook, a deterministic burst of load: timed runs burst_first ..
    // burst_first + burst_count - 1 of one pz_profile_variants call (numbered in
    // the order they run) are recorded as burst_factor times their own time, as
    // if preempted (booked, not slept). burst_count 0: none (default).
    int burst_first, burst_count;
    double burst_factor;
    // Test hook: when set, a timed run of variant i is recorded as test_times[i]
    // seconds instead of its measured time (the burst still applies), so the order
    // and the medians are checked free of the machine's noise. NULL: measured (default).
    const double *test_times;
} pz_prof_params;

pz_prof_params pz_prof_default_params(void);

typedef struct {
    double median_s, p10_s, p90_s;  // seconds per run of the sub-block
    int repeats;                    // timed runs (0: nothing to time, noop)
    double param_bytes;             // weights of the variant as the runtime stores them (norm included)
    double kv_bytes_per_token;      // KV cache per token of context, as the CPU cache stores it (fp32 K and V)
} pz_prof_result;

// "attn", "ffn", "embed", "head".
const char *pz_prof_part_name(pz_prof_part p);
// A variant's kind name ("gqa", "swiglu", ..., "embed", "head").
const char *pz_prof_kind_name(const pz_prof_variant *v);

// Parses "prefill:BxS" or "decode:BxC" (B, S, C ≥ 1). 0 or -1 with err.
int pz_prof_scenario_parse(const char *s, pz_scenario *out, char *err);
// Writes the canonical form ("prefill:1x512") into buf.
void pz_prof_scenario_name(const pz_scenario *s, char *buf, size_t cap);

// Times variant v of a model shaped like c (hidden, n_head, head_dim, vocab,
// rope_theta, norm_eps are read) for scenario s on backend b. Allocates its
// buffers from b and frees them before returning. 0, or -1 with err.
int pz_profile_variant(pz_backend *b, const pz_config *c, const pz_prof_variant *v, const pz_scenario *s,
                       const pz_prof_params *p, pz_prof_result *out, char *err);

// Times n variants together, variant i under scenario s[i] (pairs may repeat
// a variant under several scenarios), in interleaved rounds (above; or one
// after another with p->sequential) into out[0..n). All n variants' buffers
// and weight copies are held at once (up to p->max_group_bytes of weights,
// plus the copies p->cold_bytes asks for); freed before returning. 0, or -1
// with err.
int pz_profile_variants(pz_backend *b, const pz_config *c, int n, const pz_prof_variant *v, const pz_scenario *s,
                        const pz_prof_params *p, pz_prof_result *out, char *err);

// One line describing the local CPU and thread count, e.g.
// "cpu: Intel(R) Xeon(R) ... (2 threads)", from /proc/cpuinfo.
void pz_profile_device_desc(const pz_backend *b, char *buf, size_t cap);

// ---- calibration -------------------------------------------------------------------
// Rates of the local CPU measured with the runtime's kernels:
//   gemm_f32 / gemm_bf16: FLOP/s of b->matmul on prefill-shaped products
//     (M = 512 rows; N×K = 1536×576, 576×1536, 1728×576: the reference
//     parent's FFN and QKV shapes), the median over shapes of each shape's
//     median rate;
//   mem_bw: bytes/s of weight streaming, the M = 1 bf16 product on the
//     reference parent's decode shapes (3072x576, 576x1536, 49152x576),
//     each rotating over ≥ 256 MiB of copies so none is in cache (what
//     decode does; the roofline's memory side), median over shapes;
//   launch_s: the fixed cost of one op (an RMSNorm of one 576-wide row:
//     OpenMP fork/join), the CPU's "launch overhead";
//   mem_bytes: physical memory.
//   rows_eff: the bf16 product's rate at M = 1, 8, 16, 64 rows on the same
//     N×K shapes, weights cache-cold as in decode (copies ≥ 256 MiB), as a
//     fraction of gemm_bf16 (median over shapes), and 1 at M = 512: the
//     device's row factor table (hardware.h gemm_rows_eff). Small-M products
//     run other kernels (GEMV-style below 9 rows) far below the M = 512 rate.
#define PZ_CALIB_ROWS 5
typedef struct {
    double gemm_f32, gemm_bf16, mem_bw, launch_s, mem_bytes;
    double rows_m[PZ_CALIB_ROWS], rows_eff[PZ_CALIB_ROWS];
    int threads;
    char cpu[160];
} pz_calib;

int pz_profile_calibrate(pz_backend *b, int repeats, pz_calib *out, char *err);

// The calibration as a hardware JSON (scoring/hardware/*.json format, loadable
// by pz_hw_load_file), with "measured": true, "date" and "source_command".
// Its "cost_params" object always holds the measured "gemm_rows_eff" table;
// eff (may be NULL) adds the CPU efficiency factors found by comparing the
// model with measured profiles.
// Caller frees the string.
char *pz_calib_to_json(const pz_calib *c, const char *date, const char *command, const pz_cost_params *eff);

#endif
