// rope.c — see rope.h.
#include "rope.h"
#include "bwd_rope.h"
#include "backend.h"

#include <math.h>
#include <omp.h>
#include <stddef.h>

// cos and sign * sin of pos * inv_freq[i], i < half, in double.
static inline void angles(float *c, float *s, int32_t pos, int half, const float *inv_freq, float sign) {
    for (int i = 0; i < half; i++) {
        double a = (double)pos * (double)inv_freq[i];
        c[i] = (float)cos(a);
        s[i] = sign * (float)sin(a);
    }
}

// Rotates each (x_i, x_{i+half}) pair of every head of one row by the angles c/s.
static inline void rotate_row(float *xr, const float *c, const float *s, int n_heads, int head_dim) {
    int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *xh = xr + (size_t)h * head_dim;
#pragma omp simd
        for (int i = 0; i < half; i++) {
            float x0 = xh[i], x1 = xh[i + half];
            xh[i] = x0 * c[i] - x1 * s[i];
            xh[i + half] = x1 * c[i] + x0 * s[i];
        }
    }
}

// A second thread from 32 rows: a decode batch of 16 rows (12 heads of 64,
// q and k) took 10.3 us on one thread and 13.8 on two (best of 2000,
// OMP_WAIT_POLICY=passive, 2-core EPYC): waking a thread costs more than
// it saves, as for rmsnorm and swiglu; it was 8 rows.
#define ROPE_THREADS(M, n_threads) ((M) >= 32 ? (n_threads) : 1)

// sign +1 is the forward; -1 is its transpose (the inverse rotation), which is
// RoPE's backward.
static void rotate(float *x, int ld, const int32_t *pos, int M, int n_heads, int head_dim,
                   const float *inv_freq, int n_threads, float sign) {
    int half = head_dim / 2, nt = ROPE_THREADS(M, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int m = 0; m < M; m++) {
        float c[512], s[512];
        angles(c, s, pos[m], half, inv_freq, sign);
        rotate_row(x + (size_t)m * ld, c, s, n_heads, head_dim);
    }
}

void pz_cpu_rope_table(float *cs, const int32_t *pos, int M, int head_dim, const float *inv_freq) {
    int half = head_dim / 2;
    for (int m = 0; m < M; m++) angles(cs + (size_t)m * head_dim, cs + (size_t)m * head_dim + half, pos[m], half, inv_freq, 1.0f);
}

void pz_cpu_rope_apply(float *x, int ld, const float *cs, int M, int n_heads, int head_dim, int n_threads) {
    int half = head_dim / 2, nt = ROPE_THREADS(M, n_threads);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int m = 0; m < M; m++) {
        const float *c = cs + (size_t)m * head_dim;
        rotate_row(x + (size_t)m * ld, c, c + half, n_heads, head_dim);
    }
}

void pz_cpu_rope(float *x, int ld, const int32_t *pos, int M, int n_heads, int head_dim,
                 const float *inv_freq, int n_threads) {
    rotate(x, ld, pos, M, n_heads, head_dim, inv_freq, n_threads, 1.0f);
}

void pz_cpu_rope_bwd(float *dx, int ld, const int32_t *pos, int M, int n_heads, int head_dim,
                     const float *inv_freq, int n_threads) {
    rotate(dx, ld, pos, M, n_heads, head_dim, inv_freq, n_threads, -1.0f);
}
