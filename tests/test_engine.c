// test_engine.c — the engine against a naive forward pass in double
// precision written here independently (plain loops over the whole
// sequence, full softmax, no cache), on random heterogeneous test models:
// prefill (every position's logits, with and without chunking),
// token-by-token decode, prefill then decode, and batched decode of several
// slots at different lengths (equal to each slot run alone). Also the
// DeciLM round trip (save, load, identical logits), bf16 weights, the
// error paths, and the sampler.
#include "testutil.h"
#include "testmodel.h"
#include "common.h"
#include "engine.h"
#include "sampler.h"
#include "tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5  // fp32 engine vs double reference: max|a-b| / max|b| over logits

static char err[PZ_ERRLEN];

// ---- reference forward ---------------------------------------------------------
static double wget(const pz_mat *w, int r, int c) {
    size_t i = (size_t)r * w->cols + c;
    if (w->type == PZ_DT_F32) return ((const float *)w->data)[i];
    return pz_bf16_to_f32(((const uint16_t *)w->data)[i]);
}

// y[T][N] = x[T][K] · W^T
static void ref_linear(const pz_mat *w, const double *x, int T, double *y) {
    for (int t = 0; t < T; t++)
        for (int n = 0; n < w->rows; n++) {
            double s = 0;
            for (int k = 0; k < w->cols; k++) s += x[(size_t)t * w->cols + k] * wget(w, n, k);
            y[(size_t)t * w->rows + n] = s;
        }
}

static void ref_norm(const double *x, const float *w, int T, int H, double eps, double *y) {
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < H; i++) ss += x[t * H + i] * x[t * H + i];
        double r = 1.0 / sqrt(ss / H + eps);
        for (int i = 0; i < H; i++) y[t * H + i] = x[t * H + i] * r * w[i];
    }
}

static double ref_inv_freq(const pz_config *c, int i) {
    double f = 1.0 / pow(c->rope_theta, (2.0 * i) / c->head_dim);
    if (c->rope_scaling == PZ_ROPE_SCALING_LLAMA3) {
        double wavelen = 2 * M_PI / f;
        double lo = c->rope_orig_ctx / c->rope_low_freq_factor, hi = c->rope_orig_ctx / c->rope_high_freq_factor;
        if (wavelen > lo) return f / c->rope_factor;
        if (wavelen < hi) return f;
        double sm = (c->rope_orig_ctx / wavelen - c->rope_low_freq_factor) /
                    (c->rope_high_freq_factor - c->rope_low_freq_factor);
        return (1 - sm) * f / c->rope_factor + sm * f;
    }
    return f;
}

static void ref_rope(const pz_config *c, double *x, int T, int nheads, int ld) {
    int d = c->head_dim, half = d / 2;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nheads; h++) {
            double *v = x + (size_t)t * ld + h * d;
            for (int i = 0; i < half; i++) {
                double a = t * ref_inv_freq(c, i), x0 = v[i], x1 = v[i + half];
                v[i] = x0 * cos(a) - x1 * sin(a);
                v[i + half] = x1 * cos(a) + x0 * sin(a);
            }
        }
}

// logits: (T, vocab), for tokens at positions 0..T-1.
static void ref_forward(const pz_model *m, const int32_t *tok, int T, double *logits) {
    const pz_config *c = &m->cfg;
    int H = c->hidden, d = c->head_dim, nh = c->n_head;
    size_t big = (size_t)T * (H > 1024 ? H : 1024) * 4;
    for (int l = 0; l < c->n_layer; l++)
        if ((size_t)T * c->layers[l].n_ff * 2 > big) big = (size_t)T * c->layers[l].n_ff * 2;
    double *x = calloc((size_t)T * H, 8), *xn = calloc((size_t)T * H, 8), *y = calloc((size_t)T * H, 8);
    double *q = calloc(big, 8), *k = calloc(big, 8), *v = calloc(big, 8), *a = calloc(big, 8);
    double *sc = calloc((size_t)T, 8);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < H; i++) x[t * H + i] = wget(&m->tok_embd, tok[t], i);
    for (int l = 0; l < c->n_layer; l++) {
        const pz_layer_spec *s = &c->layers[l];
        const pz_layer_weights *w = &m->layers[l];
        if (s->attn == PZ_ATTN_GQA) {
            ref_norm(x, w->attn_norm, T, H, c->norm_eps, xn);
            ref_linear(&w->wq, xn, T, q);
            ref_linear(&w->wk, xn, T, k);
            ref_linear(&w->wv, xn, T, v);
            ref_rope(c, q, T, nh, nh * d);
            ref_rope(c, k, T, s->n_kv, s->n_kv * d);
            int group = nh / s->n_kv, kd = s->n_kv * d;
            for (int t = 0; t < T; t++)
                for (int h = 0; h < nh; h++) {
                    int g = h / group;
                    double mx = -1e300, sum = 0;
                    for (int j = 0; j <= t; j++) {
                        double dot = 0;
                        for (int i = 0; i < d; i++) dot += q[(size_t)t * nh * d + h * d + i] * k[(size_t)j * kd + g * d + i];
                        sc[j] = dot / sqrt((double)d);
                        if (sc[j] > mx) mx = sc[j];
                    }
                    for (int j = 0; j <= t; j++) sum += (sc[j] = exp(sc[j] - mx));
                    for (int i = 0; i < d; i++) {
                        double acc = 0;
                        for (int j = 0; j <= t; j++) acc += sc[j] * v[(size_t)j * kd + g * d + i];
                        a[(size_t)t * nh * d + h * d + i] = acc / sum;
                    }
                }
            ref_linear(&w->wo, a, T, y);
            for (size_t i = 0; i < (size_t)T * H; i++) x[i] += y[i];
        } else if (s->attn == PZ_ATTN_LINEAR) {
            ref_norm(x, w->attn_norm, T, H, c->norm_eps, xn);
            ref_linear(&w->wo, xn, T, y);
            for (size_t i = 0; i < (size_t)T * H; i++) x[i] += y[i];
        }
        if (s->ffn == PZ_FFN_SWIGLU) {
            ref_norm(x, w->ffn_norm, T, H, c->norm_eps, xn);
            ref_linear(&w->w_gate, xn, T, q);
            ref_linear(&w->w_up, xn, T, k);
            for (size_t i = 0; i < (size_t)T * s->n_ff; i++) q[i] = q[i] / (1 + exp(-q[i])) * k[i];
            ref_linear(&w->w_down, q, T, y);
            for (size_t i = 0; i < (size_t)T * H; i++) x[i] += y[i];
        } else if (s->ffn == PZ_FFN_LINEAR) {
            ref_norm(x, w->ffn_norm, T, H, c->norm_eps, xn);
            ref_linear(&w->w_down, xn, T, y);
            for (size_t i = 0; i < (size_t)T * H; i++) x[i] += y[i];
        }
    }
    ref_norm(x, m->out_norm, T, H, c->norm_eps, xn);
    ref_linear(&m->lm_head, xn, T, logits);
    free(x), free(xn), free(y), free(q), free(k), free(v), free(a), free(sc);
}

// ---- helpers ---------------------------------------------------------------------
static pz_engine *mk_engine(const pz_model *m, int slots, int max_batch) {
    pz_engine_params p = pz_engine_default_params();
    p.n_threads = 2;
    p.n_slots = slots;
    p.max_batch = max_batch;
    p.max_ctx = 64;
    pz_engine *e = pz_engine_create(m, p, err);
    CHECKF(e != NULL, "%s", err);
    return e;
}

static void rand_tokens(int32_t *t, int n, int vocab, uint64_t *rng) {
    for (int i = 0; i < n; i++) t[i] = (int32_t)(pz_test_rand_u64(rng) % (uint64_t)vocab);
}

// Worst relative error of rows [t0, t1) of the engine's logits against
// the reference (each row normalized by its own max).
static double row_err(const float *got, const double *ref, int vocab) {
    return pz_rel_err_fd(got, ref, (size_t)vocab);
}

// ---- the cases -----------------------------------------------------------------------
#define T_MAX 40

static void check_model(const pz_model *m, const char *what, double tol_prefill, double tol_decode) {
    const int V = m->cfg.vocab, T = 29;
    uint64_t rng = 99;
    int32_t tok[T_MAX];
    rand_tokens(tok, T, V, &rng);
    double *ref = malloc(sizeof(double) * T * V);
    float *lg = malloc(sizeof(float) * T * V);
    ref_forward(m, tok, T, ref);

    // 1. prefill of the whole prompt, all positions; unchunked and in chunks of 6.
    for (int mb = 0; mb < 2; mb++) {
        pz_engine *e = mk_engine(m, 1, mb ? 6 : 512);
        if (!e) return;
        CHECKF(pz_engine_prefill(e, 0, tok, T, lg, 1, err) == 0, "%s", err);
        double worst = 0;
        for (int t = 0; t < T; t++) worst = fmax(worst, row_err(lg + (size_t)t * V, ref + (size_t)t * V, V));
        CHECKF(worst <= tol_prefill, "%s prefill (max_batch %d): %.3g", what, mb ? 6 : 512, worst);
        printf("  %-18s prefill %2d tokens (max_batch %3d): max rel err %.2e\n", what, T, mb ? 6 : 512, worst);
        CHECK(pz_engine_slot_len(e, 0) == T);
        // Last-token-only logits equal the last row of all_logits.
        pz_engine_slot_reset(e, 0);
        float *last = malloc(sizeof(float) * V);
        CHECKF(pz_engine_prefill(e, 0, tok, T, last, 0, err) == 0, "%s", err);
        // (The M=1 product takes the decode kernel, the M=29 one the library.)
        CHECK(pz_rel_err_f(last, lg + (size_t)(T - 1) * V, V) <= fmax(1e-6, tol_prefill));
        free(last);
        pz_engine_free(e);
    }
    // 2. token-by-token decode.
    {
        pz_engine *e = mk_engine(m, 1, 512);
        double worst = 0;
        int slot = 0;
        for (int t = 0; t < T; t++) {
            CHECKF(pz_engine_decode(e, &slot, &tok[t], 1, lg, err) == 0, "%s", err);
            worst = fmax(worst, row_err(lg, ref + (size_t)t * V, V));
        }
        CHECKF(worst <= tol_decode, "%s decode: %.3g", what, worst);
        printf("  %-18s decode  %2d tokens one by one:    max rel err %.2e\n", what, T, worst);
        pz_engine_free(e);
    }
    // 3. prefill 11 then decode the rest.
    {
        pz_engine *e = mk_engine(m, 1, 512);
        double worst = 0;
        int slot = 0, P = 11;
        CHECKF(pz_engine_prefill(e, 0, tok, P, lg, 0, err) == 0, "%s", err);
        worst = row_err(lg, ref + (size_t)(P - 1) * V, V);
        for (int t = P; t < T; t++) {
            CHECKF(pz_engine_decode(e, &slot, &tok[t], 1, lg, err) == 0, "%s", err);
            worst = fmax(worst, row_err(lg, ref + (size_t)t * V, V));
        }
        CHECKF(worst <= fmax(tol_prefill, tol_decode), "%s mixed: %.3g", what, worst);
        printf("  %-18s prefill %d + decode %d:          max rel err %.2e\n", what, P, T - P, worst);
        pz_engine_free(e);
    }
    // 4. batched decode of 4 slots at different lengths == each slot alone.
    {
        enum { S = 4, STEPS = 5 };
        int plen[S] = {3, 17, 1, 9};
        int32_t toks[S][T_MAX];
        for (int s = 0; s < S; s++) rand_tokens(toks[s], plen[s] + STEPS, V, &rng);
        pz_engine *e = mk_engine(m, S, 512);
        float *alone = malloc(sizeof(float) * S * STEPS * V), *batch = malloc(sizeof(float) * S * V);
        for (int s = 0; s < S; s++) {  // each alone, in its own engine
            pz_engine *e1 = mk_engine(m, 1, 512);
            int z = 0;
            CHECK(pz_engine_prefill(e1, 0, toks[s], plen[s], NULL, 0, err) == 0);
            for (int i = 0; i < STEPS; i++)
                CHECK(pz_engine_decode(e1, &z, &toks[s][plen[s] + i], 1, alone + ((size_t)s * STEPS + i) * V, err) == 0);
            pz_engine_free(e1);
        }
        // Slots prefilled in a scrambled order, then decoded together, the
        // batch order rotating each step.
        int order[S] = {2, 0, 3, 1};
        for (int i = 0; i < S; i++)
            CHECK(pz_engine_prefill(e, order[i], toks[order[i]], plen[order[i]], NULL, 0, err) == 0);
        double worst = 0, worst_ref = 0;
        for (int i = 0; i < STEPS; i++) {
            int slots[S];
            int32_t tk[S];
            for (int j = 0; j < S; j++) {
                slots[j] = (j + i) % S;
                tk[j] = toks[slots[j]][plen[slots[j]] + i];
            }
            CHECKF(pz_engine_decode(e, slots, tk, S, batch, err) == 0, "%s", err);
            for (int j = 0; j < S; j++)
                worst = fmax(worst, pz_rel_err_f(batch + (size_t)j * V, alone + ((size_t)slots[j] * STEPS + i) * V, V));
        }
        // And one slot's final logits against the reference.
        {
            int s = 1, n = plen[s] + STEPS;
            double *r = malloc(sizeof(double) * n * V);
            ref_forward(m, toks[s], n, r);
            worst_ref = row_err(alone + ((size_t)s * STEPS + STEPS - 1) * V, r + (size_t)(n - 1) * V, V);
            free(r);
        }
        CHECKF(worst <= 1e-6, "%s batched vs alone: %.3g", what, worst);
        // (Slot 1's 17-token prompt took the prefill path.)
        CHECKF(worst_ref <= fmax(tol_prefill, tol_decode), "%s batched slot vs reference: %.3g", what, worst_ref);
        printf("  %-18s batched decode of %d slots: vs alone %.2e, vs reference %.2e\n", what, S, worst, worst_ref);
        for (int s = 0; s < S; s++) CHECK(pz_engine_slot_len(e, s) == plen[s] + STEPS);
        free(alone), free(batch);
        pz_engine_free(e);
    }
    free(ref), free(lg);
}

static void check_errors(const pz_model *m) {
    pz_engine_params p = pz_engine_default_params();
    p.n_threads = 2, p.n_slots = 2, p.max_ctx = 8, p.max_batch = 4;
    pz_engine *e = pz_engine_create(m, p, err);
    CHECKF(e != NULL, "%s", err);
    if (!e) return;
    int32_t tok[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    float *lg = malloc(sizeof(float) * 2 * m->cfg.vocab);
    CHECK(pz_engine_prefill(e, 2, tok, 3, lg, 0, err) == -1 && strstr(err, "slot"));
    CHECK(pz_engine_prefill(e, 0, tok, 9, lg, 0, err) == -1 && strstr(err, "context"));
    int32_t bad[2] = {1, m->cfg.vocab};
    CHECK(pz_engine_prefill(e, 0, bad, 2, lg, 0, err) == -1 && strstr(err, "vocabulary"));
    CHECK(pz_engine_slot_len(e, 0) == 0);  // nothing happened
    CHECK(pz_engine_prefill(e, 0, tok, 8, lg, 0, err) == 0);
    int s0 = 0, dup[2] = {1, 1};
    CHECK(pz_engine_decode(e, &s0, tok, 1, lg, err) == -1 && strstr(err, "context"));
    CHECK(pz_engine_decode(e, dup, tok, 2, lg, err) == -1 && strstr(err, "twice"));
    // KV bytes: 2 (k, v) x slots x max_ctx x n_kv x head_dim x 4 over gqa
    // layers only; the CPU cache rounds positions up to blocks of 16.
    size_t want = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        if (m->cfg.layers[l].attn == PZ_ATTN_GQA)
            want += 2 * 2 * 8 * (size_t)m->cfg.layers[l].n_kv * m->cfg.head_dim * 4;
    CHECKF(pz_engine_kv_bytes(e) >= want && pz_engine_kv_bytes(e) <= 2 * want, "kv bytes %zu, want %zu",
           pz_engine_kv_bytes(e), want);
    free(lg);
    pz_engine_free(e);
}

// pz_argmax (vectorized) against the plain loop's rule: the first index of
// the largest value, a NaN never winning, x[0] winning when it is NaN; ties,
// signed zeros, infinities, lengths around the vector width.
static void check_argmax(void) {
    uint64_t rng = 9;
    float x[203];
    for (int t = 0; t < 400; t++) {
        int n = 1 + (int)(pz_test_rand_u64(&rng) % 203);
        for (int i = 0; i < n; i++) x[i] = (float)(int)(pz_test_rand_u64(&rng) % 7) - 5.0f;  // many ties
        int kind = t % 8;
        if (kind == 1) x[pz_test_rand_u64(&rng) % n] = NAN;
        if (kind == 2) x[0] = NAN;
        if (kind == 3) x[pz_test_rand_u64(&rng) % n] = INFINITY;
        if (kind == 4)
            for (int i = 0; i < n; i++) x[i] = (pz_test_rand_u64(&rng) & 1) ? 0.0f : -0.0f;
        if (kind == 5)
            for (int i = 0; i < n; i++) x[i] = -INFINITY;
        int32_t want = 0;
        for (int i = 1; i < n; i++)
            if (x[i] > x[want]) want = i;
        int32_t got = pz_argmax(x, n);
        CHECKF(got == want, "argmax case %d (kind %d, n %d): %d, want %d", t, kind, n, got, want);
    }
}

static void check_sampler(void) {
    check_argmax();
    float lg[50];
    uint64_t rng = 5;
    for (int i = 0; i < 50; i++) lg[i] = pz_test_randn(&rng);
    lg[17] = 4;
    pz_sampler g = pz_sampler_init(0, 1, 1);
    CHECK(pz_sampler_sample(&g, lg, 50) == 17 && pz_argmax(lg, 50) == 17);
    pz_sampler a = pz_sampler_init(1.0f, 0.9f, 42), b = pz_sampler_init(1.0f, 0.9f, 42);
    int same = 1, hits = 0, n = 2000;
    for (int i = 0; i < n; i++) {
        int x = pz_sampler_sample(&a, lg, 50);
        same &= x == pz_sampler_sample(&b, lg, 50);
        hits += x == 17;
    }
    CHECK(same);
    // p(17) = e^4 / sum; with top_p 0.9 it is at least that.
    double sum = 0;
    for (int i = 0; i < 50; i++) sum += exp(lg[i] - 4);
    double p17 = 1 / sum;
    CHECKF(hits > 0.9 * p17 * n, "sampled 17 %d times of %d, p=%.3f", hits, n, p17);
    pz_sampler t = pz_sampler_init(1.0f, 1e-6f, 3);  // nucleus of one: greedy
    for (int i = 0; i < 20; i++) CHECK(pz_sampler_sample(&t, lg, 50) == 17);
    char scratch[50 * 16];
    CHECK(pz_sampler_scratch_bytes(50) <= sizeof scratch);
    pz_sampler u = pz_sampler_init(0.7f, 0.95f, 9);
    int32_t r = pz_sampler_sample_scratch(&u, lg, 50, scratch);
    CHECK(r >= 0 && r < 50);
}

int main(void) {
    for (int v = 0; v < PZ_TESTMODEL_VARIANTS; v++) {
        pz_config c;
        pz_testmodel_config(&c, v);
        char what[32];
        snprintf(what, sizeof what, "variant %d f32", v);
        pz_model *m = pz_testmodel_random(&c, PZ_DT_F32, 1000 + v, err);
        CHECKF(m != NULL, "%s", err);
        if (!m) continue;
        check_model(m, what, TOL, TOL);
        if (v == 0) check_errors(m);

        // DeciLM round trip: identical weights, identical logits.
        char *dir = pz_test_tmpdir("engine");
        CHECKF(pz_model_save_hf(m, dir, err) == 0, "%s", err);
        pz_model *m2 = pz_model_load(dir, PZ_DT_F32, err);
        CHECKF(m2 != NULL, "%s", err);
        if (m2) {
            CHECK(m2->cfg.n_layer == c.n_layer && m2->cfg.tie_embeddings == c.tie_embeddings);
            int same_cfg = 1;
            for (int l = 0; l < c.n_layer; l++)
                same_cfg &= m2->cfg.layers[l].attn == c.layers[l].attn && m2->cfg.layers[l].n_kv == c.layers[l].n_kv &&
                            m2->cfg.layers[l].ffn == c.layers[l].ffn && m2->cfg.layers[l].n_ff == c.layers[l].n_ff;
            CHECK(same_cfg);
            CHECK(pz_model_weight_bytes(m2) == pz_model_weight_bytes(m));
            int32_t tok[12];
            uint64_t rng = 7;
            rand_tokens(tok, 12, c.vocab, &rng);
            float *a = malloc(sizeof(float) * 12 * c.vocab), *b = malloc(sizeof(float) * 12 * c.vocab);
            pz_engine *e1 = mk_engine(m, 1, 512), *e2 = mk_engine(m2, 1, 512);
            CHECK(pz_engine_prefill(e1, 0, tok, 12, a, 1, err) == 0);
            CHECK(pz_engine_prefill(e2, 0, tok, 12, b, 1, err) == 0);
            CHECK(memcmp(a, b, sizeof(float) * 12 * c.vocab) == 0);
            printf("  %-18s saved as DeciLM, reloaded: logits identical: %s\n", what,
                   memcmp(a, b, sizeof(float) * 12 * c.vocab) == 0 ? "yes" : "NO");
            pz_engine_free(e1), pz_engine_free(e2);
            free(a), free(b);
            pz_model_free(m2);
        }
        // bf16 weights (converted from the saved fp32 at load): the decode
        // path multiplies exact bf16 weights with fp32 activations; prefill
        // (M > 8 through the library) rounds activations to bf16 too.
        pz_model *mb = pz_model_load(dir, PZ_DT_BF16, err);
        CHECKF(mb != NULL, "%s", err);
        if (mb) {
            snprintf(what, sizeof what, "variant %d bf16", v);
            check_model(mb, what, 3e-2, 1e-5);
            pz_model_free(mb);
        }
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
        free(dir);
        pz_model_free(m);
    }
    check_sampler();
    return pz_test_finish("test_engine");
}
