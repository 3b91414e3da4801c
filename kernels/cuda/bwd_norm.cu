// bwd_norm.cu — RMSNorm's backward for training (kernels/cpu/bwd_rmsnorm.h):
//   dx = r·(dy ⊙ w − x·c),  c = r²·mean(dy ⊙ w ⊙ x),  r = rstd of the row,
//   dw += Σ_rows dy ⊙ x·r.
// dx: one block per row, the row's sum in double (as the CPU does). dw: each
// column summed in double over chunks of PZ_CU_NORM_CHUNK rows into
// scratch, then the chunks added in order: no atomics, the same bits from
// run to run.
#include "cuda_dev.cuh"
#include "cuda_impl.h"

__global__ void rmsnorm_bwd_dx_kernel(float *dx, int dx_acc, const float *dy, const float *x,
                                      const float *w, const float *rstd, int n) {
    __shared__ double sh[32];
    const size_t o = (size_t)blockIdx.x * n;
    const float *xr = x + o, *dyr = dy + o;
    float *dxr = dx + o;
    double r = rstd[blockIdx.x], sum = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) sum += (double)dyr[i] * w[i] * xr[i];
    sum = pz_block_sum_d(sum, sh);
    float c = (float)(sum * r * r / n), rf = (float)r;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        float v = rf * (dyr[i] * w[i] - xr[i] * c);
        dxr[i] = dx_acc ? dxr[i] + v : v;
    }
}

// part[chunk·n + i] = Σ over the chunk's rows of dy·x·r (column i).
__global__ void rmsnorm_bwd_dw_part_kernel(double *part, const float *dy, const float *x,
                                           const float *rstd, int M, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    int m0 = blockIdx.y * PZ_CU_NORM_CHUNK, m1 = min(M, m0 + PZ_CU_NORM_CHUNK);
    double acc = 0;
    for (int m = m0; m < m1; m++) {
        size_t o = (size_t)m * n + i;
        acc += (double)dy[o] * x[o] * (double)rstd[m];
    }
    part[(size_t)blockIdx.y * n + i] = acc;
}

__global__ void rmsnorm_bwd_dw_sum_kernel(float *dw, const double *part, int chunks, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    double acc = 0;
    for (int c = 0; c < chunks; c++) acc += part[(size_t)c * n + i];
    dw[i] += (float)acc;
}

extern "C" cudaError_t pz_cu_rmsnorm_bwd(cudaStream_t s, float *dx, int dx_acc, float *dw,
                                         const float *dy, const float *x, const float *w,
                                         const float *rstd, int M, int n, double *part) {
    if (M <= 0 || n <= 0) return cudaSuccess;
    if (dx) {
        int t = n >= 1024 ? 512 : n >= 256 ? 256 : 128;
        rmsnorm_bwd_dx_kernel<<<M, t, 0, s>>>(dx, dx_acc, dy, x, w, rstd, n);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
    }
    if (dw) {
        int chunks = (M + PZ_CU_NORM_CHUNK - 1) / PZ_CU_NORM_CHUNK;
        dim3 grid((n + 127) / 128, chunks);
        rmsnorm_bwd_dw_part_kernel<<<grid, 128, 0, s>>>(part, dy, x, rstd, M, n);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
        rmsnorm_bwd_dw_sum_kernel<<<(n + 127) / 128, 128, 0, s>>>(dw, part, chunks, n);
        return cudaGetLastError();
    }
    return cudaSuccess;
}
