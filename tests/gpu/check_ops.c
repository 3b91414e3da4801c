// check_ops — every op of the CUDA backend against the CPU backend on
// random inputs (fresh seeds each run unless --seed), then a timing table.
// Run by tests/gpu/run.sh on a machine with a GPU; exits 77 ("skipped")
// with the reason when there is none, 1 when any check fails.
//
// Checks: outputs are poisoned with NaN first on both backends and compared
// whole, so an element the GPU leaves unwritten (or writes where the CPU
// does not, e.g. row padding) fails; error is the normalized
// ||gpu - cpu|| / ||cpu|| over the elements the CPU made finite, against a
// per-op, per-dtype bound; a NaN injected into an input must come out as
// NaN in exactly the outputs it reaches. Types the CPU backend lacks (bf16
// and FP8 KV, FP8 weights) are checked against the CPU on inputs rounded
// to that type on the host first (cuda_plan.h's e4m3 encoder), so the
// comparison isolates the GPU's arithmetic; FP8 products are also reported
// against the unrounded fp32 product.
//
// Then whole heterogeneous models (tests/testmodel.h, f32 and bf16
// weights) through the engine on both backends: prefill logits and a few
// batched decode steps; a decode-like pass replayed as a CUDA graph against
// the same pass run eagerly. The training ops (train.h) against the CPU
// backend's, and finite differences of an attention and a SwiGLU block's
// backward on the GPU. Timing: cuBLASLt bf16 and FP8 products at 8192^3
// through the backend's matmul, and prefill / decode (with and without the
// engine's decode graphs) of a SmolLM2-135M-shaped model with random weights.
//
//   check_ops [--seed S] [--quick]
#include "backend.h"
#include "backend_cuda.h"
#include "cuda_plan.h"
#include "fp8.h"
#include "engine.h"
#include "testmodel.h"
#include "testutil.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pz_backend *cpu, *gpu;
static char err[PZ_ERRLEN];
static uint64_t rng;
static int n_fail, n_pass;

// ---- helpers ------------------------------------------------------------------------
static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static void *up(const void *h, size_t bytes) {
    void *d = gpu->alloc(gpu, bytes);
    if (!d || gpu->copy(gpu, d, h, bytes, PZ_COPY_H2D, err)) {
        fprintf(stderr, "upload of %zu bytes failed: %s\n", bytes, err);
        exit(2);
    }
    return d;
}

// Reads back after a synchronize; a failed synchronize is a failed check.
static int down(void *h, const void *d, size_t bytes, const char *what) {
    if (gpu->copy(gpu, h, d, bytes, PZ_COPY_D2H, err) || gpu->synchronize(gpu, err)) {
        printf("FAIL  %-28s synchronize: %s\n", what, err);
        n_fail++;
        return -1;
    }
    return 0;
}

static float *nans(size_t n) {
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

static float *randn(size_t n, float scale) {
    float *p = xmalloc(n * sizeof(float));
    pz_test_fill_randn(p, n, scale, &rng);
    return p;
}

static float bf16_round(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7fffffff) > 0x7f800000) return x;
    b = (b + 0x7fff + ((b >> 16) & 1)) & 0xffff0000u;
    memcpy(&x, &b, 4);
    return x;
}

static uint16_t bf16_bits(float x) {
    float r = bf16_round(x);
    uint32_t b;
    memcpy(&b, &r, 4);
    return (uint16_t)(b >> 16);
}

static float e4m3_round(float x, float scale) { return pz_e4m3_to_f32(pz_f32_to_e4m3(x / scale)) * scale; }

// Compares got (GPU) with ref (CPU) over n elements: NaN where ref is NaN
// (poison or propagation) and finite where ref is finite, and the
// normalized error over the finite ones within bound.
static int compare(const char *op, const char *cas, const float *got, const float *ref, size_t n,
                   double bound) {
    double num = 0, den = 0;
    size_t unwritten = 0, nan_miss = 0, extra = 0;
    for (size_t i = 0; i < n; i++) {
        int rn = isnan(ref[i]), gn = isnan(got[i]);
        if (rn && !gn) nan_miss++;      // ref NaN (poison kept or propagated), GPU wrote a number
        else if (!rn && gn) unwritten++;  // GPU left poison (or made NaN) where the CPU has a value
        else if (!rn && (isinf(ref[i]) || isinf(got[i]))) extra += ref[i] != got[i];
        else if (!rn) {
            double d = (double)got[i] - ref[i];
            num += d * d, den += (double)ref[i] * ref[i];
        }
    }
    double e = den > 0 ? sqrt(num / den) : sqrt(num);
    int ok = unwritten == 0 && nan_miss == 0 && extra == 0 && e <= bound;
    printf("%s  %-10s %-34s err %.2e (bound %.0e)", ok ? "ok  " : "FAIL", op, cas, e, bound);
    if (unwritten || nan_miss || extra)
        printf("  unwritten/NaN %zu, NaN expected %zu, Inf mismatch %zu", unwritten, nan_miss, extra);
    printf("\n");
    if (ok) n_pass++;
    else n_fail++;
    return ok;
}

static void fail_line(const char *op, const char *cas, const char *why) {
    printf("FAIL  %-10s %-34s %s\n", op, cas, why);
    n_fail++;
}

// ---- ops ------------------------------------------------------------------------------
static void check_embed(void) {
    const int vocab = 1000, n = 576, M = 37;
    float *tab = randn((size_t)vocab * n, 1);
    uint16_t *tb = xmalloc((size_t)vocab * n * 2);
    for (size_t i = 0; i < (size_t)vocab * n; i++) tb[i] = bf16_bits(tab[i]);
    int32_t ids[37];
    for (int m = 0; m < M; m++) ids[m] = (int32_t)(pz_test_rand_u64(&rng) % vocab);
    for (int t = 0; t < 2; t++) {
        pz_dt dt = t ? PZ_DT_BF16 : PZ_DT_F32;
        const void *h = t ? (const void *)tb : (const void *)tab;
        size_t bytes = (size_t)vocab * n * pz_dt_size(dt);
        pz_weight wc = pz_weight_dense(h, dt, vocab, n), wg = pz_weight_dense(up(h, bytes), dt, vocab, n);
        float *ref = nans((size_t)M * n), *got = nans((size_t)M * n);
        int32_t *dids = up(ids, sizeof ids);
        float *dy = up(got, (size_t)M * n * 4);
        if (cpu->embed(cpu, ref, &wc, ids, M, err) || gpu->embed(gpu, dy, &wg, dids, M, err)) {
            fail_line("embed", pz_dt_name(dt), err);
        } else if (!down(got, dy, (size_t)M * n * 4, "embed")) {
            compare("embed", pz_dt_name(dt), got, ref, (size_t)M * n, 0);
        }
        // A bad id is reported by synchronize.
        int32_t bad[2] = {3, vocab + 5};
        int32_t *dbad = up(bad, sizeof bad);
        int rc = gpu->embed(gpu, dy, &wg, dbad, 2, err);
        int rs = gpu->synchronize(gpu, err);
        if (rc == 0 && rs == -1 && strstr(err, "outside the vocabulary")) n_pass++, printf("ok    embed      bad id reported: %s\n", err);
        else fail_line("embed", "bad id", "not reported by synchronize");
        gpu->free(gpu, dbad), gpu->free(gpu, dids), gpu->free(gpu, dy), gpu->free(gpu, (void *)wg.data);
        free(ref), free(got);
    }
    free(tab), free(tb);
}

static void check_pointwise(void) {
    // rmsnorm, with a NaN in row 3 that must stay in row 3.
    const int M = 33, n = 576;
    for (int inject = 0; inject < 2; inject++) {
        float *x = randn((size_t)M * n, 2), *w = randn(n, 1);
        if (inject) x[3 * n + 17] = NAN;
        float *ref = nans((size_t)M * n), *got = nans((size_t)M * n);
        float *dx = up(x, (size_t)M * n * 4), *dw = up(w, n * 4), *dy = up(got, (size_t)M * n * 4);
        cpu->rmsnorm(cpu, ref, x, w, M, n, 1e-5f);
        gpu->rmsnorm(gpu, dy, dx, dw, M, n, 1e-5f);
        if (!down(got, dy, (size_t)M * n * 4, "rmsnorm"))
            compare("rmsnorm", inject ? "NaN in row 3" : "33x576", got, ref, (size_t)M * n, 1e-6);
        gpu->free(gpu, dx), gpu->free(gpu, dw), gpu->free(gpu, dy);
        free(x), free(w), free(ref), free(got);
    }
    // rope: 20 rows of 9 heads x 64 in a wider row (ld 640), positions up to 1e5.
    {
        const int R = 20, nh = 9, hd = 64, ld = 640;
        float *x = randn((size_t)R * ld, 1), *xc = xmalloc((size_t)R * ld * 4);
        int32_t pos[20];
        for (int r = 0; r < R; r++) pos[r] = (int32_t)(pz_test_rand_u64(&rng) % 100000);
        pz_rope_params rp = {.head_dim = hd, .theta = 100000};
        float inv[32];
        pz_rope_inv_freq(&rp, inv);
        memcpy(xc, x, (size_t)R * ld * 4);
        float *dx = up(x, (size_t)R * ld * 4), *dinv = up(inv, sizeof inv);
        int32_t *dpos = up(pos, sizeof pos);
        cpu->rope(cpu, xc, ld, pos, R, nh, hd, inv);
        gpu->rope(gpu, dx, ld, dpos, R, nh, hd, dinv);
        if (!down(x, dx, (size_t)R * ld * 4, "rope")) compare("rope", "20x9x64, ld 640", x, xc, (size_t)R * ld, 1e-6);
        gpu->free(gpu, dx), gpu->free(gpu, dinv), gpu->free(gpu, dpos);
        free(x), free(xc);
    }
    // swiglu on strided gate|up rows into a strided output.
    {
        const int R = 17, F = 1536, ldh = 1600;
        float *gu = randn((size_t)R * 2 * F, 2);
        gu[5 * 2 * F + 7] = NAN;  // gate of row 5, channel 7
        float *ref = nans((size_t)R * ldh), *got = nans((size_t)R * ldh);
        float *dgu = up(gu, (size_t)R * 2 * F * 4), *dh = up(got, (size_t)R * ldh * 4);
        cpu->swiglu(cpu, ref, ldh, gu, gu + F, 2 * F, R, F);
        gpu->swiglu(gpu, dh, ldh, dgu, dgu + F, 2 * F, R, F);
        if (!down(got, dh, (size_t)R * ldh * 4, "swiglu")) compare("swiglu", "17x1536, ld 1600, one NaN", got, ref, (size_t)R * ldh, 1e-6);
        gpu->free(gpu, dgu), gpu->free(gpu, dh);
        free(gu), free(ref), free(got);
    }
    // add
    {
        const size_t n2 = 100003;
        float *y = randn(n2, 1), *x = randn(n2, 1), *yc = xmalloc(n2 * 4);
        memcpy(yc, y, n2 * 4);
        float *dy = up(y, n2 * 4), *dx = up(x, n2 * 4);
        cpu->add(cpu, yc, x, n2);
        gpu->add(gpu, dy, dx, n2);
        if (!down(y, dy, n2 * 4, "add")) compare("add", "100003", y, yc, n2, 0);
        gpu->free(gpu, dy), gpu->free(gpu, dx);
        free(y), free(x), free(yc);
    }
}

// Host quantization of activations as the GPU does it: with a static scale
// (x_scale > 0), else per tensor (one amax) or per row; NaNs skipped in amax.
static void quant_rows(float *x, int M, int K, int per_row, float x_scale) {
    float amax = 0;
    for (int m = 0; m < M; m++) {
        float ra = 0;
        for (int k = 0; k < K; k++) ra = fmaxf(ra, fabsf(x[(size_t)m * K + k]));
        if (per_row || x_scale > 0) {
            float s = x_scale > 0 ? x_scale : pz_fp8_scale(ra);
            for (int k = 0; k < K; k++) x[(size_t)m * K + k] = e4m3_round(x[(size_t)m * K + k], s);
        }
        amax = fmaxf(amax, ra);
    }
    if (!per_row && !(x_scale > 0)) {
        float s = pz_fp8_scale(amax);
        for (size_t i = 0; i < (size_t)M * K; i++) x[i] = e4m3_round(x[i], s);
    }
}

// One product case: weight type wt, M rows, N x K, optional channel
// scales, accumulate, and a weight view with ld > K.
// static_x: FP8 activations with a static input scale (set so the largest
// values saturate), else dynamic.
static void check_matmul_case(pz_dt wt, pz_dt xt, int M, int N, int K, int ldw, int chs, int acc,
                              int nan_row, int static_x) {
    char cas[96];
    snprintf(cas, sizeof cas, "%s w, %s x%s, M%d N%d K%d%s%s%s%s", pz_dt_name(wt), pz_dt_name(xt),
             xt == PZ_DT_E4M3 ? (static_x ? " static" : " dynamic") : "", M, N, K,
             ldw > K ? " ld+" : "", chs ? " ch" : "", acc ? " acc" : "", nan_row >= 0 ? " NaN" : "");
    const int ldx = K + 8, ldy = N + 4;
    float *w = randn((size_t)N * ldw, 0.05f), *x = randn((size_t)M * ldx, 1);
    if (nan_row >= 0) x[(size_t)nan_row * ldx + K / 3] = NAN;
    float *cs = NULL;
    if (chs) {
        cs = xmalloc((size_t)N * 4);
        for (int i = 0; i < N; i++) cs[i] = pz_test_uniform(&rng, 0.5f, 2.0f);
    }
    float scale = wt == PZ_DT_E4M3 ? 0.01f : 1.0f;
    float x_scale = xt == PZ_DT_E4M3 && static_x ? 3.0f / PZ_E4M3_MAX : 0.0f;  // N(0,1) x: |x| > 3 saturates
    // The weight in its type (device bytes) and its exact fp32 value (host reference).
    size_t we = (size_t)N * ldw;
    void *wbytes = xmalloc(we * pz_dt_size(wt));
    float *wref = xmalloc((size_t)N * K * 4);
    for (int r = 0; r < N; r++)
        for (int k = 0; k < ldw; k++) {
            float v = w[(size_t)r * ldw + k];
            float exact;
            if (wt == PZ_DT_F32) ((float *)wbytes)[(size_t)r * ldw + k] = exact = v;
            else if (wt == PZ_DT_BF16) ((uint16_t *)wbytes)[(size_t)r * ldw + k] = bf16_bits(v), exact = bf16_round(v);
            else {
                uint8_t q = pz_f32_to_e4m3(v / scale);
                ((uint8_t *)wbytes)[(size_t)r * ldw + k] = q;
                exact = pz_e4m3_to_f32(q) * scale;
            }
            if (k < K) wref[(size_t)r * K + k] = exact * (cs ? cs[r] : 1.0f);
        }
    // Reference activations: as the GPU's product sees them.
    float *xr = xmalloc((size_t)M * K * 4);
    for (int m = 0; m < M; m++) memcpy(xr + (size_t)m * K, x + (size_t)m * ldx, (size_t)K * 4);
    int small = M <= gpu->invariant_rows;
    int fp8_legal = N % 16 == 0 && K % 16 == 0 && ldw % 16 == 0;
    if (xt == PZ_DT_E4M3) quant_rows(xr, M, K, small || !fp8_legal, x_scale);
    int bf16_rounds = wt == PZ_DT_BF16 && !small;
    if (bf16_rounds)
        for (size_t i = 0; i < (size_t)M * K; i++) xr[i] = bf16_round(xr[i]);
    float *y0 = randn((size_t)M * ldy, 1);  // the accumulate base
    float *ref = xmalloc((size_t)M * ldy * 4), *got = xmalloc((size_t)M * ldy * 4);
    for (size_t i = 0; i < (size_t)M * ldy; i++) ref[i] = got[i] = acc ? y0[i] : NAN;
    for (int m = 0; m < M; m++)  // padding columns stay NaN in both (the GPU must not write them)
        for (int j = N; j < ldy; j++) ref[(size_t)m * ldy + j] = got[(size_t)m * ldy + j] = NAN;
    pz_weight wc = pz_weight_dense(wref, PZ_DT_F32, N, K);
    int rc = cpu->prepare_weight(cpu, &wc, err) || cpu->matmul(cpu, ref, ldy, xr, K, PZ_DT_F32, &wc, M, acc, err);
    cpu->release_weight(cpu, &wc);
    if (rc) {
        fail_line("matmul", cas, err);
        goto out;
    }
    void *dw = up(wbytes, we * pz_dt_size(wt));
    float *dcs = cs ? up(cs, (size_t)N * 4) : NULL, *dx = up(x, (size_t)M * ldx * 4), *dy = up(got, (size_t)M * ldy * 4);
    pz_weight wg = {.data = dw, .type = wt, .rows = N, .cols = K, .ld = ldw, .scale = scale, .ch_scale = dcs,
                    .x_scale = x_scale};
    if (gpu->prepare_weight(gpu, &wg, err) || gpu->matmul(gpu, dy, ldy, dx, ldx, xt, &wg, M, acc, err)) {
        fail_line("matmul", cas, err);
    } else if (!down(got, dy, (size_t)M * ldy * 4, "matmul")) {
        // Bounds: fp32 sums in another order; bf16 and FP8 products run on
        // tensor cores (fp32 accumulation, less careful for FP8).
        double bound = xt == PZ_DT_E4M3 && !small && fp8_legal ? 2e-3 : wt == PZ_DT_F32 ? 1e-5 : 5e-4;
        compare("matmul", cas, got, ref, (size_t)M * ldy, bound);
    }
    gpu->release_weight(gpu, &wg);
    gpu->free(gpu, dw), gpu->free(gpu, dcs), gpu->free(gpu, dx), gpu->free(gpu, dy);
out:
    free(w), free(x), free(cs), free(wbytes), free(wref), free(xr), free(y0), free(ref), free(got);
}

static void check_matmul(int quick) {
    const int Ms[] = {1, 5, 8, 9, 64, 200};
    for (int t = 0; t < 3; t++) {
        pz_dt wt = t == 0 ? PZ_DT_F32 : t == 1 ? PZ_DT_BF16 : PZ_DT_E4M3;
        for (int i = 0; i < 6; i++) {
            if (quick && i % 2) continue;
            check_matmul_case(wt, PZ_DT_F32, Ms[i], 576, 1536, 1536, 0, 0, -1, 0);
        }
        check_matmul_case(wt, PZ_DT_F32, 64, 192, 256, 576, 1, 1, -1, 0);  // view, channels, accumulate
        check_matmul_case(wt, PZ_DT_F32, 4, 100, 200, 200, 0, 1, 2, 0);    // odd shape, NaN row
        check_matmul_case(wt, PZ_DT_F32, 50, 100, 200, 200, 0, 0, 7, 0);   // odd shape, larger M
        check_matmul_case(wt, PZ_DT_F32, 40, 576, 1536, 1536, 0, 0, 11, 0); // NaN through cuBLASLt
    }
    // FP8 activations (e4m3 weights only): static and dynamic scales, both paths.
    for (int st = 0; st < 2; st++) {
        for (int i = 0; i < 6; i++) check_matmul_case(PZ_DT_E4M3, PZ_DT_E4M3, Ms[i], 576, 1536, 1536, 0, 0, -1, st);
        check_matmul_case(PZ_DT_E4M3, PZ_DT_E4M3, 64, 192, 256, 576, 1, 1, 5, st);
        check_matmul_case(PZ_DT_E4M3, PZ_DT_E4M3, 50, 100, 200, 200, 0, 0, 7, st);
    }
    // The CPU backend itself on FP8 weights with a static input scale, as a second opinion.
    {
        const int M = 64, N = 576, K = 1536;
        float *w = randn((size_t)N * K, 0.05f), *x = randn((size_t)M * K, 1);
        uint8_t *q = xmalloc((size_t)N * K);
        for (size_t i = 0; i < (size_t)N * K; i++) q[i] = pz_f32_to_e4m3(w[i] / 0.01f);
        float *ref = nans((size_t)M * N), *got = nans((size_t)M * N);
        pz_weight wc = {.data = q, .type = PZ_DT_E4M3, .rows = N, .cols = K, .ld = K, .scale = 0.01f,
                        .x_scale = 3.0f / PZ_E4M3_MAX};
        void *dq = up(q, (size_t)N * K);
        float *dx = up(x, (size_t)M * K * 4), *dy = up(got, (size_t)M * N * 4);
        pz_weight wg = wc;
        wg.data = dq;
        if (cpu->prepare_weight(cpu, &wc, err) || cpu->matmul(cpu, ref, N, x, K, PZ_DT_E4M3, &wc, M, 0, err) ||
            gpu->prepare_weight(gpu, &wg, err) || gpu->matmul(gpu, dy, N, dx, K, PZ_DT_E4M3, &wg, M, 0, err))
            fail_line("matmul", "fp8 vs the CPU backend", err);
        else if (!down(got, dy, (size_t)M * N * 4, "matmul"))
            compare("matmul", "fp8 static x, vs CPU backend M64", got, ref, (size_t)M * N, 2e-3);
        cpu->release_weight(cpu, &wc), gpu->release_weight(gpu, &wg);
        gpu->free(gpu, dq), gpu->free(gpu, dx), gpu->free(gpu, dy);
        free(w), free(x), free(q), free(ref), free(got);
    }
}

// Argmax against the host, with a tie and a NaN row.
static void check_argmax(void) {
    const int M = 6, n = 49152;
    float *l = randn((size_t)M * n, 3);
    l[1 * n + 100] = 50, l[1 * n + 9000] = 50;  // tie: 100 wins
    l[4 * n + 777] = NAN;
    int32_t want[6], got[6];
    for (int m = 0; m < M; m++) {
        int b = 0;
        for (int i = 0; i < n; i++) {
            float v = l[(size_t)m * n + i];
            if (isnan(v)) {
                b = i;
                break;
            }
            if (v > l[(size_t)m * n + b]) b = i;
        }
        want[m] = b;
    }
    float *dl = up(l, (size_t)M * n * 4);
    int32_t *dout = gpu->alloc(gpu, sizeof got);
    if (pz_cuda_argmax(gpu, dout, dl, n, M, n, err)) fail_line("argmax", "6x49152", err);
    else if (!down(got, dout, sizeof got, "argmax")) {
        int ok = memcmp(got, want, sizeof want) == 0;
        printf("%s  argmax     6x49152, tie and NaN row           %s\n", ok ? "ok  " : "FAIL", ok ? "" : "mismatch");
        ok ? n_pass++ : n_fail++;
    }
    gpu->free(gpu, dl), gpu->free(gpu, dout);
    free(l);
}

// Paged KV: sequences of several shapes over shuffled pages, K/V written
// by kv_write on both backends (the CPU's f32 pool gets the values rounded
// to the GPU pool's type), then attention.
static void check_attention_case(pz_dt kt, int n_head, int n_kv, int hd, int nan_key) {
    enum { NS = 4 };
    const int nq[NS] = {37, 1, 5, 1}, p0[NS] = {0, 100, 20, 300};
    const float ks = kt == PZ_DT_E4M3 ? 0.02f : 1.0f, vs = kt == PZ_DT_E4M3 ? 0.03f : 1.0f;
    const int kvd = n_kv * hd, qd = n_head * hd;
    int npos[NS], npg[NS], total_pages = 0, rows = 0;
    for (int s = 0; s < NS; s++) {
        npos[s] = p0[s] + nq[s];
        npg[s] = pz_kv_pages_for(npos[s]);
        total_pages += npg[s];
        rows += nq[s];
    }
    int n_pages = total_pages + 3;
    int32_t *perm = xmalloc(sizeof(int32_t) * n_pages);
    for (int i = 0; i < n_pages; i++) perm[i] = i;
    for (int i = n_pages - 1; i > 0; i--) {
        int j = (int)(pz_test_rand_u64(&rng) % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    size_t cpb = cpu->kv_page_bytes(cpu, n_kv, hd, PZ_DT_F32), gpb = gpu->kv_page_bytes(gpu, n_kv, hd, kt);
    float *kc = cpu->alloc(cpu, cpb * n_pages), *vc = cpu->alloc(cpu, cpb * n_pages);
    void *kg = gpu->alloc(gpu, gpb * n_pages), *vg = gpu->alloc(gpu, gpb * n_pages);
    pz_attn_seq sc[NS], sg[NS];
    float *q = randn((size_t)rows * qd, 1), *ref = nans((size_t)rows * qd), *got = nans((size_t)rows * qd);
    float *dq = up(q, (size_t)rows * qd * 4), *dout = up(got, (size_t)rows * qd * 4);
    int32_t *tabs[NS], *dtabs[NS];
    int used = 0, row = 0, ok = 1;
    for (int s = 0; s < NS && ok; s++) {
        tabs[s] = perm + used;
        used += npg[s];
        dtabs[s] = up(tabs[s], sizeof(int32_t) * npg[s]);
        // Every position's K|V row (values as the GPU pool will hold them for the CPU).
        int R = npos[s];
        float *kv = randn((size_t)R * 2 * kvd, 1), *kvr = xmalloc((size_t)R * 2 * kvd * 4);
        if (nan_key && s == 0) kv[(size_t)10 * 2 * kvd + 3] = NAN;  // key 10 of sequence 0, KV head 0
        for (int r = 0; r < R; r++)
            for (int i = 0; i < 2 * kvd; i++) {
                float v = kv[(size_t)r * 2 * kvd + i];
                kvr[(size_t)r * 2 * kvd + i] = kt == PZ_DT_BF16 ? bf16_round(v)
                                               : kt == PZ_DT_E4M3 ? e4m3_round(v, i < kvd ? ks : vs) : v;
            }
        int32_t *pos = xmalloc(sizeof(int32_t) * R), *rp = xmalloc(sizeof(int32_t) * R);
        for (int r = 0; r < R; r++) pos[r] = r;
        pz_kv_row_pages(tabs[s], npg[s], pos, R, rp, err);
        pz_kv_write wc = {.k_pool = kc, .v_pool = vc, .n_pages = n_pages, .n_kv = n_kv, .head_dim = hd,
                          .kv_type = PZ_DT_F32, .k_scale = 1, .v_scale = 1, .kv = kvr, .ld = 2 * kvd,
                          .row_page = rp, .pos = pos, .R = R};
        float *dkv = up(kv, (size_t)R * 2 * kvd * 4);
        int32_t *dpos = up(pos, sizeof(int32_t) * R), *drp = up(rp, sizeof(int32_t) * R);
        pz_kv_write wg = wc;
        wg.k_pool = kg, wg.v_pool = vg, wg.kv_type = kt, wg.k_scale = ks, wg.v_scale = vs;
        wg.kv = dkv, wg.row_page = drp, wg.pos = dpos;
        if (cpu->kv_write(cpu, &wc, err) || gpu->kv_write(gpu, &wg, err) || gpu->synchronize(gpu, err)) {
            fail_line("kv_write", pz_dt_name(kt), err);
            ok = 0;
        }
        gpu->free(gpu, dkv), gpu->free(gpu, dpos), gpu->free(gpu, drp);
        free(kv), free(kvr), free(pos), free(rp);
        sc[s] = (pz_attn_seq){.q = q + (size_t)row * qd, .q_ld = qd, .out = ref + (size_t)row * qd, .out_ld = qd,
                              .k = kc, .v = vc, .kv_ld = 0, .pages = tabs[s], .kv_type = PZ_DT_F32,
                              .k_scale = 1, .v_scale = 1, .n_q = nq[s], .pos0 = p0[s]};
        sg[s] = (pz_attn_seq){.q = dq + (size_t)row * qd, .q_ld = qd, .out = dout + (size_t)row * qd, .out_ld = qd,
                              .k = kg, .v = vg, .kv_ld = 0, .pages = dtabs[s], .kv_type = kt,
                              .k_scale = ks, .v_scale = vs, .n_q = nq[s], .pos0 = p0[s]};
        row += nq[s];
    }
    char cas[96];
    snprintf(cas, sizeof cas, "%s KV, %dq/%dkv x %d%s", pz_dt_name(kt), n_head, n_kv, hd, nan_key ? ", NaN key" : "");
    if (ok) {
        if (cpu->attention(cpu, sc, NS, n_head, n_kv, hd, err) || gpu->attention(gpu, sg, NS, n_head, n_kv, hd, err))
            fail_line("attention", cas, err);
        else if (!down(got, dout, (size_t)rows * qd * 4, "attention"))
            compare("attention", cas, got, ref, (size_t)rows * qd, 2e-5);
    }
    // A page id outside the pool is reported by synchronize.
    if (!nan_key && kt == PZ_DT_F32) {
        int32_t badp = n_pages + 1, p = 0;
        float row1[2 * 64 * 8];
        int32_t *dbp = up(&badp, 4), *dp = up(&p, 4);
        float *dr = up(row1, sizeof(float) * 2 * kvd);
        pz_kv_write wb = {.k_pool = kg, .v_pool = vg, .n_pages = n_pages, .n_kv = n_kv, .head_dim = hd,
                          .kv_type = kt, .k_scale = 1, .v_scale = 1, .kv = dr, .ld = 2 * kvd, .row_page = dbp,
                          .pos = dp, .R = 1};
        int rc = gpu->kv_write(gpu, &wb, err), rs = gpu->synchronize(gpu, err);
        if (rc == 0 && rs == -1 && strstr(err, "page")) n_pass++, printf("ok    kv_write   bad page reported: %s\n", err);
        else fail_line("kv_write", "bad page", "not reported");
        gpu->free(gpu, dbp), gpu->free(gpu, dp), gpu->free(gpu, dr);
    }
    for (int s = 0; s < NS; s++) gpu->free(gpu, dtabs[s]);
    cpu->free(cpu, kc), cpu->free(cpu, vc), gpu->free(gpu, kg), gpu->free(gpu, vg);
    gpu->free(gpu, dq), gpu->free(gpu, dout);
    free(perm), free(q), free(ref), free(got);
}

// Row-major fp32 K/V (kv_ld > 0), as the training path passes them.
static void check_attention_rowmajor(void) {
    const int n_head = 6, n_kv = 2, hd = 32, T = 50, kvd = n_kv * hd, qd = n_head * hd, ld = 2 * kvd + 8;
    float *q = randn((size_t)T * qd, 1), *kv = randn((size_t)T * ld, 1);
    float *ref = nans((size_t)T * qd), *got = nans((size_t)T * qd);
    float *dq = up(q, (size_t)T * qd * 4), *dkv = up(kv, (size_t)T * ld * 4), *dout = up(got, (size_t)T * qd * 4);
    pz_attn_seq sc = {.q = q, .q_ld = qd, .out = ref, .out_ld = qd, .k = kv, .v = kv + kvd, .kv_ld = ld,
                      .kv_type = PZ_DT_F32, .k_scale = 1, .v_scale = 1, .n_q = T, .pos0 = 0};
    pz_attn_seq sg = sc;
    sg.q = dq, sg.out = dout, sg.k = dkv, sg.v = dkv + kvd;
    if (cpu->attention(cpu, &sc, 1, n_head, n_kv, hd, err) || gpu->attention(gpu, &sg, 1, n_head, n_kv, hd, err))
        fail_line("attention", "row-major", err);
    else if (!down(got, dout, (size_t)T * qd * 4, "attention"))
        compare("attention", "row-major f32 K/V, 6q/2kv x 32", got, ref, (size_t)T * qd, 2e-5);
    gpu->free(gpu, dq), gpu->free(gpu, dkv), gpu->free(gpu, dout);
    free(q), free(kv), free(ref), free(got);
}

// ---- CUDA graphs --------------------------------------------------------------------------
// A decode-like pass (copies in, embed, norm, products, RoPE, kv_write,
// paged attention, residual, LM head, argmax, copies out) for 3 sequences,
// run for 6 steps on two sets of buffers: one through a graph (warm-up,
// capture, 4 replays with new tokens and positions), one eagerly. The
// outputs must agree exactly; then a pass that differs from the capture
// must fail at synchronize.
typedef struct {
    int32_t *tok, *pos, *rp, *pt, *ids;
    float *x, *xn, *qkv, *att, *logits;
    void *kp, *vp;
} gstate;

static int graph_pass(gstate *s, const pz_weight *emb, const pz_weight *wqkv, const pz_weight *wo,
                      const pz_weight *lm, const float *norm, const float *inv, const int32_t *tok,
                      const int32_t *pos, const int32_t *rp, const int32_t *pt, float *logits, int32_t *ids,
                      int skip_attention) {
    enum { NS = 3, H = 256, NH = 4, NKV = 2, HD = 64, V = 512, PPS = 4 };
    const int qd = NH * HD, ld = qd + 2 * NKV * HD;
    if (gpu->copy(gpu, s->tok, tok, 4 * NS, PZ_COPY_H2D, err) || gpu->copy(gpu, s->pos, pos, 4 * NS, PZ_COPY_H2D, err) ||
        gpu->copy(gpu, s->rp, rp, 4 * NS, PZ_COPY_H2D, err) || gpu->copy(gpu, s->pt, pt, 4 * NS * PPS, PZ_COPY_H2D, err) ||
        gpu->embed(gpu, s->x, emb, s->tok, NS, err))
        return -1;
    gpu->rmsnorm(gpu, s->xn, s->x, norm, NS, H, 1e-5f);
    if (gpu->matmul(gpu, s->qkv, ld, s->xn, H, PZ_DT_F32, wqkv, NS, 0, err)) return -1;
    gpu->rope(gpu, s->qkv, ld, s->pos, NS, NH, HD, inv);
    gpu->rope(gpu, s->qkv + qd, ld, s->pos, NS, NKV, HD, inv);
    pz_kv_write kw = {.k_pool = s->kp, .v_pool = s->vp, .n_pages = NS * PPS, .n_kv = NKV, .head_dim = HD,
                      .kv_type = PZ_DT_BF16, .k_scale = 1, .v_scale = 1, .kv = s->qkv + qd, .ld = ld,
                      .row_page = s->rp, .pos = s->pos, .R = NS};
    if (gpu->kv_write(gpu, &kw, err)) return -1;
    if (!skip_attention) {
        pz_attn_seq sq[NS];
        for (int i = 0; i < NS; i++)
            sq[i] = (pz_attn_seq){.q = s->qkv + (size_t)i * ld, .q_ld = ld, .out = s->att + (size_t)i * qd, .out_ld = qd,
                                  .k = s->kp, .v = s->vp, .kv_ld = 0, .pages = s->pt + i * PPS, .kv_type = PZ_DT_BF16,
                                  .k_scale = 1, .v_scale = 1, .n_q = 1, .pos0 = pos[i]};
        if (gpu->attention(gpu, sq, NS, NH, NKV, HD, err)) return -1;
    }
    if (gpu->matmul(gpu, s->x, H, s->att, qd, PZ_DT_F32, wo, NS, 1, err) ||
        gpu->matmul(gpu, s->logits, V, s->x, H, PZ_DT_F32, lm, NS, 0, err) ||
        pz_cuda_argmax(gpu, s->ids, s->logits, V, NS, V, err) ||
        gpu->copy(gpu, logits, s->logits, sizeof(float) * NS * V, PZ_COPY_D2H, err) ||
        gpu->copy(gpu, ids, s->ids, 4 * NS, PZ_COPY_D2H, err))
        return -1;
    return gpu->synchronize(gpu, err);
}

static void check_graph(void) {
    enum { NS = 3, H = 256, NH = 4, NKV = 2, HD = 64, V = 512, PPS = 4 };
    const int qd = NH * HD, ld = qd + 2 * NKV * HD;
    float *hemb = randn((size_t)V * H, 1), *hqkv = randn((size_t)ld * H, 0.06f), *hwo = randn((size_t)H * qd, 0.06f);
    float *hlm = randn((size_t)V * H, 0.06f), *hn = randn(H, 1);
    pz_rope_params rp = {.head_dim = HD, .theta = 10000};
    float inv[HD / 2];
    pz_rope_inv_freq(&rp, inv);
    pz_weight emb = pz_weight_dense(up(hemb, (size_t)V * H * 4), PZ_DT_F32, V, H);
    pz_weight wqkv = pz_weight_dense(up(hqkv, (size_t)ld * H * 4), PZ_DT_F32, ld, H);
    pz_weight wo = pz_weight_dense(up(hwo, (size_t)H * qd * 4), PZ_DT_F32, H, qd);
    pz_weight lm = pz_weight_dense(up(hlm, (size_t)V * H * 4), PZ_DT_F32, V, H);
    float *dn = up(hn, H * 4), *dinv = up(inv, sizeof inv);
    gstate st[2];
    size_t pb = gpu->kv_page_bytes(gpu, NKV, HD, PZ_DT_BF16) * NS * PPS;
    for (int k = 0; k < 2; k++) {
        gstate *s = &st[k];
        s->tok = gpu->alloc(gpu, 64), s->pos = gpu->alloc(gpu, 64), s->rp = gpu->alloc(gpu, 64);
        s->pt = gpu->alloc(gpu, 4 * NS * PPS), s->ids = gpu->alloc(gpu, 64);
        s->x = gpu->alloc(gpu, 4 * NS * H), s->xn = gpu->alloc(gpu, 4 * NS * H);
        s->qkv = gpu->alloc(gpu, 4 * NS * ld), s->att = gpu->alloc(gpu, 4 * NS * qd);
        s->logits = gpu->alloc(gpu, 4 * NS * V);
        s->kp = gpu->alloc(gpu, pb), s->vp = gpu->alloc(gpu, pb);
    }
    int ok = !(gpu->prepare_weight(gpu, &emb, err) || gpu->prepare_weight(gpu, &wqkv, err) ||
               gpu->prepare_weight(gpu, &wo, err) || gpu->prepare_weight(gpu, &lm, err));
    pz_cuda_graph *g = ok ? pz_cuda_graph_create(gpu, 0, err) : NULL;
    if (!g) ok = 0;
    int32_t pt[NS * PPS];
    for (int i = 0; i < NS * PPS; i++) pt[i] = (i * 7) % (NS * PPS);  // a permutation of the pages
    int len[NS] = {10, 20, 30};
    float lg[2][NS * V];
    int32_t ids[2][NS];
    double worst = 0;
    int same_ids = 1;
    for (int step = 0; step < 6 && ok; step++) {
        int32_t tok[NS], pos[NS], rowp[NS];
        for (int i = 0; i < NS; i++) {
            tok[i] = (int32_t)(pz_test_rand_u64(&rng) % V);
            pos[i] = len[i] + step;
            rowp[i] = pt[i * PPS + pos[i] / PZ_KV_PAGE];
        }
        for (int k = 0; k < 2 && ok; k++) {
            if (k == 0 && pz_cuda_graph_begin(gpu, g, err)) ok = 0;
            else if (graph_pass(&st[k], &emb, &wqkv, &wo, &lm, dn, dinv, tok, pos, rowp, pt, lg[k], ids[k], 0)) ok = 0;
        }
        if (!ok) break;
        for (int i = 0; i < NS * V; i++) worst = fmax(worst, fabs((double)lg[0][i] - lg[1][i]));
        same_ids &= memcmp(ids[0], ids[1], sizeof ids[0]) == 0;
    }
    if (!ok) fail_line("graph", "decode-like pass", err);
    else {
        int good = worst == 0 && same_ids;
        printf("%s  graph      6 steps (warm-up, capture, 4 replays)    max |graph - eager| %.2e, argmax %s\n",
               good ? "ok  " : "FAIL", worst, same_ids ? "equal" : "differs");
        good ? n_pass++ : n_fail++;
        // A pass that leaves out the attention must not replay.
        int32_t tok[NS] = {1, 2, 3}, pos[NS] = {len[0] + 6, len[1] + 6, len[2] + 6}, rowp[NS];
        for (int i = 0; i < NS; i++) rowp[i] = pt[i * PPS + pos[i] / PZ_KV_PAGE];
        int rc = pz_cuda_graph_begin(gpu, g, err) ? 0
                 : graph_pass(&st[0], &emb, &wqkv, &wo, &lm, dn, dinv, tok, pos, rowp, pt, lg[0], ids[0], 1);
        if (rc == -1 && strstr(err, "graph replay")) n_pass++, printf("ok    graph      a different pass is refused: %s\n", err);
        else fail_line("graph", "a different pass", "was not refused");
        pz_cuda_graph_free(gpu, g);
        g = NULL;
        gpu->synchronize(gpu, err);  // the refused pass's failure is reported once; the next is clean
        if (gpu->synchronize(gpu, err)) fail_line("graph", "after a refused pass", err);
    }
    if (g) pz_cuda_graph_free(gpu, g);
    gpu->release_weight(gpu, &emb), gpu->release_weight(gpu, &wqkv), gpu->release_weight(gpu, &wo), gpu->release_weight(gpu, &lm);
    gpu->free(gpu, (void *)emb.data), gpu->free(gpu, (void *)wqkv.data), gpu->free(gpu, (void *)wo.data), gpu->free(gpu, (void *)lm.data);
    gpu->free(gpu, dn), gpu->free(gpu, dinv);
    for (int k = 0; k < 2; k++) {
        gstate *s = &st[k];
        void *ps[] = {s->tok, s->pos, s->rp, s->pt, s->ids, s->x, s->xn, s->qkv, s->att, s->logits, s->kp, s->vp};
        for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) gpu->free(gpu, ps[i]);
    }
    free(hemb), free(hqkv), free(hwo), free(hlm), free(hn);
}

// ---- whole models through the engine ---------------------------------------------
static void check_engine(int variant, pz_dt wt, pz_dt kvt) {
    char cas[64];
    snprintf(cas, sizeof cas, "test model %d, %s weights, %s KV", variant, pz_dt_name(wt), pz_dt_name(kvt));
    pz_config c;
    pz_testmodel_config(&c, variant);
    // FP8 weights: the f32 model quantized as `--dtype fp8` does at load.
    pz_model *m = pz_testmodel_random(&c, wt == PZ_DT_E4M3 ? PZ_DT_F32 : wt, rng ^ (uint64_t)variant, err);
    if (m && wt == PZ_DT_E4M3) {
        pz_model *q = pz_model_to_e4m3(m, err);
        pz_model_free(m);
        m = q;
    }
    if (!m) {
        fail_line("engine", cas, err);
        return;
    }
    pz_engine_params p = pz_engine_default_params();
    // 4 slots, 3 decoded: the GPU engine's decode pads to its bucket of 4 (a graph).
    p.n_slots = 4, p.max_ctx = 128, p.max_batch = 64, p.kv_type = kvt;
    pz_engine *ec = pz_engine_create(m, p, err);
    p.backend = PZ_BACKEND_CUDA;
    pz_engine *eg = ec ? pz_engine_create(m, p, err) : NULL;
    if (!ec || !eg) {
        fail_line("engine", cas, err);
        goto out;
    }
    const int n = 40, V = c.vocab;
    int32_t tok[40];
    for (int i = 0; i < n; i++) tok[i] = (int32_t)(pz_test_rand_u64(&rng) % (uint64_t)V);
    float *lc = xmalloc((size_t)3 * n * V * 4), *lg = xmalloc((size_t)3 * n * V * 4);
    int ok = 1;
    for (int s = 0; s < 3 && ok; s++) {  // three prompts of different lengths
        int len = n - 9 * s;
        if (pz_engine_prefill(ec, s, tok + s, len, lc, 1, err) || pz_engine_prefill(eg, s, tok + s, len, lg, 1, err)) {
            fail_line("engine", cas, err);
            ok = 0;
        } else if (s == 0) {
            // bf16 weights: products of > 8 rows round the activations to bf16 on the GPU
            compare("prefill", cas, lg, lc, (size_t)len * V, wt == PZ_DT_BF16 ? 2e-2 : 1e-4);
        }
    }
    const int slots[3] = {0, 1, 2};
    for (int step = 0; step < 4 && ok; step++) {
        int32_t nt[3] = {tok[step], tok[step + 5], tok[step + 9]};
        if (pz_engine_decode(ec, slots, nt, 3, lc, err) || pz_engine_decode(eg, slots, nt, 3, lg, err)) {
            fail_line("engine", cas, err);
            ok = 0;
        } else if (step == 3) {
            compare("decode", cas, lg, lc, (size_t)3 * V, wt == PZ_DT_BF16 ? 2e-2 : 1e-4);
        }
    }
    if (ok) {  // warm-up, capture, two replays, all through the bucket-4 graph
        pz_graph_stats gs;
        pz_engine_graph_stats(eg, &gs);
        if (gs.graph_steps != 4 || gs.broken) {
            char why[96];
            snprintf(why, sizeof why, "decode graph: %lld graph steps of 4, %d broke (fell back to eager)",
                     gs.graph_steps, gs.broken);
            fail_line("decode", cas, why);
        }
    }
    free(lc), free(lg);
out:
    pz_engine_free(ec), pz_engine_free(eg);
    pz_model_free(m);
}

// ---- training ops (kernels/train.h) ---------------------------------------------------------
// Each op on both backends from the same inputs; outputs poisoned with NaN
// first (every element written), accumulating outputs seeded with the same
// random values on both. fp32 and bf16 products. NaN injected into one
// input row must reach exactly the outputs the CPU's reach.
static float *dup_f(const float *h, size_t n) {
    float *p = xmalloc(n * sizeof(float));
    memcpy(p, h, n * sizeof(float));
    return p;
}

// A host array on the CPU backend (its memory is host memory) and a GPU copy.
typedef struct {
    float *c, *g;
    size_t n;
} pair;

static pair pair_of(const float *h, size_t n) {
    pair p = {dup_f(h, n), up(h, n * sizeof(float)), n};
    return p;
}
static pair pair_rand(size_t n, float scale) {
    float *h = randn(n, scale);
    pair p = pair_of(h, n);
    free(h);
    return p;
}
static pair pair_nan(size_t n) {
    float *h = nans(n);
    pair p = pair_of(h, n);
    free(h);
    return p;
}
static void pair_free(pair *p) {
    free(p->c);
    gpu->free(gpu, p->g);
    p->c = p->g = NULL;
}
// GPU result against the CPU's; returns the compare result (0 on a failed read-back).
static int pair_cmp(const char *op, const char *cas, const pair *p, double bound) {
    float *h = xmalloc(p->n * sizeof(float));
    int ok = !down(h, p->g, p->n * sizeof(float), op) && compare(op, cas, h, p->c, p->n, bound);
    free(h);
    return ok;
}

static void check_train_gemm(void) {
    const pz_train_ops *tc = cpu->train, *tg = gpu->train;
    const int M = 37, N = 29, K = 45;
    for (int prec = 0; prec < 2; prec++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int acc = 0; acc < 2; acc++) {
                    pz_dt pr = prec ? PZ_DT_BF16 : PZ_DT_F32;
                    int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 2;
                    pair A = pair_rand((size_t)(ta ? K : M) * lda, 1), B = pair_rand((size_t)(tb ? N : K) * ldb, 1);
                    pair Cm = acc ? pair_rand((size_t)M * ldc, 1) : pair_nan((size_t)M * ldc);
                    char cas[64];
                    snprintf(cas, sizeof cas, "%s ta%d tb%d acc%d %dx%dx%d", pz_dt_name(pr), ta, tb, acc, M, N, K);
                    if (tc->gemm(cpu, ta, tb, M, N, K, A.c, lda, B.c, ldb, Cm.c, ldc, acc, pr, err) ||
                        tg->gemm(gpu, ta, tb, M, N, K, A.g, lda, B.g, ldb, Cm.g, ldc, acc, pr, err))
                        fail_line("gemm", cas, err);
                    else
                        pair_cmp("gemm", cas, &Cm, 1e-5);  // the same rounded operands, fp32 sums
                    pair_free(&A), pair_free(&B), pair_free(&Cm);
                }
    // K = 0 zeroes C (no accumulate); a large product through cuBLASLt.
    pair A = pair_rand(16, 1), B = pair_rand(16, 1), Cm = pair_nan((size_t)5 * 7);
    if (tc->gemm(cpu, 0, 0, 5, 7, 0, A.c, 1, B.c, 7, Cm.c, 7, 0, PZ_DT_F32, err) ||
        tg->gemm(gpu, 0, 0, 5, 7, 0, A.g, 1, B.g, 7, Cm.g, 7, 0, PZ_DT_F32, err))
        fail_line("gemm", "K = 0", err);
    else
        pair_cmp("gemm", "K = 0 zeroes C", &Cm, 0);
    pair_free(&A), pair_free(&B), pair_free(&Cm);
    const int S = 512;
    A = pair_rand((size_t)S * S, 1), B = pair_rand((size_t)S * S, 1), Cm = pair_nan((size_t)S * S);
    for (int prec = 0; prec < 2; prec++) {
        pz_dt pr = prec ? PZ_DT_BF16 : PZ_DT_F32;
        if (tc->gemm(cpu, 1, 0, S, S, S, A.c, S, B.c, S, Cm.c, S, 0, pr, err) ||
            tg->gemm(gpu, 1, 0, S, S, S, A.g, S, B.g, S, Cm.g, S, 0, pr, err))
            fail_line("gemm", "512^3", err);
        else
            pair_cmp("gemm", prec ? "bf16 ta 512^3" : "f32 ta 512^3", &Cm, 1e-5);
    }
    pair_free(&A), pair_free(&B), pair_free(&Cm);
}

static void check_train_rmsnorm(void) {
    const pz_train_ops *tc = cpu->train, *tg = gpu->train;
    const int M = 300, n = 200;  // more rows than one dw chunk
    for (int nan_row = 0; nan_row < 2; nan_row++) {
        float *xh = randn((size_t)M * n, 1);
        if (nan_row) xh[(size_t)7 * n + 3] = NAN;
        pair x = pair_of(xh, (size_t)M * n), w = pair_rand(n, 1), y = pair_nan((size_t)M * n);
        pair rs = pair_nan(M), dy = pair_rand((size_t)M * n, 1), dx = pair_rand((size_t)M * n, 1);
        pair dw = pair_rand(n, 1);
        free(xh);
        const char *cas = nan_row ? "NaN in row 7" : "300 x 200";
        tc->rmsnorm_fwd(cpu, y.c, rs.c, x.c, w.c, M, n, 1e-5f);
        tg->rmsnorm_fwd(gpu, y.g, rs.g, x.g, w.g, M, n, 1e-5f);
        pair_cmp("rmsnorm_f", cas, &y, 1e-6);
        pair_cmp("rmsnorm_f", "rstd", &rs, 1e-6);
        tc->rmsnorm_bwd(cpu, dx.c, 1, dw.c, dy.c, x.c, w.c, rs.c, M, n);
        tg->rmsnorm_bwd(gpu, dx.g, 1, dw.g, dy.g, x.g, w.g, rs.g, M, n);
        pair_cmp("rmsnorm_b", cas, &dx, 1e-6);
        pair_cmp("rmsnorm_b", "dw", &dw, 1e-6);
        pair *all[] = {&x, &w, &y, &rs, &dy, &dx, &dw};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pair_free(all[i]);
    }
}

// The attention forward with a NaN in token t_nan of sequence 1 (two
// sequences of T rows of H): the CPU's tiled products multiply the masked
// (zero) probabilities by the NaN key's values, so all of sequence 1 comes
// out NaN there, while causally only tokens >= t_nan are reached. So:
// sequence 0 against the CPU; on the GPU, sequence 1's tokens before t_nan
// finite and the others NaN.
static int nan_rows_ok(const pair *y, int T, int H, int t_nan, const char *cas, double bound) {
    float *h = xmalloc(y->n * sizeof(float));
    int ok = 0;
    if (!down(h, y->g, y->n * sizeof(float), "attn_fwd")) {
        ok = compare("attn_fwd", cas, h, y->c, (size_t)T * H, bound);
        size_t bad = 0;
        for (int t = 0; t < T; t++)
            for (int i = 0; i < H; i++) bad += (t < t_nan) == isnan(h[(size_t)(T + t) * H + i]);
        printf("%s  %-10s %-34s sequence 1: %zu elements break causality (NaN before token %d, or "
               "finite after)\n", bad ? "FAIL" : "ok  ", "attn_fwd", "NaN reaches later tokens only", bad, t_nan);
        bad ? n_fail++ : n_pass++;
        ok = ok && !bad;
    }
    free(h);
    return ok;
}

// Both blocks' weights as pairs: the CPU side in a pz_*_w of host pointers,
// the GPU side of device pointers.
static void check_train_attn(int n_head, int n_kv, int hd, int n_seq, int T, pz_dt prec, int nan_x) {
    const pz_train_ops *tc = cpu->train, *tg = gpu->train;
    const int H = 64, M = n_seq * T, nq = n_head * hd, nkv = n_kv * hd;
    pz_attn_block_cfg cfg = {H, n_head, n_kv, hd, 1e-5f, 1, prec};
    char cas[80];
    snprintf(cas, sizeof cas, "%dh/%dkv x%d, %dx%d %s%s", n_head, n_kv, hd, n_seq, T, pz_dt_name(prec),
             nan_x ? " NaN" : "");
    float s = 1.0f / sqrtf((float)H);
    pair norm = pair_rand(H, 1), wq = pair_rand((size_t)nq * H, s), wk = pair_rand((size_t)nkv * H, s);
    pair wv = pair_rand((size_t)nkv * H, s), wo = pair_rand((size_t)H * nq, 1.0f / sqrtf((float)nq));
    pair gn = pair_rand(H, 1), gq = pair_rand((size_t)nq * H, 1), gk = pair_rand((size_t)nkv * H, 1);
    pair gv = pair_rand((size_t)nkv * H, 1), go = pair_rand((size_t)H * nq, 1);
    float *xh = randn((size_t)M * H, 1);
    if (nan_x) xh[(size_t)(T + 2) * H + 5] = NAN;  // sequence 1, token 2: reaches its later tokens only
    pair x = pair_of(xh, (size_t)M * H), y = pair_nan((size_t)M * H), dy = pair_rand((size_t)M * H, 1);
    pair dx = pair_nan((size_t)M * H);
    free(xh);
    int32_t *pos = xmalloc(sizeof(int32_t) * M);
    for (int i = 0; i < M; i++) pos[i] = i % T;
    float *inv = xmalloc(sizeof(float) * (size_t)hd / 2);
    for (int i = 0; i < hd / 2; i++) inv[i] = powf(10000.0f, -2.0f * i / hd);
    pz_attn_block_w wc = {norm.c, wq.c, wk.c, wv.c, wo.c}, wg = {norm.g, wq.g, wk.g, wv.g, wo.g};
    pz_attn_block_w dc = {gn.c, gq.c, gk.c, gv.c, go.c}, dg = {gn.g, gq.g, gk.g, gv.g, go.g};
    pz_attn_block_train *sc = tc->attn_block_create(cpu, &cfg, M, err);
    pz_attn_block_train *sg = sc ? tg->attn_block_create(gpu, &cfg, M, err) : NULL;
    double b = prec == PZ_DT_BF16 ? 1e-4 : 2e-5;
    if (!sc || !sg) fail_line("attn_block", cas, err);
    else if (tc->attn_block_fwd(cpu, sc, &wc, x.c, n_seq, T, pos, inv, y.c, err) ||
             tg->attn_block_fwd(gpu, sg, &wg, x.g, n_seq, T, pos, inv, y.g, err))
        fail_line("attn_fwd", cas, err);
    else if ((nan_x ? nan_rows_ok(&y, T, H, 2, cas, b) : pair_cmp("attn_fwd", cas, &y, b)) &&
             (tc->attn_block_bwd(cpu, sc, &wc, &dc, x.c, dy.c, dx.c, err) ||
              tg->attn_block_bwd(gpu, sg, &wg, &dg, x.g, dy.g, dx.g, err)))
        fail_line("attn_bwd", cas, err);
    else {
        pair_cmp("attn_bwd", "dx", &dx, b);
        pair_cmp("attn_bwd", "d norm", &gn, b);
        pair_cmp("attn_bwd", "d wq", &gq, b);
        pair_cmp("attn_bwd", "d wk", &gk, b);
        pair_cmp("attn_bwd", "d wv", &gv, b);
        pair_cmp("attn_bwd", "d wo", &go, b);
    }
    if (sc) tc->attn_block_free(cpu, sc);
    if (sg) tg->attn_block_free(gpu, sg);
    pair *all[] = {&norm, &wq, &wk, &wv, &wo, &gn, &gq, &gk, &gv, &go, &x, &y, &dy, &dx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pair_free(all[i]);
    free(pos), free(inv);
}

static void check_train_ffn(int M, int F, pz_dt prec) {
    const pz_train_ops *tc = cpu->train, *tg = gpu->train;
    const int H = 64;
    pz_ffn_block_cfg cfg = {H, F, 1e-5f, 1, prec};
    char cas[64];
    snprintf(cas, sizeof cas, "%d rows, ff %d, %s", M, F, pz_dt_name(prec));
    pair norm = pair_rand(H, 1), wg_ = pair_rand((size_t)F * H, 0.125f), wu = pair_rand((size_t)F * H, 0.125f);
    pair wd = pair_rand((size_t)H * F, 1.0f / sqrtf((float)F));
    pair gn = pair_rand(H, 1), gg = pair_rand((size_t)F * H, 1), gu = pair_rand((size_t)F * H, 1);
    pair gd = pair_rand((size_t)H * F, 1);
    pair x = pair_rand((size_t)M * H, 1), y = pair_nan((size_t)M * H), dy = pair_rand((size_t)M * H, 1);
    pair dx = pair_nan((size_t)M * H);
    pz_ffn_block_w wc = {norm.c, wg_.c, wu.c, wd.c}, wgp = {norm.g, wg_.g, wu.g, wd.g};
    pz_ffn_block_w dc = {gn.c, gg.c, gu.c, gd.c}, dgp = {gn.g, gg.g, gu.g, gd.g};
    pz_ffn_block_train *sc = tc->ffn_block_create(cpu, &cfg, M, err);
    pz_ffn_block_train *sg = sc ? tg->ffn_block_create(gpu, &cfg, M, err) : NULL;
    double b = prec == PZ_DT_BF16 ? 1e-4 : 2e-5;
    if (!sc || !sg) fail_line("ffn_block", cas, err);
    else if (tc->ffn_block_fwd(cpu, sc, &wc, x.c, M, y.c, err) || tg->ffn_block_fwd(gpu, sg, &wgp, x.g, M, y.g, err))
        fail_line("ffn_fwd", cas, err);
    else if (pair_cmp("ffn_fwd", cas, &y, b) &&
             (tc->ffn_block_bwd(cpu, sc, &wc, &dc, x.c, dy.c, dx.c, err) ||
              tg->ffn_block_bwd(gpu, sg, &wgp, &dgp, x.g, dy.g, dx.g, err)))
        fail_line("ffn_bwd", cas, err);
    else {
        pair_cmp("ffn_bwd", "dx", &dx, b);
        pair_cmp("ffn_bwd", "d norm", &gn, b);
        pair_cmp("ffn_bwd", "d gate", &gg, b);
        pair_cmp("ffn_bwd", "d up", &gu, b);
        pair_cmp("ffn_bwd", "d down", &gd, b);
    }
    if (sc) tc->ffn_block_free(cpu, sc);
    if (sg) tg->ffn_block_free(gpu, sg);
    pair *all[] = {&norm, &wg_, &wu, &wd, &gn, &gg, &gu, &gd, &x, &y, &dy, &dx};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pair_free(all[i]);
}

// Finite differences on the GPU alone: L = Σ y ⊙ r, so dL/dx is the
// backward of dy = r; the directional derivative along a random v (of x,
// and of one weight) against (L(+εv) − L(−εv)) / 2ε, in double on the host.
static double dot_dev(const float *d, const float *h, size_t n) {
    float *t = xmalloc(n * sizeof(float));
    double s = NAN;
    if (!down(t, d, n * sizeof(float), "fd")) {
        s = 0;
        for (size_t i = 0; i < n; i++) s += (double)t[i] * h[i];
    }
    free(t);
    return s;
}

static void fd_line(const char *what, double an, double fd) {
    double e = fabs(an - fd) / (fabs(fd) > 1e-3 ? fabs(fd) : 1e-3);
    int ok = e < 3e-2;
    printf("%s  %-10s %-34s analytic %.5e, finite difference %.5e (rel %.1e)\n", ok ? "ok  " : "FAIL", "fd",
           what, an, fd, e);
    if (ok) n_pass++;
    else n_fail++;
}

static void check_train_fd(void) {
    const pz_train_ops *tg = gpu->train;
    const int H = 48, T = 12, nh = 4, nkv = 2, hd = 12, M = 2 * T, F = 80;
    const float eps = 1e-2f;
    float *r = randn((size_t)M * H, 1), *v = randn((size_t)M * H, 1), *xh = randn((size_t)M * H, 1);
    float *d_r = up(r, sizeof(float) * M * H), *y = gpu->alloc(gpu, sizeof(float) * M * H);
    float *dx = gpu->alloc(gpu, sizeof(float) * M * H), *xp = gpu->alloc(gpu, sizeof(float) * M * H);
    float *xpl = xmalloc(sizeof(float) * M * H);
    int32_t pos[2 * 12];
    for (int i = 0; i < M; i++) pos[i] = i % T;
    float inv[6];
    for (int i = 0; i < hd / 2; i++) inv[i] = powf(10000.0f, -2.0f * i / hd);
    for (int blk = 0; blk < 2; blk++) {
        // attention (blk 0) or SwiGLU (blk 1), fp32, residual off.
        pz_attn_block_cfg ac = {H, nh, nkv, hd, 1e-5f, 0, PZ_DT_F32};
        pz_ffn_block_cfg fc = {H, F, 1e-5f, 0, PZ_DT_F32};
        float *wq = randn((size_t)nh * hd * H, 0.3f), *wk = randn((size_t)nkv * hd * H, 0.3f);
        float *wv = randn((size_t)nkv * hd * H, 0.3f), *wo = randn((size_t)H * nh * hd, 0.3f);
        float *nw = randn(H, 1), *g = randn((size_t)F * H, 0.15f), *u = randn((size_t)F * H, 0.15f);
        float *dn = randn((size_t)H * F, 0.1f);
        pz_attn_block_w aw = {up(nw, 4 * H), up(wq, 4 * (size_t)nh * hd * H), up(wk, 4 * (size_t)nkv * hd * H),
                              up(wv, 4 * (size_t)nkv * hd * H), up(wo, 4 * (size_t)H * nh * hd)};
        pz_ffn_block_w fw = {aw.norm, up(g, 4 * (size_t)F * H), up(u, 4 * (size_t)F * H), up(dn, 4 * (size_t)H * F)};
        size_t nwq = (size_t)nh * hd * H, nwg = (size_t)F * H;
        float *gwq = gpu->alloc(gpu, 4 * nwq), *gwg = gpu->alloc(gpu, 4 * nwg);
        float *zero = calloc(nwq > nwg ? nwq : nwg, 4);
        pz_attn_block_w adw = {gpu->alloc(gpu, 4 * H), gwq, gpu->alloc(gpu, 4 * (size_t)nkv * hd * H),
                               gpu->alloc(gpu, 4 * (size_t)nkv * hd * H), gpu->alloc(gpu, 4 * (size_t)H * nh * hd)};
        pz_ffn_block_w fdw = {adw.norm, gwg, gpu->alloc(gpu, 4 * nwg), gpu->alloc(gpu, 4 * (size_t)H * F)};
        pz_attn_block_train *as = blk == 0 ? tg->attn_block_create(gpu, &ac, M, err) : NULL;
        pz_ffn_block_train *fs = blk == 1 ? tg->ffn_block_create(gpu, &fc, M, err) : NULL;
        const char *name = blk ? "ffn block" : "attn block";
        if ((blk == 0 && !as) || (blk == 1 && !fs)) {
            fail_line("fd", name, err);
            continue;
        }
        // L(x') for x' = x + t·v (host), weights as given.
        double an_x = NAN, an_w = NAN, L[2] = {0, 0}, Lw[2] = {0, 0};
        int ok = 1;
        for (int k = -1; k <= 1 && ok; k++) {
            for (size_t i = 0; i < (size_t)M * H; i++) xpl[i] = xh[i] + k * eps * v[i];
            ok = !gpu->copy(gpu, xp, xpl, sizeof(float) * M * H, PZ_COPY_H2D, err);
            if (ok) ok = blk == 0 ? !tg->attn_block_fwd(gpu, as, &aw, xp, 2, T, pos, inv, y, err)
                                  : !tg->ffn_block_fwd(gpu, fs, &fw, xp, M, y, err);
            if (!ok) break;
            double l = dot_dev(y, r, (size_t)M * H);
            if (k) L[k > 0] = l;
            else {  // the backward at x: dx and the first weight's gradient
                gpu->copy(gpu, gwq, zero, 4 * nwq, PZ_COPY_H2D, err);
                gpu->copy(gpu, gwg, zero, 4 * nwg, PZ_COPY_H2D, err);
                ok = blk == 0 ? !tg->attn_block_bwd(gpu, as, &aw, &adw, xp, d_r, dx, err)
                              : !tg->ffn_block_bwd(gpu, fs, &fw, &fdw, xp, d_r, dx, err);
                if (ok) an_x = dot_dev(dx, v, (size_t)M * H);
            }
        }
        // Along a direction of wq (attn) or w_gate (ffn).
        size_t nw1 = blk ? nwg : nwq;
        float *w1 = blk ? g : wq, *w1d = blk ? fw.gate : aw.wq, *wpert = xmalloc(4 * nw1);
        float *vw = randn(nw1, 1);
        if (ok) {
            for (int k = -1; k <= 1 && ok; k += 2) {
                for (size_t i = 0; i < nw1; i++) wpert[i] = w1[i] + k * eps * vw[i];
                ok = !gpu->copy(gpu, w1d, wpert, 4 * nw1, PZ_COPY_H2D, err) &&
                     !gpu->copy(gpu, xp, xh, sizeof(float) * M * H, PZ_COPY_H2D, err);
                if (ok) ok = blk == 0 ? !tg->attn_block_fwd(gpu, as, &aw, xp, 2, T, pos, inv, y, err)
                                      : !tg->ffn_block_fwd(gpu, fs, &fw, xp, M, y, err);
                if (ok) Lw[k > 0] = dot_dev(y, r, (size_t)M * H);
            }
            an_w = dot_dev(blk ? gwg : gwq, vw, nw1);
        }
        char what[64];
        if (!ok) fail_line("fd", name, err);
        else {
            snprintf(what, sizeof what, "%s, along x", name);
            fd_line(what, an_x, (L[1] - L[0]) / (2 * eps));
            snprintf(what, sizeof what, "%s, along %s", name, blk ? "w_gate" : "wq");
            fd_line(what, an_w, (Lw[1] - Lw[0]) / (2 * eps));
        }
        if (as) tg->attn_block_free(gpu, as);
        if (fs) tg->ffn_block_free(gpu, fs);
        void *dev[] = {aw.norm, aw.wq, aw.wk, aw.wv, aw.wo, fw.gate, fw.up, fw.down, adw.norm, adw.wq, adw.wk,
                       adw.wv, adw.wo, fdw.up, fdw.down, gwg};
        for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) gpu->free(gpu, dev[i]);
        free(wq), free(wk), free(wv), free(wo), free(nw), free(g), free(u), free(dn), free(zero), free(wpert),
            free(vw);
    }
    gpu->free(gpu, d_r), gpu->free(gpu, y), gpu->free(gpu, dx), gpu->free(gpu, xp);
    free(r), free(v), free(xh), free(xpl);
}

static void check_train_optim(void) {
    const pz_train_ops *tc = cpu->train, *tg = gpu->train;
    const size_t ns[3] = {100000, 777, 40000};
    pair p[3], g[3], m[3], v[3];
    pz_adamw_tensor T_c[3], T_g[3];
    for (int i = 0; i < 3; i++) {
        p[i] = pair_rand(ns[i], 1), g[i] = pair_rand(ns[i], 0.01f);
        float *z = calloc(ns[i], 4);
        m[i] = pair_of(z, ns[i]), v[i] = pair_of(z, ns[i]);
        free(z);
        T_c[i] = (pz_adamw_tensor){p[i].c, g[i].c, m[i].c, v[i].c, ns[i], i != 1};
        T_g[i] = (pz_adamw_tensor){p[i].g, g[i].g, m[i].g, v[i].g, ns[i], i != 1};
    }
    pz_adamw_params hp = pz_adamw_default_params();
    hp.clip_norm = 1.0f;  // the norm is ~3.7: clipping applies
    for (long step = 1; step <= 2; step++) {
        double nc = tc->adamw_step(cpu, T_c, 3, step, 1e-3f, &hp), ng = tg->adamw_step(gpu, T_g, 3, step, 1e-3f, &hp);
        char cas[48];
        snprintf(cas, sizeof cas, "step %ld: norm %.6f vs %.6f", step, ng, nc);
        int ok = fabs(nc - ng) <= 1e-9 * fabs(nc) + 1e-12;
        printf("%s  %-10s %s\n", ok ? "ok  " : "FAIL", "adamw", cas);
        ok ? n_pass++ : n_fail++;
        for (int i = 0; i < 3; i++) {
            pair_cmp("adamw", "p", &p[i], 1e-6);
            pair_cmp("adamw", "g (clipped)", &g[i], 1e-6);
            pair_cmp("adamw", "m", &m[i], 1e-6);
            pair_cmp("adamw", "v", &v[i], 1e-6);
        }
    }
    for (int i = 0; i < 3; i++) pair_free(&p[i]), pair_free(&g[i]), pair_free(&m[i]), pair_free(&v[i]);
    // Losses, with their gradients.
    const int rows = 300, cols = 96;
    pair t = pair_rand((size_t)rows * cols, 1), y = pair_rand((size_t)rows * cols, 1);
    pair d = pair_nan((size_t)rows * cols);
    double lc = tc->nmse_loss(cpu, t.c, y.c, (size_t)rows * cols, d.c, 0.5f);
    double lg = tg->nmse_loss(gpu, t.g, y.g, (size_t)rows * cols, d.g, 0.5f);
    int ok = fabs(lc - lg) <= 1e-9 * fabs(lc);
    printf("%s  %-10s nmse %.9f vs %.9f\n", ok ? "ok  " : "FAIL", "loss", lg, lc);
    ok ? n_pass++ : n_fail++;
    pair_cmp("loss", "nmse gradient", &d, 1e-6);
    lc = tc->token_nmse_loss(cpu, t.c, y.c, rows, cols, 1e-6f, d.c, 0.5f);
    lg = tg->token_nmse_loss(gpu, t.g, y.g, rows, cols, 1e-6f, d.g, 0.5f);
    ok = fabs(lc - lg) <= 1e-9 * fabs(lc);
    printf("%s  %-10s token nmse %.9f vs %.9f\n", ok ? "ok  " : "FAIL", "loss", lg, lc);
    ok ? n_pass++ : n_fail++;
    pair_cmp("loss", "token nmse gradient", &d, 1e-6);
    pair_free(&t), pair_free(&y), pair_free(&d);
}

// Global distillation's losses: cosine over 3 matrices with padded rows (a
// zero child row among them), KL over the real vocabulary, separate and in place.
static void check_train_kd(void) {
    const pz_train_ops *tc = cpu->train, *tg = gpu->train;
    if (!tg->cosine_loss || !tg->kl_loss) {
        fail_line("loss", "distillation losses", "the CUDA backend has no cosine or KL loss");
        return;
    }
    const int L = 3, rows = 37, max_rows = 40, H = 96, V = 49152, R = 17;
    const size_t stride = (size_t)max_rows * H, n = L * stride;
    float *hc = randn(n, 1), *ht = randn(n, 1);
    for (size_t i = 0; i < n; i++) hc[i] = 0.7f * ht[i] + 0.3f * hc[i];
    memset(hc + stride + 5 * H, 0, H * sizeof(float));
    pair t = pair_of(ht, n), c = pair_of(hc, n), d = pair_nan(n);
    free(hc), free(ht);
    double lc = tc->cosine_loss(cpu, t.c, c.c, L, stride, rows, H, d.c, 0.25);
    double lg = tg->cosine_loss(gpu, t.g, c.g, L, stride, rows, H, d.g, 0.25);
    int ok = fabs(lc - lg) <= 1e-9 * fabs(lc);
    printf("%s  %-10s cosine %.9f vs %.9f\n", ok ? "ok  " : "FAIL", "loss", lg, lc);
    ok ? n_pass++ : n_fail++;
    pair_cmp("loss", "cosine gradient", &d, 1e-6);
    pair_free(&t), pair_free(&c), pair_free(&d);

    float *hp = randn((size_t)R * V, 3), *hq = randn((size_t)R * V, 3);
    for (size_t i = 0; i < (size_t)R * V; i++) hq[i] = 0.8f * hp[i] + 0.6f * hq[i];
    pair pp = pair_of(hp, (size_t)R * V), q = pair_of(hq, (size_t)R * V), dq = pair_nan((size_t)R * V);
    free(hp), free(hq);
    lc = tc->kl_loss(cpu, pp.c, q.c, R, V, dq.c, 0.5);
    lg = tg->kl_loss(gpu, pp.g, q.g, R, V, dq.g, 0.5);
    ok = fabs(lc - lg) <= 1e-9 * fabs(lc);
    printf("%s  %-10s KL %.9f vs %.9f\n", ok ? "ok  " : "FAIL", "loss", lg, lc);
    ok ? n_pass++ : n_fail++;
    pair_cmp("loss", "KL gradient", &dq, 1e-6);
    // In place (distill/ passes the child's logits as d_child); no gradient gives the same sum.
    double l2c = tc->kl_loss(cpu, pp.c, q.c, R, V, NULL, 0.5), l2g = tg->kl_loss(gpu, pp.g, q.g, R, V, NULL, 0.5);
    lc = tc->kl_loss(cpu, pp.c, q.c, R, V, q.c, 0.5);
    lg = tg->kl_loss(gpu, pp.g, q.g, R, V, q.g, 0.5);
    ok = lc == l2c && lg == l2g && fabs(lc - lg) <= 1e-9 * fabs(lc);
    printf("%s  %-10s KL in place %.9f vs %.9f\n", ok ? "ok  " : "FAIL", "loss", lg, lc);
    ok ? n_pass++ : n_fail++;
    pair_cmp("loss", "KL gradient in place", &q, 1e-6);
    pair_free(&pp), pair_free(&q), pair_free(&dq);
}

static void check_train(int quick) {
    if (!gpu->train || !gpu->supports(gpu, PZ_OP_TRAIN, PZ_DT_BF16)) {
        fail_line("train", "ops table", "the CUDA backend has no training ops");
        return;
    }
    check_train_gemm();
    check_train_rmsnorm();
    for (int pr = 0; pr < 2; pr++) {
        pz_dt p = pr ? PZ_DT_BF16 : PZ_DT_F32;
        check_train_attn(4, 2, 16, 2, 37, p, 0);
        check_train_ffn(75, 96, p);
    }
    check_train_attn(4, 2, 16, 2, 37, PZ_DT_F32, 1);
    check_train_kd();
    check_train_attn(6, 6, 80, 1, 50, PZ_DT_F32, 0);  // head_dim not a multiple of 32
    if (!quick) {
        check_train_attn(8, 2, 64, 2, 200, PZ_DT_F32, 0);
        check_train_attn(2, 1, 256, 1, 64, PZ_DT_F32, 0);
        check_train_ffn(1000, 512, PZ_DT_BF16);
    }
    check_train_fd();
    check_train_optim();
}

// ---- timing ---------------------------------------------------------------------------
static double gemm_tflops(pz_dt wt, int S) {
    size_t we = (size_t)S * S;
    void *hw = xmalloc(we * pz_dt_size(wt));
    uint64_t st = rng;
    for (size_t i = 0; i < we * pz_dt_size(wt); i++) {
        uint8_t b = (uint8_t)pz_test_rand_u64(&st);
        if (wt == PZ_DT_E4M3) b &= 0xb7;  // keep magnitudes small, never the NaN code
        if (wt == PZ_DT_BF16 && i % 2) b = (b & 0x80) | 0x3c;  // high byte: sign, exponent near 1
        ((uint8_t *)hw)[i] = b;
    }
    float *hx = randn((size_t)S * S, 1);
    void *dw = up(hw, we * pz_dt_size(wt));
    float *dx = up(hx, (size_t)S * S * 4), *dy = gpu->alloc(gpu, (size_t)S * S * 4);
    free(hw), free(hx);
    pz_weight w = {.data = dw, .type = wt, .rows = S, .cols = S, .ld = S, .scale = 0.01f};
    double tf = -1;
    cudaStream_t s = (cudaStream_t)pz_cuda_stream(gpu);
    cudaEvent_t a, b;
    cudaEventCreate(&a), cudaEventCreate(&b);
    pz_dt xt = wt == PZ_DT_E4M3 ? PZ_DT_E4M3 : PZ_DT_F32;
    if (!dy || gpu->prepare_weight(gpu, &w, err)) goto out;
    for (int i = 0; i < 3; i++) gpu->matmul(gpu, dy, S, dx, S, xt, &w, S, 0, err);  // warm-up and algorithm trial
    if (gpu->synchronize(gpu, err)) goto out;
    const int reps = 10;
    cudaEventRecord(a, s);
    for (int i = 0; i < reps; i++) gpu->matmul(gpu, dy, S, dx, S, xt, &w, S, 0, err);
    cudaEventRecord(b, s);
    if (gpu->synchronize(gpu, err)) goto out;
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    tf = 2.0 * S * S * (double)S * reps / (ms * 1e-3) / 1e12;
out:
    if (tf < 0) printf("FAIL  timing     %s %d^3: %s\n", pz_dt_name(wt), S, err), n_fail++;
    gpu->release_weight(gpu, &w);
    cudaEventDestroy(a), cudaEventDestroy(b);
    gpu->free(gpu, dw), gpu->free(gpu, dx), gpu->free(gpu, dy);
    return tf;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

// A SmolLM2-135M-shaped model with random bf16 weights: prefill tokens/s
// and batch-1 decode step time on the GPU, with the engine's decode graphs
// on or off.
static void time_engine(int graphs, double *prefill_tps, double *decode_ms, double *weight_gb) {
    pz_config c;
    pz_testmodel_config(&c, 2);  // then reshape to the parent's dimensions
    c.n_layer = 30, c.hidden = 576, c.n_head = 9, c.head_dim = 64, c.vocab = 49152, c.max_ctx = 2048;
    c.rope_theta = 100000, c.tie_embeddings = 1;
    for (int l = 0; l < c.n_layer; l++) c.layers[l] = (pz_layer_spec){PZ_ATTN_GQA, 3, PZ_FFN_SWIGLU, 1536};
    *prefill_tps = *decode_ms = -1;
    pz_model *m = pz_testmodel_random(&c, PZ_DT_BF16, 5, err);
    if (!m) {
        printf("FAIL  timing     engine model: %s\n", err), n_fail++;
        return;
    }
    *weight_gb = pz_model_weight_bytes(m) / 1e9;
    pz_engine_params p = pz_engine_default_params();
    p.backend = PZ_BACKEND_CUDA, p.n_slots = 1, p.max_ctx = 1024, p.max_batch = 512;
    p.graphs = graphs;
    pz_engine *e = pz_engine_create(m, p, err);
    int32_t *tok = xmalloc(sizeof(int32_t) * 512);
    for (int i = 0; i < 512; i++) tok[i] = (int32_t)(pz_test_rand_u64(&rng) % 49152);
    float *logits = xmalloc(49152 * 4);
    if (!e) goto fail;
    if (pz_engine_prefill(e, 0, tok, 512, logits, 0, err)) goto fail;  // warm-up
    pz_engine_slot_reset(e, 0);
    double t0 = now_s();
    if (pz_engine_prefill(e, 0, tok, 512, logits, 0, err)) goto fail;
    *prefill_tps = 512 / (now_s() - t0);
    int slot = 0;
    for (int i = 0; i < 3; i++)  // with graphs: warm-up, capture, first replay
        if (pz_engine_decode(e, &slot, tok + i, 1, logits, err)) goto fail;
    t0 = now_s();
    const int steps = 50;
    for (int i = 0; i < steps; i++)
        if (pz_engine_decode(e, &slot, tok + i, 1, logits, err)) goto fail;
    *decode_ms = (now_s() - t0) / steps * 1e3;
    pz_graph_stats gs;
    pz_engine_graph_stats(e, &gs);
    if (graphs && (gs.broken || gs.eager_steps)) {
        printf("FAIL  timing     decode graphs: %d broke, %lld eager steps\n", gs.broken, gs.eager_steps);
        n_fail++;
    }
    goto done;
fail:
    printf("FAIL  timing     engine: %s\n", err), n_fail++;
done:
    free(tok), free(logits);
    pz_engine_free(e);
    pz_model_free(m);
}

int main(int argc, char **argv) {
    int quick = 0;
    rng = (uint64_t)time(NULL) * 2654435761u;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) rng = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
    }
    printf("check_ops: seed %llu\n", (unsigned long long)rng);
    gpu = pz_backend_create(PZ_BACKEND_CUDA, 0, err);
    if (!gpu) {
        printf("check_ops: no GPU to check: %s\n", err);
        return 77;
    }
    cpu = pz_backend_create(PZ_BACKEND_CPU, 0, err);
    if (!cpu) {
        printf("check_ops: cpu backend: %s\n", err);
        return 2;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, pz_cuda_device(gpu));
    printf("device %d: %s, sm_%d%d, %d SMs, %.1f GiB\n", pz_cuda_device(gpu), prop.name, prop.major, prop.minor,
           prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);

    check_embed();
    check_pointwise();
    check_matmul(quick);
    check_argmax();
    check_graph();
    const pz_dt kts[3] = {PZ_DT_F32, PZ_DT_BF16, PZ_DT_E4M3};
    for (int t = 0; t < 3; t++) {
        check_attention_case(kts[t], 9, 3, 64, 0);
        check_attention_case(kts[t], 8, 8, 128, 0);
    }
    check_attention_case(PZ_DT_F32, 9, 3, 64, 1);
    check_attention_case(PZ_DT_F32, 4, 1, 256, 0);
    check_attention_rowmajor();
    for (int v = 0; v < PZ_TESTMODEL_VARIANTS; v++) {
        check_engine(v, PZ_DT_F32, PZ_DT_F32);
        check_engine(v, PZ_DT_BF16, PZ_DT_F32);
    }
    check_engine(0, PZ_DT_F32, PZ_DT_BF16);  // KV pages in bf16 and e4m3 on both backends
    check_engine(0, PZ_DT_F32, PZ_DT_E4M3);
    check_engine(2, PZ_DT_E4M3, PZ_DT_F32);  // FP8 weights, fp32 activations (exact on both)
    check_train(quick);
    printf("\nchecks: %d passed, %d failed\n", n_pass, n_fail);

    // Timing (not assertions). Data-sheet dense peaks of the H100/H200 SXM:
    // bf16 989 TFLOP/s, FP8 1979 TFLOP/s.
    printf("\ntiming (one run; through the backend's matmul, activation conversion included)\n");
    int S = quick ? 4096 : 8192;
    double bf = gemm_tflops(PZ_DT_BF16, S), f8 = gemm_tflops(PZ_DT_E4M3, S);
    printf("| product | shape | TFLOP/s | of H100/H200 SXM dense peak |\n|---|---|---|---|\n");
    printf("| cuBLASLt bf16 | %d^3 | %.0f | %.0f %% of 989 |\n", S, bf, bf / 9.89);
    printf("| cuBLASLt FP8 e4m3 | %d^3 | %.0f | %.0f %% of 1979 |\n", S, f8, f8 / 19.79);
    double ptps, dms, gptps, gdms, wgb = 0;
    time_engine(0, &ptps, &dms, &wgb);
    time_engine(1, &gptps, &gdms, &wgb);
    int clk_khz = 0, bus_bits = 0;  // the peak memory bandwidth: bus bytes x 2 transfers per clock
    cudaDeviceGetAttribute(&clk_khz, cudaDevAttrMemoryClockRate, pz_cuda_device(gpu));
    cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, pz_cuda_device(gpu));
    double bw_gbs = bus_bits / 8.0 * clk_khz * 2e3 / 1e9;
    double floor_ms = bw_gbs > 0 ? wgb / bw_gbs * 1e3 : -1;
    printf("| engine (SmolLM2-135M shape, random bf16, %.2f GB weights) | value |\n|---|---|\n", wgb);
    printf("| prefill, 512 tokens | %.0f tokens/s |\n", ptps);
    printf("| decode step, batch 1, no CUDA graph | %.3f ms (weight bytes at the %.0f GB/s peak: %.3f ms) |\n",
           dms, bw_gbs, floor_ms);
    printf("| decode step, batch 1, CUDA graph (engine bucket 1) | %.3f ms (%.2fx the eager step) |\n",
           gdms, gdms > 0 ? dms / gdms : 0);
    pz_backend_free(cpu);
    pz_backend_free(gpu);
    return n_fail ? 1 : 0;
}
