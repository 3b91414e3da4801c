// test_scorer.c — replace-1-block scoring (scoring/score.h) on small random
// heterogeneous models:
//   * the scorer's parent pass (its layer-range forward run from layer 0)
//     gives the same log-probs as pz_engine_prefill (all_logits), to 1e-4;
//   * a parent copy swapped in scores KL 0, top-1 1, loss delta 0;
//   * for random blocks of every kind, the KL / top-1 / loss delta agree
//     (1e-4 relative) with a second computation: the swapped child realized
//     as a whole pz_model and run through the engine, KL taken against the
//     parent run through the engine — with cache strides 1 and 2 (the
//     recompute-from-the-nearest-cached-layer path);
//   * search in context, a child as the base: see test_context;
//   * the block influence measured in the parent pass equals 1 − mean cos of
//     each layer's input and output computed here from an fp32 capture
//     (blocklib/capture.h, a separate forward), and is exactly 0 for a
//     layer with no-op attention and FFN.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "engine.h"
#include "score.h"
#include "testmodel.h"
#include "testutil.h"
#include "weights.h"

#define T_WIN 16
#define N_WIN 5

static void log_softmax(float *z, int V) {
    float mx = z[0];
    for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)(z[v] - mx));
    float lse = mx + (float)log(s);
    for (int v = 0; v < V; v++) z[v] -= lse;
}

// All windows' log-probs of m through the engine: (N_WIN*T_WIN, V).
static float *engine_logprobs(const pz_model *m, const int32_t *tok) {
    char err[PZ_ERRLEN];
    pz_engine_params ep = pz_engine_default_params();
    ep.n_threads = 2, ep.max_ctx = T_WIN;
    pz_engine *e = pz_engine_create(m, ep, err);
    const int V = m->cfg.vocab;
    float *lp = malloc(sizeof(float) * (size_t)N_WIN * T_WIN * V);
    if (!e || !lp) {
        fprintf(stderr, "engine: %s\n", err);
        pz_engine_free(e);
        free(lp);
        return NULL;
    }
    for (int w = 0; w < N_WIN; w++) {
        pz_engine_slot_reset(e, 0);
        float *dst = lp + (size_t)w * T_WIN * V;
        if (pz_engine_prefill(e, 0, tok + w * T_WIN, T_WIN, dst, 1, err)) {
            fprintf(stderr, "prefill: %s\n", err);
            free(lp);
            lp = NULL;
            break;
        }
        for (int t = 0; t < T_WIN; t++) log_softmax(dst + (size_t)t * V, V);
    }
    pz_engine_free(e);
    return lp;
}

static void copy_mat(pz_mat *dst, const pz_mat *src) {
    if (dst->data && src->data) memcpy(dst->data, src->data, sizeof(float) * (size_t)src->rows * src->cols);
}
static void copy_vec(float *dst, const float *src, int n) {
    if (dst && src) memcpy(dst, src, sizeof(float) * (size_t)n);
}

// The parent m (fp32) with w's half/halves of its layer swapped in, as a
// whole model.
static pz_model *realize(const pz_model *m, const pz_block_weights *w) {
    char err[PZ_ERRLEN];
    pz_config c = m->cfg;
    const int L = w->layer, H = c.hidden;
    if (w->sub != PZ_SUB_FFN) c.layers[L].attn = w->attn.attn, c.layers[L].n_kv = w->attn.attn == PZ_ATTN_GQA ? w->attn.size : 0;
    if (w->sub != PZ_SUB_ATTN) c.layers[L].ffn = w->ffn.ffn, c.layers[L].n_ff = w->ffn.ffn == PZ_FFN_SWIGLU ? w->ffn.size : 0;
    pz_model *ch = pz_model_alloc(&c, PZ_DT_F32, err);
    if (!ch) {
        fprintf(stderr, "alloc: %s\n", err);
        return NULL;
    }
    copy_mat(&ch->tok_embd, &m->tok_embd);
    copy_vec(ch->out_norm, m->out_norm, H);
    if (!c.tie_embeddings) copy_mat(&ch->lm_head, &m->lm_head);
    for (int l = 0; l < c.n_layer; l++) {
        pz_layer_weights *d = &ch->layers[l];
        const pz_layer_weights *s = &m->layers[l];
        int sa = l == L && w->sub != PZ_SUB_FFN, sf = l == L && w->sub != PZ_SUB_ATTN;
        if (!sa) {
            copy_vec(d->attn_norm, s->attn_norm, H);
            copy_mat(&d->wq, &s->wq), copy_mat(&d->wk, &s->wk), copy_mat(&d->wv, &s->wv), copy_mat(&d->wo, &s->wo);
        } else {
            copy_vec(d->attn_norm, w->attn_norm, H);
            if (w->wq) {
                memcpy(d->wq.data, w->wq, sizeof(float) * (size_t)d->wq.rows * d->wq.cols);
                memcpy(d->wk.data, w->wk, sizeof(float) * (size_t)d->wk.rows * d->wk.cols);
                memcpy(d->wv.data, w->wv, sizeof(float) * (size_t)d->wv.rows * d->wv.cols);
                memcpy(d->wo.data, w->wo, sizeof(float) * (size_t)d->wo.rows * d->wo.cols);
            } else if (w->attn_lin) memcpy(d->wo.data, w->attn_lin, sizeof(float) * (size_t)H * H);
        }
        if (!sf) {
            copy_vec(d->ffn_norm, s->ffn_norm, H);
            copy_mat(&d->w_gate, &s->w_gate), copy_mat(&d->w_up, &s->w_up), copy_mat(&d->w_down, &s->w_down);
        } else {
            copy_vec(d->ffn_norm, w->ffn_norm, H);
            if (w->gate) {
                memcpy(d->w_gate.data, w->gate, sizeof(float) * (size_t)d->w_gate.rows * d->w_gate.cols);
                memcpy(d->w_up.data, w->up, sizeof(float) * (size_t)d->w_up.rows * d->w_up.cols);
                memcpy(d->w_down.data, w->down, sizeof(float) * (size_t)d->w_down.rows * d->w_down.cols);
            } else if (w->ffn_lin) memcpy(d->w_down.data, w->ffn_lin, sizeof(float) * (size_t)H * H);
        }
    }
    return ch;
}

// The metrics of child log-probs q against parent p, as score.h defines them.
static void metrics(const float *p, const float *q, const int32_t *tok, int V, pz_score_result *r) {
    double kl = 0, agree = 0, np = 0, nq = 0;
    const int N = N_WIN * T_WIN, n = N_WIN * (T_WIN - 1);
    for (int i = 0; i < N; i++) {
        if (i % T_WIN == T_WIN - 1) continue;
        const float *a = p + (size_t)i * V, *b = q + (size_t)i * V;
        int ma = 0, mb = 0;
        for (int v = 0; v < V; v++) {
            kl += exp((double)a[v]) * ((double)a[v] - b[v]);
            if (a[v] > a[ma]) ma = v;
            if (b[v] > b[mb]) mb = v;
        }
        agree += ma == mb;
        np -= a[tok[i + 1]], nq -= b[tok[i + 1]];
    }
    r->kl = kl / n, r->top1 = agree / n;
    r->loss_delta = (nq - np) / (N_WIN * (T_WIN - 1));
}

static double rel(double a, double b) { return fabs(a - b) / (fabs(b) > 1e-3 ? fabs(b) : 1e-3); }

// Block influence from a capture of every layer: input ATTN_IN, output
// FFN_IN + FFN_OUT.
static void check_influence(const pz_model *m, const int32_t *tok, pz_scorer *s, int variant) {
    char err[PZ_ERRLEN], *dir = pz_test_tmpdir("bi");
    const pz_config *c = &m->cfg;
    const int H = c->hidden;
    const long n = N_WIN * T_WIN;
    pz_capture_params cp = pz_capture_default_params();
    cp.seq_len = T_WIN, cp.dtype = PZ_DT_F32, cp.n_threads = 2;
    double *bi = malloc(sizeof(double) * c->n_layer);
    float *a = malloc(sizeof(float) * n * H), *f = malloc(sizeof(float) * n * H), *g = malloc(sizeof(float) * n * H);
    CHECKF(pz_capture_run(m, tok, n, dir, &cp, err) == 0, "%s", err);
    pz_scorer_block_influence(s, bi);
    double worst = 0;
    for (int l = 0; l < c->n_layer; l++) {
        pz_capture *cap = pz_capture_open(dir, l, c, 0, err);
        CHECKF(cap != NULL, "%s", err);
        if (!cap) continue;
        CHECK(pz_capture_rows(cap, PZ_CAP_ATTN_IN, 0, n, a, err) == 0 &&
              pz_capture_rows(cap, PZ_CAP_FFN_IN, 0, n, f, err) == 0 &&
              pz_capture_rows(cap, PZ_CAP_FFN_OUT, 0, n, g, err) == 0);
        pz_capture_close(cap);
        double cs = 0;
        for (long r = 0; r < n; r++) {
            double ab = 0, aa = 0, bb = 0;
            for (int i = 0; i < H; i++) {
                double x = a[r * H + i], y = (double)f[r * H + i] + g[r * H + i];
                ab += x * y, aa += x * x, bb += y * y;
            }
            cs += ab / sqrt(aa * bb);
        }
        double want = 1 - cs / n;
        worst = fmax(worst, fabs(bi[l] - want));
        const pz_layer_spec *ls = &c->layers[l];
        if (ls->attn == PZ_ATTN_NOOP && ls->ffn == PZ_FFN_NOOP)
            CHECKF(bi[l] == 0, "variant %d layer %d (noop+noop): block influence %g, not 0", variant, l, bi[l]);
        else
            CHECKF(bi[l] > 1e-6, "variant %d layer %d: block influence %g", variant, l, bi[l]);
    }
    CHECKF(worst < 1e-5, "variant %d: block influence vs capture: max diff %g", variant, worst);
    printf("  variant %d: block influence of %d layers vs capture: max diff %.2e\n", variant, c->n_layer, worst);
    free(bi), free(a), free(f), free(g);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    free(dir);
}

static void test_variant(int variant) {
    char err[PZ_ERRLEN];
    pz_config c;
    pz_testmodel_config(&c, variant);
    pz_model *m = pz_testmodel_random(&c, PZ_DT_F32, 100 + variant, err);
    CHECKF(m != NULL, "%s", err);
    if (!m) return;
    uint64_t st = 7 + variant;
    int32_t tok[N_WIN * T_WIN];
    for (int i = 0; i < N_WIN * T_WIN; i++) tok[i] = (int32_t)(pz_test_rand_u64(&st) % (uint64_t)c.vocab);
    const int V = c.vocab;
    float *plp = engine_logprobs(m, tok);
    CHECK(plp != NULL);

    for (int stride = 1; stride <= 2 && plp; stride++) {
        pz_score_params sp = pz_score_default_params();
        sp.n_threads = 2, sp.cache_stride = stride, sp.max_rows = 2 * T_WIN;  // 3 chunks, the last short
        pz_scorer *s = pz_scorer_create(m, tok, N_WIN * T_WIN + 3, T_WIN, &sp, err);
        CHECKF(s != NULL, "%s", err);
        if (!s) break;
        CHECK(pz_scorer_n_tokens(s) == N_WIN * T_WIN);
        // The layer-range forward from layer 0 equals the engine.
        double md = 0;
        const float *pp = pz_scorer_parent_probs(s);
        for (size_t i = 0; i < (size_t)N_WIN * T_WIN * V; i++)
            if (plp[i] > -30) md = fmax(md, fabs(log(pp[i]) - plp[i]));
        CHECKF(md < 1e-4, "variant %d: scorer parent log-probs vs engine: max diff %g", variant, md);
        if (stride == 1) check_influence(m, tok, s, variant);

        for (int L = 0; L < c.n_layer; L++) {
            // Parent copy of each half: exactly the parent.
            for (int half = 0; half < 2; half++) {
                pz_block_weights w;
                if (pz_block_weights_from_parent(&w, m, L, half ? PZ_SUB_FFN : PZ_SUB_ATTN, err)) {
                    CHECKF(0, "%s", err);
                    continue;
                }
                pz_score_result r;
                CHECKF(pz_scorer_score(s, &w, &r, err) == 0, "%s", err);
                CHECKF(r.kl < 1e-9 && r.top1 == 1.0 && fabs(r.loss_delta) < 1e-6,
                       "variant %d L%d half %d parent copy: kl %g top1 %g dloss %g", variant, L, half, r.kl,
                       r.top1, r.loss_delta);
                pz_block_weights_free(&w);
            }
            // Random blocks: one variant of each kind, alternating halves by layer.
            pz_variant vs[3];
            pz_sub_kind half = (L + stride) % 2 ? PZ_SUB_FFN : PZ_SUB_ATTN;
            if (half == PZ_SUB_ATTN) vs[0] = (pz_variant){.attn = PZ_ATTN_GQA, .size = 1}, vs[1] = (pz_variant){.attn = PZ_ATTN_LINEAR, .size = 0},
                                     vs[2] = (pz_variant){.attn = PZ_ATTN_NOOP, .size = 0};
            else vs[0] = (pz_variant){.ffn = PZ_FFN_SWIGLU, .size = 24}, vs[1] = (pz_variant){.ffn = PZ_FFN_LINEAR, .size = 0},
                 vs[2] = (pz_variant){.ffn = PZ_FFN_NOOP, .size = 0};
            for (int k = 0; k < 3; k++) {
                pz_block_weights w;
                if (pz_block_weights_alloc(&w, &c, L, half, vs[k], vs[k], err)) {
                    CHECKF(0, "%s", err);
                    continue;
                }
                pz_test_fill_randn(w.arena, w.n_floats, 0.15f, &st);
                for (int i = 0; i < c.hidden; i++) {
                    if (w.attn_norm) w.attn_norm[i] = 1.0f + 0.1f * pz_test_randn(&st);
                    if (w.ffn_norm) w.ffn_norm[i] = 1.0f + 0.1f * pz_test_randn(&st);
                }
                pz_score_result r, ref;
                CHECKF(pz_scorer_score(s, &w, &r, err) == 0, "%s", err);
                pz_model *ch = realize(m, &w);
                float *qlp = ch ? engine_logprobs(ch, tok) : NULL;
                CHECK(qlp != NULL);
                if (qlp) {
                    metrics(plp, qlp, tok, V, &ref);
                    CHECKF(rel(r.kl, ref.kl) < 1e-4 && fabs(r.top1 - ref.top1) < 1.5 / (N_WIN * T_WIN) &&
                               fabs(r.loss_delta - ref.loss_delta) < 1e-4 * fabs(ref.loss_delta) + 1e-6,
                           "variant %d L%d %s kind %d stride %d: score kl %.8g top1 %.4f dloss %.8g, engine kl "
                           "%.8g top1 %.4f dloss %.8g",
                           variant, L, half ? "ffn" : "attn", half ? (int)vs[k].ffn : (int)vs[k].attn, stride, r.kl, r.top1, r.loss_delta,
                           ref.kl, ref.top1, ref.loss_delta);
                    int same = pz_variant_is_noop(half, vs[k]) &&
                               (half == PZ_SUB_ATTN ? c.layers[L].attn == PZ_ATTN_NOOP : c.layers[L].ffn == PZ_FFN_NOOP);
                    CHECKF((same || r.kl > 0) && r.top1 >= 0 && r.top1 <= 1, "kl %g top1 %g", r.kl, r.top1);
                }
                free(qlp);
                pz_model_free(ch);
                pz_block_weights_free(&w);
            }
        }
        pz_scorer_free(s);
    }
    free(plp);
    pz_model_free(m);
}

// A random block of the given half and variant for layer L of c.
static int random_block(const pz_config *c, int L, pz_sub_kind half, pz_variant v, uint64_t *st, pz_block_weights *w) {
    char err[PZ_ERRLEN];
    if (pz_block_weights_alloc(w, c, L, half, v, v, err)) {
        CHECKF(0, "%s", err);
        return -1;
    }
    pz_test_fill_randn(w->arena, w->n_floats, 0.15f, st);
    for (int i = 0; i < c->hidden; i++) {
        if (w->attn_norm) w->attn_norm[i] = 1.0f + 0.1f * pz_test_randn(st);
        if (w->ffn_norm) w->ffn_norm[i] = 1.0f + 0.1f * pz_test_randn(st);
    }
    return 0;
}

// Search in context (pz_scorer_set_base): a child as the base.
//   * its own metrics (pz_scorer_base) equal the child realized as a whole
//     model through the engine (1e-4 relative);
//   * a candidate swapped into it (the cached-prefix path, strides 1 and 2)
//     scores exactly what a base pass of the child with the candidate in
//     gives (the direct measurement), and, for one candidate per layer, what
//     the engine gives for that whole model;
//   * the cached prefix gives the same scores as a scorer that keeps only
//     layer 0 and runs every block from the embeddings (the old cost);
//   * set_base back to the parent restores the parent's scores exactly, and
//     a block without the half it is asked for is refused, leaving the base.
static void test_context(int variant) {
    char err[PZ_ERRLEN];
    pz_config c;
    pz_testmodel_config(&c, variant);
    pz_model *m = pz_testmodel_random(&c, PZ_DT_F32, 300 + variant, err);
    CHECKF(m != NULL, "%s", err);
    if (!m) return;
    const int NL = c.n_layer, V = c.vocab;
    uint64_t st = 77 + variant;
    int32_t tok[N_WIN * T_WIN];
    for (int i = 0; i < N_WIN * T_WIN; i++) tok[i] = (int32_t)(pz_test_rand_u64(&st) % (uint64_t)V);
    float *plp = engine_logprobs(m, tok);
    CHECK(plp != NULL);
    // The child: layer l changes its attention (l % 3 == 0: linear), its FFN
    // (l % 3 == 1: swiglu 24), or both (l % 3 == 2: gqa kv1 + FFN removed).
    pz_block_weights cw[2 * 8];
    const pz_block_weights *ca[8] = {0}, *cf[8] = {0};
    int ncw = 0;
    pz_model *child = NULL;
    for (int l = 0; l < NL && l < 8; l++) {
        if (l % 3 != 1) {
            pz_variant va = l % 3 == 0 ? (pz_variant){.attn = PZ_ATTN_LINEAR} : (pz_variant){.attn = PZ_ATTN_GQA, .size = 1};
            if (random_block(&c, l, PZ_SUB_ATTN, va, &st, &cw[ncw])) goto out;
            ca[l] = &cw[ncw++];
        }
        if (l % 3 != 0) {
            pz_variant vf = l % 3 == 1 ? (pz_variant){.ffn = PZ_FFN_SWIGLU, .size = 24} : (pz_variant){.ffn = PZ_FFN_NOOP};
            if (random_block(&c, l, PZ_SUB_FFN, vf, &st, &cw[ncw])) goto out;
            cf[l] = &cw[ncw++];
        }
    }
    for (int k = 0; k < ncw; k++) {
        pz_model *next = realize(child ? child : m, &cw[k]);
        pz_model_free(child);
        child = next;
        CHECK(child != NULL);
        if (!child) goto out;
    }
    float *clp = engine_logprobs(child, tok);
    CHECK(clp != NULL);
    pz_score_result want;
    if (clp) metrics(plp, clp, tok, V, &want);
    free(clp);

    pz_scorer *s[3] = {0};  // strides 1, 2 and "layer 0 only" (the old cost)
    const int strides[3] = {1, 2, NL};
    for (int k = 0; k < 3; k++) {
        pz_score_params sp = pz_score_default_params();
        sp.n_threads = 2, sp.cache_stride = strides[k], sp.max_rows = 2 * T_WIN;
        s[k] = pz_scorer_create(m, tok, N_WIN * T_WIN, T_WIN, &sp, err);
        CHECKF(s[k] != NULL, "%s", err);
        if (!s[k]) goto out_s;
    }
    // Before: the parent's scores of one candidate per layer.
    double parent_kl[8];
    pz_block_weights cand[8][2];
    memset(cand, 0, sizeof cand);
    for (int L = 0; L < NL && L < 8; L++) {
        pz_variant va = L % 2 ? (pz_variant){.attn = PZ_ATTN_NOOP} : (pz_variant){.attn = PZ_ATTN_LINEAR};
        pz_variant vf = L % 2 ? (pz_variant){.ffn = PZ_FFN_LINEAR} : (pz_variant){.ffn = PZ_FFN_SWIGLU, .size = 16};
        if (random_block(&c, L, PZ_SUB_ATTN, va, &st, &cand[L][0]) ||
            random_block(&c, L, PZ_SUB_FFN, vf, &st, &cand[L][1]))
            goto out_s;
        pz_score_result r;
        CHECKF(pz_scorer_score(s[0], &cand[L][1], &r, err) == 0, "%s", err);
        parent_kl[L] = r.kl;
    }
    for (int k = 0; k < 3; k++) {
        CHECKF(pz_scorer_set_base(s[k], ca, cf, err) == 0, "%s", err);
        pz_score_result b;
        pz_scorer_base(s[k], &b);
        CHECKF(rel(b.kl, want.kl) < 1e-4 && fabs(b.top1 - want.top1) < 1.5 / (N_WIN * T_WIN) &&
                   fabs(b.loss_delta - want.loss_delta) < 1e-4 * fabs(want.loss_delta) + 1e-6,
               "variant %d stride %d: base kl %.8g top1 %.4f dloss %.8g, engine kl %.8g top1 %.4f dloss %.8g",
               variant, strides[k], b.kl, b.top1, b.loss_delta, want.kl, want.top1, want.loss_delta);
        CHECKF(b.kl > 1e-3, "variant %d: the child's KL %g is not above 0", variant, b.kl);
    }
    double worst_direct = 0, worst_old = 0;
    for (int L = 0; L < NL && L < 8; L++) {
        for (int h = 0; h < 3; h++) {  // attention, FFN, both
            const pz_block_weights *sa = h != 1 ? &cand[L][0] : NULL, *sf = h != 0 ? &cand[L][1] : NULL;
            pz_score_result r[3];
            for (int k = 0; k < 3; k++)
                CHECKF(pz_scorer_score_halves(s[k], L, sa, sf, &r[k], err) == 0, "%s", err);
            // Direct: a base pass of the child with the candidate in (on scorer 2, then back).
            const pz_block_weights *da[8], *df[8];
            memcpy(da, ca, sizeof da), memcpy(df, cf, sizeof df);
            if (sa) da[L] = sa;
            if (sf) df[L] = sf;
            pz_score_result d;
            CHECKF(pz_scorer_set_base(s[2], da, df, err) == 0, "%s", err);
            pz_scorer_base(s[2], &d);
            CHECKF(pz_scorer_set_base(s[2], ca, cf, err) == 0, "%s", err);
            for (int k = 0; k < 3; k++) {
                worst_direct = fmax(worst_direct, rel(r[k].kl, d.kl));
                CHECKF(rel(r[k].kl, d.kl) < 1e-9 && r[k].top1 == d.top1 && fabs(r[k].loss_delta - d.loss_delta) < 1e-9,
                       "variant %d L%d h%d stride %d: in context kl %.10g top1 %.4f, direct %.10g top1 %.4f", variant,
                       L, h, strides[k], r[k].kl, r[k].top1, d.kl, d.top1);
            }
            worst_old = fmax(worst_old, fmax(rel(r[0].kl, r[2].kl), rel(r[1].kl, r[2].kl)));
            if (h == 2) {  // and the engine on that whole model
                pz_model *m1 = realize(child, &cand[L][0]);
                pz_model *m2 = m1 ? realize(m1, &cand[L][1]) : NULL;
                float *q = m2 ? engine_logprobs(m2, tok) : NULL;
                CHECK(q != NULL);
                if (q) {
                    pz_score_result e;
                    metrics(plp, q, tok, V, &e);
                    CHECKF(rel(r[0].kl, e.kl) < 1e-4 && fabs(r[0].top1 - e.top1) < 1.5 / (N_WIN * T_WIN),
                           "variant %d L%d: in context kl %.8g top1 %.4f, engine %.8g top1 %.4f", variant, L,
                           r[0].kl, r[0].top1, e.kl, e.top1);
                }
                free(q);
                pz_model_free(m1);
                pz_model_free(m2);
            }
        }
    }
    printf("  variant %d: child KL %.5f; in-context scores vs direct: max rel diff %.1e; cached prefix vs from "
           "layer 0: %.1e\n", variant, want.kl, worst_direct, worst_old);
    // Refused: an FFN-only block as the attention half; the base stays.
    {
        const pz_block_weights *bad[8];
        memcpy(bad, ca, sizeof bad);
        bad[0] = &cand[0][1];
        pz_score_result b0, b1;
        pz_scorer_base(s[0], &b0);
        CHECK(pz_scorer_set_base(s[0], bad, cf, err) == -1 && strstr(err, "half"));
        pz_scorer_base(s[0], &b1);
        CHECK(b0.kl == b1.kl);
    }
    // Back to the parent: the parent's scores again, exactly.
    CHECKF(pz_scorer_set_base(s[0], NULL, NULL, err) == 0, "%s", err);
    {
        pz_score_result b;
        pz_scorer_base(s[0], &b);
        CHECKF(b.kl < 1e-12 && b.top1 == 1, "variant %d: parent as base: kl %g top1 %g", variant, b.kl, b.top1);
    }
    for (int L = 0; L < NL && L < 8; L++) {
        pz_score_result r;
        CHECKF(pz_scorer_score(s[0], &cand[L][1], &r, err) == 0, "%s", err);
        CHECKF(r.kl == parent_kl[L], "variant %d L%d: parent base again: kl %.12g, before %.12g", variant, L, r.kl,
               parent_kl[L]);
    }
out_s:
    for (int k = 0; k < 3; k++) pz_scorer_free(s[k]);
    for (int L = 0; L < 8; L++) pz_block_weights_free(&cand[L][0]), pz_block_weights_free(&cand[L][1]);
out:
    for (int k = 0; k < ncw; k++) pz_block_weights_free(&cw[k]);
    pz_model_free(child);
    free(plp);
    pz_model_free(m);
}

int main(void) {
    for (int v = 0; v < PZ_TESTMODEL_VARIANTS; v++) test_variant(v);
    for (int v = 0; v < PZ_TESTMODEL_VARIANTS; v++) test_context(v);
    // No whole window: a clear error.
    char err[PZ_ERRLEN] = "";
    pz_config c;
    pz_testmodel_config(&c, 0);
    pz_model *m = pz_testmodel_random(&c, PZ_DT_F32, 1, err);
    int32_t tok[8] = {0};
    CHECK(m && pz_scorer_create(m, tok, 8, 16, NULL, err) == NULL && strstr(err, "window"));
    pz_model_free(m);
    return pz_test_finish("test_scorer");
}
