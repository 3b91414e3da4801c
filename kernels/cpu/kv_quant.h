// kv_quant.h — KV-cache pages in bf16 or FP8 e4m3 for the CPU backend. The
// pages keep the fp32 layout of attention.h (K page [n_kv][head_dim][16],
// V page [n_kv][16][head_dim]) with narrower elements. kv_write stores
// through pz_cpu_kv_write_q. The AVX2 attention kernels read these pages
// directly (widened in registers; pz_cpu_attention_reads_narrow in
// attention.h); elsewhere attention widens the pages a call reads into fp32
// scratch (pz_cpu_kv_widen) and runs the fp32 kernels on them. The cache
// holds 2x (bf16) or 4x (e4m3) the tokens of an fp32 one in the same memory.
#ifndef PZ_CPU_KV_QUANT_H
#define PZ_CPU_KV_QUANT_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"

// Stores the K and V of one position (n_kv*head_dim floats each) into page
// `page` at offset pos % 16 of pools of type t (PZ_DT_BF16: nearest even;
// PZ_DT_E4M3: e4m3(value / scale), saturating, kernels/fp8.h).
void pz_cpu_kv_write_q(void *k_pool, void *v_pool, pz_dt t, float k_scale, float v_scale, int n_kv,
                       int head_dim, int page, int pos, const float *k, const float *v);

// dst (fp32, n_pages pages of the K layout, then n_pages of the V layout)
// = the pages pages[0..n_pages) of the typed pools, dequantized (· k_scale,
// · v_scale for e4m3). Positions at or after n_keys in the last page are
// zeroed.
void pz_cpu_kv_widen(float *dst, const void *k_pool, const void *v_pool, pz_dt t, float k_scale,
                     float v_scale, int n_kv, int head_dim, const int32_t *pages, int n_pages, int n_keys);

#endif
