// test_engine_graph.c — the engine's decode through captured graphs
// (engine.h "Decode graphs"), host side, on the CPU: a fake graph backend
// wraps the CPU backend's ops (through pz_engine_params.on_backend) and
// holds the engine to the contract a CUDA graph imposes — every pass of one
// graph makes the same op calls on the same buffers with the same sizes
// (host data aside) — by hashing each op call of an armed pass and
// comparing a replay's calls with the captured pass's, failing at
// synchronize when they differ, as the CUDA backend does. The ops still run
// eagerly on the CPU, so the logits of graph decode must equal those of an
// engine without graphs, bit for bit (batch_invariant: padding rows change
// no real row). Covers: bucket choice, padding with growing page tables
// and batch sizes that change from step to step, and the fallback when a
// capture breaks (the step reruns eagerly, the bucket stays eager).
#include "testutil.h"
#include "testmodel.h"
#include "common.h"
#include "engine.h"

#include <stdlib.h>
#include <string.h>

static char err[PZ_ERRLEN];

// ---- the fake graph backend ----------------------------------------------------------
#define MAX_CALLS 4096
struct pz_graph {
    int runs;      // passes completed: 0 warm-up next, 1 capture next, >= 2 replays
    int broken;
    uint64_t cap[MAX_CALLS];
    int n_cap;
};

static struct {
    pz_backend orig;       // the CPU backend's ops
    pz_graph *armed;
    uint64_t cur[MAX_CALLS];
    int n_cur;
    int break_capture;     // 1: the next capture fails (a backend that cannot capture)
    int n_replays, n_captures, n_warmups, n_refused;
} F;

static uint64_t mix(uint64_t h, uint64_t v) {
    for (int i = 0; i < 8; i++) h = (h ^ ((v >> (8 * i)) & 0xff)) * 1099511628211ull;
    return h;
}
#define U(p) ((uint64_t)(uintptr_t)(p))
static void rec(int op, const uint64_t *v, int n) {
    if (!F.armed) return;
    uint64_t h = mix(14695981039346656037ull, (uint64_t)op);
    for (int i = 0; i < n; i++) h = mix(h, v[i]);
    if (F.n_cur < MAX_CALLS) F.cur[F.n_cur++] = h;
}
#define REC(op, ...) rec(op, (const uint64_t[]){__VA_ARGS__}, \
                         (int)(sizeof((const uint64_t[]){__VA_ARGS__}) / sizeof(uint64_t)))

static int f_copy(pz_backend *b, void *dst, const void *src, size_t bytes, pz_copy_kind k, char *e) {
    if (k == PZ_COPY_H2D) REC(1, U(dst), bytes);       // host data may change
    else if (k == PZ_COPY_D2H) REC(2, U(src), bytes);  // into any host buffer
    else REC(3, U(dst), U(src), bytes);
    return F.orig.copy(b, dst, src, bytes, k, e);
}
static int f_matmul(pz_backend *b, float *y, int ldy, const float *x, int ldx, pz_dt xt, const pz_weight *w,
                    int M, int acc, char *e) {
    REC(4, U(y), (uint64_t)ldy, U(x), (uint64_t)ldx, (uint64_t)xt, U(w->data), (uint64_t)M, (uint64_t)acc);
    return F.orig.matmul(b, y, ldy, x, ldx, xt, w, M, acc, e);
}
static void f_rmsnorm(pz_backend *b, float *y, const float *x, const float *w, int M, int n, float eps) {
    REC(5, U(y), U(x), U(w), (uint64_t)M, (uint64_t)n);
    F.orig.rmsnorm(b, y, x, w, M, n, eps);
}
static void f_rope(pz_backend *b, float *x, int ld, const int32_t *pos, int M, int nh, int hd, const float *inv) {
    REC(6, U(x), (uint64_t)ld, U(pos), (uint64_t)M, (uint64_t)nh, (uint64_t)hd, U(inv));
    F.orig.rope(b, x, ld, pos, M, nh, hd, inv);
}
static int f_kv_write(pz_backend *b, const pz_kv_write *w, char *e) {
    REC(7, U(w->k_pool), U(w->v_pool), U(w->kv), (uint64_t)w->ld, U(w->row_page), U(w->pos), (uint64_t)w->R);
    return F.orig.kv_write(b, w, e);
}
static int f_attention(pz_backend *b, const pz_attn_seq *s, int n_seq, int nh, int nkv, int hd, char *e) {
    // Descriptors are host data a graph refreshes, except the buffers they
    // name and the total of query rows (the kernel's grid).
    long rows = 0;
    for (int i = 0; i < n_seq; i++) {
        rows += s[i].n_q;
        REC(8, U(s[i].q), U(s[i].out), U(s[i].k), U(s[i].v), U(s[i].pages), (uint64_t)s[i].q_ld,
            (uint64_t)s[i].out_ld);
    }
    REC(9, (uint64_t)n_seq, (uint64_t)rows, (uint64_t)nh, (uint64_t)nkv, (uint64_t)hd);
    return F.orig.attention(b, s, n_seq, nh, nkv, hd, e);
}
static void f_swiglu(pz_backend *b, float *h, int ldh, const float *g, const float *u, int ld, int M, int n) {
    REC(10, U(h), (uint64_t)ldh, U(g), U(u), (uint64_t)ld, (uint64_t)M, (uint64_t)n);
    F.orig.swiglu(b, h, ldh, g, u, ld, M, n);
}
static void f_add(pz_backend *b, float *y, const float *x, size_t n) {
    REC(11, U(y), U(x), n);
    F.orig.add(b, y, x, n);
}
static int f_embed(pz_backend *b, float *y, const pz_weight *t, const int32_t *ids, int M, char *e) {
    REC(12, U(y), U(t->data), U(ids), (uint64_t)M);
    return F.orig.embed(b, y, t, ids, M, e);
}
static int f_synchronize(pz_backend *b, char *e) {
    int rc = F.orig.synchronize(b, e);
    pz_graph *g = F.armed;
    if (!g) return rc;
    F.armed = NULL;
    if (rc) return rc;
    if (g->runs == 0) {
        F.n_warmups++;
    } else if (g->runs == 1) {
        if (F.break_capture) {
            g->broken = 1;
            if (e) snprintf(e, PZ_ERRLEN, "fake graph: capture failed");
            return -1;
        }
        memcpy(g->cap, F.cur, sizeof(uint64_t) * (size_t)F.n_cur);
        g->n_cap = F.n_cur;
        F.n_captures++;
    } else {
        if (F.n_cur != g->n_cap || memcmp(F.cur, g->cap, sizeof(uint64_t) * (size_t)F.n_cur)) {
            g->broken = 1;
            F.n_refused++;
            if (e) snprintf(e, PZ_ERRLEN, "fake graph: replay differs from the capture");
            return -1;
        }
        F.n_replays++;
    }
    g->runs++;
    return 0;
}
static pz_graph *f_graph_create(pz_backend *b, size_t stage_bytes, char *e) {
    (void)b, (void)stage_bytes, (void)e;
    return calloc(1, sizeof(pz_graph));
}
static void f_graph_free(pz_backend *b, pz_graph *g) {
    (void)b;
    if (F.armed == g) F.armed = NULL;
    free(g);
}
static int f_graph_begin(pz_backend *b, pz_graph *g, char *e) {
    (void)b;
    if (F.armed || g->broken) {
        if (e) snprintf(e, PZ_ERRLEN, "fake graph: armed twice or broken");
        return -1;
    }
    F.armed = g;
    F.n_cur = 0;
    return 0;
}

static void install(pz_backend *b, void *ctx) {
    (void)ctx;
    F.orig = *b;
    b->copy = f_copy, b->matmul = f_matmul, b->rmsnorm = f_rmsnorm, b->rope = f_rope;
    b->kv_write = f_kv_write, b->attention = f_attention, b->swiglu = f_swiglu, b->add = f_add;
    b->embed = f_embed, b->synchronize = f_synchronize;
    b->graph_create = f_graph_create, b->graph_free = f_graph_free, b->graph_begin = f_graph_begin;
}

// ---- tests ---------------------------------------------------------------------------
static void test_buckets(void) {
    CHECK(pz_engine_graph_bucket(1, 64, 512) == 1);
    CHECK(pz_engine_graph_bucket(2, 64, 512) == 2);
    CHECK(pz_engine_graph_bucket(3, 64, 512) == 4);
    CHECK(pz_engine_graph_bucket(5, 64, 512) == 8);
    CHECK(pz_engine_graph_bucket(33, 64, 512) == 64);
    CHECK(pz_engine_graph_bucket(64, 64, 512) == 64);
    CHECK(pz_engine_graph_bucket(65, 128, 512) == 0);  // above the largest bucket: eager
    CHECK(pz_engine_graph_bucket(0, 64, 512) == 0);
    CHECK(pz_engine_graph_bucket(3, 3, 512) == 3);     // capped by the slots (no padding)
    CHECK(pz_engine_graph_bucket(5, 6, 512) == 6);
    CHECK(pz_engine_graph_bucket(9, 12, 10) == 10);    // capped by the scratch rows
    CHECK(pz_engine_graph_bucket(2, 8, 1) == 0);       // cannot hold the batch
}

static pz_engine *mk(const pz_model *m, int graphs) {
    pz_engine_params p = pz_engine_default_params();
    p.n_threads = 2;
    p.n_slots = 6;
    p.max_ctx = 64;
    p.batch_invariant = 1;
    p.graphs = graphs;
    if (graphs) p.on_backend = install;
    pz_engine *e = pz_engine_create(m, p, err);
    CHECKF(e != NULL, "%s", err);
    return e;
}

// Prefills the six slots on both engines, then decodes a schedule of
// batches whose sizes change (buckets 1, 2, 4, 6; padded and not) while
// the sequences cross page boundaries; logits must be identical.
static void run_schedule(const pz_model *m, int break_capture) {
    memset(&F, 0, sizeof F);
    F.break_capture = break_capture;
    pz_engine *ref = mk(m, 0), *gr = mk(m, 1);
    if (!ref || !gr) {
        pz_engine_free(ref), pz_engine_free(gr);
        return;
    }
    const int V = m->cfg.vocab;
    uint64_t rng = 77;
    static const int plen[6] = {3, 7, 12, 15, 17, 30};
    int32_t toks[32];
    for (int s = 0; s < 6; s++) {
        for (int i = 0; i < plen[s]; i++) toks[i] = (int32_t)(pz_test_rand_u64(&rng) % (uint64_t)V);
        CHECKF(!pz_engine_prefill(ref, s, toks, plen[s], NULL, 0, err), "%s", err);
        CHECKF(!pz_engine_prefill(gr, s, toks, plen[s], NULL, 0, err), "%s", err);
    }
    static const int sizes[] = {1, 3, 4, 6, 2, 5, 3, 1, 6, 4};
    float *lr = malloc(sizeof(float) * 6 * V), *lg = malloc(sizeof(float) * 6 * V);
    int steps = 0, same = 1;
    for (int it = 0; it < 30; it++) {
        int n = sizes[it % 10], slots[6];
        int32_t tk[6];
        for (int i = 0; i < n; i++) {
            slots[i] = (it + i) % 6;  // distinct: a rotation of the slots
            tk[i] = (int32_t)(pz_test_rand_u64(&rng) % (uint64_t)V);
        }
        int rr = pz_engine_decode(ref, slots, tk, n, lr, err);
        CHECKF(rr == 0, "ref decode: %s", err);
        int rg = pz_engine_decode(gr, slots, tk, n, lg, err);
        CHECKF(rg == 0, "graph decode: %s", err);
        if (rr || rg) break;
        if (memcmp(lr, lg, sizeof(float) * (size_t)n * V)) same = 0;
        steps++;
    }
    CHECKF(same, "graph decode logits differ from eager ones (break_capture %d)", break_capture);
    pz_graph_stats st;
    pz_engine_graph_stats(gr, &st);
    if (!break_capture) {
        CHECKF(st.graph_steps == steps && st.eager_steps == 0 && st.broken == 0,
               "graph steps %lld eager %lld broken %d of %d", st.graph_steps, st.eager_steps, st.broken, steps);
        CHECKF(F.n_replays > 0 && F.n_refused == 0 && F.n_captures == 4,
               "replays %d refused %d captures %d (buckets 1, 2, 4, 6)", F.n_replays, F.n_refused, F.n_captures);
    } else {
        // Each bucket's capture breaks once; that step and the bucket's later ones run eagerly.
        CHECKF(st.broken == 4 && st.eager_steps > 0 && st.graph_steps == 4 && F.n_replays == 0,
               "graph steps %lld eager %lld broken %d", st.graph_steps, st.eager_steps, st.broken);
    }
    for (int s = 0; s < 6; s++) CHECK(pz_engine_slot_len(gr, s) == pz_engine_slot_len(ref, s));
    free(lr), free(lg);
    pz_engine_free(ref), pz_engine_free(gr);
}

// No graphs when the caller asks for no logits, or with graphs off.
static void test_eager_cases(const pz_model *m) {
    memset(&F, 0, sizeof F);
    pz_engine *gr = mk(m, 1);
    if (!gr) return;
    int32_t t[3] = {1, 2, 3};
    int slots[2] = {0, 1};
    CHECKF(!pz_engine_prefill(gr, 0, t, 3, NULL, 0, err) && !pz_engine_prefill(gr, 1, t, 3, NULL, 0, err),
           "%s", err);
    CHECKF(!pz_engine_decode(gr, slots, t, 2, NULL, err), "%s", err);
    pz_graph_stats st;
    pz_engine_graph_stats(gr, &st);
    CHECK(st.graph_steps == 0 && st.eager_steps == 1);
    pz_engine_free(gr);
}

int main(void) {
    test_buckets();
    pz_config c;
    pz_testmodel_config(&c, 0);
    pz_model *m = pz_testmodel_random(&c, PZ_DT_F32, 4242, err);
    CHECKF(m != NULL, "%s", err);
    if (m) {
        run_schedule(m, 0);
        run_schedule(m, 1);
        test_eager_cases(m);
        pz_model_free(m);
    }
    return pz_test_finish("test_engine_graph");
}
