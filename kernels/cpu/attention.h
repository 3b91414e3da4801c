// attention.h — causal grouped-query attention on the CPU, for prefill (one
// sequence, many queries) and batched decode (many sequences, one query
// each) alike; see pz_attn_seq in backend.h. One pass over the keys with an
// online softmax (running max and sum), so no score buffer is needed and
// the result for a query does not depend on how many other queries share
// the call. OpenMP over (sequence, query, head).
//
// K/V come either as row-major buffers (pz_attn_seq.kv_ld > 0) or as a
// layer's page pools with the sequence's page table (kv_ld == 0). A page
// holds PZ_KV_PAGE = 16 positions, laid out by kv_write as:
//   K page: [n_kv][head_dim][16] — per KV head, dimension-major, so one
//           16-lane vector holds dimension i of the page's 16 keys;
//   V page: [n_kv][16][head_dim].
// A KV head's K block and V rows in a page are contiguous runs (4 KiB each
// at head_dim 64) that the hardware prefetcher streams.
#ifndef PZ_CPU_ATTENTION_H
#define PZ_CPU_ATTENTION_H

#include <stddef.h>
#include "backend.h"

#if PZ_KV_PAGE != 16
#error "the CPU page layout assumes 16 positions per page"
#endif

#define PZ_ATTN_MAX_HEAD_DIM 512

// Floats of one K page (and, separately, of one V page).
size_t pz_cpu_kv_page_floats(int n_kv, int head_dim);
// k, v: (n_kv*head_dim) for position pos, stored in page `page` of the pools
// at offset pos % PZ_KV_PAGE.
void pz_cpu_kv_write(float *k_pool, float *v_pool, int n_kv, int head_dim, int page, int pos, const float *k,
                     const float *v);

// Returns -1 (err filled) when head_dim is odd or above PZ_ATTN_MAX_HEAD_DIM
// or n_kv does not divide n_head, or for bf16 / e4m3 pages (kv_type, with
// k_scale / v_scale) that pz_cpu_attention_reads_narrow refuses.
// Pages in f32 are read by every level; bf16 and e4m3 ones directly, widened
// in registers, by the AVX2 kernels (the level in use is AVX2 or AVX-512,
// with F16C, and head_dim a multiple of 8 up to 128): then 1, else 0 and the
// caller widens the pages to fp32 first (kernels/cpu/kv_quant.h). AVX-512
// machines use the AVX2 kernel too: one kernel for decode and prefill rows
// gives a row the same bits either way (the AVX-512 decode and row kernels
// sum in different orders), which serving's batch invariance relies on.
int pz_cpu_attention_reads_narrow(pz_dt kv_type, int head_dim);
// For measurements and tests: attention on narrow pages (decode and prefill
// rows) runs the narrow kernel once for the query heads that share a KV head
// (1, the default: one pass over its pages) or once per query head (0, as
// the kernel before the grouped one did). The results are the same bit for bit.
// Not thread-safe against running attention calls.
void pz_cpu_attention_set_grouped_narrow(int on);
int pz_cpu_attention(const pz_attn_seq *seqs, int n_seq, int n_head, int n_kv, int head_dim,
                     int n_threads, char *err);

#endif
