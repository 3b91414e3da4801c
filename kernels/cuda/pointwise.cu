// pointwise.cu — the element-wise ops: SwiGLU and its backward, residual
// add, and the per-output-channel scaling of FP8 products (cuda_impl.h).
#include "cuda_dev.cuh"
#include "cuda_impl.h"

__global__ void swiglu_kernel(float *h, int ldh, const float *g, const float *u, int gu_ld, int M,
                              int n) {
    size_t total = (size_t)M * n;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t m = i / n, j = i % n;
        float gv = g[m * gu_ld + j], uv = u[m * gu_ld + j];
        h[m * ldh + j] = gv / (1.0f + expf(-gv)) * uv;
    }
}

// bwd_swiglu.h's formulas, in its order of float operations.
__global__ void swiglu_bwd_kernel(float *dg, float *du, const float *dh, const float *g,
                                  const float *u, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gv = g[i], d = dh[i];
        float sg = 1.0f / (1.0f + expf(-gv));
        float silu = gv * sg;
        du[i] = d * silu;
        dg[i] = d * u[i] * sg * (1.0f + gv * (1.0f - sg));
    }
}

__global__ void add_kernel(float *y, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

__global__ void scale_cols_kernel(float *y, int ldy, const float *t, int ldt, const float *cs, int M,
                                  int N, int acc) {
    size_t total = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t m = i / N, j = i % N;
        float r = t[m * ldt + j] * cs[j];
        y[m * ldy + j] = acc ? y[m * ldy + j] + r : r;
    }
}

extern "C" cudaError_t pz_cu_swiglu(cudaStream_t s, float *h, int ldh, const float *g,
                                    const float *u, int gu_ld, int M, int n) {
    size_t total = (size_t)M * n;
    if (!total) return cudaSuccess;
    swiglu_kernel<<<pz_grid(total, 256), 256, 0, s>>>(h, ldh, g, u, gu_ld, M, n);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_add(cudaStream_t s, float *y, const float *x, size_t n) {
    if (!n) return cudaSuccess;
    add_kernel<<<pz_grid(n, 256), 256, 0, s>>>(y, x, n);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_scale_cols(cudaStream_t s, float *y, int ldy, const float *t, int ldt,
                                        const float *cs, int M, int N, int acc) {
    size_t total = (size_t)M * N;
    if (!total) return cudaSuccess;
    scale_cols_kernel<<<pz_grid(total, 256), 256, 0, s>>>(y, ldy, t, ldt, cs, M, N, acc);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_swiglu_bwd(cudaStream_t s, float *dg, float *du, const float *dh,
                                        const float *g, const float *u, size_t n) {
    if (!n) return cudaSuccess;
    swiglu_bwd_kernel<<<pz_grid(n, 256), 256, 0, s>>>(dg, du, dh, g, u, n);
    return cudaGetLastError();
}
