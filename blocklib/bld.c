// bld.c — see bld.h.
#include "bld.h"
#include "common.h"
#include "devmem.h"
#include "subblock.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pz_bld_params pz_bld_default_params(void) {
    pz_bld_params p;
    memset(&p, 0, sizeof p);
    p.batch_windows = 4;
    p.lr = 3e-3f;  // the LR sweep of results/bld_lr_sweep.md
    p.lr_min_ratio = 0.01f;
    p.warmup_frac = 0.05f;
    p.adam = pz_adamw_default_params();
    p.prec = PZ_DT_BF16;
    p.val_frac = 0.1f;
    p.val_max_tokens = 16384;
    p.seed = 1;
    p.n_threads = 1;
    p.init = pz_init_default_params();
    p.save_dtype = PZ_ST_F32;
    p.loss = PZ_BLD_LOSS_TOKEN;
    p.loss_eps = 1e-6f;
    return p;
}

const char *pz_bld_loss_name(pz_bld_loss l) { return l == PZ_BLD_LOSS_GLOBAL ? "global" : "token"; }

int pz_bld_loss_parse(const char *s, pz_bld_loss *out) {
    if (!s) return -1;
    if (!strcmp(s, "token")) *out = PZ_BLD_LOSS_TOKEN;
    else if (!strcmp(s, "global")) *out = PZ_BLD_LOSS_GLOBAL;
    else return -1;
    return 0;
}

void pz_bld_result_free(pz_bld_result *r) {
    if (!r) return;
    free(r->curve_step);
    free(r->curve_train);
    free(r->curve_val);
    r->curve_step = NULL, r->curve_train = NULL, r->curve_val = NULL;
    r->n_points = 0;
}

// ---- the block as a function of its input ---------------------------------------

typedef struct {
    pz_sub_kind sub;
    pz_backend *be;
    pz_sub_exec *ea, *ef;
    int H, T, max_rows;
    float *ya, *x2, *dx2;  // pair only, backend memory: (max_rows, hidden)
} runner;

static void runner_free(runner *r) {
    pz_sub_exec_free(r->ea);
    pz_sub_exec_free(r->ef);
    if (r->be) {
        r->be->free(r->be, r->ya);
        r->be->free(r->be, r->x2);
        r->be->free(r->be, r->dx2);
    }
    memset(r, 0, sizeof *r);
}

static int runner_init(runner *r, const pz_config *c, const pz_block *b, int max_rows, int T,
                       pz_dt prec, pz_backend *be, char *err) {
    memset(r, 0, sizeof *r);
    r->sub = b->sub, r->be = be, r->H = c->hidden, r->T = T, r->max_rows = max_rows;
    if (b->sub != PZ_SUB_FFN &&
        !(r->ea = pz_sub_exec_create(c, PZ_SUB_ATTN, b->attn, max_rows, prec, be, err)))
        goto fail;
    if (b->sub != PZ_SUB_ATTN &&
        !(r->ef = pz_sub_exec_create(c, PZ_SUB_FFN, b->ffn, max_rows, prec, be, err)))
        goto fail;
    if (b->sub == PZ_SUB_PAIR) {
        size_t n = (size_t)max_rows * c->hidden * sizeof(float);
        if (!(r->ya = pz_dev_alloc(be, n, "bld", err)) || !(r->x2 = pz_dev_alloc(be, n, "bld", err)) ||
            !(r->dx2 = pz_dev_alloc(be, n, "bld", err)))
            goto fail;
    }
    return 0;
fail:
    runner_free(r);
    return -1;
}

// x, y: backend memory.
static int runner_fwd(runner *r, const pz_block_weights *w, const float *x, int ns,
                      float *y, char *err) {
    if (r->sub == PZ_SUB_ATTN) return pz_sub_exec_fwd(r->ea, w, x, ns, r->T, y, err);
    if (r->sub == PZ_SUB_FFN) return pz_sub_exec_fwd(r->ef, w, x, ns, r->T, y, err);
    const size_t n = (size_t)ns * r->T * r->H;
    if (pz_sub_exec_fwd(r->ea, w, x, ns, r->T, r->ya, err)) return -1;
    if (r->be->copy(r->be, r->x2, x, n * sizeof(float), PZ_COPY_D2D, err)) return -1;
    r->be->add(r->be, r->x2, r->ya, n);  // x2 = x + ya
    if (pz_sub_exec_fwd(r->ef, w, r->x2, ns, r->T, y, err)) return -1;
    r->be->add(r->be, y, r->ya, n);
    return 0;
}

static int runner_bwd(runner *r, const pz_block_weights *w,
                      const pz_block_weights *dw, const float *x, const float *dy, int ns, char *err) {
    if (r->sub == PZ_SUB_ATTN) return pz_sub_exec_bwd(r->ea, w, dw, x, dy, NULL, err);
    if (r->sub == PZ_SUB_FFN) return pz_sub_exec_bwd(r->ef, w, dw, x, dy, NULL, err);
    const size_t n = (size_t)ns * r->T * r->H;
    if (pz_sub_exec_bwd(r->ef, w, dw, r->x2, dy, r->dx2, err)) return -1;
    r->be->add(r->be, r->dx2, dy, n);
    return pz_sub_exec_bwd(r->ea, w, dw, x, r->dx2, NULL, err);
}

// ---- data -------------------------------------------------------------------

typedef struct {
    const pz_capture *cap;
    pz_sub_kind sub;
    int T, H;
    long n_seq, n_train, n_val, n_val_eval;
} split;

static int split_init(split *s, const pz_capture *cap, const pz_block *b, const pz_bld_params *p,
                      char *err) {
    const pz_capture_info *ci = pz_capture_get_info(cap);
    s->cap = cap, s->sub = b->sub, s->T = ci->seq_len, s->H = ci->hidden, s->n_seq = ci->n_seq;
    s->n_val = (long)lround(p->val_frac * (double)s->n_seq);
    if (s->n_val < 1) s->n_val = 1;
    s->n_train = s->n_seq - s->n_val;
    if (s->n_train < 1)
        return pz_err(err, "bld: %ld windows leave none for training after the validation split", s->n_seq);
    s->n_val_eval = s->n_val;
    if (p->val_max_tokens > 0) {
        long cap_w = p->val_max_tokens / s->T;
        if (cap_w < 1) cap_w = 1;
        if (s->n_val_eval > cap_w) s->n_val_eval = cap_w;
    }
    return 0;
}

// Input and target rows of window wi into x and t (T rows each, at row k·T).
static int load_window(const split *s, long wi, int k, float *x, float *t, float *tmp, char *err) {
    const long r0 = wi * s->T;
    const size_t off = (size_t)k * s->T * s->H, n = (size_t)s->T * s->H;
    pz_cap_tensor in = s->sub == PZ_SUB_FFN ? PZ_CAP_FFN_IN : PZ_CAP_ATTN_IN;
    pz_cap_tensor out = s->sub == PZ_SUB_FFN ? PZ_CAP_FFN_OUT : PZ_CAP_ATTN_OUT;
    if (pz_capture_rows(s->cap, in, r0, s->T, x + off, err) ||
        pz_capture_rows(s->cap, out, r0, s->T, t + off, err))
        return -1;
    if (s->sub == PZ_SUB_PAIR) {
        if (pz_capture_rows(s->cap, PZ_CAP_FFN_OUT, r0, s->T, tmp, err)) return -1;
        for (size_t i = 0; i < n; i++) t[off + i] += tmp[i];
    }
    return 0;
}

// Validation losses over the first n_val_eval held-out windows, in
// batches: *out of the kind `loss` (the per-token one with eps), *global the
// global NMSE (may be NULL). w: backend memory; x, t, y, tmp: host buffers
// of a batch; dx: a backend one. The block's output comes back to the host,
// which computes the losses (in double, in row order).
static int eval_val(runner *r, const pz_block_weights *w, const split *s, int bw, pz_bld_loss loss,
                    float eps, float *x, float *t, float *y, float *tmp, float *dx, double *out,
                    double *global, char *err) {
    pz_backend *be = r->be;
    double num = 0, den = 0, tok = 0;
    long n_tok = 0;
    for (long w0 = 0; w0 < s->n_val_eval; w0 += bw) {
        int ns = (int)(s->n_val_eval - w0 < bw ? s->n_val_eval - w0 : bw);
        for (int k = 0; k < ns; k++)
            if (load_window(s, s->n_train + w0 + k, k, x, t, tmp, err)) return -1;
        const long rows = (long)ns * s->T;
        const size_t bytes = sizeof(float) * (size_t)rows * s->H;
        float *dy = dx + (size_t)bw * s->T * s->H;  // the batch's output, after its input
        if (be->copy(be, dx, x, bytes, PZ_COPY_H2D, err) || runner_fwd(r, w, dx, ns, dy, err) ||
            be->copy(be, y, dy, bytes, PZ_COPY_D2H, err) || be->synchronize(be, err))
            return -1;
        for (long rr = 0; rr < rows; rr++) {
            const float *tr = t + (size_t)rr * s->H, *yr = y + (size_t)rr * s->H;
            double nr = 0, dr = 0;
            for (int i = 0; i < s->H; i++) {
                double d = (double)tr[i] - yr[i];
                nr += d * d;
                dr += (double)tr[i] * tr[i];
            }
            num += nr, den += dr;
            tok += dr + (double)eps > 0 ? nr / (dr + (double)eps) : NAN;
        }
        n_tok += rows;
    }
    double g = den > 0 ? num / den : NAN;
    *out = loss == PZ_BLD_LOSS_GLOBAL ? g : n_tok > 0 ? tok / (double)n_tok : NAN;
    if (global) *global = g;
    return 0;
}

// ---- optimizer state --------------------------------------------------------

// The tensors of w as (offset in the arena, count, decay), shared by w, its
// gradient and both moments (same allocation layout).
static int tensor_list(const pz_block_weights *w, size_t *off, size_t *cnt, int *decay) {
    const float *const ptrs[] = {w->attn_norm, w->wq, w->wk, w->wv, w->wo, w->attn_lin,
                                 w->ffn_norm, w->gate, w->up, w->down, w->ffn_lin};
    const size_t H = (size_t)w->hidden, qd = (size_t)w->n_head * w->head_dim;
    const size_t kvd = (size_t)(w->sub != PZ_SUB_FFN ? w->attn.size : 0) * w->head_dim;
    const size_t F = (size_t)(w->sub != PZ_SUB_ATTN ? w->ffn.size : 0);
    const size_t sizes[] = {H, qd * H, kvd * H, kvd * H, H * qd, H * H, H, F * H, F * H, H * F, H * H};
    const int dec[] = {0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1};
    int n = 0;
    for (int i = 0; i < 11; i++) {
        if (!ptrs[i]) continue;
        off[n] = (size_t)(ptrs[i] - w->arena);
        cnt[n] = sizes[i];
        decay[n++] = dec[i];
    }
    return n;
}

static int add_point(pz_bld_result *r, long step, double tr, double val) {
    long *s = realloc(r->curve_step, sizeof(long) * (size_t)(r->n_points + 1));
    if (s) r->curve_step = s;
    double *a = realloc(r->curve_train, sizeof(double) * (size_t)(r->n_points + 1));
    if (a) r->curve_train = a;
    double *b = realloc(r->curve_val, sizeof(double) * (size_t)(r->n_points + 1));
    if (b) r->curve_val = b;
    if (!s || !a || !b) return -1;
    r->curve_step[r->n_points] = step, r->curve_train[r->n_points] = tr, r->curve_val[r->n_points] = val;
    r->n_points++;
    return 0;
}

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void shuffle(long *a, long n, uint64_t *rng) {
    for (long i = n - 1; i > 0; i--) {
        long j = (long)(splitmix(rng) % (uint64_t)(i + 1));
        long t = a[i];
        a[i] = a[j], a[j] = t;
    }
}

double pz_bld_step_flops(const pz_config *c, const pz_block *b, int M, int T) {
    double f = 0;
    if (b->sub != PZ_SUB_FFN) f += pz_sub_exec_fwd_flops(c, PZ_SUB_ATTN, b->attn, M, T);
    if (b->sub != PZ_SUB_ATTN) f += pz_sub_exec_fwd_flops(c, PZ_SUB_FFN, b->ffn, M, T);
    return 3.0 * f;
}

// The backend of a call: p->be, or a new one of kind p->backend (*own set).
static pz_backend *get_backend(const pz_bld_params *p, int *own, char *err) {
    *own = !p->be;
    return p->be ? p->be : pz_backend_create(p->backend, p->n_threads, err);
}

int pz_bld_eval(const pz_model *parent, const pz_block *blk, const pz_block_weights *w,
                const pz_capture *cap, const pz_bld_params *pp, double *nmse, double *global,
                char *err) {
    pz_bld_params p = pp ? *pp : pz_bld_default_params();
    if (p.batch_windows < 1) p.batch_windows = 1;
    if (p.n_threads < 1) p.n_threads = 1;
    split s;
    if (split_init(&s, cap, blk, &p, err)) return -1;
    const int rows = p.batch_windows * s.T;
    const size_t n = (size_t)rows * s.H;
    runner r;
    int own;
    pz_backend *be = get_backend(&p, &own, err);
    if (!be) return -1;
    if (runner_init(&r, &parent->cfg, blk, rows, s.T, PZ_DT_F32, be, err)) {
        if (own) pz_backend_free(be);
        return -1;
    }
    pz_block_weights wd;
    memset(&wd, 0, sizeof wd);
    float *x = malloc(n * sizeof(float)), *t = malloc(n * sizeof(float));
    float *y = malloc(n * sizeof(float)), *tmp = malloc(n * sizeof(float));
    float *dx = pz_dev_alloc(be, 2 * n * sizeof(float), "bld", err);
    int rc = -1;
    if (!dx || pz_block_weights_dev(be, w, 1, &wd, err)) goto out;
    rc = x && t && y && tmp ? eval_val(&r, &wd, &s, p.batch_windows, p.loss, p.loss_eps, x, t, y, tmp, dx,
                                       nmse, global, err)
                            : pz_err(err, "bld: out of memory");
out:
    free(x);
    free(t);
    free(y);
    free(tmp);
    be->free(be, dx);
    pz_block_weights_dev_free(be, &wd);
    runner_free(&r);
    if (own) pz_backend_free(be);
    return rc;
}

int pz_bld_train(const pz_model *parent, const pz_block *blk, const pz_capture *cap,
                 const pz_bld_params *pp, const char *out_path, pz_block_weights *weights_out,
                 pz_bld_result *res, char *err) {
    pz_bld_params p = pp ? *pp : pz_bld_default_params();
    if (p.batch_windows < 1) p.batch_windows = 1;
    if (p.n_threads < 1) p.n_threads = 1;
    const pz_config *c = &parent->cfg;
    memset(res, 0, sizeof *res);
    if (weights_out) memset(weights_out, 0, sizeof *weights_out);
    snprintf(res->block_id, sizeof res->block_id, "%s", blk->id);
    if (pz_capture_get_info(cap)->layer != blk->layer)
        return pz_err(err, "bld: capture of layer %d given for block %s", pz_capture_get_info(cap)->layer,
                      blk->id);
    split s;
    if (split_init(&s, cap, blk, &p, err)) return -1;
    const int T = s.T, H = s.H, bw = p.batch_windows, rows = bw * T;
    const size_t nrow = (size_t)rows * H;
    const double t0 = pz_now();

    // w: host (the initialization, then the result); wd, dw, m1, m2: backend memory.
    pz_block_weights w, wd, dw, m1, m2;
    memset(&w, 0, sizeof w), memset(&wd, 0, sizeof wd), memset(&dw, 0, sizeof dw);
    memset(&m1, 0, sizeof m1), memset(&m2, 0, sizeof m2);
    runner tr, ev;
    memset(&tr, 0, sizeof tr), memset(&ev, 0, sizeof ev);
    pz_dev_zeros zeros = {NULL, 0};
    // Host batch: inputs then targets, one H2D copy per step. dxt: the same
    // on the backend, then the block's output and its gradient.
    float *xt = malloc(2 * nrow * sizeof(float)), *y = malloc(nrow * sizeof(float));
    float *tmp = malloc(nrow * sizeof(float)), *x = xt, *t = xt ? xt + nrow : NULL;
    float *dxt = NULL;
    long *order = malloc(sizeof(long) * (size_t)s.n_train);
    int own = 0, rc = -1;
    pz_backend *be = get_backend(&p, &own, err);
    if (!be) goto out;
    if (!xt || !y || !tmp || !order) {
        pz_err(err, "bld: out of memory");
        goto out;
    }
    if (!(dxt = pz_dev_alloc(be, 4 * nrow * sizeof(float), "bld", err))) goto out;
    float *dx = dxt, *dt = dxt + nrow, *dy = dxt + 2 * nrow, *ddy = dxt + 3 * nrow;
    p.init.token_limit = s.n_train * T;
    if (p.init.n_threads < 1) p.init.n_threads = p.n_threads;
    p.init.be = be;
    if (pz_init_block(&w, parent, blk, cap, &p.init, res->init_method, err)) goto out;
    res->n_params = pz_block_weights_count(&w);
    if (pz_block_weights_dev(be, &w, 1, &wd, err)) goto out;
    if (runner_init(&ev, c, blk, rows, T, PZ_DT_F32, be, err)) goto out;
    double v0, g0;
    res->loss = p.loss;
    if (eval_val(&ev, &wd, &s, bw, p.loss, p.loss_eps, x, t, y, tmp, dx, &v0, &g0, err)) goto out;
    res->init_val_nmse = res->final_val_nmse = res->trained_val_nmse = v0;
    res->init_val_global = res->final_val_global = g0;
    res->final_train_nmse = NAN;
    res->val_tokens = s.n_val_eval * T;
    if (add_point(res, 0, NAN, v0)) goto oom;

    long steps = p.steps;
    if (steps <= 0) {
        long tok = p.tokens > 0 ? p.tokens : s.n_train * T;
        steps = (tok + rows - 1) / rows;
    }
    if (!blk->needs_training || res->n_params == 0) steps = 0;
    if (steps > 0 && p.loss == PZ_BLD_LOSS_TOKEN && !be->train->token_nmse_loss) {
        pz_err(err, "bld: this backend has no per-token loss (use the global one)");
        goto out;
    }
    if (steps > 0) {
        // The host keeps the initialization (w), in case training does not beat it.
        if (runner_init(&tr, c, blk, rows, T, p.prec, be, err)) goto out;
        if (pz_block_weights_dev(be, &w, 0, &dw, err) || pz_block_weights_dev(be, &w, 0, &m1, err) ||
            pz_block_weights_dev(be, &w, 0, &m2, err))
            goto out;
        const size_t wb = w.n_floats * sizeof(float);
        if (pz_dev_zeros_init(&zeros, be, wb < ((size_t)4 << 20) ? wb : (size_t)4 << 20, err)) goto out;
        size_t off[11], cnt[11];
        int dec[11];
        int nt = tensor_list(&w, off, cnt, dec);
        pz_adamw_tensor at[11];
        for (int i = 0; i < nt; i++)
            at[i] = (pz_adamw_tensor){wd.arena + off[i], dw.arena + off[i], m1.arena + off[i],
                                      m2.arena + off[i], cnt[i], dec[i]};
        const long warm = (long)(p.warmup_frac * (double)steps);
        const int every = p.eval_every > 0 ? p.eval_every : (int)(steps / 20 > 0 ? steps / 20 : 1);
        uint64_t rng = p.seed;
        long pos = s.n_train;  // forces a shuffle at the first step
        for (long i = 0; i < s.n_train; i++) order[i] = i;
        double tr_sum = 0, gv = g0;
        long tr_n = 0;
        int diverged = 0;
        const double tt0 = pz_now();
        for (long step = 0; step < steps; step++) {
            for (int k = 0; k < bw; k++) {
                if (pos >= s.n_train) {
                    shuffle(order, s.n_train, &rng);
                    pos = 0;
                }
                if (load_window(&s, order[pos++], k, x, t, tmp, err)) goto out;
            }
            if (be->copy(be, dxt, xt, 2 * nrow * sizeof(float), PZ_COPY_H2D, err) ||
                pz_dev_zero(&zeros, be, dw.arena, wb, err))
                goto out;
            if (runner_fwd(&tr, &wd, dx, bw, dy, err)) goto out;
            double loss = p.loss == PZ_BLD_LOSS_GLOBAL
                              ? be->train->nmse_loss(be, dt, dy, nrow, ddy, 1.0f)
                              : be->train->token_nmse_loss(be, dt, dy, rows, H, p.loss_eps, ddy, 1.0f);
            if (!isfinite(loss)) {  // diverged: stop here, the initialization is kept below
                diverged = 1;
                break;
            }
            if (runner_bwd(&tr, &wd, &dw, dx, ddy, bw, err)) goto out;
            float lr = pz_lr_schedule(step, warm, steps, p.lr, p.lr * p.lr_min_ratio);
            be->train->adamw_step(be, at, nt, step + 1, lr, &p.adam);
            tr_sum += loss, tr_n++;
            pz_bld_progress pr = {.step = step + 1, .total_steps = steps, .loss = loss, .lr = lr,
                                  .val_nmse = NAN};
            if ((step + 1) % every == 0 || step + 1 == steps) {
                double v;
                if (eval_val(&ev, &wd, &s, bw, p.loss, p.loss_eps, x, t, y, tmp, dx, &v, &gv, err)) goto out;
                res->final_train_nmse = tr_sum / (double)tr_n;
                if (add_point(res, step + 1, res->final_train_nmse, v)) goto oom;
                res->final_val_nmse = res->trained_val_nmse = pr.val_nmse = v;
                res->final_val_global = gv;
                tr_sum = 0, tr_n = 0;
            }
            double el = pz_now() - tt0;
            res->steps = step + 1;
            res->tokens = (step + 1) * (long)rows;
            pr.elapsed_s = el;
            pr.tokens_per_s = el > 0 ? (double)res->tokens / el : 0;
            pr.eta_s = el / (double)(step + 1) * (double)(steps - step - 1);
            if (p.progress && p.progress(p.user, &pr)) {
                pz_err(err, "bld: %s: cancelled", blk->id);
                goto out;
            }
        }
        if (be->synchronize(be, err)) goto out;
        double el = pz_now() - tt0;
        res->tokens_per_s = el > 0 ? (double)res->tokens / el : 0;
        if (diverged) res->trained_val_nmse = NAN;
        // Keep the better weights: NAN (diverged) never beats the initialization.
        if (!(res->trained_val_nmse <= res->init_val_nmse)) {
            res->kept_init = 1;  // w still holds it
            res->final_val_nmse = res->init_val_nmse;
            res->final_val_global = res->init_val_global;
        } else if (pz_block_weights_to_host(be, &wd, &w, err)) {
            goto out;
        }
    }
    if (out_path && pz_block_weights_save(&w, out_path, p.save_dtype, blk->id, res->sha256, err)) goto out;
    res->wall_s = pz_now() - t0;
    rc = 0;
    goto out;
oom:
    pz_err(err, "bld: out of memory");
out:
    if (rc == 0 && weights_out) *weights_out = w;
    else pz_block_weights_free(&w);
    if (rc) pz_bld_result_free(res);
    runner_free(&tr);
    runner_free(&ev);
    if (be) {
        pz_block_weights_dev_free(be, &wd);
        pz_block_weights_dev_free(be, &dw);
        pz_block_weights_dev_free(be, &m1);
        pz_block_weights_dev_free(be, &m2);
        pz_dev_zeros_free(&zeros, be);
        be->free(be, dxt);
        if (own) pz_backend_free(be);
    }
    free(xt);
    free(y);
    free(tmp);
    free(order);
    return rc;
}
