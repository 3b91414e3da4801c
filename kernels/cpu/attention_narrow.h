// attention_narrow.h — private to kernels/cpu: the AVX2 attention kernels
// that read bf16 / e4m3 KV pages as they are, widened in registers (no fp32
// copy of the pages). attention.c chooses them; they exist only where
// pz_cpu_attention_reads_narrow says so (AVX2 with F16C, head_dim a
// multiple of 8 up to 128). Page layout: attention.h. All pointers are the
// caller's; nothing is allocated.
#ifndef PZ_CPU_ATTENTION_NARROW_H
#define PZ_CPU_ATTENTION_NARROW_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"

// G query heads that share KV head g, one query row each (q and out: G rows
// of head_dim d, contiguous), over keys 0..n_keys-1: out = softmax(q.K^T *
// scale) V, in one pass over the pages (each K and V vector loaded and
// widened once for all G heads). kt: PZ_DT_BF16 or PZ_DT_E4M3 (ks, vs: its
// dequantization scales, ignored for bf16); pages: the sequence's page
// table; pf: elements per page (both pools). A head's result is the same,
// bit for bit, for every G, so decode and prefill rows agree.
// Returns 0 (nothing done) when G is not in 1..4 or d is not a multiple of
// 8 up to 128.
int pz_cpu_attn_group_narrow(const float *q, float *out, const void *k, const void *v, pz_dt kt, float ks,
                             float vs, const int32_t *pages, size_t pf, int g, int n_keys, int d, float scale,
                             int G);

#endif
