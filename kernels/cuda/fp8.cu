// fp8.cu — activation conversions that feed the tensor-core products: the
// absolute maximum of a block (amax), FP8 e4m3 quantization with the
// per-tensor scale derived from that amax on the device (no host round
// trip, so it can sit inside a CUDA graph), and rounding to bf16.
#include <math.h>

#include "cuda_dev.cuh"
#include "cuda_impl.h"

// Non-negative floats order like their bit patterns as signed ints, so
// atomicMax on the bits is a float max. NaN elements are skipped (fmaxf):
// a NaN stays in its own row of the product instead of poisoning the
// scale of every row.
__global__ void amax_kernel(float *amax, const float *x, int ld, int M, int K) {
    __shared__ float sh[32];
    size_t total = (size_t)M * K;
    float m = 0.0f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        float a = fabsf(x[(i / K) * ld + i % K]);
        m = fmaxf(m, a);
    }
    m = pz_warp_fmax(m);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) sh[wid] = m;
    __syncthreads();
    if (wid == 0) {
        m = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0f;
        m = pz_warp_fmax(m);
        if (lane == 0) atomicMax((int *)amax, __float_as_int(m));
    }
}

// pz_fp8_scale (cuda_plan.c) on the device.
__device__ __forceinline__ float fp8_scale(float amax) {
    if (!(amax > 0.0f) || isinf(amax)) return 1.0f;
    float s = amax / 448.0f;
    return s > 0.0f ? s : 1.0f;
}

__global__ void quant_kernel(uint8_t *q, const float *x, int ld, int M, int K, float *scale,
                             const float *amax) {
    float sc = amax ? fp8_scale(*amax) : *scale;
    if (amax && blockIdx.x == 0 && threadIdx.x == 0) *scale = sc;
    size_t total = (size_t)M * K;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        q[i] = pz_dev_to_e4m3(x[(i / K) * ld + i % K] / sc);
}

__global__ void to_bf16_kernel(uint16_t *q, const float *x, int ld, int M, int K) {
    size_t total = (size_t)M * K;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        q[i] = pz_f32_to_bf16(x[(i / K) * ld + i % K]);
}

extern "C" cudaError_t pz_cu_amax(cudaStream_t s, float *amax, const float *x, int ld, int M,
                                  int K) {
    cudaError_t e = cudaMemsetAsync(amax, 0, sizeof(float), s);
    if (e != cudaSuccess) return e;
    size_t total = (size_t)M * K;
    if (!total) return cudaSuccess;
    unsigned g = pz_grid(total, 256);
    if (g > 1024) g = 1024;  // few atomics; each thread loops
    amax_kernel<<<g, 256, 0, s>>>(amax, x, ld, M, K);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_quant_e4m3(cudaStream_t s, uint8_t *q, const float *x, int ld, int M,
                                        int K, float *scale, const float *amax) {
    size_t total = (size_t)M * K;
    if (!total) return cudaSuccess;
    quant_kernel<<<pz_grid(total, 256), 256, 0, s>>>(q, x, ld, M, K, scale, amax);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_to_bf16(cudaStream_t s, uint16_t *q, const float *x, int ld, int M,
                                     int K) {
    size_t total = (size_t)M * K;
    if (!total) return cudaSuccess;
    to_bf16_kernel<<<pz_grid(total, 256), 256, 0, s>>>(q, x, ld, M, K);
    return cudaGetLastError();
}
