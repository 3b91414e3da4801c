// test_kernels.c — every CPU op, through the backend interface, against a
// plain-loop reference in double on random inputs, by normalized error
// max|a-b| / max|b|. Odd sizes on purpose (tails of the 8- and 16-lane
// kernels). Every test runs once per instruction-set level the processor
// has (AVX-512, AVX2, plain C; see kernels/cpu/isa.h), so each vector path
// is checked where it can run. Run with "perf" as argv[1] to also time
// matmul paths (at the processor's level), "perf-decode" for one decode
// step's products (perf_decode).
#include "testutil.h"
#include "common.h"
#include "backend.h"
#include "cpu/attention.h"
#include "cpu/matmul.h"
#include "cpu/gemv.h"
#include "fp8.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t rng = 12345;
static pz_backend *B;
static char err[PZ_ERRLEN];

static float *randv(size_t n, float scale) {
    float *x = malloc(sizeof(float) * (n ? n : 1));
    pz_test_fill_randn(x, n, scale, &rng);
    return x;
}

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}
static float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// ---- matmul ------------------------------------------------------------------
static void test_matmul(int M, int N, int K, pz_dt wt, int acc, int pad) {
    int ldx = K + pad, ldy = N + 2 * pad;
    float *x = randv((size_t)M * ldx, 1.0f), *w = randv((size_t)N * K, 0.1f);
    float *y = randv((size_t)M * ldy, 1.0f);
    double *ref = malloc(sizeof(double) * (size_t)M * ldy);
    uint16_t *wb = malloc(2 * (size_t)N * K);
    for (size_t i = 0; i < (size_t)N * K; i++) {
        wb[i] = to_bf16(w[i]);
        if (wt == PZ_DT_BF16) w[i] = from_bf16(wb[i]);
    }
    // The library bf16 path rounds activations to bf16 too; the small-M kernel does not.
    int xround = wt == PZ_DT_BF16 && M > PZ_GEMV_MAX_M && pz_cpu_matmul_bf16_rounds_activations();
    for (int m = 0; m < M; m++)
        for (int n = 0; n < ldy; n++) {
            double s = 0;
            if (n < N)
                for (int k = 0; k < K; k++) {
                    float xv = x[(size_t)m * ldx + k];
                    if (xround) xv = from_bf16(to_bf16(xv));
                    s += (double)xv * w[(size_t)n * K + k];
                }
            double old = y[(size_t)m * ldy + n];
            ref[(size_t)m * ldy + n] = n < N ? (acc ? old + s : s) : old;
        }
    pz_weight pw = pz_weight_dense(wt == PZ_DT_F32 ? (void *)w : (void *)wb, wt, N, K);
    int rc = B->prepare_weight(B, &pw, err);
    if (rc == 0) rc = B->matmul(B, y, ldy, x, ldx, PZ_DT_F32, &pw, M, acc, err);
    CHECKF(rc == 0, "%s", err);
    double e = pz_rel_err_fd(y, ref, (size_t)M * ldy);
    CHECKF(e < 2e-6, "matmul %s M=%d N=%d K=%d acc=%d pad=%d: rel err %.3g", wt ? "bf16" : "f32", M, N, K, acc, pad, e);
    printf("  matmul %-4s M=%-4d N=%-4d K=%-4d acc=%d ld+%d  err %.2e\n", wt ? "bf16" : "f32", M, N, K, acc, pad, e);
    free(x), free(w), free(y), free(ref), free(wb);
}

// The small-M kernel directly (pz_cpu_gemv), M = 1..32 at once against the
// same 32 activation rows: every row of every M bit-identical to that row
// computed alone (batch invariance, gemv.h), and within 2e-6 of a double
// reference. Odd N and K cover the partial weight-row tiles and the column
// tails; ldx/ldy are padded.
static void test_gemv_invariance(int N, int K, pz_dt wt, int acc) {
    const int MM = 32, ldx = K + 3, ldy = N + 5;
    float *x = randv((size_t)MM * ldx, 1.0f), *w = randv((size_t)N * K, 0.1f);
    float *y0 = randv((size_t)MM * ldy, 1.0f);  // the accumulate base
    float *one = malloc(sizeof(float) * (size_t)MM * ldy), *y = malloc(sizeof(float) * (size_t)MM * ldy);
    float *xs = malloc(sizeof(float) * pz_cpu_gemv_scratch_floats(MM, K));
    double *ref = malloc(sizeof(double) * (size_t)MM * ldy);
    uint16_t *wb = malloc(2 * (size_t)N * K);
    for (size_t i = 0; i < (size_t)N * K; i++) {
        wb[i] = to_bf16(w[i]);
        if (wt == PZ_DT_BF16) w[i] = from_bf16(wb[i]);
    }
    const void *wp = wt == PZ_DT_BF16 ? (const void *)wb : (const void *)w;
    for (int m = 0; m < MM; m++)
        for (int n = 0; n < ldy; n++) {
            double s = 0;
            for (int k = 0; n < N && k < K; k++) s += (double)x[(size_t)m * ldx + k] * w[(size_t)n * K + k];
            double base = y0[(size_t)m * ldy + n];
            ref[(size_t)m * ldy + n] = n < N ? (acc ? base + s : s) : base;
        }
    // each row alone
    memcpy(one, y0, sizeof(float) * (size_t)MM * ldy);
    for (int m = 0; m < MM; m++)
        pz_cpu_gemv(one + (size_t)m * ldy, ldy, x + (size_t)m * ldx, ldx, wp, wt, 1, N, K, acc, 2, xs);
    double e = pz_rel_err_fd(one, ref, (size_t)MM * ldy);
    CHECKF(e < 2e-6, "gemv %s N=%d K=%d acc=%d: rel err %.3g", wt ? "bf16" : "f32", N, K, acc, e);
    int bad = 0;
    // bf16: with the AVX2 kernel's 6 x 2 tiles from 2 rows on (the default),
    // then with its 5 x 2 tiles only (pz_cpu_gemv_set_tile6_m); then the
    // threads sharing chunks of 10 rows (pz_cpu_gemv_set_steal; AVX2, where
    // the product gets 2 threads).
    static const char *vname[3] = {"default", "5x2", "shared chunks"};
    for (int v = 0; v < 3; v++) {
        if (v == 1 && wt != PZ_DT_BF16) continue;
        pz_cpu_gemv_set_tile6_m(v == 1 ? 0 : -1);
        pz_cpu_gemv_set_steal(v == 2 ? 7 : 0);
        for (int M = 2; M <= MM; M++) {
            memcpy(y, y0, sizeof(float) * (size_t)MM * ldy);
            pz_cpu_gemv(y, ldy, x, ldx, wp, wt, M, N, K, acc, 2, xs);
            if (memcmp(y, one, sizeof(float) * (size_t)M * ldy) != 0 ||
                memcmp(y + (size_t)M * ldy, y0 + (size_t)M * ldy, sizeof(float) * (size_t)(MM - M) * ldy) != 0) {
                CHECKF(0, "gemv %s N=%d K=%d acc=%d %s: M=%d differs from one row at a time",
                       wt ? "bf16" : "f32", N, K, acc, vname[v], M);
                bad++;
                break;
            }
        }
    }
    pz_cpu_gemv_set_tile6_m(-1);
    pz_cpu_gemv_set_steal(0);
    printf("  gemv   %-4s M=1..%d N=%-4d K=%-4d acc=%d  err %.2e, rows identical for every M: %s\n",
           wt ? "bf16" : "f32", MM, N, K, acc, e, bad ? "no" : "yes");
    free(x), free(w), free(y0), free(one), free(y), free(xs), free(ref), free(wb);
}

// e4m3 weights (every finite code at random) with a tensor scale, optional
// channel scales, and optionally e4m3 activations with a static input
// scale, against the definition in double: Σ q(x)·e4m3(w) · scales, where
// q(x) = e4m3(x / x_scale) when the activations are quantized.
static void test_matmul_e4m3(int M, int N, int K, int acc, int pad, int chs, int xq) {
    int ldx = K + pad, ldy = N + 2 * pad;
    float *x = randv((size_t)M * ldx, 1.0f), *y = randv((size_t)M * ldy, 1.0f);
    float *ch = malloc(sizeof(float) * (size_t)N);
    uint8_t *w = malloc((size_t)N * K);
    double *ref = malloc(sizeof(double) * (size_t)M * ldy);
    for (size_t i = 0; i < (size_t)N * K; i++) {
        uint8_t c;
        do c = (uint8_t)pz_test_rand_u64(&rng); while ((c & 0x7f) == 0x7f);
        w[i] = c;
    }
    for (int n = 0; n < N; n++) ch[n] = pz_test_uniform(&rng, 0.5f, 2.0f);
    const float scale = 0.0037f, x_scale = 0.021f;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < ldy; n++) {
            double s = 0;
            if (n < N) {
                for (int k = 0; k < K; k++) {
                    double xv = x[(size_t)m * ldx + k];
                    if (xq) xv = pz_e4m3_to_f32(pz_f32_to_e4m3((float)xv * (1.0f / x_scale)));
                    s += xv * pz_e4m3_to_f32(w[(size_t)n * K + k]);
                }
                s *= (double)scale * (chs ? ch[n] : 1.0) * (xq ? x_scale : 1.0);
            }
            double old = y[(size_t)m * ldy + n];
            ref[(size_t)m * ldy + n] = n < N ? (acc ? old + s : s) : old;
        }
    pz_weight pw = pz_weight_dense(w, PZ_DT_E4M3, N, K);
    pw.scale = scale;
    pw.ch_scale = chs ? ch : NULL;
    pw.x_scale = x_scale;
    int rc = B->prepare_weight(B, &pw, err);
    if (rc == 0) rc = B->matmul(B, y, ldy, x, ldx, xq ? PZ_DT_E4M3 : PZ_DT_F32, &pw, M, acc, err);
    CHECKF(rc == 0, "%s", err);
    double e = pz_rel_err_fd(y, ref, (size_t)M * ldy);
    CHECKF(e < 2e-6, "matmul e4m3 M=%d N=%d K=%d acc=%d pad=%d ch=%d xq=%d: rel err %.3g", M, N, K, acc, pad, chs,
           xq, e);
    printf("  matmul e4m3 M=%-4d N=%-4d K=%-4d acc=%d ld+%d ch=%d xq=%d  err %.2e\n", M, N, K, acc, pad, chs, xq, e);
    free(x), free(y), free(ch), free(w), free(ref);
}

// ---- rmsnorm -----------------------------------------------------------------
static void test_rmsnorm(int M, int n) {
    float *x = randv((size_t)M * n, 2.0f), *w = randv(n, 1.0f), *y = malloc(sizeof(float) * M * n);
    double *ref = malloc(sizeof(double) * M * n);
    for (int m = 0; m < M; m++) {
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)x[m * n + i] * x[m * n + i];
        double r = 1 / sqrt(ss / n + 1e-5);
        for (int i = 0; i < n; i++) ref[m * n + i] = x[m * n + i] * r * w[i];
    }
    B->rmsnorm(B, y, x, w, M, n, 1e-5f);
    double e = pz_rel_err_fd(y, ref, (size_t)M * n);
    CHECKF(e < 1e-6, "rmsnorm M=%d n=%d: %.3g", M, n, e);
    B->rmsnorm(B, x, x, w, M, n, 1e-5f);  // in place
    CHECK(pz_rel_err_f(x, y, (size_t)M * n) == 0);
    printf("  rmsnorm M=%d n=%d err %.2e\n", M, n, e);
    free(x), free(w), free(y), free(ref);
}

// ---- rope --------------------------------------------------------------------
static void test_rope(int M, int H, int d, int llama3) {
    pz_rope_params p = {.head_dim = d, .theta = 10000.0f, .llama3 = llama3, .factor = 8,
                        .low_freq_factor = 1, .high_freq_factor = 4, .orig_ctx = 64};
    float inv[512];
    pz_rope_inv_freq(&p, inv);
    // Independent frequency check.
    double fe = 0;
    for (int i = 0; i < d / 2; i++) {
        double f = pow(10000.0, -2.0 * i / d);
        if (llama3) {
            double wl = 2 * M_PI / f, lo = 64 / 1.0, hi = 64 / 4.0;
            if (wl > lo) f /= 8;
            else if (wl >= hi) {
                double sm = (64 / wl - 1) / (4 - 1);
                f = (1 - sm) * f / 8 + sm * f;
            }
        }
        fe = fmax(fe, fabs(inv[i] - f) / f);
    }
    CHECKF(fe < 1e-6, "inv_freq err %.3g", fe);
    int ld = H * d + 3;
    float *x = randv((size_t)M * ld, 1.0f);
    double *ref = malloc(sizeof(double) * M * ld);
    int32_t *pos = malloc(sizeof(int32_t) * M);
    for (int m = 0; m < M; m++) pos[m] = (int32_t)(pz_test_rand_u64(&rng) % 300);
    for (int m = 0; m < M; m++)
        for (int c = 0; c < ld; c++) {
            ref[m * ld + c] = x[m * ld + c];
            if (c >= H * d) continue;
            int h = c / d, i = c % d, half = d / 2;
            int j = i < half ? i : i - half;
            double a = pos[m] * (double)inv[j];
            double x0 = x[m * ld + h * d + j], x1 = x[m * ld + h * d + j + half];
            ref[m * ld + c] = i < half ? x0 * cos(a) - x1 * sin(a) : x1 * cos(a) + x0 * sin(a);
        }
    B->rope(B, x, ld, pos, M, H, d, inv);
    double e = pz_rel_err_fd(x, ref, (size_t)M * ld);
    CHECKF(e < 1e-6, "rope M=%d H=%d d=%d: %.3g", M, H, d, e);
    printf("  rope M=%d H=%d d=%d llama3=%d err %.2e\n", M, H, d, llama3, e);
    free(x), free(ref), free(pos);
}

// ---- attention ---------------------------------------------------------------
// Reference over row-major K and V (kr, vr: (n_keys, KV*d)).
static void attn_ref(const pz_attn_seq *s, const float *kr, const float *vr, int H, int KV, int d, double *out) {
    int group = H / KV, kvd = KV * d;
    double *sc = malloc(sizeof(double) * (s->pos0 + s->n_q));
    for (int t = 0; t < s->n_q; t++)
        for (int h = 0; h < H; h++) {
            int nk = s->pos0 + t + 1, g = h / group;
            double mx = -1e300, sum = 0;
            for (int j = 0; j < nk; j++) {
                double a = 0;
                for (int i = 0; i < d; i++)
                    a += (double)s->q[(size_t)t * s->q_ld + h * d + i] * kr[(size_t)j * kvd + g * d + i];
                sc[j] = a / sqrt((double)d);
                if (sc[j] > mx) mx = sc[j];
            }
            for (int j = 0; j < nk; j++) sum += (sc[j] = exp(sc[j] - mx));
            for (int i = 0; i < d; i++) {
                double a = 0;
                for (int j = 0; j < nk; j++) a += sc[j] * vr[(size_t)j * kvd + g * d + i];
                out[(size_t)t * H * d + h * d + i] = a / sum;
            }
        }
    free(sc);
}

// Page pools filled through kv_write from row-major random K and V, the
// sequence's pages scattered in reverse order over a pool twice as large as
// needed (as pages come and go in the engine), and a garbage value (NaN) in
// every unwritten position and unused page to prove it is never used.
// rowmajor: K/V passed as row-major buffers with padded rows (kv_ld > 0)
// instead of a cache.
// KV page type of the paged runs of test_attention (bf16 and e4m3 pages are
// checked against the reference on the values they store), and e4m3 scales.
static pz_dt KT = PZ_DT_F32;
static const float KSC = 0.011f, VSC = 0.0071f;

// The value a KV page of type KT gives back for x (scale: e4m3 only).
static float kv_round(float x, float scale) {
    if (KT == PZ_DT_BF16) return from_bf16(to_bf16(x));
    if (KT == PZ_DT_E4M3) return pz_e4m3_to_f32(pz_f32_to_e4m3(x / scale)) * scale;
    return x;
}

static void test_attention(int n_seq, const int *n_q, const int *pos0, int H, int KV, int d, int rowmajor) {
    if (rowmajor && KT != PZ_DT_F32) return;  // row-major K/V are always fp32
    pz_attn_seq s[8];
    double err_max = 0;
    float *bufs[8][6];
    int32_t *tabs[8];
    int kvd = KV * d;
    for (int i = 0; i < n_seq; i++) {
        int nk = pos0[i] + n_q[i], cap = nk + 21;
        int used = (nk + PZ_KV_PAGE - 1) / PZ_KV_PAGE, pool = 2 * used + 1;
        tabs[i] = malloc(sizeof(int32_t) * (size_t)used);
        for (int g = 0; g < used; g++) tabs[i][g] = pool - 1 - 2 * g;  // reversed, every other page
        size_t kb = B->kv_page_bytes(B, KV, d, KT) * (size_t)pool;
        if (kb < (size_t)cap * (kvd + 3) * 4) kb = (size_t)cap * (kvd + 3) * 4;
        bufs[i][0] = randv((size_t)n_q[i] * (H * d + 7), 1.5f);
        bufs[i][1] = randv((size_t)nk * kvd, 1.5f);   // K rows
        bufs[i][2] = randv((size_t)nk * kvd, 1.0f);   // V rows
        bufs[i][3] = calloc((size_t)n_q[i] * H * d, sizeof(float));
        bufs[i][4] = B->alloc(B, kb);
        bufs[i][5] = B->alloc(B, kb);
        for (size_t z = 0; z < kb / 4; z++) bufs[i][4][z] = bufs[i][5][z] = NAN;  // narrow types: NaN codes too
        for (int j = 0; j < nk; j++) {  // one row per call, K and V side by side
            float *kvrow = malloc(sizeof(float) * 2 * (size_t)kvd);
            int32_t page = tabs[i][j / PZ_KV_PAGE], pos = j;
            memcpy(kvrow, bufs[i][1] + (size_t)j * kvd, sizeof(float) * kvd);
            memcpy(kvrow + kvd, bufs[i][2] + (size_t)j * kvd, sizeof(float) * kvd);
            pz_kv_write kw = {.k_pool = bufs[i][4], .v_pool = bufs[i][5], .n_pages = pool, .n_kv = KV,
                              .head_dim = d, .kv_type = KT, .k_scale = KSC, .v_scale = VSC, .kv = kvrow,
                              .ld = 2 * kvd, .row_page = &page, .pos = &pos, .R = 1};
            if (KT == PZ_DT_F32) kw.k_scale = kw.v_scale = 1;
            CHECK(B->kv_write(B, &kw, err) == 0);
            free(kvrow);
            for (int c = 0; c < kvd; c++) {  // the reference reads what the pages hold
                bufs[i][1][(size_t)j * kvd + c] = kv_round(bufs[i][1][(size_t)j * kvd + c], KSC);
                bufs[i][2][(size_t)j * kvd + c] = kv_round(bufs[i][2][(size_t)j * kvd + c], VSC);
            }
        }
        s[i] = (pz_attn_seq){.q = bufs[i][0], .q_ld = H * d + 7, .out = bufs[i][3], .out_ld = H * d,
                             .k = bufs[i][4], .v = bufs[i][5], .kv_ld = 0, .pages = tabs[i],
                             .kv_type = KT, .k_scale = KT == PZ_DT_E4M3 ? KSC : 1, .v_scale = KT == PZ_DT_E4M3 ? VSC : 1,
                             .n_q = n_q[i], .pos0 = pos0[i]};
        if (rowmajor) {  // the same values, rows padded by 3 floats
            int ld = kvd + 3;
            for (int j = 0; j < nk; j++)
                for (int c = 0; c < ld; c++) {
                    bufs[i][4][(size_t)j * ld + c] = c < kvd ? bufs[i][1][(size_t)j * kvd + c] : NAN;
                    bufs[i][5][(size_t)j * ld + c] = c < kvd ? bufs[i][2][(size_t)j * kvd + c] : NAN;
                }
            s[i].kv_ld = ld;
        }
    }
    int rc = B->attention(B, s, n_seq, H, KV, d, err);
    CHECKF(rc == 0, "%s", err);
    for (int i = 0; i < n_seq; i++) {
        double *ref = malloc(sizeof(double) * n_q[i] * H * d);
        attn_ref(&s[i], bufs[i][1], bufs[i][2], H, KV, d, ref);
        double e = pz_rel_err_fd(s[i].out, ref, (size_t)n_q[i] * H * d);
        if (e > err_max) err_max = e;
        free(ref);
        for (int j = 0; j < 4; j++) free(bufs[i][j]);
        free(tabs[i]);
        B->free(B, bufs[i][4]);
        B->free(B, bufs[i][5]);
    }
    // fp32 sums against a double reference: ~1e-6 typical; 4e-6 leaves room for the summation
    // orders of the kernels (the grouped narrow one reached 2.05e-6 on one seed, fp8 pages).
    CHECKF(err_max < 4e-6, "attention n_seq=%d H=%d KV=%d d=%d %s %s: %.3g", n_seq, H, KV, d,
           rowmajor ? "row-major" : "paged", pz_dt_name(KT), err_max);
    printf("  attention n_seq=%d H=%d KV=%d d=%d %-9s %-4s err %.2e\n", n_seq, H, KV, d,
           rowmajor ? "row-major" : "paged", pz_dt_name(KT), err_max);
}

// Narrow pages (KT): a query row's result is the same bit for bit through
// decode with the heads of a KV head grouped, decode one head at a time,
// decode in a call that also holds a prefill sequence, and as the last row
// of a prefill (the serve tests' "alone == among others" and "prefix reuse ==
// cold prefill" rest on it).
static void test_attention_narrow_same(int H, int KV, int d, int nk) {
    int kvd = KV * d, used = (nk + PZ_KV_PAGE - 1) / PZ_KV_PAGE, pool = 2 * used + 1, nq = 4;
    size_t kb = B->kv_page_bytes(B, KV, d, KT) * (size_t)pool, hd = (size_t)H * d;
    int32_t *tab = malloc(sizeof(int32_t) * (size_t)used);
    for (int g = 0; g < used; g++) tab[g] = pool - 1 - 2 * g;
    void *kp = B->alloc(B, kb), *vp = B->alloc(B, kb);
    memset(kp, 0xFF, kb), memset(vp, 0xFF, kb);  // NaN codes in bf16 and e4m3
    float *kv = randv(2 * (size_t)kvd, 1.5f);
    for (int j = 0; j < nk; j++) {
        pz_test_fill_randn(kv, 2 * (size_t)kvd, 1.5f, &rng);
        int32_t page = tab[j / PZ_KV_PAGE], pos = j;
        pz_kv_write kw = {.k_pool = kp, .v_pool = vp, .n_pages = pool, .n_kv = KV, .head_dim = d, .kv_type = KT,
                          .k_scale = KSC, .v_scale = VSC, .kv = kv, .ld = 2 * kvd, .row_page = &page, .pos = &pos,
                          .R = 1};
        CHECK(B->kv_write(B, &kw, err) == 0);
    }
    float *q = randv((size_t)nq * hd, 1.5f), *out[4];
    for (int i = 0; i < 4; i++) out[i] = calloc((size_t)nq * hd, sizeof(float));
    pz_attn_seq pf = {.q = q, .q_ld = (int)hd, .out = out[0], .out_ld = (int)hd, .k = kp, .v = vp, .pages = tab,
                      .kv_type = KT, .k_scale = KT == PZ_DT_E4M3 ? KSC : 1, .v_scale = KT == PZ_DT_E4M3 ? VSC : 1,
                      .n_q = nq, .pos0 = nk - nq};
    pz_attn_seq dec = pf, both[2];
    dec.q = q + (nq - 1) * hd, dec.n_q = 1, dec.pos0 = nk - 1;
    CHECK(B->attention(B, &pf, 1, H, KV, d, err) == 0);  // prefill rows
    for (int gn = 0; gn < 2; gn++) {  // decode, one head per call / grouped
        pz_cpu_attention_set_grouped_narrow(gn);
        dec.out = out[1 + gn];
        CHECK(B->attention(B, &dec, 1, H, KV, d, err) == 0);
    }
    both[0] = dec, both[1] = pf;  // decode beside a prefill sequence
    both[0].out = out[3], both[1].out = out[0];
    CHECK(B->attention(B, both, 2, H, KV, d, err) == 0);
    const float *last = out[0] + (nq - 1) * hd;
    int same = !memcmp(last, out[1], sizeof(float) * hd) && !memcmp(last, out[2], sizeof(float) * hd) &&
               !memcmp(last, out[3], sizeof(float) * hd);
    CHECKF(same, "attention %s H=%d KV=%d d=%d keys=%d: prefill row / decode per head / grouped / batched differ",
           pz_dt_name(KT), H, KV, d, nk);
    free(tab), free(kv), free(q);
    for (int i = 0; i < 4; i++) free(out[i]);
    B->free(B, kp), B->free(B, vp);
}

// ---- swiglu, add, embed -------------------------------------------------------
static void test_pointwise(int M, int n) {
    int gu_ld = 2 * n + 1, ldh = n + 2;
    float *gu = randv((size_t)M * gu_ld, 3.0f), *h = randv((size_t)M * ldh, 1.0f);
    double *ref = malloc(sizeof(double) * M * ldh);
    for (int m = 0; m < M; m++)
        for (int i = 0; i < ldh; i++) {
            if (i >= n) {
                ref[m * ldh + i] = h[m * ldh + i];
                continue;
            }
            double g = gu[m * gu_ld + i], u = gu[m * gu_ld + n + i];
            ref[m * ldh + i] = g / (1 + exp(-g)) * u;
        }
    B->swiglu(B, h, ldh, gu, gu + n, gu_ld, M, n);
    double e = pz_rel_err_fd(h, ref, (size_t)M * ldh);
    CHECKF(e < 1e-6, "swiglu M=%d n=%d: %.3g", M, n, e);
    printf("  swiglu M=%d n=%d err %.2e\n", M, n, e);

    size_t len = (size_t)M * n;
    float *a = randv(len, 1.0f), *b = randv(len, 1.0f);
    double *r2 = malloc(sizeof(double) * len);
    for (size_t i = 0; i < len; i++) r2[i] = (double)a[i] + b[i];
    B->add(B, a, b, len);
    e = pz_rel_err_fd(a, r2, len);
    CHECKF(e < 1e-7, "add: %.3g", e);

    int vocab = 37;
    float *tab = randv((size_t)vocab * n, 1.0f), *y = malloc(sizeof(float) * len);
    uint16_t *tb = malloc(2 * (size_t)vocab * n);
    for (size_t i = 0; i < (size_t)vocab * n; i++) tb[i] = to_bf16(tab[i]);
    int32_t *ids = malloc(sizeof(int32_t) * M);
    for (int m = 0; m < M; m++) ids[m] = (int32_t)(pz_test_rand_u64(&rng) % vocab);
    pz_weight wtab = pz_weight_dense(tab, PZ_DT_F32, vocab, n), wtb = pz_weight_dense(tb, PZ_DT_BF16, vocab, n);
    CHECK(B->embed(B, y, &wtab, ids, M, err) == 0);
    int ok = 1;
    for (int m = 0; m < M; m++) ok &= memcmp(y + (size_t)m * n, tab + (size_t)ids[m] * n, sizeof(float) * n) == 0;
    CHECK(ok);
    CHECK(B->embed(B, y, &wtb, ids, M, err) == 0);
    ok = 1;
    for (int m = 0; m < M; m++)
        for (int i = 0; i < n; i++) ok &= y[(size_t)m * n + i] == from_bf16(tb[(size_t)ids[m] * n + i]);
    CHECK(ok);
    ids[M - 1] = vocab;
    CHECK(B->embed(B, y, &wtab, ids, M, err) == -1 && strstr(err, "vocabulary"));
    free(gu), free(h), free(ref), free(a), free(b), free(r2), free(tab), free(y), free(tb), free(ids);
}

static void perf(void) {
    // Times of the small-M kernel and the library on model-like shapes.
    int shapes[][3] = {{1, 576, 576}, {1, 1536, 576}, {1, 576, 1536}, {1, 49152, 576},
                       {4, 1536, 576}, {16, 576, 576}, {16, 1536, 576}, {16, 576, 1536},
                       {16, 49152, 576}, {32, 1536, 576}, {512, 576, 576}, {512, 1536, 576},
                       {512, 576, 1536}};
    pz_cpu_mm *mm = pz_cpu_matmul_create(B->n_threads, err);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *x = randv((size_t)M * K, 1), *w = randv((size_t)N * K, 0.1f), *y = malloc(sizeof(float) * M * N);
        uint16_t *wb = malloc(2 * (size_t)N * K);
        float *xs = malloc(sizeof(float) * pz_cpu_gemv_scratch_floats(M, K));
        for (size_t i = 0; i < (size_t)N * K; i++) wb[i] = to_bf16(w[i]);
        for (int dt = 0; dt < 2; dt++) {
            const void *wp = dt ? (void *)wb : (void *)w;
            double t_lib = 1e9, t_gemv = 1e9;
            for (int rep = 0; rep < 5; rep++) {
                double t0 = pz_now();
                pz_cpu_matmul_lib(mm, y, N, x, K, wp, (pz_dt)dt, M, N, K, 0, err);
                double t1 = pz_now();
                if (M <= PZ_GEMV_MAX_M) pz_cpu_gemv(y, N, x, K, wp, (pz_dt)dt, M, N, K, 0, B->n_threads, xs);
                double t2 = pz_now();
                if (rep) t_lib = fmin(t_lib, t1 - t0), t_gemv = fmin(t_gemv, t2 - t1);
            }
            double fl = 2.0 * M * N * K, by = (double)N * K * (dt ? 2 : 4);
            printf("  perf %-4s M=%-4d N=%-5d K=%-5d lib %8.1f GFLOP/s %6.1f GB/s", dt ? "bf16" : "f32", M, N, K,
                   fl / t_lib * 1e-9, by / t_lib * 1e-9);
            if (M <= PZ_GEMV_MAX_M) printf(" | gemv %8.1f GFLOP/s %6.1f GB/s", fl / t_gemv * 1e-9, by / t_gemv * 1e-9);
            printf("\n");
        }
        // e4m3: the in-register shift widening, and the table gather it was measured against
        uint8_t *w8 = malloc((size_t)N * K);
        for (size_t i = 0; i < (size_t)N * K; i++) w8[i] = pz_f32_to_e4m3(w[i] * 40.0f);
        for (int g = 0; g < (M <= PZ_GEMV_MAX_M ? 2 : 1); g++) {
            pz_cpu_gemv_e4m3_use_gather(g);
            double t = 1e9;
            for (int rep = 0; rep < 5; rep++) {
                double t0 = pz_now();
                pz_cpu_matmul_e4m3(mm, y, N, x, K, PZ_DT_F32, 0, w8, 0.025f, NULL, M, N, K, 0, err);
                if (rep) t = fmin(t, pz_now() - t0);
            }
            printf("  perf e4m3 M=%-4d N=%-5d K=%-5d %-6s %8.1f GFLOP/s %6.1f GB/s\n", M, N, K,
                   M > PZ_GEMV_MAX_M ? "tiles" : g ? "gather" : "shift", 2.0 * M * N * K / t * 1e-9, (double)N * K / t * 1e-9);
        }
        pz_cpu_gemv_e4m3_use_gather(0);
        free(x), free(w), free(y), free(wb), free(xs), free(w8);
    }
    pz_cpu_matmul_free(mm);
}

// Every finite e4m3 code through the small-M kernel exactly: row c of W holds
// code c in every column; each of 3 activation rows is one-hot at a
// position in a different part of the kernel's loop (16-column chunks, the
// tail), so y[m][c] must be the code's value, bit for bit (scale 1; the
// widening is exact, the other products are zeros). Five ways: without a
// scratch (AVX2: F16C widening), with one (AVX2: integer widening of x *
// 2^64), and with one under MXCSR.DAZ on one thread (where the kernel must
// leave the integer widening, whose subnormal codes are fp32 denormals);
// then the last two again with the weight tiles widened once into the
// scratch (AVX2's path for several rows, forced on for these 3 rows).
static void test_e4m3_codes(void) {
    const int K = 117, N = 256, M = 3, hot[3] = {70, 100, 115};
    uint8_t *w = malloc((size_t)N * K);
    float *x = calloc((size_t)M * K, sizeof(float)), *y = malloc(sizeof(float) * M * N);
    float *xs = malloc(sizeof(float) * pz_cpu_gemv_e4m3_scratch_floats(M, K, 2));
    for (int n = 0; n < N; n++) memset(w + (size_t)n * K, (n & 0x7f) == 0x7f ? 0 : n, (size_t)K);
    for (int m = 0; m < M; m++) x[(size_t)m * K + hot[m]] = 1;
    static const char *way[5] = {"no scratch", "scratch", "scratch, DAZ", "wide tiles", "wide tiles, DAZ"};
    for (int v = 0; v < 5; v++) {
        unsigned csr = _mm_getcsr();
        int daz = v == 2 || v == 4;
        if (daz) _mm_setcsr(csr | 0x40);
        pz_cpu_gemv_e4m3_set_wide_m(v >= 3 ? 1 : 0);
        pz_cpu_gemv_e4m3(y, N, x, K, w, M, N, K, 1.0f, NULL, 0, daz ? 1 : 2, v ? xs : NULL);
        pz_cpu_gemv_e4m3_set_wide_m(-1);
        _mm_setcsr(csr);
        int bad = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                float want = (n & 0x7f) == 0x7f ? 0.0f : pz_e4m3_to_f32((uint8_t)n);
                if (y[(size_t)m * N + n] != want) bad++;
            }
        CHECKF(bad == 0, "e4m3 gemv (%s): %d of %d codes not widened exactly", way[v], bad, M * N);
    }
    free(w), free(x), free(y), free(xs);
}

// The batch-invariance contract of gemv.h for e4m3 weights, as
// test_gemv_invariance: M = 1..32 at once against the same 32 activation
// rows (random finite codes, subnormals included; padded ldx / ldy; with
// or without channel scales and accumulation), every row of every M
// bit-identical to that row computed alone, rows past M untouched, and the
// one-row results within 2e-6 of the definition in double.
static void test_e4m3_invariance(int N, int K, int acc, int chs) {
    const int MM = 32, ldx = K + 3, ldy = N + 5;
    uint8_t *w = malloc((size_t)N * K);
    for (size_t i = 0; i < (size_t)N * K; i++) {
        uint8_t c;
        do c = (uint8_t)pz_test_rand_u64(&rng); while ((c & 0x7f) == 0x7f);
        w[i] = c;
    }
    float *x = randv((size_t)MM * ldx, 1.0f), *y0 = randv((size_t)MM * ldy, 1.0f);
    float *ch = chs ? randv((size_t)N, 1.0f) : NULL;
    float *one = malloc(sizeof(float) * (size_t)MM * ldy), *y = malloc(sizeof(float) * (size_t)MM * ldy);
    double *ref = malloc(sizeof(double) * (size_t)MM * ldy);
    const float scale = 0.01f;
    for (int m = 0; m < MM; m++)
        for (int n = 0; n < ldy; n++) {
            double s = 0;
            for (int k = 0; n < N && k < K; k++)
                s += (double)x[(size_t)m * ldx + k] * pz_e4m3_to_f32(w[(size_t)n * K + k]);
            if (n < N) s *= (double)scale * (ch ? ch[n] : 1.0);
            double base = y0[(size_t)m * ldy + n];
            ref[(size_t)m * ldy + n] = n < N ? (acc ? base + s : s) : base;
        }
    float *xs = malloc(sizeof(float) * pz_cpu_gemv_e4m3_scratch_floats(MM, K, 2));
    memcpy(one, y0, sizeof(float) * (size_t)MM * ldy);
    for (int m = 0; m < MM; m++)
        pz_cpu_gemv_e4m3(one + (size_t)m * ldy, ldy, x + (size_t)m * ldx, ldx, w, 1, N, K, scale, ch, acc, 2, xs);
    double e = pz_rel_err_fd(one, ref, (size_t)MM * ldy);
    // without the scratch (AVX2: the F16C widening instead of the integer one): the same bits
    memcpy(y, y0, sizeof(float) * (size_t)MM * ldy);
    pz_cpu_gemv_e4m3(y, ldy, x, ldx, w, MM, N, K, scale, ch, acc, 2, NULL);
    CHECKF(memcmp(y, one, sizeof(float) * (size_t)MM * ldy) == 0,
           "gemv e4m3 N=%d K=%d acc=%d ch=%d: the widenings give different results", N, K, acc, chs);
    CHECKF(e < 2e-6, "gemv e4m3 N=%d K=%d acc=%d ch=%d: rel err %.3g", N, K, acc, chs, e);
    int bad = 0;
    for (int M = 2; M <= MM; M++) {
        memcpy(y, y0, sizeof(float) * (size_t)MM * ldy);
        pz_cpu_gemv_e4m3(y, ldy, x, ldx, w, M, N, K, scale, ch, acc, 2, xs);
        if (memcmp(y, one, sizeof(float) * (size_t)M * ldy) != 0 ||
            memcmp(y + (size_t)M * ldy, y0 + (size_t)M * ldy, sizeof(float) * (size_t)(MM - M) * ldy) != 0) {
            CHECKF(0, "gemv e4m3 N=%d K=%d acc=%d ch=%d: M=%d differs from one row at a time", N, K, acc, chs, M);
            bad++;
            break;
        }
    }
    printf("  gemv   e4m3 M=1..%d N=%-4d K=%-4d acc=%d ch=%d  err %.2e, rows identical for every M: %s\n", MM,
           N, K, acc, chs, e, bad ? "no" : "yes");
    free(w), free(x), free(y0), free(ch), free(one), free(y), free(ref), free(xs);
}

// One batch-1 decode step's products on the reference parent's shapes
// (SmolLM2-135M: fused q/k/v 960x576, o 576x576, fused gate/up 3072x576,
// down 576x1536, times 30 layers = 106 M weights in separate buffers, so
// they stream from memory as in decode): bf16 against e4m3 without and
// with software prefetch, the three alternating, each product's best of
// `reps` summed (robust to a shared machine's preemption, not to its
// memory traffic). "perf-decode [threads] [layers] [reps] [rows]": rows
// (default 1) activation rows per product, as in batched decode. A fourth
// variant keeps all widening in registers (no tile widened once into the
// scratch, pz_cpu_gemv_e4m3_set_wide_m(0): the kernel before that path).
static void perf_decode(int nt, int L, int reps, int M) {
    const int sh[4][2] = {{960, 576}, {576, 576}, {3072, 576}, {576, 1536}};
    int np = 4 * L;
    size_t tot = 0;
    uint16_t **wb = malloc(sizeof(void *) * (size_t)np);
    uint8_t **w8 = malloc(sizeof(void *) * (size_t)np);
    for (int l = 0; l < np; l++) {
        size_t n = (size_t)sh[l % 4][0] * sh[l % 4][1];
        float *w = randv(n, 0.05f);
        wb[l] = malloc(2 * n);
        w8[l] = malloc(n);
        for (size_t i = 0; i < n; i++) wb[l][i] = to_bf16(w[i]), w8[l][i] = pz_f32_to_e4m3(w[i] * 2000.0f);
        free(w);
        tot += n;
    }
    float *x = randv((size_t)M * 1536, 1), *y = malloc(sizeof(float) * 3072 * (size_t)M);
    float *xs = malloc(sizeof(float) * pz_cpu_gemv_scratch_floats(M, 1536));
    float *x8s = malloc(sizeof(float) * pz_cpu_gemv_e4m3_scratch_floats(M, 1536, nt));
    double *best = malloc(sizeof(double) * 4 * (size_t)np);
    for (int i = 0; i < 4 * np; i++) best[i] = 1e9;
    for (int r = 0; r < reps; r++)
        for (int v = 0; v < 4; v++) {
            pz_cpu_gemv_e4m3_set_prefetch(v == 1 ? 0 : -1);
            pz_cpu_gemv_e4m3_set_wide_m(v == 3 ? 0 : -1);
            for (int l = 0; l < np; l++) {
                int N = sh[l % 4][0], K = sh[l % 4][1];
                double t0 = pz_now();
                if (v == 0) pz_cpu_gemv(y, N, x, K, wb[l], PZ_DT_BF16, M, N, K, 0, nt, xs);
                else pz_cpu_gemv_e4m3(y, N, x, K, w8[l], M, N, K, 0.001f, NULL, 0, nt, x8s);
                double t = pz_now() - t0;
                if (t < best[v * np + l]) best[v * np + l] = t;
            }
        }
    pz_cpu_gemv_e4m3_set_prefetch(-1);
    pz_cpu_gemv_e4m3_set_wide_m(-1);
    double t[4] = {0, 0, 0, 0};
    for (int v = 0; v < 4; v++)
        for (int l = 0; l < np; l++) t[v] += best[v * np + l];
    printf("  perf-decode %d threads, %d layers, %.1f M weights, %d rows, best of %d per product:\n", nt, L,
           tot * 1e-6, M, reps);
    printf("    bf16               %8.3f ms  %5.1f GB/s\n", t[0] * 1e3, 2.0 * tot / t[0] * 1e-9);
    printf("    e4m3, no prefetch  %8.3f ms  %5.1f GB/s  bf16/e4m3 time %.2f\n", t[1] * 1e3, tot / t[1] * 1e-9, t[0] / t[1]);
    printf("    e4m3, prefetch     %8.3f ms  %5.1f GB/s  bf16/e4m3 time %.2f\n", t[2] * 1e3, tot / t[2] * 1e-9, t[0] / t[2]);
    printf("    e4m3, registers    %8.3f ms  %5.1f GB/s  bf16/e4m3 time %.2f\n", t[3] * 1e3, tot / t[3] * 1e-9, t[0] / t[3]);
    for (int l = 0; l < np; l++) free(wb[l]), free(w8[l]);
    free(wb), free(w8), free(x), free(y), free(xs), free(x8s), free(best);
}

// The small-M e4m3 kernel's two AVX2 ways against bf16, in cache, one
// thread: each weight tile widened once per call into the scratch (from
// PZ_GEMV_FP8_WIDE_M rows on) and the register tiles that widen per block of
// activation rows (pz_cpu_gemv_e4m3_set_wide_m), for M = 4..32 on two of
// the reference parent's shapes; GFLOP/s, best of `reps`, the three
// alternating. "perf-rows [reps]".
static void perf_rows(int reps) {
    const int sh[2][2] = {{960, 576}, {576, 1536}}, Ms[7] = {4, 8, 12, 16, 20, 24, 32};
    printf("  perf-rows 1 thread, in cache, GFLOP/s, best of %d:"
           " bf16 / e4m3 widened once / e4m3 registers\n", reps);
    for (int s = 0; s < 2; s++)
        for (int mi = 0; mi < 7; mi++) {
            int N = sh[s][0], K = sh[s][1], M = Ms[mi];
            float *w = randv((size_t)N * K, 0.05f), *x = randv((size_t)M * K, 1.0f);
            float *y = malloc(sizeof(float) * (size_t)M * N);
            uint16_t *wb = malloc(sizeof(uint16_t) * (size_t)N * K);
            uint8_t *w8 = malloc((size_t)N * K);
            for (size_t i = 0; i < (size_t)N * K; i++)
                wb[i] = to_bf16(w[i]), w8[i] = pz_f32_to_e4m3(w[i] * 2000.0f);
            float *xs = malloc(sizeof(float) * pz_cpu_gemv_scratch_floats(M, K));
            float *x8s = malloc(sizeof(float) * pz_cpu_gemv_e4m3_scratch_floats(M, K, 1));
            double best[3] = {1e9, 1e9, 1e9};
            for (int r = 0; r < reps; r++)
                for (int v = 0; v < 3; v++) {
                    pz_cpu_gemv_e4m3_set_wide_m(v == 1 ? 1 : 0);
                    double t0 = pz_now();
                    if (v == 0) pz_cpu_gemv(y, N, x, K, wb, PZ_DT_BF16, M, N, K, 0, 1, xs);
                    else pz_cpu_gemv_e4m3(y, N, x, K, w8, M, N, K, 0.001f, NULL, 0, 1, x8s);
                    double t = pz_now() - t0;
                    if (t < best[v]) best[v] = t;
                }
            pz_cpu_gemv_e4m3_set_wide_m(-1);
            double fl = 2.0 * M * N * K * 1e-9;
            printf("    M=%-2d %4d x %-4d  %5.1f / %5.1f / %5.1f\n", M, N, K, fl / best[0], fl / best[1],
                   fl / best[2]);
            free(w), free(x), free(y), free(wb), free(w8), free(xs), free(x8s);
        }
}

// The AVX2 bf16 kernel's two tile shapes, 5 x 2 and 6 x 2
// (pz_cpu_gemv_set_tile6_m), in cache, one thread, on the reference model's
// three product shapes (fused qkv, gate/up, down) for M = 1..32; GFLOP/s,
// best of `reps`, the two alternating; also checks that they agree bit for
// bit. "perf-tile [reps]".
static void perf_tile(int reps) {
    const int sh[3][2] = {{960, 576}, {3072, 576}, {576, 1536}}, Ms[7] = {1, 2, 4, 8, 12, 16, 32};
    printf("  perf-tile 1 thread, in cache, bf16 GFLOP/s, best of %d: 5 x 2 / 6 x 2 tiles, ratio\n", reps);
    for (int s = 0; s < 3; s++)
        for (int mi = 0; mi < 7; mi++) {
            int N = sh[s][0], K = sh[s][1], M = Ms[mi];
            float *w = randv((size_t)N * K, 0.05f), *x = randv((size_t)M * K, 1.0f);
            float *y[2] = {malloc(sizeof(float) * (size_t)M * N), malloc(sizeof(float) * (size_t)M * N)};
            uint16_t *wb = malloc(sizeof(uint16_t) * (size_t)N * K);
            for (size_t i = 0; i < (size_t)N * K; i++) wb[i] = to_bf16(w[i]);
            float *xs = malloc(sizeof(float) * pz_cpu_gemv_scratch_floats(M, K));
            double best[2] = {1e9, 1e9};
            for (int r = 0; r < reps; r++)
                for (int v = 0; v < 2; v++) {
                    pz_cpu_gemv_set_tile6_m(v == 1 ? 1 : 0);
                    double t0 = pz_now();
                    pz_cpu_gemv(y[v], N, x, K, wb, PZ_DT_BF16, M, N, K, 0, 1, xs);
                    double t = pz_now() - t0;
                    if (t < best[v]) best[v] = t;
                }
            pz_cpu_gemv_set_tile6_m(-1);
            double fl = 2.0 * M * N * K * 1e-9;
            printf("    M=%-2d %4d x %-4d  %5.1f / %5.1f  %.3f%s\n", M, N, K, fl / best[0], fl / best[1],
                   best[0] / best[1], memcmp(y[0], y[1], sizeof(float) * (size_t)M * N) ? "  DIFFER" : "");
            free(w), free(x), free(y[0]), free(y[1]), free(wb), free(xs);
        }
}

// Settings of the AVX2 bf16 kernel by name, for perf-cold: "base" (the
// defaults), "pfD" (prefetch D tiles ahead, pf0 none), "div" (prefetch
// shares by pf_plan's divisions), "step" (the 6 x 2 tile's prefetches by
// pf_step at every iteration), "stealR" (threads claim chunks of R rows,
// the others' when done with their own); joined with '+'.
static void apply_variant(const char *v) {
    pz_cpu_gemv_set_prefetch(-1);
    pz_cpu_gemv_set_pf_flat(-1);
    pz_cpu_gemv_set_steal(0);
    pz_cpu_gemv_set_pf_clamp(-1);
    for (const char *p = v; *p;) {
        int a;
        if (sscanf(p, "pf%d", &a) == 1) pz_cpu_gemv_set_prefetch(a);
        else if (strncmp(p, "div", 3) == 0) pz_cpu_gemv_set_pf_flat(0);
        else if (strncmp(p, "step", 4) == 0) pz_cpu_gemv_set_pf_clamp(0);
        else if (sscanf(p, "steal%d", &a) == 1) pz_cpu_gemv_set_steal(a);
        const char *q = strchr(p, '+');
        if (!q) break;
        p = q + 1;
    }
}

// The reference parent's five product shapes (fused qkv, o, gate/up, down,
// lm_head) with bf16 weights at M = 16 and 32 rows, 1 and 2 threads: warm
// (one copy of the weights, called again and again: in L2/L3 where it fits;
// lm_head never does) and cold (cycling over copies of > 64 MiB in all, 4x
// the EPYC's L3, as scoring/profile.c's cold_bytes), GFLOP/s, best of `reps`
// rounds of one call per copy (each variant and the warm and cold runs
// alternate); in brackets the cold runs' GFLOP per second of process CPU
// time (all threads; sleeping threads do not count, OMP_WAIT_POLICY=passive),
// which a shared machine's scheduler disturbs much less than the wall time. Each variant's results must equal the first one's bit for
// bit. "perf-cold [reps] [variant...]" (apply_variant).
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void perf_cold(int reps, int nv, char **vs) {
    static char *base[] = {"base"};
    if (nv == 0) nv = 1, vs = base;
    const int sh[5][2] = {{960, 576}, {576, 576}, {3072, 576}, {576, 1536}, {49152, 576}};
    const char *nm[5] = {"qkv", "o", "gate_up", "down", "lm_head"};
    printf("  perf-cold bf16 GFLOP/s, best of %d, cold / warm per variant:", reps);
    for (int v = 0; v < nv; v++) printf(" %s", vs[v]);
    printf("\n");
    for (int s = 0; s < 5; s++) {
        int N = sh[s][0], K = sh[s][1];
        size_t nw = (size_t)N * K, bytes = nw * 2, cold = (size_t)64 << 20;
        int copies = bytes >= cold ? 2 : (int)((cold + bytes - 1) / bytes);
        float *w = randv(nw, 0.05f);
        // 2 MiB-aligned and advised for huge pages, as the engine's weights
        // (runtime/model.c); PZ_PERF_SMALL_PAGES=1 leaves them on 4 KiB pages.
        size_t hp = (size_t)2 << 20, all = (bytes * (size_t)copies + hp - 1) / hp * hp;
        uint16_t *wb = aligned_alloc(hp, all);
        const char *sp = getenv("PZ_PERF_SMALL_PAGES");
#ifdef MADV_HUGEPAGE
        if (!(sp && atoi(sp))) madvise(wb, all, MADV_HUGEPAGE);
#endif
        (void)sp;
        for (size_t i = 0; i < nw; i++) wb[i] = to_bf16(w[i]);
        for (int c = 1; c < copies; c++) memcpy(wb + (size_t)c * nw, wb, bytes);
        for (int M = 16; M <= 32; M += 16) {
            float *x = randv((size_t)M * K, 1.0f);
            float *xs = malloc(sizeof(float) * pz_cpu_gemv_scratch_floats(M, K));
            float *y0 = malloc(sizeof(float) * (size_t)M * N), *y = malloc(sizeof(float) * (size_t)M * N);
            for (int nt = 1; nt <= 2; nt++) {
                double best[16][3];
                for (int v = 0; v < nv && v < 16; v++) best[v][0] = best[v][1] = best[v][2] = 1e9;
                int differ = 0;
                for (int r = 0; r < reps; r++)
                    for (int v = 0; v < nv && v < 16; v++)
                        for (int c = 0; c < 2; c++) {
                            apply_variant(vs[v]);
                            double t0 = pz_now(), c0 = cpu_now();
                            for (int i = 0; i < copies; i++)
                                pz_cpu_gemv(y, N, x, K, wb + (c == 0 ? (size_t)i * nw : 0), PZ_DT_BF16, M, N, K,
                                            0, nt, xs);
                            double t = (pz_now() - t0) / copies, tc = (cpu_now() - c0) / copies;
                            if (t < best[v][c]) best[v][c] = t;
                            if (c == 0 && tc < best[v][2]) best[v][2] = tc;
                            if (v == 0 && c == 0 && r == 0) memcpy(y0, y, sizeof(float) * (size_t)M * N);
                            else differ |= memcmp(y0, y, sizeof(float) * (size_t)M * N) != 0;
                        }
                apply_variant("base");
                double fl = 2.0 * M * N * K * 1e-9;
                printf("    %-7s %5d x %-4d M=%-2d %dt ", nm[s], N, K, M, nt);
                for (int v = 0; v < nv && v < 16; v++)
                    printf(" %6.1f / %5.1f (%4.1f)", fl / best[v][0], fl / best[v][1], fl / best[v][2]);
                printf("%s\n", differ ? "  DIFFER" : "");
                CHECK(!differ);
            }
            free(x), free(xs), free(y0), free(y);
        }
        free(w), free(wb);
    }
}

static void run_all(void) {
    int sizes[][3] = {{1, 7, 5}, {1, 33, 17}, {2, 31, 29}, {3, 64, 96}, {4, 5, 130}, {8, 19, 33},
                      {9, 31, 29}, {17, 65, 33}, {64, 96, 80}, {130, 257, 65}, {5, 37, 600},
                      {7, 11, 1001}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int dt = 0; dt < 2; dt++)
            for (int acc = 0; acc < 2; acc++)
                test_matmul(sizes[i][0], sizes[i][1], sizes[i][2], (pz_dt)dt, acc, (int)(i % 3));
    for (int dt = 0; dt < 2; dt++) {
        test_gemv_invariance(37, 91, (pz_dt)dt, 0);
        test_gemv_invariance(13, 600, (pz_dt)dt, 1);
        test_gemv_invariance(45, 1001, (pz_dt)dt, dt);
        test_gemv_invariance(67, 576, (pz_dt)dt, 1);
        test_gemv_invariance(20, 48, (pz_dt)dt, 0);
        test_gemv_invariance(200, 576, (pz_dt)dt, dt);  // bf16 on 2 threads from 12 rows on
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        test_matmul_e4m3(sizes[i][0], sizes[i][1], sizes[i][2], (int)(i % 2), (int)(i % 3), (int)(i % 3 != 1),
                         (int)(i % 4 >= 2));
    test_matmul_e4m3(2, 33, 64, 1, 0, 1, 1);
    test_matmul_e4m3(9, 40, 31, 0, 1, 0, 1);
    test_e4m3_codes();
    test_e4m3_invariance(37, 91, 0, 0);
    test_e4m3_invariance(13, 600, 1, 1);
    test_e4m3_invariance(45, 1001, 0, 1);
    test_e4m3_invariance(9, 16, 1, 0);
    test_e4m3_invariance(21, 100, 1, 1);
    {
        // refused: e4m3 activations without an input scale, e4m3 weights without a scale
        uint8_t w8[4] = {0x38, 0x38, 0x38, 0x38};
        float xx[2] = {1, 1}, yy[2];
        pz_weight pw = pz_weight_dense(w8, PZ_DT_E4M3, 2, 2);
        CHECK(B->matmul(B, yy, 2, xx, 2, PZ_DT_E4M3, &pw, 1, 0, err) == -1);
        pw.scale = 0;
        CHECK(B->prepare_weight(B, &pw, err) == -1);
    }
    test_rmsnorm(1, 7);
    test_rmsnorm(13, 576);
    test_rope(1, 3, 8, 0);
    test_rope(11, 5, 64, 0);
    test_rope(9, 2, 128, 1);
    {
        int nq[] = {37}, p0[] = {0};
        for (int rm = 0; rm < 2; rm++) test_attention(1, nq, p0, 6, 2, 16, rm);
    }
    {
        // Prefill rows at model-like head sizes (several key blocks, the
        // last one partial).
        int nq[] = {40}, p0[] = {9};
        for (int rm = 0; rm < 2; rm++) test_attention(1, nq, p0, 9, 3, 64, rm);
        for (int rm = 0; rm < 2; rm++) test_attention(1, nq, p0, 4, 2, 128, rm);
    }
    {
        int nq[] = {5, 1, 19}, p0[] = {11, 40, 3};
        for (int rm = 0; rm < 2; rm++) test_attention(3, nq, p0, 4, 4, 40, rm);
    }
    {
        int nq[] = {1, 1, 1, 1}, p0[] = {0, 7, 33, 70};
        for (int rm = 0; rm < 2; rm++) test_attention(4, nq, p0, 9, 3, 64, rm);
    }
    {
        int nq[] = {3}, p0[] = {2};
        for (int rm = 0; rm < 2; rm++) test_attention(1, (int[]){1}, (int[]){130}, 2, 2, 160, rm);  // head_dim > 128: plain loop
        // Decode through the grouped kernel: 4 heads per KV head x 40 dims,
        // 2 x 128 dims, and 5 per KV head (split 4 + 1).
        test_attention(2, (int[]){1, 1}, (int[]){45, 3}, 8, 2, 40, 0);
        test_attention(2, (int[]){1, 1}, (int[]){17, 64}, 4, 2, 128, 0);
        test_attention(1, (int[]){1}, (int[]){33}, 10, 2, 16, 0);
        for (int rm = 0; rm < 2; rm++) test_attention(1, nq, p0, 2, 1, 6, rm);
    }
    CHECK(B->attention(B, NULL, 0, 4, 3, 16, err) == -1);
    // bf16 and e4m3 pages: prefill over several pages, and batched decode
    for (int kt = 0; kt < 2; kt++) {
        KT = kt ? PZ_DT_E4M3 : PZ_DT_BF16;
        CHECK(B->supports(B, PZ_OP_ATTENTION, KT) && B->kv_page_bytes(B, 3, 64, KT) > 0);
        test_attention(1, (int[]){40}, (int[]){9}, 9, 3, 64, 0);
        test_attention(4, (int[]){1, 1, 1, 1}, (int[]){0, 7, 33, 70}, 9, 3, 64, 0);
        test_attention(3, (int[]){5, 1, 19}, (int[]){11, 40, 3}, 4, 4, 40, 0);
        // read directly at AVX2 (head_dim % 8 == 0, up to 128), else widened first
        test_attention(2, (int[]){1, 1}, (int[]){20, 33}, 4, 2, 128, 0);
        test_attention(2, (int[]){3, 1}, (int[]){17, 50}, 6, 3, 12, 0);
        // Decode on narrow pages (at AVX2 the narrow kernel with a KV head's
        // query heads grouped, and one head per call): query heads per KV head 3, 4, 1, 6 (4 + 2), 5
        // (4 + 1); head_dim 64, 32, 128, 40 (bf16 V rows not by 16s), 24;
        // 1 key, one full page, a page and a key, ragged lengths over
        // several 64-key segments.
        static const int shapes[][3] = {{9, 3, 64}, {8, 2, 64}, {4, 4, 32}, {6, 1, 64},
                                        {10, 2, 128}, {6, 2, 40}, {4, 2, 24}};
        for (int gn = 1; gn >= 0; gn--) {
            pz_cpu_attention_set_grouped_narrow(gn);
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
                const int *sh = shapes[i];
                test_attention(8, (int[]){1, 1, 1, 1, 1, 1, 1, 1}, (int[]){0, 15, 16, 63, 64, 100, 130, 200},
                               sh[0], sh[1], sh[2], 0);
            }
        }
        pz_cpu_attention_set_grouped_narrow(1);
        if (pz_cpu_attention_reads_narrow(KT, 64))  // the kernels that read narrow pages as they are
            for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
                test_attention_narrow_same(shapes[i][0], shapes[i][1], shapes[i][2], 77);
                test_attention_narrow_same(shapes[i][0], shapes[i][1], shapes[i][2], 16);
            }
        pz_cpu_attention_set_grouped_narrow(1);
    }
    KT = PZ_DT_F32;
    CHECK(!B->supports(B, PZ_OP_ATTENTION, PZ_DT_E5M2) && B->kv_page_bytes(B, 3, 64, PZ_DT_E5M2) == 0);
    test_pointwise(1, 5);
    test_pointwise(23, 129);
}

int main(int argc, char **argv) {
    B = pz_backend_create(PZ_BACKEND_CPU, 2, err);
    if (!B) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("matmul library: %s, processor level %s, avx512_bf16 %d\n", pz_cpu_matmul_library(),
           pz_cpu_isa_name(pz_cpu_isa_detected()), pz_cpu_have_avx512_bf16());
    CHECK(B->supports(B, PZ_OP_MATMUL, PZ_DT_BF16) && B->supports(B, PZ_OP_RMSNORM, PZ_DT_F32));
    CHECK(!B->supports(B, PZ_OP_RMSNORM, PZ_DT_BF16));
    for (int lv = (int)pz_cpu_isa_detected(); lv >= PZ_ISA_PLAIN; lv--) {
        CHECK(pz_cpu_isa_set_max((pz_isa)lv) == (pz_isa)lv);
        printf("level %s\n", pz_cpu_isa_name((pz_isa)lv));
        run_all();
    }
    // A cap above the processor's level is no cap.
    CHECK(pz_cpu_isa_set_max(PZ_ISA_AVX512) == pz_cpu_isa_detected());
    if (argc > 1 && strcmp(argv[1], "perf") == 0) perf();
    if (argc > 1 && strcmp(argv[1], "perf-decode") == 0)
        perf_decode(argc > 2 ? atoi(argv[2]) : 2, argc > 3 ? atoi(argv[3]) : 30, argc > 4 ? atoi(argv[4]) : 15,
                    argc > 5 ? atoi(argv[5]) : 1);
    if (argc > 1 && strcmp(argv[1], "perf-rows") == 0) perf_rows(argc > 2 ? atoi(argv[2]) : 20);
    if (argc > 1 && strcmp(argv[1], "perf-tile") == 0) perf_tile(argc > 2 ? atoi(argv[2]) : 20);
    if (argc > 1 && strcmp(argv[1], "perf-cold") == 0)
        perf_cold(argc > 2 ? atoi(argv[2]) : 5, argc > 3 ? argc - 3 : 0, argv + 3);
    pz_backend_free(B);
    return pz_test_finish("test_kernels");
}
