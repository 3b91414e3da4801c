// rmsnorm.cu — RMSNorm, one block per row: y = x / sqrt(mean(x²) + eps) · w.
// The sum of squares is taken in double, as the CPU reference does, so the
// two agree to float rounding; y may equal x.
#include "cuda_dev.cuh"
#include "cuda_impl.h"

__global__ void rmsnorm_kernel(float *y, float *rstd, const float *x, const float *w, int n, float eps) {
    __shared__ double sh[32];
    const float *xr = x + (size_t)blockIdx.x * n;
    float *yr = y + (size_t)blockIdx.x * n;
    double ss = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += (double)xr[i] * xr[i];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) sh[wid] = ss;
    __syncthreads();
    if (wid == 0) {
        ss = lane < (int)(blockDim.x >> 5) ? sh[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if (lane == 0) sh[0] = ss;
    }
    __syncthreads();
    float r = (float)(1.0 / sqrt(sh[0] / n + eps));
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = r;
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = xr[i] * r * w[i];
}

extern "C" cudaError_t pz_cu_rmsnorm(cudaStream_t s, float *y, const float *x, const float *w,
                                     int M, int n, float eps) {
    if (M <= 0 || n <= 0) return cudaSuccess;
    int t = n >= 1024 ? 512 : n >= 256 ? 256 : 128;
    rmsnorm_kernel<<<M, t, 0, s>>>(y, NULL, x, w, n, eps);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_rmsnorm_train(cudaStream_t s, float *y, float *rstd, const float *x,
                                           const float *w, int M, int n, float eps) {
    if (M <= 0 || n <= 0) return cudaSuccess;
    int t = n >= 1024 ? 512 : n >= 256 ? 256 : 128;
    rmsnorm_kernel<<<M, t, 0, s>>>(y, rstd, x, w, n, eps);
    return cudaGetLastError();
}
