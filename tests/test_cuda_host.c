// test_cuda_host.c — the CUDA backend's host-side logic, checked on the CPU
// (no GPU needed): attention descriptor flattening and the row -> sequence
// search the kernel repeats, page-table packing for graphs, kv_write row
// pages, FP8 scale arithmetic (against fp8.h), CUDA-graph bucket choice, the
// tensor-parallel plan of a heterogeneous model, and that asking for the
// CUDA backend on a machine without a GPU (or a build without CUDA) fails
// with a clear message instead of crashing.
#include "backend.h"
#include "config.h"
#include "cuda_plan.h"
#include "testutil.h"
#include "tp_plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char err[PZ_ERRLEN];

static void test_flatten(void) {
    uint64_t st = 7;
    float q[8], out[8], k[8], v[8];
    int32_t pages[4] = {0};
    for (int trial = 0; trial < 50; trial++) {
        int n = 1 + (int)(pz_test_rand_u64(&st) % 12);
        pz_attn_seq s[12];
        int want_rows = 0;
        for (int i = 0; i < n; i++) {
            int nq = (int)(pz_test_rand_u64(&st) % 5);  // zero-query sequences included
            s[i] = (pz_attn_seq){.q = q, .q_ld = 8, .out = out, .out_ld = 8, .k = k, .v = v,
                                 .kv_ld = 0, .pages = pages, .kv_type = PZ_DT_E4M3,
                                 .k_scale = 0.5f, .v_scale = 2.0f, .n_q = nq, .pos0 = i};
            want_rows += nq;
        }
        pz_cuda_attn_desc d[12];
        int rows = pz_cuda_flatten_attn(s, n, 2, 4, d, err);
        CHECK(rows == want_rows);
        for (int r = 0; r < rows; r++) {
            int lin = -1;  // the owner by a linear scan
            for (int i = 0; i < n; i++)
                if (d[i].row0 <= r && r < d[i].row0 + d[i].n_q) lin = i;
            int got = pz_cuda_attn_find_seq(d, n, r);
            CHECKF(got == lin, "row %d: search %d, scan %d", r, got, lin);
        }
        CHECK(d[0].row0 == 0 && d[n - 1].k_scale == 0.5f && d[n - 1].kv_type == PZ_DT_E4M3);
    }
    // Row-major K/V: scales forced to 1, type f32.
    pz_attn_seq rm = {.q = q, .q_ld = 8, .out = out, .out_ld = 8, .k = k, .v = v, .kv_ld = 8,
                      .kv_type = PZ_DT_F32, .k_scale = 3, .v_scale = 3, .n_q = 1, .pos0 = 0};
    pz_cuda_attn_desc d;
    CHECK(pz_cuda_flatten_attn(&rm, 1, 2, 4, &d, err) == 1 && d.k_scale == 1 && d.v_scale == 1);
    // Refusals.
    pz_attn_seq bad = rm;
    bad.kv_type = PZ_DT_BF16;
    CHECK(pz_cuda_flatten_attn(&bad, 1, 2, 4, &d, err) == -1 && strstr(err, "not f32"));
    bad = rm, bad.kv_ld = 0, bad.pages = NULL;
    CHECK(pz_cuda_flatten_attn(&bad, 1, 2, 4, &d, err) == -1 && strstr(err, "page table"));
    bad = rm, bad.q_ld = 7;
    CHECK(pz_cuda_flatten_attn(&bad, 1, 2, 4, &d, err) == -1);
    bad = rm, bad.n_q = -1;
    CHECK(pz_cuda_flatten_attn(&bad, 1, 2, 4, &d, err) == -1);
}

static void test_pages(void) {
    int32_t t0[] = {5, 9}, t1[] = {3}, t2[] = {0};
    const int32_t *tabs[] = {t0, t1, t2};
    int np[] = {2, 1, 0};
    int32_t out[9];
    CHECK(pz_pack_page_tables(tabs, np, 3, 3, out, err) == 0);
    int32_t want[] = {5, 9, -1, 3, -1, -1, -1, -1, -1};
    CHECK(memcmp(out, want, sizeof want) == 0);
    int np_long[] = {2, 4, 0};
    CHECK(pz_pack_page_tables(tabs, np_long, 3, 3, out, err) == -1);
    int32_t tneg[] = {-2};
    const int32_t *tabs_neg[] = {tneg};
    int one = 1;
    CHECK(pz_pack_page_tables(tabs_neg, &one, 1, 2, out, err) == -1);

    int32_t table[] = {7, 2, 11};
    int32_t pos[] = {0, 15, 16, 40, 47};
    int32_t rp[5];
    CHECK(pz_kv_row_pages(table, 3, pos, 5, rp, err) == 0);
    CHECK(rp[0] == 7 && rp[1] == 7 && rp[2] == 2 && rp[3] == 11 && rp[4] == 11);
    int32_t past[] = {48};
    CHECK(pz_kv_row_pages(table, 3, past, 1, rp, err) == -1);
    CHECK(pz_kv_pages_for(0) == 0 && pz_kv_pages_for(1) == 1 && pz_kv_pages_for(16) == 1 &&
          pz_kv_pages_for(17) == 2);
}

// The scalar scale rule the kernels apply to a measured amax, against
// fp8.h's array form; encoding itself is test_fp8's.
static void test_fp8_scales(void) {
    uint64_t st = 3;
    for (int i = 0; i < 50; i++) {
        float x[64], amax = 0, ref;
        float mag = ldexpf(1, (int)(pz_test_rand_u64(&st) % 40) - 20);
        for (int j = 0; j < 64; j++) x[j] = pz_test_randn(&st) * mag, amax = fmaxf(amax, fabsf(x[j]));
        CHECK(pz_e4m3_scale_for(x, 64, &ref) == 0 && pz_fp8_scale(amax) == ref);
    }
    // Scales: dequant multipliers, x / scale fills +-448.
    CHECK(pz_fp8_scale(448) == 1 && pz_fp8_scale(896) == 2 && pz_fp8_scale(0) == 1);
    CHECK(pz_fp8_scale(NAN) == 1 && pz_fp8_scale(INFINITY) == 1 && pz_fp8_scale(-5) == 1);
    float sc = pz_fp8_scale(3.5f);
    CHECK(fabsf(pz_e4m3_to_f32(pz_f32_to_e4m3(3.5f / sc)) * sc - 3.5f) < 1e-6f);
    float ss[] = {0.5f, 2.0f, 1.0f};
    CHECK(pz_fp8_fused_scale(ss, 3) == 2.0f);
}

static void test_buckets(void) {
    int b[32];
    int n = pz_graph_default_buckets(64, b, 32);
    int want[] = {1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64};
    CHECK(n == 11 && memcmp(b, want, sizeof want) == 0);
    CHECK(pz_graph_bucket(1, b, n) == 0 && b[pz_graph_bucket(3, b, n)] == 4);
    CHECK(b[pz_graph_bucket(9, b, n)] == 16 && b[pz_graph_bucket(64, b, n)] == 64);
    CHECK(pz_graph_bucket(65, b, n) == -1 && pz_graph_bucket(0, b, n) == -1);
    n = pz_graph_default_buckets(100, b, 32);
    CHECK(b[n - 1] == 100 && b[n - 2] == 96);
    n = pz_graph_default_buckets(1, b, 32);
    CHECK(n == 1 && b[0] == 1);
    CHECK(pz_graph_default_buckets(1000, b, 4) == 4);
}

static void test_tp(void) {
    // A heterogeneous child of a 9-head model: gqa 3 KV, gqa 1 KV, linear
    // attention, noop + narrow FFN, linear FFN.
    static pz_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = 5, c.hidden = 576, c.n_head = 9, c.head_dim = 64;
    c.layers[0] = (pz_layer_spec){PZ_ATTN_GQA, 3, PZ_FFN_SWIGLU, 1536};
    c.layers[1] = (pz_layer_spec){PZ_ATTN_GQA, 1, PZ_FFN_SWIGLU, 768};
    c.layers[2] = (pz_layer_spec){PZ_ATTN_LINEAR, 0, PZ_FFN_SWIGLU, 40};
    c.layers[3] = (pz_layer_spec){PZ_ATTN_NOOP, 0, PZ_FFN_NOOP, 0};
    c.layers[4] = (pz_layer_spec){PZ_ATTN_GQA, 3, PZ_FFN_LINEAR, 0};
    CHECK(pz_tp_check(&c, 2, err) == -1 && strstr(err, "query heads"));
    CHECK(pz_tp_check(&c, 3, err) == 0 && pz_tp_check(&c, 9, err) == 0);

    for (int tp = 1; tp <= 9; tp *= 3) {
        for (int l = 0; l < c.n_layer; l++) {
            const pz_layer_spec *s = &c.layers[l];
            int q_cover[9] = {0}, kv_cover[9] = {0}, ff_total = 0, ff_next = 0;
            for (int r = 0; r < tp; r++) {
                pz_tp_layer L;
                CHECK(pz_tp_plan_layer(&c, l, tp, r, 16, &L, err) == 0);
                if (s->attn == PZ_ATTN_GQA) {
                    CHECK(L.attn_mode == PZ_TP_SHARDED);
                    CHECK(L.n_q == 9 / tp);
                    for (int h = L.q_head0; h < L.q_head0 + L.n_q; h++) {
                        q_cover[h]++;
                        // every query head of the rank reads a KV head the rank holds
                        int g = h / (9 / s->n_kv);
                        CHECKF(g >= L.kv_head0 && g < L.kv_head0 + L.n_kv, "tp %d layer %d rank %d head %d", tp, l, r, h);
                    }
                    for (int g = L.kv_head0; g < L.kv_head0 + L.n_kv; g++) kv_cover[g]++;
                    CHECK(L.kv_replicas == (s->n_kv < tp ? tp / s->n_kv : 1));
                } else {
                    CHECK(L.attn_mode == (s->attn == PZ_ATTN_LINEAR ? PZ_TP_REPLICATED : PZ_TP_NONE));
                }
                if (s->ffn == PZ_FFN_SWIGLU) {
                    CHECK(L.ff0 == ff_next);  // contiguous, in rank order
                    CHECK(L.ff0 % 16 == 0);
                    ff_next = L.ff0 + L.n_ff;
                    ff_total += L.n_ff;
                }
                int ar = (tp > 1) * ((s->attn == PZ_ATTN_GQA) + (s->ffn == PZ_FFN_SWIGLU));
                CHECK(L.all_reduces == ar);
            }
            if (s->attn == PZ_ATTN_GQA) {
                for (int h = 0; h < 9; h++) CHECK(q_cover[h] == 1);
                for (int g = 0; g < s->n_kv; g++) CHECK(kv_cover[g] == (s->n_kv < tp ? tp / s->n_kv : 1));
            }
            if (s->ffn == PZ_FFN_SWIGLU) CHECK(ff_total == s->n_ff);
        }
    }
    // n_kv 3 on 9 ranks: one head each, three replicas; rank 4 holds head 1.
    pz_tp_layer L;
    CHECK(pz_tp_plan_layer(&c, 0, 9, 4, 16, &L, err) == 0 && L.kv_head0 == 1 && L.n_kv == 1 &&
          L.kv_replicas == 3 && L.q_head0 == 4 && L.n_q == 1);
    // 40 channels in units of 16 over 3 ranks: 16, 16, 8.
    CHECK(pz_tp_plan_layer(&c, 2, 3, 2, 16, &L, err) == 0 && L.ff0 == 32 && L.n_ff == 8);
    // Parameter counts over the ranks add up to the layer, plus the replicated parts.
    long long sum = 0;
    for (int r = 0; r < 3; r++) {
        CHECK(pz_tp_plan_layer(&c, 0, 3, r, 16, &L, err) == 0);
        sum += L.params;
    }
    long long H = 576, whole = 2 * H + (9 * 2 + 3 * 2) * 64 * H + 3 * 1536 * H;
    CHECK(sum == whole + 2 * (2 * H));  // both norms are held by every rank
    // 2 KV heads cannot split over 3 ranks nor be replicated evenly: the layer is replicated.
    c.layers[1].n_kv = 3;
    c.n_head = 6;
    c.layers[0].n_kv = 2;
    CHECK(pz_tp_plan_layer(&c, 0, 3, 1, 16, &L, err) == 0 && L.attn_mode == PZ_TP_REPLICATED &&
          L.n_q == 6 && L.n_kv == 2 && L.all_reduces == 1);
    CHECK(pz_tp_plan_layer(&c, 0, 3, 3, 16, &L, err) == -1);  // rank out of range
}

static void test_create(void) {
    err[0] = 0;
    pz_backend *b = pz_backend_create(PZ_BACKEND_CUDA, 1, err);
    if (b) {  // a machine with a GPU: the backend must at least be a CUDA one
        CHECK(b->kind == PZ_BACKEND_CUDA && strcmp(b->name, "cuda") == 0 && b->invariant_rows >= 1);
        pz_backend_free(b);
        return;
    }
#ifdef PZ_HAVE_CUDA
    CHECKF(strstr(err, "no CUDA device") != NULL, "message: %s", err);
#else
    CHECKF(strstr(err, "not built into") != NULL, "message: %s", err);
#endif
    // The CPU backend is unaffected.
    pz_backend *cpu = pz_backend_create(PZ_BACKEND_CPU, 1, err);
    CHECK(cpu != NULL);
    pz_backend_free(cpu);
}

int main(void) {
    test_flatten();
    test_pages();
    test_fp8_scales();
    test_buckets();
    test_tp();
    test_create();
    return pz_test_finish("test_cuda_host");
}
