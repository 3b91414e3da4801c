// backend_cpu.c — fills the pz_backend interface with the CPU kernels of
// this folder. Host memory is the backend's memory: copies are memmove,
// upload_weights hands back the host arena itself, every op runs to
// completion before it returns, so synchronize has nothing to wait for.
#include "backend_cpu.h"
#include "adamw.h"
#include "attention.h"
#include "bwd_attention.h"
#include "bwd_linear.h"
#include "bwd_rmsnorm.h"
#include "bwd_swiglu.h"
#include "kd_loss.h"
#include "kv_quant.h"
#include "gemv.h"
#include "matmul.h"
#include "pointwise.h"
#include "rmsnorm.h"
#include "rope.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

// The backend's state: the product handle, and scratch for the fp32
// copies of narrow KV pages one attention call reads (grown once, kept).
typedef struct {
    pz_cpu_mm *mm;
    float *kvw;           // widened K and V pages of every sequence of a call
    size_t kvw_cap;       // floats
    int32_t *ident;       // 0, 1, 2, ...: the widened pages' table
    size_t ident_cap;
    pz_attn_seq *seqw;    // the call's descriptors, pointing at kvw
    size_t *off;          // each sequence's offset in kvw
    size_t seqw_cap;
    // RoPE's cos/sin for the rows of the last call: every layer of a forward
    // pass rotates the same positions with the same frequencies, so 29 of 30
    // calls reuse them (double-precision sincos was ~0.4 % of a 16-row step).
    float *rope_cs;       // (rope_m, rope_hd)
    int32_t *rope_pos;    // the positions they are for
    float *rope_freq;     // and the frequencies (rope_hd / 2)
    int rope_m, rope_hd, rope_cap;  // rows held, head_dim, rows allocated
} cpu_state;

static cpu_state *st(const pz_backend *b) { return (cpu_state *)b->impl; }
#define MM(b) (st(b)->mm)

static int cpu_supports(const pz_backend *b, pz_op op, pz_dt dt) {
    (void)b;
    switch (op) {
    case PZ_OP_MATMUL: return dt == PZ_DT_F32 || dt == PZ_DT_BF16 || dt == PZ_DT_E4M3;
    case PZ_OP_EMBED: return dt == PZ_DT_F32 || dt == PZ_DT_BF16;
    case PZ_OP_ATTENTION: return dt == PZ_DT_F32 || dt == PZ_DT_BF16 || dt == PZ_DT_E4M3;
    case PZ_OP_RMSNORM:
    case PZ_OP_ROPE:
    case PZ_OP_SWIGLU:
    case PZ_OP_ADD: return dt == PZ_DT_F32;
    case PZ_OP_TRAIN: return dt == PZ_DT_F32 || dt == PZ_DT_BF16;
    default: return 0;
    }
}

// Memory comes zeroed. Large buffers (KV caches) are 2 MiB-aligned and advised for transparent
// huge pages, as decode streams through them once per token.
static void *cpu_alloc(pz_backend *b, size_t bytes) {
    (void)b;
    const size_t huge = (size_t)2 << 20;
    if (bytes >= huge) {
        size_t n = (bytes + huge - 1) / huge * huge;
        void *p = aligned_alloc(huge, n);
#ifdef MADV_HUGEPAGE
        if (p) madvise(p, n, MADV_HUGEPAGE);
#endif
        if (p) memset(p, 0, n);
        return p;
    }
    size_t n = (bytes + 63) / 64 * 64;
    if (n == 0) n = 64;
    void *p = aligned_alloc(64, n);
    if (p) memset(p, 0, n);
    return p;
}

static void cpu_free(pz_backend *b, void *p) {
    (void)b;
    free(p);
}

static int cpu_copy(pz_backend *b, void *dst, const void *src, size_t bytes, pz_copy_kind kind,
                    char *err) {
    (void)b, (void)kind, (void)err;
    if (bytes) memmove(dst, src, bytes);
    return 0;
}

static void *cpu_upload_weights(pz_backend *b, const void *host, size_t bytes, char *err) {
    (void)b, (void)bytes, (void)err;
    return (void *)host;  // host memory is ours: nothing to copy
}

static void cpu_free_weights(pz_backend *b, void *p) { (void)b, (void)p; }

static int cpu_synchronize(pz_backend *b, char *err) {
    (void)b, (void)err;
    return 0;  // every op already ran to completion
}

// f32 and bf16 weights are dense and unscaled; e4m3 ones carry a positive
// per-tensor scale and optionally channel scales.
static int weight_ok(const pz_backend *b, const pz_weight *w) {
    if (!cpu_supports(b, PZ_OP_MATMUL, w->type) || w->ld != w->cols) return 0;
    if (w->type == PZ_DT_E4M3) return w->scale > 0;
    return w->scale == 1.0f && !w->ch_scale;
}

static int cpu_prepare_weight(pz_backend *b, pz_weight *w, char *err) {
    if (!weight_ok(b, w)) {
        if (err)
            snprintf(err, PZ_ERRLEN, "cpu backend: no matmul for %s weights (%dx%d, ld %d, scale %g%s)",
                     pz_dt_name(w->type), w->rows, w->cols, w->ld, (double)w->scale,
                     w->ch_scale ? ", channel scales" : "");
        return -1;
    }
    w->priv = NULL;
    return 0;
}

static void cpu_release_weight(pz_backend *b, pz_weight *w) {
    (void)b;
    w->priv = NULL;
}

static int cpu_matmul(pz_backend *b, float *y, int ldy, const float *x, int ldx, pz_dt xt,
                      const pz_weight *w, int M, int acc, char *err) {
    if (w->type == PZ_DT_E4M3 && weight_ok(b, w))
        return pz_cpu_matmul_e4m3(MM(b), y, ldy, x, ldx, xt, w->x_scale, w->data, w->scale,
                                  w->ch_scale, M, w->rows, w->cols, acc, err);
    if (xt != PZ_DT_F32 || !weight_ok(b, w)) {
        if (err)
            snprintf(err, PZ_ERRLEN, "cpu backend: matmul of %s activations with %s weights (ld %d, scale %g) "
                     "is not supported", pz_dt_name(xt), pz_dt_name(w->type), w->ld, (double)w->scale);
        return -1;
    }
    return pz_cpu_matmul(MM(b), y, ldy, x, ldx, w->data, w->type, M, w->rows, w->cols,
                         acc, err);
}

static void cpu_rmsnorm(pz_backend *b, float *y, const float *x, const float *w, int M, int n, float eps) {
    pz_cpu_rmsnorm(y, x, w, M, n, eps, b->n_threads);
}

static void cpu_rope(pz_backend *b, float *x, int ld, const int32_t *pos, int M, int n_heads,
                     int head_dim, const float *inv_freq) {
    cpu_state *S = st(b);
    const int half = head_dim / 2;
    int same = S->rope_m == M && S->rope_hd == head_dim && !memcmp(S->rope_pos, pos, sizeof *pos * (size_t)M) &&
               !memcmp(S->rope_freq, inv_freq, sizeof *inv_freq * (size_t)half);
    if (!same) {
        if (M > S->rope_cap || head_dim > S->rope_hd) {  // grow (rows and width at least as before)
            int cap = M > S->rope_cap ? M : S->rope_cap, hd = head_dim > S->rope_hd ? head_dim : S->rope_hd;
            float *cs = malloc(sizeof *cs * (size_t)cap * (size_t)hd), *fq = malloc(sizeof *fq * (size_t)hd);
            int32_t *ps = malloc(sizeof *ps * (size_t)cap);
            if (!cs || !fq || !ps) {  // no table: rotate directly
                free(cs), free(fq), free(ps);
                S->rope_m = 0;
                pz_cpu_rope(x, ld, pos, M, n_heads, head_dim, inv_freq, b->n_threads);
                return;
            }
            free(S->rope_cs), free(S->rope_freq), free(S->rope_pos);
            S->rope_cs = cs, S->rope_freq = fq, S->rope_pos = ps, S->rope_cap = cap;
        }
        pz_cpu_rope_table(S->rope_cs, pos, M, head_dim, inv_freq);
        memcpy(S->rope_pos, pos, sizeof *pos * (size_t)M);
        memcpy(S->rope_freq, inv_freq, sizeof *inv_freq * (size_t)half);
        S->rope_m = M, S->rope_hd = head_dim;
    }
    pz_cpu_rope_apply(x, ld, S->rope_cs, M, n_heads, head_dim, b->n_threads);
}

static int grow(void **p, size_t *cap, size_t n, size_t elem) {
    if (n <= *cap) return 0;
    void *q = aligned_alloc(64, (n * elem + 63) / 64 * 64);
    if (!q) return -1;
    free(*p);
    *p = q;
    *cap = n;
    return 0;
}

// Paged bf16 / e4m3 KV: read directly where the attention kernels can
// (pz_cpu_attention_reads_narrow: AVX2 and up), else each sequence's pages widened
// to fp32 (in parallel over sequences), then the fp32 kernels.
static int cpu_attention(pz_backend *b, const pz_attn_seq *seqs, int n_seq, int n_head, int n_kv,
                         int head_dim, char *err) {
    int narrow = 0;  // pages the attention kernels do not read as they are
    for (int s = 0; s < n_seq; s++)
        narrow |= seqs[s].kv_ld == 0 && seqs[s].kv_type != PZ_DT_F32 &&
                  !pz_cpu_attention_reads_narrow(seqs[s].kv_type, head_dim);
    if (!narrow) return pz_cpu_attention(seqs, n_seq, n_head, n_kv, head_dim, b->n_threads, err);
    cpu_state *S = st(b);
    const size_t pf = pz_cpu_kv_page_floats(n_kv, head_dim);
    size_t need = 0, maxp = 0;
    for (int s = 0; s < n_seq; s++) {
        const pz_attn_seq *q = &seqs[s];
        if (q->kv_ld) continue;
        if (q->kv_type != PZ_DT_F32 && q->kv_type != PZ_DT_BF16 && q->kv_type != PZ_DT_E4M3) {
            if (err) snprintf(err, PZ_ERRLEN, "attention: %s KV pages are not supported by the CPU backend",
                              pz_dt_name(q->kv_type));
            return -1;
        }
        size_t np = (size_t)(q->pos0 + q->n_q + PZ_KV_PAGE - 1) / PZ_KV_PAGE;
        need += 2 * np * pf;
        if (np > maxp) maxp = np;
    }
    if ((size_t)n_seq > S->seqw_cap) {
        size_t c1 = S->seqw_cap, c2 = S->seqw_cap;
        if (grow((void **)&S->seqw, &c1, (size_t)n_seq, sizeof(pz_attn_seq)) ||
            grow((void **)&S->off, &c2, (size_t)n_seq, sizeof(size_t)))
            goto oom;
        S->seqw_cap = (size_t)n_seq;
    }
    if (grow((void **)&S->kvw, &S->kvw_cap, need, sizeof(float)) ||
        grow((void **)&S->ident, &S->ident_cap, maxp, sizeof(int32_t)))
        goto oom;
    for (size_t i = 0; i < maxp; i++) S->ident[i] = (int32_t)i;
    size_t *off = S->off, o = 0;
    for (int s = 0; s < n_seq; s++) {
        S->seqw[s] = seqs[s];
        off[s] = o;
        if (seqs[s].kv_ld) continue;
        o += 2 * (size_t)((seqs[s].pos0 + seqs[s].n_q + PZ_KV_PAGE - 1) / PZ_KV_PAGE) * pf;
    }
#pragma omp parallel for num_threads(b->n_threads) schedule(dynamic, 1) if (n_seq > 1)
    for (int s = 0; s < n_seq; s++) {
        pz_attn_seq *q = &S->seqw[s];
        if (q->kv_ld) continue;
        int n_keys = q->pos0 + q->n_q, np = (n_keys + PZ_KV_PAGE - 1) / PZ_KV_PAGE;
        float *d = S->kvw + off[s];
        if (q->kv_type == PZ_DT_F32) {  // fp32 pages in a mixed call: copied as they are
            for (int p = 0; p < np; p++) {
                memcpy(d + (size_t)p * pf, (const float *)q->k + (size_t)q->pages[p] * pf, sizeof(float) * pf);
                memcpy(d + (size_t)(np + p) * pf, (const float *)q->v + (size_t)q->pages[p] * pf, sizeof(float) * pf);
            }
        } else {
            pz_cpu_kv_widen(d, q->k, q->v, q->kv_type, q->k_scale, q->v_scale, n_kv, head_dim, q->pages, np, n_keys);
        }
        q->k = d;
        q->v = d + (size_t)np * pf;
        q->pages = S->ident;
        q->kv_type = PZ_DT_F32;
        q->k_scale = q->v_scale = 1;
    }
    return pz_cpu_attention(S->seqw, n_seq, n_head, n_kv, head_dim, b->n_threads, err);
oom:
    if (err) snprintf(err, PZ_ERRLEN, "attention: out of memory widening %zu floats of KV pages", need);
    return -1;
}

static size_t cpu_kv_page_bytes(const pz_backend *b, int n_kv, int head_dim, pz_dt dt) {
    (void)b;
    if (dt != PZ_DT_F32 && dt != PZ_DT_BF16 && dt != PZ_DT_E4M3) return 0;
    return pz_cpu_kv_page_floats(n_kv, head_dim) * pz_dt_size(dt);
}

static int cpu_kv_write(pz_backend *b, const pz_kv_write *w, char *err) {
    (void)b;
    if (w->kv_type != PZ_DT_F32 && w->kv_type != PZ_DT_BF16 && w->kv_type != PZ_DT_E4M3) {
        if (err) snprintf(err, PZ_ERRLEN, "kv_write: %s KV pages are not supported by the CPU backend",
                          pz_dt_name(w->kv_type));
        return -1;
    }
    const int kvd = w->n_kv * w->head_dim;
    for (int r = 0; r < w->R; r++) {
        if (w->pos[r] < 0 || w->row_page[r] < 0 || w->row_page[r] >= w->n_pages) {
            if (err) snprintf(err, PZ_ERRLEN, "kv_write: row %d to page %d (of %d) at position %d", r,
                              w->row_page[r], w->n_pages, w->pos[r]);
            return -1;
        }
        const float *src = w->kv + (size_t)r * w->ld;
        if (w->kv_type == PZ_DT_F32)
            pz_cpu_kv_write(w->k_pool, w->v_pool, w->n_kv, w->head_dim, w->row_page[r], w->pos[r], src, src + kvd);
        else
            pz_cpu_kv_write_q(w->k_pool, w->v_pool, w->kv_type, w->k_scale, w->v_scale, w->n_kv, w->head_dim,
                              w->row_page[r], w->pos[r], src, src + kvd);
    }
    return 0;
}

static void cpu_swiglu(pz_backend *b, float *h, int ldh, const float *g, const float *u, int gu_ld, int M, int n) {
    pz_cpu_swiglu(h, ldh, g, u, gu_ld, M, n, b->n_threads);
}

static void cpu_add(pz_backend *b, float *y, const float *x, size_t n) {
    pz_cpu_add(y, x, n, b->n_threads);
}

static int cpu_embed(pz_backend *b, float *y, const pz_weight *table, const int32_t *ids, int M,
                     char *err) {
    (void)b;
    int bad = pz_cpu_embed(y, table->data, table->type, ids, M, table->cols, table->rows);
    if (bad >= 0) {
        if (err) snprintf(err, PZ_ERRLEN, "token id %d at position %d is outside the vocabulary (0..%d)", ids[bad], bad, table->rows - 1);
        return -1;
    }
    return 0;
}

// ---- training ops: the reference kernels of bwd_*.h and adamw.h ----------------
static pz_cpu_gm *gm(pz_backend *b) { return pz_cpu_matmul_gemm(MM(b)); }

static int tr_gemm(pz_backend *b, int ta, int tb, int M, int N, int K, const float *A, int lda,
                   const float *B, int ldb, float *C, int ldc, int acc, pz_dt prec, char *err) {
    return pz_cpu_gemm(gm(b), ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc, prec, err);
}

static int tr_linear_fwd(pz_backend *b, float *y, const float *x, const float *w, int M, int N, int K,
                         pz_dt prec, char *err) {
    return pz_cpu_linear_fwd(gm(b), y, x, w, M, N, K, prec, err);
}

static int tr_linear_bwd(pz_backend *b, float *dx, int dx_acc, float *dw, const float *dy, const float *x,
                         const float *w, int M, int N, int K, pz_dt prec, char *err) {
    return pz_cpu_linear_bwd(gm(b), dx, dx_acc, dw, dy, x, w, M, N, K, prec, err);
}

static void tr_rmsnorm_fwd(pz_backend *b, float *y, float *rstd, const float *x, const float *w, int M, int n,
                           float eps) {
    pz_cpu_rmsnorm_fwd_train(y, rstd, x, w, M, n, eps, b->n_threads);
}

static void tr_rmsnorm_bwd(pz_backend *b, float *dx, int dx_acc, float *dw, const float *dy, const float *x,
                           const float *w, const float *rstd, int M, int n) {
    pz_cpu_rmsnorm_bwd(dx, dx_acc, dw, dy, x, w, rstd, M, n, b->n_threads);
}

static pz_attn_block_train *tr_attn_create(pz_backend *b, const pz_attn_block_cfg *cfg, int max_rows,
                                           char *err) {
    return pz_cpu_attn_block_create(cfg, max_rows, b->n_threads, err);
}

static void tr_attn_free(pz_backend *b, pz_attn_block_train *s) {
    (void)b;
    pz_cpu_attn_block_free(s);
}

static int tr_attn_fwd(pz_backend *b, pz_attn_block_train *s, const pz_attn_block_w *w, const float *x,
                       int n_seq, int T, const int32_t *pos, const float *inv_freq, float *y, char *err) {
    return pz_cpu_attn_block_fwd(s, gm(b), w, x, n_seq, T, pos, inv_freq, y, err);
}

static int tr_attn_bwd(pz_backend *b, pz_attn_block_train *s, const pz_attn_block_w *w,
                       const pz_attn_block_w *dw, const float *x, const float *dy, float *dx, char *err) {
    return pz_cpu_attn_block_bwd(s, gm(b), w, dw, x, dy, dx, err);
}

static pz_ffn_block_train *tr_ffn_create(pz_backend *b, const pz_ffn_block_cfg *cfg, int max_rows,
                                         char *err) {
    return pz_cpu_ffn_block_create(cfg, max_rows, b->n_threads, err);
}

static void tr_ffn_free(pz_backend *b, pz_ffn_block_train *s) {
    (void)b;
    pz_cpu_ffn_block_free(s);
}

static int tr_ffn_fwd(pz_backend *b, pz_ffn_block_train *s, const pz_ffn_block_w *w, const float *x, int M,
                      float *y, char *err) {
    return pz_cpu_ffn_block_fwd(s, gm(b), w, x, M, y, err);
}

static int tr_ffn_bwd(pz_backend *b, pz_ffn_block_train *s, const pz_ffn_block_w *w,
                      const pz_ffn_block_w *dw, const float *x, const float *dy, float *dx, char *err) {
    return pz_cpu_ffn_block_bwd(s, gm(b), w, dw, x, dy, dx, err);
}

static double tr_adamw_step(pz_backend *b, pz_adamw_tensor *t, int n, long step, float lr,
                            const pz_adamw_params *hp) {
    return pz_cpu_adamw_step(t, n, step, lr, hp, b->n_threads);
}

static double tr_nmse_loss(pz_backend *b, const float *y_parent, const float *y_child, size_t n,
                           float *d_child, float grad_scale) {
    return pz_cpu_nmse_loss(y_parent, y_child, n, d_child, grad_scale, b->n_threads);
}

static double tr_token_nmse_loss(pz_backend *b, const float *y_parent, const float *y_child, int rows,
                                 int cols, float eps, float *d_child, float grad_scale) {
    return pz_cpu_token_nmse_loss(y_parent, y_child, rows, cols, eps, d_child, grad_scale, b->n_threads);
}

static double tr_cosine_loss(pz_backend *b, const float *y_parent, const float *y_child, int n_mat,
                             size_t mat_stride, int rows, int cols, float *d_child, double grad_scale) {
    return pz_cpu_cosine_loss(y_parent, y_child, n_mat, mat_stride, rows, cols, d_child, grad_scale,
                              b->n_threads);
}

static double tr_kl_loss(pz_backend *b, const float *logits_parent, const float *logits_child, int rows,
                         int vocab, float *d_child, double grad_scale) {
    return pz_cpu_kl_loss(logits_parent, logits_child, rows, vocab, d_child, grad_scale, b->n_threads);
}

static const pz_train_ops cpu_train_ops = {
    .gemm = tr_gemm,
    .linear_fwd = tr_linear_fwd,
    .linear_bwd = tr_linear_bwd,
    .rmsnorm_fwd = tr_rmsnorm_fwd,
    .rmsnorm_bwd = tr_rmsnorm_bwd,
    .attn_block_create = tr_attn_create,
    .attn_block_free = tr_attn_free,
    .attn_block_fwd = tr_attn_fwd,
    .attn_block_bwd = tr_attn_bwd,
    .ffn_block_create = tr_ffn_create,
    .ffn_block_free = tr_ffn_free,
    .ffn_block_fwd = tr_ffn_fwd,
    .ffn_block_bwd = tr_ffn_bwd,
    .adamw_step = tr_adamw_step,
    .nmse_loss = tr_nmse_loss,
    .token_nmse_loss = tr_token_nmse_loss,
    .cosine_loss = tr_cosine_loss,
    .kl_loss = tr_kl_loss,
};

static void cpu_destroy(pz_backend *b) {
    cpu_state *S = st(b);
    pz_cpu_matmul_free(S->mm);
    free(S->kvw);
    free(S->ident);
    free(S->seqw);
    free(S->off);
    free(S->rope_cs), free(S->rope_pos), free(S->rope_freq);
    free(S);
    free(b);
}

pz_backend *pz_backend_cpu_create(int n_threads, char *err) {
    pz_backend *b = calloc(1, sizeof *b);
    if (!b) {
        if (err) snprintf(err, PZ_ERRLEN, "cpu backend: out of memory");
        return NULL;
    }
    b->kind = PZ_BACKEND_CPU;
    b->name = "cpu";
    b->n_threads = n_threads > 0 ? n_threads : omp_get_num_procs();
    b->invariant_rows = PZ_GEMV_INVARIANT_M;  // the small-M kernels' rows do not depend on M (gemv.h)
    // Prefill through the same kernels: on an AVX2 core a 16-row pass of the
    // register-tiled kernel costs about what a 64-row library block does per row
    // (which widens bf16 weights to fp32 first), and needs no padding, and the
    // library's rows are not position-invariant for every shape and thread count.
    b->rowwise_prefill = 1;
    cpu_state *S = calloc(1, sizeof *S);
    if (!S || !(S->mm = pz_cpu_matmul_create(b->n_threads, err))) {
        if (!S && err) snprintf(err, PZ_ERRLEN, "cpu backend: out of memory");
        free(S);
        free(b);
        return NULL;
    }
    b->impl = S;
    b->supports = cpu_supports;
    b->alloc = cpu_alloc;
    b->free = cpu_free;
    b->copy = cpu_copy;
    b->upload_weights = cpu_upload_weights;
    b->free_weights = cpu_free_weights;
    b->synchronize = cpu_synchronize;
    b->prepare_weight = cpu_prepare_weight;
    b->release_weight = cpu_release_weight;
    b->matmul = cpu_matmul;
    b->rmsnorm = cpu_rmsnorm;
    b->rope = cpu_rope;
    b->kv_page_bytes = cpu_kv_page_bytes;
    b->kv_write = cpu_kv_write;
    b->attention = cpu_attention;
    b->swiglu = cpu_swiglu;
    b->add = cpu_add;
    b->embed = cpu_embed;
    b->train = &cpu_train_ops;
    b->destroy = cpu_destroy;
    return b;
}
