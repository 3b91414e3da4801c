// adamw.cu — the optimizer and the losses of training on the GPU
// (kernels/cpu/adamw.h's definitions): chunked fp64 sums of squares (the
// gradient norm, the NMSE's numerator and denominator), gradient clipping
// by a norm that stays on the device, the AdamW update, and the per-token
// NMSE. Every sum runs over a fixed tree (chunks of PZ_CU_SUM_CHUNK
// elements, one block each, then the chunks by one block), so results are
// the same from run to run; they differ from the CPU's sums by rounding
// (different trees).
#include "cuda_dev.cuh"
#include "cuda_impl.h"

#include <math.h>

#define SUM_THREADS 256

extern "C" size_t pz_cu_sum_chunks(size_t n) { return (n + PZ_CU_SUM_CHUNK - 1) / PZ_CU_SUM_CHUNK; }

__global__ void sumsq_parts_kernel(double *part, const float *a, const float *b, size_t n) {
    __shared__ double sh[32];
    size_t i0 = (size_t)blockIdx.x * PZ_CU_SUM_CHUNK, i1 = min(n, i0 + PZ_CU_SUM_CHUNK);
    double s = 0;
    if (b) {
        for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
            double d = (double)a[i] - b[i];
            s += d * d;
        }
    } else {
        for (size_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) s += (double)a[i] * a[i];
    }
    s = pz_block_sum_d(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void sum_parts_kernel(double *out, const double *part, size_t n) {
    __shared__ double sh[32];
    double s = 0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += part[i];
    s = pz_block_sum_d(s, sh);
    if (threadIdx.x == 0) *out = s;
}

__global__ void clip_kernel(float *g, size_t n, const double *norm2, float max_norm) {
    double c = max_norm / (sqrt(*norm2) + 1e-6);
    if (c >= 1) return;  // a NaN norm scales by NaN, as on the CPU
    float cf = (float)c;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        g[i] *= cf;
}

__global__ void adamw_kernel(float *p, const float *g, float *m, float *v, size_t n, float b1,
                             float b2, float eps, float lr, float keep, float bc1, float bc2) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float gi = g[i];
        float mi = b1 * m[i] + (1 - b1) * gi;
        float vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi, v[i] = vi;
        p[i] = p[i] * keep - lr * (mi * bc1) / (sqrtf(vi * bc2) + eps);
    }
}

__global__ void nmse_grad_kernel(float *d, const float *t, const float *y, size_t n, const double *den,
                                 float grad_scale) {
    double dn = *den;
    if (dn == 0) return;
    float c = (float)(2.0 * grad_scale / dn);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        d[i] = c * (y[i] - t[i]);
}

__global__ void token_nmse_kernel(double *part, float *d, const float *t, const float *y, int rows,
                                  int cols, float eps, float grad_scale) {
    __shared__ double sh[32];
    const size_t o = (size_t)blockIdx.x * cols;
    double num = 0, den = 0;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) {
        double df = (double)t[o + i] - y[o + i];
        num += df * df;
        den += (double)t[o + i] * t[o + i];
    }
    num = pz_block_sum_d(num, sh);
    den = pz_block_sum_d(den, sh) + eps;
    if (threadIdx.x == 0) part[blockIdx.x] = den > 0 ? num / den : (double)NAN;
    if (d) {
        float c = (float)(2.0 * grad_scale * (1.0 / rows) / den);
        for (int i = threadIdx.x; i < cols; i += blockDim.x) d[o + i] = c * (y[o + i] - t[o + i]);
    }
}

extern "C" cudaError_t pz_cu_sumsq_parts(cudaStream_t s, double *part, const float *a, const float *b,
                                         size_t n) {
    size_t nc = pz_cu_sum_chunks(n);
    if (!nc) return cudaSuccess;
    if (nc > 0x7fffffffu) return cudaErrorInvalidValue;
    sumsq_parts_kernel<<<(unsigned)nc, SUM_THREADS, 0, s>>>(part, a, b, n);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_sum_parts(cudaStream_t s, double *out, const double *part, size_t n) {
    sum_parts_kernel<<<1, 1024, 0, s>>>(out, part, n);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_clip(cudaStream_t s, float *g, size_t n, const double *norm2, float max_norm) {
    if (!n) return cudaSuccess;
    clip_kernel<<<pz_grid(n, 256), 256, 0, s>>>(g, n, norm2, max_norm);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_adamw(cudaStream_t s, float *p, const float *g, float *m, float *v,
                                   size_t n, float b1, float b2, float eps, float lr, float keep,
                                   float bc1, float bc2) {
    if (!n) return cudaSuccess;
    adamw_kernel<<<pz_grid(n, 256), 256, 0, s>>>(p, g, m, v, n, b1, b2, eps, lr, keep, bc1, bc2);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_nmse_grad(cudaStream_t s, float *d, const float *t, const float *y,
                                       size_t n, const double *den, float grad_scale) {
    if (!n) return cudaSuccess;
    nmse_grad_kernel<<<pz_grid(n, 256), 256, 0, s>>>(d, t, y, n, den, grad_scale);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_token_nmse(cudaStream_t s, double *part, float *d, const float *t,
                                        const float *y, int rows, int cols, float eps,
                                        float grad_scale) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    token_nmse_kernel<<<rows, SUM_THREADS, 0, s>>>(part, d, t, y, rows, cols, eps, grad_scale);
    return cudaGetLastError();
}
