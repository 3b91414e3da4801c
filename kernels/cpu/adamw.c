// adamw.c — see adamw.h.
#include "adamw.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>

// Sums are taken in chunks of CHUNK elements, each in double by one thread,
// then the chunk sums are added in order: the same bits for any thread count.
#define CHUNK 16384

// Σ a[i]·b[i] (b == NULL: Σ a[i]²), or with diff: Σ (a[i] − b[i])².
static double chunked_sum(const float *a, const float *b, int diff, size_t n, int n_threads) {
    size_t nc = (n + CHUNK - 1) / CHUNK;
    if (nc == 0) return 0;
    double stack[64], *part = nc <= 64 ? stack : malloc(sizeof(double) * nc);
    if (!part) {  // out of memory: one thread, same order of chunks
        double s = 0;
        for (size_t c = 0; c < nc; c++) s += chunked_sum(a + c * CHUNK, b ? b + c * CHUNK : NULL,
                                                         diff, n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK, 1);
        return s;
    }
    int nt = nc > 1 ? n_threads : 1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (size_t c = 0; c < nc; c++) {
        size_t i0 = c * CHUNK, i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
        double s = 0;
        if (diff) {
#pragma omp simd reduction(+ : s)
            for (size_t i = i0; i < i1; i++) {
                double d = (double)a[i] - b[i];
                s += d * d;
            }
        } else {
#pragma omp simd reduction(+ : s)
            for (size_t i = i0; i < i1; i++) s += (double)a[i] * a[i];
        }
        part[c] = s;
    }
    double s = 0;
    for (size_t c = 0; c < nc; c++) s += part[c];
    if (part != stack) free(part);
    return s;
}

double pz_cpu_grad_norm(const pz_adamw_tensor *t, int n_tensors, int n_threads) {
    double s = 0;
    for (int i = 0; i < n_tensors; i++) s += chunked_sum(t[i].g, NULL, 0, t[i].n, n_threads);
    return sqrt(s);
}

double pz_cpu_clip_grads(pz_adamw_tensor *t, int n_tensors, float max_norm, int n_threads) {
    double norm = pz_cpu_grad_norm(t, n_tensors, n_threads);
    if (max_norm <= 0) return norm;
    double c = max_norm / (norm + 1e-6);
    if (c >= 1) return norm;
    float cf = (float)c;
    for (int k = 0; k < n_tensors; k++) {
        float *g = t[k].g;
        size_t n = t[k].n;
        int nt = n >= 65536 ? n_threads : 1;
#pragma omp parallel for simd num_threads(nt) if (nt > 1) schedule(static)
        for (size_t i = 0; i < n; i++) g[i] *= cf;
    }
    return norm;
}

double pz_cpu_adamw_step(pz_adamw_tensor *t, int n_tensors, long step, float lr,
                         const pz_adamw_params *hp, int n_threads) {
    double norm = pz_cpu_clip_grads(t, n_tensors, hp->clip_norm, n_threads);
    if (step < 1) step = 1;
    const float b1 = hp->beta1, b2 = hp->beta2, eps = hp->eps;
    const float bc1 = (float)(1.0 / (1.0 - pow(b1, (double)step)));
    const float bc2 = (float)(1.0 / (1.0 - pow(b2, (double)step)));
    for (int k = 0; k < n_tensors; k++) {
        float *p = t[k].p, *m = t[k].m, *v = t[k].v;
        const float *g = t[k].g;
        const float keep = t[k].decay ? 1.0f - lr * hp->weight_decay : 1.0f;
        size_t n = t[k].n;
        int nt = n >= 65536 ? n_threads : 1;
#pragma omp parallel for simd num_threads(nt) if (nt > 1) schedule(static)
        for (size_t i = 0; i < n; i++) {
            float gi = g[i];
            float mi = b1 * m[i] + (1 - b1) * gi;
            float vi = b2 * v[i] + (1 - b2) * gi * gi;
            m[i] = mi, v[i] = vi;
            p[i] = p[i] * keep - lr * (mi * bc1) / (sqrtf(vi * bc2) + eps);
        }
    }
    return norm;
}

double pz_cpu_nmse_loss(const float *y_parent, const float *y_child, size_t n, float *d_child,
                        float grad_scale, int n_threads) {
    double den = chunked_sum(y_parent, NULL, 0, n, n_threads);
    double num = chunked_sum(y_parent, y_child, 1, n, n_threads);
    if (den == 0) return NAN;
    if (d_child) {
        float c = (float)(2.0 * grad_scale / den);
        int nt = n >= 65536 ? n_threads : 1;
#pragma omp parallel for simd num_threads(nt) if (nt > 1) schedule(static)
        for (size_t i = 0; i < n; i++) d_child[i] = c * (y_child[i] - y_parent[i]);
    }
    return num / den;
}

double pz_cpu_token_nmse_loss(const float *y_parent, const float *y_child, int rows, int cols, float eps,
                              float *d_child, float grad_scale, int n_threads) {
    if (rows < 1 || cols < 1) return NAN;
    double stack[256], *part = rows <= 256 ? stack : malloc(sizeof(double) * (size_t)rows);
    if (!part) return NAN;
    const double inv_rows = 1.0 / rows;
    int nt = (size_t)rows * cols >= 65536 ? n_threads : 1;
    // Each row in double by one thread; the row terms are added in order
    // afterwards: the same bits for any thread count.
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *t = y_parent + (size_t)r * cols, *y = y_child + (size_t)r * cols;
        double num = 0, den = 0;
#pragma omp simd reduction(+ : num, den)
        for (int i = 0; i < cols; i++) {
            double d = (double)t[i] - y[i];
            num += d * d;
            den += (double)t[i] * t[i];
        }
        den += eps;
        part[r] = den > 0 ? num / den : NAN;
        if (d_child) {
            float c = (float)(2.0 * grad_scale * inv_rows / den);
            float *g = d_child + (size_t)r * cols;
            for (int i = 0; i < cols; i++) g[i] = c * (y[i] - t[i]);
        }
    }
    double s = 0;
    for (int r = 0; r < rows; r++) s += part[r];
    if (part != stack) free(part);
    return s * inv_rows;
}
