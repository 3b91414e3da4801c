// bwd_rmsnorm.c — see bwd_rmsnorm.h.
#include "bwd_rmsnorm.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

// pz_cpu_rmsnorm_fwd_train lives in rmsnorm.c, beside the inference forward.

void pz_cpu_rmsnorm_bwd(float *dx, int dx_acc, float *dw, const float *dy, const float *x,
                        const float *w, const float *rstd, int M, int n, int n_threads) {
    if (dx) {
        int nt = M >= 8 ? n_threads : 1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int m = 0; m < M; m++) {
            const float *xr = x + (size_t)m * n, *dyr = dy + (size_t)m * n;
            float *dxr = dx + (size_t)m * n;
            double r = rstd[m], s = 0;
#pragma omp simd reduction(+ : s)
            for (int i = 0; i < n; i++) s += (double)dyr[i] * w[i] * xr[i];
            // mean(g ⊙ x̂) · r = r² · mean(g ⊙ x)
            float c = (float)(s * r * r / n), rf = (float)r;
            if (dx_acc) {
#pragma omp simd
                for (int i = 0; i < n; i++) dxr[i] += rf * (dyr[i] * w[i] - xr[i] * c);
            } else {
#pragma omp simd
                for (int i = 0; i < n; i++) dxr[i] = rf * (dyr[i] * w[i] - xr[i] * c);
            }
        }
    }
    if (dw) {
        // Columns in blocks of 64, each summed over all rows by one thread.
        enum { CB = 64 };
        int nb = (n + CB - 1) / CB;
        int nt = (size_t)M * n >= 16384 && nb > 1 ? n_threads : 1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int b = 0; b < nb; b++) {
            int i0 = b * CB, i1 = i0 + CB < n ? i0 + CB : n;
            double acc[CB] = {0};
            for (int m = 0; m < M; m++) {
                const float *xr = x + (size_t)m * n, *dyr = dy + (size_t)m * n;
                double r = rstd[m];
#pragma omp simd
                for (int i = i0; i < i1; i++) acc[i - i0] += (double)dyr[i] * xr[i] * r;
            }
            for (int i = i0; i < i1; i++) dw[i] += (float)acc[i - i0];
        }
    }
}
