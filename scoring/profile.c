// profile.c — times sub-block variants with the backend's ops, and
// calibrates the local CPU (see profile.h).
#include "profile.h"
#include "fp8.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "tensor.h"
#ifdef PZ_HAVE_CUDA
#include "backend_cuda.h"  // pz_cuda_device_name
#endif

pz_prof_params pz_prof_default_params(void) {
    return (pz_prof_params){.dtype = PZ_DT_F32, .warmup = 2, .repeats = 10, .seed = 1,
                            .cold_bytes = (size_t)256 << 20, .max_group_bytes = (size_t)4 << 30};
}

const char *pz_prof_part_name(pz_prof_part p) {
    static const char *n[] = {"attn", "ffn", "embed", "head"};
    return (unsigned)p < 4 ? n[p] : "?";
}

const char *pz_prof_kind_name(const pz_prof_variant *v) {
    switch (v->part) {
    case PZ_PROF_ATTN: return pz_attn_kind_name(v->attn);
    case PZ_PROF_FFN: return pz_ffn_kind_name(v->ffn);
    case PZ_PROF_EMBED: return "embed";
    case PZ_PROF_HEAD: return "head";
    }
    return "?";
}

int pz_prof_scenario_parse(const char *s, pz_scenario *out, char *err) {
    const char *rest;
    if (!strncmp(s, "prefill:", 8)) out->phase = PZ_PHASE_PREFILL, rest = s + 8;
    else if (!strncmp(s, "decode:", 7)) out->phase = PZ_PHASE_DECODE, rest = s + 7;
    else return pz_err(err, "scenario '%s': want prefill:BxS or decode:BxC", s);
    char *end;
    long bt = strtol(rest, &end, 10);
    if (end == rest || *end != 'x' || bt < 1 || bt > 4096) return pz_err(err, "scenario '%s': bad batch", s);
    const char *l = end + 1;
    long len = strtol(l, &end, 10);
    if (end == l || *end || len < 1 || len > (1 << 20)) return pz_err(err, "scenario '%s': bad length", s);
    if (bt * len > (1L << 22)) return pz_err(err, "scenario '%s': batch x length too large", s);
    out->batch = bt;
    out->len = len;
    return 0;
}

void pz_prof_scenario_name(const pz_scenario *s, char *buf, size_t cap) {
    snprintf(buf, cap, "%s:%ldx%ld", s->phase == PZ_PHASE_PREFILL ? "prefill" : "decode", s->batch, s->len);
}

// ---- buffers ---------------------------------------------------------------------

static unsigned long long rng_next(unsigned long long *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}
static float rng_f(unsigned long long *s) { return (float)((rng_next(s) >> 40) * (1.0 / 16777216.0) * 2 - 1); }

// Random floats (uniform in ±scale) into host memory.
static void fill_f32(float *x, size_t n, float scale, unsigned long long *s) {
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_f(s);
}

// host[bytes] copied into new backend memory (NULL on failure).
static void *upload(pz_backend *b, const void *host, size_t bytes) {
    void *d = b->alloc(b, bytes);
    if (d && (b->copy(b, d, host, bytes, PZ_COPY_H2D, NULL) || b->synchronize(b, NULL))) {
        b->free(b, d);
        d = NULL;
    }
    return d;
}

// n random floats (uniform ±scale) in new backend memory.
static float *new_rand(pz_backend *b, size_t n, float scale, unsigned long long *s) {
    float *h = malloc(n * sizeof(float));
    if (!h) return NULL;
    fill_f32(h, n, scale, s);
    float *d = upload(b, h, n * sizeof(float));
    free(h);
    return d;
}

// A weight matrix [rows, cols] of type dt, uniform ±1/sqrt(cols), in backend memory.
static void *new_weight(pz_backend *b, pz_dt dt, size_t rows, size_t cols, unsigned long long *s) {
    size_t n = rows * cols;
    void *h = malloc(n * pz_dt_size(dt));
    if (!h) return NULL;
    float sc = 1.0f / sqrtf((float)cols);
    if (dt == PZ_DT_F32) fill_f32(h, n, sc, s);
    else if (dt == PZ_DT_E4M3)  // codes of N(0,1) values at a scale mapping 4 sigma to 448
        for (size_t i = 0; i < n; i++) ((uint8_t *)h)[i] = pz_f32_to_e4m3(rng_f(s) * (PZ_E4M3_MAX / 4.0f));
    else
        for (size_t i = 0; i < n; i++) ((uint16_t *)h)[i] = pz_f32_to_bf16(sc * rng_f(s));
    void *d = upload(b, h, n * pz_dt_size(dt));
    free(h);
    return d;
}

#define MAX_COPIES 32
#define MAX_BUFS (16 + 2 * MAX_COPIES)
typedef struct {
    pz_backend *b;
    void *p[MAX_BUFS];
    int n;
} bufs;
static void *take(bufs *B, void *p) {
    if (p && B->n < MAX_BUFS) B->p[B->n++] = p;
    return p;
}
static void bufs_free(bufs *B) {
    for (int i = 0; i < B->n; i++) B->b->free(B->b, B->p[i]);
    B->n = 0;
}

// Everything one run of a sub-block touches.
typedef struct {
    const pz_config *c;
    pz_prof_variant v;
    pz_scenario s;
    pz_dt dt;
    int R, cap;               // rows per run; KV positions per sequence
    float *x, *xn, *big, *att, *norm, *inv_freq, *k, *v_;  // backend memory
    int pps;                  // KV pages per sequence: sequence i holds pages [i*pps, (i+1)*pps)
    const pz_weight *w1, *w2; // gqa: [q;k;v], o; swiglu: [gate;up], down; linear: -, W; head: lm_head
    pz_weight w1s[MAX_COPIES], w2s[MAX_COPIES];  // the copies run i uses copy i % n_copies of
    int n_copies, iter;
    int32_t *pos, *ids, *row_page, *ptab;  // backend memory; ptab: 0, 1, .. (page tables)
    pz_attn_seq *seqs;        // host (descriptors)
    bufs B;                   // every backend buffer above, freed by job_close
} job;

static void job_close(pz_backend *b, job *j) {
    free(j->seqs);
    j->seqs = NULL;
    for (int i = 0; i < j->n_copies; i++) {
        if (j->w1s[i].priv) b->release_weight(b, &j->w1s[i]);
        if (j->w2s[i].priv) b->release_weight(b, &j->w2s[i]);
    }
    j->n_copies = 0;
    bufs_free(&j->B);
}

static int run_once(pz_backend *b, job *j, char *err) {
    j->w1 = &j->w1s[j->iter % j->n_copies];
    j->w2 = &j->w2s[j->iter % j->n_copies];
    j->iter++;
    const pz_config *c = j->c;
    const int H = c->hidden, hd = c->head_dim, nh = c->n_head, R = j->R;
    switch (j->v.part) {
    case PZ_PROF_EMBED:
        return b->embed(b, j->x, j->w1, j->ids, R, err);
    case PZ_PROF_HEAD:  // final norm + LM head over the last row of each sequence
        b->rmsnorm(b, j->xn, j->x, j->norm, (int)j->s.batch, H, c->norm_eps);
        return b->matmul(b, j->big, c->vocab, j->xn, H, PZ_DT_F32, j->w1, (int)j->s.batch, 0, err);
    case PZ_PROF_ATTN:
        b->rmsnorm(b, j->xn, j->x, j->norm, R, H, c->norm_eps);
        if (j->v.attn == PZ_ATTN_LINEAR) return b->matmul(b, j->x, H, j->xn, H, PZ_DT_F32, j->w2, R, 1, err);
        {
            const int nkv = j->v.size, kvd = nkv * hd, qd = nh * hd, ld = qd + 2 * kvd;
            if (b->matmul(b, j->big, ld, j->xn, H, PZ_DT_F32, j->w1, R, 0, err)) return -1;
            b->rope(b, j->big, ld, j->pos, R, nh, hd, j->inv_freq);
            b->rope(b, j->big + qd, ld, j->pos, R, nkv, hd, j->inv_freq);
            int per = j->s.phase == PZ_PHASE_PREFILL ? (int)j->s.len : 1;
            pz_kv_write kw = {.k_pool = j->k, .v_pool = j->v_, .n_pages = j->pps * (int)j->s.batch,
                              .n_kv = nkv, .head_dim = hd, .kv_type = PZ_DT_F32, .k_scale = 1,
                              .v_scale = 1, .kv = j->big + qd, .ld = ld, .row_page = j->row_page,
                              .pos = j->pos, .R = R};
            if (b->kv_write(b, &kw, err)) return -1;
            for (int i = 0; i < (int)j->s.batch; i++) {
                pz_attn_seq *q = &j->seqs[i];
                q->q = j->big + (size_t)i * per * ld;
                q->q_ld = ld;
                q->out = j->att + (size_t)i * per * qd;
                q->out_ld = qd;
                q->k = j->k;
                q->v = j->v_;
                q->kv_ld = 0;
                q->pages = j->ptab + (size_t)i * j->pps;
                q->kv_type = PZ_DT_F32;
                q->k_scale = q->v_scale = 1;
                q->n_q = per;
                q->pos0 = j->s.phase == PZ_PHASE_PREFILL ? 0 : (int)j->s.len;
            }
            if (b->attention(b, j->seqs, (int)j->s.batch, nh, nkv, hd, err)) return -1;
            return b->matmul(b, j->x, H, j->att, qd, PZ_DT_F32, j->w2, R, 1, err);
        }
    case PZ_PROF_FFN:
        b->rmsnorm(b, j->xn, j->x, j->norm, R, H, c->norm_eps);
        if (j->v.ffn == PZ_FFN_LINEAR) return b->matmul(b, j->x, H, j->xn, H, PZ_DT_F32, j->w2, R, 1, err);
        {
            const int F = j->v.size;
            if (b->matmul(b, j->big, 2 * F, j->xn, H, PZ_DT_F32, j->w1, R, 0, err)) return -1;
            b->swiglu(b, j->att, F, j->big, j->big + F, 2 * F, R, F);
            return b->matmul(b, j->x, H, j->att, F, PZ_DT_F32, j->w2, R, 1, err);
        }
    }
    return pz_err(err, "profile: unknown sub-block part");
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
// Nearest-rank percentile of sorted t[0..n).
static double pct(const double *t, int n, double q) {
    int i = (int)ceil(q * n) - 1;
    return t[i < 0 ? 0 : i >= n ? n - 1 : i];
}

static void summarize(double *t, int n, pz_prof_result *out) {
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    out->median_s = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    out->p10_s = pct(t, n, 0.10);
    out->p90_s = pct(t, n, 0.90);
    if (out->p10_s > out->median_s) out->p10_s = out->median_s;
    if (out->p90_s < out->median_s) out->p90_s = out->median_s;
    out->repeats = n;
}

// Decode: each sequence's cache already holds len positions of random K/V,
// written one sequence at a time by one kv_write.
static int fill_cache(pz_backend *b, job *j, unsigned long long *seed, char *err) {
    const int hd = j->c->head_dim, kvd = j->v.size * hd;
    const size_t len = (size_t)j->s.len;
    float *h = malloc(len * 2 * (size_t)kvd * sizeof(float));
    int32_t *hp = malloc(2 * len * sizeof(int32_t));
    float *dkv = NULL;
    int32_t *dp = NULL;
    int rc = -1;
    if (!h || !hp) goto out;
    for (size_t q = 0; q < len; q++) hp[q] = (int32_t)q;
    if (!(dp = b->alloc(b, 2 * len * sizeof(int32_t))) || !(dkv = b->alloc(b, len * 2 * (size_t)kvd * sizeof(float))))
        goto out;
    for (long i = 0; i < j->s.batch; i++) {
        fill_f32(h, len * 2 * (size_t)kvd, 1.0f, seed);
        for (size_t q = 0; q < len; q++) hp[len + q] = (int32_t)(i * j->pps + (long)q / PZ_KV_PAGE);
        pz_kv_write kw = {.k_pool = j->k, .v_pool = j->v_, .n_pages = j->pps * (int)j->s.batch,
                          .n_kv = j->v.size, .head_dim = hd, .kv_type = PZ_DT_F32, .k_scale = 1, .v_scale = 1,
                          .kv = dkv, .ld = 2 * kvd, .row_page = dp + len, .pos = dp, .R = (int)len};
        if (b->copy(b, dkv, h, len * 2 * (size_t)kvd * sizeof(float), PZ_COPY_H2D, err) ||
            b->copy(b, dp, hp, 2 * len * sizeof(int32_t), PZ_COPY_H2D, err) || b->kv_write(b, &kw, err) ||
            b->synchronize(b, err))
            goto out;
    }
    rc = 0;
out:
    if (rc && err && !*err) pz_err(err, "profile: out of memory");
    free(h);
    free(hp);
    b->free(b, dkv);
    b->free(b, dp);
    return rc;
}

// Checks v and s against c and fills out's sizes (param_bytes, kv_bytes_per_token); *set_bytes:
// the bytes of one copy of the weights a run reads (0 for a noop, which runs nothing).
static int variant_sizes(const pz_config *c, const pz_prof_variant *v, const pz_scenario *s, const pz_prof_params *p,
                         pz_prof_result *out, size_t *set_bytes, char *err) {
    memset(out, 0, sizeof *out);
    *set_bytes = 0;
    if (c->hidden < 1 || c->n_head < 1 || c->head_dim < 2 || c->vocab < 1)
        return pz_err(err, "profile: bad model shape");
    if (s->batch < 1 || s->len < 1) return pz_err(err, "profile: bad scenario");
    const int H = c->hidden, hd = c->head_dim, nh = c->n_head;
    // fp8 models keep the embedding table and lm_head in bf16 (model.h)
    const pz_dt wdt = p->dtype == PZ_DT_E4M3 && (v->part == PZ_PROF_EMBED || v->part == PZ_PROF_HEAD) ? PZ_DT_BF16
                                                                                                   : p->dtype;
    const size_t wb = pz_dt_size(wdt);
    int is_noop = (v->part == PZ_PROF_ATTN && v->attn == PZ_ATTN_NOOP) ||
                  (v->part == PZ_PROF_FFN && v->ffn == PZ_FFN_NOOP);
    // Sizes.
    if (v->part == PZ_PROF_ATTN && v->attn == PZ_ATTN_GQA) {
        if (v->size < 1 || nh % v->size)
            return pz_err(err, "profile: gqa n_kv %d does not divide %d heads", v->size, nh);
        out->param_bytes = (double)wb * ((double)(nh + 2 * v->size) * hd * H + (double)H * nh * hd) + 4.0 * H;
        out->kv_bytes_per_token = 2.0 * v->size * hd * sizeof(float);
    } else if (v->part == PZ_PROF_FFN && v->ffn == PZ_FFN_SWIGLU) {
        if (v->size < 1) return pz_err(err, "profile: swiglu width %d", v->size);
        out->param_bytes = (double)wb * 3.0 * v->size * H + 4.0 * H;
    } else if (!is_noop && (v->part == PZ_PROF_ATTN || v->part == PZ_PROF_FFN)) {
        out->param_bytes = (double)wb * H * H + 4.0 * H;
    } else if (v->part == PZ_PROF_EMBED) {
        out->param_bytes = (double)wb * c->vocab * H;
    } else if (v->part == PZ_PROF_HEAD) {
        out->param_bytes = (double)wb * c->vocab * H + 4.0 * H;  // (shared with the embedding when tied)
    }
    if (is_noop) return 0;  // nothing runs in the engine: exactly 0
    if (v->part == PZ_PROF_EMBED || v->part == PZ_PROF_HEAD) *set_bytes = (size_t)c->vocab * (size_t)H * wb;
    else if ((v->part == PZ_PROF_ATTN && v->attn == PZ_ATTN_LINEAR) ||
             (v->part == PZ_PROF_FFN && v->ffn == PZ_FFN_LINEAR))
        *set_bytes = (size_t)H * (size_t)H * wb;
    else if (v->part == PZ_PROF_ATTN)
        *set_bytes = ((size_t)(nh + 2 * v->size) * hd * H + (size_t)H * nh * hd) * wb;
    else *set_bytes = 3 * (size_t)v->size * (size_t)H * wb;
    return 0;
}

// Opens j for variant v (not a noop; variant_sizes accepted it) under scenario s: every buffer
// of a run, and n_copies copies of the weights. 0, or -1 with err (j is then closed).
static int job_open(pz_backend *b, const pz_config *c, const pz_prof_variant *v, const pz_scenario *s,
                    const pz_prof_params *p, int n_copies, job *j, char *err) {
    const int H = c->hidden, hd = c->head_dim, nh = c->n_head;
    const pz_dt wdt = p->dtype == PZ_DT_E4M3 && (v->part == PZ_PROF_EMBED || v->part == PZ_PROF_HEAD) ? PZ_DT_BF16
                                                                                                   : p->dtype;
    const size_t wb = pz_dt_size(wdt);

    *j = (job){.c = c, .v = *v, .s = *s, .dt = wdt, .B = {.b = b}};
    j->R = (int)(s->phase == PZ_PHASE_PREFILL ? s->batch * s->len : s->batch);
    j->cap = (int)(s->phase == PZ_PHASE_PREFILL ? s->len : s->len + 1);
    j->pps = (j->cap + PZ_KV_PAGE - 1) / PZ_KV_PAGE;
    unsigned long long seed = p->seed ? p->seed : 1;
    const size_t R = (size_t)j->R;
    size_t big_cols = (size_t)H, att_cols = (size_t)H;
    if (v->part == PZ_PROF_ATTN && v->attn == PZ_ATTN_GQA) {
        big_cols = (size_t)(nh + 2 * v->size) * hd;
        att_cols = (size_t)nh * hd;
    } else if (v->part == PZ_PROF_FFN && v->ffn == PZ_FFN_SWIGLU) {
        big_cols = 2 * (size_t)v->size;
        att_cols = (size_t)v->size;
    } else if (v->part == PZ_PROF_HEAD) {
        big_cols = (size_t)c->vocab;
    }
    int rc = -1;
    int32_t *hrows = malloc(3 * R * sizeof(int32_t));  // pos, ids, row_page on the host
    float *hnorm = malloc((size_t)H * sizeof(float));
    if (hrows && hnorm) {
        for (int i = 0; i < H; i++) hnorm[i] = 1.0f + 0.1f * rng_f(&seed);
        int per = s->phase == PZ_PHASE_PREFILL ? (int)s->len : 1;
        for (size_t r = 0; r < R; r++) {
            hrows[r] = s->phase == PZ_PHASE_PREFILL ? (int32_t)(r % (size_t)s->len) : (int32_t)s->len;
            hrows[R + r] = (int32_t)(rng_next(&seed) % (unsigned long long)c->vocab);
            hrows[2 * R + r] = (int32_t)(r / (size_t)per) * j->pps + hrows[r] / PZ_KV_PAGE;
        }
    }
    int ok = hrows && hnorm && take(&j->B, j->x = new_rand(b, R * H, 1.0f, &seed)) &&
             take(&j->B, j->xn = b->alloc(b, R * H * 4)) &&
             take(&j->B, j->big = b->alloc(b, (v->part == PZ_PROF_HEAD ? (size_t)s->batch : R) * big_cols * 4)) &&
             take(&j->B, j->att = b->alloc(b, R * att_cols * 4)) &&
             take(&j->B, j->norm = upload(b, hnorm, (size_t)H * 4)) &&
             take(&j->B, j->pos = upload(b, hrows, R * 4)) && take(&j->B, j->ids = upload(b, hrows + R, R * 4)) &&
             take(&j->B, j->row_page = upload(b, hrows + 2 * R, R * 4));
    free(hrows);
    free(hnorm);
    if (!ok) {
        pz_err(err, "profile: out of memory");
        goto done;
    }
    // Weights: n_copies copies (the caller sizes them so that the bytes read between two runs of
    // one copy exceed p->cold_bytes).
    size_t r1 = 0, c1 = 0, r2 = 0, c2 = 0;  // shapes of w1 and w2 (0: absent)
    if (v->part == PZ_PROF_EMBED || v->part == PZ_PROF_HEAD) r1 = (size_t)c->vocab, c1 = (size_t)H;
    else if ((v->part == PZ_PROF_ATTN && v->attn == PZ_ATTN_LINEAR) ||
             (v->part == PZ_PROF_FFN && v->ffn == PZ_FFN_LINEAR))
        r2 = (size_t)H, c2 = (size_t)H;
    else r1 = big_cols, c1 = (size_t)H, r2 = (size_t)H, c2 = att_cols;
    j->n_copies = n_copies < 1 ? 1 : n_copies > MAX_COPIES ? MAX_COPIES : n_copies;
    for (int i = 0; i < j->n_copies; i++) {  // random once, then copies (timing is value-blind)
        void *d1 = NULL, *d2 = NULL;
        if (r1 && !take(&j->B, d1 = i ? b->alloc(b, r1 * c1 * wb) : new_weight(b, wdt, r1, c1, &seed)))
            goto oom;
        if (r2 && !take(&j->B, d2 = i ? b->alloc(b, r2 * c2 * wb) : new_weight(b, wdt, r2, c2, &seed)))
            goto oom;
        if ((i && r1 && b->copy(b, d1, j->w1s[0].data, r1 * c1 * wb, PZ_COPY_D2D, err)) ||
            (i && r2 && b->copy(b, d2, j->w2s[0].data, r2 * c2 * wb, PZ_COPY_D2D, err)))
            goto done;
        j->w1s[i] = pz_weight_dense(d1, wdt, (int)r1, (int)c1);
        j->w2s[i] = pz_weight_dense(d2, wdt, (int)r2, (int)c2);
        if (wdt == PZ_DT_E4M3) {  // values ~ N(0, 1/cols): amax ~ 4/sqrt(cols) maps to 448
            j->w1s[i].scale = 4.0f / sqrtf((float)(c1 ? c1 : 1)) / PZ_E4M3_MAX;
            j->w2s[i].scale = 4.0f / sqrtf((float)(c2 ? c2 : 1)) / PZ_E4M3_MAX;
        }
        if ((r1 && b->prepare_weight(b, &j->w1s[i], err)) || (r2 && b->prepare_weight(b, &j->w2s[i], err)))
            goto done;
    }
    if (v->part == PZ_PROF_ATTN && v->attn == PZ_ATTN_GQA) {
        float *hf = malloc((size_t)(hd / 2 + 1) * sizeof(float));
        if (!hf || !(j->seqs = malloc((size_t)s->batch * sizeof(pz_attn_seq)))) {
            free(hf);
            goto oom;
        }
        pz_rope_params rp = {.head_dim = hd, .theta = c->rope_theta > 0 ? c->rope_theta : 10000.0f};
        pz_rope_inv_freq(&rp, hf);
        int up = take(&j->B, j->inv_freq = upload(b, hf, (size_t)hd / 2 * 4)) != NULL;
        free(hf);
        if (!up) goto oom;
        size_t n_pages = (size_t)j->pps * (size_t)s->batch;
        size_t kvb = b->kv_page_bytes(b, v->size, hd, PZ_DT_F32) * n_pages;
        int32_t *hp = malloc(n_pages * sizeof(int32_t));
        if (!hp) goto oom;
        for (size_t i = 0; i < n_pages; i++) hp[i] = (int32_t)i;
        int okp = take(&j->B, j->ptab = upload(b, hp, n_pages * sizeof(int32_t))) != NULL;
        free(hp);
        if (!okp || !take(&j->B, j->k = b->alloc(b, kvb)) || !take(&j->B, j->v_ = b->alloc(b, kvb))) goto oom;
        if (s->phase == PZ_PHASE_DECODE && fill_cache(b, j, &seed, err)) goto done;
    }
    rc = 0;
    goto done;
oom:
    pz_err(err, "profile: out of memory");
done:
    if (rc) job_close(b, j);
    return rc;
}

// One timed run of j, variant `variant`, the index-th of the call (the test hooks
// p->burst_* and p->test_times may stretch or replace its time); seconds into *t.
static int timed_run(pz_backend *b, job *j, const pz_prof_params *p, int variant, int index, double *t,
                     char *err) {
    double t0 = pz_now();
    if (run_once(b, j, err) || b->synchronize(b, err)) return -1;
    double dt = p->test_times ? p->test_times[variant] : pz_now() - t0;
    // The burst is booked, not waited out: a real sleep on a shared machine also slows the
    // runs after it (wake-up, frequency, scheduler), by amounts the test cannot bound (CI saw
    // the narrow FFN 2-3x slower through the whole call), while what the hook tests is only
    // which runs a burst lands on and that the per-variant median absorbs them.
    if (p->burst_count > 0 && index >= p->burst_first && index < p->burst_first + p->burst_count &&
        p->burst_factor > 1)
        dt *= p->burst_factor;
    *t = dt;
    return 0;
}

int pz_profile_variants(pz_backend *b, const pz_config *c, int n, const pz_prof_variant *v, const pz_scenario *s,
                        const pz_prof_params *p, pz_prof_result *out, char *err) {
    if (n < 0) return pz_err(err, "profile: bad variant count");
    if (c->hidden < 1 || c->n_head < 1 || c->head_dim < 2 || c->vocab < 1)
        return pz_err(err, "profile: bad model shape");
    const int reps = p->repeats < 1 ? 1 : p->repeats, warm = p->warmup < 0 ? 0 : p->warmup;
    size_t *sb = calloc((size_t)n + 1, sizeof *sb);
    job *J = calloc((size_t)n + 1, sizeof *J);
    int *live = calloc((size_t)n + 1, sizeof *live);  // indices of the variants that run
    double *t = calloc((size_t)n * (size_t)reps + 1, sizeof *t);  // t[i*reps + r]
    int nl = 0, rc = -1;
    if (!sb || !J || !live || !t) {
        pz_err(err, "profile: out of memory");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (variant_sizes(c, &v[i], &s[i], p, &out[i], &sb[i], err)) goto done;
        if (sb[i]) live[nl++] = i;
    }
    if (p->sequential) {  // the old order: all of one variant's runs, then the next's
        for (int q = 0; q < nl; q++) {
            int i = live[q];
            int k = p->cold_bytes > sb[i] ? (int)((p->cold_bytes + sb[i] - 1) / sb[i]) : 1;
            if (job_open(b, c, &v[i], &s[i], p, k, &J[i], err)) goto done;
            for (int r = 0; r < warm; r++)
                if (run_once(b, &J[i], err) || b->synchronize(b, err)) goto done;
            for (int r = 0; r < reps; r++)
                if (timed_run(b, &J[i], p, i, q * reps + r, &t[(size_t)i * reps + r], err)) goto done;
            job_close(b, &J[i]);
        }
    }
    // Interleaved rounds: each round runs every variant of a group once, starting one further
    // along each round, so a change of load during the measurement falls on every variant
    // alike. Groups: consecutive variants whose weights (one copy each) stay within
    // p->max_group_bytes (0: one group).
    int index = 0;
    for (int g0 = 0, g1; !p->sequential && g0 < nl; g0 = g1) {
        size_t gb = sb[live[g0]];
        for (g1 = g0 + 1; g1 < nl && (!p->max_group_bytes || gb + sb[live[g1]] <= p->max_group_bytes); g1++)
            gb += sb[live[g1]];
        const int gn = g1 - g0;
        // Copies: a round reads one copy of every variant's weights, so k copies put k rounds
        // (k * gb bytes) between two runs of one copy; enough that this exceeds p->cold_bytes.
        int k = p->cold_bytes > gb ? (int)((p->cold_bytes + gb - 1) / gb) : 1;
        for (int q = g0; q < g1; q++)
            if (job_open(b, c, &v[live[q]], &s[live[q]], p, k, &J[live[q]], err)) goto done;
        for (int r = -warm; r < reps; r++)
            for (int q = 0; q < gn; q++) {
                int i = live[g0 + (q + r + warm) % gn];
                if (r < 0) {
                    if (run_once(b, &J[i], err) || b->synchronize(b, err)) goto done;
                } else if (timed_run(b, &J[i], p, i, index++, &t[(size_t)i * reps + r], err)) {
                    goto done;
                }
            }
        for (int q = g0; q < g1; q++) job_close(b, &J[live[q]]);
    }
    for (int q = 0; q < nl; q++) summarize(&t[(size_t)live[q] * reps], reps, &out[live[q]]);
    rc = 0;
done:
    for (int q = 0; q < nl && J; q++) job_close(b, &J[live[q]]);
    free(sb);
    free(J);
    free(live);
    free(t);
    return rc;
}

int pz_profile_variant(pz_backend *b, const pz_config *c, const pz_prof_variant *v, const pz_scenario *s,
                       const pz_prof_params *p, pz_prof_result *out, char *err) {
    return pz_profile_variants(b, c, 1, v, s, p, out, err);
}
void pz_profile_device_desc(const pz_backend *b, char *buf, size_t cap) {
#ifdef PZ_HAVE_CUDA
    if (b->kind == PZ_BACKEND_CUDA) {  // the GPU's name, not the host's CPU
        char gpu[160];
        pz_cuda_device_name((pz_backend *)b, gpu, sizeof gpu);
        snprintf(buf, cap, "%s: %s", b->name, gpu);
        return;
    }
#endif
    char model[160] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10)) continue;
            char *c = strchr(line, ':');
            if (!c) break;
            c++;
            while (*c == ' ' || *c == '\t') c++;
            c[strcspn(c, "\n")] = 0;
            snprintf(model, sizeof model, "%s", c);
            break;
        }
        fclose(f);
    }
    snprintf(buf, cap, "%s: %s (%d threads)", b->name, model, b->n_threads);
}

// ---- calibration -------------------------------------------------------------------

static double median_of(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

// Median seconds of y = x·W^T for [M,K]·[N,K]^T of type dt; run i uses
// copy i % copies of W (copies > 1: weights come from memory, not cache).
static int time_matmul(pz_backend *b, pz_dt dt, int M, int N, int K, int copies, int reps, double *sec,
                       char *err) {
    unsigned long long seed = 7;
    float *x = new_rand(b, (size_t)M * K, 1.0f, &seed), *y = b->alloc(b, (size_t)M * N * 4);
    pz_weight w[128];
    memset(w, 0, sizeof w);
    size_t wbytes = (size_t)N * K * pz_dt_size(dt);
    double *t = malloc((size_t)reps * sizeof *t);
    int rc = -1, ok = x && y && t;
    for (int i = 0; i < copies && ok; i++) {
        void *d = i ? b->alloc(b, wbytes) : new_weight(b, dt, (size_t)N, (size_t)K, &seed);
        w[i] = pz_weight_dense(d, dt, N, K);
        ok = d != NULL;
        if (ok && i && b->copy(b, d, w[0].data, wbytes, PZ_COPY_D2D, err)) goto done;
        if (ok && b->prepare_weight(b, &w[i], err)) goto done;
    }
    if (!ok) {
        pz_err(err, "calibrate: out of memory");
        goto done;
    }
    for (int i = 0; i < reps + 2; i++) {
        double t0 = pz_now();
        if (b->matmul(b, y, N, x, K, PZ_DT_F32, &w[i % copies], M, 0, err) || b->synchronize(b, err)) goto done;
        if (i >= 2) t[i - 2] = pz_now() - t0;
    }
    *sec = median_of(t, reps);
    rc = 0;
done:
    free(t);
    b->free(b, x);
    b->free(b, y);
    for (int i = 0; i < copies; i++) {
        if (w[i].priv) b->release_weight(b, &w[i]);
        b->free(b, (void *)w[i].data);
    }
    return rc;
}

int pz_profile_calibrate(pz_backend *b, int repeats, pz_calib *out, char *err) {
    memset(out, 0, sizeof *out);
    if (repeats < 3) repeats = 3;
    static const int shapes[][3] = {{512, 1536, 576}, {512, 576, 1536}, {512, 1728, 576}};
    const int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (int d = 0; d < 2; d++) {
        pz_dt dt = d ? PZ_DT_BF16 : PZ_DT_F32;
        double rate[8];
        for (int i = 0; i < ns; i++) {
            double s;
            if (time_matmul(b, dt, shapes[i][0], shapes[i][1], shapes[i][2], 1, repeats, &s, err)) return -1;
            rate[i] = 2.0 * shapes[i][0] * shapes[i][1] * shapes[i][2] / s;
        }
        *(d ? &out->gemm_bf16 : &out->gemm_f32) = median_of(rate, ns);
    }
    // Row factors: cache-cold bf16 products of M rows on the same shapes.
    static const int rows[PZ_CALIB_ROWS - 1] = {1, 8, 16, 64};
    for (int r = 0; r < PZ_CALIB_ROWS - 1; r++) {
        double f[8];
        for (int i = 0; i < ns; i++) {
            double s, wbytes = 2.0 * shapes[i][1] * shapes[i][2];
            int copies = (int)ceil((256.0 * 1048576) / wbytes);
            if (copies > 128) copies = 128;
            if (time_matmul(b, PZ_DT_BF16, rows[r], shapes[i][1], shapes[i][2], copies, repeats * 2, &s, err))
                return -1;
            f[i] = 2.0 * rows[r] * shapes[i][1] * shapes[i][2] / s / out->gemm_bf16;
        }
        out->rows_m[r] = rows[r];
        out->rows_eff[r] = median_of(f, ns);
        if (out->rows_eff[r] > 1) out->rows_eff[r] = 1;
    }
    out->rows_m[PZ_CALIB_ROWS - 1] = 512, out->rows_eff[PZ_CALIB_ROWS - 1] = 1;
    // Weight streaming: M = 1 bf16 products of the reference parent's decode
    // shapes ([gate;up] 3072x576, down 576x1536, LM head 49152x576), each
    // over enough copies (≥ 256 MiB, ≤ 128) that none is in cache; the
    // median over shapes of bytes/s.
    static const int vshapes[][2] = {{3072, 576}, {576, 1536}, {49152, 576}};
    double bw[3];
    for (int i = 0; i < 3; i++) {
        double s, wbytes = 2.0 * vshapes[i][0] * vshapes[i][1];
        int copies = (int)ceil((256.0 * 1048576) / wbytes);
        if (copies > 128) copies = 128;
        if (time_matmul(b, PZ_DT_BF16, 1, vshapes[i][0], vshapes[i][1], copies, repeats * 4, &s, err)) return -1;
        bw[i] = wbytes / s;
    }
    out->mem_bw = median_of(bw, 3);
    // One op's fixed cost.
    float *x = b->alloc(b, 576 * 4), *w = b->alloc(b, 576 * 4);
    if (!x || !w) {
        b->free(b, x);
        b->free(b, w);
        return pz_err(err, "calibrate: out of memory");
    }
    for (int i = 0; i < 576; i++) x[i] = 1.0f + 0.001f * (float)i, w[i] = 1.0f;
    double t[64];
    for (int i = 0; i < 64 + 8; i++) {
        double t0 = pz_now();
        b->rmsnorm(b, x, x, w, 1, 576, 1e-5f);
        if (i >= 8) t[i - 8] = pz_now() - t0;
    }
    out->launch_s = median_of(t, 64);
    if (out->launch_s <= 0) out->launch_s = 1e-7;
    b->free(b, x);
    b->free(b, w);
    long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    out->mem_bytes = pages > 0 && psz > 0 ? (double)pages * (double)psz : 1e9;
    out->threads = b->n_threads;
    pz_profile_device_desc(b, out->cpu, sizeof out->cpu);
    return 0;
}

static void add_source(cJSON *src, const char *key, const char *title, const char *why) {
    cJSON *o = cJSON_AddObjectToObject(src, key);
    cJSON_AddStringToObject(o, "title", title);
    cJSON_AddStringToObject(o, "url", "local-measurement");
    cJSON_AddStringToObject(o, "why", why);
}

char *pz_calib_to_json(const pz_calib *c, const char *date, const char *command, const pz_cost_params *eff) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", "cpu_local");
    char name[200];
    snprintf(name, sizeof name, "local CPU, measured: %s", c->cpu);
    cJSON_AddStringToObject(r, "name", name);
    cJSON *al = cJSON_AddArrayToObject(r, "aliases");
    cJSON_AddItemToArray(al, cJSON_CreateString("cpu"));
    cJSON_AddItemToArray(al, cJSON_CreateString("cpu_local"));
    cJSON_AddBoolToObject(r, "measured", 1);
    cJSON_AddStringToObject(r, "date", date);
    cJSON_AddStringToObject(r, "source_command", command);
    cJSON_AddNumberToObject(r, "threads", c->threads);
    cJSON_AddNumberToObject(r, "flops_bf16", c->gemm_bf16);
    cJSON_AddNumberToObject(r, "flops_f32", c->gemm_f32);  // optional, CPU only
    cJSON_AddNullToObject(r, "flops_fp8");
    cJSON_AddNumberToObject(r, "mem_bandwidth_bytes_per_s", c->mem_bw);
    cJSON_AddNumberToObject(r, "mem_bytes", c->mem_bytes);
    cJSON_AddStringToObject(r, "interconnect", "none (single host; link figures are placeholders, unused at tp 1)");
    cJSON_AddNumberToObject(r, "link_bandwidth_bytes_per_s", c->mem_bw);
    cJSON_AddNumberToObject(r, "link_latency_s", 1e-6);
    cJSON_AddNumberToObject(r, "launch_overhead_s", c->launch_s);
    cJSON *e = cJSON_AddObjectToObject(r, "cost_params");
    if (eff) {
        cJSON_AddNumberToObject(e, "eff_gemm", eff->eff_gemm);
        cJSON_AddNumberToObject(e, "eff_attn", eff->eff_attn);
        cJSON_AddNumberToObject(e, "eff_mem", eff->eff_mem);
    }
    cJSON *t = cJSON_AddArrayToObject(e, "gemm_rows_eff");
    for (int i = 0; i < PZ_CALIB_ROWS; i++) {
        if (!(c->rows_m[i] >= 1)) continue;
        double pt[2] = {c->rows_m[i], c->rows_eff[i] > 0 ? c->rows_eff[i] : 1e-3};
        cJSON_AddItemToArray(t, cJSON_CreateDoubleArray(pt, 2));
    }
    cJSON *s = cJSON_AddObjectToObject(r, "sources");
    add_source(s, "flops_bf16", "puzzle profile --calibrate",
               "median FLOP/s of the runtime's bf16 matmul, M=512 rows, N x K in {1536x576, 576x1536, 1728x576}");
    add_source(s, "flops_f32", "puzzle profile --calibrate", "the same products with fp32 weights");
    add_source(s, "flops_fp8", "not supported", "the CPU backend has no fp8 products");
    add_source(s, "mem_bandwidth_bytes_per_s", "puzzle profile --calibrate",
               "weight streaming: median bytes/s of the runtime's M=1 bf16 matmul on 3072x576, 576x1536, "
               "49152x576 weights, each rotating over >= 256 MiB of copies (decode's pattern, cache-cold)");
    add_source(s, "mem_bytes", "sysconf(_SC_PHYS_PAGES)", "physical memory of the host");
    add_source(s, "link_bandwidth_bytes_per_s", "placeholder", "no interconnect on one CPU host; used only for tp > 1");
    add_source(s, "link_latency_s", "placeholder", "no interconnect on one CPU host; used only for tp > 1");
    add_source(s, "launch_overhead_s", "puzzle profile --calibrate",
               "median time of one RMSNorm of a 576-wide row: the fixed cost (OpenMP fork/join) of one op");
    char *out = cJSON_Print(r);
    cJSON_Delete(r);
    return out;
}
