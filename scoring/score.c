// score.c — see score.h.
#include "score.h"
#include "common.h"
#include "devmem.h"
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
    pz_block_weights *pw;      // (n_layer) the parent's layers in fp32 (PAIR), host
    pz_block_weights *dpw;     // (n_layer) the same in backend memory (aliases pw when shared)
    const pz_block_weights **ba, **bf;  // (n_layer) the base's attention / FFN half of each layer (host)
    const pz_block_weights **dba, **dbf;  // the same in backend memory
    pz_block_weights *dbase;   // (2 n_layer) backend copies of a child base's blocks (owned)
    pz_block_weights dswap[2]; // backend copies of the block being scored (owned)
    pz_score_result base;      // the base against the parent (the parent: KL 0, top-1 1)
    float *lm;                 // (V, H) fp32 LM head, backend memory
    float *out_norm;           // (H) backend memory
    float **xcache;            // (n_layer) (n_tok, H) residual entering layer l, or NULL; backend memory
    float *prob;               // (n_tok, V) parent probabilities
    double *rowA, *rowS;       // (n_tok) per row: Σ p·log p (in the logits' terms) and Σ p, see row_kl
    int32_t *amax;             // (n_tok) parent argmax
    float *nll;                // (n_tok) parent NLL of the next token (0 at a window's end)
    double parent_nll;
    double *bi;                // (n_layer) block influence, see score.h
    float *hres;               // (2, R, H) host: the residual entering and leaving a layer (parent pass)
    float *hx;                 // (R, H) host: the embeddings of a chunk
    float *hlogits;            // (R, V) host: a chunk's logits (aliases logits when shared)
    float *x, *y, *xn, *logits;  // scratch, backend memory: (R, H) x3, (R, V)
    pz_backend *be;
    int own_be, shared;        // shared: the backend's memory is the host's (pz_dev_host_shared)
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
    s->be->add(s->be, s->x, s->y, (size_t)ns * s->T * s->H);
    return 0;
}

// Layers [l0, n_layer) of the base on s->x (ns windows); layer `swap` (or -1)
// takes its attention half from sa and its FFN half from sf where they are
// not NULL (backend copies). Then the final norm and the LM head into
// s->logits, and those into s->hlogits (synchronized: the host reads them).
static int forward_from(pz_scorer *s, int l0, int swap, const pz_block_weights *sa, const pz_block_weights *sf,
                        int ns, char *err) {
    for (int l = l0; l < s->n_layer; l++) {
        const pz_block_weights *wa = s->dba[l], *wf = s->dbf[l];
        if (l == swap) {
            if (sa) wa = sa;
            if (sf) wf = sf;
        }
        if (run_half(s, PZ_SUB_ATTN, wa, ns, err) || run_half(s, PZ_SUB_FFN, wf, ns, err)) return -1;
    }
    const int M = ns * s->T;
    pz_backend *be = s->be;
    be->train->rmsnorm_fwd(be, s->xn, NULL, s->x, s->out_norm, M, s->H, s->m->cfg.norm_eps);
    if (be->train->linear_fwd(be, s->logits, s->xn, s->lm, M, s->V, s->H, s->p.prec, err)) return -1;
    if (s->hlogits != s->logits &&
        be->copy(be, s->hlogits, s->logits, sizeof(float) * (size_t)M * s->V, PZ_COPY_D2H, err))
        return -1;
    return be->synchronize(be, err);
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

// s->x = the embeddings of rows row0.. row0+M (gathered on the host, one copy).
static int embed(pz_scorer *s, long row0, int M, char *err) {
    const pz_mat *E = &s->m->tok_embd;
    for (int r = 0; r < M; r++) {
        int id = s->tokens[row0 + r];
        float *dst = s->hx + (size_t)r * s->H;
        if (E->type == PZ_DT_F32) memcpy(dst, (const float *)E->data + (size_t)id * s->H, sizeof(float) * s->H);
        else pz_bf16_to_f32_row((const uint16_t *)E->data + (size_t)id * s->H, dst, (size_t)s->H);
    }
    return s->be->copy(s->be, s->x, s->hx, sizeof(float) * (size_t)M * s->H, PZ_COPY_H2D, err);
}

// Backend memory of the scorer (counted in s->bytes), NULL with err.
static void *dalloc(pz_scorer *s, size_t n, size_t sz, char *err) {
    size_t b;
    if (pz_mul_size(n, sz, &b)) return pz_err(err, "score: size overflow"), NULL;
    s->bytes += b;
    return pz_dev_alloc(s->be, b, "score", err);
}

// *out = the backend view of host block h: h itself when the memory is
// shared, else a copy in slot (freed first).
static int dev_view(pz_scorer *s, const pz_block_weights *h, pz_block_weights *slot,
                    const pz_block_weights **out, char *err) {
    pz_block_weights_dev_free(s->be, slot);
    if (s->shared) {
        *out = h;
        return 0;
    }
    if (pz_block_weights_dev(s->be, h, 1, slot, err)) return -1;
    *out = slot;
    return 0;
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
    s->own_be = !s->p.be;
    if (!(s->be = s->p.be ? s->p.be : pz_backend_create(s->p.backend, s->p.n_threads, err))) goto fail;
    s->shared = pz_dev_host_shared(s->be);
    s->tokens = xalloc(s, N, sizeof(int32_t));
    s->pw = calloc((size_t)s->n_layer, sizeof *s->pw);
    s->dpw = calloc((size_t)s->n_layer, sizeof *s->dpw);
    s->dbase = calloc(2 * (size_t)s->n_layer, sizeof *s->dbase);
    s->ba = calloc((size_t)s->n_layer, sizeof *s->ba);
    s->bf = calloc((size_t)s->n_layer, sizeof *s->bf);
    s->dba = calloc((size_t)s->n_layer, sizeof *s->dba);
    s->dbf = calloc((size_t)s->n_layer, sizeof *s->dbf);
    s->xcache = calloc((size_t)s->n_layer, sizeof *s->xcache);
    s->prob = xalloc(s, N, V * sizeof(float));
    s->rowA = xalloc(s, N, sizeof(double));
    s->rowS = xalloc(s, N, sizeof(double));
    s->amax = xalloc(s, N, sizeof(int32_t));
    s->nll = xalloc(s, N, sizeof(float));
    s->hx = xalloc(s, R, H * sizeof(float));
    if (!s->tokens || !s->pw || !s->dpw || !s->dbase || !s->ba || !s->bf || !s->dba || !s->dbf || !s->xcache ||
        !s->prob || !s->rowA || !s->rowS || !s->amax || !s->nll || !s->hx)
        goto oom;
    if (!(s->x = dalloc(s, R, H * sizeof(float), err)) || !(s->y = dalloc(s, R, H * sizeof(float), err)) ||
        !(s->xn = dalloc(s, R, H * sizeof(float), err)) || !(s->logits = dalloc(s, R, V * sizeof(float), err)) ||
        !(s->lm = dalloc(s, V, H * sizeof(float), err)) || !(s->out_norm = dalloc(s, H, sizeof(float), err)))
        goto fail;
    s->hlogits = s->shared ? s->logits : xalloc(s, R, V * sizeof(float));
    if (!s->hlogits) goto oom;
    memcpy(s->tokens, tokens, N * sizeof(int32_t));
    for (int l = 0; l < s->n_layer; l += s->p.cache_stride)
        if (!(s->xcache[l] = dalloc(s, N, H * sizeof(float), err))) goto fail;
    for (int l = 0; l < s->n_layer; l++) {
        if (pz_block_weights_from_parent(&s->pw[l], m, l, PZ_SUB_PAIR, err)) goto fail;
        s->bytes += pz_block_weights_count(&s->pw[l]) * sizeof(float);
        const pz_block_weights *d;
        if (dev_view(s, &s->pw[l], &s->dpw[l], &d, err)) goto fail;
        s->ba[l] = s->bf[l] = &s->pw[l];
        s->dba[l] = s->dbf[l] = d;
    }
    {
        float *lm = malloc(sizeof(float) * V * H);
        if (!lm) goto oom;
        mat_to_f32(&m->lm_head, lm);
        int bad = s->be->copy(s->be, s->lm, lm, sizeof(float) * V * H, PZ_COPY_H2D, err) ||
                  s->be->copy(s->be, s->out_norm, m->out_norm, sizeof(float) * H, PZ_COPY_H2D, err) ||
                  s->be->synchronize(s->be, err);
        free(lm);
        if (bad) goto fail;
    }

    // The parent pass: cache the residual entering each kept layer, keep the
    // log-probs. The same chunks and code as the scoring passes.
    double nll_sum = 0;
    if (!(s->bi = calloc((size_t)s->n_layer, sizeof *s->bi)) ||
        !(s->hres = malloc(sizeof(float) * 2 * (size_t)s->R * H)))
        goto oom;
    pz_backend *be = s->be;
    for (long s0 = 0; s0 < s->n_seq; s0 += wpc) {
        const int ns = (int)(s->n_seq - s0 < wpc ? s->n_seq - s0 : wpc), M = ns * s->T;
        const long row0 = s0 * s->T;
        const size_t MHb = sizeof(float) * (size_t)M * H;
        if (embed(s, row0, M, err)) goto fail;
        memcpy(s->hres, s->hx, MHb);  // the residual entering layer 0
        for (int l = 0; l < s->n_layer; l++) {
            if (s->xcache[l] && be->copy(be, s->xcache[l] + (size_t)row0 * H, s->x, MHb, PZ_COPY_D2D, err))
                goto fail;
            if (run_half(s, PZ_SUB_ATTN, s->dba[l], ns, err) || run_half(s, PZ_SUB_FFN, s->dbf[l], ns, err))
                goto fail;
            // The residual entering layer l (hres half l%2) and leaving it (the other half).
            const float *xin = s->hres + (size_t)(l % 2) * s->R * H;
            float *xout = s->hres + (size_t)((l + 1) % 2) * s->R * H;
            if (be->copy(be, xout, s->x, MHb, PZ_COPY_D2H, err) || be->synchronize(be, err)) goto fail;
            double cos_sum = 0;
#pragma omp parallel for num_threads(s->p.n_threads) schedule(static) reduction(+ : cos_sum)
            for (int r = 0; r < M; r++) {
                const float *a = xin + (size_t)r * H, *b = xout + (size_t)r * H;
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
            const float *z = s->hlogits + (size_t)r * V;
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
    free(s->hres);
    s->hres = NULL;
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
    pz_backend *be = s->be;
    if (s->pw)
        for (int l = 0; l < s->n_layer; l++) pz_block_weights_free(&s->pw[l]);
    if (be) {
        if (s->dpw)
            for (int l = 0; l < s->n_layer; l++) pz_block_weights_dev_free(be, &s->dpw[l]);
        if (s->dbase)
            for (int i = 0; i < 2 * s->n_layer; i++) pz_block_weights_dev_free(be, &s->dbase[i]);
        pz_block_weights_dev_free(be, &s->dswap[0]);
        pz_block_weights_dev_free(be, &s->dswap[1]);
        if (s->xcache)
            for (int l = 0; l < s->n_layer; l++) be->free(be, s->xcache[l]);
        if (s->hlogits != s->logits) free(s->hlogits);
        be->free(be, s->lm);
        be->free(be, s->out_norm);
        be->free(be, s->x);
        be->free(be, s->y);
        be->free(be, s->xn);
        be->free(be, s->logits);
        if (s->own_be) pz_backend_free(be);
    }
    free(s->pw);
    free(s->dpw);
    free(s->dbase);
    free(s->ba);
    free(s->bf);
    free(s->dba);
    free(s->dbf);
    free(s->xcache);
    free(s->bi);
    free(s->hres);
    free(s->hx);
    free(s->tokens);
    free(s->prob);
    free(s->rowA);
    free(s->rowS);
    free(s->amax);
    free(s->nll);
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
        const float *z = s->hlogits + (size_t)i * V;
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
        // Their backend copies: the parent's resident, a child's block copied once.
        pz_block_weights *sa = &s->dbase[2 * l], *sf = &s->dbase[2 * l + 1];
        pz_block_weights_dev_free(s->be, sa), pz_block_weights_dev_free(s->be, sf);
        if (s->ba[l] == &s->pw[l]) s->dba[l] = s->shared ? &s->pw[l] : &s->dpw[l];
        else if (dev_view(s, s->ba[l], sa, &s->dba[l], err)) goto fail;
        if (s->bf[l] == &s->pw[l]) s->dbf[l] = s->shared ? &s->pw[l] : &s->dpw[l];
        else if (s->bf[l] == s->ba[l]) s->dbf[l] = s->dba[l];
        else if (dev_view(s, s->bf[l], sf, &s->dbf[l], err)) goto fail;
    }
    // The base pass: the residual entering each kept layer, then the comparison.
    const size_t H = (size_t)s->H;
    const int wpc = s->R / s->T;
    double kl = 0, nll = 0, agree = 0;
    for (long s0 = 0; s0 < s->n_seq; s0 += wpc) {
        const int ns = (int)(s->n_seq - s0 < wpc ? s->n_seq - s0 : wpc), M = ns * s->T;
        const long row0 = s0 * s->T;
        if (embed(s, row0, M, err)) goto fail;
        for (int l = 0; l < s->n_layer; l++) {
            if (s->xcache[l] && s->be->copy(s->be, s->xcache[l] + (size_t)row0 * H, s->x,
                                            sizeof(float) * (size_t)M * H, PZ_COPY_D2D, err))
                goto fail;
            if (run_half(s, PZ_SUB_ATTN, s->dba[l], ns, err) || run_half(s, PZ_SUB_FFN, s->dbf[l], ns, err)) goto fail;
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
    // The block's backend copies (one when a pair serves both halves).
    const pz_block_weights *da = NULL, *df = NULL;
    int rc = -1;
    if (sa && dev_view(s, sa, &s->dswap[0], &da, err)) goto out;
    if (sf && sf == sa) df = da;
    else if (sf && dev_view(s, sf, &s->dswap[1], &df, err)) goto out;
    for (long s0 = 0; s0 < s->n_seq; s0 += wpc) {
        const int ns = (int)(s->n_seq - s0 < wpc ? s->n_seq - s0 : wpc), M = ns * s->T;
        const long row0 = s0 * s->T;
        if (s->be->copy(s->be, s->x, s->xcache[start] + (size_t)row0 * H, sizeof(float) * (size_t)M * H,
                        PZ_COPY_D2D, err) ||
            forward_from(s, start, L, da, df, ns, err))
            goto out;
        compare(s, row0, M, &kl, &nll, &agree);
    }
    rc = finish(s, kl, nll, agree, t0, r, err);
out:
    pz_block_weights_dev_free(s->be, &s->dswap[0]);
    pz_block_weights_dev_free(s->be, &s->dswap[1]);
    return rc;
}

int pz_scorer_score(pz_scorer *s, const pz_block_weights *w, pz_score_result *r, char *err) {
    return pz_scorer_score_halves(s, w->layer, w->sub != PZ_SUB_FFN ? w : NULL, w->sub != PZ_SUB_ATTN ? w : NULL, r,
                                  err);
}
