// bwd_attention.cu — causal grouped-query attention for training
// (kernels/cpu/bwd_attention.h's layout and formulas): the forward saving
// the log-sum-exp of each query row and head, and the backward in the
// FlashAttention form
//   D_i = dO_i·O_i,  P_ij = exp(scale·q_i·k_j − lse_i),
//   dV_j = Σ_i P_ij dO_i,  dS_ij = P_ij (dO_i·V_j − D_i),
//   dQ_i = scale Σ_j dS_ij K_j,  dK_j = scale Σ_i dS_ij Q_i.
// One warp per (query row, head) for the forward and dQ, one per (key row,
// KV head) for dK and dV (over the group's query heads): each output is
// written by one warp, with no atomics, so results are the same from run to
// run. Lane l holds dimensions l, l+32, ... of a head (DPL per lane). The
// forward uses the online softmax (one pass over the keys); the CPU's
// two-pass max agrees to float rounding. fp32 throughout. These are the
// plain loops of the CPU's _ref kernels on the GPU — correct and
// deterministic, not a tuned FlashAttention (docs/CUDA.md).
#include "cuda_dev.cuh"
#include "cuda_impl.h"

#include <math.h>

#define WARPS 4  // per block

struct attn_shape {
    int T, n_head, n_kv, d, group, ldq, ldkv;
    float scale;
};

static attn_shape make_shape(int T, int n_head, int n_kv, int d) {
    attn_shape a;
    a.T = T, a.n_head = n_head, a.n_kv = n_kv, a.d = d, a.group = n_head / n_kv;
    a.ldq = n_head * d, a.ldkv = n_kv * d;
    a.scale = 1.0f / sqrtf((float)d);
    return a;
}

template <int DPL>
__device__ __forceinline__ void load_head(float (&r)[DPL], const float *p, int d, int lane) {
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int idx = lane + 32 * i;
        r[i] = idx < d ? p[idx] : 0.0f;
    }
}

template <int DPL>
__device__ __forceinline__ float dot_head(const float (&r)[DPL], const float *p, int d, int lane) {
    float s = 0;
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int idx = lane + 32 * i;
        if (idx < d) s += r[i] * p[idx];
    }
    return pz_warp_sum(s);
}

template <int DPL>
__device__ __forceinline__ void store_head(float *p, const float (&r)[DPL], float f, int d, int lane) {
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int idx = lane + 32 * i;
        if (idx < d) p[idx] = r[i] * f;
    }
}

template <int DPL>
__global__ void attn_fwd_kernel(float *out, float *lse, const float *q, const float *k,
                                const float *v, attn_shape a, long items) {
    long it = (long)blockIdx.x * WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (it >= items) return;  // a whole warp at once
    int h = (int)(it % a.n_head);
    long r = it / a.n_head;
    int b = (int)(r / a.T), t = (int)(r % a.T);
    const float *kb = k + (size_t)b * a.T * a.ldkv + (size_t)(h / a.group) * a.d;
    const float *vb = v + (size_t)b * a.T * a.ldkv + (size_t)(h / a.group) * a.d;
    float qr[DPL], acc[DPL], vr[DPL];
    load_head<DPL>(qr, q + (size_t)r * a.ldq + (size_t)h * a.d, a.d, lane);
#pragma unroll
    for (int i = 0; i < DPL; i++) acc[i] = 0;
    float m = -INFINITY, l = 0;
    for (int j = 0; j <= t; j++) {
        float s = dot_head<DPL>(qr, kb + (size_t)j * a.ldkv, a.d, lane) * a.scale;
        float mn = fmaxf(m, s);
        float corr = expf(m - mn), p = expf(s - mn);
        if (s != s) corr = p = s;  // a NaN score reaches every output of the row
        l = l * corr + p;
        load_head<DPL>(vr, vb + (size_t)j * a.ldkv, a.d, lane);
#pragma unroll
        for (int i = 0; i < DPL; i++) acc[i] = acc[i] * corr + p * vr[i];
        m = mn;
    }
    store_head<DPL>(out + (size_t)r * a.ldq + (size_t)h * a.d, acc, 1.0f / l, a.d, lane);
    if (lane == 0) lse[(size_t)r * a.n_head + h] = m + logf(l);
}

// D[row, h] = dO·O.
template <int DPL>
__global__ void attn_delta_kernel(float *D, const float *dout, const float *out, attn_shape a,
                                  long items) {
    long it = (long)blockIdx.x * WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (it >= items) return;
    size_t off = (size_t)it * a.d;  // row·ldq + h·d
    float o[DPL];
    load_head<DPL>(o, out + off, a.d, lane);
    float s = dot_head<DPL>(o, dout + off, a.d, lane);
    if (lane == 0) D[it] = s;
}

template <int DPL>
__global__ void attn_dq_kernel(float *dq, const float *dout, const float *q, const float *k,
                               const float *v, const float *lse, const float *D, attn_shape a,
                               long items) {
    long it = (long)blockIdx.x * WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (it >= items) return;
    int h = (int)(it % a.n_head);
    long r = it / a.n_head;
    int b = (int)(r / a.T), t = (int)(r % a.T);
    const float *kb = k + (size_t)b * a.T * a.ldkv + (size_t)(h / a.group) * a.d;
    const float *vb = v + (size_t)b * a.T * a.ldkv + (size_t)(h / a.group) * a.d;
    size_t qo = (size_t)r * a.ldq + (size_t)h * a.d;
    float qr[DPL], dor[DPL], acc[DPL], kr[DPL];
    load_head<DPL>(qr, q + qo, a.d, lane);
    load_head<DPL>(dor, dout + qo, a.d, lane);
#pragma unroll
    for (int i = 0; i < DPL; i++) acc[i] = 0;
    float li = lse[it], Di = D[it];
    for (int j = 0; j <= t; j++) {
        const float *kj = kb + (size_t)j * a.ldkv;
        float p = expf(dot_head<DPL>(qr, kj, a.d, lane) * a.scale - li);
        float ds = p * (dot_head<DPL>(dor, vb + (size_t)j * a.ldkv, a.d, lane) - Di);
        load_head<DPL>(kr, kj, a.d, lane);
#pragma unroll
        for (int i = 0; i < DPL; i++) acc[i] += ds * kr[i];
    }
    store_head<DPL>(dq + qo, acc, a.scale, a.d, lane);
}

template <int DPL>
__global__ void attn_dkv_kernel(float *dk, float *dv, const float *dout, const float *q,
                                const float *k, const float *v, const float *lse, const float *D,
                                attn_shape a, long items) {
    long it = (long)blockIdx.x * WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (it >= items) return;
    int g = (int)(it % a.n_kv);
    long r = it / a.n_kv;
    int b = (int)(r / a.T), j = (int)(r % a.T);
    size_t ko = (size_t)r * a.ldkv + (size_t)g * a.d;
    float kr[DPL], vr[DPL], acck[DPL], accv[DPL], x[DPL];
    load_head<DPL>(kr, k + ko, a.d, lane);
    load_head<DPL>(vr, v + ko, a.d, lane);
#pragma unroll
    for (int i = 0; i < DPL; i++) acck[i] = accv[i] = 0;
    for (int h = g * a.group; h < (g + 1) * a.group; h++)
        for (int t = j; t < a.T; t++) {
            size_t qrow = (size_t)b * a.T + t;
            const float *qi = q + qrow * a.ldq + (size_t)h * a.d;
            const float *doi = dout + qrow * a.ldq + (size_t)h * a.d;
            float p = expf(dot_head<DPL>(kr, qi, a.d, lane) * a.scale - lse[qrow * a.n_head + h]);
            float ds = p * (dot_head<DPL>(vr, doi, a.d, lane) - D[qrow * a.n_head + h]);
            load_head<DPL>(x, doi, a.d, lane);
#pragma unroll
            for (int i = 0; i < DPL; i++) accv[i] += p * x[i];
            load_head<DPL>(x, qi, a.d, lane);
#pragma unroll
            for (int i = 0; i < DPL; i++) acck[i] += ds * x[i];
        }
    store_head<DPL>(dk + ko, acck, a.scale, a.d, lane);
    store_head<DPL>(dv + ko, accv, 1.0f, a.d, lane);
}

static unsigned blocks_for(long items) { return (unsigned)((items + WARPS - 1) / WARPS); }

static int bad(int n_seq, int T, int n_head, int n_kv, int d) {
    return n_seq < 0 || T < 0 || d <= 0 || d % 2 || d > PZ_CU_TRAIN_MAX_HEAD_DIM || n_head <= 0 ||
           n_kv <= 0 || n_head % n_kv;
}

#define DISPATCH(d, KERNEL, ...)                                                                 \
    do {                                                                                         \
        if ((d) <= 32) KERNEL<1><<<grid, WARPS * 32, 0, s>>>(__VA_ARGS__);                       \
        else if ((d) <= 64) KERNEL<2><<<grid, WARPS * 32, 0, s>>>(__VA_ARGS__);                  \
        else if ((d) <= 128) KERNEL<4><<<grid, WARPS * 32, 0, s>>>(__VA_ARGS__);                 \
        else if ((d) <= 256) KERNEL<8><<<grid, WARPS * 32, 0, s>>>(__VA_ARGS__);                 \
        else KERNEL<16><<<grid, WARPS * 32, 0, s>>>(__VA_ARGS__);                                \
    } while (0)

extern "C" cudaError_t pz_cu_attn_train_fwd(cudaStream_t s, float *out, float *lse, const float *q,
                                            const float *k, const float *v, int n_seq, int T,
                                            int n_head, int n_kv, int head_dim) {
    if (bad(n_seq, T, n_head, n_kv, head_dim)) return cudaErrorInvalidValue;
    long items = (long)n_seq * T * n_head;
    if (items == 0) return cudaSuccess;
    attn_shape a = make_shape(T, n_head, n_kv, head_dim);
    unsigned grid = blocks_for(items);
    DISPATCH(head_dim, attn_fwd_kernel, out, lse, q, k, v, a, items);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_attn_train_bwd(cudaStream_t s, float *dq, float *dk, float *dv,
                                            const float *dout, const float *q, const float *k,
                                            const float *v, const float *out, const float *lse,
                                            int n_seq, int T, int n_head, int n_kv, int head_dim,
                                            float *D) {
    if (bad(n_seq, T, n_head, n_kv, head_dim)) return cudaErrorInvalidValue;
    long items = (long)n_seq * T * n_head, kitems = (long)n_seq * T * n_kv;
    if (items == 0) return cudaSuccess;
    attn_shape a = make_shape(T, n_head, n_kv, head_dim);
    unsigned grid = blocks_for(items);
    DISPATCH(head_dim, attn_delta_kernel, D, dout, out, a, items);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    DISPATCH(head_dim, attn_dq_kernel, dq, dout, q, k, v, lse, D, a, items);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    grid = blocks_for(kitems);
    DISPATCH(head_dim, attn_dkv_kernel, dk, dv, dout, q, k, v, lse, D, a, kitems);
    return cudaGetLastError();
}
