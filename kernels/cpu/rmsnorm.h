// rmsnorm.h — RMSNorm over rows: y = x / sqrt(mean(x^2) + eps) * w.
// The sum of squares is accumulated in double, so the op is as exact as
// fp32 storage allows. OpenMP over rows.
#ifndef PZ_CPU_RMSNORM_H
#define PZ_CPU_RMSNORM_H

// x, y: (M, n) contiguous; y may equal x. w: (n).
void pz_cpu_rmsnorm(float *y, const float *x, const float *w, int M, int n, float eps, int n_threads);

#endif
