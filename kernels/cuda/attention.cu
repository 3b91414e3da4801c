// attention.cu — the paged KV cache and causal grouped-query attention over
// it, for prefill and decode alike (see pz_attn_seq in backend.h).
//
// Page layout (one layer's pool, K and V alike): page p, KV head h, slot t
// (0..PZ_KV_PAGE-1), dimension d at element ((p·n_kv + h)·PZ_KV_PAGE + t)·
// head_dim + d, so one key's head vector is contiguous and the 16 keys of a
// page follow each other. Elements are f32, bf16, or e4m3 holding value /
// k_scale (resp. v_scale), saturated.
//
// Attention: one warp per (query row, head). The warp walks the keys in
// chunks of 32, lane l scoring key j0 + l against the query (held in shared
// memory), keeps an online softmax (running max and sum, so no score buffer
// and no dependence on other queries of the call), and accumulates the
// values with lane l owning dimensions l, l+32, ... . Scores, softmax and
// sums are fp32; a NaN anywhere in a row's inputs makes that row NaN.
#include <math.h>

#include "cuda_dev.cuh"
#include "cuda_impl.h"

#define ATT_WARPS 4
#define ATT_PER_LANE (PZ_CUDA_MAX_HEAD_DIM / 32)

__global__ void kv_write_kernel(pz_kv_write w, pz_cuda_fault *fault) {
    int r = blockIdx.x;
    int page = w.row_page[r], pos = w.pos[r];
    if (page < 0 || page >= w.n_pages || pos < 0) {
        if (threadIdx.x == 0 && atomicCAS(&fault->code, 0, PZ_CUDA_FAULT_PAGE) == 0) {
            fault->a = page;
            fault->b = r;
            fault->c = w.n_pages;
        }
        return;
    }
    int kvd = w.n_kv * w.head_dim;
    const float *src = w.kv + (size_t)r * w.ld;
    for (int i = threadIdx.x; i < kvd; i += blockDim.x) {
        int h = i / w.head_dim, d = i % w.head_dim;
        size_t at = (((size_t)page * w.n_kv + h) * PZ_KV_PAGE + pos % PZ_KV_PAGE) * w.head_dim + d;
        float k = src[i], v = src[kvd + i];
        if (w.kv_type == PZ_DT_F32) {
            ((float *)w.k_pool)[at] = k;
            ((float *)w.v_pool)[at] = v;
        } else if (w.kv_type == PZ_DT_BF16) {
            ((uint16_t *)w.k_pool)[at] = pz_f32_to_bf16(k);
            ((uint16_t *)w.v_pool)[at] = pz_f32_to_bf16(v);
        } else {
            ((uint8_t *)w.k_pool)[at] = pz_dev_to_e4m3(k / w.k_scale);
            ((uint8_t *)w.v_pool)[at] = pz_dev_to_e4m3(v / w.v_scale);
        }
    }
}

// Element offset of key j's head vector of KV head g.
__device__ __forceinline__ size_t key_at(const pz_cuda_attn_desc &s, int n_kv, int head_dim, int g,
                                         int j) {
    if (s.kv_ld > 0) return (size_t)j * s.kv_ld + (size_t)g * head_dim;
    int page = s.pages[j / PZ_KV_PAGE];
    return (((size_t)page * n_kv + g) * PZ_KV_PAGE + j % PZ_KV_PAGE) * head_dim;
}

__global__ void __launch_bounds__(32 * ATT_WARPS)
attention_kernel(const pz_cuda_attn_desc *seqs, int n_seq, int rows, int n_head, int n_kv,
                 int head_dim) {
    __shared__ float qs[ATT_WARPS][PZ_CUDA_MAX_HEAD_DIM];
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    long item = (long)blockIdx.x * ATT_WARPS + warp;
    if (item >= (long)rows * n_head) return;
    int row = (int)(item / n_head), h = (int)(item % n_head);
    int lo = 0, hi = n_seq - 1;  // pz_cuda_attn_find_seq
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (seqs[mid].row0 <= row) lo = mid;
        else hi = mid - 1;
    }
    const pz_cuda_attn_desc s = seqs[lo];
    int qi = row - s.row0;
    int n_keys = s.pos0 + qi + 1;
    int g = h / (n_head / n_kv);
    const float scale = 1.0f / sqrtf((float)head_dim) * s.k_scale;
    const float *q = s.q + (size_t)qi * s.q_ld + (size_t)h * head_dim;
    for (int d = lane; d < head_dim; d += 32) qs[warp][d] = q[d];
    __syncwarp();

    float acc[ATT_PER_LANE];
#pragma unroll
    for (int i = 0; i < ATT_PER_LANE; i++) acc[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j0 = 0; j0 < n_keys; j0 += 32) {
        int j = j0 + lane;
        float sc = -INFINITY;
        if (j < n_keys) {
            size_t at = key_at(s, n_kv, head_dim, g, j);
            float dot = 0.0f;
            for (int d = 0; d < head_dim; d++) dot = fmaf(qs[warp][d], pz_load(s.k, s.kv_type, at + d), dot);
            sc = dot * scale;
        }
        float mc = pz_warp_max(sc);
        float mn = pz_nanmax(m, mc);
        float c = m == -INFINITY ? 0.0f : expf(m - mn);  // the first chunk has nothing to rescale
        float p = j < n_keys ? expf(sc - mn) : 0.0f;
        l = l * c + pz_warp_sum(p);
        m = mn;
#pragma unroll
        for (int i = 0; i < ATT_PER_LANE; i++) acc[i] *= c;
        int nk = min(32, n_keys - j0);
        for (int t = 0; t < nk; t++) {
            float pt = __shfl_sync(0xffffffffu, p, t);
            size_t at = key_at(s, n_kv, head_dim, g, j0 + t);
#pragma unroll
            for (int i = 0; i < ATT_PER_LANE; i++) {
                int d = lane + 32 * i;
                if (d < head_dim) acc[i] = fmaf(pt, pz_load(s.v, s.kv_type, at + d), acc[i]);
            }
        }
    }
    float f = s.v_scale / l;
    float *out = s.out + (size_t)qi * s.out_ld + (size_t)h * head_dim;
#pragma unroll
    for (int i = 0; i < ATT_PER_LANE; i++) {
        int d = lane + 32 * i;
        if (d < head_dim) out[d] = acc[i] * f;
    }
}

extern "C" cudaError_t pz_cu_kv_write(cudaStream_t s, const pz_kv_write *w, pz_cuda_fault *fault) {
    if (w->R <= 0) return cudaSuccess;
    kv_write_kernel<<<w->R, 128, 0, s>>>(*w, fault);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_attention(cudaStream_t s, const pz_cuda_attn_desc *seqs, int n_seq,
                                       int rows, int n_head, int n_kv, int head_dim) {
    long items = (long)rows * n_head;
    if (items <= 0) return cudaSuccess;
    long blocks = (items + ATT_WARPS - 1) / ATT_WARPS;
    if (blocks > 0x7fffffffL) return cudaErrorInvalidValue;
    attention_kernel<<<(unsigned)blocks, 32 * ATT_WARPS, 0, s>>>(seqs, n_seq, rows, n_head, n_kv,
                                                                  head_dim);
    return cudaGetLastError();
}
