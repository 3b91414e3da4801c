// bwd_rmsnorm.h — RMSNorm for training: a forward that saves each row's
// reciprocal RMS, and the backward pass. y = x / rms(x) · w with
// rms(x) = sqrt(mean(x²) + eps), over rows of length n.
//
// Backward, with r = 1/rms(x), x̂ = x·r and g = dy ⊙ w:
//   dx = r · (g − x̂ · mean(g ⊙ x̂)),   dw += Σ_rows dy ⊙ x̂.
// Sums are taken in double. dw is summed by columns (each thread owns a
// range of columns), so it is bit-identical whatever the thread count.
#ifndef PZ_CPU_BWD_RMSNORM_H
#define PZ_CPU_BWD_RMSNORM_H

// x, y: (M, n) contiguous; y may equal x. w: (n). rstd: (M), receives r
// (may be NULL when no backward follows).
// The same numbers as pz_cpu_rmsnorm (rmsnorm.h).
void pz_cpu_rmsnorm_fwd_train(float *y, float *rstd, const float *x, const float *w, int M, int n,
                              float eps, int n_threads);

// dy, x: (M, n); rstd: (M) from the forward.
// dx (M, n) = (dx_acc ? dx : 0) + ∂L/∂x; skipped when NULL. dx may equal dy
// only when dx_acc is 0.
// dw (n) += ∂L/∂w; skipped when NULL.
void pz_cpu_rmsnorm_bwd(float *dx, int dx_acc, float *dw, const float *dy, const float *x,
                        const float *w, const float *rstd, int M, int n, int n_threads);

#endif
