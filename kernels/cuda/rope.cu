// rope.cu — RoPE in the Hugging Face rotate_half form, in place: within each
// head, dimension i rotates with i + head_dim/2 by pos · inv_freq[i]. The
// angle's cosine and sine are taken in double and rounded to float, as the
// CPU reference does, so long positions agree. The backward rotates by the
// negative angle (the transpose of the rotation).
#include "cuda_dev.cuh"
#include "cuda_impl.h"

// One block per row; threads over (head, i < half).
__global__ void rope_kernel(float *x, int ld, const int32_t *pos, int n_heads, int head_dim,
                            const float *inv_freq, float sign) {
    int half = head_dim / 2;
    float *xr = x + (size_t)blockIdx.x * ld;
    double p = (double)pos[blockIdx.x];
    for (int t = threadIdx.x; t < n_heads * half; t += blockDim.x) {
        int h = t / half, i = t % half;
        double a = p * (double)inv_freq[i];
        float c = (float)cos(a), sn = sign * (float)sin(a);
        float *xh = xr + (size_t)h * head_dim;
        float x0 = xh[i], x1 = xh[i + half];
        xh[i] = x0 * c - x1 * sn;
        xh[i + half] = x1 * c + x0 * sn;
    }
}

extern "C" cudaError_t pz_cu_rope(cudaStream_t s, float *x, int ld, const int32_t *pos, int M,
                                  int n_heads, int head_dim, const float *inv_freq) {
    if (M <= 0 || n_heads <= 0 || head_dim < 2) return cudaSuccess;
    rope_kernel<<<M, 128, 0, s>>>(x, ld, pos, n_heads, head_dim, inv_freq, 1.0f);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_rope_bwd(cudaStream_t s, float *dx, int ld, const int32_t *pos, int M,
                                      int n_heads, int head_dim, const float *inv_freq) {
    if (M <= 0 || n_heads <= 0 || head_dim < 2) return cudaSuccess;
    rope_kernel<<<M, 128, 0, s>>>(dx, ld, pos, n_heads, head_dim, inv_freq, -1.0f);
    return cudaGetLastError();
}
