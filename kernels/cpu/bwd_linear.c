// bwd_linear.c — see bwd_linear.h.
#include "bwd_linear.h"

int pz_cpu_linear_fwd(pz_cpu_gm *g, float *y, const float *x, const float *w, int M, int N,
                      int K, pz_dt prec, char *err) {
    return pz_cpu_gemm(g, 0, 1, M, N, K, x, K, w, K, y, N, 0, prec, err);
}

int pz_cpu_linear_bwd(pz_cpu_gm *g, float *dx, int dx_acc, float *dw, const float *dy,
                      const float *x, const float *w, int M, int N, int K, pz_dt prec, char *err) {
    // dx[M,K] = dy[M,N]·W[N,K]
    if (dx && pz_cpu_gemm(g, 0, 0, M, K, N, dy, N, w, K, dx, K, dx_acc, prec, err)) return -1;
    // dW[N,K] += dy[M,N]ᵀ·x[M,K]
    if (dw && pz_cpu_gemm(g, 1, 0, N, K, M, dy, N, x, K, dw, K, 1, prec, err)) return -1;
    return 0;
}
