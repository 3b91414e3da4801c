// test_kvcache.c — the paged KV cache: the page bookkeeping (runtime/
// kvcache.c) by itself, then the engine's use of it on random test models:
// prefix reuse against a cold prefill (full pages, and a partial page
// copied), forks, a pool too small for every
// slot (PZ_ENGINE_ENOPAGES, and recovery once pages are released), LRU
// eviction of cached pages, and batch-invariant decode (a slot's logits
// bit-identical alone and among 31 others).
#include "testutil.h"
#include "testmodel.h"
#include "engine.h"
#include "kvcache.h"
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char err[PZ_ERRLEN];

static void fill_page(int32_t *t, int v) {
    for (int i = 0; i < PZ_KV_PAGE; i++) t[i] = v * 100 + i;
}

// ---- bookkeeping alone ---------------------------------------------------------
static void test_bookkeeping(void) {
    pz_kvcache *c = pz_kvcache_create(4, 1);
    CHECK(c != NULL);
    pz_kvcache_counts k;
    int32_t t0[PZ_KV_PAGE], t1[PZ_KV_PAGE], t2[PZ_KV_PAGE];
    fill_page(t0, 0), fill_page(t1, 1), fill_page(t2, 2);
    // A sequence of two full pages, published as a chain.
    int a = pz_kvcache_alloc(c), b = pz_kvcache_alloc(c);
    CHECK(a == 0 && b == 1);
    uint64_t na = pz_kvcache_publish(c, a, 0, t0), nb = pz_kvcache_publish(c, b, na, t1);
    CHECK(na && nb && na != nb);
    uint64_t node;
    CHECK(pz_kvcache_lookup(c, 0, t0, &node) == a && node == na);
    CHECK(pz_kvcache_lookup(c, na, t1, &node) == b && node == nb);
    CHECK(pz_kvcache_lookup(c, 0, t1, NULL) == -1);  // same tokens, other context
    // An identical page published again keeps the first one's node.
    int d = pz_kvcache_alloc(c);
    CHECK(pz_kvcache_publish(c, d, 0, t0) == na);
    pz_kvcache_unref(c, d);  // not remembered: straight back to the free list
    pz_kvcache_counts_get(c, &k);
    CHECK(k.free == 2 && k.used == 2 && k.cached == 0);
    // Released (deepest first, as the engine does): both stay cached.
    pz_kvcache_unref(c, b), pz_kvcache_unref(c, a);
    pz_kvcache_counts_get(c, &k);
    CHECK(k.free == 2 && k.cached == 2 && k.used == 0);
    // Attaching takes it off the eviction list.
    CHECK(pz_kvcache_lookup(c, 0, t0, &node) == a);
    pz_kvcache_ref(c, a);
    CHECK(pz_kvcache_refcount(c, a) == 1);
    // Exhaust the free list, then evict: b (the only cached page left) goes.
    int p2 = pz_kvcache_alloc(c), p3 = pz_kvcache_alloc(c), p4 = pz_kvcache_alloc(c);
    CHECK(p2 >= 0 && p3 >= 0 && p4 == b);
    CHECK(pz_kvcache_lookup(c, na, t1, NULL) == -1);
    pz_kvcache_counts_get(c, &k);
    CHECK(k.evictions == 1 && k.used == 4 && k.free == 0);
    CHECK(pz_kvcache_alloc(c) == -1);  // everything held
    // A stale child of an evicted parent never matches a new chain: evict
    // a (node na), republish other content on the same page id, and look
    // for na's child under the new node.
    int32_t t3[PZ_KV_PAGE];
    fill_page(t3, 3);
    CHECK(pz_kvcache_publish(c, p4, na, t2) != 0);  // p4: child of na holding t2
    pz_kvcache_unref(c, p4);
    pz_kvcache_unref(c, a);  // a cached, then evicted below
    pz_kvcache_unref(c, p2);
    int again = pz_kvcache_alloc(c);  // free list first
    CHECK(again == p2);
    int ev = pz_kvcache_alloc(c);     // then the least recent cached page: p4
    CHECK(ev == p4 && pz_kvcache_lookup(c, na, t2, NULL) == -1);
    int ev2 = pz_kvcache_alloc(c);    // then a
    CHECK(ev2 == a && pz_kvcache_lookup(c, 0, t0, NULL) == -1);
    uint64_t fresh = pz_kvcache_publish(c, ev2, 0, t3);
    CHECK(fresh != na && fresh > nb);
    pz_kvcache_free(c);

    // Cache off: nothing is remembered, released pages are free at once.
    c = pz_kvcache_create(2, 0);
    a = pz_kvcache_alloc(c);
    CHECK(pz_kvcache_publish(c, a, 0, t0) == 0 && pz_kvcache_lookup(c, 0, t0, NULL) == -1);
    pz_kvcache_unref(c, a);
    pz_kvcache_counts_get(c, &k);
    CHECK(k.free == 2 && k.cached == 0);
    pz_kvcache_free(c);
    CHECK(pz_kvcache_create(0, 1) == NULL);

    // Partial lookups: the remembered child of a parent that starts with
    // the longest run of the given tokens.
    c = pz_kvcache_create(8, 1);
    int32_t u[PZ_KV_PAGE];
    a = pz_kvcache_alloc(c), b = pz_kvcache_alloc(c), d = pz_kvcache_alloc(c);
    na = pz_kvcache_publish(c, a, 0, t0);
    fill_page(u, 1);
    u[9] = -5;  // t1 and u share their first 9 tokens
    nb = pz_kvcache_publish(c, b, na, t1);
    uint64_t nd = pz_kvcache_publish(c, d, na, u);
    CHECK(nb && nd && nb != nd);
    int len = -1;
    int32_t q[PZ_KV_PAGE];
    memcpy(q, t1, sizeof q);
    q[12] = -7;  // 12 tokens of t1, 9 of u
    CHECK(pz_kvcache_lookup_partial(c, na, q, PZ_KV_PAGE, &len) == b && len == 12);
    CHECK(pz_kvcache_lookup_partial(c, na, q, 5, &len) >= 0 && len == 5);  // capped at n
    q[10] = -5, q[9] = -5;  // now 9 of t1, 10 of u
    CHECK(pz_kvcache_lookup_partial(c, na, q, PZ_KV_PAGE, &len) == d && len == 10);
    CHECK(pz_kvcache_lookup_partial(c, 0, q, PZ_KV_PAGE, &len) == -1 && len == 0);  // other parent
    q[0] = -1;
    CHECK(pz_kvcache_lookup_partial(c, na, q, PZ_KV_PAGE, &len) == -1 && len == 0);  // no first token
    // An evicted page is no longer found.
    pz_kvcache_unref(c, d);
    for (int i = 0; i < 5; i++) CHECK(pz_kvcache_alloc(c) >= 0);  // the free pages
    CHECK(pz_kvcache_alloc(c) == d);
    CHECK(pz_kvcache_lookup_partial(c, na, u, PZ_KV_PAGE, &len) == b && len == 9);
    pz_kvcache_free(c);
    c = pz_kvcache_create(2, 0);  // cache off: nothing found
    a = pz_kvcache_alloc(c);
    pz_kvcache_publish(c, a, 0, t0);
    CHECK(pz_kvcache_lookup_partial(c, 0, t0, PZ_KV_PAGE, &len) == -1);
    pz_kvcache_free(c);
}

// ---- the engine --------------------------------------------------------------------
static pz_engine *mk(const pz_model *m, int slots, int pages, int invariant) {
    pz_engine_params p = pz_engine_default_params();
    p.n_threads = 2;
    p.n_slots = slots;
    p.max_ctx = 96;
    p.kv_pages = pages;
    p.batch_invariant = invariant;
    pz_engine *e = pz_engine_create(m, p, err);
    CHECKF(e != NULL, "%s", err);
    return e;
}

static double max_rel(const float *a, const float *b, int n) {
    double d = 0, s = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)b[i]));
    }
    return d / (s > 0 ? s : 1);
}

// Prefix reuse: a second sequence sharing 2.5 pages of prompt attaches the
// 2 full pages and prefills the rest; its logits match a cold prefill in a
// fresh engine, and so do the next greedy steps: within tol, or exactly
// (tol 0) with batch_invariant.
static void test_prefix_reuse(const pz_model *m, const char *what, double tol, int invariant) {
    const int V = m->cfg.vocab, N = 45;
    int32_t a[64], bseq[64];
    uint64_t rng = 5;
    for (int i = 0; i < N; i++) a[i] = bseq[i] = (int32_t)(pz_test_rand_u64(&rng) % (uint64_t)V);
    for (int i = 40; i < N; i++) bseq[i] = (bseq[i] + 1) % V;  // diverges inside page 2
    float *warm = malloc(sizeof(float) * V * 8), *cold = malloc(sizeof(float) * V * 8);
    pz_engine *e = mk(m, 2, 0, invariant), *f = mk(m, 1, 0, invariant);
    if (!e || !f) goto out;
    CHECKF(pz_engine_prefill(e, 0, a, N, NULL, 0, err) == 0, "%s", err);
    pz_engine_slot_reset(e, 0);
    pz_kv_stats st;
    pz_engine_kv_stats(e, &st);
    CHECK(st.pages_cached == 2 && st.pages_used == 0);  // the 2 full pages stay
    int got = pz_engine_prefix_attach(e, 1, bseq, N);
    CHECKF(got == 32, "attached %d tokens, expected 32", got);
    CHECKF(pz_engine_prefill(e, 1, bseq + got, N - got, warm, 0, err) == 0, "%s", err);
    CHECKF(pz_engine_prefill(f, 0, bseq, N, cold, 0, err) == 0, "%s", err);
    double worst = max_rel(warm, cold, V);
    int32_t tw = pz_argmax(warm, V), tc = pz_argmax(cold, V);
    for (int s = 0; s < 6 && tw == tc; s++) {
        CHECK(pz_engine_decode(e, (int[]){1}, &tw, 1, warm, err) == 0);
        CHECK(pz_engine_decode(f, (int[]){0}, &tc, 1, cold, err) == 0);
        worst = fmax(worst, max_rel(warm, cold, V));
        tw = pz_argmax(warm, V), tc = pz_argmax(cold, V);
    }
    CHECKF(tw == tc, "%s: greedy tokens diverge after prefix reuse", what);
    CHECKF(worst <= tol, "%s%s: prefix reuse vs cold prefill: %.3g > %.3g", what,
           invariant ? " batch-invariant" : "", worst, tol);
    printf("  %s%s: prefix reuse vs cold prefill, 7 steps: max rel diff %.2e (tol %.0e)\n", what,
           invariant ? " batch-invariant" : "", worst, tol);
    pz_engine_kv_stats(e, &st);
    CHECK(st.prefix_hits == 2 && st.prefix_tokens == 32);
    // One token must stay to prefill: a prompt of exactly 2 pages attaches
    // the first and 15 tokens of the second (copied: a partial page).
    CHECK(pz_engine_prefix_attach(e, 0, a, 32) == 31);
    // No match: nothing attached.
    int32_t z[20] = {0};
    z[0] = (a[0] + 1) % V;
    CHECK(pz_engine_prefix_attach(e, 0, z, 20) == 0 && pz_engine_slot_len(e, 0) == 0);
out:
    pz_engine_free(e);
    pz_engine_free(f);
    free(warm), free(cold);
}

// Partial-page reuse: a prompt that shares 1 page and 9 tokens with a
// released one attaches the page and a copy of the 9 tokens' part of the
// next; its logits, and the next greedy steps, equal a cold prefill's bit
// for bit (batch_invariant). The copy leaves the remembered page as it
// was: the first prompt, attached again, still matches a cold run.
static void test_partial_reuse(const pz_model *m, const char *what) {
    const int V = m->cfg.vocab, N = 45, SHARED = 25;
    int32_t a[64], bseq[64];
    uint64_t rng = 11;
    for (int i = 0; i < N; i++) a[i] = bseq[i] = (int32_t)(pz_test_rand_u64(&rng) % (uint64_t)V);
    for (int i = SHARED; i < N; i++) bseq[i] = (bseq[i] + 1) % V;  // diverges inside page 1
    float *warm = malloc(sizeof(float) * V), *cold = malloc(sizeof(float) * V);
    pz_engine *e = mk(m, 2, 0, 1), *f = mk(m, 1, 0, 1);
    if (!e || !f) goto out;
    CHECKF(pz_engine_prefill(e, 0, a, N, NULL, 0, err) == 0, "%s", err);
    pz_engine_slot_reset(e, 0);
    int got = pz_engine_prefix_attach(e, 1, bseq, N);
    CHECKF(got == SHARED, "%s: attached %d tokens, expected %d", what, got, SHARED);
    pz_kv_stats st;
    pz_engine_kv_stats(e, &st);
    CHECK(st.prefix_hits == 2 && st.prefix_tokens == SHARED && st.pages_used == 2);
    for (int round = 0; round < 2; round++) {  // b after the copy, then a again
        const int32_t *t = round ? a : bseq;
        int slot = round ? 0 : 1;
        if (round) {
            got = pz_engine_prefix_attach(e, 0, a, N);
            CHECKF(got == 32, "%s: attached %d tokens of the first prompt, expected 32", what, got);
            pz_engine_slot_reset(f, 0);
        }
        CHECKF(pz_engine_prefill(e, slot, t + got, N - got, warm, 0, err) == 0, "%s", err);
        CHECKF(pz_engine_prefill(f, 0, t, N, cold, 0, err) == 0, "%s", err);
        int same = !memcmp(warm, cold, sizeof(float) * V);
        for (int s = 0; s < 6 && same; s++) {
            int32_t tok = pz_argmax(warm, V);
            CHECK(pz_engine_decode(e, (int[]){slot}, &tok, 1, warm, err) == 0);
            CHECK(pz_engine_decode(f, (int[]){0}, &tok, 1, cold, err) == 0);
            same = !memcmp(warm, cold, sizeof(float) * V);
        }
        CHECKF(same, "%s: partial-page reuse (round %d) differs from a cold prefill", what, round);
    }
    printf("  %s: partial-page prefix reuse = cold prefill, bit for bit\n", what);
out:
    pz_engine_free(e);
    pz_engine_free(f);
    free(warm), free(cold);
}

// A fork continues exactly like its source; the source's partial page is
// copied, so the two diverge without touching each other.
static void test_fork(const pz_model *m) {
    const int V = m->cfg.vocab, N = 21;
    int32_t t[32];
    uint64_t rng = 8;
    for (int i = 0; i < N; i++) t[i] = (int32_t)(pz_test_rand_u64(&rng) % (uint64_t)V);
    float *l0 = malloc(sizeof(float) * V * 2), *l1 = malloc(sizeof(float) * V);
    pz_engine *e = mk(m, 3, 0, 1);
    if (!e) goto out;
    CHECK(pz_engine_prefill(e, 0, t, N, NULL, 0, err) == 0);
    CHECKF(pz_engine_slot_fork(e, 1, 0, err) == 0, "%s", err);
    CHECK(pz_engine_slot_len(e, 1) == N);
    pz_kv_stats st;
    pz_engine_kv_stats(e, &st);
    CHECK(st.pages_used == 3);  // one shared full page, two partial ones
    int32_t x = 3, y = 4;
    CHECK(pz_engine_decode(e, (int[]){0, 1}, (int32_t[]){x, x}, 2, l0, err) == 0);
    CHECK(memcmp(l0, l0 + V, sizeof(float) * V) == 0);
    // Diverge: slot 1 takes another token; slot 0 must be unaffected, as a
    // fresh fork of nothing-changed slot 0 (slot 2) shows.
    CHECK(pz_engine_decode(e, (int[]){1}, &y, 1, l1, err) == 0);
    CHECKF(pz_engine_slot_fork(e, 2, 0, err) == 0, "%s", err);
    CHECK(pz_engine_decode(e, (int[]){0, 2}, (int32_t[]){y, y}, 2, l0, err) == 0);
    CHECK(memcmp(l0, l0 + V, sizeof(float) * V) == 0);
    CHECK(pz_engine_slot_fork(e, 1, 1, err) == -1);
out:
    pz_engine_free(e);
    free(l0), free(l1);
}

// A pool of 5 pages for 3 slots: the third long prompt finds none left,
// gets PZ_ENGINE_ENOPAGES with its slot unchanged, and succeeds once a
// finished sequence's pages are free. Cached pages are evicted before that
// error is ever returned.
static void test_small_pool(const pz_model *m) {
    const int V = m->cfg.vocab;
    int32_t t[64];
    uint64_t rng = 11;
    for (int i = 0; i < 64; i++) t[i] = (int32_t)(pz_test_rand_u64(&rng) % (uint64_t)V);
    pz_engine *e = mk(m, 3, 5, 0);
    if (!e) return;
    CHECK(pz_engine_pages_needed(e, 0, 33) == 3);
    CHECK(pz_engine_prefill(e, 0, t, 33, NULL, 0, err) == 0);  // 3 pages
    CHECK(pz_engine_prefill(e, 1, t + 5, 20, NULL, 0, err) == 0);  // 2 pages
    err[0] = 0;
    CHECK(pz_engine_prefill(e, 2, t, 4, NULL, 0, err) == PZ_ENGINE_ENOPAGES && strstr(err, "KV cache full"));
    CHECK(pz_engine_slot_len(e, 2) == 0);
    // Decode of slot 1 fits in its page; slot 0 at 33 tokens has room too.
    float *lg = malloc(sizeof(float) * V * 2);
    CHECK(pz_engine_decode(e, (int[]){0, 1}, (int32_t[]){1, 2}, 2, lg, err) == 0);
    pz_engine_slot_reset(e, 0);  // 2 full pages cached, 1 free
    pz_kv_stats st;
    pz_engine_kv_stats(e, &st);
    CHECK(st.pages_free == 1 && st.pages_cached == 2 && st.pages_used == 2);
    CHECKF(pz_engine_prefill(e, 2, t + 10, 40, NULL, 0, err) == 0, "%s", err);  // evicts both
    pz_engine_kv_stats(e, &st);
    CHECK(st.evictions == 2 && st.pages_cached == 0 && st.pages_free == 0);
    free(lg);
    pz_engine_free(e);
}

// Decode with batch_invariant: slot 0's logits are the same bits alone and
// among 31 other sequences of other lengths.
static void test_batch_invariance(const pz_model *m, const char *what) {
    const int V = m->cfg.vocab, S = 32;
    pz_engine *e = mk(m, S + 1, 0, 1);
    if (!e) return;
    uint64_t rng = 21;
    int32_t t[40];
    for (int s = 0; s < S; s++) {
        int n = 5 + s % 23;
        for (int i = 0; i < n; i++) t[i] = (int32_t)(pz_test_rand_u64(&rng) % (uint64_t)V);
        CHECK(pz_engine_prefill(e, s, t, n, NULL, 0, err) == 0);
    }
    CHECK(pz_engine_slot_fork(e, S, 0, err) == 0);  // slot 32 = a copy of slot 0
    float *alone = malloc(sizeof(float) * V), *all = malloc(sizeof(float) * V * S);
    int slots[33];
    int32_t toks[33];
    for (int s = 0; s <= S; s++) slots[s] = s, toks[s] = (int32_t)((s * 7) % V);
    toks[S] = toks[0];
    CHECK(pz_engine_decode(e, slots, toks, S, all, err) == 0);            // slot 0 among 31 others
    CHECK(pz_engine_decode(e, &slots[S], &toks[S], 1, alone, err) == 0);  // its copy, alone
    CHECKF(memcmp(alone, all, sizeof(float) * V) == 0, "%s: decode is not batch-invariant (%.3g)", what,
           max_rel(alone, all, V));
    printf("  %s: decode among 32 = alone, bit for bit\n", what);
    free(alone), free(all);
    pz_engine_free(e);
}

// pz_engine_prefill_many with batch_invariant: each sequence's logits, and
// the decode after it, are the same bits as its own pz_engine_prefill in
// another engine; the sequences span several blocks of rows, one of them a
// single token, and a second call continues sequences already in the cache.
static void test_prefill_many(const pz_model *m, const char *what) {
    const int V = m->cfg.vocab;
    pz_engine *e = mk(m, 3, 0, 1), *f = mk(m, 3, 0, 1);
    float *many = malloc(sizeof(float) * V * 3), *one = malloc(sizeof(float) * V);
    if (!e || !f || !many || !one) goto out;
    uint64_t rng = 31;
    int32_t t[3][96];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 96; i++) t[s][i] = (int32_t)(pz_test_rand_u64(&rng) % (uint64_t)V);
    int slots[3] = {0, 1, 2};
    const int rounds[2][3] = {{45, 1, 20}, {1, 30, 40}};  // 66 then 71 rows: two blocks each
    const int want[2][3] = {{1, 0, 1}, {1, 1, 1}};
    int len[3] = {0, 0, 0};
    for (int r = 0; r < 2; r++) {
        int32_t buf[200];
        int k = 0;
        for (int s = 0; s < 3; s++)
            for (int i = 0; i < rounds[r][s]; i++) buf[k++] = t[s][len[s] + i];
        CHECKF(pz_engine_prefill_many(e, 3, slots, buf, rounds[r], many, want[r], err) == 0, "%s", err);
        for (int s = 0; s < 3; s++) {
            CHECKF(pz_engine_prefill(f, s, t[s] + len[s], rounds[r][s], one, 0, err) == 0, "%s", err);
            len[s] += rounds[r][s];
            CHECK(pz_engine_slot_len(e, s) == len[s]);
            if (want[r][s])
                CHECKF(memcmp(one, many + (size_t)s * V, sizeof(float) * V) == 0,
                       "%s: round %d sequence %d: batched prefill differs from alone (%.3g)", what, r, s,
                       max_rel(many + (size_t)s * V, one, V));
        }
    }
    int32_t nxt[3] = {1, 2, 3};
    float *dec = malloc(sizeof(float) * V * 3);
    CHECK(dec && pz_engine_decode(e, slots, nxt, 3, many, err) == 0 &&
          pz_engine_decode(f, slots, nxt, 3, dec, err) == 0);
    if (dec) CHECKF(memcmp(many, dec, sizeof(float) * V * 3) == 0, "%s: decode after a batched prefill differs", what);
    free(dec);
    // Errors: a slot twice, too many tokens, a token outside the vocabulary.
    CHECK(pz_engine_prefill_many(e, 2, (int[]){0, 0}, t[0], (int[]){1, 1}, NULL, NULL, err) == -1);
    CHECK(pz_engine_prefill_many(e, 1, slots, t[0], (int[]){600}, NULL, NULL, err) == -1);
    int32_t bad = V;
    CHECK(pz_engine_prefill_many(e, 1, slots, &bad, (int[]){1}, NULL, NULL, err) == -1 && pz_engine_slot_len(e, 0) == len[0] + 1);
    printf("  %s: batched prefill of 3 sequences = each alone, bit for bit\n", what);
out:
    free(many), free(one);
    pz_engine_free(e);
    pz_engine_free(f);
}

int main(void) {
    test_bookkeeping();
    for (int w = 0; w < 2; w++) {
        pz_dt wt = w ? PZ_DT_BF16 : PZ_DT_F32;
        pz_config c;
        pz_testmodel_config(&c, 0);
        pz_model *m = pz_testmodel_random(&c, wt, 77, err);
        CHECKF(m != NULL, "%s", err);
        if (!m) continue;
        const char *what = w ? "bf16" : "f32";
        // fp32 weights: the warm and cold passes differ only in summation
        // order; bf16: prefill products of more than 8 rows round
        // activations to bf16 (engine.h), and the warm pass prefills 13
        // rows where the cold one prefilled 45, so their rounding differs.
        test_prefix_reuse(m, what, w ? 3e-2 : 1e-5, 0);
        // batch_invariant: prefill in fixed blocks of rows, so the warm
        // pass's rows equal the cold pass's bit for bit.
        test_prefix_reuse(m, what, 0, 1);
        test_partial_reuse(m, what);
        test_fork(m);
        test_small_pool(m);
        test_batch_invariance(m, what);
        test_prefill_many(m, what);
        pz_model_free(m);
    }
    return pz_test_finish("test_kvcache");
}
