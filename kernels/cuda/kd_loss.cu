// kd_loss.cu — global distillation's losses on the GPU (kernels/cpu/kd_loss.h's
// definitions): Σ over layers of 1 − cos per token and KL(parent‖child) over
// the vocabulary per token, with their gradients, so no hidden state or logit
// leaves the device. One block per row; every sum is a fixed tree in double
// (pz_block_sum_d), the row terms then added by one block (pz_cu_sum_parts):
// the same bits from run to run, no atomics. They differ from the CPU's
// sequential row sums by rounding.
#include "cuda_dev.cuh"
#include "cuda_impl.h"

#include <math.h>

#define KD_THREADS 256

__global__ void cosine_loss_kernel(double *part, float *d, const float *t, const float *c, int n_mat,
                                   size_t stride, int cols, double gs) {
    __shared__ double sh[32];
    const size_t o = (size_t)blockIdx.x * cols;
    double csum = 0;
    for (int l = 0; l < n_mat; l++) {
        const float *cr = c + l * stride + o, *tr = t + l * stride + o;
        double cc = 0, tt = 0, ct = 0;
        for (int i = threadIdx.x; i < cols; i += blockDim.x) {
            double ci = cr[i], ti = tr[i];
            cc += ci * ci, tt += ti * ti, ct += ci * ti;
        }
        cc = pz_block_sum_d(cc, sh);
        tt = pz_block_sum_d(tt, sh);
        ct = pz_block_sum_d(ct, sh);
        double nc = sqrt(cc), nt = sqrt(tt);
        double cs = nc > 0 && nt > 0 ? ct / (nc * nt) : 0;
        csum += 1 - cs;
        if (d) {
            // ∂(1 − cos)/∂c = −(t/(|c||t|) − cos·c/|c|²)
            double a = nc > 0 && nt > 0 ? 1 / (nc * nt) : 0, b = nc > 0 ? cs / cc : 0;
            float *dr = d + l * stride + o;
            for (int i = threadIdx.x; i < cols; i += blockDim.x)
                dr[i] = (float)(-gs * (a * tr[i] - b * cr[i]));
        }
    }
    if (threadIdx.x == 0) part[blockIdx.x] = csum;
}

// Max over the block (NaN propagates); every thread gets it.
__device__ __forceinline__ float block_max(float v, float *sh) {
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = pz_warp_max(v);
    __syncthreads();
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : -INFINITY;
    return pz_warp_max(v);
}

// d may equal q: each element is read and then written by the same thread.
__global__ void kl_loss_kernel(double *part, float *d, const float *p, const float *q, int V, double gs) {
    __shared__ double sh[32];
    __shared__ float shf[32];
    const size_t o = (size_t)blockIdx.x * V;
    const float *pr = p + o, *qr = q + o;
    float mp = -INFINITY, mq = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) mp = pz_nanmax(mp, pr[i]), mq = pz_nanmax(mq, qr[i]);
    mp = block_max(mp, shf);
    mq = block_max(mq, shf);
    double sp = 0, sq = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        sp += (double)expf(pr[i] - mp), sq += (double)expf(qr[i] - mq);
    sp = pz_block_sum_d(sp, sh);
    sq = pz_block_sum_d(sq, sh);
    const double ip = 1 / sp, iq = 1 / sq, lp = mp + log(sp), lq = mq + log(sq);
    double k = 0;
    float *dr = d ? d + o : NULL;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        float pi_ = pr[i], qi = qr[i];
        double pi = expf(pi_ - mp) * ip;
        k += pi * (((double)pi_ - lp) - ((double)qi - lq));
        if (dr) dr[i] = (float)(gs * (expf(qi - mq) * iq - pi));  // ∂KL/∂logit = q − p
    }
    k = pz_block_sum_d(k, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = k;
}

extern "C" cudaError_t pz_cu_cosine_loss(cudaStream_t s, double *part, float *d, const float *t,
                                         const float *c, int n_mat, size_t mat_stride, int rows,
                                         int cols, double grad_scale) {
    if (rows <= 0 || cols <= 0 || n_mat <= 0) return cudaSuccess;
    cosine_loss_kernel<<<rows, KD_THREADS, 0, s>>>(part, d, t, c, n_mat, mat_stride, cols, grad_scale);
    return cudaGetLastError();
}

extern "C" cudaError_t pz_cu_kl_loss(cudaStream_t s, double *part, float *d, const float *p,
                                     const float *q, int rows, int vocab, double grad_scale) {
    if (rows <= 0 || vocab <= 0) return cudaSuccess;
    kl_loss_kernel<<<rows, KD_THREADS, 0, s>>>(part, d, p, q, vocab, grad_scale);
    return cudaGetLastError();
}
