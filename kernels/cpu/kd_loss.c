// kd_loss.c — see kd_loss.h.
#include "kd_loss.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

double pz_cpu_cosine_loss(const float *y_parent, const float *y_child, int n_mat, size_t mat_stride,
                          int rows, int cols, float *d_child, double grad_scale, int n_threads) {
    if (n_mat < 1 || rows < 1 || cols < 1) return NAN;
    double *part = malloc(sizeof(double) * (size_t)rows);
    if (!part) return NAN;
    const double gs = grad_scale;
    int nt = (size_t)n_mat * rows * cols >= 65536 && n_threads > 1 ? n_threads : 1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int r = 0; r < rows; r++) {
        double csum = 0;
        for (int l = 0; l < n_mat; l++) {
            const float *c = y_child + (size_t)l * mat_stride + (size_t)r * cols;
            const float *t = y_parent + (size_t)l * mat_stride + (size_t)r * cols;
            double cc = 0, tt = 0, ct = 0;
            for (int i = 0; i < cols; i++)
                cc += (double)c[i] * c[i], tt += (double)t[i] * t[i], ct += (double)c[i] * t[i];
            double nc = sqrt(cc), nt_ = sqrt(tt);
            double cs = nc > 0 && nt_ > 0 ? ct / (nc * nt_) : 0;
            csum += 1 - cs;
            if (d_child) {
                // ∂(1 − cos)/∂c = −(t/(|c||t|) − cos·c/|c|²)
                float *d = d_child + (size_t)l * mat_stride + (size_t)r * cols;
                double a = nc > 0 && nt_ > 0 ? 1 / (nc * nt_) : 0, b = nc > 0 ? cs / cc : 0;
                for (int i = 0; i < cols; i++) d[i] = (float)(-gs * (a * t[i] - b * c[i]));
            }
        }
        part[r] = csum;
    }
    double s = 0;
    for (int r = 0; r < rows; r++) s += part[r];
    free(part);
    return s;
}

// e[i] = exp(x[i] − max x) (fp32), *inv = 1 / Σ e (so e·inv = softmax(x));
// returns log Σ exp(x) (the sum taken in double).
static double exp_row(const float *x, float *e, int n, double *inv) {
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += (e[i] = expf(x[i] - mx));
    *inv = 1 / s;
    return mx + log(s);
}

double pz_cpu_kl_loss(const float *logits_parent, const float *logits_child, int rows, int vocab,
                      float *d_child, double grad_scale, int n_threads) {
    if (rows < 1 || vocab < 1) return NAN;
    int nt = rows > 1 && n_threads > 1 ? n_threads : 1;
    double *part = malloc(sizeof(double) * (size_t)rows);
    float *scratch = malloc(sizeof(float) * 2 * (size_t)vocab * (size_t)nt);
    if (!part || !scratch) {
        free(part), free(scratch);
        return NAN;
    }
    const double gs = grad_scale;
    const int V = vocab;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *p = logits_parent + (size_t)r * V, *q = logits_child + (size_t)r * V;
        float *d = d_child ? d_child + (size_t)r * V : NULL;
        float *ep = scratch + (size_t)omp_get_thread_num() * 2 * V, *eq = ep + V;
        double sp, sq, k = 0;
        const double lp = exp_row(p, ep, V, &sp), lq = exp_row(q, eq, V, &sq);
        for (int i = 0; i < V; i++) {
            double pi = ep[i] * sp;
            k += pi * (((double)p[i] - lp) - ((double)q[i] - lq));
            if (d) d[i] = (float)(gs * (eq[i] * sq - pi));  // ∂KL/∂logit = q − p
        }
        part[r] = k;
    }
    double s = 0;
    for (int r = 0; r < rows; r++) s += part[r];
    free(part), free(scratch);
    return s;
}
