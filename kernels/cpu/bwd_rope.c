// bwd_rope.c — see bwd_rope.h. The forward maps (x0, x1) to
// (x0·c − x1·s, x1·c + x0·s); its transpose maps (d0, d1) to
// (d0·c + d1·s, d1·c − d0·s).
#include "bwd_rope.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

void pz_cpu_rope_bwd(float *dx, int ld, const int32_t *pos, int M, int n_heads, int head_dim,
                     const float *inv_freq, int n_threads) {
    int half = head_dim / 2;
    int nt = M >= 8 ? n_threads : 1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int m = 0; m < M; m++) {
        float c[512], s[512];
        for (int i = 0; i < half; i++) {
            double a = (double)pos[m] * (double)inv_freq[i];
            c[i] = (float)cos(a);
            s[i] = (float)sin(a);
        }
        float *xr = dx + (size_t)m * ld;
        for (int h = 0; h < n_heads; h++) {
            float *xh = xr + (size_t)h * head_dim;
#pragma omp simd
            for (int i = 0; i < half; i++) {
                float d0 = xh[i], d1 = xh[i + half];
                xh[i] = d0 * c[i] + d1 * s[i];
                xh[i + half] = d1 * c[i] - d0 * s[i];
            }
        }
    }
}
