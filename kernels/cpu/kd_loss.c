// kd_loss.c — see kd_loss.h.
#include "kd_loss.h"
#include "isa.h"
#include "vexp.h"

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

// The same on 8 lanes (AVX2): the exp is vexp.h's (relative error ~2e-7,
// inputs below −86 give ~4e-38 rather than 0), the sum in 4 double lanes.
PZ_T256 static double exp_row_avx2(const float *x, float *e, int n, double *inv) {
    __m256 vm = _mm256_set1_ps(x[0]);
    int i = 0;
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    float mx = pz_hmax256(vm);
    for (; i < n; i++)
        if (x[i] > mx) mx = x[i];
    const __m256 m8 = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = pz_vexp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), m8));
        _mm256_storeu_ps(e + i, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) s += (e[i] = expf(x[i] - mx));
    *inv = 1 / s;
    return mx + log(s);
}

// One row of pz_cpu_kl_loss on 8 lanes: returns KL(p ‖ q), writes d (may be
// NULL, may be q) = gs · (softmax(q) − softmax(p)). ep, eq: V floats each.
PZ_T256 static double kl_row_avx2(const float *p, const float *q, float *d, float *ep, float *eq, int V,
                                  double gs) {
    double sp, sq;
    const double lp = exp_row_avx2(p, ep, V, &sp), lq = exp_row_avx2(q, eq, V, &sq);
    // (p − lp) − (q − lq) = (p − q) − (lp − lq), in double as the plain path.
    const __m256d vsp = _mm256_set1_pd(sp), vsq = _mm256_set1_pd(sq), vl = _mm256_set1_pd(lp - lq);
    const __m256d vgs = _mm256_set1_pd(gs);
    __m256d k0 = _mm256_setzero_pd(), k1 = _mm256_setzero_pd();
    int i = 0;
    for (; i + 8 <= V; i += 8) {
        __m256 a = _mm256_loadu_ps(p + i), b = _mm256_loadu_ps(q + i);
        __m256 xa = _mm256_loadu_ps(ep + i), xb = _mm256_loadu_ps(eq + i);
        __m256d pi0 = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(xa)), vsp);
        __m256d pi1 = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(xa, 1)), vsp);
        __m256d df0 = _mm256_sub_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(a)),
                                                  _mm256_cvtps_pd(_mm256_castps256_ps128(b))), vl);
        __m256d df1 = _mm256_sub_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)),
                                                  _mm256_cvtps_pd(_mm256_extractf128_ps(b, 1))), vl);
        k0 = _mm256_add_pd(k0, _mm256_mul_pd(pi0, df0));
        k1 = _mm256_add_pd(k1, _mm256_mul_pd(pi1, df1));
        if (d) {
            __m256d g0 = _mm256_mul_pd(vgs, _mm256_sub_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(xb)), vsq), pi0));
            __m256d g1 = _mm256_mul_pd(vgs, _mm256_sub_pd(_mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(xb, 1)), vsq), pi1));
            _mm256_storeu_ps(d + i, _mm256_set_m128(_mm256_cvtpd_ps(g1), _mm256_cvtpd_ps(g0)));
        }
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(k0, k1));
    double k = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < V; i++) {
        double pi = ep[i] * sp;
        k += pi * (((double)p[i] - q[i]) - (lp - lq));
        if (d) d[i] = (float)(gs * (eq[i] * sq - pi));
    }
    return k;
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
    const int V = vocab, vec = pz_cpu_isa() >= PZ_ISA_AVX2;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *p = logits_parent + (size_t)r * V, *q = logits_child + (size_t)r * V;
        float *d = d_child ? d_child + (size_t)r * V : NULL;
        float *ep = scratch + (size_t)omp_get_thread_num() * 2 * V, *eq = ep + V;
        if (vec) {
            part[r] = kl_row_avx2(p, q, d, ep, eq, V, gs);
            continue;
        }
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
