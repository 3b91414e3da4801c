// tokenizer_encode.c — text to ids and back. Encoding: added tokens are cut
// out first (longest match), each stretch between them runs through the
// pre-tokenizer steps (PCRE2 splits that keep matches and gaps), and each
// final piece is merged by BPE from one symbol per byte. All scratch state
// lives in the call, so one tokenizer may be shared by threads.
//
// Ground truth is the Hugging Face `tokenizers` library; the places where it
// sets the behaviour are noted (merge order, bytes without a token, added
// tokens).
#include "tokenizer_impl.h"
#include "common.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

// ---- encoding ------------------------------------------------------------------

typedef struct { int32_t id, prev, next; } bpe_sym;
typedef struct { int32_t rank, pos, left, right, res; } bpe_cand;

typedef struct {
    const pz_tokenizer *t;
    int32_t *ids;
    size_t n, cap;
    bpe_sym *sym;
    bpe_cand *heap;
    size_t scratch_cap;            // symbols; the heap holds 3x
    char *buf;                     // prefix-space copies and mapped pieces
    size_t buf_cap;
    pcre2_match_data *md;
    char *err;
} enc_ctx;

static int push_id(enc_ctx *c, int32_t id) {
    if (c->n == c->cap) {
        size_t nc = c->cap * 2;
        int32_t *p = realloc(c->ids, nc * sizeof *p);
        if (!p) return pz_err(c->err, "tokenizer: out of memory");
        c->ids = p;
        c->cap = nc;
    }
    c->ids[c->n++] = id;
    return 0;
}

static int grow_buf(enc_ctx *c, size_t n) {
    if (n <= c->buf_cap) return 0;
    size_t nc = c->buf_cap ? c->buf_cap : 256;
    while (nc < n) nc *= 2;
    char *p = realloc(c->buf, nc);
    if (!p) return pz_err(c->err, "tokenizer: out of memory");
    c->buf = p;
    c->buf_cap = nc;
    return 0;
}

static inline int cand_less(const bpe_cand *a, const bpe_cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(bpe_cand *h, size_t *n, bpe_cand v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&v, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = v;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, s = i;
        const bpe_cand *best = &v;
        if (l < m && cand_less(&h[l], best)) { s = l; best = &h[l]; }
        if (r < m && cand_less(&h[r], best)) s = r;
        if (s == i) break;
        h[i] = h[s];
        i = s;
    }
    if (m) h[i] = v;
    return top;
}

static void try_pair(const pz_tokenizer *t, bpe_cand *h, size_t *hn, const bpe_sym *sym, int32_t pos) {
    int32_t nx = sym[pos].next, rank, res;
    if (nx >= 0 && merge_find(t, sym[pos].id, sym[nx].id, &rank, &res))
        heap_push(h, hn, (bpe_cand){rank, pos, sym[pos].id, sym[nx].id, res});
}

// BPE over one pre-tokenized piece: start from one symbol per byte and merge
// the adjacent pair of lowest rank, leftmost first, until none is left (the
// order HF's BPE::merge_word uses).
static int bpe_piece(enc_ctx *c, const uint8_t *s, size_t n) {
    const pz_tokenizer *t = c->t;
    if (n == 0) return 0;
    if (t->ignore_merges) {
        if (grow_buf(c, n * 2)) return -1;
        size_t k = 0;
        for (size_t i = 0; i < n; i++) k += utf8_put(byte_to_cp(s[i]), c->buf + k);
        int32_t id = vocab_lookup(t, c->buf, k);
        if (id >= 0 && t->attr[id] == TOK_NORMAL) return push_id(c, id);
    }
    if (n == 1 && t->byte_id[s[0]] >= 0) return push_id(c, t->byte_id[s[0]]);
    if (n > c->scratch_cap) {
        size_t nc = c->scratch_cap ? c->scratch_cap : 64;
        while (nc < n) nc *= 2;
        free(c->sym);
        free(c->heap);
        c->sym = malloc(nc * sizeof *c->sym);
        c->heap = malloc(3 * nc * sizeof *c->heap);
        c->scratch_cap = c->sym && c->heap ? nc : 0;
        if (!c->scratch_cap) return pz_err(c->err, "tokenizer: out of memory");
    }
    bpe_sym *sym = c->sym;
    bpe_cand *h = c->heap;
    size_t hn = 0;
    int32_t ns = 0;
    int last_unk = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[s[i]];
        if (id < 0) {  // a byte without a token: unk, or dropped (see bpe_unk)
            if (t->bpe_unk < 0 || (t->fuse_unk && last_unk)) continue;
            id = t->bpe_unk;
            last_unk = 1;
        } else {
            last_unk = 0;
        }
        sym[ns] = (bpe_sym){id, ns - 1, ns + 1};
        ns++;
    }
    if (ns == 0) return 0;
    sym[ns - 1].next = -1;
    for (int32_t i = 0; i + 1 < ns; i++) try_pair(t, h, &hn, sym, i);
    while (hn) {
        bpe_cand m = heap_pop(h, &hn);
        bpe_sym *L = &sym[m.pos];
        // stale if either side has changed since the candidate was queued
        if (L->id != m.left || L->next < 0 || sym[L->next].id != m.right) continue;
        bpe_sym *R = &sym[L->next];
        L->id = m.res;
        L->next = R->next;
        if (R->next >= 0) sym[R->next].prev = m.pos;
        R->id = -1;
        if (L->prev >= 0) try_pair(t, h, &hn, sym, L->prev);
        try_pair(t, h, &hn, sym, m.pos);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next)
        if (push_id(c, sym[i].id)) return -1;
    return 0;
}

static int run_step(enc_ctx *c, int step, const uint8_t *s, size_t n);

// Splits s by re; every match and every gap between matches goes on to the
// next step. Bytes that are not valid UTF-8 never match (PCRE2_MATCH_INVALID_UTF),
// so they travel in gaps and are still encoded through the byte alphabet.
static int split_by(enc_ctx *c, int step, const pcre2_code *re, const uint8_t *s, size_t n) {
    size_t off = 0, last = 0;
    uint32_t opts = 0;
    while (off < n) {
        int rc = pcre2_match(re, s, n, off, opts, c->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !opts) {
            opts = PCRE2_NO_JIT;  // pathological input: retry in the interpreter
            continue;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return pz_err(c->err, "tokenizer: regex match failed at byte %zu: %s", off, (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) {  // empty match: step over one character
            uint32_t cp;
            size_t k = ms < n ? utf8_get(s + ms, n - ms, &cp) : 1;
            off = ms + (k ? k : 1);
            continue;
        }
        if (ms > last && run_step(c, step + 1, s + last, ms - last)) return -1;
        if (run_step(c, step + 1, s + ms, me - ms)) return -1;
        last = off = me;
    }
    if (last < n && run_step(c, step + 1, s + last, n - last)) return -1;
    return 0;
}

static int run_step(enc_ctx *c, int step, const uint8_t *s, size_t n) {
    const pz_tokenizer *t = c->t;
    if (n == 0) return 0;
    if (step == t->n_steps) return bpe_piece(c, s, n);
    const tok_pre_step *st = &t->steps[step];
    switch (st->kind) {
    case PRE_DIGITS:
        return split_by(c, step, st->individual ? t->re_digit : t->re_digits, s, n);
    case PRE_SPLIT:
        return split_by(c, step, st->re, s, n);
    case PRE_BYTELEVEL:
        if (st->prefix_space && s[0] != ' ') {
            // HF prepends a space to every piece that does not start with one
            uint8_t *copy = malloc(n + 1);
            if (!copy) return pz_err(c->err, "tokenizer: out of memory");
            copy[0] = ' ';
            memcpy(copy + 1, s, n);
            int rc = st->re ? split_by(c, step, st->re, copy, n + 1) : run_step(c, step + 1, copy, n + 1);
            free(copy);
            return rc;
        }
        return st->re ? split_by(c, step, st->re, s, n) : run_step(c, step + 1, s, n);
    }
    return pz_err(c->err, "tokenizer: bad pre-tokenizer step");
}

// Longest added token starting at s (n bytes left), or -1.
static int32_t match_added(const pz_tokenizer *t, const uint8_t *s, size_t n, int parse_special) {
    for (int32_t i = t->added_start[s[0]]; i < t->added_start[s[0] + 1]; i++) {
        int32_t id = t->added[i];
        size_t len = t->piece_len[id];
        if (!parse_special && t->attr[id] == TOK_CONTROL) continue;
        if (len <= n && memcmp(t->piece_arena + t->piece_off[id], s, len) == 0) return id;
    }
    return -1;
}

int pz_tokenizer_encode(const pz_tokenizer *t, const char *text, size_t len,
                        int parse_special, int32_t **ids, char *err) {
    *ids = NULL;
    if (len > (size_t)INT_MAX) return pz_err(err, "tokenizer: text of %zu bytes is too long", len);
    if (!text && len) return pz_err(err, "tokenizer: NULL text");
    enc_ctx c = {.t = t, .err = err, .cap = len / 3 + 16};
    c.ids = malloc(c.cap * sizeof *c.ids);
    c.md = pcre2_match_data_create(32, NULL);
    int rc = -1;
    if (!c.ids || !c.md) {
        pz_err(err, "tokenizer: out of memory");
        goto done;
    }
    const uint8_t *s = (const uint8_t *)text;
    size_t start = 0;
    if (t->n_added && (parse_special || t->has_user_added)) {
        for (size_t i = 0; i < len;) {
            int32_t id = t->added_start[s[i]] < t->added_start[s[i] + 1]
                             ? match_added(t, s + i, len - i, parse_special) : -1;
            if (id < 0) {
                i++;
                continue;
            }
            if (run_step(&c, 0, s + start, i - start) || push_id(&c, id)) goto done;
            i += t->piece_len[id];
            start = i;
        }
    }
    if (run_step(&c, 0, s + start, len - start)) goto done;
    rc = (int)c.n;
    *ids = c.ids;
    c.ids = NULL;
done:
    free(c.ids);
    free(c.sym);
    free(c.heap);
    free(c.buf);
    pcre2_match_data_free(c.md);
    return rc;
}

// ---- decoding ------------------------------------------------------------------

const char *pz_tokenizer_token_bytes(const pz_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || t->attr[id] == TOK_HOLE) return NULL;
    if (len) *len = t->bytes_len[id];
    return t->bytes_arena + t->bytes_off[id];
}

const char *pz_tokenizer_piece(const pz_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab || t->attr[id] == TOK_HOLE) return NULL;
    return t->piece_arena + t->piece_off[id];
}

static int skipped(const pz_tokenizer *t, int32_t id, int skip_special) {
    return id < 0 || id >= t->n_vocab || t->attr[id] == TOK_HOLE ||
           (skip_special && t->attr[id] == TOK_CONTROL);
}

char *pz_tokenizer_decode(const pz_tokenizer *t, const int32_t *ids, size_t n, int skip_special) {
    size_t total = 1;
    for (size_t i = 0; i < n; i++)
        if (!skipped(t, ids[i], skip_special)) total += t->bytes_len[ids[i]];
    char *out = malloc(total), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (skipped(t, ids[i], skip_special)) continue;
        memcpy(o, t->bytes_arena + t->bytes_off[ids[i]], t->bytes_len[ids[i]]);
        o += t->bytes_len[ids[i]];
    }
    *o = 0;
    return out;
}

// Bytes at the end of s[0..n) that begin a UTF-8 character still missing its
// last bytes (0 if none). Anything else, ill-formed or not, is let through, so
// the concatenated stream always equals the whole decode.
static size_t incomplete_tail(const uint8_t *a, size_t na, const uint8_t *b, size_t nb) {
    size_t n = na + nb;
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        size_t i = n - k;
        uint8_t c = i < na ? a[i] : b[i - na];
        if ((c & 0xC0) == 0x80) continue;
        size_t need = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        return need > k ? k : 0;
    }
    return 0;
}

size_t pz_tokenizer_stream(const pz_tokenizer *t, pz_utf8_stream *s, int32_t id,
                           int skip_special, char *out, size_t cap) {
    const uint8_t *b = (const uint8_t *)"";
    size_t nb = 0;
    if (!skipped(t, id, skip_special)) {
        b = (const uint8_t *)t->bytes_arena + t->bytes_off[id];
        nb = t->bytes_len[id];
    }
    size_t np = (size_t)s->n_pending;
    const uint8_t *pend = (const uint8_t *)s->pending;
    size_t hold = incomplete_tail(pend, np, b, nb);
    size_t emit = np + nb - hold;
    if (emit > cap) return 0;  // see the header: the state is left unchanged
    uint8_t keep[4];
    for (size_t k = 0; k < hold; k++) {
        size_t i = emit + k;
        keep[k] = i < np ? pend[i] : b[i - np];
    }
    size_t from_pending = emit < np ? emit : np;
    memcpy(out, pend, from_pending);
    if (emit > np) memcpy(out + np, b, emit - np);
    memcpy(s->pending, keep, hold);
    s->n_pending = (int)hold;
    return emit;
}

size_t pz_tokenizer_stream_flush(pz_utf8_stream *s, char *out, size_t cap) {
    size_t n = (size_t)s->n_pending;
    if (n > cap) return 0;
    memcpy(out, s->pending, n);
    s->n_pending = 0;
    return n;
}

