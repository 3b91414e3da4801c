// test_devmem.c — BLD (with its capture and initialization), replace-1-block
// scoring and global distillation keep every tensor they hand to backend
// ops in backend memory: each runs once on the plain CPU backend and once
// on the fake device (tests/fake_device.h: the same CPU kernels, but
// backend memory is PROT_NONE except inside an op or a copy, so a host
// read or write of it crashes, and copies must name their direction
// right), and the results must be bit-identical. Blocks: a coupled pair
// (gqa 4 -> 2 KV heads by mean-pooling, swiglu 96 -> 48 by channel scores),
// a pair with a noop attention, a linear FFN fitted by least squares.
// Scoring: the parent pass (probabilities, block influence), a block
// swapped in, a child base (set_base) and a half swapped into it.
// Distillation: 4 steps, and the same stopped at a checkpoint and resumed
// on the fake device.
//
// On a machine with a GPU, PUZZLE_DEVMEM_DEVICE=cuda runs the same stages
// on the CUDA backend instead of the fake device and compares with
// tolerances (other kernels, other summation orders): relative 1e-4 for
// fp32 activations, 2e-2 for losses, weights and KL after bf16 training;
// the stop-and-resume run must still equal the uninterrupted one on the
// device bit for bit. It exits 77 (skipped) when CUDA cannot start.
#include "testutil.h"
#include "testmodel.h"
#include "fake_device.h"
#include "bld.h"
#include "capture.h"
#include "distill.h"
#include "score.h"
#include "common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char err[PZ_ERRLEN];
static int exact = 1;  // 0: comparing with the CUDA backend, within tolerances

// a and b equal (exact), or within rel·max(|a|, |b|) + 1e-9.
static int near(double a, double b, double rel) {
    if (exact) return a == b;
    return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)) + 1e-9;
}

static int near_floats(const float *a, const float *b, size_t n, double rel) {
    if (exact) return memcmp(a, b, n * sizeof(float)) == 0;
    return pz_rel_err_f(a, b, n) <= rel;
}

#define T_WIN 16
#define N_WIN 24
#define ARENA ((size_t)1 << 30)

static pz_block mkblock(const pz_config *c, int layer, pz_sub_kind sub, pz_variant a, pz_variant f) {
    pz_block b;
    memset(&b, 0, sizeof b);
    b.layer = layer, b.sub = sub;
    b.attn = sub == PZ_SUB_FFN ? (pz_variant){.attn = c->layers[layer].attn, .size = c->layers[layer].n_kv} : a;
    b.ffn = sub == PZ_SUB_ATTN ? (pz_variant){.ffn = c->layers[layer].ffn, .size = c->layers[layer].n_ff} : f;
    b.needs_training = 1;
    pz_block_make_id(&b, c->n_layer);
    return b;
}

static int same_doubles(const double *a, const double *b, int n) {
    if (n > 0 && (!a || !b)) return 0;
    for (int i = 0; i < n; i++)
        if (!near(a[i], b[i], 2e-2)) return 0;
    return 1;
}

// Captures of layers 0 and 3 into dir on backend be (NULL: the plain CPU one).
static int capture(const pz_model *m, const int32_t *tok, const char *dir, pz_backend *be) {
    static const int layers[] = {0, 3};
    pz_capture_params cp = pz_capture_default_params();
    cp.seq_len = T_WIN, cp.dtype = PZ_DT_F32, cp.n_threads = 2, cp.max_rows = 5 * T_WIN;
    cp.layers = layers, cp.n_layers = 2, cp.be = be;
    return pz_capture_run(m, tok, N_WIN * T_WIN, dir, &cp, err);
}

static void check_captures(const pz_config *c, const char *da, const char *db) {
    const size_t n = (size_t)N_WIN * T_WIN * c->hidden;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    for (int l = 0; l < c->n_layer; l += 3) {
        pz_capture *ca = pz_capture_open(da, l, c, 0, err), *cb = pz_capture_open(db, l, c, 0, err);
        CHECKF(ca && cb, "%s", err);
        for (int t = 0; ca && cb && t < 4; t++) {
            CHECK(pz_capture_rows(ca, (pz_cap_tensor)t, 0, N_WIN * T_WIN, a, err) == 0 &&
                  pz_capture_rows(cb, (pz_cap_tensor)t, 0, N_WIN * T_WIN, b, err) == 0);
            CHECKF(near_floats(a, b, n, 1e-4), "capture of layer %d tensor %d differs", l, t);
        }
        pz_capture_close(ca);
        pz_capture_close(cb);
    }
    free(a);
    free(b);
}

// BLD of blk on both backends; the trained weights (plain CPU) into *out.
static void bld_both(const pz_model *m, const pz_block *blk, const pz_capture *cap, pz_backend *fk,
                     pz_block_weights *out) {
    pz_bld_params p = pz_bld_default_params();
    p.steps = 6, p.batch_windows = 2, p.eval_every = 2, p.n_threads = 2, p.init.max_tokens = 128;
    pz_bld_result ra, rb;
    pz_block_weights wa, wb;
    int rca = pz_bld_train(m, blk, cap, &p, NULL, &wa, &ra, err);
    CHECKF(rca == 0, "%s: plain: %s", blk->id, err);
    p.be = fk;
    int rcb = pz_bld_train(m, blk, cap, &p, NULL, &wb, &rb, err);
    CHECKF(rcb == 0, "%s: fake device: %s", blk->id, err);
    if (rca || rcb) return;
    CHECKF(ra.steps == 6 && rb.steps == 6 && ra.n_points == rb.n_points, "%s: steps %ld/%ld", blk->id, ra.steps,
           rb.steps);
    CHECKF(!strcmp(ra.init_method, rb.init_method), "%s: init %s / %s", blk->id, ra.init_method, rb.init_method);
    CHECKF(near(ra.init_val_nmse, rb.init_val_nmse, 1e-3) && near(ra.final_val_nmse, rb.final_val_nmse, 2e-2) &&
               near(ra.final_train_nmse, rb.final_train_nmse, 2e-2) &&
               near(ra.final_val_global, rb.final_val_global, 2e-2) && ra.kept_init == rb.kept_init,
           "%s: losses differ: val %.9g/%.9g train %.9g/%.9g", blk->id, ra.final_val_nmse, rb.final_val_nmse,
           ra.final_train_nmse, rb.final_train_nmse);
    CHECKF(same_doubles(ra.curve_train + 1, rb.curve_train + 1, ra.n_points - 1) &&
               same_doubles(ra.curve_val, rb.curve_val, ra.n_points),
           "%s: loss curves differ", blk->id);
    CHECKF(wa.n_floats == wb.n_floats && near_floats(wb.arena, wa.arena, wa.n_floats, 2e-2),
           "%s: trained weights differ", blk->id);
    CHECKF(ra.final_val_nmse < ra.init_val_nmse, "%s: BLD should improve on the initialization (%.4g -> %.4g)",
           blk->id, ra.init_val_nmse, ra.final_val_nmse);
    fprintf(stderr, "bld %s (%s): val %.4g -> %.4g, %s on the device\n", blk->id, ra.init_method,
            ra.init_val_nmse, ra.final_val_nmse, exact ? "identical" : "close");
    // The evaluation alone.
    double ea, eb, ga, gb;
    CHECK(pz_bld_eval(m, blk, &wa, cap, &p, &eb, &gb, err) == 0);
    p.be = NULL;
    CHECK(pz_bld_eval(m, blk, &wa, cap, &p, &ea, &ga, err) == 0);
    CHECKF(near(ea, eb, 1e-3) && near(ga, gb, 1e-3) && ea == ra.final_val_nmse, "%s: pz_bld_eval %.9g / %.9g",
           blk->id, ea, eb);
    pz_bld_result_free(&ra);
    pz_bld_result_free(&rb);
    pz_block_weights_free(&wb);
    *out = wa;
}

static int same_score(const pz_score_result *a, const pz_score_result *b) {
    if (exact) return a->kl == b->kl && a->top1 == b->top1 && a->loss_delta == b->loss_delta && a->child_nll == b->child_nll;
    return near(a->kl, b->kl, 2e-2) && fabs(a->top1 - b->top1) <= 0.02 && near(a->child_nll, b->child_nll, 1e-3);
}

static void score_both(const pz_model *m, const int32_t *tok, pz_backend *fk, const pz_block_weights *pair0,
                       const pz_block_weights *pair3, const pz_block_weights *lin0) {
    pz_score_params sp = pz_score_default_params();
    sp.n_threads = 2, sp.max_rows = 3 * T_WIN, sp.cache_stride = 2;
    const long n = 8 * T_WIN;
    pz_scorer *a = pz_scorer_create(m, tok, n, T_WIN, &sp, err);
    CHECKF(a != NULL, "scorer (plain): %s", err);
    sp.be = fk;
    pz_scorer *b = pz_scorer_create(m, tok, n, T_WIN, &sp, err);
    CHECKF(b != NULL, "scorer (fake device): %s", err);
    if (!a || !b) goto out;
    const int L = m->cfg.n_layer, V = m->cfg.vocab;
    CHECKF(near_floats(pz_scorer_parent_probs(b), pz_scorer_parent_probs(a), (size_t)n * V, 1e-3),
           "parent probabilities differ");
    CHECK(near(pz_scorer_parent_nll(a), pz_scorer_parent_nll(b), 1e-4));
    double bia[PZ_MAX_LAYERS], bib[PZ_MAX_LAYERS];
    pz_scorer_block_influence(a, bia);
    pz_scorer_block_influence(b, bib);
    int bi_ok = 1;
    for (int l = 0; l < L; l++) bi_ok &= near(bia[l], bib[l], 1e-3);
    CHECKF(bi_ok, "block influence differs");
    pz_score_result ra, rb;
    CHECK(pz_scorer_score(a, pair0, &ra, err) == 0 && pz_scorer_score(b, pair0, &rb, err) == 0);
    CHECKF(same_score(&ra, &rb), "pair block: KL %.12g / %.12g", ra.kl, rb.kl);
    CHECKF(ra.kl > 0, "a trained child block should differ from the parent (KL %g)", ra.kl);
    fprintf(stderr, "score %s: KL %.5g top-1 %.3f, %s on the device\n", "pair0", ra.kl, ra.top1,
            exact ? "identical" : "close");
    // A child base: layer 3 replaced by its pair, then layer 0's FFN by the linear block.
    const pz_block_weights *attn[PZ_MAX_LAYERS] = {0}, *ffn[PZ_MAX_LAYERS] = {0};
    attn[3] = ffn[3] = pair3;
    CHECK(pz_scorer_set_base(a, attn, ffn, err) == 0 && pz_scorer_set_base(b, attn, ffn, err) == 0);
    pz_scorer_base(a, &ra);
    pz_scorer_base(b, &rb);
    CHECKF(same_score(&ra, &rb) && ra.kl > 0, "base: KL %.12g / %.12g", ra.kl, rb.kl);
    CHECK(pz_scorer_score_halves(a, 0, NULL, lin0, &ra, err) == 0 &&
          pz_scorer_score_halves(b, 0, NULL, lin0, &rb, err) == 0);
    CHECKF(same_score(&ra, &rb), "linear FFN in the child base: KL %.12g / %.12g", ra.kl, rb.kl);
out:
    pz_scorer_free(a);
    pz_scorer_free(b);
}

typedef struct {
    long stop_at;
    const pz_backend *dev;  // a fake device: its D2H bytes recorded at each step's end
    size_t d2h[8];
} stopper;

static int on_progress(void *user, const pz_distill_progress *p) {
    stopper *s = user;
    if (s && s->dev && p->step < 8) s->d2h[p->step] = pz_fake_device_d2h_bytes(s->dev);
    return s && s->stop_at == p->step ? PZ_DISTILL_STOP : 0;
}

static pz_model *distill(const pz_model *teacher, const int32_t *tok, const char *dir, pz_backend *be,
                         stopper *st, int resume, int *rc, pz_distill_result *res) {
    pz_model *child = pz_testmodel_random(&teacher->cfg, PZ_DT_F32, 12, err);
    if (!child) {
        *rc = -1;
        return NULL;
    }
    pz_distill_params p = pz_distill_default_params();
    p.seq = T_WIN, p.batch = 2, p.accum = 2, p.tokens = 4L * T_WIN * 2 * 2;  // 4 steps
    p.lr = 3e-3f, p.warmup = 1, p.checkpoint_every = 2, p.prec = PZ_DT_BF16;
    p.progress = on_progress, p.user = st, p.resume = resume;
    *rc = pz_distill_run(teacher, child, tok, N_WIN * T_WIN, dir, &p, be, NULL, res, err);
    return child;
}

static void distill_both(const pz_model *teacher, const int32_t *tok, pz_backend *fk) {
    char *da = pz_test_tmpdir("devmemA"), *db = pz_test_tmpdir("devmemB"), *dc = pz_test_tmpdir("devmemC");
    pz_backend *cpu = pz_backend_create(PZ_BACKEND_CPU, 2, err);
    int rc;
    pz_distill_result ra, rb, rc2;
    memset(&ra, 0, sizeof ra), memset(&rb, 0, sizeof rb), memset(&rc2, 0, sizeof rc2);
    pz_model *a = distill(teacher, tok, da, cpu, NULL, 0, &rc, &ra);
    CHECKF(rc == 0, "distill (plain): %s", err);
    stopper sb = {.stop_at = 0, .dev = exact ? fk : NULL};
    pz_model *b = distill(teacher, tok, db, fk, &sb, 0, &rc, &rb);
    CHECKF(rc == 0, "distill (fake device): %s", err);
    if (exact) {
        // Step 2 (two micro-batches, no checkpoint) reads back no hidden state
        // and no logit: the losses run as backend ops, only their sums return.
        const pz_config *c = &teacher->cfg;
        size_t step2 = sb.d2h[2] - sb.d2h[1], one_logits = (size_t)2 * T_WIN * c->vocab * sizeof(float);
        CHECKF(sb.d2h[2] >= sb.d2h[1] && step2 < 4096 && step2 < one_logits,
               "distillation step 2 copied %zu bytes to the host (one micro-batch's logits: %zu)", step2,
               one_logits);
    }
    CHECKF(a && b && near_floats((const float *)b->arena, (const float *)a->arena, a->arena_bytes / sizeof(float), 2e-2),
           "distilled children differ");
    CHECKF(ra.n_points == 4 && rb.n_points == 4 && same_doubles(ra.curve_kl, rb.curve_kl, 4) &&
               same_doubles(ra.curve_cos, rb.curve_cos, 4) && same_doubles(ra.curve_gnorm, rb.curve_gnorm, 4),
           "distillation curves differ");
    if (ra.n_points == 4)
        fprintf(stderr, "distill: KL %.5g -> %.5g, %s on the device\n", ra.curve_kl[0], ra.curve_kl[3],
                exact ? "identical" : "close");
    // Stopped after step 2 (its checkpoint read back from the device), resumed.
    stopper st = {.stop_at = 2};
    pz_model *c = distill(teacher, tok, dc, fk, &st, 0, &rc, NULL);
    CHECKF(rc != 0 && strstr(err, "stopped at step 2"), "the stopped run: %s", err);
    pz_model_free(c);
    c = distill(teacher, tok, dc, fk, NULL, 1, &rc, &rc2);
    CHECKF(rc == 0 && rc2.start_step == 2, "resumed on the fake device: rc %d start %ld: %s", rc, rc2.start_step,
           err);
    CHECKF(b && c && memcmp(b->arena, c->arena, b->arena_bytes) == 0,
           "stopped + resumed on the device differs from its uninterrupted run");
    pz_model_free(a), pz_model_free(b), pz_model_free(c);
    pz_distill_result_free(&ra), pz_distill_result_free(&rb), pz_distill_result_free(&rc2);
    pz_backend_free(cpu);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s'", da, db, dc);
    if (system(cmd)) fprintf(stderr, "could not remove the temporary directories\n");
    free(da), free(db), free(dc);
}

int main(void) {
    pz_config c;
    pz_testmodel_config(&c, 0);  // layers: gqa4+swiglu96, gqa2+linear, linear+swiglu160, noop+swiglu64, ...
    pz_model *m = pz_testmodel_random(&c, PZ_DT_F32, 3, err);
    const char *dev = getenv("PUZZLE_DEVMEM_DEVICE");
    exact = !dev || strcmp(dev, "cuda") != 0;
    pz_backend *fk = exact ? pz_fake_device_create(2, ARENA, err) : pz_backend_create(PZ_BACKEND_CUDA, 2, err);
    if (!exact && !fk) {
        fprintf(stderr, "skip: no CUDA backend: %s\n", err);
        pz_model_free(m);
        return 77;
    }
    CHECKF(m && fk, "%s", err);
    if (!m || !fk) return pz_test_finish("test_devmem");
    int32_t *tok = malloc(sizeof(int32_t) * N_WIN * T_WIN);
    uint64_t s = 99;
    for (int i = 0; i < N_WIN * T_WIN; i++) tok[i] = (int32_t)(pz_test_rand_u64(&s) % (uint64_t)c.vocab);

    // The fake device refuses a copy in the wrong direction, and faults on a host access (not tried here).
    if (exact) {
        float *d = fk->alloc(fk, 64), h[16] = {0};
        CHECK(d && fk->copy(fk, h, d, sizeof h, PZ_COPY_H2D, err) != 0 && strstr(err, "H2D"));
        CHECK(d && fk->copy(fk, d, h, sizeof h, PZ_COPY_H2D, err) == 0);
        fk->free(fk, d);
    }

    char *da = pz_test_tmpdir("devcapA"), *db = pz_test_tmpdir("devcapB");
    CHECKF(capture(m, tok, da, NULL) == 0, "capture (plain): %s", err);
    CHECKF(capture(m, tok, db, fk) == 0, "capture (fake device): %s", err);
    check_captures(&c, da, db);

    pz_capture *cap0 = pz_capture_open(da, 0, &c, 0, err), *cap3 = pz_capture_open(da, 3, &c, 0, err);
    CHECKF(cap0 && cap3, "%s", err);
    pz_block_weights pair0, pair3, lin0;
    memset(&pair0, 0, sizeof pair0), memset(&pair3, 0, sizeof pair3), memset(&lin0, 0, sizeof lin0);
    if (cap0 && cap3) {
        pz_block b = mkblock(&c, 0, PZ_SUB_PAIR, (pz_variant){.attn = PZ_ATTN_GQA, .size = 2},
                             (pz_variant){.ffn = PZ_FFN_SWIGLU, .size = 48});
        bld_both(m, &b, cap0, fk, &pair0);
        b = mkblock(&c, 3, PZ_SUB_PAIR, (pz_variant){.attn = PZ_ATTN_NOOP}, (pz_variant){.ffn = PZ_FFN_SWIGLU, .size = 32});
        bld_both(m, &b, cap3, fk, &pair3);
        b = mkblock(&c, 0, PZ_SUB_FFN, (pz_variant){.size = 0}, (pz_variant){.ffn = PZ_FFN_LINEAR});
        bld_both(m, &b, cap0, fk, &lin0);
    }
    if (pair0.arena && pair3.arena && lin0.arena) score_both(m, tok, fk, &pair0, &pair3, &lin0);
    distill_both(m, tok, fk);

    if (exact) {
        size_t peak;
        pz_fake_device_used(fk, &peak);
        CHECKF(pz_fake_device_calls(fk) > 1000 && peak > 0, "the fake device ran %ld calls", pz_fake_device_calls(fk));
        fprintf(stderr, "fake device: %ld ops and copies, peak %.1f MB\n", pz_fake_device_calls(fk), peak / 1e6);
    }

    pz_block_weights_free(&pair0), pz_block_weights_free(&pair3), pz_block_weights_free(&lin0);
    pz_capture_close(cap0);
    pz_capture_close(cap3);
    pz_backend_free(fk);
    pz_model_free(m);
    free(tok);
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", da, db);
    if (system(cmd)) fprintf(stderr, "could not remove the temporary directories\n");
    free(da), free(db);
    return pz_test_finish("test_devmem");
}
