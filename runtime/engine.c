// engine.c — see engine.h. One forward routine serves prefill and batched
// decode: it takes R rows (tokens), each belonging to a slot at a position,
// grouped into "sequences" of consecutive rows of one slot (prefill: one
// sequence of R rows; decode: R sequences of one row). Every op runs on all
// R rows at once, except attention, which runs per sequence over that
// slot's pages of the layer's page pool.
//
// Paging (engine.h): each slot holds a page table; pages come from one pool
// whose bookkeeping (free list, reference counts, prefix index, eviction
// order) is runtime/kvcache.c. A page fills as its slot's sequence grows;
// once full it is published to the prefix index under its tokens, so a
// later sequence (or one running beside it) with the same prefix can attach
// it. Full pages are never written again, which is what makes sharing safe.
//
// Per layer (docs/ARCHITECTURE.md "Heterogeneous model semantics"):
//   gqa:    xn = norm(x); [q|k|v] = xn·[Wq;Wk;Wv]^T; RoPE(q), RoPE(k);
//           cache <- k, v; a = attention(q, cache); x += a·Wo^T
//   linear: x += norm(x)·W^T            noop: nothing
//   swiglu: xn = norm(x); [g|u] = xn·[Wg;Wu]^T; x += (silu(g)*u)·Wd^T
// The q/k/v and gate/up products are one matmul each when the model keeps
// those weights adjacent (pz_model_alloc does). Residual adds are fused into
// the products (accumulate).
//
// Tensor parallelism (engine.h): each layer keeps its rank's counts of
// query heads, KV heads and FFN channels (n_q, n_kv, n_ff: the whole layer
// without TP); a model loaded as this rank's shard (pz_model_load_shard) is
// used as it is, a whole model's sharded matrices are copied into one host
// buffer (e->shard) at create. After a sharded o/down product, rank 0's x
// holds x + its partial and every other rank's x its partial alone, so one
// in-place all-reduce of x gives every rank x + the full product. Rank 0's
// public calls are broadcast as a small command (op, two arguments, token
// ids) that the other ranks replay in pz_engine_follow.
#include "engine.h"
#include "backend.h"
#include "comm.h"
#include "common.h"
#include "kvcache.h"
#include "tp_plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Logits come out of the backend this many rows at a time (a buffer of
// LOGIT_ROWS x vocab floats instead of max_batch x vocab).
#define LOGIT_ROWS 64
// With batch_invariant, prefill products on a backend without
// rowwise_prefill run in blocks of exactly this many rows (the last one
// padded), so a row's result does not depend on how many rows came with it:
// a library GEMM of one fixed shape sums each row the same way (though not
// always the same way at every place in the block: oneDNN's rows were seen
// to depend on their place for some small shapes, so a batched prefill
// gives each sequence its own pass there). Scratch buffers carry INV_BLOCK
// spare rows for the padding.
#define INV_BLOCK 64
_Static_assert(INV_BLOCK == LOGIT_ROWS, "padded logit blocks fill the logits buffer exactly");
// Decode graphs (engine.h): buckets 1, 2, 4, ..., PZ_ENGINE_GRAPH_MAX rows,
// each padded batch's logits in one block of the logits buffer.
#define GRAPH_BUCKETS 7
_Static_assert(1 << (GRAPH_BUCKETS - 1) == PZ_ENGINE_GRAPH_MAX, "one graph per power of two");
_Static_assert(PZ_ENGINE_GRAPH_MAX <= LOGIT_ROWS, "a padded batch's logits are one copy");

typedef struct {
    void *k, *v;       // the layer's K and V page pools (kv_pages pages each), or NULL
    size_t page_bytes; // bytes of one K (or V) page
    float k_scale, v_scale;  // FP8 KV pages: dequantization scales (1 otherwise)
    int kvd;           // n_kv*head_dim
    const float *attn_norm, *ffn_norm;  // backend memory, or NULL
    pz_weight qkv;     // fused [Wq;Wk;Wv] when adjacent (fuse_qkv), else unused
    pz_weight wq, wk, wv, wo;
    pz_weight gu;      // fused [Wgate;Wup] when adjacent (fuse_gu)
    pz_weight wg, wu, wd;
    int fuse_qkv;      // wq, wk, wv adjacent in memory
    int fuse_gu;       // w_gate, w_up adjacent in memory
    int n_q, n_kv, n_ff;  // this rank's query heads, KV heads, FFN channels (whole without TP)
    int attn_ar, ffn_ar;  // 1: the sub-block is sharded over >1 ranks and ends in an all-reduce
} eng_layer;

// One sequence's state: its length, its page table, the prefix-index node
// of each full page (0: not published), and its tokens (to publish pages).
typedef struct {
    int len;
    int n_pages;       // entries of pages held (>= ceil(len / PZ_KV_PAGE))
    int32_t *pages;    // (max_pages)
    uint64_t *nodes;   // (max_pages)
    int32_t *tokens;   // (max_ctx)
} eng_slot;

// A host tensor that lies outside the model's arena (a caller pointed a
// weight elsewhere) gets its own upload; the list frees them.
typedef struct extra_upload {
    void *p;
    struct extra_upload *next;
} extra_upload;

struct pz_engine {
    const pz_model *m;
    pz_engine_params p;
    pz_backend *b;
    int own_b;             // 0: b is the communicator's (borrowed)
    // Tensor parallelism (tp > 1).
    pz_comm *comm;         // borrowed
    int tp, rank;
    int ready;             // created on every rank: rank 0's free tells the others to stop
    char tp_err[PZ_ERRLEN]; // comm->health not OK: why (every later call fails with it)
    int fault_step, fault_comm;  // test hook (pz_tp_fault): fail this forward pass (1-based)
    long n_fwd;            // forward passes run
    char *shard;           // host copies of this rank's slices of the sharded matrices
    float *zeros;          // (R, hidden) zeros: the partial of a rank holding no FFN channels
    void *d_stage;         // command staging in backend memory (non-CPU backends)
    int32_t *cmd;          // host command payload (cmd_cap ints)
    size_t cmd_cap;
    int R;                 // rows of scratch: max(max_batch, n_slots)
    eng_layer *L;
    eng_slot *slot;        // (n_slots)
    int max_pages;         // page-table entries per slot: ceil(max_ctx / PZ_KV_PAGE)
    pz_kvcache *kvc;       // which pages are free, held, cached
    long long prefix_hits, prefix_tokens;
    size_t kv_bytes;
    // Weights in backend memory.
    void *warena;          // m->arena as the backend holds it
    extra_upload *extra;
    pz_weight tok_embd, lm_head;
    const float *out_norm;
    // Backend scratch, allocated once.
    float *x;              // (R, hidden) residual stream
    float *xn;             // (R, hidden) normed
    float *qkv;            // (R, (n_head + 2*max_kv)*head_dim)
    float *att;            // (R, n_head*head_dim)
    float *gu;             // (R, 2*max_ff)
    float *h;              // (R, max_ff)
    float *logits;         // (LOGIT_ROWS, vocab)
    float *d_inv_freq;     // (head_dim/2)
    int32_t *d_tok;        // (R)
    int32_t *d_pos;        // (R)
    int32_t *d_row_page;   // (R)
    int32_t *d_ptab;       // (n_slots * max_pages) page tables of one call's sequences
    // Host side of each call.
    int32_t *pos;          // (R)
    int32_t *row_page;     // (R)
    int32_t *ptab;         // (n_slots * max_pages)
    pz_attn_seq *seqs;     // (R) descriptors (host; they point into backend memory)
    int *seq_slot;         // (R)
    int *seq_row0;         // (R) first row of each sequence
    int *lrows;            // (R) rows whose logits a multi-sequence prefill returns
    float *amax_buf;       // calibration (p.amax): host copy of one activation, R * amax_w floats
    // Decode graphs (engine.h "Decode graphs"), one per bucket.
    pz_graph *graph[GRAPH_BUCKETS];  // NULL: not made yet (or broken and freed)
    unsigned char graph_off[GRAPH_BUCKETS];  // 1: this bucket broke once, eager from then on
    int pad_page;          // the KV page the padding rows write (-1: none held yet)
    int32_t gtok[PZ_ENGINE_GRAPH_MAX];  // a padded batch's tokens (host)
    float *glogits;        // (PZ_ENGINE_GRAPH_MAX, vocab) host logits of a padded batch
    pz_graph_stats gstats;
};

pz_engine_params pz_engine_default_params(void) {
    pz_engine_params p = {.n_threads = 0, .n_slots = 1, .max_ctx = 0, .max_batch = 512,
                          .kv_pages = 0, .prefix_cache = 1, .batch_invariant = 0,
                          .backend = PZ_BACKEND_CPU, .graphs = 1};
    return p;
}

// Adjacent and alike (type, and the scales an FP8 product applies per tensor;
// per-channel scales adjacent too, as pz_model_to_e4m3_ex and the loader keep them).
static int adjacent(const pz_mat *a, const pz_mat *b) {
    size_t bytes = (size_t)a->rows * a->cols * pz_dt_size(a->type);
    return a->type == b->type && a->cols == b->cols && (const char *)a->data + bytes == (const char *)b->data &&
           (a->type != PZ_DT_E4M3 ||
            (a->scale == b->scale && a->x_scale == b->x_scale &&
             (a->ch_scale ? b->ch_scale == a->ch_scale + a->rows : !b->ch_scale)));
}

// The backend's copy of host tensor p (bytes long): inside the model's
// arena it is the same offset in the uploaded arena, else its own upload.
static const void *dev_ptr(pz_engine *e, const void *p, size_t bytes, char *err) {
    if (!p) return NULL;
    const char *a = e->m->arena, *q = p;
    if (e->warena && q >= a && q + bytes <= a + e->m->arena_bytes) return (const char *)e->warena + (q - a);
    extra_upload *x = calloc(1, sizeof *x);
    if (!x) {
        pz_err(err, "engine: out of memory");
        return NULL;
    }
    if (!(x->p = e->b->upload_weights(e->b, p, bytes, err))) {
        free(x);
        return NULL;
    }
    x->next = e->extra;
    e->extra = x;
    return x->p;
}

// w = the prepared backend weight of n matrices of m that lie back to back
// (n = 1: one matrix; rows add up).
static int prep(pz_engine *e, pz_weight *w, const pz_mat *first, int rows, char *err) {
    if (!first->data) return pz_err(err, "engine: a %dx%d weight matrix is missing", rows, first->cols);
    size_t bytes = (size_t)rows * first->cols * pz_dt_size(first->type);
    const void *d = dev_ptr(e, first->data, bytes, err);
    if (!d) return -1;
    *w = pz_weight_dense(d, first->type, rows, first->cols);
    if (first->type == PZ_DT_E4M3) {
        w->scale = first->scale;
        w->x_scale = first->x_scale;
        if (first->ch_scale && !(w->ch_scale = dev_ptr(e, first->ch_scale, sizeof(float) * (size_t)rows, err)))
            return -1;
    }
    return e->b->prepare_weight(e->b, w, err);
}

// ---- tensor-parallel shards ---------------------------------------------------
// FFN channels are dealt in units of TP_ALIGN (tp_plan.h: FP8 products stay legal).
#define TP_ALIGN PZ_ENGINE_TP_ALIGN

// Rows [r0, r0+n) of a as a matrix at dst (copied there when copy is set).
static pz_mat slice_rows(const pz_mat *a, int r0, int n, char *dst, int copy) {
    pz_mat s = *a;
    size_t rb = (size_t)a->cols * pz_dt_size(a->type);
    if (copy) memcpy(dst, (const char *)a->data + (size_t)r0 * rb, (size_t)n * rb);
    s.data = dst;
    s.rows = n;
    if (a->ch_scale) s.ch_scale = a->ch_scale + r0;
    return s;
}

// Columns [c0, c0+n) of a as a matrix at dst (copied there when copy is set).
static pz_mat slice_cols(const pz_mat *a, int c0, int n, char *dst, int copy) {
    pz_mat s = *a;
    size_t es = pz_dt_size(a->type);
    if (copy)
        for (int r = 0; r < a->rows; r++)
            memcpy(dst + (size_t)r * n * es, (const char *)a->data + ((size_t)r * a->cols + c0) * es, (size_t)n * es);
    s.data = dst;
    s.cols = n;
    return s;
}

// Lays out (buf NULL: only sizes, at *off) or copies (buf) this rank's
// slices of layer l per plan P, and returns in lw the layer's weights with
// the sharded matrices pointing into buf: q, k, v back to back (so they stay
// one product), likewise gate and up; each group 64-byte aligned.
static size_t take_bytes(size_t *off, size_t bytes) {
    size_t o = *off;
    *off += (bytes + 63) & ~(size_t)63;
    return o;
}

static char *at(char *buf, size_t o) { return buf ? buf + o : NULL; }

static void shard_layer(const pz_model *m, int l, const pz_tp_layer *P, char *buf, size_t *off,
                        pz_layer_weights *lw) {
    const pz_layer_weights *w = &m->layers[l];
    const int hd = m->cfg.head_dim, copy = buf != NULL;
    *lw = *w;
    if (P->attn_mode == PZ_TP_SHARDED) {
        size_t rb = (size_t)w->wq.cols * pz_dt_size(w->wq.type);
        size_t nq = (size_t)P->n_q * hd, nkv = (size_t)P->n_kv * hd;
        size_t o = take_bytes(off, rb * (nq + 2 * nkv));
        lw->wq = slice_rows(&w->wq, P->q_head0 * hd, (int)nq, at(buf, o), copy);
        lw->wk = slice_rows(&w->wk, P->kv_head0 * hd, (int)nkv, at(buf, o + rb * nq), copy);
        lw->wv = slice_rows(&w->wv, P->kv_head0 * hd, (int)nkv, at(buf, o + rb * (nq + nkv)), copy);
        o = take_bytes(off, (size_t)w->wo.rows * nq * pz_dt_size(w->wo.type));
        lw->wo = slice_cols(&w->wo, P->q_head0 * hd, (int)nq, at(buf, o), copy);
    }
    if (P->ffn_mode == PZ_TP_SHARDED && P->n_ff > 0) {
        size_t rb = (size_t)w->w_gate.cols * pz_dt_size(w->w_gate.type), nf = (size_t)P->n_ff;
        size_t o = take_bytes(off, 2 * rb * nf);
        lw->w_gate = slice_rows(&w->w_gate, P->ff0, P->n_ff, at(buf, o), copy);
        lw->w_up = slice_rows(&w->w_up, P->ff0, P->n_ff, at(buf, o + rb * nf), copy);
        o = take_bytes(off, (size_t)w->w_down.rows * nf * pz_dt_size(w->w_down.type));
        lw->w_down = slice_cols(&w->w_down, P->ff0, P->n_ff, at(buf, o), copy);
    }
}

static const float *dev_vec(pz_engine *e, const float *v, int n, char *err, int *fail) {
    if (!v) return NULL;
    const float *d = dev_ptr(e, v, sizeof(float) * (size_t)n, err);
    if (!d) *fail = 1;
    return d;
}

static void release(pz_backend *b, pz_weight *w) {
    if (w->data) b->release_weight(b, w);
}

static int tp_send(pz_engine *e, int op, int a, int b, const int32_t *p1, int n1, const int32_t *p2,
                   int n2, char *err);
enum { TP_STOP = 0, TP_PREFILL, TP_DECODE, TP_RESET, TP_ATTACH, TP_FORK, TP_PREFILL_MANY };

void pz_engine_free(pz_engine *e) {
    if (!e) return;
    // A failed job has no one left to stop (each rank left its engine's calls).
    if (e->tp > 1 && e->rank == 0 && e->ready && e->comm->health == PZ_COMM_OK)
        tp_send(e, TP_STOP, 0, 0, NULL, 0, NULL, 0, NULL);
    pz_backend *b = e->b;
    if (b) {
        for (int i = 0; i < GRAPH_BUCKETS; i++)
            if (e->graph[i]) b->graph_free(b, e->graph[i]);
        if (e->L)
            for (int l = 0; l < e->m->cfg.n_layer; l++) {
                eng_layer *el = &e->L[l];
                b->free(b, el->k);
                b->free(b, el->v);
                pz_weight *ws[] = {&el->qkv, &el->wq, &el->wk, &el->wv, &el->wo, &el->gu, &el->wg, &el->wu, &el->wd};
                for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) release(b, ws[i]);
            }
        release(b, &e->tok_embd);
        release(b, &e->lm_head);
        float *bufs[] = {e->x, e->xn, e->qkv, e->att, e->gu, e->h, e->logits, e->d_inv_freq};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) b->free(b, bufs[i]);
        b->free(b, e->d_tok);
        b->free(b, e->d_pos);
        b->free(b, e->d_row_page);
        b->free(b, e->d_ptab);
        b->free(b, e->zeros);
        b->free(b, e->d_stage);
        for (extra_upload *x = e->extra, *n; x; x = n) {
            n = x->next;
            b->free_weights(b, x->p);
            free(x);
        }
        if (e->warena) b->free_weights(b, e->warena);
        if (e->own_b) pz_backend_free(b);
    }
    free(e->shard);
    free(e->cmd);
    free(e->L);
    if (e->slot)
        for (int i = 0; i < e->p.n_slots; i++) {
            free(e->slot[i].pages);
            free(e->slot[i].nodes);
            free(e->slot[i].tokens);
        }
    free(e->slot);
    pz_kvcache_free(e->kvc);
    free(e->pos);
    free(e->row_page);
    free(e->ptab);
    free(e->seqs);
    free(e->seq_slot);
    free(e->seq_row0);
    free(e->lrows);
    free(e->amax_buf);
    free(e->glogits);
    free(e);
}

// Uploads the weights and prepares every matrix of layer l: the model's, or
// (tensor parallel) w with this rank's slices of the sharded ones.
static int prepare_layer(pz_engine *e, int l, const pz_layer_weights *w, char *err) {
    const pz_layer_spec *s = &e->m->cfg.layers[l];
    eng_layer *el = &e->L[l];
    const int H = e->m->cfg.hidden;
    int fail = 0;
    el->attn_norm = dev_vec(e, w->attn_norm, H, err, &fail);
    el->ffn_norm = dev_vec(e, w->ffn_norm, H, err, &fail);
    if (fail) return -1;
    if (s->attn == PZ_ATTN_GQA) {
        el->fuse_qkv = adjacent(&w->wq, &w->wk) && adjacent(&w->wk, &w->wv);
        if (el->fuse_qkv) {
            if (prep(e, &el->qkv, &w->wq, w->wq.rows + w->wk.rows + w->wv.rows, err)) return -1;
        } else if (prep(e, &el->wq, &w->wq, w->wq.rows, err) || prep(e, &el->wk, &w->wk, w->wk.rows, err) ||
                   prep(e, &el->wv, &w->wv, w->wv.rows, err)) {
            return -1;
        }
    }
    if (s->attn != PZ_ATTN_NOOP && prep(e, &el->wo, &w->wo, w->wo.rows, err)) return -1;
    if (s->ffn == PZ_FFN_SWIGLU && el->n_ff == 0) return 0;  // this rank holds no channels
    if (s->ffn == PZ_FFN_SWIGLU) {
        el->fuse_gu = adjacent(&w->w_gate, &w->w_up);
        if (el->fuse_gu) {
            if (prep(e, &el->gu, &w->w_gate, w->w_gate.rows + w->w_up.rows, err)) return -1;
        } else if (prep(e, &el->wg, &w->w_gate, w->w_gate.rows, err) ||
                   prep(e, &el->wu, &w->w_up, w->w_up.rows, err)) {
            return -1;
        }
    }
    if (s->ffn != PZ_FFN_NOOP && prep(e, &el->wd, &w->w_down, w->w_down.rows, err)) return -1;
    return 0;
}

// Tensor-parallel commands (the section after pz_engine_create).
#define TP_STAGE 65536  // bytes of backend memory a broadcast is staged through
static int tp_bcast(pz_engine *e, void *host, size_t bytes, char *err);

pz_engine *pz_engine_create(const pz_model *m, pz_engine_params p, char *err) {
    const pz_config *c = &m->cfg;
    pz_engine_params d = pz_engine_default_params();
    if (p.n_slots <= 0) p.n_slots = d.n_slots;
    if (p.max_batch <= 0) p.max_batch = d.max_batch;
    if (p.max_ctx <= 0) p.max_ctx = c->max_ctx > 0 && c->max_ctx < 4096 ? c->max_ctx : 4096;
    pz_engine *e = calloc(1, sizeof *e);
    if (!e) {
        pz_err(err, "engine: out of memory");
        return NULL;
    }
    int tp_agreed = 0;  // tensor parallel: this rank made the closing status exchange (below)
    e->m = m;
    e->p = p;
    e->pad_page = -1;
    e->tp = 1;
    if (p.comm && p.comm->size > 1) {
        e->comm = p.comm;
        e->tp = p.comm->size;
        e->rank = p.comm->rank;
        e->fault_step = pz_tp_fault("step", e->rank);
        e->fault_comm = pz_tp_fault("comm", e->rank);
        if (p.amax) {
            pz_err(err, "engine: calibration (amax) runs on one rank, not tensor parallel");
            goto fail;
        }
        if (!p.comm->b || p.comm->b->kind != p.backend) {
            pz_err(err, "engine: the %s communicator's backend is not the engine's %s backend",
                   p.comm->name, pz_backend_kind_name(p.backend));
            goto fail;
        }
        if (pz_tp_check(c, e->tp, err)) goto fail;
        if (m->tp > 1 && (m->tp != e->tp || m->tp_rank != e->rank || m->tp_align != TP_ALIGN)) {
            pz_err(err, "engine: the model is the shard of rank %d of %d (align %d), the engine rank %d of %d "
                   "(align %d)", m->tp_rank, m->tp, m->tp_align, e->rank, e->tp, TP_ALIGN);
            goto fail;
        }
        e->b = p.comm->b;
    } else if (m->tp > 1) {
        pz_err(err, "engine: the model is a tensor-parallel shard (rank %d of %d): it needs params.comm",
               m->tp_rank, m->tp);
        goto fail;
    } else {
        e->own_b = 1;
        if (!(e->b = pz_backend_create(p.backend, p.n_threads, err))) goto fail;
    }
    if (p.on_backend) p.on_backend(e->b, p.on_backend_ctx);
    pz_backend *b = e->b;
    if (!b->supports(b, PZ_OP_MATMUL, m->wtype) || !b->supports(b, PZ_OP_EMBED, m->tok_embd.type)) {
        pz_err(err, "engine: backend %s cannot run %s weights", b->name, pz_dt_name(m->wtype));
        goto fail;
    }
    e->p.n_threads = b->n_threads;
    e->R = p.max_batch > p.n_slots ? p.max_batch : p.n_slots;
    // Tensor parallel from a whole model: no upload of the whole arena; the
    // replicated tensors are uploaded one by one (dev_ptr), the slices from
    // e->shard. A model loaded as this rank's shard is uploaded as it is.
    const int slice = e->tp > 1 && m->tp == 1;
    if (!slice && m->arena && m->arena_bytes &&
        !(e->warena = b->upload_weights(b, m->arena, m->arena_bytes, err)))
        goto fail;
    int hd = c->head_dim, max_kv = 0, max_ff = 0;
    e->max_pages = (p.max_ctx + PZ_KV_PAGE - 1) / PZ_KV_PAGE;
    if (p.kv_pages <= 0) p.kv_pages = e->p.kv_pages = p.n_slots * e->max_pages;
    e->L = calloc((size_t)c->n_layer, sizeof *e->L);
    e->slot = calloc((size_t)p.n_slots, sizeof *e->slot);
    if (!e->L || !e->slot || !(e->kvc = pz_kvcache_create(p.kv_pages, p.prefix_cache))) goto oom;
    for (int i = 0; i < p.n_slots; i++) {
        eng_slot *sl = &e->slot[i];
        sl->pages = malloc(sizeof(int32_t) * (size_t)e->max_pages);
        sl->nodes = calloc((size_t)e->max_pages, sizeof(uint64_t));
        sl->tokens = malloc(sizeof(int32_t) * (size_t)p.max_ctx);
        if (!sl->pages || !sl->nodes || !sl->tokens) goto oom;
    }
    int fail = 0;
    e->out_norm = dev_vec(e, m->out_norm, c->hidden, err, &fail);
    if (fail || prep(e, &e->tok_embd, &m->tok_embd, m->tok_embd.rows, err) ||
        prep(e, &e->lm_head, &m->lm_head, m->lm_head.rows, err))
        goto fail;
    pz_tp_layer *plan = NULL;
    if (e->tp > 1) {
        // This rank's share of every layer, then its slices in one host buffer.
        if (!(plan = calloc((size_t)c->n_layer, sizeof *plan))) goto oom;
        size_t shard_bytes = 0;
        for (int l = 0; l < c->n_layer; l++) {
            pz_layer_weights lw;
            if (pz_tp_plan_layer(c, l, e->tp, e->rank, TP_ALIGN, &plan[l], err)) {
                free(plan);
                goto fail;
            }
            if (slice) shard_layer(m, l, &plan[l], NULL, &shard_bytes, &lw);
        }
        if (shard_bytes && !(e->shard = aligned_alloc(64, shard_bytes))) {
            free(plan);
            goto oom;
        }
    }
    size_t shard_off = 0;
    int zero_ffn = 0;  // some layer's FFN has no channels on this rank (not rank 0)
    for (int l = 0; l < c->n_layer; l++) {
        const pz_layer_spec *s = &c->layers[l];
        eng_layer *el = &e->L[l];
        pz_layer_weights lw = m->layers[l];
        el->n_q = c->n_head, el->n_kv = s->n_kv, el->n_ff = s->n_ff;
        if (plan) {
            const pz_tp_layer *P = &plan[l];
            if (slice) shard_layer(m, l, P, e->shard, &shard_off, &lw);
            if (P->attn_mode == PZ_TP_SHARDED) el->n_q = P->n_q, el->n_kv = P->n_kv, el->attn_ar = 1;
            if (P->ffn_mode == PZ_TP_SHARDED) el->n_ff = P->n_ff, el->ffn_ar = 1;
            if (el->ffn_ar && el->n_ff == 0 && e->rank != 0) zero_ffn = 1;
        }
        if (prepare_layer(e, l, &lw, err)) {
            free(plan);
            goto fail;
        }
        if (s->attn == PZ_ATTN_GQA) {
            if (el->n_kv > max_kv) max_kv = el->n_kv;
            el->kvd = el->n_kv * hd;
            size_t bytes;
            el->page_bytes = b->kv_page_bytes(b, el->n_kv, hd, p.kv_type);
            el->k_scale = p.kv_type == PZ_DT_E4M3 && m->layers[l].k_scale > 0 ? m->layers[l].k_scale : 1;
            el->v_scale = p.kv_type == PZ_DT_E4M3 && m->layers[l].v_scale > 0 ? m->layers[l].v_scale : 1;
            if (!el->page_bytes || !b->supports(b, PZ_OP_ATTENTION, p.kv_type)) {
                free(plan);
                pz_err(err, "engine: backend %s has no %s KV pages", b->name, pz_dt_name(p.kv_type));
                goto fail;
            }
            if (pz_mul_size((size_t)p.kv_pages, el->page_bytes, &bytes)) {
                free(plan);
                goto oom;
            }
            el->k = b->alloc(b, bytes);
            el->v = b->alloc(b, bytes);
            if (!el->k || !el->v) {
                free(plan);
                goto oom;
            }
            e->kv_bytes += 2 * bytes;
        }
        if (s->ffn == PZ_FFN_SWIGLU && el->n_ff > max_ff) max_ff = el->n_ff;
    }
    free(plan);
    // A device holds its own copies of the slices now.
    if (e->shard && b->kind != PZ_BACKEND_CPU) {
        free(e->shard);
        e->shard = NULL;
    }
    size_t R = (size_t)e->R + INV_BLOCK;  // spare rows: see INV_BLOCK
    e->x = b->alloc(b, sizeof(float) * R * c->hidden);
    e->xn = b->alloc(b, sizeof(float) * R * c->hidden);
    e->qkv = b->alloc(b, sizeof(float) * R * (size_t)(c->n_head + 2 * max_kv) * hd);
    e->att = b->alloc(b, sizeof(float) * R * (size_t)c->n_head * hd);
    e->gu = b->alloc(b, sizeof(float) * R * 2 * (size_t)max_ff);
    e->h = b->alloc(b, sizeof(float) * R * (size_t)max_ff);
    e->logits = b->alloc(b, sizeof(float) * LOGIT_ROWS * (size_t)c->vocab);
    e->d_inv_freq = b->alloc(b, sizeof(float) * (size_t)(hd / 2 + 1));
    e->d_tok = b->alloc(b, sizeof(int32_t) * R);
    e->d_pos = b->alloc(b, sizeof(int32_t) * R);
    e->d_row_page = b->alloc(b, sizeof(int32_t) * R);
    size_t ptab = (size_t)p.n_slots * e->max_pages;
    e->d_ptab = b->alloc(b, sizeof(int32_t) * ptab);
    e->ptab = malloc(sizeof(int32_t) * ptab);
    e->pos = malloc(sizeof(int32_t) * R);
    e->row_page = malloc(sizeof(int32_t) * R);
    e->seqs = malloc(sizeof(pz_attn_seq) * R);
    e->seq_slot = malloc(sizeof(int) * R);
    e->seq_row0 = malloc(sizeof(int) * R);
    e->lrows = malloc(sizeof(int) * R);
    if (zero_ffn && !(e->zeros = b->alloc(b, sizeof(float) * R * c->hidden))) goto oom;
    if (e->tp > 1 && b->kind != PZ_BACKEND_CPU && !(e->d_stage = b->alloc(b, TP_STAGE))) goto oom;
    if (p.amax) {
        size_t w = (size_t)(c->n_head + 2 * max_kv) * hd;
        if (w < (size_t)c->hidden) w = (size_t)c->hidden;
        if (w < (size_t)max_ff) w = (size_t)max_ff;
        if (!(e->amax_buf = malloc(sizeof(float) * R * w))) goto oom;
    }
    if (!e->x || !e->xn || !e->qkv || !e->att || !e->gu || !e->h || !e->logits || !e->d_inv_freq ||
        !e->d_tok || !e->d_pos || !e->d_row_page || !e->d_ptab || !e->ptab || !e->pos || !e->row_page ||
        !e->seqs || !e->seq_slot || !e->seq_row0 || !e->lrows)
        goto oom;
    pz_rope_params rp = {.head_dim = hd, .theta = c->rope_theta,
                         .llama3 = c->rope_scaling == PZ_ROPE_SCALING_LLAMA3,
                         .factor = c->rope_factor, .low_freq_factor = c->rope_low_freq_factor,
                         .high_freq_factor = c->rope_high_freq_factor, .orig_ctx = c->rope_orig_ctx};
    float *inv_freq = malloc(sizeof(float) * (size_t)(hd / 2 + 1));
    if (!inv_freq) goto oom;
    pz_rope_inv_freq(&rp, inv_freq);
    int rc = b->copy(b, e->d_inv_freq, inv_freq, sizeof(float) * (size_t)(hd / 2), PZ_COPY_H2D, err);
    if (!rc) rc = b->synchronize(b, err);  // inv_freq is freed next
    free(inv_freq);
    if (rc) goto fail;
    if (e->tp > 1) {
        // Every rank got here (or tells why not, below) before any other
        // collective: a rank that failed to build its share ends them all.
        tp_agreed = 1;
        if (e->comm->status(e->comm, 1, NULL, err)) goto fail;
        // Every rank must hold the same model and engine shape, or the
        // replayed calls would diverge: compare with rank 0's.
        int32_t sig[] = {c->n_layer, c->hidden, c->vocab, c->n_head, c->head_dim, (int32_t)m->wtype,
                         p.n_slots, p.max_ctx, p.max_batch, e->p.kv_pages, p.prefix_cache,
                         p.batch_invariant, (int32_t)p.kv_type, p.act_fp8, e->tp};
        int32_t mine[sizeof sig / sizeof sig[0]];
        memcpy(mine, sig, sizeof sig);
        if (tp_bcast(e, sig, sizeof sig, err)) goto fail;
        int same = !memcmp(mine, sig, sizeof sig);
        if (e->comm->status(e->comm, same, "tensor parallel: its model or engine parameters differ from rank 0's",
                            err))
            goto fail;
        e->ready = 1;
    }
    return e;
oom:
    pz_err(err, "engine: out of memory (KV cache %zu bytes so far; n_slots %d, max_ctx %d, kv_pages %d)",
           e->kv_bytes, p.n_slots, p.max_ctx, p.kv_pages);
fail:
    if (e->tp > 1 && !tp_agreed && e->comm->health == PZ_COMM_OK) {
        char why[PZ_ERRLEN];
        snprintf(why, sizeof why, "%s", err ? err : "engine create failed");
        e->comm->status(e->comm, 0, why, err);  // err: "rank R: why" on every rank
    }
    pz_engine_free(e);
    return NULL;
}

// y = x·W^T over R rows; with `invariant` in rows of at most the backend's
// invariant_rows, so each row's result is the same whatever R is.
// How a call's products are split (batch_invariant): not at all, decode
// rows in blocks of the backend's invariant_rows (its small-M kernel), or
// prefill rows in blocks of exactly INV_BLOCK (the last one padded), so a
// prefill row's result does not depend on how many rows share its call (a
// prefix hit prefills fewer rows than the cold pass did).
enum { SPLIT_NONE = 0, SPLIT_DECODE = 1, SPLIT_PREFILL = 2 };

// y = x·W^T over R rows, split as above.
static int mm(pz_engine *e, float *y, int ldy, const float *x, int ldx, const pz_weight *w, int R, int acc,
              int split, char *err) {
    pz_backend *b = e->b;
    pz_dt xt = e->p.act_fp8 && w->type == PZ_DT_E4M3 && w->x_scale > 0 ? PZ_DT_E4M3 : PZ_DT_F32;
    if (split == SPLIT_PREFILL && b->rowwise_prefill) split = SPLIT_DECODE;  // backend.h
    if (split == SPLIT_DECODE && b->invariant_rows <= 0) split = SPLIT_NONE;
    if (split == SPLIT_NONE || (split == SPLIT_DECODE && R <= b->invariant_rows))
        return b->matmul(b, y, ldy, x, ldx, xt, w, R, acc, err);
    int step = split == SPLIT_DECODE ? b->invariant_rows : INV_BLOCK;
    for (int r = 0; r < R; r += step) {
        int n = split == SPLIT_PREFILL ? INV_BLOCK : (R - r < step ? R - r : step);
        if (b->matmul(b, y + (size_t)r * ldy, ldy, x + (size_t)r * ldx, ldx, xt, w, n, acc, err))
            return -1;
    }
    return 0;
}

// Calibration: raises p.amax[l * PZ_ENGINE_AMAX + i] to the largest |value|
// of R rows of n values, ld apart, in backend memory (copied to the host).
static int amax_rec(pz_engine *e, int l, int i, const float *x, int R, int n, int ld, char *err) {
    if (!e->p.amax || R <= 0) return 0;
    pz_backend *b = e->b;
    size_t nf = (size_t)(R - 1) * ld + n;
    if (b->copy(b, e->amax_buf, x, sizeof(float) * nf, PZ_COPY_D2H, err) || b->synchronize(b, err)) return -1;
    float *a = &e->p.amax[(size_t)l * PZ_ENGINE_AMAX + i];
    for (int r = 0; r < R; r++)
        for (int k = 0; k < n; k++) {
            float v = fabsf(e->amax_buf[(size_t)r * ld + k]);
            if (v > *a) *a = v;
        }
    return 0;
}

// q/k/v of R rows into e->qkv (rows ld apart): one product when fused.
static int qkv_proj(pz_engine *e, const eng_layer *el, int R, int H, int qd, int ld, int split, char *err) {
    if (el->fuse_qkv) return mm(e, e->qkv, ld, e->xn, H, &el->qkv, R, 0, split, err);
    return mm(e, e->qkv, ld, e->xn, H, &el->wq, R, 0, split, err) ||
                   mm(e, e->qkv + qd, ld, e->xn, H, &el->wk, R, 0, split, err) ||
                   mm(e, e->qkv + qd + el->kvd, ld, e->xn, H, &el->wv, R, 0, split, err)
               ? -1
               : 0;
}

static int gate_up_proj(pz_engine *e, const eng_layer *el, int R, int H, int F, int split, char *err) {
    if (el->fuse_gu) return mm(e, e->gu, 2 * F, e->xn, H, &el->gu, R, 0, split, err);
    return mm(e, e->gu, 2 * F, e->xn, H, &el->wg, R, 0, split, err) ||
                   mm(e, e->gu + F, 2 * F, e->xn, H, &el->wu, R, 0, split, err)
               ? -1
               : 0;
}

// Tensor parallel: the all-reduce of the residual rows after layer l's
// sharded sub-block. Its failure leaves this rank's collectives out of step
// with the others': the job is broken (comm.h).
static int tp_all_reduce(pz_engine *e, int l, int R, char *err) {
    pz_comm *c = e->comm;
    if (e->fault_comm && e->n_fwd == e->fault_comm) {
        c->health = PZ_COMM_BROKEN;
        return pz_err(err, "injected fault (PZ_TP_FAULT=comm:%d@%d): the all-reduce after layer %d failed",
                      e->fault_comm, e->rank, l);
    }
    if (c->all_reduce(c, e->x, (size_t)R * e->m->cfg.hidden, PZ_REDUCE_SUM, err)) {
        c->health = PZ_COMM_BROKEN;
        return -1;
    }
    return 0;
}

// After a failure in layer l of a pass, before its attention all-reduce
// (ph 0), before its FFN one (ph 1) or after both (ph 2): makes the pass's
// remaining all-reduces on whatever x holds, so the other ranks' passes end
// as they would and every rank reaches the agreement on the call (tp_after)
// with the collectives in step.
static void tp_drain(pz_engine *e, int l, int ph, int R) {
    char ignored[PZ_ERRLEN];
    for (; l < e->m->cfg.n_layer; l++, ph = 0) {
        const eng_layer *el = &e->L[l];
        if ((ph == 0 && el->attn_ar && tp_all_reduce(e, l, R, ignored)) ||
            (ph <= 1 && el->ffn_ar && tp_all_reduce(e, l, R, ignored)))
            return;
    }
    e->comm->wait(e->comm, ignored);
}

// The forward pass over R rows: token tok[r] (host) at position e->pos[r],
// stored in page e->row_page[r]. The rows form n_seq sequences: sequence i
// is n_q = e->seqs[i].n_q consecutive rows from seq_row0[i], of slot
// e->seq_slot[i], starting at position e->seqs[i].pos0. Logits of rows
// [lrow0, lrow0+nl) go to out (host, nl*vocab), or with lrows (non-NULL) of rows
// lrows[0..nl) (increasing). split: how products are split (SPLIT_*).
// graph: a decode graph's pass (decode_graph): sequence i's page table sits
// at row i of a fixed [n_seq][max_pages] array, copied whole, so the pass's
// copies have the same sizes every step; a sequence with seq_slot -1 is a
// padding row whose one page is e->pad_page.
static int forward(pz_engine *e, const int32_t *tok, int R, int n_seq, const int *seq_row0,
                   int lrow0, const int *lrows, int nl, float *out, int split, int graph, char *err) {
    const pz_model *m = e->m;
    const pz_config *c = &m->cfg;
    pz_backend *b = e->b;
    const int H = c->hidden, hd = c->head_dim;
    const size_t rb = sizeof(int32_t) * (size_t)R;
    // The sequences' page tables, packed (or at a fixed stride), in one copy.
    int32_t *pt = e->ptab;
    size_t pt_n = 0;
    for (int i = 0; i < n_seq; i++) {
        int np = (e->seqs[i].pos0 + e->seqs[i].n_q + PZ_KV_PAGE - 1) / PZ_KV_PAGE;
        size_t at = graph ? (size_t)i * e->max_pages : pt_n;
        if (e->seq_slot[i] < 0)
            pt[at] = e->pad_page;
        else
            memcpy(pt + at, e->slot[e->seq_slot[i]].pages, sizeof(int32_t) * (size_t)np);
        e->seqs[i].pages = e->d_ptab + at;
        pt_n = graph ? (size_t)(i + 1) * e->max_pages : pt_n + (size_t)np;
    }
    // Tensor parallel: the next all-reduce of the pass is layer l's after
    // its attention (ph 0) or after its FFN (ph 1); a failure jumps to fail,
    // which still makes the all-reduces from there on (see tp_drain).
    int l = 0, ph = 0;
    e->n_fwd++;
    if (b->copy(b, e->d_tok, tok, rb, PZ_COPY_H2D, err) || b->copy(b, e->d_pos, e->pos, rb, PZ_COPY_H2D, err) ||
        b->copy(b, e->d_row_page, e->row_page, rb, PZ_COPY_H2D, err) ||
        b->copy(b, e->d_ptab, pt, sizeof(int32_t) * pt_n, PZ_COPY_H2D, err))
        goto fail;
    if (b->embed(b, e->x, &e->tok_embd, e->d_tok, R, err)) goto fail;
    for (l = 0; l < c->n_layer; l++) {
        ph = 0;
        const pz_layer_spec *s = &c->layers[l];
        const eng_layer *el = &e->L[l];
        if (s->attn == PZ_ATTN_GQA) {
            const int nh = el->n_q, nkv = el->n_kv, kvd = el->kvd, qd = nh * hd, ld = qd + 2 * kvd;
            b->rmsnorm(b, e->xn, e->x, el->attn_norm, R, H, c->norm_eps);
            if (amax_rec(e, l, PZ_AMAX_QKV_IN, e->xn, R, H, H, err)) goto fail;
            if (qkv_proj(e, el, R, H, qd, ld, split, err)) goto fail;
            // k follows q in each row: one call rotates the heads of both
            b->rope(b, e->qkv, ld, e->d_pos, R, nh + nkv, hd, e->d_inv_freq);
            if (amax_rec(e, l, PZ_AMAX_K, e->qkv + qd, R, kvd, ld, err) ||
                amax_rec(e, l, PZ_AMAX_V, e->qkv + qd + kvd, R, kvd, ld, err))
                goto fail;
            pz_kv_write kw = {.k_pool = el->k, .v_pool = el->v, .n_pages = e->p.kv_pages, .n_kv = nkv,
                              .head_dim = hd, .kv_type = e->p.kv_type, .k_scale = el->k_scale,
                              .v_scale = el->v_scale,
                              .kv = e->qkv + qd, .ld = ld, .row_page = e->d_row_page, .pos = e->d_pos, .R = R};
            if (b->kv_write(b, &kw, err)) goto fail;
            for (int i = 0; i < n_seq; i++) {
                pz_attn_seq *q = &e->seqs[i];
                q->q = e->qkv + (size_t)seq_row0[i] * ld;
                q->q_ld = ld;
                q->out = e->att + (size_t)seq_row0[i] * qd;
                q->out_ld = qd;
                q->k = el->k;
                q->v = el->v;
                q->kv_ld = 0;  // paged
                q->kv_type = e->p.kv_type;
                q->k_scale = el->k_scale;
                q->v_scale = el->v_scale;
            }
            if (b->attention(b, e->seqs, n_seq, nh, nkv, hd, err)) goto fail;
            if (amax_rec(e, l, PZ_AMAX_O_IN, e->att, R, qd, qd, err)) goto fail;
            if (mm(e, e->x, H, e->att, qd, &el->wo, R, el->attn_ar ? e->rank == 0 : 1, split, err)) goto fail;
            if (el->attn_ar && tp_all_reduce(e, l, R, err)) return -1;
        } else if (s->attn == PZ_ATTN_LINEAR) {
            b->rmsnorm(b, e->xn, e->x, el->attn_norm, R, H, c->norm_eps);
            if (amax_rec(e, l, PZ_AMAX_O_IN, e->xn, R, H, H, err)) goto fail;
            if (mm(e, e->x, H, e->xn, H, &el->wo, R, 1, split, err)) goto fail;
        }
        ph = 1;
        if (e->fault_step && e->n_fwd == e->fault_step && l == c->n_layer / 2) {
            pz_err(err, "injected fault (PZ_TP_FAULT=step:%d@%d) in layer %d", e->fault_step, e->rank, l);
            goto fail;
        }
        if (s->ffn == PZ_FFN_SWIGLU && el->n_ff > 0) {
            const int F = el->n_ff;
            b->rmsnorm(b, e->xn, e->x, el->ffn_norm, R, H, c->norm_eps);
            if (amax_rec(e, l, PZ_AMAX_GU_IN, e->xn, R, H, H, err)) goto fail;
            if (gate_up_proj(e, el, R, H, F, split, err)) goto fail;
            b->swiglu(b, e->h, F, e->gu, e->gu + F, 2 * F, R, F);
            if (amax_rec(e, l, PZ_AMAX_DOWN_IN, e->h, R, F, F, err)) goto fail;
            if (mm(e, e->x, H, e->h, F, &el->wd, R, el->ffn_ar ? e->rank == 0 : 1, split, err)) goto fail;
        } else if (s->ffn == PZ_FFN_SWIGLU && e->rank != 0 &&
                   b->copy(b, e->x, e->zeros, sizeof(float) * (size_t)R * H, PZ_COPY_D2D, err)) {
            goto fail;  // no channels here: a zero partial (rank 0 keeps x as it is)
        }
        if (el->ffn_ar && tp_all_reduce(e, l, R, err)) return -1;
        ph = 2;  // this layer's all-reduces are made
        if (s->ffn == PZ_FFN_LINEAR) {
            b->rmsnorm(b, e->xn, e->x, el->ffn_norm, R, H, c->norm_eps);
            if (amax_rec(e, l, PZ_AMAX_DOWN_IN, e->xn, R, H, H, err)) goto fail;
            if (mm(e, e->x, H, e->xn, H, &el->wd, R, 1, split, err)) goto fail;
        }
    }
    // Tensor parallel: the logits' copy to pageable host memory would block
    // in the driver behind the last all-reduce; the communicator's wait
    // watches for a failed job instead.
    if (nl > 0 && out && e->tp > 1 && e->comm->wait(e->comm, err)) return -1;
    if (nl > 0 && out) {
        float *xl = e->xn + (size_t)lrow0 * H;
        if (!lrows) {
            b->rmsnorm(b, xl, e->x + (size_t)lrow0 * H, e->out_norm, nl, H, c->norm_eps);
        } else {  // scattered rows (the last of each sequence), normed into rows 0..nl-1 of xn
            xl = e->xn;
            for (int k = 0; k < nl; k++)
                b->rmsnorm(b, xl + (size_t)k * H, e->x + (size_t)lrows[k] * H, e->out_norm, 1, H, c->norm_eps);
        }
        for (int r0 = 0; r0 < nl; r0 += LOGIT_ROWS) {
            int n = nl - r0 < LOGIT_ROWS ? nl - r0 : LOGIT_ROWS;
            size_t bytes = sizeof(float) * (size_t)n * c->vocab;
            // Logit rows are few (one per sequence): the small-M kernel's
            // blocks keep them row-invariant without padding to INV_BLOCK.
            int lsplit = split == SPLIT_NONE ? SPLIT_NONE : SPLIT_DECODE;
            // The CPU backend's memory is the host's: the logits go straight to out
            // (16 rows x 49152: 3 MB a step not copied).
            float *y = b->kind == PZ_BACKEND_CPU ? out + (size_t)r0 * c->vocab : e->logits;
            if (mm(e, y, c->vocab, xl + (size_t)r0 * H, H, &e->lm_head, n, 0, lsplit, err) ||
                (y == e->logits && b->copy(b, out + (size_t)r0 * c->vocab, e->logits, bytes, PZ_COPY_D2H, err)))
                return -1;  // rank 0 alone: no collective follows
        }
    }
    // Tensor parallel: wait through the communicator, which notices a job
    // that failed elsewhere instead of blocking on it.
    return e->tp > 1 ? e->comm->wait(e->comm, err) : b->synchronize(b, err);
fail:
    if (e->tp > 1) tp_drain(e, l, ph, R);
    return -1;
}

static int check_slot(const pz_engine *e, int slot, char *err) {
    if (slot < 0 || slot >= e->p.n_slots)
        return pz_err(err, "slot %d out of range (engine has %d slots)", slot, e->p.n_slots);
    return 0;
}

static int pages_for(int n_tokens) { return (n_tokens + PZ_KV_PAGE - 1) / PZ_KV_PAGE; }

// Gives slot the pages for positions up to len+n; all or nothing (pages
// taken here are given back when the pool runs dry).
static int take_pages(pz_engine *e, int slot, int n, char *err) {
    eng_slot *sl = &e->slot[slot];
    int need = pages_for(sl->len + n), had = sl->n_pages;
    while (sl->n_pages < need) {
        int p = pz_kvcache_alloc(e->kvc);
        if (p < 0) {
            while (sl->n_pages > had) pz_kvcache_unref(e->kvc, sl->pages[--sl->n_pages]);
            pz_err(err, "KV cache full: slot %d needs %d more pages for %d tokens, all %d pages are in use",
                   slot, need - had, n, e->p.kv_pages);
            return PZ_ENGINE_ENOPAGES;
        }
        sl->nodes[sl->n_pages] = 0;
        sl->pages[sl->n_pages++] = p;
    }
    return 0;
}

// After n tokens were appended to slot: remember them and publish the pages
// they filled.
static void advance(pz_engine *e, int slot, const int32_t *tokens, int n) {
    eng_slot *sl = &e->slot[slot];
    int first = sl->len / PZ_KV_PAGE;
    memcpy(sl->tokens + sl->len, tokens, sizeof(int32_t) * (size_t)n);
    sl->len += n;
    for (int i = first; i < sl->len / PZ_KV_PAGE; i++)
        sl->nodes[i] = pz_kvcache_publish(e->kvc, sl->pages[i], i ? sl->nodes[i - 1] : 0,
                                          sl->tokens + (size_t)i * PZ_KV_PAGE);
}

static int prefill_impl(pz_engine *e, int slot, const int32_t *tokens, int n, float *logits,
                        int all_logits, char *err) {
    if (check_slot(e, slot, err)) return -1;
    if (n <= 0) return pz_err(err, "prefill of %d tokens", n);
    eng_slot *sl = &e->slot[slot];
    if (sl->len + n > e->p.max_ctx)
        return pz_err(err, "context full: slot %d holds %d tokens, %d more exceed max_ctx %d", slot,
                      sl->len, n, e->p.max_ctx);
    const int vocab = e->m->cfg.vocab;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return pz_err(err, "token id %d at position %d is outside the vocabulary (0..%d)", tokens[i], i, vocab - 1);
    for (int done = 0; done < n;) {
        int R = n - done < e->p.max_batch ? n - done : e->p.max_batch;
        int rc = take_pages(e, slot, R, err);
        if (rc) return rc;
        int p0 = sl->len;
        for (int r = 0; r < R; r++) {
            e->pos[r] = p0 + r;
            e->row_page[r] = sl->pages[(p0 + r) / PZ_KV_PAGE];
        }
        e->seqs[0].n_q = R;
        e->seqs[0].pos0 = p0;
        e->seq_slot[0] = slot;
        int row0 = 0, last = done + R == n;
        int lrow0 = 0, nl = 0;
        float *out = NULL;
        if (logits && all_logits) {
            nl = R;
            out = logits + (size_t)done * vocab;
        } else if (logits && last) {
            lrow0 = R - 1;
            nl = 1;
            out = logits;
        }
        if (forward(e, tokens + done, R, 1, &row0, lrow0, NULL, nl, out,
                    e->p.batch_invariant ? SPLIT_PREFILL : SPLIT_NONE, 0, err))
            return -1;
        advance(e, slot, tokens + done, R);
        done += R;
    }
    return 0;
}

// Several slots' prefills in one pass (engine.h pz_engine_prefill_many): the
// sequences' rows back to back, every product over all of them (with
// batch_invariant in blocks of INV_BLOCK rows, so a row's result does not
// depend on the rows beside it), attention per sequence.
static int prefill_many_impl(pz_engine *e, int n_seq, const int *slots, const int32_t *tokens,
                             const int *n, float *logits, const int *want, char *err) {
    if (n_seq <= 0) return 0;
    if (n_seq > e->p.n_slots)
        return pz_err(err, "prefill of %d sequences exceeds the engine's %d slots", n_seq, e->p.n_slots);
    const int vocab = e->m->cfg.vocab;
    long total = 0;
    for (int i = 0; i < n_seq; i++) {
        if (check_slot(e, slots[i], err)) return -1;
        for (int j = 0; j < i; j++)
            if (slots[j] == slots[i]) return pz_err(err, "slot %d appears twice in one prefill batch", slots[i]);
        if (n[i] <= 0) return pz_err(err, "prefill of %d tokens", n[i]);
        const eng_slot *sl = &e->slot[slots[i]];
        if (sl->len + n[i] > e->p.max_ctx)
            return pz_err(err, "context full: slot %d holds %d tokens, %d more exceed max_ctx %d", slots[i],
                          sl->len, n[i], e->p.max_ctx);
        for (int k = 0; k < n[i]; k++)
            if (tokens[total + k] < 0 || tokens[total + k] >= vocab)
                return pz_err(err, "token id %d at position %d of slot %d is outside the vocabulary (0..%d)",
                              tokens[total + k], k, slots[i], vocab - 1);
        total += n[i];
    }
    if (total > e->p.max_batch)
        return pz_err(err, "prefill of %ld tokens at once exceeds max_batch %d", total, e->p.max_batch);
    if (n_seq > 1 && e->p.batch_invariant && !e->b->rowwise_prefill) {
        // Padded library blocks: a row's bits may depend on its place in the
        // block, so each sequence gets its own pass, from row 0 as alone.
        for (int i = 0, t = 0; i < n_seq; t += n[i], i++) {
            int rc = prefill_many_impl(e, 1, slots + i, tokens + t, n + i, logits ? logits + (size_t)i * vocab : NULL,
                                       want ? want + i : NULL, err);
            if (rc) return rc;
        }
        return 0;
    }
    for (int i = 0; i < n_seq; i++) {
        // Pages taken for earlier slots of a failed call stay with them for the next one.
        int rc = take_pages(e, slots[i], n[i], err);
        if (rc) return rc;
    }
    int r = 0, nl = 0;
    int *lrows = e->lrows;
    for (int i = 0; i < n_seq; i++) {
        const eng_slot *sl = &e->slot[slots[i]];
        e->seqs[i].n_q = n[i];
        e->seqs[i].pos0 = sl->len;
        e->seq_slot[i] = slots[i];
        e->seq_row0[i] = r;
        for (int k = 0; k < n[i]; k++, r++) {
            e->pos[r] = sl->len + k;
            e->row_page[r] = sl->pages[(sl->len + k) / PZ_KV_PAGE];
        }
        if (logits && (!want || want[i])) lrows[nl++] = r - 1;
    }
    if (forward(e, tokens, (int)total, n_seq, e->seq_row0, 0, lrows, nl, nl ? logits : NULL,
                e->p.batch_invariant ? SPLIT_PREFILL : SPLIT_NONE, 0, err))
        return -1;
    // The logits came out one row per wanted sequence, in order: spread them to
    // row i of sequence i (from the last, so no row is overwritten before it moved).
    for (int i = n_seq - 1, k = nl - 1; i >= 0 && k >= 0 && nl < n_seq; i--)
        if (!want || want[i]) {
            if (k != i) memmove(logits + (size_t)i * vocab, logits + (size_t)k * vocab, sizeof(float) * vocab);
            k--;
        }
    for (int i = 0, t = 0; i < n_seq; t += n[i], i++) advance(e, slots[i], tokens + t, n[i]);
    return 0;
}

int pz_engine_graph_bucket(int n, int n_slots, int rows) {
    if (n < 1 || n > PZ_ENGINE_GRAPH_MAX) return 0;
    int bk = 1;
    while (bk < n) bk *= 2;
    if (bk > n_slots) bk = n_slots;
    if (bk > rows) bk = rows;
    return bk >= n ? bk : 0;
}

void pz_engine_graph_stats(const pz_engine *e, pz_graph_stats *st) { *st = e->gstats; }

static int bucket_index(int bk) {
    int i = 0;
    while ((1 << i) < bk) i++;
    return i;
}

// Staging a bucket's graph needs: its host-to-device copies (tokens,
// positions, row pages, the fixed page tables), the logits back, and the
// backend's per-sequence attention data of each attention layer (256 bytes
// a sequence is ample: CUDA's descriptor is 64), slices rounded to 256.
static size_t graph_stage_bytes(const pz_engine *e, int bk) {
    const pz_config *c = &e->m->cfg;
    size_t n_attn = 0;
    for (int l = 0; l < c->n_layer; l++) n_attn += c->layers[l].attn == PZ_ATTN_GQA;
#define UP256(x) (((size_t)(x) + 255) & ~(size_t)255)
    size_t bytes = 3 * UP256(sizeof(int32_t) * bk) + UP256(sizeof(int32_t) * (size_t)bk * e->max_pages) +
                   UP256(sizeof(float) * (size_t)bk * c->vocab) + n_attn * UP256((size_t)256 * bk);
#undef UP256
    return bytes + 65536;
}

// The decode pass of e->seqs[0..n) (set up by pz_engine_decode) as bucket
// bk's graph. 0: done, logits filled; 1: not run (no graph for it now, or
// it broke): the caller runs it eagerly.
static int decode_graph(pz_engine *e, const int32_t *tokens, int n, int bk, float *logits, int split) {
    pz_backend *b = e->b;
    const int vocab = e->m->cfg.vocab, bi = bucket_index(bk);
    if (e->graph_off[bi]) return 1;
    if (!e->glogits && !(e->glogits = malloc(sizeof(float) * PZ_ENGINE_GRAPH_MAX * (size_t)vocab))) return 1;
    if (e->pad_page < 0 && bk > n && (e->pad_page = pz_kvcache_alloc(e->kvc)) < 0) return 1;
    if (!e->graph[bi] && !(e->graph[bi] = b->graph_create(b, graph_stage_bytes(e, bk), NULL))) {
        e->graph_off[bi] = 1;
        return 1;
    }
    memcpy(e->gtok, tokens, sizeof(int32_t) * (size_t)n);
    for (int i = n; i < bk; i++) {  // padding rows: token 0 at position 0 of the pad page
        e->gtok[i] = 0;
        e->pos[i] = 0;
        e->row_page[i] = e->pad_page;
        e->seqs[i].n_q = 1;
        e->seqs[i].pos0 = 0;
        e->seq_slot[i] = -1;
        e->seq_row0[i] = i;
    }
    char gerr[PZ_ERRLEN];
    if (b->graph_begin(b, e->graph[bi], gerr) ||
        forward(e, e->gtok, bk, bk, e->seq_row0, 0, NULL, bk, e->glogits, split, 1, gerr)) {
        // Broken: nothing of a captured or replayed pass ran (a warm-up ran
        // eagerly; the eager rerun writes the same KV entries again).
        b->graph_free(b, e->graph[bi]);
        e->graph[bi] = NULL;
        e->graph_off[bi] = 1;
        e->gstats.broken++;
        b->synchronize(b, NULL);  // drops the abandoned pass's error
        return 1;
    }
    memcpy(logits, e->glogits, sizeof(float) * (size_t)n * vocab);
    e->gstats.graph_steps++;
    return 0;
}

static int decode_impl(pz_engine *e, const int *slots, const int32_t *tokens, int n, float *logits,
                       char *err) {
    if (n <= 0) return 0;
    if (n > e->R) return pz_err(err, "decode of %d slots at once exceeds the engine's %d rows", n, e->R);
    const int vocab = e->m->cfg.vocab;
    int *row0 = e->seq_row0;
    for (int i = 0; i < n; i++) {
        if (check_slot(e, slots[i], err)) return -1;
        for (int j = 0; j < i; j++)
            if (slots[j] == slots[i]) return pz_err(err, "slot %d appears twice in one decode batch", slots[i]);
        if (e->slot[slots[i]].len >= e->p.max_ctx)
            return pz_err(err, "context full: slot %d holds max_ctx %d tokens", slots[i], e->p.max_ctx);
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return pz_err(err, "token id %d for slot %d is outside the vocabulary (0..%d)", tokens[i], slots[i], vocab - 1);
    }
    for (int i = 0; i < n; i++) {
        // Pages taken for earlier slots of a failed call stay with them for the next one.
        int rc = take_pages(e, slots[i], 1, err);
        if (rc) return rc;
        const eng_slot *sl = &e->slot[slots[i]];
        e->pos[i] = sl->len;
        e->row_page[i] = sl->pages[sl->len / PZ_KV_PAGE];
        e->seqs[i].n_q = 1;
        e->seqs[i].pos0 = e->pos[i];
        e->seq_slot[i] = slots[i];
        row0[i] = i;
    }
    const int split = e->p.batch_invariant ? SPLIT_DECODE : SPLIT_NONE;
    pz_backend *b = e->b;
    // Not under tensor parallelism: followers pass no logits and so would run
    // eagerly beside rank 0's graph, and NCCL inside a captured graph is unproven.
    int bk = e->p.graphs && b->graph_begin && logits && !e->p.amax && e->tp == 1
                 ? pz_engine_graph_bucket(n, e->p.n_slots, e->R)
                 : 0;
    if (!bk || decode_graph(e, tokens, n, bk, logits, split)) {
        if (forward(e, tokens, n, n, row0, 0, NULL, logits ? n : 0, logits, split, 0, err)) return -1;
        e->gstats.eager_steps++;
    }
    for (int i = 0; i < n; i++) advance(e, slots[i], tokens + i, 1);
    return 0;
}

int pz_engine_prefix_partial(const pz_engine *e) {
    return e->p.prefix_cache && e->tp == 1 && (e->b->rowwise_prefill || !e->p.batch_invariant);
}

int pz_engine_mixed_steps(const pz_engine *e) {
    return e->tp == 1 && (e->b->rowwise_prefill || !e->p.batch_invariant);
}

int pz_engine_slot_len(const pz_engine *e, int slot) {
    return slot >= 0 && slot < e->p.n_slots ? e->slot[slot].len : -1;
}

// Deepest page first, so a chain's later pages are evicted before its
// earlier ones (which more sequences share).
static void release_pages(pz_engine *e, eng_slot *sl) {
    while (sl->n_pages > 0) pz_kvcache_unref(e->kvc, sl->pages[--sl->n_pages]);
    sl->len = 0;
}

static void reset_impl(pz_engine *e, int slot) {
    if (slot >= 0 && slot < e->p.n_slots) release_pages(e, &e->slot[slot]);
}

// Page src's K and V (every layer) into page dst. 0 or -1 with err.
static int copy_page(pz_engine *e, int dst, int src, char *err) {
    pz_backend *b = e->b;
    for (int l = 0; l < e->m->cfg.n_layer; l++) {
        const eng_layer *el = &e->L[l];
        if (!el->k) continue;
        size_t pb = el->page_bytes, from = (size_t)src * pb, to = (size_t)dst * pb;
        if (b->copy(b, (char *)el->k + to, (const char *)el->k + from, pb, PZ_COPY_D2D, err) ||
            b->copy(b, (char *)el->v + to, (const char *)el->v + from, pb, PZ_COPY_D2D, err))
            return -1;
    }
    return b->synchronize(b, err);
}

// The partial page of pz_engine_prefix_attach: a copy of the remembered
// page src, which continues the slot's attached pages, as the slot's own
// page k (of which the caller counts only the matching first positions;
// the rest are rewritten by the slot's prefill before they are read). 0
// when done, -1 when not (no page free, or the copy failed: the slot keeps
// its full pages alone).
static int attach_partial(pz_engine *e, eng_slot *sl, int k, int src) {
    pz_kvcache_ref(e->kvc, src);  // not evicted by the allocation below
    int p = pz_kvcache_alloc(e->kvc), rc = -1;
    if (p >= 0 && copy_page(e, p, src, NULL) == 0) {
        sl->pages[k] = p;
        sl->nodes[k] = 0;
        rc = 0;
    } else if (p >= 0) {
        pz_kvcache_unref(e->kvc, p);
    }
    pz_kvcache_unref(e->kvc, src);
    return rc;
}

static int attach_impl(pz_engine *e, int slot, const int32_t *tokens, int n) {
    if (slot < 0 || slot >= e->p.n_slots || !tokens || n <= 1) return 0;
    eng_slot *sl = &e->slot[slot];
    release_pages(e, sl);
    uint64_t parent = 0;
    int k = 0;
    while ((k + 1) * PZ_KV_PAGE <= n - 1 && (k + 1) * PZ_KV_PAGE <= e->p.max_ctx) {
        uint64_t node;
        int p = pz_kvcache_lookup(e->kvc, parent, tokens + (size_t)k * PZ_KV_PAGE, &node);
        if (p < 0) break;
        pz_kvcache_ref(e->kvc, p);
        sl->pages[k] = p;
        sl->nodes[k] = node;
        parent = node;
        k++;
    }
    sl->n_pages = k;
    sl->len = k * PZ_KV_PAGE;
    e->prefix_hits += k;
    e->prefix_tokens += (long long)k * PZ_KV_PAGE;
    // Then the longest run of the next tokens (one at least left to
    // prefill) that a remembered page continuing the same chain starts
    // with (prompts that share a system prompt and a template rarely part
    // at a page boundary). Only where a row's results do not depend on the
    // rows prefilled beside it (rowwise prefill, or no batch invariance
    // promised), and not under tensor parallelism: the copy could fail on
    // one rank alone, and attaching has no agreement step.
    int rest = n - 1 - sl->len, len = 0;
    if (rest > e->p.max_ctx - sl->len) rest = e->p.max_ctx - sl->len;
    if (rest > 0 && pz_engine_prefix_partial(e)) {
        int src = pz_kvcache_lookup_partial(e->kvc, parent, tokens + sl->len, rest, &len);
        if (src >= 0 && len > 0 && len < PZ_KV_PAGE && attach_partial(e, sl, k, src) == 0) {
            sl->n_pages = k + 1;
            sl->len += len;
            e->prefix_hits++;
            e->prefix_tokens += len;
        }
    }
    memcpy(sl->tokens, tokens, sizeof(int32_t) * (size_t)sl->len);
    return sl->len;
}

static int fork_impl(pz_engine *e, int dst, int src, char *err) {
    if (check_slot(e, dst, err) || check_slot(e, src, err)) return -1;
    if (dst == src) return pz_err(err, "fork of slot %d onto itself", src);
    eng_slot *d = &e->slot[dst];
    const eng_slot *s = &e->slot[src];
    release_pages(e, d);
    int full = s->len / PZ_KV_PAGE, part = s->len % PZ_KV_PAGE != 0;
    if (part) {
        int p = pz_kvcache_alloc(e->kvc);
        if (p < 0)
            return pz_err(err, "KV cache full: no page to fork slot %d into slot %d", src, dst),
                   PZ_ENGINE_ENOPAGES;
        if (copy_page(e, p, s->pages[full], err)) {
            pz_kvcache_unref(e->kvc, p);
            return -1;
        }
        d->pages[full] = p;
        d->nodes[full] = 0;
    }
    for (int i = 0; i < full; i++) {
        pz_kvcache_ref(e->kvc, s->pages[i]);
        d->pages[i] = s->pages[i];
        d->nodes[i] = s->nodes[i];
    }
    d->n_pages = full + part;
    d->len = s->len;
    memcpy(d->tokens, s->tokens, sizeof(int32_t) * (size_t)s->len);
    return 0;
}

// ---- tensor-parallel commands ---------------------------------------------------

// bytes at host on rank 0 copied to host on every rank: straight through
// the communicator when the backend's memory is the host's, else staged
// through backend memory in chunks of TP_STAGE.
static int tp_bcast(pz_engine *e, void *host, size_t bytes, char *err) {
    pz_backend *b = e->b;
    pz_comm *c = e->comm;
    if (b->kind == PZ_BACKEND_CPU) return c->broadcast(c, host, bytes, 0, err);
    for (size_t off = 0; off < bytes; off += TP_STAGE) {
        size_t k = bytes - off < TP_STAGE ? bytes - off : TP_STAGE;
        char *h = (char *)host + off;
        // wait before the copy back: a copy to pageable memory would block
        // in the driver, deaf to a failed job, until the broadcast ends
        if ((e->rank == 0 && b->copy(b, e->d_stage, h, k, PZ_COPY_H2D, err)) ||
            c->broadcast(c, e->d_stage, k, 0, err) || c->wait(c, err) ||
            (e->rank != 0 && b->copy(b, h, e->d_stage, k, PZ_COPY_D2H, err)) || c->wait(c, err)) {
            c->health = PZ_COMM_BROKEN;
            return -1;
        }
    }
    return 0;
}

// After a call every rank made (prefill, decode, fork): its outcome rc on
// this rank (0, or an error with err) against the others', by one status
// exchange. The same outcome everywhere (success, or an error every rank
// met alike: a bad token id, a full KV pool) returns rc as it is; rank 0
// reports its own error. A call that failed on some ranks only has left
// them out of step (KV cache, slots): every rank returns -1 with err
// "tensor parallel: rank R: WHY", and so does every later call.
static int tp_after(pz_engine *e, int rc, char *err) {
    pz_comm *c = e->comm;
    char mine[PZ_ERRLEN], st[PZ_ERRLEN] = "";
    snprintf(mine, sizeof mine, "%s", rc && err ? err : "failed");
    int r = c->health == PZ_COMM_OK ? c->status(c, rc == 0, mine, st) : -1;
    if (r == 1) {
        // Some rank failed: did every rank? (a second exchange, on failures only)
        c->health = PZ_COMM_OK;
        int some_ok = c->status(c, rc != 0, "succeeded", NULL);
        if (some_ok == 0) return rc;  // met alike: the ranks stay in step
        r = some_ok;
    }
    if (r == 0) return rc;
    if (r == 1 && !e->tp_err[0]) snprintf(e->tp_err, sizeof e->tp_err, "tensor parallel: %.*s", PZ_ERRLEN - 64, st);
    if (r < 0 && !e->tp_err[0])
        snprintf(e->tp_err, sizeof e->tp_err, "tensor parallel: %.*s", PZ_ERRLEN - 64, rc ? mine : st);
    return pz_err(err, "%s", e->tp_err);
}

static int tp_reserve(pz_engine *e, size_t n, char *err) {
    if (n <= e->cmd_cap) return 0;
    int32_t *p = realloc(e->cmd, sizeof(int32_t) * n);
    if (!p) return pz_err(err, "engine: out of memory for a command of %zu ids", n);
    e->cmd = p;
    e->cmd_cap = n;
    return 0;
}

// Rank 0: tells the other ranks to run op(a, b) on n1 ids from p1 then n2
// from p2. A header of five ints, then the ids when there are any.
static int tp_send(pz_engine *e, int op, int a, int b, const int32_t *p1, int n1, const int32_t *p2,
                   int n2, char *err) {
    if (n1 < 0) n1 = 0;
    if (n2 < 0) n2 = 0;
    int32_t hdr[5] = {op, a, b, n1, n2};
    if (tp_bcast(e, hdr, sizeof hdr, err)) return -1;
    size_t n = (size_t)n1 + (size_t)n2;
    if (!n) return 0;
    if (tp_reserve(e, n, err)) return -1;  // a failure here leaves the others waiting: out of memory
    if (n1) memcpy(e->cmd, p1, sizeof(int32_t) * (size_t)n1);
    if (n2) memcpy(e->cmd + n1, p2, sizeof(int32_t) * (size_t)n2);
    return tp_bcast(e, e->cmd, sizeof(int32_t) * n, err);
}

// A tensor-parallel call that cannot go on: the job failed (before, or
// now: err says why). err then reads this rank's one line for it.
static int tp_fail(pz_engine *e, char *err) {
    if (!e->tp_err[0])
        snprintf(e->tp_err, sizeof e->tp_err, "tensor parallel: %.*s", PZ_ERRLEN - 64,
                 err && err[0] ? err : "the job failed");
    if (e->comm->health == PZ_COMM_OK) e->comm->health = PZ_COMM_BROKEN;
    return pz_err(err, "%s", e->tp_err);
}

static int not_driver(pz_engine *e, char *err) {
    if (e->tp > 1 && e->rank != 0)
        return pz_err(err, "engine: tensor-parallel rank %d follows rank 0 (pz_engine_follow)", e->rank);
    return 0;
}

int pz_engine_follow(pz_engine *e, char *err) {
    if (e->tp <= 1 || e->rank == 0) return pz_err(err, "engine: only ranks other than 0 follow");
    if (e->comm->health != PZ_COMM_OK) return tp_fail(e, err);
    char why[PZ_ERRLEN];
    for (;;) {
        int32_t h[5];
        if (tp_bcast(e, h, sizeof h, err)) return tp_fail(e, err);
        if (h[3] < 0 || h[4] < 0) return pz_err(err, "engine: a malformed command from rank 0"), tp_fail(e, err);
        size_t n = (size_t)h[3] + (size_t)h[4];
        // (out of memory for the ids: rank 0's broadcast of them finds no
        // partner here, so the job is broken)
        if (n && (tp_reserve(e, n, err) || tp_bcast(e, e->cmd, sizeof(int32_t) * n, err))) return tp_fail(e, err);
        // An error every rank met alike is rank 0's to report; one that
        // struck this rank (or another) alone ends the job (tp_after).
        int rc = 0;
        why[0] = 0;
        switch (h[0]) {
        case TP_STOP: return 0;
        case TP_PREFILL: rc = tp_after(e, prefill_impl(e, h[1], e->cmd, h[3], NULL, 0, why), why); break;
        case TP_DECODE: {
            _Static_assert(sizeof(int) == sizeof(int32_t), "slot ids travel as int32");
            if (h[3] != h[4]) return pz_err(err, "engine: a malformed decode command from rank 0"), tp_fail(e, err);
            rc = tp_after(e, decode_impl(e, (const int *)e->cmd, e->cmd + h[3], h[3], NULL, why), why);
            break;
        }
        case TP_PREFILL_MANY: {  // a = n_seq; ids: slots, counts, then the tokens
            int ns = h[1];
            long tot = 0;
            for (int i = 0; ns >= 1 && h[3] == 2 * ns && i < ns; i++) tot += e->cmd[ns + i] > 0 ? e->cmd[ns + i] : 0;
            if (ns < 1 || h[3] != 2 * ns || tot != h[4])
                return pz_err(err, "engine: a malformed prefill command from rank 0"), tp_fail(e, err);
            rc = tp_after(e, prefill_many_impl(e, ns, (const int *)e->cmd, e->cmd + 2 * ns, (const int *)e->cmd + ns,
                                               NULL, NULL, why), why);
            break;
        }
        case TP_RESET: reset_impl(e, h[1]); break;
        case TP_ATTACH: attach_impl(e, h[1], e->cmd, h[3]); break;
        case TP_FORK: rc = tp_after(e, fork_impl(e, h[1], h[2], why), why); break;
        default: return pz_err(err, "engine: unknown command %d from rank 0", h[0]), tp_fail(e, err);
        }
        if (rc && e->comm->health != PZ_COMM_OK) return pz_err(err, "%s", e->tp_err);
    }
}

int pz_engine_tp_rank(const pz_engine *e) { return e->rank; }
int pz_engine_tp_size(const pz_engine *e) { return e->tp; }

// Rank 0 under tensor parallelism: refuses calls once the job failed, and
// tells the others the call (a failed broadcast breaks the job).
static int tp_drive(pz_engine *e, int op, int a, int b, const int32_t *p1, int n1, const int32_t *p2, int n2,
                    char *err) {
    if (e->comm->health != PZ_COMM_OK || tp_send(e, op, a, b, p1, n1, p2, n2, err)) return tp_fail(e, err);
    return 0;
}

int pz_engine_prefill(pz_engine *e, int slot, const int32_t *tokens, int n, float *logits,
                      int all_logits, char *err) {
    if (not_driver(e, err)) return -1;
    if (e->tp <= 1) return prefill_impl(e, slot, tokens, n, logits, all_logits, err);
    if (tp_drive(e, TP_PREFILL, slot, 0, tokens, tokens ? n : 0, NULL, 0, err)) return -1;
    return tp_after(e, prefill_impl(e, slot, tokens, n, logits, all_logits, err), err);
}

int pz_engine_prefill_many(pz_engine *e, int n_seq, const int *slots, const int32_t *tokens, const int *n,
                           float *logits, const int *want, char *err) {
    if (not_driver(e, err)) return -1;
    if (e->tp <= 1 || n_seq <= 0) return prefill_many_impl(e, n_seq, slots, tokens, n, logits, want, err);
    long tot = 0;
    for (int i = 0; i < n_seq; i++) tot += n[i] > 0 ? n[i] : 0;
    int32_t *hdr = malloc(sizeof(int32_t) * 2 * (size_t)n_seq);
    if (!hdr) return pz_err(err, "engine: out of memory");  // before any command: the ranks stay in step
    memcpy(hdr, slots, sizeof(int32_t) * (size_t)n_seq);
    memcpy(hdr + n_seq, n, sizeof(int32_t) * (size_t)n_seq);
    int rc = tp_drive(e, TP_PREFILL_MANY, n_seq, 0, hdr, 2 * n_seq, tokens, (int)tot, err);
    free(hdr);
    if (rc) return -1;
    return tp_after(e, prefill_many_impl(e, n_seq, slots, tokens, n, logits, want, err), err);
}

int pz_engine_decode(pz_engine *e, const int *slots, const int32_t *tokens, int n, float *logits, char *err) {
    if (not_driver(e, err)) return -1;
    if (e->tp <= 1 || n <= 0) return decode_impl(e, slots, tokens, n, logits, err);
    if (tp_drive(e, TP_DECODE, 0, 0, (const int32_t *)slots, n, tokens, n, err)) return -1;
    return tp_after(e, decode_impl(e, slots, tokens, n, logits, err), err);
}

void pz_engine_slot_reset(pz_engine *e, int slot) {
    if (e->tp > 1 && (e->rank != 0 || e->comm->health != PZ_COMM_OK ||
                      tp_send(e, TP_RESET, slot, 0, NULL, 0, NULL, 0, NULL)))
        return;
    reset_impl(e, slot);
}

int pz_engine_prefix_attach(pz_engine *e, int slot, const int32_t *tokens, int n) {
    if (e->tp > 1 && (e->rank != 0 || e->comm->health != PZ_COMM_OK ||
                      tp_send(e, TP_ATTACH, slot, 0, tokens, tokens ? n : 0, NULL, 0, NULL)))
        return 0;
    return attach_impl(e, slot, tokens, n);
}

int pz_engine_slot_fork(pz_engine *e, int dst, int src, char *err) {
    if (not_driver(e, err)) return -1;
    if (e->tp <= 1) return fork_impl(e, dst, src, err);
    if (tp_drive(e, TP_FORK, dst, src, NULL, 0, NULL, 0, err)) return -1;
    return tp_after(e, fork_impl(e, dst, src, err), err);
}

const char *pz_engine_tp_error(const pz_engine *e) {
    return e && e->tp > 1 && e->comm->health != PZ_COMM_OK ? e->tp_err : NULL;
}

int pz_engine_pages_needed(const pz_engine *e, int slot, int n) {
    if (slot < 0 || slot >= e->p.n_slots || n < 0) return -1;
    const eng_slot *sl = &e->slot[slot];
    int need = pages_for(sl->len + n) - sl->n_pages;
    return need > 0 ? need : 0;
}

void pz_engine_kv_stats(const pz_engine *e, pz_kv_stats *st) {
    pz_kvcache_counts k;
    pz_kvcache_counts_get(e->kvc, &k);
    st->page_tokens = PZ_KV_PAGE;
    st->pages_total = k.total;
    st->pages_free = k.free;
    st->pages_cached = k.cached;
    st->pages_used = k.used;
    st->prefix_hits = e->prefix_hits;
    st->prefix_tokens = e->prefix_tokens;
    st->evictions = k.evictions;
}

const pz_model *pz_engine_model(const pz_engine *e) { return e->m; }

size_t pz_engine_kv_bytes(const pz_engine *e) { return e->kv_bytes; }

int pz_engine_n_slots(const pz_engine *e) { return e->p.n_slots; }

int pz_engine_max_ctx(const pz_engine *e) { return e->p.max_ctx; }

int pz_engine_max_batch(const pz_engine *e) { return e->p.max_batch; }
