// gemv.cu — products of few rows (M <= PZ_CUDA_GEMV_ROWS, decode), one warp
// per output channel: the warp streams the weight row once and dots it with
// every activation row. Weight bytes dominate at this size, so the kernel
// reads them 16 bytes per lane where alignment allows; fp32 accumulation
// with explicit fused multiply-adds in a fixed order, so row m's result
// depends on row m alone (backend.h's invariant_rows), whatever M is.
// FP8 activations (xt = e4m3) are quantized with the weight's static input
// scale (x_scale), or without one per row, each with its own amax scale;
// either keeps that invariance.
#include "cuda_dev.cuh"
#include "cuda_impl.h"

#define GEMV_WARPS 8
#define MAXR PZ_CUDA_GEMV_ROWS

// Eight consecutive elements of an array of type dt from element i;
// VEC: i is a multiple of 8 and the array 16-byte aligned for that type.
template <int DT, bool VEC>
__device__ __forceinline__ void load8(const void *p, size_t i, float v[8]) {
    if (DT == PZ_DT_F32) {
        const float *f = (const float *)p + i;
        if (VEC) {
            float4 a = ((const float4 *)f)[0], b = ((const float4 *)f)[1];
            v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = f[j];
        }
    } else if (DT == PZ_DT_BF16) {
        const uint16_t *h = (const uint16_t *)p + i;
        uint16_t t[8];
        if (VEC) {
            uint4 a = *(const uint4 *)h;
            memcpy(t, &a, 16);
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) t[j] = h[j];
        }
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = pz_bf16_to_f32(t[j]);
    } else {
        const uint8_t *b = (const uint8_t *)p + i;
        uint8_t t[8];
        if (VEC) {
            uint2 a = *(const uint2 *)b;
            memcpy(t, &a, 8);
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) t[j] = b[j];
        }
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = pz_dev_e4m3_to_f32(t[j]);
    }
}

// x: M rows of type XT (f32 or e4m3), ldx apart; xs: per-row scales (e4m3).
template <int WT, int XT, bool VEC>
__global__ void gemv_kernel(float *y, int ldy, const void *x, int ldx, const float *xs,
                            const void *w, int ldw, float scale, const float *ch, int M, int N,
                            int K, int acc) {
    int lane = threadIdx.x & 31;
    int n = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (n >= N) return;
    float sum[MAXR];
#pragma unroll
    for (int m = 0; m < MAXR; m++) sum[m] = 0.0f;
    const size_t wrow = (size_t)n * ldw;
    int K8 = K / 8 * 8;
    for (int k = lane * 8; k < K8; k += 256) {
        float wv[8];
        load8<WT, VEC>(w, wrow + k, wv);
#pragma unroll
        for (int m = 0; m < MAXR; m++) {
            if (m < M) {
                float xv[8];
                load8<XT, VEC>(x, (size_t)m * ldx + k, xv);
#pragma unroll
                for (int j = 0; j < 8; j++) sum[m] = fmaf(wv[j], xv[j], sum[m]);
            }
        }
    }
    for (int k = K8 + lane; k < K; k += 32) {  // the tail, one element per lane
        float wv = pz_load(w, WT, wrow + k);
#pragma unroll
        for (int m = 0; m < MAXR; m++)
            if (m < M) sum[m] = fmaf(wv, pz_load(x, XT, (size_t)m * ldx + k), sum[m]);
    }
    float f = scale * (ch ? ch[n] : 1.0f);
#pragma unroll
    for (int m = 0; m < MAXR; m++) {
        if (m < M) {
            float s = pz_warp_sum(sum[m]);
            if (lane == 0) {
                float r = s * f * (XT == PZ_DT_E4M3 ? xs[m] : 1.0f);
                float *yp = y + (size_t)m * ldy + n;
                *yp = acc ? *yp + r : r;
            }
        }
    }
}

// One block per row: q = sat(x / scale), xs[m] = scale, with the static
// scale x_scale when > 0, else the row's own amax / 448.
__global__ void quant_rows_kernel(uint8_t *q, float *xs, const float *x, int ldx, int K, float x_scale) {
    __shared__ float sh[32];
    const float *xr = x + (size_t)blockIdx.x * ldx;
    float m = 0.0f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) m = fmaxf(m, fabsf(xr[k]));  // NaN skipped
    m = pz_warp_fmax(m);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) sh[wid] = m;
    __syncthreads();
    m = 0.0f;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) m = fmaxf(m, sh[i]);
    float sc = (!(m > 0.0f) || isinf(m)) ? 1.0f : m / 448.0f;
    if (!(sc > 0.0f)) sc = 1.0f;
    if (x_scale > 0.0f) sc = x_scale;
    if (threadIdx.x == 0) xs[blockIdx.x] = sc;
    for (int k = threadIdx.x; k < K; k += blockDim.x)
        q[(size_t)blockIdx.x * K + k] = pz_dev_to_e4m3(xr[k] / sc);
}

template <int WT, int XT>
static cudaError_t launch(cudaStream_t s, bool vec, float *y, int ldy, const void *x, int ldx,
                          const float *xs, const void *w, int ldw, float scale, const float *ch,
                          int M, int N, int K, int acc) {
    dim3 grid((N + GEMV_WARPS - 1) / GEMV_WARPS), block(32 * GEMV_WARPS);
    if (vec)
        gemv_kernel<WT, XT, true><<<grid, block, 0, s>>>(y, ldy, x, ldx, xs, w, ldw, scale, ch, M, N, K, acc);
    else
        gemv_kernel<WT, XT, false><<<grid, block, 0, s>>>(y, ldy, x, ldx, xs, w, ldw, scale, ch, M, N, K, acc);
    return cudaGetLastError();
}

template <int XT>
static cudaError_t launch_w(cudaStream_t s, pz_dt wt, bool vec, float *y, int ldy, const void *x,
                            int ldx, const float *xs, const void *w, int ldw, float scale,
                            const float *ch, int M, int N, int K, int acc) {
    switch (wt) {
    case PZ_DT_F32: return launch<PZ_DT_F32, XT>(s, vec, y, ldy, x, ldx, xs, w, ldw, scale, ch, M, N, K, acc);
    case PZ_DT_BF16: return launch<PZ_DT_BF16, XT>(s, vec, y, ldy, x, ldx, xs, w, ldw, scale, ch, M, N, K, acc);
    case PZ_DT_E4M3: return launch<PZ_DT_E4M3, XT>(s, vec, y, ldy, x, ldx, xs, w, ldw, scale, ch, M, N, K, acc);
    default: return cudaErrorInvalidValue;
    }
}

static bool aligned(const void *p, int ld, size_t esize) {
    return ((uintptr_t)p % 16) == 0 && ((size_t)ld * esize) % 16 == 0;
}

extern "C" cudaError_t pz_cu_gemv(cudaStream_t s, float *y, int ldy, const float *x, int ldx,
                                  pz_dt xt, const void *w, pz_dt wt, int ldw, float scale,
                                  const float *ch_scale, int M, int N, int K, int acc,
                                  float x_scale, uint8_t *xq, float *xs) {
    if (M <= 0 || N <= 0) return cudaSuccess;
    if (M > MAXR) return cudaErrorInvalidValue;
    size_t wsz = wt == PZ_DT_F32 ? 4 : wt == PZ_DT_BF16 ? 2 : 1;
    bool wvec = aligned(w, ldw, wsz);
    if (xt == PZ_DT_E4M3) {
        if (K > 0) {
            quant_rows_kernel<<<M, 256, 0, s>>>(xq, xs, x, ldx, K, x_scale);
            cudaError_t e = cudaGetLastError();
            if (e != cudaSuccess) return e;
        }
        bool vec = wvec && aligned(xq, K, 1);
        return launch_w<PZ_DT_E4M3>(s, wt, vec, y, ldy, xq, K, xs, w, ldw, scale, ch_scale, M, N, K, acc);
    }
    bool vec = wvec && aligned(x, ldx, 4);
    return launch_w<PZ_DT_F32>(s, wt, vec, y, ldy, x, ldx, NULL, w, ldw, scale, ch_scale, M, N, K, acc);
}
