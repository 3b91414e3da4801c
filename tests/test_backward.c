// test_backward.c — the training kernels (kernels/cpu/bwd_*.h, adamw.h)
// against central finite differences of double-precision reference
// forwards written here, on small random inputs (never zeros).
//
// Every gradient check uses the scalar loss L = Σ G ⊙ y with a random G,
// so the analytic gradients come from the kernels' backward with dy = G,
// and the reference ones from (L(p+h) − L(p−h)) / 2h in double, h = 1e-5
// (truncation and rounding errors ~1e-10, far below fp32's). The error of
// a tensor is max|analytic − fd| / max|fd|. Tolerances:
//   fp32 kernels vs double FD ............................ 1e-4
//   bf16 products vs double on bf16-rounded operands ...... 1e-5
//   bf16 products vs exact (fp32-operand) gradients ........ 2e-2
// Also: AdamW solves a small least-squares problem; the schedule's values
// at the end of warm-up, half-way and the end; clipping to the stated norm;
// a short BLD-style training run is bit-identical when repeated.
#include "testutil.h"
#include "backend.h"
#include "cpu/adamw.h"
#include "cpu/attention.h"
#include "cpu/bwd_attention.h"
#include "cpu/bwd_linear.h"
#include "cpu/bwd_rmsnorm.h"
#include "cpu/bwd_rope.h"
#include "cpu/bwd_swiglu.h"
#include "cpu/isa.h"
#include "cpu/kd_loss.h"
#include "cpu/rope.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL_F32 1e-4
#define TOL_BF16_ROUNDED 1e-5
#define TOL_BF16_EXACT 2e-2
#define FD_H 1e-5
#define EPS_NORM 1e-5f

static uint64_t rng = 20241129;
static char err[PZ_ERRLEN];
static pz_cpu_gm *G1;  // one thread
static pz_cpu_gm *G2;  // two threads
static double worst_f32 = 0;

static float *randf(size_t n, float scale) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    pz_test_fill_randn(x, n, scale, &rng);
    return x;
}
static double *to_d(const float *x, size_t n) {
    double *y = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}
static float *zerosf(size_t n) { return calloc(n ? n : 1, sizeof(float)); }
static double dotd(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// ---- double-precision reference forwards ------------------------------------------
static void ref_linear(double *y, const double *x, const double *w, int M, int N, int K) {
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) y[(size_t)m * N + n] = dotd(x + (size_t)m * K, w + (size_t)n * K, K);
}

static void ref_rmsnorm(double *y, const double *x, const double *w, int M, int n, double eps) {
    for (int m = 0; m < M; m++) {
        double r = 1 / sqrt(dotd(x + (size_t)m * n, x + (size_t)m * n, n) / n + eps);
        for (int i = 0; i < n; i++) y[(size_t)m * n + i] = x[(size_t)m * n + i] * r * w[i];
    }
}

// In place, Hugging Face pairing (i with i + d/2), angle pos·inv_freq[i].
static void ref_rope(double *x, int M, int nh, int d, const int32_t *pos, const float *inv_freq) {
    for (int m = 0; m < M; m++)
        for (int h = 0; h < nh; h++) {
            double *xh = x + (size_t)m * nh * d + (size_t)h * d;
            for (int i = 0; i < d / 2; i++) {
                double a = (double)pos[m] * inv_freq[i], c = cos(a), s = sin(a);
                double x0 = xh[i], x1 = xh[i + d / 2];
                xh[i] = x0 * c - x1 * s;
                xh[i + d / 2] = x1 * c + x0 * s;
            }
        }
}

static void ref_attention(double *out, const double *q, const double *k, const double *v,
                          int n_seq, int T, int nh, int nkv, int d) {
    int group = nh / nkv;
    double *p = malloc(sizeof(double) * T);
    for (int b = 0; b < n_seq; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                const double *qi = q + ((size_t)b * T + t) * nh * d + (size_t)h * d;
                double mx = -INFINITY, l = 0;
                for (int j = 0; j <= t; j++) {
                    const double *kj = k + ((size_t)b * T + j) * nkv * d + (size_t)(h / group) * d;
                    p[j] = dotd(qi, kj, d) / sqrt((double)d);
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j <= t; j++) l += (p[j] = exp(p[j] - mx));
                double *o = out + ((size_t)b * T + t) * nh * d + (size_t)h * d;
                for (int i = 0; i < d; i++) {
                    double s = 0;
                    for (int j = 0; j <= t; j++)
                        s += p[j] * v[((size_t)b * T + j) * nkv * d + (size_t)(h / group) * d + i];
                    o[i] = s / l;
                }
            }
    free(p);
}

static double silu_d(double g) { return g / (1 + exp(-g)); }

// ---- finite differences -----------------------------------------------------------
// A problem: up to 8 double tensors, a reference forward writing y, and G.
typedef struct fdprob fdprob;
struct fdprob {
    void (*fwd)(fdprob *p);
    double *t[8];
    size_t n[8];
    double *y, *G;
    size_t ny;
    int dim[8];
    const int32_t *pos;
    const float *inv_freq;
};

static double fd_loss(fdprob *p) {
    p->fwd(p);
    return dotd(p->y, p->G, p->ny);
}

// Central differences of the loss with respect to tensor ti into grad.
static void fd_grad(fdprob *p, int ti, double *grad) {
    double *x = p->t[ti];
    for (size_t i = 0; i < p->n[ti]; i++) {
        double old = x[i], h = FD_H * (fabs(old) > 1 ? fabs(old) : 1);
        x[i] = old + h;
        double lp = fd_loss(p);
        double xp = x[i];
        x[i] = old - h;
        double lm = fd_loss(p);
        double xm = x[i];
        x[i] = old;
        grad[i] = (lp - lm) / (xp - xm);
    }
}

// Compares an analytic gradient with FD for tensor ti; returns the error.
static double check_grad(fdprob *p, int ti, const float *analytic, const char *op,
                         const char *name, double tol) {
    double *fd = malloc(sizeof(double) * p->n[ti]);
    fd_grad(p, ti, fd);
    double e = pz_rel_err_fd(analytic, fd, p->n[ti]);
    printf("  %-22s d%-6s rel err %.2e  (tol %.0e, %zu values)\n", op, name, e, tol, p->n[ti]);
    CHECKF(e <= tol, "%s d%s: rel err %.3g > %.0e", op, name, e, tol);
    if (tol == TOL_F32 && e > worst_f32) worst_f32 = e;
    free(fd);
    return e;
}

// A scalar loss against its double reference (p->fwd), within tol relative,
// then its gradient d (tensor 0) against finite differences.
static void check_loss(fdprob *p, double loss, const float *d, const char *op, const char *name, double tol) {
    p->fwd(p);
    double el = fabs(loss - p->y[0]) / p->y[0];
    printf("  %s %.6f, rel err %.2e\n", op, loss, el);
    CHECKF(el < tol, "%s: %.3g", op, el);
    check_grad(p, 0, d, op, name, TOL_F32);
}

static void check_fwd(fdprob *p, const float *y, const char *op, double tol) {
    p->fwd(p);
    double e = pz_rel_err_fd(y, p->y, p->ny);
    printf("  %-22s forward  rel err %.2e\n", op, e);
    CHECKF(e <= tol, "%s forward: rel err %.3g", op, e);
}

// ---- linear -----------------------------------------------------------------------
static void fwd_linear(fdprob *p) { ref_linear(p->y, p->t[0], p->t[1], p->dim[0], p->dim[1], p->dim[2]); }

static void test_linear(pz_cpu_gm *g) {
    int M = 7, N = 5, K = 6;
    float *x = randf((size_t)M * K, 1), *w = randf((size_t)N * K, 0.5f), *G = randf((size_t)M * N, 1);
    float *y = zerosf((size_t)M * N), *dx = randf((size_t)M * K, 1), *dw = randf((size_t)N * K, 1);
    float *dw0 = malloc(sizeof(float) * N * K);
    memcpy(dw0, dw, sizeof(float) * N * K);
    CHECKF(pz_cpu_linear_fwd(g, y, x, w, M, N, K, PZ_DT_F32, err) == 0, "%s", err);
    CHECKF(pz_cpu_linear_bwd(g, dx, 0, dw, G, x, w, M, N, K, PZ_DT_F32, err) == 0, "%s", err);
    for (int i = 0; i < N * K; i++) dw[i] -= dw0[i];  // dw accumulates: take the increment
    fdprob p = {.fwd = fwd_linear, .t = {to_d(x, M * K), to_d(w, N * K)}, .n = {M * K, N * K},
                .y = malloc(sizeof(double) * M * N), .G = to_d(G, M * N), .ny = M * N,
                .dim = {M, N, K}};
    check_fwd(&p, y, "linear f32", 1e-6);
    check_grad(&p, 0, dx, "linear f32", "x", TOL_F32);
    check_grad(&p, 1, dw, "linear f32", "W", TOL_F32);
    free(p.t[0]), free(p.t[1]), free(p.y), free(p.G);
    free(x), free(w), free(G), free(y), free(dx), free(dw), free(dw0);
}

// pz_cpu_gemm, all transposes, padded strides, accumulate, against double.
static void test_gemm_shapes(void) {
    int M = 33, N = 17, K = 29, pad = 3;
    for (int prec = 0; prec < 2; prec++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int acc = 0; acc < 2; acc++) {
                    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
                    int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
                    float *A = randf((size_t)ar * lda, 1), *B = randf((size_t)br * ldb, 1);
                    float *C = randf((size_t)M * ldc, 1);
                    double *ref = malloc(sizeof(double) * M * ldc);
                    for (int m = 0; m < M; m++)
                        for (int n = 0; n < ldc; n++) {
                            double s = 0;
                            for (int k = 0; k < K && n < N; k++) {
                                float a = ta ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
                                float b = tb ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
                                if (prec) {  // bf16 operands: round to nearest even
                                    uint32_t u;
                                    memcpy(&u, &a, 4), u = (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u, memcpy(&a, &u, 4);
                                    memcpy(&u, &b, 4), u = (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u, memcpy(&b, &u, 4);
                                }
                                s += (double)a * b;
                            }
                            double old = C[(size_t)m * ldc + n];
                            ref[(size_t)m * ldc + n] = n >= N ? old : acc ? old + s : s;
                        }
                    int rc = pz_cpu_gemm(G2, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc,
                                         prec ? PZ_DT_BF16 : PZ_DT_F32, err);
                    CHECKF(rc == 0, "%s", err);
                    double e = pz_rel_err_fd(C, ref, (size_t)M * ldc);
                    CHECKF(e < 2e-6, "gemm %s ta=%d tb=%d acc=%d: rel err %.3g", prec ? "bf16" : "f32", ta, tb, acc, e);
                    free(A), free(B), free(C), free(ref);
                }
    printf("  gemm: 16 transpose/accumulate/precision cases checked\n");
}

// bf16 linear: against double on bf16-rounded operands (tight) and on the
// fp32 operands (loose: bf16 keeps 8 significant bits).
static float bf16r(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

// The bf16 rounding every bf16 product starts with (gemm.h): the vector
// paths (AVX-512 BF16, AVX2) and the fp32-kept form against the scalar rule
// above, on ties, NaNs, infinities, zeros, subnormals, values that round up to
// infinity, and random values, at every length mod the vector widths.
static void test_bf16_rounding(void) {
    enum { N = 4099 };
    float *x = malloc(sizeof(float) * N), *r = malloc(sizeof(float) * N);
    uint16_t *h = malloc(sizeof(uint16_t) * N);
    uint64_t s = 7;
    for (int i = 0; i < N; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t u = (uint32_t)(s >> 32);
        switch (i % 8) {
        case 0: u = (u & 0xffff0000u) | 0x8000u; break;                   // exact tie
        case 1: u = (u & 0xffff0000u) | (i % 16 < 8 ? 0x7fffu : 0x8001u); break;
        case 2: u = 0x7f800000u | (u & 0x807fffffu); break;              // inf / NaN (sign, payload)
        case 3: u = (u & 0x8000ffffu) | (i % 3 ? 0 : 0x7f7f0000u); break;  // subnormal, near FLT_MAX
        default: break;
        }
        memcpy(&x[i], &u, 4);
    }
    x[5] = 0.0f, x[13] = -0.0f, x[21] = 3.40282347e38f, x[29] = -3.40282347e38f;
    const pz_isa top = pz_cpu_isa_detected();
    int bad = 0, paths = 0;
    for (int lvl = PZ_ISA_PLAIN; lvl <= (int)top; lvl++, paths++) {
        pz_cpu_isa_set_max((pz_isa)lvl);
        for (int n = N - 40; n <= N && !bad; n++) {
            memset(h, 0, sizeof(uint16_t) * N), memset(r, 0, sizeof(float) * N);
            pz_cpu_f32_to_bf16(x, h, (size_t)n);
            pz_cpu_f32_round_bf16(x, r, (size_t)n);
            for (int i = 0; i < n && !bad; i++) {
                uint32_t u, ru;
                memcpy(&u, &x[i], 4), memcpy(&ru, &r[i], 4);
                uint16_t want = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40)
                                                                 : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
                if (h[i] != want || ru != (uint32_t)want << 16) {
                    CHECKF(0, "bf16 rounding (%s, n %d): x[%d] = 0x%08x -> 0x%04x / 0x%08x, want 0x%04x",
                           pz_cpu_isa_name((pz_isa)lvl), n, i, u, h[i], ru, want);
                    bad = 1;
                }
            }
        }
    }
    pz_cpu_isa_set_max(PZ_ISA_AVX512);
    if (!bad) printf("  bf16 rounding: %d instruction-set paths bit-exact\n", paths);
    free(x), free(r), free(h);
}

static void test_linear_bf16(void) {
    int M = 16, N = 24, K = 32;
    float *x = randf((size_t)M * K, 1), *w = randf((size_t)N * K, 0.5f), *G = randf((size_t)M * N, 1);
    float *dx = zerosf((size_t)M * K), *dw = zerosf((size_t)N * K), *y = zerosf((size_t)M * N);
    CHECKF(pz_cpu_linear_fwd(G2, y, x, w, M, N, K, PZ_DT_BF16, err) == 0, "%s", err);
    CHECKF(pz_cpu_linear_bwd(G2, dx, 0, dw, G, x, w, M, N, K, PZ_DT_BF16, err) == 0, "%s", err);
    for (int rounded = 1; rounded >= 0; rounded--) {
        double *rdx = calloc((size_t)M * K, sizeof(double)), *rdw = calloc((size_t)N * K, sizeof(double));
        double *ry = calloc((size_t)M * N, sizeof(double));
#define RV(v) (rounded ? (double)bf16r(v) : (double)(v))
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
                for (int k = 0; k < K; k++) {
                    size_t im = (size_t)m * K + k, iw = (size_t)n * K + k, ig = (size_t)m * N + n;
                    ry[ig] += RV(x[im]) * RV(w[iw]);
                    rdx[im] += RV(G[ig]) * RV(w[iw]);
                    rdw[iw] += RV(G[ig]) * RV(x[im]);
                }
#undef RV
        double tol = rounded ? TOL_BF16_ROUNDED : TOL_BF16_EXACT;
        double ey = pz_rel_err_fd(y, ry, (size_t)M * N), ex = pz_rel_err_fd(dx, rdx, (size_t)M * K);
        double ew = pz_rel_err_fd(dw, rdw, (size_t)N * K);
        printf("  linear bf16 vs %-7s  y %.2e  dx %.2e  dW %.2e  (tol %.0e)\n",
               rounded ? "rounded" : "exact", ey, ex, ew, tol);
        CHECKF(ey <= tol && ex <= tol && ew <= tol, "bf16 linear (%s): %.3g %.3g %.3g",
               rounded ? "rounded" : "exact", ey, ex, ew);
        free(rdx), free(rdw), free(ry);
    }
    free(x), free(w), free(G), free(dx), free(dw), free(y);
}

// ---- RMSNorm ----------------------------------------------------------------------
static void fwd_rmsnorm(fdprob *p) { ref_rmsnorm(p->y, p->t[0], p->t[1], p->dim[0], p->dim[1], EPS_NORM); }

static void test_rmsnorm(void) {
    int M = 5, n = 11;
    float *x = randf((size_t)M * n, 1.5f), *w = randf(n, 1), *G = randf((size_t)M * n, 1);
    float *y = zerosf((size_t)M * n), *rstd = zerosf(M), *dx = randf((size_t)M * n, 1);
    float *dw = zerosf(n), *dx2 = malloc(sizeof(float) * M * n), *old = malloc(sizeof(float) * M * n);
    memcpy(dx2, dx, sizeof(float) * M * n);
    memcpy(old, dx, sizeof(float) * M * n);
    pz_cpu_rmsnorm_fwd_train(y, rstd, x, w, M, n, EPS_NORM, 2);
    pz_cpu_rmsnorm_bwd(dx, 0, dw, G, x, w, rstd, M, n, 2);
    pz_cpu_rmsnorm_bwd(dx2, 1, NULL, G, x, w, rstd, M, n, 2);  // accumulate onto the old values
    fdprob p = {.fwd = fwd_rmsnorm, .t = {to_d(x, M * n), to_d(w, n)}, .n = {M * n, n},
                .y = malloc(sizeof(double) * M * n), .G = to_d(G, M * n), .ny = M * n, .dim = {M, n}};
    check_fwd(&p, y, "rmsnorm", 1e-6);
    check_grad(&p, 0, dx, "rmsnorm", "x", TOL_F32);
    check_grad(&p, 1, dw, "rmsnorm", "w", TOL_F32);
    // dx_acc: dx2 started as a copy of dx's initial values (old), now old + ∂L/∂x.
    double e = 0;
    for (int i = 0; i < M * n; i++) e = fmax(e, fabs((double)dx2[i] - old[i] - dx[i]));
    CHECKF(e < 1e-5, "rmsnorm: dx_acc does not add (%.3g)", e);
    free(p.t[0]), free(p.t[1]), free(p.y), free(p.G);
    free(x), free(w), free(G), free(y), free(rstd), free(dx), free(dw), free(dx2), free(old);
}

// ---- RoPE -------------------------------------------------------------------------
static void fwd_rope(fdprob *p) {
    memcpy(p->y, p->t[0], sizeof(double) * p->ny);
    ref_rope(p->y, p->dim[0], p->dim[1], p->dim[2], p->pos, p->inv_freq);
}

static void test_rope(void) {
    int M = 5, nh = 3, d = 8, W = nh * d;
    int32_t pos[5] = {0, 1, 7, 130, 4095};
    pz_rope_params rp = {.head_dim = d, .theta = 10000.0f};
    float inv_freq[4];
    pz_rope_inv_freq(&rp, inv_freq);
    float *x = randf((size_t)M * W, 1), *G = randf((size_t)M * W, 1), *y = malloc(sizeof(float) * M * W);
    float *dx = malloc(sizeof(float) * M * W);
    memcpy(y, x, sizeof(float) * M * W);
    pz_cpu_rope(y, W, pos, M, nh, d, inv_freq, 1);
    memcpy(dx, G, sizeof(float) * M * W);
    pz_cpu_rope_bwd(dx, W, pos, M, nh, d, inv_freq, 1);
    fdprob p = {.fwd = fwd_rope, .t = {to_d(x, M * W)}, .n = {M * W}, .y = malloc(sizeof(double) * M * W),
                .G = to_d(G, M * W), .ny = M * W, .dim = {M, nh, d}, .pos = pos, .inv_freq = inv_freq};
    check_fwd(&p, y, "rope", 1e-5);
    check_grad(&p, 0, dx, "rope", "x", TOL_F32);
    // The backward is the inverse: rope_bwd(rope(x)) = x.
    pz_cpu_rope_bwd(y, W, pos, M, nh, d, inv_freq, 1);
    double e = pz_rel_err_f(y, x, (size_t)M * W);
    printf("  rope: bwd(fwd(x)) vs x rel err %.2e\n", e);
    CHECKF(e < 1e-6, "rope inverse: %.3g", e);
    free(p.t[0]), free(p.y), free(p.G);
    free(x), free(G), free(y), free(dx);
}

// ---- attention --------------------------------------------------------------------
static void fwd_attention(fdprob *p) {
    ref_attention(p->y, p->t[0], p->t[1], p->t[2], p->dim[0], p->dim[1], p->dim[2], p->dim[3], p->dim[4]);
}

static void test_attention(int n_seq, int T, int nh, int nkv, int d) {
    int M = n_seq * T, nq = nh * d, nk = nkv * d;
    float *q = randf((size_t)M * nq, 1), *k = randf((size_t)M * nk, 1), *v = randf((size_t)M * nk, 1);
    float *G = randf((size_t)M * nq, 1);
    fdprob p = {.fwd = fwd_attention, .t = {to_d(q, M * nq), to_d(k, M * nk), to_d(v, M * nk)},
                .n = {M * nq, M * nk, M * nk}, .y = malloc(sizeof(double) * M * nq),
                .G = to_d(G, M * nq), .ny = M * nq, .dim = {n_seq, T, nh, nkv, d}};
    float *out[2];
    for (int ref = 0; ref < 2; ref++) {
        float *o = zerosf((size_t)M * nq), *lse = zerosf((size_t)M * nh);
        float *dq = zerosf((size_t)M * nq), *dk = randf((size_t)M * nk, 1), *dv = randf((size_t)M * nk, 1);
        int rc = ref ? pz_cpu_attn_train_fwd_ref(o, lse, q, k, v, n_seq, T, nh, nkv, d, 2, err)
                     : pz_cpu_attn_train_fwd(G2, o, lse, q, k, v, n_seq, T, nh, nkv, d, err);
        CHECKF(rc == 0, "%s", err);
        rc = ref ? pz_cpu_attn_bwd_ref(dq, dk, dv, G, q, k, v, o, lse, n_seq, T, nh, nkv, d, 2, err)
                 : pz_cpu_attn_bwd(G2, dq, dk, dv, G, q, k, v, o, lse, n_seq, T, nh, nkv, d, err);
        CHECKF(rc == 0, "%s", err);
        char op[64];
        snprintf(op, sizeof op, "attention%s %dx%d h%d/kv%d", ref ? "_ref" : "", n_seq, T, nh, nkv);
        check_fwd(&p, o, op, 1e-5);
        check_grad(&p, 0, dq, op, "q", TOL_F32);
        check_grad(&p, 1, dk, op, "k", TOL_F32);
        check_grad(&p, 2, dv, op, "v", TOL_F32);
        out[ref] = o;
        free(lse), free(dq), free(dk), free(dv);
    }
    // The training forward agrees with the inference kernel (attention.h).
    float *out2 = zerosf((size_t)M * nq);
    for (int b = 0; b < n_seq; b++) {
        pz_attn_seq s = {.q = q + (size_t)b * T * nq, .q_ld = nq, .out = out2 + (size_t)b * T * nq,
                         .out_ld = nq, .k = k + (size_t)b * T * nk, .v = v + (size_t)b * T * nk,
                         .kv_ld = nk, .n_q = T, .pos0 = 0};
        CHECKF(pz_cpu_attention(&s, 1, nh, nkv, d, 1, err) == 0, "%s", err);
    }
    double e = fmax(pz_rel_err_f(out[0], out2, (size_t)M * nq), pz_rel_err_f(out[1], out2, (size_t)M * nq));
    CHECKF(e < 1e-5, "attention %dx%d: train forward vs pz_cpu_attention %.3g", n_seq, T, e);
    free(out2), free(out[0]), free(out[1]);
    free(p.t[0]), free(p.t[1]), free(p.t[2]), free(p.y), free(p.G);
    free(q), free(k), free(v), free(G);
}

// Longer sequences (several query blocks in the tiled version): tiled vs
// reference; and each is bit-identical when repeated, the reference also
// across thread counts.
static void test_attention_long(void) {
    int n_seq = 2, T = 300, nh = 6, nkv = 2, d = 16, M = n_seq * T, nq = nh * d, nk = nkv * d;
    float *q = randf((size_t)M * nq, 1), *k = randf((size_t)M * nk, 1), *v = randf((size_t)M * nk, 1);
    float *G = randf((size_t)M * nq, 1);
    size_t sz[5] = {(size_t)M * nq, (size_t)M * nh, (size_t)M * nq, (size_t)M * nk, (size_t)M * nk};
    float *r[4][5];
    for (int run = 0; run < 4; run++) {  // tiled, tiled again, ref 1 thread, ref 2 threads
        for (int i = 0; i < 5; i++) r[run][i] = zerosf(sz[i]);
        float **x = r[run];
        int rc;
        if (run < 2) {
            rc = pz_cpu_attn_train_fwd(G2, x[0], x[1], q, k, v, n_seq, T, nh, nkv, d, err) ||
                 pz_cpu_attn_bwd(G2, x[2], x[3], x[4], G, q, k, v, x[0], x[1], n_seq, T, nh, nkv, d, err);
        } else {
            int nt = run - 1;
            rc = pz_cpu_attn_train_fwd_ref(x[0], x[1], q, k, v, n_seq, T, nh, nkv, d, nt, err) ||
                 pz_cpu_attn_bwd_ref(x[2], x[3], x[4], G, q, k, v, x[0], x[1], n_seq, T, nh, nkv, d, nt, err);
        }
        CHECKF(rc == 0, "%s", err);
    }
    const char *names[5] = {"out", "lse", "dq", "dk", "dv"};
    int same_tiled = 1, same_ref = 1;
    printf("  attention 2x%d h6/kv2 d16, tiled vs ref:", T);
    for (int i = 0; i < 5; i++) {
        double e = pz_rel_err_f(r[0][i], r[2][i], sz[i]);
        printf(" %s %.1e", names[i], e);
        CHECKF(e < 1e-5, "attention tiled vs ref %s: %.3g", names[i], e);
        same_tiled &= memcmp(r[0][i], r[1][i], sizeof(float) * sz[i]) == 0;
        same_ref &= memcmp(r[2][i], r[3][i], sizeof(float) * sz[i]) == 0;
    }
    printf("\n  attention: tiled repeat bit-identical: %s; ref 1 vs 2 threads bit-identical: %s\n",
           same_tiled ? "yes" : "NO", same_ref ? "yes" : "NO");
    CHECK(same_tiled && same_ref);
    for (int run = 0; run < 4; run++)
        for (int i = 0; i < 5; i++) free(r[run][i]);
    free(q), free(k), free(v), free(G);
}

// ---- SwiGLU pointwise -------------------------------------------------------------
static void fwd_swiglu(fdprob *p) {
    for (size_t i = 0; i < p->ny; i++) p->y[i] = silu_d(p->t[0][i]) * p->t[1][i];
}

static void test_swiglu(void) {
    int M = 3, n = 10;
    size_t N = (size_t)M * n;
    float *g = randf(N, 2), *u = randf(N, 1), *G = randf(N, 1), *dg = zerosf(N), *du = zerosf(N);
    pz_cpu_swiglu_bwd(dg, du, G, g, u, M, n, 1);
    fdprob p = {.fwd = fwd_swiglu, .t = {to_d(g, N), to_d(u, N)}, .n = {N, N},
                .y = malloc(sizeof(double) * N), .G = to_d(G, N), .ny = N};
    check_grad(&p, 0, dg, "swiglu", "g", TOL_F32);
    check_grad(&p, 1, du, "swiglu", "u", TOL_F32);
    // dg may alias dh.
    float *dh = malloc(sizeof(float) * N);
    memcpy(dh, G, sizeof(float) * N);
    pz_cpu_swiglu_bwd(dh, du, dh, g, u, M, n, 1);
    CHECK(memcmp(dh, dg, sizeof(float) * N) == 0);
    free(p.t[0]), free(p.t[1]), free(p.y), free(p.G);
    free(g), free(u), free(G), free(dg), free(du), free(dh);
}

// ---- attention sub-block ------------------------------------------------------------
// dim: n_seq, T, hidden, n_head, n_kv, head_dim, residual. t: x, norm, wq, wk, wv, wo.
static void fwd_attn_block(fdprob *p) {
    int n_seq = p->dim[0], T = p->dim[1], H = p->dim[2], nh = p->dim[3], nkv = p->dim[4], d = p->dim[5];
    int M = n_seq * T, nq = nh * d, nk = nkv * d;
    double *xn = malloc(sizeof(double) * M * H), *q = malloc(sizeof(double) * M * nq);
    double *k = malloc(sizeof(double) * M * nk), *v = malloc(sizeof(double) * M * nk);
    double *att = malloc(sizeof(double) * M * nq);
    ref_rmsnorm(xn, p->t[0], p->t[1], M, H, EPS_NORM);
    ref_linear(q, xn, p->t[2], M, nq, H);
    ref_linear(k, xn, p->t[3], M, nk, H);
    ref_linear(v, xn, p->t[4], M, nk, H);
    ref_rope(q, M, nh, d, p->pos, p->inv_freq);
    ref_rope(k, M, nkv, d, p->pos, p->inv_freq);
    ref_attention(att, q, k, v, n_seq, T, nh, nkv, d);
    ref_linear(p->y, att, p->t[5], M, H, nq);
    if (p->dim[6])
        for (size_t i = 0; i < (size_t)M * H; i++) p->y[i] += p->t[0][i];
    free(xn), free(q), free(k), free(v), free(att);
}

static void test_attn_block(int residual, int nkv) {
    pz_attn_block_cfg cfg = {.hidden = 12, .n_head = 4, .n_kv = nkv, .head_dim = 4, .eps = EPS_NORM,
                             .residual = residual, .prec = PZ_DT_F32};
    int n_seq = 2, T = 4, M = n_seq * T, H = cfg.hidden, nq = cfg.n_head * cfg.head_dim, nk = nkv * cfg.head_dim;
    int32_t pos[8];
    for (int i = 0; i < M; i++) pos[i] = i % T;
    pz_rope_params rp = {.head_dim = cfg.head_dim, .theta = 100000.0f};
    float inv_freq[2];
    pz_rope_inv_freq(&rp, inv_freq);
    float *x = randf((size_t)M * H, 1), *G = randf((size_t)M * H, 1);
    float *w[5] = {randf(H, 1), randf((size_t)nq * H, 0.4f), randf((size_t)nk * H, 0.4f),
                   randf((size_t)nk * H, 0.4f), randf((size_t)H * nq, 0.4f)};
    for (int i = 0; i < H; i++) w[0][i] += 1;  // norm weights near 1, as trained ones are
    size_t wn[5] = {H, (size_t)nq * H, (size_t)nk * H, (size_t)nk * H, (size_t)H * nq};
    float *dw[5];
    for (int i = 0; i < 5; i++) dw[i] = zerosf(wn[i]);
    pz_attn_block_w W = {w[0], w[1], w[2], w[3], w[4]}, dW = {dw[0], dw[1], dw[2], dw[3], dw[4]};
    float *y = zerosf((size_t)M * H), *dx = zerosf((size_t)M * H);
    pz_attn_block_train *s = pz_cpu_attn_block_create(&cfg, M, 2, err);
    CHECKF(s != NULL, "%s", err);
    CHECKF(pz_cpu_attn_block_fwd(s, G2, &W, x, n_seq, T, pos, inv_freq, y, err) == 0, "%s", err);
    CHECKF(pz_cpu_attn_block_bwd(s, G2, &W, &dW, x, G, dx, err) == 0, "%s", err);
    char op[64];
    snprintf(op, sizeof op, "attn block kv%d%s", nkv, residual ? " +res" : "");
    fdprob p = {.fwd = fwd_attn_block, .y = malloc(sizeof(double) * M * H), .G = to_d(G, M * H),
                .ny = (size_t)M * H, .dim = {n_seq, T, H, cfg.n_head, nkv, cfg.head_dim, residual},
                .pos = pos, .inv_freq = inv_freq};
    p.t[0] = to_d(x, (size_t)M * H), p.n[0] = (size_t)M * H;
    for (int i = 0; i < 5; i++) p.t[i + 1] = to_d(w[i], wn[i]), p.n[i + 1] = wn[i];
    check_fwd(&p, y, op, 1e-5);
    const char *names[6] = {"x", "norm", "Wq", "Wk", "Wv", "Wo"};
    check_grad(&p, 0, dx, op, names[0], TOL_F32);
    for (int i = 0; i < 5; i++) check_grad(&p, i + 1, dw[i], op, names[i + 1], TOL_F32);
    // Gradients accumulate: a second backward doubles them.
    float *dq_once = malloc(sizeof(float) * wn[1]);
    memcpy(dq_once, dw[1], sizeof(float) * wn[1]);
    CHECKF(pz_cpu_attn_block_bwd(s, G2, &W, &dW, x, G, NULL, err) == 0, "%s", err);
    double e = 0;
    for (size_t i = 0; i < wn[1]; i++) e = fmax(e, fabs(dw[1][i] - 2 * dq_once[i]));
    CHECKF(e < 1e-6, "attn block: gradients do not accumulate (%.3g)", e);
    free(dq_once);
    pz_cpu_attn_block_free(s);
    for (int i = 0; i < 6; i++) free(p.t[i]);
    for (int i = 0; i < 5; i++) free(w[i]), free(dw[i]);
    free(p.y), free(p.G), free(x), free(G), free(y), free(dx);
}

// ---- FFN sub-block ----------------------------------------------------------------
// dim: M, hidden, n_ff, residual. t: x, norm, gate, up, down.
static void fwd_ffn_block(fdprob *p) {
    int M = p->dim[0], H = p->dim[1], F = p->dim[2];
    double *xn = malloc(sizeof(double) * M * H), *g = malloc(sizeof(double) * M * F);
    double *u = malloc(sizeof(double) * M * F);
    ref_rmsnorm(xn, p->t[0], p->t[1], M, H, EPS_NORM);
    ref_linear(g, xn, p->t[2], M, F, H);
    ref_linear(u, xn, p->t[3], M, F, H);
    for (size_t i = 0; i < (size_t)M * F; i++) g[i] = silu_d(g[i]) * u[i];
    ref_linear(p->y, g, p->t[4], M, H, F);
    if (p->dim[3])
        for (size_t i = 0; i < (size_t)M * H; i++) p->y[i] += p->t[0][i];
    free(xn), free(g), free(u);
}

static void test_ffn_block(int residual, pz_dt prec) {
    pz_ffn_block_cfg cfg = {.hidden = 10, .n_ff = 14, .eps = EPS_NORM, .residual = residual, .prec = prec};
    int M = 6, H = cfg.hidden, F = cfg.n_ff;
    float *x = randf((size_t)M * H, 1), *G = randf((size_t)M * H, 1);
    float *w[4] = {randf(H, 0.5f), randf((size_t)F * H, 0.5f), randf((size_t)F * H, 0.5f), randf((size_t)H * F, 0.5f)};
    for (int i = 0; i < H; i++) w[0][i] += 1;
    size_t wn[4] = {H, (size_t)F * H, (size_t)F * H, (size_t)H * F};
    float *dw[4];
    for (int i = 0; i < 4; i++) dw[i] = zerosf(wn[i]);
    pz_ffn_block_w W = {w[0], w[1], w[2], w[3]}, dW = {dw[0], dw[1], dw[2], dw[3]};
    float *y = zerosf((size_t)M * H), *dx = zerosf((size_t)M * H);
    pz_ffn_block_train *s = pz_cpu_ffn_block_create(&cfg, M, 2, err);
    CHECKF(s != NULL, "%s", err);
    CHECKF(pz_cpu_ffn_block_fwd(s, G2, &W, x, M, y, err) == 0, "%s", err);
    CHECKF(pz_cpu_ffn_block_bwd(s, G2, &W, &dW, x, G, dx, err) == 0, "%s", err);
    char op[64];
    snprintf(op, sizeof op, "ffn block %s%s", prec == PZ_DT_BF16 ? "bf16" : "f32", residual ? " +res" : "");
    fdprob p = {.fwd = fwd_ffn_block, .y = malloc(sizeof(double) * M * H), .G = to_d(G, M * H),
                .ny = (size_t)M * H, .dim = {M, H, F, residual}};
    p.t[0] = to_d(x, (size_t)M * H), p.n[0] = (size_t)M * H;
    for (int i = 0; i < 4; i++) p.t[i + 1] = to_d(w[i], wn[i]), p.n[i + 1] = wn[i];
    double tol = prec == PZ_DT_BF16 ? TOL_BF16_EXACT : TOL_F32;
    check_fwd(&p, y, op, prec == PZ_DT_BF16 ? TOL_BF16_EXACT : 1e-5);
    const char *names[5] = {"x", "norm", "Wgate", "Wup", "Wdown"};
    check_grad(&p, 0, dx, op, names[0], tol);
    for (int i = 0; i < 4; i++) check_grad(&p, i + 1, dw[i], op, names[i + 1], tol);
    pz_cpu_ffn_block_free(s);
    for (int i = 0; i < 5; i++) free(p.t[i]);
    for (int i = 0; i < 4; i++) free(w[i]), free(dw[i]);
    free(p.y), free(p.G), free(x), free(G), free(y), free(dx);
}

// ---- normalized MSE -----------------------------------------------------------------
static const double *nmse_parent;
static void fwd_nmse(fdprob *p) {
    double num = 0, den = 0;
    for (size_t i = 0; i < p->n[0]; i++) {
        num += (nmse_parent[i] - p->t[0][i]) * (nmse_parent[i] - p->t[0][i]);
        den += nmse_parent[i] * nmse_parent[i];
    }
    p->y[0] = num / den;
}

static void test_nmse(void) {
    size_t n = 50;
    float *yp = randf(n, 1), *yc = randf(n, 1), *d = zerosf(n);
    double loss = pz_cpu_nmse_loss(yp, yc, n, d, 1.0f, 2);
    double *ypd = to_d(yp, n), G1d = 1.0;
    nmse_parent = ypd;
    fdprob p = {.fwd = fwd_nmse, .t = {to_d(yc, n)}, .n = {n}, .y = malloc(sizeof(double)), .G = &G1d, .ny = 1};
    check_loss(&p, loss, d, "nmse loss", "y_child", 1e-12);
    CHECK(pz_cpu_nmse_loss(yp, yp, n, NULL, 1.0f, 1) == 0.0);
    free(p.t[0]), free(p.y), free(ypd), free(yp), free(yc), free(d);
}

// Per-token NMSE: a plain double reference, finite differences, thread-count
// invariance, and a row with a massive norm weighing like any other row.
static int tok_rows, tok_cols;
static double tok_eps;
static void fwd_token_nmse(fdprob *p) {
    double s = 0;
    for (int r = 0; r < tok_rows; r++) {
        double num = 0, den = tok_eps;
        for (int i = 0; i < tok_cols; i++) {
            double t = nmse_parent[(size_t)r * tok_cols + i], y = p->t[0][(size_t)r * tok_cols + i];
            num += (t - y) * (t - y);
            den += t * t;
        }
        s += num / den;
    }
    p->y[0] = s / tok_rows;
}

static void test_token_nmse(void) {
    tok_rows = 7, tok_cols = 9, tok_eps = 1e-3;
    size_t n = (size_t)tok_rows * tok_cols;
    float *yp = randf(n, 1), *yc = randf(n, 1), *d = zerosf(n), *d1 = zerosf(n);
    for (int i = 0; i < tok_cols; i++) yp[i] *= 100.0f;  // a "sink" row of massive activations
    double loss = pz_cpu_token_nmse_loss(yp, yc, tok_rows, tok_cols, (float)tok_eps, d, 1.0f, 2);
    double *ypd = to_d(yp, n), G1d = 1.0;
    nmse_parent = ypd;
    fdprob p = {.fwd = fwd_token_nmse, .t = {to_d(yc, n)}, .n = {n}, .y = malloc(sizeof(double)), .G = &G1d,
                .ny = 1};
    check_loss(&p, loss, d, "token nmse loss", "y_child", 1e-6);  // eps enters as a float
    double l1 = pz_cpu_token_nmse_loss(yp, yc, tok_rows, tok_cols, (float)tok_eps, d1, 1.0f, 1);
    CHECK(l1 == loss && memcmp(d, d1, n * sizeof(float)) == 0);
    // grad_scale scales the gradient only
    CHECK(pz_cpu_token_nmse_loss(yp, yc, tok_rows, tok_cols, (float)tok_eps, d1, 0.5f, 1) == loss);
    for (size_t i = 0; i < n; i++) CHECK(d1[i] == 0.5f * d[i]);
    // the sink row's error counts 1/rows however large its norm: scaling
    // both t and y of that row leaves the loss (almost) unchanged
    for (int i = 0; i < tok_cols; i++) yp[i] *= 1e3f, yc[i] = yp[i] * 0.5f;
    double a = pz_cpu_token_nmse_loss(yp, yc, tok_rows, tok_cols, 0.0f, NULL, 1.0f, 1);
    for (int i = 0; i < tok_cols; i++) yp[i] *= 1e-3f, yc[i] = yp[i] * 0.5f;
    double b2 = pz_cpu_token_nmse_loss(yp, yc, tok_rows, tok_cols, 0.0f, NULL, 1.0f, 1);
    CHECKF(fabs(a - b2) < 1e-9 * a, "scale invariance per row: %.9g vs %.9g", a, b2);
    CHECK(pz_cpu_token_nmse_loss(yp, yp, tok_rows, tok_cols, 1e-6f, NULL, 1.0f, 1) == 0.0);
    // a zero target row with eps = 0 is undefined
    float *z = zerosf(n);
    CHECK(isnan(pz_cpu_token_nmse_loss(z, yc, tok_rows, tok_cols, 0.0f, NULL, 1.0f, 1)));
    free(z), free(p.t[0]), free(p.y), free(ypd), free(yp), free(yc), free(d), free(d1);
}

// Global distillation's losses: double references, finite differences, the
// layout with padded matrices, thread-count invariance, in-place KL.
static int kd_mats, kd_rows, kd_cols, kd_max;
static void fwd_cosine(fdprob *p) {
    double s = 0;
    for (int l = 0; l < kd_mats; l++)
        for (int r = 0; r < kd_rows; r++) {
            const double *t = nmse_parent + ((size_t)l * kd_max + r) * kd_cols;
            const double *c = p->t[0] + ((size_t)l * kd_max + r) * kd_cols;
            double cc = 0, tt = 0, ct = 0;
            for (int i = 0; i < kd_cols; i++) cc += c[i] * c[i], tt += t[i] * t[i], ct += c[i] * t[i];
            s += 1 - (cc > 0 && tt > 0 ? ct / sqrt(cc * tt) : 0);
        }
    p->y[0] = s;
}
static void fwd_kl(fdprob *p) {
    double s = 0;
    for (int r = 0; r < kd_rows; r++) {
        const double *a = nmse_parent + (size_t)r * kd_cols, *b = p->t[0] + (size_t)r * kd_cols;
        double za = 0, zb = 0;
        for (int i = 0; i < kd_cols; i++) za += exp(a[i]), zb += exp(b[i]);
        for (int i = 0; i < kd_cols; i++) s += exp(a[i]) / za * ((a[i] - log(za)) - (b[i] - log(zb)));
    }
    p->y[0] = s;
}

static void test_kd_losses(void) {
    kd_mats = 3, kd_rows = 5, kd_cols = 11, kd_max = 6;  // matrices 6 rows apart, 5 used
    size_t n = (size_t)kd_mats * kd_max * kd_cols;
    float *t = randf(n, 1), *c = randf(n, 1), *d = zerosf(n), *d1 = zerosf(n);
    for (size_t i = 0; i < n; i++) c[i] = 0.6f * t[i] + 0.5f * c[i];
    double loss = pz_cpu_cosine_loss(t, c, kd_mats, (size_t)kd_max * kd_cols, kd_rows, kd_cols, d, 1.0, 2);
    double *td = to_d(t, n), G1d = 1.0;
    nmse_parent = td;
    fdprob p = {.fwd = fwd_cosine, .t = {to_d(c, n)}, .n = {n}, .y = malloc(sizeof(double)), .G = &G1d, .ny = 1};
    check_loss(&p, loss, d, "cosine loss", "y_child", 1e-12);
    for (int l = 0; l < kd_mats; l++)  // the padding rows are left alone
        for (size_t i = ((size_t)l * kd_max + kd_rows) * kd_cols; i < (size_t)(l + 1) * kd_max * kd_cols; i++)
            CHECK(d[i] == 0.0f);
    CHECK(pz_cpu_cosine_loss(t, c, kd_mats, (size_t)kd_max * kd_cols, kd_rows, kd_cols, d1, 0.5, 1) == loss);
    for (size_t i = 0; i < n; i++) CHECK(d1[i] == 0.5f * d[i]);
    CHECK(fabs(pz_cpu_cosine_loss(t, t, kd_mats, (size_t)kd_max * kd_cols, kd_rows, kd_cols, NULL, 1, 1)) < 1e-12);
    free(p.t[0]), free(p.y), free(td), free(t), free(c), free(d), free(d1);

    kd_rows = 4, kd_cols = 300;
    n = (size_t)kd_rows * kd_cols;
    float *a = randf(n, 2), *b = randf(n, 2);
    d = zerosf(n), d1 = zerosf(n);
    for (size_t i = 0; i < n; i++) b[i] = 0.7f * a[i] + 0.7f * b[i];
    loss = pz_cpu_kl_loss(a, b, kd_rows, kd_cols, d, 1.0, 2);
    double *ad = to_d(a, n);
    nmse_parent = ad;
    fdprob q = {.fwd = fwd_kl, .t = {to_d(b, n)}, .n = {n}, .y = malloc(sizeof(double)), .G = &G1d, .ny = 1};
    check_loss(&q, loss, d, "KL loss", "logits_child", 1e-6);  // exponentials in fp32
    CHECK(pz_cpu_kl_loss(a, b, kd_rows, kd_cols, d1, 1.0, 1) == loss && memcmp(d, d1, n * sizeof(float)) == 0);
    CHECK(pz_cpu_kl_loss(a, b, kd_rows, kd_cols, NULL, 1.0, 2) == loss);
    CHECK(pz_cpu_kl_loss(a, b, kd_rows, kd_cols, b, 1.0, 2) == loss && memcmp(d, b, n * sizeof(float)) == 0);
    CHECK(pz_cpu_kl_loss(a, a, kd_rows, kd_cols, NULL, 1.0, 2) < 1e-12);
    CHECK(isnan(pz_cpu_kl_loss(a, a, 0, kd_cols, NULL, 1.0, 2)));
    free(q.t[0]), free(q.y), free(ad), free(a), free(b), free(d), free(d1);
}

// ---- optimizer ----------------------------------------------------------------------
static void test_schedule(void) {
    long warm = 10, total = 110;
    float mx = 1e-3f, mn = 1e-5f;
    float a = pz_lr_schedule(0, warm, total, mx, mn), b = pz_lr_schedule(warm - 1, warm, total, mx, mn);
    float c = pz_lr_schedule(warm, warm, total, mx, mn), m = pz_lr_schedule(60, warm, total, mx, mn);
    float e = pz_lr_schedule(total, warm, total, mx, mn), e2 = pz_lr_schedule(total + 50, warm, total, mx, mn);
    printf("  schedule: first %.3g, warm-up end %.3g, decay start %.3g, midpoint %.4g, end %.3g\n", a, b, c, m, e);
    CHECK(fabsf(a - mx / warm) <= 1e-6f * mx);
    CHECK(fabsf(b - mx) <= 1e-6f * mx && fabsf(c - mx) <= 1e-6f * mx);
    CHECK(fabsf(m - (mx + mn) / 2) <= 1e-6f * mx);
    CHECK(fabsf(e - mn) <= 1e-6f * mx && e2 == e);
    for (long s = warm; s < total; s++)  // monotone decay
        CHECK(pz_lr_schedule(s + 1, warm, total, mx, mn) <= pz_lr_schedule(s, warm, total, mx, mn));
}

static void test_clip(void) {
    float *a = randf(1000, 1), *b = randf(37, 1), *z = zerosf(1037);
    pz_adamw_tensor t[2] = {{.g = a, .n = 1000}, {.g = b, .n = 37}};
    double n0 = pz_cpu_grad_norm(t, 2, 2), ref = 0;
    for (int i = 0; i < 1000; i++) ref += (double)a[i] * a[i];
    for (int i = 0; i < 37; i++) ref += (double)b[i] * b[i];
    CHECK(fabs(n0 - sqrt(ref)) < 1e-12 * sqrt(ref));
    double pre = pz_cpu_clip_grads(t, 2, 1.0f, 2), post = pz_cpu_grad_norm(t, 2, 2);
    printf("  clip: norm %.4f -> %.8f (max 1.0)\n", pre, post);
    CHECK(pre == n0);
    CHECK(fabs(post - 1.0) < 1e-5);
    // Below the limit: untouched.
    memcpy(z, a, sizeof(float) * 1000);
    double pre2 = pz_cpu_clip_grads(t, 2, 2.0f, 2);
    CHECK(fabs(pre2 - post) < 1e-12 && memcmp(z, a, sizeof(float) * 1000) == 0);
    free(a), free(b), free(z);
}

// Three steps against the formula in double; weight decay alone with g = 0.
static void test_adamw_formula(void) {
    size_t n = 64;
    float *p = randf(n, 1), *g = zerosf(n), *m = zerosf(n), *v = zerosf(n);
    double *pd = to_d(p, n), *md = calloc(n, sizeof(double)), *vd = calloc(n, sizeof(double));
    pz_adamw_params hp = pz_adamw_default_params();
    hp.clip_norm = 0;
    float lr = 1e-2f;
    for (long step = 1; step <= 3; step++) {
        pz_test_fill_randn(g, n, 0.1f, &rng);
        pz_adamw_tensor t = {p, g, m, v, n, 1};
        pz_cpu_adamw_step(&t, 1, step, lr, &hp, 1);
        for (size_t i = 0; i < n; i++) {
            pd[i] *= 1 - (double)lr * hp.weight_decay;
            md[i] = 0.9 * md[i] + 0.1 * g[i];
            vd[i] = 0.95 * vd[i] + 0.05 * (double)g[i] * g[i];
            pd[i] -= lr * (md[i] / (1 - pow(0.9, step))) / (sqrt(vd[i] / (1 - pow(0.95, step))) + 1e-8);
        }
    }
    double e = pz_rel_err_fd(p, pd, n);
    printf("  adamw: 3 steps vs double formula rel err %.2e\n", e);
    CHECK(e < 1e-6);
    float *p0 = malloc(sizeof(float) * n), *m0 = zerosf(n), *v0 = zerosf(n);
    memcpy(p0, p, sizeof(float) * n);
    memset(g, 0, sizeof(float) * n);
    pz_adamw_tensor t = {p, g, m0, v0, n, 1};
    pz_cpu_adamw_step(&t, 1, 1, lr, &hp, 1);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= p[i] == p0[i] * (1.0f - lr * hp.weight_decay);
    CHECKF(ok, "adamw: weight decay with zero gradient is not p·(1 − lr·wd)");
    free(p), free(g), free(m), free(v), free(pd), free(md), free(vd), free(p0), free(m0), free(v0);
}

// min ‖X·Wᵀ − Y‖² / ‖Y‖² over W, Y = X·W*ᵀ, with the kernels and AdamW.
static void test_adamw_lsq(void) {
    int M = 64, N = 4, K = 8, steps = 400;
    float *X = randf((size_t)M * K, 1), *Ws = randf((size_t)N * K, 1), *Y = zerosf((size_t)M * N);
    float *W = randf((size_t)N * K, 0.1f), *dW = zerosf((size_t)N * K), *m = zerosf((size_t)N * K);
    float *v = zerosf((size_t)N * K), *Yc = zerosf((size_t)M * N), *dY = zerosf((size_t)M * N);
    CHECK(pz_cpu_linear_fwd(G1, Y, X, Ws, M, N, K, PZ_DT_F32, err) == 0);
    pz_adamw_params hp = pz_adamw_default_params();
    hp.weight_decay = 0;  // decay would pull W away from W*
    double first = 0, loss = 0;
    for (int s = 0; s < steps; s++) {
        CHECK(pz_cpu_linear_fwd(G1, Yc, X, W, M, N, K, PZ_DT_F32, err) == 0);
        loss = pz_cpu_nmse_loss(Y, Yc, (size_t)M * N, dY, 1.0f, 1);
        if (s == 0) first = loss;
        memset(dW, 0, sizeof(float) * N * K);
        CHECK(pz_cpu_linear_bwd(G1, NULL, 0, dW, dY, X, W, M, N, K, PZ_DT_F32, err) == 0);
        pz_adamw_tensor t = {W, dW, m, v, (size_t)N * K, 0};
        pz_cpu_adamw_step(&t, 1, s + 1, pz_lr_schedule(s, 20, steps, 5e-2f, 5e-4f), &hp, 1);
    }
    double e = pz_rel_err_f(W, Ws, (size_t)N * K);
    printf("  adamw least squares: loss %.3g -> %.3g in %d steps, |W - W*| rel %.2e\n", first, loss, steps, e);
    CHECKF(first > 0.5 && loss < 1e-4 && e < 1e-2, "adamw did not converge: %.3g -> %.3g, %.3g", first, loss, e);
    free(X), free(Ws), free(Y), free(W), free(dW), free(m), free(v), free(Yc), free(dY);
}

// ---- a short BLD run, twice -------------------------------------------------------------
// The parent attention sub-block has 2 KV heads; the child 1, initialized by
// mean-pooling the parent's K and V heads, then trained by AdamW on the
// normalized MSE to the parent's output for a few steps; then the same for
// a narrower FFN. Returns the final losses; the child weights go to out.
static void bld_run(float *out, size_t *n_out, double *losses) {
    uint64_t seed = 777;
    int n_seq = 2, T = 16, M = n_seq * T, H = 32, nh = 4, d = 8, nq = nh * d, F = 48, Fc = 24;
    pz_rope_params rp = {.head_dim = d, .theta = 100000.0f};
    float inv_freq[4];
    pz_rope_inv_freq(&rp, inv_freq);
    int32_t pos[32];
    for (int i = 0; i < M; i++) pos[i] = i % T;
    float *x = malloc(sizeof(float) * M * H), *yp = malloc(sizeof(float) * M * H);
    float *yc = malloc(sizeof(float) * M * H), *dy = malloc(sizeof(float) * M * H);
    pz_test_fill_randn(x, (size_t)M * H, 1, &seed);
    // Parent attention (2 KV heads) and its output.
    size_t pn[5] = {H, (size_t)nq * H, (size_t)2 * d * H, (size_t)2 * d * H, (size_t)H * nq};
    float *pw[5];
    for (int i = 0; i < 5; i++) {
        pw[i] = malloc(sizeof(float) * pn[i]);
        pz_test_fill_randn(pw[i], pn[i], i ? 0.2f : 1, &seed);
    }
    pz_attn_block_cfg pc = {H, nh, 2, d, EPS_NORM, 1, PZ_DT_F32}, cc = pc;
    cc.n_kv = 1;
    pz_attn_block_w PW = {pw[0], pw[1], pw[2], pw[3], pw[4]};
    pz_attn_block_train *ps = pz_cpu_attn_block_create(&pc, M, 2, err);
    CHECK(pz_cpu_attn_block_fwd(ps, G2, &PW, x, n_seq, T, pos, inv_freq, yp, err) == 0);
    pz_cpu_attn_block_free(ps);
    // Child: copy Q, O, norm; mean-pool K and V over the two heads.
    size_t cn[5] = {H, (size_t)nq * H, (size_t)d * H, (size_t)d * H, (size_t)H * nq};
    float *cw[5], *cg[5], *cm[5], *cv[5];
    for (int i = 0; i < 5; i++) {
        cw[i] = malloc(sizeof(float) * cn[i]), cg[i] = zerosf(cn[i]);
        cm[i] = zerosf(cn[i]), cv[i] = zerosf(cn[i]);
    }
    memcpy(cw[0], pw[0], sizeof(float) * H), memcpy(cw[1], pw[1], sizeof(float) * cn[1]);
    memcpy(cw[4], pw[4], sizeof(float) * cn[4]);
    for (int i = 2; i <= 3; i++)
        for (size_t j = 0; j < cn[i]; j++) cw[i][j] = 0.5f * (pw[i][j] + pw[i][j + cn[i]]);
    pz_attn_block_w CW = {cw[0], cw[1], cw[2], cw[3], cw[4]}, CG = {cg[0], cg[1], cg[2], cg[3], cg[4]};
    pz_attn_block_train *cs = pz_cpu_attn_block_create(&cc, M, 2, err);
    pz_adamw_tensor t[5];
    for (int i = 0; i < 5; i++) t[i] = (pz_adamw_tensor){cw[i], cg[i], cm[i], cv[i], cn[i], i != 0};
    pz_adamw_params hp = pz_adamw_default_params();
    int steps = 8;
    for (int s = 0; s < steps; s++) {
        CHECK(pz_cpu_attn_block_fwd(cs, G2, &CW, x, n_seq, T, pos, inv_freq, yc, err) == 0);
        double l = pz_cpu_nmse_loss(yp, yc, (size_t)M * H, dy, 1.0f, 2);
        if (s == 0) losses[0] = l;
        losses[1] = l;
        for (int i = 0; i < 5; i++) memset(cg[i], 0, sizeof(float) * cn[i]);
        CHECK(pz_cpu_attn_block_bwd(cs, G2, &CW, &CG, x, dy, NULL, err) == 0);
        pz_cpu_adamw_step(t, 5, s + 1, pz_lr_schedule(s, 2, steps, 3e-3f, 3e-4f), &hp, 2);
    }
    pz_cpu_attn_block_free(cs);
    // FFN: parent width F, child keeps the first Fc channels, bf16 products.
    pz_ffn_block_cfg fp = {H, F, EPS_NORM, 1, PZ_DT_BF16}, fc = fp;
    fc.n_ff = Fc;
    float *fw[4] = {malloc(sizeof(float) * H), malloc(sizeof(float) * F * H), malloc(sizeof(float) * F * H),
                    malloc(sizeof(float) * H * F)};
    pz_test_fill_randn(fw[0], H, 1, &seed);
    for (int i = 1; i < 4; i++) pz_test_fill_randn(fw[i], (size_t)F * H, 0.2f, &seed);
    pz_ffn_block_w FW = {fw[0], fw[1], fw[2], fw[3]};
    pz_ffn_block_train *fs = pz_cpu_ffn_block_create(&fp, M, 2, err);
    CHECK(pz_cpu_ffn_block_fwd(fs, G2, &FW, x, M, yp, err) == 0);
    pz_cpu_ffn_block_free(fs);
    size_t fn[4] = {H, (size_t)Fc * H, (size_t)Fc * H, (size_t)H * Fc};
    float *gw[4], *gg[4], *gm[4], *gv[4];
    for (int i = 0; i < 4; i++)
        gw[i] = malloc(sizeof(float) * fn[i]), gg[i] = zerosf(fn[i]), gm[i] = zerosf(fn[i]), gv[i] = zerosf(fn[i]);
    memcpy(gw[0], fw[0], sizeof(float) * H);
    memcpy(gw[1], fw[1], sizeof(float) * fn[1]), memcpy(gw[2], fw[2], sizeof(float) * fn[2]);
    for (int r = 0; r < H; r++) memcpy(gw[3] + (size_t)r * Fc, fw[3] + (size_t)r * F, sizeof(float) * Fc);
    pz_ffn_block_w GW = {gw[0], gw[1], gw[2], gw[3]}, GG = {gg[0], gg[1], gg[2], gg[3]};
    fs = pz_cpu_ffn_block_create(&fc, M, 2, err);
    pz_adamw_tensor ft[4];
    for (int i = 0; i < 4; i++) ft[i] = (pz_adamw_tensor){gw[i], gg[i], gm[i], gv[i], fn[i], i != 0};
    for (int s = 0; s < steps; s++) {
        CHECK(pz_cpu_ffn_block_fwd(fs, G2, &GW, x, M, yc, err) == 0);
        double l = pz_cpu_nmse_loss(yp, yc, (size_t)M * H, dy, 1.0f, 2);
        if (s == 0) losses[2] = l;
        losses[3] = l;
        for (int i = 0; i < 4; i++) memset(gg[i], 0, sizeof(float) * fn[i]);
        CHECK(pz_cpu_ffn_block_bwd(fs, G2, &GW, &GG, x, dy, NULL, err) == 0);
        pz_cpu_adamw_step(ft, 4, s + 1, pz_lr_schedule(s, 2, steps, 3e-3f, 3e-4f), &hp, 2);
    }
    pz_cpu_ffn_block_free(fs);
    size_t o = 0;
    for (int i = 0; i < 5; i++) memcpy(out + o, cw[i], sizeof(float) * cn[i]), o += cn[i];
    for (int i = 0; i < 4; i++) memcpy(out + o, gw[i], sizeof(float) * fn[i]), o += fn[i];
    *n_out = o;
    for (int i = 0; i < 5; i++) free(pw[i]), free(cw[i]), free(cg[i]), free(cm[i]), free(cv[i]);
    for (int i = 0; i < 4; i++) free(fw[i]), free(gw[i]), free(gg[i]), free(gm[i]), free(gv[i]);
    free(x), free(yp), free(yc), free(dy);
}

static void test_determinism(void) {
    size_t cap = 1 << 16, n1 = 0, n2 = 0;
    float *a = malloc(sizeof(float) * cap), *b = malloc(sizeof(float) * cap);
    double la[4], lb[4];
    bld_run(a, &n1, la);
    bld_run(b, &n2, lb);
    int same = n1 == n2 && memcmp(a, b, sizeof(float) * n1) == 0 && memcmp(la, lb, sizeof la) == 0;
    printf("  BLD run: attn kv2->kv1 loss %.4f -> %.4f, ffn 48->24 (bf16) loss %.4f -> %.4f; "
           "repeat bit-identical: %s\n", la[0], la[1], la[2], la[3], same ? "yes" : "NO");
    CHECKF(same, "two runs from the same seed differ");
    CHECKF(la[1] < la[0] && la[3] < la[2], "BLD losses did not fall");
    free(a), free(b);
}

int main(void) {
    G1 = pz_cpu_gemm_create(1, err);
    G2 = pz_cpu_gemm_create(2, err);
    if (!G1 || !G2) {
        fprintf(stderr, "gemm: %s\n", err);
        return 1;
    }
    printf("gradients vs double finite differences:\n");
    test_linear(G1);
    test_linear(G2);
    test_gemm_shapes();
    test_bf16_rounding();
    test_linear_bf16();
    test_rmsnorm();
    test_rope();
    test_attention(2, 5, 4, 2, 6);
    test_attention(1, 7, 3, 1, 4);
    test_attention(2, 4, 2, 2, 8);
    test_attention_long();
    test_swiglu();
    test_attn_block(1, 2);
    test_attn_block(0, 1);
    test_attn_block(1, 4);
    test_ffn_block(0, PZ_DT_F32);
    test_ffn_block(1, PZ_DT_F32);
    test_ffn_block(1, PZ_DT_BF16);
    test_nmse();
    test_token_nmse();
    test_kd_losses();
    printf("worst fp32 gradient error: %.2e (tol %.0e)\n", worst_f32, TOL_F32);
    printf("optimizer:\n");
    test_schedule();
    test_clip();
    test_adamw_formula();
    test_adamw_lsq();
    printf("determinism:\n");
    test_determinism();
    pz_cpu_gemm_free(G1);
    pz_cpu_gemm_free(G2);
    return pz_test_finish("test_backward");
}
