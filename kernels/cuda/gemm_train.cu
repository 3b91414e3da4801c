// gemm_train.cu — the fallback of training's general product (train.h's
// gemm) for the shapes and alignments cuBLASLt takes no algorithm for: a
// plain 16 x 16 shared-memory tiled kernel, fp32 accumulation, operands
// rounded to bf16 on load when the product is bf16. Each output element is
// one thread's sum in a fixed order (deterministic).
#include "cuda_dev.cuh"
#include "cuda_impl.h"

#define TILE 16

__device__ __forceinline__ float opnd(float x, int bf16) {
    return bf16 ? pz_bf16_to_f32(pz_f32_to_bf16(x)) : x;
}

__global__ void gemm_fallback_kernel(int ta, int tb, int M, int N, int K, const float *A, int lda,
                                     const float *B, int ldb, float *C, int ldc, int acc, int bf16) {
    __shared__ float sa[TILE][TILE + 1], sb[TILE][TILE + 1];
    int m = blockIdx.y * TILE + threadIdx.y, n = blockIdx.x * TILE + threadIdx.x;
    float s = 0;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        // sa[y][x] = op(A)[m][k0 + x]; sb[y][x] = op(B)[k0 + y][n].
        int ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
        float av = 0, bv = 0;
        if (m < M && ka < K) av = ta ? A[(size_t)ka * lda + m] : A[(size_t)m * lda + ka];
        if (n < N && kb < K) bv = tb ? B[(size_t)n * ldb + kb] : B[(size_t)kb * ldb + n];
        sa[threadIdx.y][threadIdx.x] = opnd(av, bf16);
        sb[threadIdx.y][threadIdx.x] = opnd(bv, bf16);
        __syncthreads();
        int kn = min(TILE, K - k0);
        for (int k = 0; k < kn; k++) s += sa[threadIdx.y][k] * sb[k][threadIdx.x];
        __syncthreads();
    }
    if (m < M && n < N) {
        float *c = C + (size_t)m * ldc + n;
        *c = acc ? *c + s : s;
    }
}

extern "C" cudaError_t pz_cu_gemm_fallback(cudaStream_t s, int ta, int tb, int M, int N, int K,
                                           const float *A, int lda, const float *B, int ldb,
                                           float *C, int ldc, int acc, int bf16) {
    if (M <= 0 || N <= 0) return cudaSuccess;
    dim3 grid((N + TILE - 1) / TILE, (M + TILE - 1) / TILE), block(TILE, TILE);
    if (grid.y > 65535) return cudaErrorInvalidValue;
    gemm_fallback_kernel<<<grid, block, 0, s>>>(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc, bf16);
    return cudaGetLastError();
}
