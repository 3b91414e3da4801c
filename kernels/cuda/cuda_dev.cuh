// cuda_dev.cuh — device helpers shared by the kernels of this folder: warp
// and block reductions, element loads by type (f32, bf16, FP8 e4m3), the
// e4m3 store with saturation, and the grid size of a flat loop.
#ifndef PZ_CUDA_DEV_CUH
#define PZ_CUDA_DEV_CUH

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "dtype.h"

__device__ __forceinline__ float pz_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Max that propagates NaN (fmaxf would drop it).
__device__ __forceinline__ float pz_nanmax(float a, float b) { return (a > b || a != a) ? a : b; }

__device__ __forceinline__ float pz_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = pz_nanmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Max ignoring NaN (amax of activations).
__device__ __forceinline__ float pz_warp_fmax(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024);
// every thread gets the result. sh: 32 floats of shared memory.
__device__ __forceinline__ float pz_block_sum(float v, float *sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = pz_warp_sum(v);
    __syncthreads();  // sh may be in use by a previous call
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return pz_warp_sum(v);
}

// The same in double (the sums the CPU reference takes in double): a fixed
// tree, so the same bits from run to run. sh: 32 doubles of shared memory.
__device__ __forceinline__ double pz_block_sum_d(double v, double *sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float pz_bf16_to_f32(uint16_t b) {
    return __uint_as_float((uint32_t)b << 16);
}

__device__ __forceinline__ uint16_t pz_f32_to_bf16(float x) {
    __nv_bfloat16 h = __float2bfloat16_rn(x);
    return *reinterpret_cast<uint16_t *>(&h);
}

__device__ __forceinline__ float pz_dev_e4m3_to_f32(uint8_t q) {
    __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)q, __NV_E4M3);
    return __half2float(__half(h));
}

// Saturating round-to-nearest-even to e4m3; NaN stays NaN.
__device__ __forceinline__ uint8_t pz_dev_to_e4m3(float x) {
    return (uint8_t)__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
}

// Element i of an array of type dt (f32, bf16 or e4m3), as fp32.
__device__ __forceinline__ float pz_load(const void *p, int dt, size_t i) {
    if (dt == PZ_DT_BF16) return pz_bf16_to_f32(((const uint16_t *)p)[i]);
    if (dt == PZ_DT_E4M3) return pz_dev_e4m3_to_f32(((const uint8_t *)p)[i]);
    return ((const float *)p)[i];
}

// Blocks for a flat loop of n items, threads per block t, capped so a
// grid-stride loop covers the rest.
static inline unsigned pz_grid(size_t n, int t) {
    size_t g = (n + (size_t)t - 1) / (size_t)t;
    if (g < 1) g = 1;
    return (unsigned)(g > 65535u * 8u ? 65535u * 8u : g);
}

#endif
