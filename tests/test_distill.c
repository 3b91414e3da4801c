// test_distill.c — global distillation (distill/): the whole-model
// backward against finite differences, the loss falling on a short run,
// and a run killed (abandoned without a checkpoint) or stopped and then
// resumed ending bit-identical to an uninterrupted one.
//
// Gradient check: teacher = a homogeneous "parent" (gqa4 + swiglu128 in
// every layer), child = testmodel preset 0 (gqa 4/2/1, linear and noop
// attention; swiglu of three widths, linear and noop FFN; untied) and
// preset 1's layer mix on the parent's geometry (tied embeddings, a
// noop+noop layer, linear+linear). fp32 products. For every weight tensor
// a random ±1 direction d over all its elements: the directional
// derivative (L(θ+εd) − L(θ−εd)) / 2ε against Σ g·d from the backward,
// ε = 1e-3; |fd − an| <= 2e-2·|an| + 2e-3 (fp32 forward noise ~1e-6 in L
// gives ~1e-3 in fd).
#include "testutil.h"
#include "testmodel.h"
#include "distill.h"
#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char err[PZ_ERRLEN];

// A homogeneous parent with c's sizes: every layer gqa(kv) + swiglu(ff).
static void parent_config(pz_config *p, const pz_config *c, int kv, int ff) {
    *p = *c;
    for (int l = 0; l < p->n_layer; l++)
        p->layers[l] = (pz_layer_spec){.attn = PZ_ATTN_GQA, .n_kv = kv, .ffn = PZ_FFN_SWIGLU, .n_ff = ff};
}

static void rand_tokens(int32_t *t, long n, int vocab, uint64_t seed) {
    uint64_t s = seed;
    for (long i = 0; i < n; i++) t[i] = (int32_t)(pz_test_rand_u64(&s) % (uint64_t)vocab);
}

// The objective of the loss weights set on g (cos + KL by default).
static double loss_of(pz_gkd *g, const pz_model *t, const pz_model *c, const int32_t *ids, int ns, int T) {
    double cs, kl;
    if (pz_gkd_batch(g, t, c, NULL, 1, ids, ns, T, &cs, &kl, err)) {
        fprintf(stderr, "%s\n", err);
        return NAN;
    }
    pz_gkd_parts pt;
    pz_gkd_last_parts(g, &pt);
    return pt.objective;
}

// w: the loss weights (NULL: the default, whose objective must be cos + KL).
static void grad_check(const pz_config *cc, const char *what, const pz_gkd_loss *w) {
    pz_config pc;
    parent_config(&pc, cc, cc->n_head, 128);
    pz_model *teacher = pz_testmodel_random(&pc, PZ_DT_F32, 11, err);
    pz_model *child = pz_testmodel_random(cc, PZ_DT_F32, 12, err);
    pz_model *grad = pz_model_alloc(cc, PZ_DT_F32, err);
    pz_backend *be = pz_backend_create(PZ_BACKEND_CPU, 2, err);
    CHECKF(teacher && child && grad && be, "%s", err);
    if (!teacher || !child || !grad || !be) return;
    const int ns = 2, T = 7;
    int32_t ids[14];
    rand_tokens(ids, ns * T, cc->vocab, 5);
    pz_gkd *g = pz_gkd_create(teacher, child, ns * T, PZ_DT_F32, be, err);
    CHECKF(g != NULL, "%s", err);
    if (!g) return;
    if (w) CHECKF(pz_gkd_set_loss(g, w, err) == 0, "%s", err);
    double cs, kl;
    CHECKF(pz_gkd_batch(g, teacher, child, grad, 1, ids, ns, T, &cs, &kl, err) == 0, "%s", err);
    CHECKF(cs > 0.05 && kl > 1e-3, "%s: loss parts cos %g KL %g should be clearly positive", what, cs, kl);
    pz_gkd_parts pt;
    pz_gkd_last_parts(g, &pt);
    if (!w) CHECKF(fabs(pt.objective - (cs + kl)) <= 1e-9 * (cs + kl) && isnan(pt.lm),
                   "%s: default objective %.9g is not cos + KL %.9g (lm %g)", what, pt.objective, cs + kl, pt.lm);
    if (w) {
        // The parts, recomputed from the default loss (its KL is the plain
        // one) and the objective from the parts: the lm term is a CE of
        // random logits, near log(vocab); kl_t differs from kl at tau != 1.
        double want = w->cos * pt.cos + w->kl * pt.kl_t + (w->lm > 0 ? w->lm * pt.lm : 0);
        CHECKF(fabs(pt.objective - want) <= 1e-9 * fabs(want), "%s: objective %.9g vs parts %.9g", what,
               pt.objective, want);
        if (w->lm > 0) CHECKF(pt.lm > 0.5 * log(cc->vocab) && pt.lm < 2 * log(cc->vocab),
                              "%s: lm term %g not near log(vocab) %g", what, pt.lm, log(cc->vocab));
        if (w->temperature != 1) CHECKF(fabs(pt.kl_t - pt.kl) > 1e-3 * pt.kl, "%s: kl_t %g equals kl %g at "
                                        "temperature %g", what, pt.kl_t, pt.kl, w->temperature);
        pz_gkd *g0 = pz_gkd_create(teacher, child, ns * T, PZ_DT_F32, be, err);
        double c0 = 0, k0 = 0;
        CHECKF(g0 && pz_gkd_batch(g0, teacher, child, NULL, 1, ids, ns, T, &c0, &k0, err) == 0, "%s", err);
        CHECKF(fabs(c0 - cs) <= 1e-9 * c0 && fabs(k0 - kl) <= 1e-5 * k0,
               "%s: reported cos %.9g KL %.9g differ from the default loss's %.9g %.9g", what, cs, kl, c0, k0);
        pz_gkd_free(g0);
    }
    const float eps = 1e-3f;
    uint64_t rs = 99;
    int n_w = pz_model_n_weights(child), worst_i = -1;
    double worst = 0;
    for (int i = 0; i < n_w; i++) {
        pz_weight_info wi, gi;
        pz_model_weight_at(child, i, &wi);
        pz_model_weight_at(grad, i, &gi);
        size_t n = (size_t)wi.rows * wi.cols;
        float *p = (float *)wi.data;
        const float *gr = gi.data;
        float *d = malloc(n * sizeof(float)), *keep = malloc(n * sizeof(float));
        double an = 0;
        for (size_t k = 0; k < n; k++) {
            d[k] = (pz_test_rand_u64(&rs) & 1) ? 1.0f : -1.0f;
            an += (double)gr[k] * d[k];
        }
        memcpy(keep, p, n * sizeof(float));
        for (size_t k = 0; k < n; k++) p[k] = keep[k] + eps * d[k];
        double lp = loss_of(g, teacher, child, ids, ns, T);
        for (size_t k = 0; k < n; k++) p[k] = keep[k] - eps * d[k];
        double lm = loss_of(g, teacher, child, ids, ns, T);
        memcpy(p, keep, n * sizeof(float));
        double fd = (lp - lm) / (2.0 * eps);
        double bad = fabs(fd - an) - (2e-2 * fabs(an) + 2e-3);
        CHECKF(bad <= 0, "%s: %s: directional derivative fd %.6g vs backward %.6g", what, wi.name, fd, an);
        if (fabs(fd - an) > worst) worst = fabs(fd - an), worst_i = i;
        free(d);
        free(keep);
    }
    pz_weight_info wi;
    if (worst_i >= 0) pz_model_weight_at(child, worst_i, &wi);
    fprintf(stderr, "grad check %s: %d tensors, worst |fd - an| %.3g (%s)\n", what, n_w, worst,
            worst_i >= 0 ? wi.name : "-");
    pz_gkd_free(g);
    pz_model_free(teacher);
    pz_model_free(child);
    pz_model_free(grad);
    pz_backend_free(be);
}

// ---- training runs ----------------------------------------------------------------------

typedef struct {
    long stop_at;
    int how;
} stopper;

static int on_progress(void *user, const pz_distill_progress *p) {
    stopper *s = user;
    return s && s->stop_at == p->step ? s->how : 0;
}

static pz_distill_params run_params(void) {
    pz_distill_params p = pz_distill_default_params();
    p.seq = 16, p.batch = 2, p.accum = 2;
    p.tokens = 12L * 16 * 2 * 2;  // 12 steps
    p.lr = 3e-3f;
    p.warmup = 2;
    p.checkpoint_every = 4;
    p.prec = PZ_DT_BF16;
    return p;
}

// Trains a fresh child (seed 12) in dir; returns it (NULL on failure, rc set).
static pz_model *train(const pz_config *cc, const pz_model *teacher, const int32_t *tok, long n_tok,
                       const char *dir, stopper *st, int resume, int *rc, pz_distill_result *res) {
    pz_model *child = pz_testmodel_random(cc, PZ_DT_F32, 12, err);
    pz_backend *be = pz_backend_create(PZ_BACKEND_CPU, 2, err);
    if (!child || !be) {
        *rc = -1;
        pz_backend_free(be);
        return child;
    }
    pz_distill_params p = run_params();
    p.progress = on_progress, p.user = st, p.resume = resume;
    *rc = pz_distill_run(teacher, child, tok, n_tok, dir, &p, be, NULL, res, err);
    pz_backend_free(be);
    return child;
}

static int same_weights(const pz_model *a, const pz_model *b) {
    return a && b && a->arena_bytes == b->arena_bytes && memcmp(a->arena, b->arena, a->arena_bytes) == 0;
}

static void runs(void) {
    pz_config cc, pc;
    pz_testmodel_config(&cc, 0);
    parent_config(&pc, &cc, cc.n_head, 128);
    pz_model *teacher = pz_testmodel_random(&pc, PZ_DT_F32, 11, err);
    CHECKF(teacher != NULL, "%s", err);
    if (!teacher) return;
    const long n_tok = 40 * 16;
    int32_t *tok = malloc(sizeof(int32_t) * n_tok);
    rand_tokens(tok, n_tok, cc.vocab, 77);
    char *dA = pz_test_tmpdir("gkdA"), *dB = pz_test_tmpdir("gkdB"), *dC = pz_test_tmpdir("gkdC");
    int rc;
    pz_distill_result ra, rb, rc2;
    memset(&rb, 0, sizeof rb), memset(&rc2, 0, sizeof rc2);

    // Uninterrupted.
    pz_model *a = train(&cc, teacher, tok, n_tok, dA, NULL, 0, &rc, &ra);
    CHECKF(rc == 0, "uninterrupted run: %s", err);
    if (rc == 0) {
        CHECK(ra.steps == 12 && ra.n_points == 12 && ra.tokens == 12L * 64);
        double first = ra.curve_cos[0] + ra.curve_kl[0];
        double last = ra.curve_cos[11] + ra.curve_kl[11];
        CHECKF(last < 0.8 * first, "the loss should fall: step 1 %.4f, step 12 %.4f", first, last);
        fprintf(stderr, "run: loss %.4f -> %.4f (cos %.4f -> %.4f, KL %.4f -> %.4f)\n", first, last,
                ra.curve_cos[0], ra.curve_cos[11], ra.curve_kl[0], ra.curve_kl[11]);
    }

    // Killed after step 10 (last checkpoint at 8), then rerun with resume.
    stopper kill = {10, PZ_DISTILL_ABANDON};
    pz_model *b = train(&cc, teacher, tok, n_tok, dB, &kill, 0, &rc, NULL);
    CHECKF(rc != 0 && strstr(err, "abandoned"), "the killed run should fail: %s", err);
    pz_model_free(b);
    // A rerun without resume refuses the checkpoint.
    b = train(&cc, teacher, tok, n_tok, dB, NULL, 0, &rc, NULL);
    CHECKF(rc != 0 && strstr(err, "--resume"), "a rerun without resume should refuse: %s", err);
    pz_model_free(b);
    b = train(&cc, teacher, tok, n_tok, dB, NULL, 1, &rc, &rb);
    CHECKF(rc == 0, "resumed run: %s", err);
    CHECKF(rc != 0 || rb.start_step == 8, "resumed at step %ld, want 8", rb.start_step);
    CHECKF(same_weights(a, b), "killed + resumed run differs from the uninterrupted one");
    CHECK(rc != 0 || (rb.n_points == 12 && memcmp(ra.curve_kl, rb.curve_kl, 12 * sizeof(double)) == 0));

    // Stopped (checkpoint at the stop) after step 6, resumed.
    stopper st = {6, PZ_DISTILL_STOP};
    pz_model *c = train(&cc, teacher, tok, n_tok, dC, &st, 0, &rc, NULL);
    CHECKF(rc != 0 && strstr(err, "stopped at step 6"), "the stopped run: %s", err);
    pz_model_free(c);
    c = train(&cc, teacher, tok, n_tok, dC, NULL, 1, &rc, &rc2);
    CHECKF(rc == 0 && rc2.start_step == 6, "stopped + resumed: rc %d start %ld: %s", rc, rc2.start_step, err);
    CHECKF(same_weights(a, c), "stopped + resumed run differs from the uninterrupted one");

    // Different settings refuse the checkpoint.
    {
        pz_model *child = pz_testmodel_random(&cc, PZ_DT_F32, 12, err);
        pz_backend *be = pz_backend_create(PZ_BACKEND_CPU, 2, err);
        pz_distill_params p = run_params();
        p.lr = 1e-3f, p.resume = 1;
        rc = pz_distill_run(teacher, child, tok, n_tok, dA, &p, be, NULL, NULL, err);
        CHECKF(rc != 0 && strstr(err, "another run"), "a changed lr should refuse the checkpoint: %s", err);
        pz_model_free(child);
        pz_backend_free(be);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/gkd_losses.tsv", dA);
    CHECK(pz_file_exists(path));

    pz_distill_result_free(&ra), pz_distill_result_free(&rb), pz_distill_result_free(&rc2);
    pz_model_free(a), pz_model_free(b), pz_model_free(c);
    pz_model_free(teacher);
    free(tok);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s'", dA, dB, dC);
    if (system(cmd)) fprintf(stderr, "could not remove the temporary directories\n");
    free(dA), free(dB), free(dC);
}

int main(void) {
    pz_config c0;
    pz_testmodel_config(&c0, 0);
    grad_check(&c0, "preset 0 (untied)", NULL);
    // Other loss weights: cos + KL + LM, LM alone, KL alone at temperature 2.
    grad_check(&c0, "preset 0, 0.5 cos + KL + 0.7 LM", &(pz_gkd_loss){0.5f, 1, 0.7f, 1});
    grad_check(&c0, "preset 0, LM only", &(pz_gkd_loss){0, 0, 1, 1});
    grad_check(&c0, "preset 0, KL at temperature 2", &(pz_gkd_loss){0, 1, 0, 2});
    // Preset 1's layer kinds on a geometry where gqa4 parents exist: tied
    // embeddings, noop+noop and linear+linear layers.
    c0.tie_embeddings = 1;
    c0.n_layer = 5;
    c0.layers[0] = (pz_layer_spec){PZ_ATTN_GQA, 2, PZ_FFN_SWIGLU, 128};
    c0.layers[1] = (pz_layer_spec){PZ_ATTN_NOOP, 0, PZ_FFN_NOOP, 0};
    c0.layers[2] = (pz_layer_spec){PZ_ATTN_GQA, 4, PZ_FFN_LINEAR, 0};
    c0.layers[3] = (pz_layer_spec){PZ_ATTN_LINEAR, 0, PZ_FFN_LINEAR, 0};
    c0.layers[4] = (pz_layer_spec){PZ_ATTN_GQA, 1, PZ_FFN_SWIGLU, 40};
    grad_check(&c0, "tied, noop+noop, linear+linear", NULL);
    runs();
    return pz_test_finish("test_distill");
}
