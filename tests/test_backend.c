// test_backend.c — the backend interface's own contract, on every backend
// built into this binary (the CPU one here): the element-type table, kinds
// by name, memory round trips through copy and synchronize, weight
// preparation (and its refusals), a batched kv_write equal to one write per
// row, the engine taking its backend from its parameters, and the
// single-process communicator.
#include "backend.h"
#include "comm.h"
#include "engine.h"
#include "testmodel.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char err[PZ_ERRLEN];

static void test_dtype(void) {
    const char *names[] = {"f32", "bf16", "f16", "fp8", "fp8_e5m2"};
    const size_t sizes[] = {4, 2, 2, 1, 1};
    for (int t = 0; t < PZ_DT_COUNT; t++) {
        pz_dt back = PZ_DT_COUNT;
        CHECK(strcmp(pz_dt_name((pz_dt)t), names[t]) == 0);
        CHECK(pz_dt_size((pz_dt)t) == sizes[t]);
        CHECK(pz_dt_parse(names[t], &back) == 0 && back == (pz_dt)t);
    }
    pz_dt d = PZ_DT_BF16;
    CHECK(pz_dt_parse("e4m3", &d) == 0 && d == PZ_DT_E4M3);
    CHECK(pz_dt_parse("fp32", &d) == 0 && d == PZ_DT_F32);
    CHECK(pz_dt_parse("int8", &d) == -1 && d == PZ_DT_F32);  // untouched on failure
    CHECK(pz_dt_parse(NULL, &d) == -1);
    CHECK(strcmp(pz_dt_name(PZ_DT_COUNT), "?") == 0 && pz_dt_size(PZ_DT_COUNT) == 0);
}

static void test_kinds(void) {
    pz_backend_kind k;
    CHECK(pz_backend_kind_parse("cpu", &k) == 0 && k == PZ_BACKEND_CPU);
    CHECK(pz_backend_kind_parse("cuda", &k) == 0 && k == PZ_BACKEND_CUDA);
    CHECK(pz_backend_kind_parse("tpu", &k) == -1);
    CHECK(strcmp(pz_backend_kind_name(PZ_BACKEND_CUDA), "cuda") == 0);
#ifndef PZ_HAVE_CUDA
    err[0] = 0;
    CHECK(pz_backend_create(PZ_BACKEND_CUDA, 1, err) == NULL && strstr(err, "cuda"));
#endif
}

static void test_memory_and_weights(pz_backend *b) {
    uint64_t rng = 3;
    const size_t n = 1000;
    float *h = malloc(n * sizeof(float)), *back = calloc(n, sizeof(float));
    pz_test_fill_randn(h, n, 1.0f, &rng);
    float *d = b->alloc(b, n * sizeof(float)), *d2 = b->alloc(b, n * sizeof(float));
    CHECK(d && d2);
    CHECK(b->copy(b, d, h, n * sizeof(float), PZ_COPY_H2D, err) == 0);
    CHECK(b->copy(b, d2, d, n * sizeof(float), PZ_COPY_D2D, err) == 0);
    CHECK(b->copy(b, back, d2, n * sizeof(float), PZ_COPY_D2H, err) == 0);
    CHECKF(b->synchronize(b, err) == 0, "%s", err);
    CHECK(memcmp(h, back, n * sizeof(float)) == 0);

    // upload_weights: the same bytes at the same offsets.
    void *up = b->upload_weights(b, h, n * sizeof(float), err);
    CHECKF(up != NULL, "%s", err);
    memset(back, 0, n * sizeof(float));
    if (up) {
        CHECK(b->copy(b, back, (char *)up + 40, 400, PZ_COPY_D2H, err) == 0 && b->synchronize(b, err) == 0);
        CHECK(memcmp(back, (char *)h + 40, 400) == 0);
        b->free_weights(b, up);
    }

    // Weights the backend cannot multiply are refused with a reason.
    pz_weight w = pz_weight_dense(d, PZ_DT_F32, 10, 100);
    CHECKF(b->prepare_weight(b, &w, err) == 0, "%s", err);
    b->release_weight(b, &w);
    for (int t = PZ_DT_F16; t < PZ_DT_COUNT; t++) {
        if (b->supports(b, PZ_OP_MATMUL, (pz_dt)t)) continue;
        pz_weight q = pz_weight_dense(d, (pz_dt)t, 10, 100);
        err[0] = 0;
        CHECK(b->prepare_weight(b, &q, err) == -1 && strstr(err, pz_dt_name((pz_dt)t)));
    }
    pz_weight strided = pz_weight_dense(d, PZ_DT_F32, 5, 100);
    strided.ld = 200;
    if (b->kind == PZ_BACKEND_CPU) CHECK(b->prepare_weight(b, &strided, err) == -1);  // CPU kernels want dense rows

    // matmul by a prepared weight against a plain product.
    const int M = 3, N = 10, K = 100;
    float x[3 * 100], y[3 * 10];
    pz_test_fill_randn(x, (size_t)M * K, 1.0f, &rng);
    float *dx = b->alloc(b, sizeof x), *dy = b->alloc(b, sizeof y);
    CHECK(b->copy(b, dx, x, sizeof x, PZ_COPY_H2D, err) == 0);
    CHECKF(b->prepare_weight(b, &w, err) == 0 && b->matmul(b, dy, N, dx, K, PZ_DT_F32, &w, M, 0, err) == 0 &&
               b->copy(b, y, dy, sizeof y, PZ_COPY_D2H, err) == 0 && b->synchronize(b, err) == 0,
           "%s", err);
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += (double)x[m * K + k] * h[j * K + k];
            worst = fmax(worst, fabs(s - y[m * N + j]) / (1 + fabs(s)));
        }
    CHECKF(worst < 1e-5, "matmul err %g", worst);
    if (!b->supports(b, PZ_OP_MATMUL, PZ_DT_E4M3))  // activation quantization not offered yet
        CHECK(b->matmul(b, dy, N, dx, K, PZ_DT_E4M3, &w, M, 0, err) == -1);
    b->release_weight(b, &w);
    b->free(b, dx), b->free(b, dy), b->free(b, d), b->free(b, d2);
    free(h), free(back);
}

// One kv_write of R rows over scattered pages = R single-row writes; a page
// id past the pool, and a KV type the backend lacks, are refused.
static void test_kv_write(pz_backend *b) {
    const int n_kv = 2, hd = 16, n_pages = 7, R = 11, kvd = n_kv * hd, ld = 2 * kvd + 5;
    size_t pb = b->kv_page_bytes(b, n_kv, hd, PZ_DT_F32), bytes = pb * n_pages;
    CHECK(pb >= (size_t)PZ_KV_PAGE * kvd * 4);
    float *k1 = b->alloc(b, bytes), *v1 = b->alloc(b, bytes);
    float *k2 = b->alloc(b, bytes), *v2 = b->alloc(b, bytes);
    float *kv = malloc(sizeof(float) * R * ld);
    int32_t page[11], pos[11];
    uint64_t rng = 9;
    pz_test_fill_randn(kv, (size_t)R * ld, 1.0f, &rng);
    for (int r = 0; r < R; r++) page[r] = (r * 3) % n_pages, pos[r] = r * 5 + r / 4;
    pz_kv_write all = {.k_pool = k1, .v_pool = v1, .n_pages = n_pages, .n_kv = n_kv, .head_dim = hd,
                       .kv_type = PZ_DT_F32, .k_scale = 1, .v_scale = 1, .kv = kv, .ld = ld,
                       .row_page = page, .pos = pos, .R = R};
    CHECKF(b->kv_write(b, &all, err) == 0, "%s", err);
    for (int r = 0; r < R; r++) {
        pz_kv_write one = all;
        one.k_pool = k2, one.v_pool = v2, one.kv = kv + (size_t)r * ld, one.row_page = page + r;
        one.pos = pos + r, one.R = 1;
        CHECK(b->kv_write(b, &one, err) == 0);
    }
    CHECK(b->synchronize(b, err) == 0);
    CHECK(memcmp(k1, k2, bytes) == 0 && memcmp(v1, v2, bytes) == 0);
    page[4] = n_pages;  // out of range: refused, naming the row
    err[0] = 0;
    CHECK(b->kv_write(b, &all, err) == -1 && strstr(err, "row 4"));
    page[4] = 0;
    for (pz_dt dt = 0; dt < PZ_DT_COUNT; dt++) {
        all.kv_type = dt;
        int ok = b->supports(b, PZ_OP_ATTENTION, dt) && b->kv_page_bytes(b, n_kv, hd, dt) > 0;
        if (!ok) CHECKF(b->kv_write(b, &all, err) == -1, "kv_write accepted unsupported %s pages", pz_dt_name(dt));
    }
    b->free(b, k1), b->free(b, v1), b->free(b, k2), b->free(b, v2);
    free(kv);
}

static void test_comm(pz_backend *b) {
    pz_comm *c = pz_comm_single_create(b, err);
    CHECKF(c != NULL, "%s", err);
    if (!c) return;
    float x[4] = {1, -2, 3.5f, 0};
    CHECK(c->rank == 0 && c->size == 1 && strcmp(c->name, "single") == 0);
    CHECK(c->all_reduce(c, x, 4, PZ_REDUCE_SUM, err) == 0 && x[0] == 1 && x[1] == -2 && x[2] == 3.5f);
    CHECK(c->all_reduce(c, x, 4, PZ_REDUCE_MAX, err) == 0 && x[2] == 3.5f);
    CHECK(c->all_reduce(c, NULL, 4, PZ_REDUCE_SUM, err) == -1);
    CHECK(c->broadcast(c, x, sizeof x, 0, err) == 0 && x[1] == -2);
    CHECK(c->broadcast(c, x, sizeof x, 1, err) == -1 && strstr(err, "root 1"));
    CHECK(c->barrier(c, err) == 0);
    // one rank's status: its own; err may be the reason's own buffer
    CHECK(c->status(c, 1, NULL, err) == 0 && c->health == PZ_COMM_OK);
    snprintf(err, PZ_ERRLEN, "shard missing");
    CHECK(c->status(c, 0, err, err) == 1 && strcmp(err, "rank 0: shard missing") == 0);
    CHECK(c->health == PZ_COMM_FAILED);
    CHECK(c->wait(c, err) == 0);
    pz_comm_free(c);
}

// The engine runs wherever its parameters say, and says so when it cannot.
static void test_engine_backend(void) {
    pz_config c;
    pz_testmodel_config(&c, 0);
    pz_model *m = pz_testmodel_random(&c, PZ_DT_F32, 5, err);
    CHECKF(m != NULL, "%s", err);
    if (!m) return;
    pz_engine_params p = pz_engine_default_params();
    CHECK(p.backend == PZ_BACKEND_CPU);
    p.n_threads = 1, p.max_ctx = 16;
    pz_engine *e = pz_engine_create(m, p, err);
    CHECKF(e != NULL, "%s", err);
    int32_t tok[3] = {1, 2, 3};
    float *lg = malloc(sizeof(float) * 3 * (size_t)m->cfg.vocab);
    CHECKF(e && pz_engine_prefill(e, 0, tok, 3, lg, 1, err) == 0, "%s", err);
    int finite = 1;
    for (int i = 0; i < 3 * m->cfg.vocab; i++) finite &= isfinite(lg[i]) != 0;
    CHECK(finite);
    pz_engine_free(e);
#ifndef PZ_HAVE_CUDA
    p.backend = PZ_BACKEND_CUDA;
    err[0] = 0;
    CHECK(pz_engine_create(m, p, err) == NULL && strstr(err, "cuda"));
#endif
    free(lg);
    pz_model_free(m);
}

int main(void) {
    test_dtype();
    test_kinds();
    pz_backend *b = pz_backend_create(PZ_BACKEND_CPU, 2, err);
    CHECKF(b != NULL, "%s", err);
    if (b) {
        CHECK(b->train != NULL && b->train->gemm && b->train->adamw_step && b->train->attn_block_bwd);
        CHECK(b->supports(b, PZ_OP_TRAIN, PZ_DT_F32));
        test_memory_and_weights(b);
        test_kv_write(b);
        test_comm(b);
        pz_backend_free(b);
    }
    test_engine_backend();
    return pz_test_finish("test_backend");
}
