// score.c — see score.h.
#include "score.h"
#include "common.h"
#include "subblock.h"
#include "tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXEC 64

struct pz_scorer {
    const pz_model *m;
    pz_score_params p;
    int H, V, T, n_layer, R;   // R: rows per chunk (whole windows)
    long n_tok, n_seq;
    int32_t *tokens;           // (n_tok)
    pz_block_weights *pw;      // (n_layer) the parent's layers in fp32 (PAIR)
    const pz_block_weights **ba, **bf;  // (n_layer) the base's attention / FFN half of each layer
    pz_score_result base;      // the base against the parent (the parent: KL 0, top-1 1)
    float *lm;                 // (V, H) fp32 LM head
    float **xcache;            // (n_layer) (n_tok, H) residual entering layer l, or NULL
    float *prob;               // (n_tok, V) parent probabilities
    double *rowA, *rowS;       // (n_tok) per row: Σ p·log p (in the logits' terms) and Σ p, see row_kl
    int32_t *amax;             // (n_tok) parent argmax
    float *nll;                // (n_tok) parent NLL of the next token (0 at a window's end)
    double parent_nll;
    double *bi;                // (n_layer) block influence, see score.h
    float *xin;                // (R, H) the residual entering the layer being run (parent pass)
    float *x, *y, *xn, *logits;  // scratch: (R, H) x3, (R, V)
    pz_backend *be;
    pz_sub_exec *ex[MAX_EXEC];
    int n_ex;
    size_t bytes;
};

pz_score_params pz_score_default_params(void) {
    return (pz_score_params){.n_threads = 1, .prec = PZ_DT_F32, .cache_stride = 1, .max_rows = 1024};
}

static pz_sub_exec *get_exec(pz_scorer *s, pz_sub_kind half, pz_variant v, char *err) {
    for (int i = 0; i < s->n_ex; i++) {
        pz_variant w = pz_sub_exec_variant(s->ex[i]);
        if (pz_sub_exec_half(s->ex[i]) == half && pz_variant_eq(half, w, v)) return s->ex[i];
    }
    if (s->n_ex == MAX_EXEC) {  // many distinct variants: drop the oldest
        pz_sub_exec_free(s->ex[0]);
        memmove(s->ex, s->ex + 1, sizeof(s->ex[0]) * (MAX_EXEC - 1));
        s->n_ex--;
    }
    pz_sub_exec *e = pz_sub_exec_create(&s->m->cfg, half, v, s->R, s->p.prec, s->be, err);
    if (e) s->ex[s->n_ex++] = e;
    return e;
}

// x += branch of one half (from w) over ns windows.
static int run_half(pz_scorer *s, pz_sub_kind half, const pz_block_weights *w, int ns, char *err) {
    pz_variant v = half == PZ_SUB_ATTN ? w->attn : w->ffn;
    if (pz_variant_is_noop(half, v)) return 0;  // x unchanged
    pz_sub_exec *e = get_exec(s, half, v, err);
    if (!e || pz_sub_exec_fwd(e, w, s->x, ns, s->T, s->y, err)) return -1;
    const size_t n = (size_t)ns * s->T * s->H;
    float *x = s->x;
    const float *y = s->y;
#pragma omp parallel for num_threads(s->p.n_threads) schedule(static)
    for (size_t i = 0; i < n; i++) x[i] += y[i];
    return 0;
}

// Layers [l0, n_layer) of the base on s->x (ns windows); layer `swap` (or -1)
// takes its attention half from sa and its FFN half from sf where they are
// not NULL. Then the final norm and the LM head into s->logits.
static int forward_from(pz_scorer *s, int l0, int swap, const pz_block_weights *sa, const pz_block_weights *sf,
                        int ns, char *err) {
    for (int l = l0; l < s->n_layer; l++) {
        const pz_block_weights *wa = s->ba[l], *wf = s->bf[l];
        if (l == swap) {
            if (sa) wa = sa;
            if (sf) wf = sf;
        }
        if (run_half(s, PZ_SUB_ATTN, wa, ns, err) || run_half(s, PZ_SUB_FFN, wf, ns, err)) return -1;
    }
    const int M = ns * s->T;
    s->be->train->rmsnorm_fwd(s->be, s->xn, NULL, s->x, s->m->out_norm, M, s->H, s->m->cfg.norm_eps);
    return s->be->train->linear_fwd(s->be, s->logits, s->xn, s->lm, M, s->V, s->H, s->p.prec, err);
}

// exp(x) for x in [-87, 88] (clamped), relative error ~2e-7, in plain C
// that the compiler vectorizes inside `omp simd` loops (libm's expf is a
// call per element: it was most of a block's time on small models). Round
// to nearest by the 1.5·2^23 trick, Cody-Waite reduction, degree-7 Taylor.
// (The clamps vectorize as min/max only without NaN and signed-zero rules.)
#define PZ_FINITE __attribute__((optimize("finite-math-only", "no-signed-zeros", "no-trapping-math")))
PZ_FINITE static inline float exp_approx(float x) {
    x = x > -87.0f ? x : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    const float magic = 12582912.0f;
    float n = (x * 1.44269504088896341f + magic) - magic;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.0f / 5040;
    p = p * r + 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { int32_t i; float f; } sc = {.i = ((int32_t)n + 127) << 23};
    return p * sc.f;
}

// The log-sum-exp of a logits row (double), and its argmax (first maximum).
PZ_FINITE static double row_lse(const float *z, int V, int *argmax) {
    float mx = z[0];
#pragma omp simd reduction(max : mx)
    for (int v = 0; v < V; v++) mx = z[v] > mx ? z[v] : mx;
    int am = 0;
    while (am < V - 1 && z[am] != mx) am++;
    double sum = 0;
    for (int v0 = 0; v0 < V; v0 += 1024) {  // float lanes per 1024, double across
        const int v1 = V - v0 < 1024 ? V : v0 + 1024;
        float part = 0;
#pragma omp simd reduction(+ : part)
        for (int v = v0; v < v1; v++) part += exp_approx(z[v] - mx);
        sum += part;
    }
    *argmax = am;
    return mx + log(sum);
}

PZ_FINITE static double row_dot(const float *p, const float *z, int V) {
    double d = 0;
    for (int v0 = 0; v0 < V; v0 += 1024) {
        const int v1 = V - v0 < 1024 ? V : v0 + 1024;
        float part = 0;
#pragma omp simd reduction(+ : part)
        for (int v = v0; v < v1; v++) part += p[v] * z[v];
        d += part;
    }
    return d;
}

// KL(p‖q) of a row without a second pass of exponentials: with parent
// logits zp (lse_p) and child logits zc (lse_c), log p = zp − lse_p and
// log q = zc − lse_c, so Σ p (log p − log q) = A − Σ p·zc + lse_c·S where
// A = Σ p·zp − lse_p·S and S = Σ p are kept per row from the parent pass
// (S is 1 up to the rounding of the stored p; keeping it makes a child
// identical to the parent give 0 to double rounding).

static void mat_to_f32(const pz_mat *a, float *dst) {
    size_t n = (size_t)a->rows * a->cols;
    if (a->type == PZ_DT_F32) memcpy(dst, a->data, n * sizeof(float));
    else pz_bf16_to_f32_row(a->data, dst, n);
}

static void embed(const pz_scorer *s, long row0, int M) {
    const pz_mat *E = &s->m->tok_embd;
    for (int r = 0; r < M; r++) {
        int id = s->tokens[row0 + r];
        float *dst = s->x + (size_t)r * s->H;
        if (E->type == PZ_DT_F32) memcpy(dst, (const float *)E->data + (size_t)id * s->H, sizeof(float) * s->H);
        else pz_bf16_to_f32_row((const uint16_t *)E->data + (size_t)id * s->H, dst, (size_t)s->H);
    }
}

static int has_half(const pz_block_weights *w, pz_sub_kind half) {
    return w->sub == PZ_SUB_PAIR || w->sub == half;
}

static void *xalloc(pz_scorer *s, size_t n, size_t sz) {
    size_t b;
    if (pz_mul_size(n, sz, &b)) return NULL;
    s->bytes += b;
    return malloc(b ? b : 1);
}

pz_scorer *pz_scorer_create(const pz_model *m, const int32_t *tokens, long n_tokens, int seq_len,
                            const pz_score_params *pp, char *err) {
    const pz_config *c = &m->cfg;
    if (seq_len < 2 || n_tokens < seq_len)
        return pz_err(err, "score: %ld tokens make no window of %d", n_tokens, seq_len), NULL;
    pz_scorer *s = calloc(1, sizeof *s);
    if (!s) return pz_err(err, "score: out of memory"), NULL;
    s->m = m;
    s->p = pp ? *pp : pz_score_default_params();
    if (s->p.n_threads < 1) s->p.n_threads = 1;
    if (s->p.cache_stride < 1) s->p.cache_stride = 1;
    s->H = c->hidden, s->V = c->vocab, s->T = seq_len, s->n_layer = c->n_layer;
    s->n_seq = n_tokens / seq_len, s->n_tok = s->n_seq * seq_len;
    int wpc = s->p.max_rows / seq_len;
    if (wpc < 1) wpc = 1;
    if (wpc > s->n_seq) wpc = (int)s->n_seq;
    s->R = wpc * seq_len;
    const size_t H = (size_t)s->H, V = (size_t)s->V, N = (size_t)s->n_tok, R = (size_t)s->R;
    for (long i = 0; i < s->n_tok; i++)
        if (tokens[i] < 0 || tokens[i] >= c->vocab) {
            pz_err(err, "score: token %ld has id %d outside the vocabulary (%d)", i, tokens[i], c->vocab);
            goto fail;
        }
    s->tokens = xalloc(s, N, sizeof(int32_t));
    s->pw = calloc((size_t)s->n_layer, sizeof *s->pw);
    s->ba = calloc((size_t)s->n_layer, sizeof *s->ba);
    s->bf = calloc((size_t)s->n_layer, sizeof *s->bf);
    s->xcache = calloc((size_t)s->n_layer, sizeof *s->xcache);
    s->lm = xalloc(s, V, H * sizeof(float));
    s->prob = xalloc(s, N, V * sizeof(float));
    s->rowA = xalloc(s, N, sizeof(double));
    s->rowS = xalloc(s, N, sizeof(double));
    s->amax = xalloc(s, N, sizeof(int32_t));
    s->nll = xalloc(s, N, sizeof(float));
    s->x = xalloc(s, R, H * sizeof(float));
    s->y = xalloc(s, R, H * sizeof(float));
    s->xn = xalloc(s, R, H * sizeof(float));
    s->logits = xalloc(s, R, V * sizeof(float));
    if (!s->tokens || !s->pw || !s->ba || !s->bf || !s->xcache || !s->lm || !s->prob || !s->rowA || !s->rowS || !s->amax || !s->nll || !s->x || !s->y ||
        !s->xn || !s->logits)
        goto oom;
    memcpy(s->tokens, tokens, N * sizeof(int32_t));
    for (int l = 0; l < s->n_layer; l += s->p.cache_stride)
        if (!(s->xcache[l] = xalloc(s, N, H * sizeof(float)))) goto oom;
    for (int l = 0; l < s->n_layer; l++) {
        if (pz_block_weights_from_parent(&s->pw[l], m, l, PZ_SUB_PAIR, err)) goto fail;
        s->bytes += pz_block_weights_count(&s->pw[l]) * sizeof(float);
        s->ba[l] = s->bf[l] = &s->pw[l];
    }
    mat_to_f32(&m->lm_head, s->lm);
    if (!(s->be = pz_backend_create(s->p.backend, s->p.n_threads, err))) goto fail;

    // The parent pass: cache the residual entering each kept layer, keep the
    // log-probs. The same chunks and code as the scoring passes.
    double nll_sum = 0;
    if (!(s->bi = calloc((size_t)s->n_layer, sizeof *s->bi)) ||
        !(s->xin = malloc(sizeof(float) * (size_t)s->R * H)))
        goto oom;
    for (long s0 = 0; s0 < s->n_seq; s0 += wpc) {
        const int ns = (int)(s->n_seq - s0 < wpc ? s->n_seq - s0 : wpc), M = ns * s->T;
        const long row0 = s0 * s->T;
        embed(s, row0, M);
        for (int l = 0; l < s->n_layer; l++) {
            if (s->xcache[l]) memcpy(s->xcache[l] + (size_t)row0 * H, s->x, sizeof(float) * (size_t)M * H);
            memcpy(s->xin, s->x, sizeof(float) * (size_t)M * H);
            if (run_half(s, PZ_SUB_ATTN, &s->pw[l], ns, err) || run_half(s, PZ_SUB_FFN, &s->pw[l], ns, err))
                goto fail;
            double cos_sum = 0;
#pragma omp parallel for num_threads(s->p.n_threads) schedule(static) reduction(+ : cos_sum)
            for (int r = 0; r < M; r++) {
                const float *a = s->xin + (size_t)r * H, *b = s->x + (size_t)r * H;
                double ab = 0, aa = 0, bb = 0;
                for (size_t i = 0; i < H; i++) {
                    ab += (double)a[i] * b[i];
                    aa += (double)a[i] * a[i];
                    bb += (double)b[i] * b[i];
                }
                cos_sum += aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 1.0;
            }
            s->bi[l] += cos_sum;
        }
        if (forward_from(s, s->n_layer, -1, NULL, NULL, ns, err)) goto fail;
#pragma omp parallel for num_threads(s->p.n_threads) schedule(static) reduction(+ : nll_sum)
        for (int r = 0; r < M; r++) {
            const long gr = row0 + r;
            const float *z = s->logits + (size_t)r * V;
            float *p = s->prob + (size_t)gr * V;
            int am;
            const double lse = row_lse(z, s->V, &am);
            const float l = (float)lse;
#pragma omp simd
            for (int v = 0; v < s->V; v++) p[v] = exp_approx(z[v] - l);
            double S = 0;
            for (int v = 0; v < s->V; v++) S += p[v];
            s->amax[gr] = am;
            s->rowS[gr] = S;
            s->rowA[gr] = row_dot(p, z, s->V) - lse * S;
            s->nll[gr] = 0;
            if (gr % s->T != s->T - 1) s->nll[gr] = (float)(lse - z[s->tokens[gr + 1]]);
            nll_sum += s->nll[gr];
        }
    }
    s->parent_nll = nll_sum / (double)(s->n_seq * (s->T - 1));
    for (int l = 0; l < s->n_layer; l++) s->bi[l] = 1.0 - s->bi[l] / (double)s->n_tok;
    s->base = (pz_score_result){.kl = 0, .loss_delta = 0, .top1 = 1, .parent_nll = s->parent_nll,
                                .child_nll = s->parent_nll, .tokens = s->n_seq * (s->T - 1),
                                .loss_tokens = s->n_seq * (s->T - 1)};
    free(s->xin);
    s->xin = NULL;
    return s;
oom:
    pz_err(err, "score: out of memory (%ld tokens, %d layers, vocab %d)", s->n_tok, s->n_layer, s->V);
fail:
    pz_scorer_free(s);
    return NULL;
}

void pz_scorer_block_influence(const pz_scorer *s, double *bi) {
    memcpy(bi, s->bi, sizeof(double) * (size_t)s->n_layer);
}

void pz_scorer_free(pz_scorer *s) {
    if (!s) return;
    for (int i = 0; i < s->n_ex; i++) pz_sub_exec_free(s->ex[i]);
    if (s->pw)
        for (int l = 0; l < s->n_layer; l++) pz_block_weights_free(&s->pw[l]);
    if (s->xcache)
        for (int l = 0; l < s->n_layer; l++) free(s->xcache[l]);
    pz_backend_free(s->be);
    free(s->pw);
    free(s->ba);
    free(s->bf);
    free(s->xcache);
    free(s->bi);
    free(s->xin);
    free(s->tokens);
    free(s->lm);
    free(s->prob);
    free(s->rowA);
    free(s->rowS);
    free(s->amax);
    free(s->nll);
    free(s->x);
    free(s->y);
    free(s->xn);
    free(s->logits);
    free(s);
}

long pz_scorer_n_tokens(const pz_scorer *s) { return s->n_tok; }
double pz_scorer_parent_nll(const pz_scorer *s) { return s->parent_nll; }
const float *pz_scorer_parent_probs(const pz_scorer *s) { return s->prob; }
size_t pz_scorer_bytes(const pz_scorer *s) { return s->bytes; }

// Adds the comparison of the child logits in s->logits (rows row0.. row0+M) with the parent's.
static void compare(pz_scorer *s, long row0, int M, double *kl_io, double *nll_io, double *agree_io) {
    const size_t V = (size_t)s->V;
    double kl = 0, nll = 0, agree = 0;
#pragma omp parallel for num_threads(s->p.n_threads) schedule(static) reduction(+ : kl, nll, agree)
    for (int i = 0; i < M; i++) {
        const long gr = row0 + i;
        if (gr % s->T == s->T - 1) continue;  // a window's last position predicts nothing here
        const float *z = s->logits + (size_t)i * V;
        int am;
        const double lse = row_lse(z, s->V, &am);
        double k = s->rowA[gr] - row_dot(s->prob + (size_t)gr * V, z, s->V) + lse * s->rowS[gr];
        kl += k > 0 ? k : 0;  // >= 0 in exact arithmetic; rounding can dip below
        agree += am == s->amax[gr];
        nll += lse - z[s->tokens[gr + 1]];
    }
    *kl_io += kl, *nll_io += nll, *agree_io += agree;
}

static int finish(const pz_scorer *s, double kl, double nll, double agree, double t0, pz_score_result *r,
                  char *err) {
    if (!isfinite(kl) || !isfinite(nll)) return pz_err(err, "score: the child's logits are not finite");
    r->tokens = r->loss_tokens = s->n_seq * (s->T - 1);
    r->kl = kl / (double)r->tokens;
    r->top1 = agree / (double)r->tokens;
    r->child_nll = nll / (double)r->loss_tokens;
    r->parent_nll = s->parent_nll;
    r->loss_delta = r->child_nll - r->parent_nll;
    r->wall_s = pz_now() - t0;
    return 0;
}

int pz_scorer_set_base(pz_scorer *s, const pz_block_weights *const *attn, const pz_block_weights *const *ffn,
                       char *err) {
    const double t0 = pz_now();
    for (int l = 0; l < s->n_layer; l++) {  // checked before anything changes
        const pz_block_weights *a = attn && attn[l] ? attn[l] : &s->pw[l];
        const pz_block_weights *f = ffn && ffn[l] ? ffn[l] : &s->pw[l];
        if (a->layer != l || f->layer != l || !has_half(a, PZ_SUB_ATTN) || !has_half(f, PZ_SUB_FFN) ||
            a->hidden != s->H || f->hidden != s->H)
            return pz_err(err, "score: base layer %d: a block of layer %d/%d without the half it needs", l,
                          a->layer, f->layer);
    }
    for (int l = 0; l < s->n_layer; l++) {
        s->ba[l] = attn && attn[l] ? attn[l] : &s->pw[l];
        s->bf[l] = ffn && ffn[l] ? ffn[l] : &s->pw[l];
    }
    // The base pass: the residual entering each kept layer, then the comparison.
    const size_t H = (size_t)s->H;
    const int wpc = s->R / s->T;
    double kl = 0, nll = 0, agree = 0;
    for (long s0 = 0; s0 < s->n_seq; s0 += wpc) {
        const int ns = (int)(s->n_seq - s0 < wpc ? s->n_seq - s0 : wpc), M = ns * s->T;
        const long row0 = s0 * s->T;
        embed(s, row0, M);
        for (int l = 0; l < s->n_layer; l++) {
            if (s->xcache[l]) memcpy(s->xcache[l] + (size_t)row0 * H, s->x, sizeof(float) * (size_t)M * H);
            if (run_half(s, PZ_SUB_ATTN, s->ba[l], ns, err) || run_half(s, PZ_SUB_FFN, s->bf[l], ns, err)) goto fail;
        }
        if (forward_from(s, s->n_layer, -1, NULL, NULL, ns, err)) goto fail;
        compare(s, row0, M, &kl, &nll, &agree);
    }
    if (finish(s, kl, nll, agree, t0, &s->base, err)) goto fail;
    return 0;
fail:
    s->base.kl = NAN;  // a half-made cache: every score fails until a base is set
    return -1;
}

void pz_scorer_base(const pz_scorer *s, pz_score_result *r) { *r = s->base; }

int pz_scorer_score_halves(pz_scorer *s, int L, const pz_block_weights *sa, const pz_block_weights *sf,
                           pz_score_result *r, char *err) {
    const double t0 = pz_now();
    memset(r, 0, sizeof *r);
    if (L < 0 || L >= s->n_layer) return pz_err(err, "score: block layer %d out of range", L);
    for (int h = 0; h < 2; h++) {
        const pz_block_weights *w = h ? sf : sa;
        if (!w) continue;
        if (w->layer != L) return pz_err(err, "score: a block of layer %d swapped into layer %d", w->layer, L);
        if (w->hidden != s->H) return pz_err(err, "score: block hidden size %d, parent %d", w->hidden, s->H);
        if (!has_half(w, h ? PZ_SUB_FFN : PZ_SUB_ATTN))
            return pz_err(err, "score: the block swapped in for the %s half has none", h ? "FFN" : "attention");
    }
    if (isnan(s->base.kl)) return pz_err(err, "score: no base (the last pz_scorer_set_base failed)");
    const int start = L - L % s->p.cache_stride;
    const size_t H = (size_t)s->H;
    const int wpc = s->R / s->T;
    double kl = 0, nll = 0, agree = 0;
    for (long s0 = 0; s0 < s->n_seq; s0 += wpc) {
        const int ns = (int)(s->n_seq - s0 < wpc ? s->n_seq - s0 : wpc), M = ns * s->T;
        const long row0 = s0 * s->T;
        memcpy(s->x, s->xcache[start] + (size_t)row0 * H, sizeof(float) * (size_t)M * H);
        if (forward_from(s, start, L, sa, sf, ns, err)) return -1;
        compare(s, row0, M, &kl, &nll, &agree);
    }
    return finish(s, kl, nll, agree, t0, r, err);
}

int pz_scorer_score(pz_scorer *s, const pz_block_weights *w, pz_score_result *r, char *err) {
    return pz_scorer_score_halves(s, w->layer, w->sub != PZ_SUB_FFN ? w : NULL, w->sub != PZ_SUB_ATTN ? w : NULL, r,
                                  err);
}
