// labels: cpu
// test_realize.c — realizing a child from a parent and library block files
// (blocklib/realize.h). For random parents (fp32 and bf16) and random block
// files (F32 and BF16) covering every kind change, the realized child must
// give the logits of an independently built "substitution" model: a shallow
// copy of the parent whose layer pointers are redirected to the loaded
// block arrays (the engine takes each matrix's own dtype and falls back to
// separate q/k/v and gate/up products when they are not adjacent). The
// child must survive pz_model_save_hf + pz_model_load bit for bit, and bad
// requests and bad files must be refused with a message naming the problem.
#include "testutil.h"
#include "testmodel.h"
#include "common.h"
#include "engine.h"
#include "realize.h"
#include "tensor.h"
#include "weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char err[PZ_ERRLEN];

#define N_PROMPT 20
#define N_DECODE 4
#define N_ROWS (N_PROMPT + N_DECODE)

// Where a half comes from: the parent (NULL file), nothing (noop, NULL
// file), a file of random weights, a file of the parent's own weights
// perturbed, or a coupled pair file (named in both fields).
enum { SRC_PARENT, SRC_NOOP, SRC_FILE, SRC_COPY, SRC_PAIR };

typedef struct {
    int a_src;
    pz_variant a;
    int f_src;
    pz_variant f;
} plan_t;

#define GQA(n) ((pz_variant){.attn = PZ_ATTN_GQA, .size = (n)})
#define SWI(n) ((pz_variant){.ffn = PZ_FFN_SWIGLU, .size = (n)})
#define ALIN ((pz_variant){.attn = PZ_ATTN_LINEAR, .size = 0})
#define FLIN ((pz_variant){.ffn = PZ_FFN_LINEAR, .size = 0})
#define ANOOP ((pz_variant){.attn = PZ_ATTN_NOOP, .size = 0})
#define FNOOP ((pz_variant){.ffn = PZ_FFN_NOOP, .size = 0})

// Variant 0: g4:s96 g2:l l:s160 n:s64 g1:n g2:s96
static const plan_t plan0[] = {
    {SRC_FILE, GQA(2), SRC_FILE, SWI(64)},     // gqa -> fewer KV heads, swiglu -> narrower
    {SRC_FILE, ALIN, SRC_PARENT, FLIN},        // gqa -> linear; parent's linear FFN kept
    {SRC_PARENT, ALIN, SRC_FILE, FLIN},        // parent's linear attention; swiglu -> linear
    {SRC_NOOP, ANOOP, SRC_NOOP, FNOOP},        // parent noop kept; swiglu -> noop
    {SRC_NOOP, ANOOP, SRC_PARENT, FNOOP},      // gqa -> noop; parent noop FFN
    {SRC_PAIR, GQA(1), SRC_PAIR, SWI(32)},     // coupled pair
};
// Variant 1 (tied): g3:s128 n:n g6:l l:l g2:s40
static const plan_t plan1[] = {
    {SRC_PAIR, GQA(1), SRC_PAIR, FLIN},
    {SRC_NOOP, ANOOP, SRC_NOOP, FNOOP},
    {SRC_FILE, GQA(3), SRC_NOOP, FNOOP},       // linear FFN -> noop
    {SRC_NOOP, ANOOP, SRC_COPY, FLIN},         // linear attention -> noop; parent copy from a file
    {SRC_PARENT, GQA(2), SRC_FILE, SWI(24)},
};
// Variant 2: g3:s256 g1:s512 g3:s256 g1:s200
static const plan_t plan2[] = {
    {SRC_FILE, GQA(1), SRC_FILE, SWI(128)},
    {SRC_FILE, ALIN, SRC_FILE, FLIN},
    {SRC_PAIR, ALIN, SRC_PAIR, FNOOP},         // a pair whose FFN is noop
    {SRC_COPY, GQA(1), SRC_PARENT, SWI(200)},
};

static const plan_t *plan_of(int variant, int *n) {
    switch (variant) {
    case 0: *n = (int)(sizeof plan0 / sizeof plan0[0]); return plan0;
    case 1: *n = (int)(sizeof plan1 / sizeof plan1[0]); return plan1;
    default: *n = (int)(sizeof plan2 / sizeof plan2[0]); return plan2;
    }
}

static void fill_norm(float *x, int n, uint64_t *rng) {
    for (int i = 0; i < n; i++) x[i] = 1.0f + 0.2f * pz_test_randn(rng);
}

// Random block weights at the scales tests/testmodel.c uses.
static void fill_block(pz_block_weights *w, uint64_t *rng) {
    const size_t H = (size_t)w->hidden, qd = (size_t)w->n_head * w->head_dim;
    const float sh = 1.0f / sqrtf((float)H);
    if (w->attn_norm) fill_norm(w->attn_norm, (int)H, rng);
    if (w->wq) {
        size_t kvd = (size_t)w->attn.size * w->head_dim;
        pz_test_fill_randn(w->wq, qd * H, 2.0f * sh, rng);
        pz_test_fill_randn(w->wk, kvd * H, 2.0f * sh, rng);
        pz_test_fill_randn(w->wv, kvd * H, sh, rng);
        pz_test_fill_randn(w->wo, H * qd, 0.5f / sqrtf((float)qd), rng);
    }
    if (w->attn_lin) pz_test_fill_randn(w->attn_lin, H * H, 0.5f * sh, rng);
    if (w->ffn_norm) fill_norm(w->ffn_norm, (int)H, rng);
    if (w->gate) {
        size_t F = (size_t)w->ffn.size;
        pz_test_fill_randn(w->gate, F * H, 1.5f * sh, rng);
        pz_test_fill_randn(w->up, F * H, sh, rng);
        pz_test_fill_randn(w->down, H * F, 0.7f / sqrtf((float)F), rng);
    }
    if (w->ffn_lin) pz_test_fill_randn(w->ffn_lin, H * H, 0.5f * sh, rng);
}

// Writes the block file of one half (or pair) of layer l into path.
static int write_block(const pz_model *parent, int l, pz_sub_kind sub, int src, pz_variant a, pz_variant f,
                       const char *path, pz_st_dtype dt, uint64_t *rng) {
    pz_block_weights w;
    int rc;
    if (src == SRC_COPY) {
        rc = pz_block_weights_from_parent(&w, parent, l, sub, err);
        if (rc == 0)
            for (size_t i = 0; i < w.n_floats; i++) w.arena[i] *= 1.0f + 0.1f * pz_test_randn(rng);
    } else {
        rc = pz_block_weights_alloc(&w, &parent->cfg, l, sub, a, f, err);
        if (rc == 0) fill_block(&w, rng);
    }
    if (rc == 0) rc = pz_block_weights_save(&w, path, dt, NULL, NULL, err);
    pz_block_weights_free(&w);
    CHECKF(rc == 0, "%s", err);
    return rc;
}

typedef struct {
    int n;
    pz_realize_layer req[PZ_MAX_LAYERS];
    char path[PZ_MAX_LAYERS][2][600];  // [l][0]: attention (or pair) file, [l][1]: FFN file
} request_t;

// Writes the files of a plan and fills the request.
static int make_request(request_t *r, const pz_model *parent, int variant, const char *dir, pz_st_dtype dt,
                        uint64_t *rng) {
    int n;
    const plan_t *p = plan_of(variant, &n);
    CHECK(n == parent->cfg.n_layer);
    memset(r, 0, sizeof *r);
    r->n = n;
    for (int l = 0; l < n; l++) {
        pz_realize_layer *q = &r->req[l];
        q->attn = p[l].a, q->ffn = p[l].f;
        if (p[l].a_src == SRC_PAIR) {
            snprintf(r->path[l][0], sizeof r->path[l][0], "%s/L%02d.pair.safetensors", dir, l);
            if (write_block(parent, l, PZ_SUB_PAIR, SRC_FILE, p[l].a, p[l].f, r->path[l][0], dt, rng)) return -1;
            q->attn_file = q->ffn_file = r->path[l][0];
            continue;
        }
        if (p[l].a_src == SRC_FILE || p[l].a_src == SRC_COPY) {
            snprintf(r->path[l][0], sizeof r->path[l][0], "%s/L%02d.attn.safetensors", dir, l);
            if (write_block(parent, l, PZ_SUB_ATTN, p[l].a_src, p[l].a, p[l].f, r->path[l][0], dt, rng)) return -1;
            q->attn_file = r->path[l][0];
        }
        if (p[l].f_src == SRC_FILE || p[l].f_src == SRC_COPY) {
            snprintf(r->path[l][1], sizeof r->path[l][1], "%s/L%02d.ffn.safetensors", dir, l);
            if (write_block(parent, l, PZ_SUB_FFN, p[l].f_src, p[l].a, p[l].f, r->path[l][1], dt, rng)) return -1;
            q->ffn_file = r->path[l][1];
        }
    }
    return 0;
}

// ---- the substitution model, built without realize.c ------------------------------

typedef struct {
    pz_model m;                          // shallow copy of the parent, layers redirected
    pz_block_weights blk[PZ_MAX_LAYERS][2];
    void *own[PZ_MAX_LAYERS * 8];        // bf16 copies (as_bf16) or moved fp32 copies
    int n_own;
} subst_t;

static pz_mat f32_mat(float *data, int rows, int cols) {
    return (pz_mat){.data = data, .type = PZ_DT_F32, .rows = rows, .cols = cols};
}

// as_bf16: store the block matrices as bf16 copies (rounded here), the way
// a bf16 child holds them, so that only the code under test can differ.
static void maybe_bf16(subst_t *s, pz_mat *w, int as_bf16) {
    if (!as_bf16 || !w->data) return;
    size_t n = (size_t)w->rows * w->cols;
    uint16_t *b = malloc(n * sizeof *b);
    if (!b) abort();
    pz_f32_to_bf16_row(w->data, b, n);
    s->own[s->n_own++] = b;
    w->data = b, w->type = PZ_DT_BF16;
}

// Moves an fp32 matrix to a buffer of its own, so that the block arena's
// [q;k;v] / [gate;up] adjacency is broken and the engine runs its separate
// products for those halves.
static void move_f32(subst_t *s, pz_mat *w) {
    if (!w->data || w->type != PZ_DT_F32) return;
    size_t bytes = sizeof(float) * (size_t)w->rows * w->cols;
    void *b = malloc(bytes + 64);  // + 64: never directly after the previous allocation's end
    if (!b) abort();
    memcpy(b, w->data, bytes);
    s->own[s->n_own++] = b;
    w->data = b;
}

static void subst_free(subst_t *s) {
    if (!s) return;
    for (int l = 0; l < PZ_MAX_LAYERS; l++) pz_block_weights_free(&s->blk[l][0]), pz_block_weights_free(&s->blk[l][1]);
    for (int i = 0; i < s->n_own; i++) free(s->own[i]);
    free(s->m.layers);
    free(s);
}

static subst_t *subst_build(const pz_model *parent, const request_t *r, int as_bf16) {
    subst_t *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->m = *parent;
    s->m.arena = NULL;
    s->m.layers = malloc(sizeof(pz_layer_weights) * (size_t)parent->cfg.n_layer);
    if (!s->m.layers) abort();
    memcpy(s->m.layers, parent->layers, sizeof(pz_layer_weights) * (size_t)parent->cfg.n_layer);
    const int H = parent->cfg.hidden, qd = parent->cfg.n_head * parent->cfg.head_dim;
    for (int l = 0; l < r->n; l++) {
        const pz_realize_layer *q = &r->req[l];
        pz_layer_spec *sp = &s->m.cfg.layers[l];
        pz_layer_weights *L = &s->m.layers[l];
        sp->attn = q->attn.attn, sp->n_kv = q->attn.size;
        sp->ffn = q->ffn.ffn, sp->n_ff = q->ffn.size;
        if (q->attn_file) {
            pz_block_weights *b = &s->blk[l][0];
            CHECKF(pz_block_weights_load(b, &parent->cfg, q->attn_file, err) == 0, "%s", err);
            L->attn_norm = b->attn_norm;
            L->wq = L->wk = L->wv = L->wo = (pz_mat){0};
            if (b->wq) {
                int kvd = q->attn.size * parent->cfg.head_dim;
                L->wq = f32_mat(b->wq, qd, H), L->wk = f32_mat(b->wk, kvd, H);
                L->wv = f32_mat(b->wv, kvd, H), L->wo = f32_mat(b->wo, H, qd);
            } else if (b->attn_lin) {
                L->wo = f32_mat(b->attn_lin, H, H);
            }
        } else if (q->attn.attn == PZ_ATTN_NOOP) {
            L->attn_norm = NULL;
            L->wq = L->wk = L->wv = L->wo = (pz_mat){0};
        }
        if (q->ffn_file) {
            pz_block_weights *b = &s->blk[l][1];
            CHECKF(pz_block_weights_load(b, &parent->cfg, q->ffn_file, err) == 0, "%s", err);
            L->ffn_norm = b->ffn_norm;
            L->w_gate = L->w_up = L->w_down = (pz_mat){0};
            if (b->gate) {
                int F = q->ffn.size;
                L->w_gate = f32_mat(b->gate, F, H), L->w_up = f32_mat(b->up, F, H);
                L->w_down = f32_mat(b->down, H, F);
            } else if (b->ffn_lin) {
                L->w_down = f32_mat(b->ffn_lin, H, H);
            }
        } else if (q->ffn.ffn == PZ_FFN_NOOP) {
            L->ffn_norm = NULL;
            L->w_gate = L->w_up = L->w_down = (pz_mat){0};
        }
        if (q->attn_file) {
            maybe_bf16(s, &L->wq, as_bf16), maybe_bf16(s, &L->wk, as_bf16);
            maybe_bf16(s, &L->wv, as_bf16), maybe_bf16(s, &L->wo, as_bf16);
        }
        if (q->ffn_file) {
            maybe_bf16(s, &L->w_gate, as_bf16), maybe_bf16(s, &L->w_up, as_bf16);
            maybe_bf16(s, &L->w_down, as_bf16);
        }
        if (!as_bf16 && (l & 1)) move_f32(s, &L->wv), move_f32(s, &L->w_up);  // odd layers: unfused
    }
    return s;
}

// ---- running ------------------------------------------------------------------------

// Logits of N_PROMPT prefill tokens (all rows) then N_DECODE decode steps:
// N_ROWS x vocab floats (caller frees), or NULL.
static float *run_logits(const pz_model *m, const int32_t *tok) {
    pz_engine_params p = pz_engine_default_params();
    p.n_threads = 2, p.max_ctx = 64;
    pz_engine *e = pz_engine_create(m, p, err);
    CHECKF(e != NULL, "%s", err);
    if (!e) return NULL;
    const int V = m->cfg.vocab;
    float *out = malloc(sizeof(float) * (size_t)N_ROWS * V);
    if (!out) abort();
    int ok = pz_engine_prefill(e, 0, tok, N_PROMPT, out, 1, err) == 0;
    CHECKF(ok, "%s", err);
    int slot = 0;
    for (int i = 0; ok && i < N_DECODE; i++) {
        ok = pz_engine_decode(e, &slot, &tok[N_PROMPT + i], 1, out + (size_t)(N_PROMPT + i) * V, err) == 0;
        CHECKF(ok, "%s", err);
    }
    pz_engine_free(e);
    if (!ok) free(out), out = NULL;
    return out;
}

static double worst[4];  // max errors seen: f32 parent; bf16 parent vs f32 substitution (prefill, decode); bf16 vs bf16

static void test_combo(int variant, pz_dt wt, pz_st_dtype dt, const char *dir) {
    char tag[64];
    snprintf(tag, sizeof tag, "variant %d, %s parent, %s files", variant, wt == PZ_DT_BF16 ? "bf16" : "f32",
             dt == PZ_ST_BF16 ? "BF16" : "F32");
    pz_config c;
    pz_testmodel_config(&c, variant);
    pz_model *parent = pz_testmodel_random(&c, wt, 100 + (uint64_t)variant, err);
    CHECKF(parent != NULL, "%s", err);
    if (!parent) return;
    uint64_t rng = 7 + (uint64_t)variant * 31 + (uint64_t)dt;
    request_t *r = malloc(sizeof *r);
    if (!r) abort();
    int32_t tok[N_ROWS];
    for (int i = 0; i < N_ROWS; i++) tok[i] = (int32_t)(pz_test_rand_u64(&rng) % (uint64_t)c.vocab);
    if (make_request(r, parent, variant, dir, dt, &rng)) goto out_r;

    pz_model *child = pz_realize_child(parent, r->req, err);
    CHECKF(child != NULL, "%s: %s", tag, err);
    if (!child) goto out_r;
    CHECK(child->wtype == wt && child->cfg.tie_embeddings == c.tie_embeddings);
    if (c.tie_embeddings) CHECK(child->lm_head.data == child->tok_embd.data);
    for (int l = 0; l < c.n_layer; l++) {
        const pz_layer_spec *s = &child->cfg.layers[l];
        CHECKF(s->attn == r->req[l].attn.attn && s->n_kv == r->req[l].attn.size &&
               s->ffn == r->req[l].ffn.ffn && s->n_ff == r->req[l].ffn.size, "%s: layer %d spec", tag, l);
        CHECK((child->layers[l].attn_norm == NULL) == (s->attn == PZ_ATTN_NOOP));
        CHECK((child->layers[l].ffn_norm == NULL) == (s->ffn == PZ_FFN_NOOP));
    }
    float *lc = run_logits(child, tok);

    // The substitution with the loaded fp32 block arrays.
    subst_t *s32 = subst_build(parent, r, 0);
    float *ls = run_logits(&s32->m, tok);
    const size_t V = (size_t)c.vocab, np = N_PROMPT * V, nd = N_DECODE * V;
    if (lc && ls) {
        double ep = pz_rel_err_f(lc, ls, np), ed = pz_rel_err_f(lc + np, ls + np, nd);
        printf("%-40s child vs f32 substitution: prefill %.3g, decode %.3g\n", tag, ep, ed);
        if (wt == PZ_DT_F32) {
            // Same fp32 weights (BF16 files load as exactly representable fp32); only the fused vs
            // separate q/k/v and gate/up products differ (measured: bit-identical).
            CHECKF(ep < 1e-5 && ed < 1e-5, "%s: prefill %g decode %g", tag, ep, ed);
            worst[0] = fmax(worst[0], fmax(ep, ed));
        } else {
            // A bf16 child holds the block weights rounded to bf16 (relative 2^-9 each) where the
            // substitution multiplies the fp32 arrays, and in prefill (>8 rows) its bf16 products
            // also round the activations to bf16. With BF16 files the weights agree and only the
            // activation rounding is left; decode itself uses fp32 activations, but attends over
            // K/V written by the prefill, so it inherits that difference. Measured: at most ~8e-3.
            const double tol = 2e-2;
            CHECKF(ep < tol && ed < tol, "%s: prefill %g decode %g", tag, ep, ed);
            worst[1] = fmax(worst[1], ep);
            worst[2] = fmax(worst[2], ed);
        }
    }
    // The comparison means something only if the substitutions change the output.
    float *lp = run_logits(parent, tok);
    if (lp && lc) {
        double e = pz_rel_err_f(lc, lp, N_ROWS * V);
        CHECKF(e > 0.1, "%s: child's logits differ from the parent's by only %g", tag, e);
    }
    free(lp);
    if (wt == PZ_DT_BF16) {
        // The substitution with bf16 block matrices rounded by the test: the same numbers as the child.
        subst_t *s16 = subst_build(parent, r, 1);
        float *lb = run_logits(&s16->m, tok);
        if (lc && lb) {
            double e = pz_rel_err_f(lc, lb, N_ROWS * V);
            printf("%-40s child vs bf16 substitution: %.3g\n", tag, e);
            CHECKF(e < 1e-5, "%s: %g", tag, e);
            worst[3] = fmax(worst[3], e);
        }
        free(lb);
        subst_free(s16);
    }

    // Save + load round trip: same dtype, so bit-identical logits.
    char mdir[700];
    snprintf(mdir, sizeof mdir, "%s/child_v%d_%d_%d", dir, variant, (int)wt, (int)dt);
    CHECKF(pz_model_save_hf(child, mdir, err) == 0, "%s", err);
    pz_model *back = pz_model_load(mdir, wt, err);
    CHECKF(back != NULL, "%s: %s", tag, err);
    if (back && lc) {
        CHECK(back->cfg.n_layer == c.n_layer && back->cfg.tie_embeddings == c.tie_embeddings);
        CHECK(memcmp(back->cfg.layers, child->cfg.layers, sizeof(pz_layer_spec) * (size_t)c.n_layer) == 0);
        float *lbk = run_logits(back, tok);
        CHECKF(lbk && memcmp(lbk, lc, sizeof(float) * N_ROWS * V) == 0, "%s: reloaded child's logits differ", tag);
        free(lbk);
    }
    pz_model_free(back);

    free(ls);
    subst_free(s32);
    free(lc);
    pz_model_free(child);
out_r:
    free(r);
    pz_model_free(parent);
}

// ---- errors -------------------------------------------------------------------------

static void expect_fail(const pz_model *parent, const pz_realize_layer *req, const char *what, const char *n1,
                        const char *n2) {
    err[0] = 0;
    pz_model *m = pz_realize_child(parent, req, err);
    CHECKF(m == NULL, "%s: accepted", what);
    pz_model_free(m);
    CHECKF(strstr(err, n1) != NULL, "%s: error '%s' lacks '%s'", what, err, n1);
    if (n2) CHECKF(strstr(err, n2) != NULL, "%s: error '%s' lacks '%s'", what, err, n2);
}

static void copy_file_prefix(const char *from, const char *to, long keep) {
    FILE *f = fopen(from, "rb"), *g = fopen(to, "wb");
    CHECK(f && g);
    if (!f || !g) {
        if (f) fclose(f);
        if (g) fclose(g);
        return;
    }
    char buf[4096];
    long done = 0;
    size_t n;
    while (done < keep && (n = fread(buf, 1, sizeof buf, f)) > 0) {
        size_t w = (size_t)(keep - done) < n ? (size_t)(keep - done) : n;
        CHECK(fwrite(buf, 1, w, g) == w);
        done += (long)w;
    }
    fclose(f);
    fclose(g);
}

static long file_len(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void test_errors(const char *dir) {
    pz_config c;
    pz_testmodel_config(&c, 0);
    pz_model *parent = pz_testmodel_random(&c, PZ_DT_F32, 5, err);
    CHECKF(parent != NULL, "%s", err);
    if (!parent) return;
    uint64_t rng = 99;
    request_t *r = malloc(sizeof *r);
    if (!r) abort();
    if (make_request(r, parent, 0, dir, PZ_ST_F32, &rng)) goto out;
    pz_realize_layer req[PZ_MAX_LAYERS];
    const size_t nb = sizeof(pz_realize_layer) * (size_t)c.n_layer;
    memcpy(req, r->req, nb);
    pz_model *ok = pz_realize_child(parent, req, err);
    CHECKF(ok != NULL, "%s", err);
    pz_model_free(ok);

    // Layer 1's linear attention offered for layer 0.
    req[0].attn = ALIN, req[0].attn_file = r->path[1][0];
    expect_fail(parent, req, "wrong layer", r->path[1][0], "for layer 1, not layer 0");
    // Layer 0's gqa_kv2 file where gqa_kv1 is wanted.
    memcpy(req, r->req, nb);
    req[0].attn = GQA(1);
    expect_fail(parent, req, "wrong variant", "gqa_kv2", "gqa_kv1");
    // The FFN file named as the attention half.
    memcpy(req, r->req, nb);
    req[0].attn_file = r->path[0][1];
    expect_fail(parent, req, "wrong half", "holds no attention half", r->path[0][1]);
    // Wrong FFN width from a file.
    memcpy(req, r->req, nb);
    req[0].ffn = SWI(48);
    expect_fail(parent, req, "wrong width", "swiglu_64", "swiglu_48");
    // No file for a variant the parent does not have.
    memcpy(req, r->req, nb);
    req[0].attn = GQA(1), req[0].attn_file = NULL;
    expect_fail(parent, req, "no file", "layer 0 attention gqa_kv1 needs a block file: the parent has gqa_kv4", NULL);
    memcpy(req, r->req, nb);
    req[2].ffn_file = NULL;
    expect_fail(parent, req, "no file (ffn)", "layer 2 FFN linear needs a block file: the parent has swiglu_160", NULL);
    // Missing file.
    char missing[700];
    snprintf(missing, sizeof missing, "%s/no_such_block.safetensors", dir);
    memcpy(req, r->req, nb);
    req[0].attn_file = missing;
    expect_fail(parent, req, "missing file", "no_such_block.safetensors", "layer 0");
    // Truncated files: inside the tensor data, and inside the header.
    char trunc[700];
    snprintf(trunc, sizeof trunc, "%s/truncated.safetensors", dir);
    long len = file_len(r->path[0][0]);
    CHECK(len > 1000);
    copy_file_prefix(r->path[0][0], trunc, len / 2);
    req[0].attn_file = trunc;
    expect_fail(parent, req, "truncated data", "truncated.safetensors", "layer 0");
    printf("truncated data: %s\n", err);
    copy_file_prefix(r->path[0][0], trunc, 20);
    expect_fail(parent, req, "truncated header", "truncated.safetensors", "truncated");
    printf("truncated header: %s\n", err);
    // Bad requests.
    memcpy(req, r->req, nb);
    req[0].attn = GQA(3);
    expect_fail(parent, req, "n_kv not dividing", "3 KV heads do not divide 4", NULL);
    memcpy(req, r->req, nb);
    req[3].ffn = (pz_variant){.ffn = PZ_FFN_NOOP, .size = 5};
    expect_fail(parent, req, "size on noop", "layer 3 FFN", "size 0");
out:
    free(r);
    pz_model_free(parent);
}

int main(void) {
    char *dir = pz_test_tmpdir("realize");
    CHECK(dir != NULL);
    if (!dir) return pz_test_finish("test_realize");
    const int variants[] = {0, 1, 2};
    for (int vi = 0; vi < 3; vi++)
        for (int wt = PZ_DT_F32; wt <= PZ_DT_BF16; wt++)
            for (int d = 0; d < 2; d++) {
                char sub[600];
                snprintf(sub, sizeof sub, "%s/v%d_%d_%d", dir, variants[vi], wt, d);
                CHECK(mkdir(sub, 0755) == 0);
                test_combo(variants[vi], (pz_dt)wt, d ? PZ_ST_BF16 : PZ_ST_F32, sub);
            }
    printf("max errors: f32 parent %.3g; bf16 parent vs f32 substitution: prefill %.3g, decode %.3g; "
           "bf16 parent vs bf16 substitution %.3g\n", worst[0], worst[1], worst[2], worst[3]);
    char edir[600];
    snprintf(edir, sizeof edir, "%s/errors", dir);
    CHECK(mkdir(edir, 0755) == 0);
    test_errors(edir);

    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
    return pz_test_finish("test_realize");
}
