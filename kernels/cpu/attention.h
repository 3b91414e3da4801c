// attention.h — causal grouped-query attention on the CPU, for prefill (one
// sequence, many queries) and batched decode (many sequences, one query
// each) alike; see pz_attn_seq in backend.h. One pass over the keys with an
// online softmax (running max and sum), so no score buffer is needed and
// the result for a query does not depend on how many other queries share
// the call. OpenMP over (sequence, query, head).
//
// K/V come either as row-major buffers (pz_attn_seq.kv_ld > 0) or as a
// cache of one sequence in one layer (kv_ld == 0) sized for cap positions,
// laid out by kv_write as:
//   K: [n_kv][ceil(cap/16)][head_dim][16] — per KV head, blocks of 16
//      positions, dimension-major, so one 16-lane vector holds dimension i
//      of 16 consecutive keys;
//   V: [n_kv][cap][head_dim].
// Each KV head's K and V are long contiguous runs that the hardware
// prefetcher streams (decode reads them once per token, from memory).
#ifndef PZ_CPU_ATTENTION_H
#define PZ_CPU_ATTENTION_H

#include <stddef.h>
#include "backend.h"

#define PZ_ATTN_MAX_HEAD_DIM 512

// Bytes of K (and, separately, of V) for cap positions.
size_t pz_cpu_kv_bytes(int n_kv, int head_dim, int cap);
// k, v: (n_kv*head_dim) for position pos < cap.
void pz_cpu_kv_write(float *k_cache, float *v_cache, int n_kv, int head_dim, int cap, int pos, const float *k,
                     const float *v);

// Returns -1 (err filled) when head_dim is odd or above PZ_ATTN_MAX_HEAD_DIM
// or n_kv does not divide n_head.
int pz_cpu_attention(const pz_attn_seq *seqs, int n_seq, int n_head, int n_kv, int head_dim,
                     int n_threads, char *err);

#endif
