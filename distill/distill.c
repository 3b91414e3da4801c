// distill.c — see distill.h.
#include "distill.h"
#include "capture.h"
#include "common.h"
#include "devmem.h"
#include "net.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- the loss -----------------------------------------------------------------------

struct pz_gkd {
    pz_net *tn, *cn;
    pz_backend *be;
    int n_layer, hidden, vocab, max_rows;
    float *dh;          // (n_layer, max_rows, hidden) direct gradients of the hidden states (backend)
    const float **dhp;  // (n_layer) pointers into dh
    pz_gkd_loss w;      // loss weights
    pz_gkd_parts last;  // the parts of the last batch
};

pz_gkd_loss pz_gkd_default_loss(void) { return (pz_gkd_loss){1, 1, 0, 1}; }

int pz_gkd_set_loss(pz_gkd *g, const pz_gkd_loss *w, char *err) {
    if (!(w->cos >= 0 && w->kl >= 0 && w->lm >= 0) || w->cos + w->kl + w->lm <= 0 || !isfinite(w->cos + w->kl + w->lm))
        return pz_err(err, "distill: loss weights cos %g, KL %g, LM %g: each >= 0 and not all 0", w->cos, w->kl,
                      w->lm);
    if (!(w->temperature >= 0.05f && w->temperature <= 20))
        return pz_err(err, "distill: KL temperature %g outside [0.05, 20]", w->temperature);
    if (w->lm > 0 && w->temperature != 1)
        return pz_err(err, "distill: an LM loss with a KL temperature other than 1 is not supported");
    if ((w->lm > 0 || w->temperature != 1) && g->be->kind != PZ_BACKEND_CPU)
        return pz_err(err, "distill: an LM loss or a KL temperature needs the CPU backend (not %s)", g->be->name);
    g->w = *w;
    return 0;
}

void pz_gkd_last_parts(const pz_gkd *g, pz_gkd_parts *out) { *out = g->last; }

// On the host (CPU backend) before the KL op, over the M rows of teacher
// logits t and child logits c (vocab V): the plain KL(p ‖ q) sum (*kl), and
// the lm term's sum (*lm: CE on the next token, KL on a window's last row).
// Then rewrites the rows for the op: with an LM weight, each labelled row
// of t becomes the logits of p' = (1 − a)·p + a·onehot(next), a = lm / (kl +
// lm), so that (kl + lm)·∂KL(p' ‖ q)/∂c = kl·(q − p) + lm·(q − onehot), the
// gradient of kl·KL + lm·CE; with a temperature τ, t and c are divided by τ.
static void host_logits(const pz_gkd_loss *w, float *t, float *c, const int32_t *ids, int n_seq, int T, int V,
                        double *kl, double *lm) {
    const long M = (long)n_seq * T;
    const double a = w->lm > 0 ? (double)w->lm / ((double)w->kl + w->lm) : 0;
    const float inv_t = 1.0f / w->temperature;
    double ks = 0, ls = 0;
    for (long r = 0; r < M; r++) {
        float *tr = t + (size_t)r * V, *cr = c + (size_t)r * V;
        float mt = tr[0], mc = cr[0];
        for (int i = 1; i < V; i++) {
            if (tr[i] > mt) mt = tr[i];
            if (cr[i] > mc) mc = cr[i];
        }
        double st = 0, sc = 0, sd = 0;
        for (int i = 0; i < V; i++) {
            double et = expf(tr[i] - mt);
            st += et, sc += expf(cr[i] - mc), sd += et * ((double)tr[i] - cr[i]);
        }
        const double lse_t = mt + log(st), lse_c = mc + log(sc), k = sd / st - lse_t + lse_c;
        ks += k;
        const int labelled = (int)(r % T) < T - 1;
        if (w->lm > 0) {
            if (!labelled) {
                ls += k;
            } else {
                const int y = ids[r + 1];
                ls += lse_c - cr[y];
                if (a >= 1) tr[y] = mt + 200;  // p' = onehot: every other e^(t − t_y) is 0 in fp32
                else tr[y] = (float)(lse_t + log(exp(tr[y] - lse_t) + a / (1 - a)));
            }
        }
        if (w->temperature != 1)
            for (int i = 0; i < V; i++) tr[i] *= inv_t, cr[i] *= inv_t;
    }
    *kl = ks, *lm = ls;
}

pz_gkd *pz_gkd_create(const pz_model *teacher, const pz_model *child, int max_rows, pz_dt prec,
                      pz_backend *be, char *err) {
    const pz_config *a = &teacher->cfg, *b = &child->cfg;
    if (a->n_layer != b->n_layer || a->hidden != b->hidden || a->vocab != b->vocab)
        return pz_err(err, "distill: teacher (%d layers, hidden %d, vocab %d) and child (%d, %d, %d) "
                      "must match in layers, hidden size and vocabulary",
                      a->n_layer, a->hidden, a->vocab, b->n_layer, b->hidden, b->vocab), NULL;
    if (!be->train || !be->train->cosine_loss || !be->train->kl_loss)
        return pz_err(err, "distill: the %s backend has no cosine or KL loss op", be->name), NULL;
    pz_gkd *g = calloc(1, sizeof *g);
    if (!g) return pz_err(err, "distill: out of memory"), NULL;
    g->n_layer = b->n_layer, g->hidden = b->hidden, g->vocab = b->vocab, g->max_rows = max_rows;
    g->be = be;
    g->w = pz_gkd_default_loss();
    const size_t LRH = (size_t)b->n_layer * max_rows * b->hidden;
    if (!(g->dhp = malloc(sizeof(float *) * (size_t)b->n_layer))) {
        pz_err(err, "distill: out of memory (%d rows)", max_rows);
        goto fail;
    }
    if (!(g->dh = pz_dev_alloc(be, LRH * sizeof(float), "distill", err))) goto fail;
    for (int l = 0; l < b->n_layer; l++) g->dhp[l] = g->dh + (size_t)l * max_rows * b->hidden;
    if (!(g->tn = pz_net_create(teacher, max_rows, prec, be, err))) goto fail;
    if (!(g->cn = pz_net_create(child, max_rows, prec, be, err))) goto fail;
    return g;
fail:
    pz_gkd_free(g);
    return NULL;
}

void pz_gkd_free(pz_gkd *g) {
    if (!g) return;
    pz_net_free(g->tn);
    pz_net_free(g->cn);
    if (g->be) g->be->free(g->be, g->dh);
    free(g->dhp);
    free(g);
}

int pz_gkd_batch(pz_gkd *g, const pz_model *teacher, const pz_model *child, pz_model *grad,
                 float scale, const int32_t *ids, int n_seq, int T, double *cos_loss, double *kl,
                 char *err) {
    if (pz_net_fwd(g->tn, teacher, ids, n_seq, T, err)) return -1;
    if (pz_net_fwd(g->cn, child, ids, n_seq, T, err)) return -1;
    const int M = n_seq * T, H = g->hidden, V = g->vocab, L = g->n_layer;
    const double gs = (double)scale / M;
    const int want = grad != NULL;
    const pz_gkd_loss *w = &g->w;
    pz_backend *be = g->be;
    // Both losses run where the activations are; only the two sums come
    // back. The KL's gradient overwrites the child's logits in place.
    float *dcl = pz_net_logits(g->cn), *tl = pz_net_logits(g->tn);
    const int host = w->lm > 0 || w->temperature != 1;  // CPU backend (pz_gkd_set_loss)
    double hk = 0, hl = NAN;
    if (host) host_logits(w, tl, dcl, ids, n_seq, T, V, &hk, &hl);
    const int dcos = want && w->cos > 0;
    double cs = be->train->cosine_loss(be, pz_net_hidden(g->tn, 0), pz_net_hidden(g->cn, 0), L,
                                       (size_t)g->max_rows * H, M, H, dcos ? g->dh : NULL, gs * w->cos);
    const double tau = w->temperature;
    double ks = be->train->kl_loss(be, tl, dcl, M, V, want ? dcl : NULL, gs * ((double)w->kl + w->lm) * tau);
    // NAN from an op is a failure or a NaN loss: the backend's error says which.
    if ((isnan(cs) || isnan(ks)) && be->synchronize(be, err)) return -1;
    pz_gkd_parts *pt = &g->last;
    pt->cos = cs / M;
    pt->kl = host ? hk / M : ks / M;
    pt->kl_t = w->lm > 0 ? pt->kl : tau * tau * ks / M;
    pt->lm = w->lm > 0 ? hl / M : NAN;
    pt->objective = w->cos * pt->cos + w->kl * pt->kl_t + (w->lm > 0 ? w->lm * pt->lm : 0);
    *cos_loss = pt->cos;
    *kl = pt->kl;
    if (!want) return 0;
    return pz_net_bwd(g->cn, child, grad, dcl, dcos ? g->dhp : NULL, err);
}

// ---- parameters ---------------------------------------------------------------------------

pz_distill_params pz_distill_default_params(void) {
    pz_distill_params p;
    memset(&p, 0, sizeof p);
    p.seq = 256;
    p.batch = 4;
    p.accum = 1;
    p.tokens = 65536;
    p.lr = 2e-4f;
    p.lr_min_ratio = 0.1f;
    p.warmup = -1;
    p.adam = pz_adamw_default_params();
    p.prec = PZ_DT_BF16;
    p.seed = 1;
    p.checkpoint_every = 50;
    p.loss = pz_gkd_default_loss();
    return p;
}

void pz_distill_result_free(pz_distill_result *r) {
    if (!r) return;
    free(r->curve_cos), free(r->curve_kl), free(r->curve_lr), free(r->curve_gnorm);
    memset(r, 0, sizeof *r);
}

double pz_distill_step_flops(const pz_config *teacher, const pz_config *child, long rows, int seq) {
    return pz_net_fwd_flops(teacher, (int)rows, seq) + 3.0 * pz_net_fwd_flops(child, (int)rows, seq);
}

// ---- the window order -----------------------------------------------------------------------

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct {
    long n_win, epoch;  // epoch whose order is in `order` (-1: none)
    long *order;
    uint64_t seed;
} windows;

// The window (index into the stream) that global draw number gi reads.
static long window_at(windows *w, long gi) {
    long e = gi / w->n_win, i = gi % w->n_win;
    if (e != w->epoch) {
        uint64_t s = w->seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(e + 1));
        for (long k = 0; k < w->n_win; k++) w->order[k] = k;
        for (long k = w->n_win - 1; k > 0; k--) {
            long j = (long)(splitmix(&s) % (uint64_t)(k + 1));
            long t = w->order[k];
            w->order[k] = w->order[j], w->order[j] = t;
        }
        w->epoch = e;
    }
    return w->order[i];
}

// ---- checkpoints --------------------------------------------------------------------------

#define CK_MAGIC "PZGKDCK1"
#define CK_VERSION 1u
#define CK_NAME "gkd_checkpoint.bin"

typedef struct {
    char magic[8];
    uint32_t version, n_tensors;
    int64_t step, total_steps, windows_done;
    uint64_t seed, run_hash, n_floats;  // n_floats: parameters (each of p, m, v)
} ck_header;

typedef struct {
    int n;
    pz_adamw_tensor *t;
    size_t n_floats;
} params;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t run_hash(const pz_model *teacher, const pz_model *child, const int32_t *tokens,
                         long n_tokens, const pz_distill_params *p, long steps, long warm) {
    uint64_t h = 0xcbf29ce484222325ull;
    // The child's starting weights too (read as 64-bit words, for speed): a
    // checkpoint of another child of the same architecture is not resumed.
    uint64_t wh = 0xcbf29ce484222325ull;
    const uint64_t *wd = child->arena;
    for (size_t i = 0; i < child->arena_bytes / 8; i++) wh = (wh ^ wd[i]) * 0x100000001b3ull;
    uint64_t a[5] = {pz_capture_config_hash(&teacher->cfg), pz_capture_config_hash(&child->cfg),
                     pz_capture_tokens_hash(tokens, n_tokens), (uint64_t)child->cfg.tie_embeddings, wh};
    h = fnv(h, a, sizeof a);
    long ints[7] = {p->seq, p->batch, p->accum, steps, warm, (long)p->prec, (long)p->seed};
    h = fnv(h, ints, sizeof ints);
    float f[7] = {p->lr, p->lr_min_ratio, p->adam.beta1, p->adam.beta2, p->adam.eps,
                  p->adam.weight_decay, p->adam.clip_norm};
    h = fnv(h, f, sizeof f);
    // The loss weights only when they are not the paper's, so that a
    // checkpoint written before they existed still resumes.
    const pz_gkd_loss d = pz_gkd_default_loss();
    if (memcmp(&p->loss, &d, sizeof d)) {
        float lw[4] = {p->loss.cos, p->loss.kl, p->loss.lm, p->loss.temperature};
        h = fnv(h, lw, sizeof lw);
    }
    return h;
}

static int write_all(FILE *f, const void *p, size_t bytes) { return fwrite(p, 1, bytes, f) == bytes ? 0 : -1; }
static int read_all(FILE *f, void *p, size_t bytes) { return fread(p, 1, bytes, f) == bytes ? 0 : -1; }

static int ck_save(const char *dir, const ck_header *hd, const params *ps, const pz_distill_result *r,
                   char *err) {
    char path[4096], tmp[4200];
    pz_path_join(path, sizeof path, dir, CK_NAME);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return pz_err(err, "distill: cannot write %s: %s", tmp, strerror(errno));
    int bad = write_all(f, hd, sizeof *hd);
    const size_t np = (size_t)hd->step;
    const double *curves[4] = {r->curve_cos, r->curve_kl, r->curve_lr, r->curve_gnorm};
    for (int c = 0; c < 4 && !bad; c++) bad = write_all(f, curves[c], np * sizeof(double));
    for (int i = 0; i < ps->n && !bad; i++) bad = write_all(f, ps->t[i].p, ps->t[i].n * sizeof(float));
    for (int i = 0; i < ps->n && !bad; i++) bad = write_all(f, ps->t[i].m, ps->t[i].n * sizeof(float));
    for (int i = 0; i < ps->n && !bad; i++) bad = write_all(f, ps->t[i].v, ps->t[i].n * sizeof(float));
    if (!bad) bad = fflush(f) || fsync(fileno(f));
    if (fclose(f)) bad = 1;
    if (bad || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return pz_err(err, "distill: writing %s failed: %s", path, strerror(e));
    }
    pz_fsync_dir_of(path);
    return 0;
}

// Loads the checkpoint into ps and r; 1 when there is none, 0 when loaded, -1 on error.
static int ck_load(const char *dir, const ck_header *want, params *ps, pz_distill_result *r,
                   long *step, char *err) {
    char path[4096];
    pz_path_join(path, sizeof path, dir, CK_NAME);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return 1;
        return pz_err(err, "distill: cannot read %s: %s", path, strerror(errno));
    }
    ck_header h;
    int rc = -1;
    if (read_all(f, &h, sizeof h) || memcmp(h.magic, CK_MAGIC, 8) || h.version != CK_VERSION) {
        pz_err(err, "distill: %s is not a distillation checkpoint of this version", path);
        goto out;
    }
    if (h.run_hash != want->run_hash || h.n_tensors != want->n_tensors || h.n_floats != want->n_floats ||
        h.total_steps != want->total_steps || h.seed != want->seed) {
        pz_err(err, "distill: %s belongs to another run (different models, data, batch, schedule, loss or "
               "optimizer settings): use another --out or remove it", path);
        goto out;
    }
    if (h.step < 0 || h.step > h.total_steps) {
        pz_err(err, "distill: %s: step %lld out of range", path, (long long)h.step);
        goto out;
    }
    double *curves[4] = {r->curve_cos, r->curve_kl, r->curve_lr, r->curve_gnorm};
    int bad = 0;
    for (int c = 0; c < 4 && !bad; c++) bad = read_all(f, curves[c], (size_t)h.step * sizeof(double));
    for (int i = 0; i < ps->n && !bad; i++) bad = read_all(f, ps->t[i].p, ps->t[i].n * sizeof(float));
    for (int i = 0; i < ps->n && !bad; i++) bad = read_all(f, ps->t[i].m, ps->t[i].n * sizeof(float));
    for (int i = 0; i < ps->n && !bad; i++) bad = read_all(f, ps->t[i].v, ps->t[i].n * sizeof(float));
    char extra;
    if (bad || fread(&extra, 1, 1, f) != 0) {
        pz_err(err, "distill: %s is truncated or has trailing bytes", path);
        goto out;
    }
    *step = (long)h.step;
    r->n_points = (int)h.step;
    rc = 0;
out:
    fclose(f);
    return rc;
}

static int write_losses(const char *dir, const pz_distill_result *r, char *err) {
    char path[4096], tmp[4200];
    pz_path_join(path, sizeof path, dir, "gkd_losses.tsv");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return pz_err(err, "distill: cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "step\tlr\tcos_loss\tkl\tgrad_norm\n");
    for (int i = 0; i < r->n_points; i++)
        fprintf(f, "%d\t%.6g\t%.6f\t%.6f\t%.6g\n", i + 1, r->curve_lr[i], r->curve_cos[i], r->curve_kl[i],
                r->curve_gnorm[i]);
    if (fclose(f) || rename(tmp, path)) {
        unlink(tmp);
        return pz_err(err, "distill: writing %s failed", path);
    }
    return 0;
}

// ---- the run ----------------------------------------------------------------------------------

static int params_init(params *ps, pz_model *child, pz_model *grad, pz_model *m1, pz_model *m2,
                       char *err) {
    ps->n = pz_model_n_weights(child);
    ps->t = calloc((size_t)ps->n, sizeof *ps->t);
    if (!ps->t) return pz_err(err, "distill: out of memory");
    ps->n_floats = 0;
    for (int i = 0; i < ps->n; i++) {
        pz_weight_info a, g, m, v;
        if (pz_model_weight_at(child, i, &a) || pz_model_weight_at(grad, i, &g) ||
            pz_model_weight_at(m1, i, &m) || pz_model_weight_at(m2, i, &v) || a.type != PZ_DT_F32)
            return pz_err(err, "distill: weight %d: no fp32 tensor", i);
        size_t n = (size_t)a.rows * a.cols;
        ps->t[i] = (pz_adamw_tensor){(float *)a.data, (float *)g.data, (float *)m.data, (float *)v.data,
                                     n, a.is_matrix};
        ps->n_floats += n;
    }
    return 0;
}

// The communicator's buffers are backend memory: host values go through
// dbuf (16 bytes of it). all_reduce of n <= 4 host floats, broadcast of
// `bytes` <= 16 host bytes from rank 0.
static int reduce_host(pz_comm *comm, void *dbuf, float *v, int n, pz_reduce_op op, char *err) {
    pz_backend *b = comm->b;
    const size_t bytes = sizeof(float) * (size_t)n;
    if (b->copy(b, dbuf, v, bytes, PZ_COPY_H2D, err) || comm->all_reduce(comm, dbuf, (size_t)n, op, err) ||
        b->copy(b, v, dbuf, bytes, PZ_COPY_D2H, err))
        return -1;
    return b->synchronize(b, err);
}

static int bcast_host(pz_comm *comm, void *dbuf, void *v, size_t bytes, char *err) {
    pz_backend *b = comm->b;
    if (b->copy(b, dbuf, v, bytes, PZ_COPY_H2D, err) || comm->broadcast(comm, dbuf, bytes, 0, err) ||
        b->copy(b, v, dbuf, bytes, PZ_COPY_D2H, err))
        return -1;
    return b->synchronize(b, err);
}

// Broadcasts every parameter and moment from rank 0 (backend memory), and the step.
static int bcast_state(pz_comm *comm, void *dbuf, params *ps, long *step, char *err) {
    int64_t s = *step;
    if (bcast_host(comm, dbuf, &s, sizeof s, err)) return -1;
    *step = (long)s;
    for (int i = 0; i < ps->n; i++) {
        const size_t b = ps->t[i].n * sizeof(float);
        if (comm->broadcast(comm, ps->t[i].p, b, 0, err) || comm->broadcast(comm, ps->t[i].m, b, 0, err) ||
            comm->broadcast(comm, ps->t[i].v, b, 0, err))
            return -1;
    }
    return 0;
}

int pz_distill_run(const pz_model *teacher, pz_model *child, const int32_t *tokens, long n_tokens,
                   const char *out_dir, const pz_distill_params *pp, pz_backend *be, pz_comm *comm_in,
                   pz_distill_result *res, char *err) {
    pz_distill_params p = pp ? *pp : pz_distill_default_params();
    pz_distill_result rr;
    memset(&rr, 0, sizeof rr);
    if (res) memset(res, 0, sizeof *res);
    pz_comm *comm = comm_in, *own_comm = NULL;
    if (!comm && !(comm = own_comm = pz_comm_single_create(be, err))) return -1;
    const int rank = comm->rank, size = comm->size;
    if (p.seq < 2 || p.batch < 1 || p.accum < 1 || p.tokens < 1) {
        pz_err(err, "distill: seq %d, batch %d, accum %d, tokens %ld: need seq >= 2 and the rest >= 1",
               p.seq, p.batch, p.accum, p.tokens);
        goto early;
    }
    if (p.accum % size) {
        pz_err(err, "distill: --accum %d is not a multiple of the %d ranks", p.accum, size);
        goto early;
    }
    const long n_win = n_tokens / p.seq;
    if (n_win < 1) {
        pz_err(err, "distill: %ld tokens make no window of %d", n_tokens, p.seq);
        goto early;
    }
    const long rows_step = (long)p.seq * p.batch * p.accum;
    const long steps = (p.tokens + rows_step - 1) / rows_step;
    const long warm = p.warmup >= 0 ? p.warmup : (steps / 20 > 1 ? steps / 20 : 1);
    const int rows = p.seq * p.batch;

    // Host models (grad, m1, m2: zeroed) and their views in backend memory
    // (the host models themselves on the CPU backend). The host copies of
    // the child and the moments are what checkpoints read and write.
    pz_model *grad = NULL, *m1 = NULL, *m2 = NULL;
    pz_model td, cd, gd, m1d, m2d;
    memset(&td, 0, sizeof td), memset(&cd, 0, sizeof cd), memset(&gd, 0, sizeof gd);
    memset(&m1d, 0, sizeof m1d), memset(&m2d, 0, sizeof m2d);
    pz_dev_zeros zeros = {NULL, 0};
    void *dbuf = NULL;
    int trained = 0;  // the child's view may differ from the host child: copy back at the end
    pz_gkd *g = NULL;
    params ps = {0, NULL, 0}, psh = {0, NULL, 0};
    windows wn = {n_win, -1, NULL, p.seed};
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)rows);
    int rc = -1;
    if (!(wn.order = malloc(sizeof(long) * (size_t)n_win)) || !ids) {
        pz_err(err, "distill: out of memory");
        goto out;
    }
    rr.curve_cos = calloc((size_t)steps, sizeof(double));
    rr.curve_kl = calloc((size_t)steps, sizeof(double));
    rr.curve_lr = calloc((size_t)steps, sizeof(double));
    rr.curve_gnorm = calloc((size_t)steps, sizeof(double));
    if (!rr.curve_cos || !rr.curve_kl || !rr.curve_lr || !rr.curve_gnorm) {
        pz_err(err, "distill: out of memory");
        goto out;
    }
    if (!(grad = pz_model_alloc(&child->cfg, PZ_DT_F32, err)) || !(m1 = pz_model_alloc(&child->cfg, PZ_DT_F32, err)) ||
        !(m2 = pz_model_alloc(&child->cfg, PZ_DT_F32, err)))
        goto out;
    if (pz_model_dev(be, teacher, 1, &td, err) || pz_model_dev(be, child, 1, &cd, err) ||
        pz_model_dev(be, grad, 0, &gd, err) || pz_model_dev(be, m1, 0, &m1d, err) ||
        pz_model_dev(be, m2, 0, &m2d, err))
        goto out;
    if (pz_dev_zeros_init(&zeros, be, gd.arena_bytes < ((size_t)4 << 20) ? gd.arena_bytes : (size_t)4 << 20, err) ||
        !(dbuf = pz_dev_alloc(comm->b, 16, "distill", err)))
        goto out;
    if (params_init(&ps, &cd, &gd, &m1d, &m2d, err) || params_init(&psh, child, grad, m1, m2, err)) goto out;
    if (!(g = pz_gkd_create(&td, &cd, rows, p.prec, be, err)) || pz_gkd_set_loss(g, &p.loss, err)) goto out;

    ck_header hd;
    memset(&hd, 0, sizeof hd);
    memcpy(hd.magic, CK_MAGIC, 8);
    hd.version = CK_VERSION, hd.n_tensors = (uint32_t)ps.n, hd.total_steps = steps;
    hd.seed = p.seed, hd.n_floats = ps.n_floats;
    hd.run_hash = run_hash(teacher, child, tokens, n_tokens, &p, steps, warm);

    // Rank 0 decides whether and where to resume; the others follow.
    long start = 0;
    float status = 0;
    if (rank == 0) {
        int lr_ = ck_load(out_dir, &hd, &psh, &rr, &start, err);
        if (lr_ < 0) status = -1;
        else if (lr_ == 0 && (pz_model_dev_copy(be, &cd, child, 0, err) || pz_model_dev_copy(be, &m1d, m1, 0, err) ||
                              pz_model_dev_copy(be, &m2d, m2, 0, err)))
            status = -1;
        else if (lr_ == 0 && !p.resume) {
            pz_err(err, "distill: %s already holds a checkpoint (step %ld of %ld): pass --resume to "
                   "continue it, or choose another --out", out_dir, start, steps);
            status = -1;
        }
    }
    if (size > 1) {
        char e2[PZ_ERRLEN];
        if (reduce_host(comm, dbuf, &status, 1, PZ_REDUCE_SUM, e2)) {
            if (status == 0) pz_err(err, "%s", e2);
            goto out;
        }
    }
    if (status != 0) {
        if (rank != 0) pz_err(err, "distill: rank 0 could not start (see its message)");
        goto out;
    }
    if (size > 1) {
        if (bcast_state(comm, dbuf, &ps, &start, err)) goto out;
        int64_t np = rr.n_points;
        if (bcast_host(comm, dbuf, &np, sizeof np, err)) goto out;
        rr.n_points = (int)np;
    }
    rr.start_step = start;
    rr.steps = start;
    rr.tokens = start * rows_step;

    const double t0 = pz_now();
    trained = 1;
    for (long s = start; s < steps; s++) {
        if (pz_dev_zero(&zeros, be, gd.arena, gd.arena_bytes, err)) goto out;
        float loss[3] = {0, 0, 0};
        double lc = 0, lk = 0, ll = 0;
        for (int j = 0; j < p.accum; j++) {
            if (j % size != rank) continue;
            for (int k = 0; k < p.batch; k++) {
                long gi = (s * p.accum + j) * (long)p.batch + k;
                memcpy(ids + (size_t)k * p.seq, tokens + window_at(&wn, gi) * p.seq, sizeof(int32_t) * (size_t)p.seq);
            }
            double c, kl;
            if (pz_gkd_batch(g, &td, &cd, &gd, 1.0f / p.accum, ids, p.batch, p.seq, &c, &kl, err)) goto out;
            if (!isfinite(c) || !isfinite(kl)) {
                pz_err(err, "distill: loss is not finite at step %ld (cos %g, KL %g)", s + 1, c, kl);
                goto out;
            }
            pz_gkd_parts pt;
            pz_gkd_last_parts(g, &pt);
            lc += c / p.accum, lk += kl / p.accum, ll += p.loss.lm > 0 ? pt.lm / p.accum : 0;
        }
        loss[0] = (float)lc, loss[1] = (float)lk, loss[2] = (float)ll;
        if (size > 1) {
            if (comm->all_reduce(comm, (float *)gd.arena, gd.arena_bytes / sizeof(float), PZ_REDUCE_SUM, err) ||
                reduce_host(comm, dbuf, loss, 3, PZ_REDUCE_SUM, err))
                goto out;
            lc = loss[0], lk = loss[1], ll = loss[2];
        }
        const float lr = pz_lr_schedule(s, warm, steps, p.lr, p.lr * p.lr_min_ratio);
        const double gn = be->train->adamw_step(be, ps.t, ps.n, s + 1, lr, &p.adam);
        rr.curve_cos[s] = lc, rr.curve_kl[s] = lk, rr.curve_lr[s] = lr, rr.curve_gnorm[s] = gn;
        rr.n_points = (int)(s + 1);
        rr.steps = s + 1;
        rr.tokens = (s + 1) * rows_step;
        const double el = pz_now() - t0;
        pz_distill_progress pr = {.step = s + 1, .total_steps = steps, .cos_loss = lc, .kl = lk,
                                  .lm = p.loss.lm > 0 ? ll : NAN, .lr = lr,
                                  .grad_norm = gn, .elapsed_s = el};
        pr.tokens_per_s = el > 0 ? (double)(s + 1 - start) * rows_step / el : 0;
        pr.eta_s = el / (double)(s + 1 - start) * (double)(steps - s - 1);
        int want_ck = (p.checkpoint_every > 0 && (s + 1) % p.checkpoint_every == 0) || s + 1 == steps;
        pr.checkpointed = want_ck;
        float stop = 0;
        if (rank == 0 && p.progress) stop = (float)p.progress(p.user, &pr);
        if (size > 1 && reduce_host(comm, dbuf, &stop, 1, PZ_REDUCE_MAX, err)) goto out;
        if (stop == PZ_DISTILL_ABANDON) {
            pz_err(err, "distill: abandoned at step %ld without a checkpoint", s + 1);
            goto out;
        }
        if (stop == PZ_DISTILL_STOP) want_ck = 1;
        if (want_ck) {
            hd.step = s + 1, hd.windows_done = (s + 1) * (long)p.accum * p.batch;
            if (rank == 0 && (pz_model_dev_copy(be, &cd, child, 1, err) || pz_model_dev_copy(be, &m1d, m1, 1, err) ||
                              pz_model_dev_copy(be, &m2d, m2, 1, err) || ck_save(out_dir, &hd, &psh, &rr, err)))
                goto out;
        }
        if (stop == PZ_DISTILL_STOP) {
            pz_err(err, "distill: stopped at step %ld of %ld (checkpoint written; rerun with --resume to go on)",
                   s + 1, steps);
            goto out;
        }
    }
    if (rank == 0 && write_losses(out_dir, &rr, err)) goto out;
    rr.wall_s = pz_now() - t0;
    rc = 0;
out:
    if (trained && pz_model_dev_copy(be, &cd, child, 1, rc ? NULL : err)) rc = -1;  // the child as trained
    pz_gkd_free(g);
    pz_dev_zeros_free(&zeros, be);
    if (dbuf) comm->b->free(comm->b, dbuf);
    if (teacher) pz_model_dev_free(be, &td, teacher);
    pz_model_dev_free(be, &cd, child);
    if (grad) pz_model_dev_free(be, &gd, grad);
    if (m1) pz_model_dev_free(be, &m1d, m1);
    if (m2) pz_model_dev_free(be, &m2d, m2);
    pz_model_free(grad);
    pz_model_free(m1);
    pz_model_free(m2);
    free(ps.t);
    free(psh.t);
    free(wn.order);
    free(ids);
    if (rc == 0 && res) *res = rr;
    else pz_distill_result_free(&rr);
    pz_comm_free(own_comm);
    return rc;
early:
    pz_comm_free(own_comm);
    return -1;
}
