// embed.cu — token embedding: y[m] = table[ids[m]] as fp32, from an f32 or
// bf16 table. An id outside the vocabulary is recorded as a fault (read back
// by synchronize) and its row is filled with NaN, so nothing downstream
// mistakes it for a real embedding.
#include "cuda_dev.cuh"
#include "cuda_impl.h"

__global__ void embed_kernel(float *y, const void *table, int dt, int ld, int vocab, int n,
                             const int32_t *ids, pz_cuda_fault *fault) {
    int m = blockIdx.x;
    int id = ids[m];
    float *yr = y + (size_t)m * n;
    if (id < 0 || id >= vocab) {
        if (threadIdx.x == 0 && atomicCAS(&fault->code, 0, PZ_CUDA_FAULT_TOKEN) == 0) {
            fault->a = id;
            fault->b = m;
            fault->c = vocab;
        }
        for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = __int_as_float(0x7fc00000);
        return;
    }
    size_t base = (size_t)id * ld;
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = pz_load(table, dt, base + i);
}

extern "C" cudaError_t pz_cu_embed(cudaStream_t s, float *y, const void *table, pz_dt dt, int ld,
                                   int vocab, int n, const int32_t *ids, int M,
                                   pz_cuda_fault *fault) {
    if (M <= 0) return cudaSuccess;
    embed_kernel<<<M, 256, 0, s>>>(y, table, (int)dt, ld, vocab, n, ids, fault);
    return cudaGetLastError();
}
