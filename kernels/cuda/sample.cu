// sample.cu — greedy sampling on the device: the argmax of each logits row,
// so a decode step reads back one int per sequence instead of a vocabulary
// of floats. Ties go to the lowest index; a row with a NaN yields the index
// of its first NaN (a poisoned row is visible, not silently skipped).
#include "cuda_dev.cuh"
#include "cuda_impl.h"

// Is (v, i) before (bv, bi) in the order: NaN first (lowest index), then
// larger values, then lower indices.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) {
    bool vn = v != v, bn = bv != bv;
    if (vn != bn) return vn;
    if (vn) return i < bi;
    if (v != bv) return v > bv;
    return i < bi;
}

__global__ void argmax_kernel(int32_t *out, const float *logits, int ld, int n) {
    __shared__ float sv[32];
    __shared__ int si[32];
    const float *r = logits + (size_t)blockIdx.x * ld;
    float bv = -INFINITY;
    int bi = n;  // sentinel: any real element beats it
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (bi == n || better(r[i], i, bv, bi)) bv = r[i], bi = i;
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi != n && (bi == n || better(ov, oi, bv, bi))) bv = ov, bi = oi;
    }
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) sv[wid] = bv, si[wid] = bi;
    __syncthreads();
    if (wid == 0) {
        int nw = blockDim.x >> 5;
        bv = lane < nw ? sv[lane] : -INFINITY;
        bi = lane < nw ? si[lane] : n;
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (oi != n && (bi == n || better(ov, oi, bv, bi))) bv = ov, bi = oi;
        }
        if (lane == 0) out[blockIdx.x] = bi;
    }
}

extern "C" cudaError_t pz_cu_argmax(cudaStream_t s, int32_t *out, const float *logits, int ld,
                                    int M, int n) {
    if (M <= 0 || n <= 0) return cudaSuccess;
    argmax_kernel<<<M, 512, 0, s>>>(out, logits, ld, n);
    return cudaGetLastError();
}
