// cuda_plan.h — the host-side arithmetic of the CUDA backend, in plain C and
// built into every binary (CUDA or not), so the CPU test suite checks it on
// machines without a GPU: flattening attention calls into the descriptors
// the kernels read, packing page tables into the fixed-shape arrays a CUDA
// graph replays, FP8 scale arithmetic, and the choice of
// a decode graph's batch-size bucket.
#ifndef PZ_CUDA_PLAN_H
#define PZ_CUDA_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "fp8.h"

// ---- attention descriptors -------------------------------------------------------
// One sequence of an attention call as the kernel reads it (device memory,
// copied from the host each call). row0 is the index of the sequence's first
// query among all queries of the call: a kernel thread that owns query row r
// finds its sequence as the last descriptor with row0 <= r.
typedef struct {
    const float *q;
    float *out;
    const void *k, *v;
    const int32_t *pages;
    float k_scale, v_scale;
    int q_ld, out_ld, kv_ld;
    int kv_type;  // pz_dt
    int n_q, pos0;
    int row0;
    int pad_;
} pz_cuda_attn_desc;

// Fills out[0..n_seq) from seqs and returns the total number of query rows,
// or -1 with err filled when a descriptor is malformed (negative n_q or
// pos0, NULL q/out/k/v, paged without a page table, kv_ld > 0 with a type
// other than f32, q_ld or out_ld below n_head·head_dim, a row count over
// INT_MAX).
int pz_cuda_flatten_attn(const pz_attn_seq *seqs, int n_seq, int n_head, int head_dim,
                         pz_cuda_attn_desc *out, char *err);

// The sequence owning query row r: the last i with d[i].row0 <= r (binary
// search; d sorted by row0, as pz_cuda_flatten_attn makes it). The kernel
// runs the same search on the device.
int pz_cuda_attn_find_seq(const pz_cuda_attn_desc *d, int n_seq, int r);

// ---- page tables ---------------------------------------------------------------------
// Packs n_seq page tables into one [n_seq][stride] array (a CUDA graph's
// fixed-shape input): row i holds tables[i][0..n_pages[i]) then -1s.
// Returns 0, or -1 with err filled when a table is longer than stride or a
// page id is negative.
int pz_pack_page_tables(const int32_t *const *tables, const int *n_pages, int n_seq, int stride,
                        int32_t *out, char *err);

// row_page[r] = table[pos[r] / PZ_KV_PAGE] for the R rows one sequence
// writes (the kv_write argument); -1 with err when a position is negative or
// beyond the table's n_pages pages.
int pz_kv_row_pages(const int32_t *table, int n_pages, const int32_t *pos, int R, int32_t *row_page,
                    char *err);

// Pages a sequence of n_pos positions needs.
static inline int pz_kv_pages_for(int n_pos) { return (n_pos + PZ_KV_PAGE - 1) / PZ_KV_PAGE; }

// ---- FP8 scales (encoding itself: fp8.h) ----------------------------------------------
// The per-tensor dequantization scale for values with max |x| = amax: the
// value whose multiple by 448 is amax, so x / scale fills e4m3's range.
// 1 for amax 0, negative, NaN or Inf (nothing to scale, or nothing sane).
// The rule the CUDA kernels apply on the device to an amax they measured
// (NaN elements skipped), the scalar form of fp8.h's pz_e4m3_scale_for.
float pz_fp8_scale(float amax);

// Requantization scale of tensors fused into one product (q|k|v, gate|up):
// the largest of their scales, so no shard saturates; n >= 1.
float pz_fp8_fused_scale(const float *scales, int n);

// ---- CUDA-graph buckets ---------------------------------------------------------------
// Decode graphs are captured for a few batch sizes; a step of `batch`
// sequences replays the smallest bucket >= batch (the extra rows are
// padding). Buckets must ascend. Returns that bucket's index, or -1 when
// batch < 1 or above the largest bucket (run without a graph).
int pz_graph_bucket(int batch, const int *buckets, int n_buckets);

// The default buckets for a maximum batch: 1, 2, 4, 8, then steps of 8 up
// to 64, then of 32, ending with max_batch itself. Writes at most cap
// entries; returns the count.
int pz_graph_default_buckets(int max_batch, int *buckets, int cap);

#endif
