// engine.c — see engine.h. One forward routine serves prefill and batched
// decode: it takes R rows (tokens), each belonging to a slot at a position,
// grouped into "sequences" of consecutive rows of one slot (prefill: one
// sequence of R rows; decode: R sequences of one row). Every op runs on all
// R rows at once, except attention, which runs per sequence over that
// slot's own cache.
//
// Per layer (DESIGN.md "Heterogeneous model semantics"):
//   gqa:    xn = norm(x); [q|k|v] = xn·[Wq;Wk;Wv]^T; RoPE(q), RoPE(k);
//           cache <- k, v; a = attention(q, cache); x += a·Wo^T
//   linear: x += norm(x)·W^T            noop: nothing
//   swiglu: xn = norm(x); [g|u] = xn·[Wg;Wu]^T; x += (silu(g)*u)·Wd^T
// The q/k/v and gate/up products are one matmul each when the model keeps
// those weights adjacent (pz_model_alloc does). Residual adds are fused into
// the products (accumulate).
#include "engine.h"
#include "backend.h"
#include "common.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    float *k, *v;      // n_slots caches of slot_floats each (backend layout), or NULL
    size_t slot_floats;
    int kvd;           // n_kv*head_dim
    int fuse_qkv;      // wq, wk, wv adjacent in memory
    int fuse_gu;       // w_gate, w_up adjacent in memory
} eng_layer;

struct pz_engine {
    const pz_model *m;
    pz_engine_params p;
    pz_backend *b;
    int R;                 // rows of scratch: max(max_batch, n_slots)
    eng_layer *L;
    int *len;              // (n_slots) tokens in each slot's cache
    size_t kv_bytes;
    // Scratch, allocated once.
    float *x;              // (R, hidden) residual stream
    float *xn;             // (R, hidden) normed
    float *qkv;            // (R, (n_head + 2*max_kv)*head_dim)
    float *att;            // (R, n_head*head_dim)
    float *gu;             // (R, 2*max_ff)
    float *h;              // (R, max_ff)
    float *inv_freq;       // (head_dim/2)
    int32_t *pos;          // (R)
    int *row_slot;         // (R)
    pz_attn_seq *seqs;     // (R)
    int *seq_slot;         // (R)
    int *seq_row0;         // (R) first row of each sequence
};

pz_engine_params pz_engine_default_params(void) {
    pz_engine_params p = {.n_threads = 0, .n_slots = 1, .max_ctx = 0, .max_batch = 512};
    return p;
}

static pz_dt dt_of(const pz_mat *w) { return w->type == PZ_DT_BF16 ? PZ_DT_BF16 : PZ_DT_F32; }

static int adjacent(const pz_mat *a, const pz_mat *b) {
    size_t bytes = (size_t)a->rows * a->cols * (a->type == PZ_DT_BF16 ? 2 : 4);
    return a->type == b->type && a->cols == b->cols && (const char *)a->data + bytes == (const char *)b->data;
}

void pz_engine_free(pz_engine *e) {
    if (!e) return;
    pz_backend *b = e->b;
    if (b) {
        if (e->L)
            for (int l = 0; l < e->m->cfg.n_layer; l++) {
                b->free(b, e->L[l].k);
                b->free(b, e->L[l].v);
            }
        b->free(b, e->x);
        b->free(b, e->xn);
        b->free(b, e->qkv);
        b->free(b, e->att);
        b->free(b, e->gu);
        b->free(b, e->h);
        pz_backend_free(b);
    }
    free(e->L);
    free(e->len);
    free(e->inv_freq);
    free(e->pos);
    free(e->row_slot);
    free(e->seqs);
    free(e->seq_slot);
    free(e->seq_row0);
    free(e);
}

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
    e->m = m;
    e->p = p;
    if (!(e->b = pz_backend_create(PZ_BACKEND_CPU, p.n_threads, err))) goto fail;
    pz_backend *b = e->b;
    pz_dt wdt = m->wtype == PZ_DT_BF16 ? PZ_DT_BF16 : PZ_DT_F32;
    if (!b->supports(b, PZ_OP_MATMUL, wdt) || !b->supports(b, PZ_OP_EMBED, wdt)) {
        pz_err(err, "engine: backend %s cannot run %s weights", b->name, wdt ? "bf16" : "f32");
        goto fail;
    }
    e->p.n_threads = b->n_threads;
    e->R = p.max_batch > p.n_slots ? p.max_batch : p.n_slots;
    int hd = c->head_dim, max_kv = 0, max_ff = 0;
    e->L = calloc((size_t)c->n_layer, sizeof *e->L);
    e->len = calloc((size_t)p.n_slots, sizeof *e->len);
    if (!e->L || !e->len) goto oom;
    for (int l = 0; l < c->n_layer; l++) {
        const pz_layer_spec *s = &c->layers[l];
        const pz_layer_weights *w = &m->layers[l];
        eng_layer *el = &e->L[l];
        if (s->attn == PZ_ATTN_GQA) {
            if (s->n_kv > max_kv) max_kv = s->n_kv;
            el->kvd = s->n_kv * hd;
            size_t per_slot = b->kv_bytes(b, s->n_kv, hd, p.max_ctx), bytes;
            el->slot_floats = per_slot / sizeof(float);
            if (pz_mul_size((size_t)p.n_slots, per_slot, &bytes)) goto oom;
            el->k = b->alloc(b, bytes);
            el->v = b->alloc(b, bytes);
            if (!el->k || !el->v) goto oom;
            e->kv_bytes += 2 * bytes;
            el->fuse_qkv = adjacent(&w->wq, &w->wk) && adjacent(&w->wk, &w->wv);
        }
        if (s->ffn == PZ_FFN_SWIGLU) {
            if (s->n_ff > max_ff) max_ff = s->n_ff;
            el->fuse_gu = adjacent(&w->w_gate, &w->w_up);
        }
    }
    size_t R = (size_t)e->R;
    e->x = b->alloc(b, sizeof(float) * R * c->hidden);
    e->xn = b->alloc(b, sizeof(float) * R * c->hidden);
    e->qkv = b->alloc(b, sizeof(float) * R * (size_t)(c->n_head + 2 * max_kv) * hd);
    e->att = b->alloc(b, sizeof(float) * R * (size_t)c->n_head * hd);
    e->gu = b->alloc(b, sizeof(float) * R * 2 * (size_t)max_ff);
    e->h = b->alloc(b, sizeof(float) * R * (size_t)max_ff);
    e->inv_freq = malloc(sizeof(float) * (size_t)(hd / 2 + 1));
    e->pos = malloc(sizeof(int32_t) * R);
    e->row_slot = malloc(sizeof(int) * R);
    e->seqs = malloc(sizeof(pz_attn_seq) * R);
    e->seq_slot = malloc(sizeof(int) * R);
    e->seq_row0 = malloc(sizeof(int) * R);
    if (!e->x || !e->xn || !e->qkv || !e->att || !e->gu || !e->h || !e->inv_freq || !e->pos ||
        !e->row_slot || !e->seqs || !e->seq_slot || !e->seq_row0)
        goto oom;
    pz_rope_params rp = {.head_dim = hd, .theta = c->rope_theta,
                         .llama3 = c->rope_scaling == PZ_ROPE_SCALING_LLAMA3,
                         .factor = c->rope_factor, .low_freq_factor = c->rope_low_freq_factor,
                         .high_freq_factor = c->rope_high_freq_factor, .orig_ctx = c->rope_orig_ctx};
    pz_rope_inv_freq(&rp, e->inv_freq);
    return e;
oom:
    pz_err(err, "engine: out of memory (KV cache %zu bytes so far; n_slots %d, max_ctx %d)", e->kv_bytes,
           p.n_slots, p.max_ctx);
fail:
    pz_engine_free(e);
    return NULL;
}

// The forward pass over R rows: token tok[r] of slot e->row_slot[r] at
// position e->pos[r]. The rows form n_seq sequences: sequence i is n_q =
// e->seqs[i].n_q consecutive rows from seq_row0[i], of slot e->seq_slot[i],
// starting at position e->seqs[i].pos0. Logits of rows [lrow0, lrow0+nl)
// go to out (nl*vocab).
static int forward(pz_engine *e, const int32_t *tok, int R, int n_seq, const int *seq_row0,
                   int lrow0, int nl, float *out, char *err) {
    const pz_model *m = e->m;
    const pz_config *c = &m->cfg;
    pz_backend *b = e->b;
    const int H = c->hidden, hd = c->head_dim, nh = c->n_head;
    if (b->embed(b, e->x, m->tok_embd.data, dt_of(&m->tok_embd), tok, R, H, c->vocab, err)) return -1;
    for (int l = 0; l < c->n_layer; l++) {
        const pz_layer_spec *s = &c->layers[l];
        const pz_layer_weights *w = &m->layers[l];
        const eng_layer *el = &e->L[l];
        if (s->attn == PZ_ATTN_GQA) {
            const int kvd = el->kvd, qd = nh * hd, ld = qd + 2 * kvd;
            b->rmsnorm(b, e->xn, e->x, w->attn_norm, R, H, c->norm_eps);
            if (el->fuse_qkv) {
                if (b->matmul(b, e->qkv, ld, e->xn, H, w->wq.data, dt_of(&w->wq), R, ld, H, 0, err)) return -1;
            } else if (b->matmul(b, e->qkv, ld, e->xn, H, w->wq.data, dt_of(&w->wq), R, qd, H, 0, err) ||
                       b->matmul(b, e->qkv + qd, ld, e->xn, H, w->wk.data, dt_of(&w->wk), R, kvd, H, 0, err) ||
                       b->matmul(b, e->qkv + qd + kvd, ld, e->xn, H, w->wv.data, dt_of(&w->wv), R, kvd, H, 0, err)) {
                return -1;
            }
            b->rope(b, e->qkv, ld, e->pos, R, nh, hd, e->inv_freq);
            b->rope(b, e->qkv + qd, ld, e->pos, R, s->n_kv, hd, e->inv_freq);
            for (int r = 0; r < R; r++) {
                size_t base = (size_t)e->row_slot[r] * el->slot_floats;
                const float *src = e->qkv + (size_t)r * ld + qd;
                b->kv_write(b, el->k + base, el->v + base, s->n_kv, hd, e->p.max_ctx, e->pos[r], src, src + kvd);
            }
            for (int i = 0; i < n_seq; i++) {
                pz_attn_seq *q = &e->seqs[i];
                size_t base = (size_t)e->seq_slot[i] * el->slot_floats;
                q->q = e->qkv + (size_t)seq_row0[i] * ld;
                q->q_ld = ld;
                q->out = e->att + (size_t)seq_row0[i] * qd;
                q->out_ld = qd;
                q->k = el->k + base;
                q->v = el->v + base;
                q->kv_ld = 0;  // the backend's cache layout
                q->kv_cap = e->p.max_ctx;
            }
            if (b->attention(b, e->seqs, n_seq, nh, s->n_kv, hd, err)) return -1;
            if (b->matmul(b, e->x, H, e->att, qd, w->wo.data, dt_of(&w->wo), R, H, qd, 1, err)) return -1;
        } else if (s->attn == PZ_ATTN_LINEAR) {
            b->rmsnorm(b, e->xn, e->x, w->attn_norm, R, H, c->norm_eps);
            if (b->matmul(b, e->x, H, e->xn, H, w->wo.data, dt_of(&w->wo), R, H, H, 1, err)) return -1;
        }
        if (s->ffn == PZ_FFN_SWIGLU) {
            const int F = s->n_ff;
            b->rmsnorm(b, e->xn, e->x, w->ffn_norm, R, H, c->norm_eps);
            if (el->fuse_gu) {
                if (b->matmul(b, e->gu, 2 * F, e->xn, H, w->w_gate.data, dt_of(&w->w_gate), R, 2 * F, H, 0, err))
                    return -1;
            } else if (b->matmul(b, e->gu, 2 * F, e->xn, H, w->w_gate.data, dt_of(&w->w_gate), R, F, H, 0, err) ||
                       b->matmul(b, e->gu + F, 2 * F, e->xn, H, w->w_up.data, dt_of(&w->w_up), R, F, H, 0, err)) {
                return -1;
            }
            b->swiglu(b, e->h, F, e->gu, e->gu + F, 2 * F, R, F);
            if (b->matmul(b, e->x, H, e->h, F, w->w_down.data, dt_of(&w->w_down), R, H, F, 1, err)) return -1;
        } else if (s->ffn == PZ_FFN_LINEAR) {
            b->rmsnorm(b, e->xn, e->x, w->ffn_norm, R, H, c->norm_eps);
            if (b->matmul(b, e->x, H, e->xn, H, w->w_down.data, dt_of(&w->w_down), R, H, H, 1, err)) return -1;
        }
    }
    if (nl > 0 && out) {
        float *xl = e->xn + (size_t)lrow0 * H;
        b->rmsnorm(b, xl, e->x + (size_t)lrow0 * H, m->out_norm, nl, H, c->norm_eps);
        if (b->matmul(b, out, c->vocab, xl, H, m->lm_head.data, dt_of(&m->lm_head), nl, c->vocab, H, 0, err))
            return -1;
    }
    return 0;
}

static int check_slot(const pz_engine *e, int slot, char *err) {
    if (slot < 0 || slot >= e->p.n_slots)
        return pz_err(err, "slot %d out of range (engine has %d slots)", slot, e->p.n_slots);
    return 0;
}

int pz_engine_prefill(pz_engine *e, int slot, const int32_t *tokens, int n, float *logits,
                      int all_logits, char *err) {
    if (check_slot(e, slot, err)) return -1;
    if (n <= 0) return pz_err(err, "prefill of %d tokens", n);
    if (e->len[slot] + n > e->p.max_ctx)
        return pz_err(err, "context full: slot %d holds %d tokens, %d more exceed max_ctx %d", slot,
                      e->len[slot], n, e->p.max_ctx);
    const int vocab = e->m->cfg.vocab;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return pz_err(err, "token id %d at position %d is outside the vocabulary (0..%d)", tokens[i], i, vocab - 1);
    for (int done = 0; done < n;) {
        int R = n - done < e->p.max_batch ? n - done : e->p.max_batch;
        int p0 = e->len[slot];
        for (int r = 0; r < R; r++) {
            e->pos[r] = p0 + r;
            e->row_slot[r] = slot;
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
        if (forward(e, tokens + done, R, 1, &row0, lrow0, nl, out, err)) return -1;
        e->len[slot] += R;
        done += R;
    }
    return 0;
}

int pz_engine_decode(pz_engine *e, const int *slots, const int32_t *tokens, int n, float *logits, char *err) {
    if (n <= 0) return 0;
    if (n > e->R) return pz_err(err, "decode of %d slots at once exceeds the engine's %d rows", n, e->R);
    const int vocab = e->m->cfg.vocab;
    int *row0 = e->seq_row0;
    for (int i = 0; i < n; i++) {
        if (check_slot(e, slots[i], err)) return -1;
        for (int j = 0; j < i; j++)
            if (slots[j] == slots[i]) return pz_err(err, "slot %d appears twice in one decode batch", slots[i]);
        if (e->len[slots[i]] >= e->p.max_ctx)
            return pz_err(err, "context full: slot %d holds max_ctx %d tokens", slots[i], e->p.max_ctx);
        if (tokens[i] < 0 || tokens[i] >= vocab)
            return pz_err(err, "token id %d for slot %d is outside the vocabulary (0..%d)", tokens[i], slots[i], vocab - 1);
        e->pos[i] = e->len[slots[i]];
        e->row_slot[i] = slots[i];
        e->seqs[i].n_q = 1;
        e->seqs[i].pos0 = e->pos[i];
        e->seq_slot[i] = slots[i];
        row0[i] = i;
    }
    if (forward(e, tokens, n, n, row0, 0, logits ? n : 0, logits, err)) return -1;
    for (int i = 0; i < n; i++) e->len[slots[i]]++;
    return 0;
}

int pz_engine_slot_len(const pz_engine *e, int slot) {
    return slot >= 0 && slot < e->p.n_slots ? e->len[slot] : -1;
}

void pz_engine_slot_reset(pz_engine *e, int slot) {
    if (slot >= 0 && slot < e->p.n_slots) e->len[slot] = 0;
}

const pz_model *pz_engine_model(const pz_engine *e) { return e->m; }

size_t pz_engine_kv_bytes(const pz_engine *e) { return e->kv_bytes; }
