// bench_bld.c — training throughput of Blockwise Local Distillation for
// SmolLM2-sized blocks, next to the ceiling it should be judged against,
// measured in the same run:
//   the BLD step (pz_bld_train: data loading from a bf16 capture, forward,
//   normalized MSE, backward, AdamW) in tokens/s and GFLOP/s, and
//   the bf16 matrix-product rate of the same library (the backend's training gemm) on
//   exactly the products of one step (same M, N, K and transposes),
// so efficiency = step GFLOP/s (counting those products only) / library
// GFLOP/s. Blocks: FFN swiglu 1536 → 768 (hidden 576) and attention
// gqa kv 3 → 1 (9 heads × 64); batches of 8 windows × 256 tokens.
// The parent is one random SmolLM2-shaped layer (the rates do not depend
// on the weights' values).
//
// usage: bench_bld [threads] [out.md]      (threads 2; results/bld_bench.md)
#include "bld.h"
#include "capture.h"
#include "common.h"
#include "model.h"
#include "space.h"
#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T 256
#define BW 8
#define STEPS 12

static uint64_t rng = 12345;
static float randn(void) {
    double u1 = ((double)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 11) + 0.5) / 9007199254740992.0;
    double u2 = ((double)((rng = rng * 6364136223846793005ull + 1442695040888963407ull) >> 11) + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}
static void fill(pz_mat *m) {
    float *p = m->data;
    float s = 1.0f / sqrtf((float)m->cols);
    for (size_t i = 0; i < (size_t)m->rows * m->cols; i++) p[i] = randn() * s;
}

// One product of a step: op(A)[M,K]·op(B)[K,N].
typedef struct {
    int ta, tb, M, N, K;
} prod;

// The products of the training linear_fwd / _bwd for a linear layer x[M,K]·W[N,K]ᵀ.
static int linear_prods(prod *p, int M, int N, int K) {
    p[0] = (prod){0, 1, M, N, K};  // y = x·Wᵀ
    p[1] = (prod){0, 0, M, K, N};  // dx = dy·W
    p[2] = (prod){1, 0, N, K, M};  // dW += dyᵀ·x
    return 3;
}

static double lib_rate(pz_backend *g, const prod *p, int n, double *flops_out) {
    size_t mx = 0;
    for (int i = 0; i < n; i++) {
        size_t a = (size_t)p[i].M * p[i].K, b = (size_t)p[i].K * p[i].N, c = (size_t)p[i].M * p[i].N;
        if (a > mx) mx = a;
        if (b > mx) mx = b;
        if (c > mx) mx = c;
    }
    float *A = malloc(mx * 4), *B = malloc(mx * 4), *C = malloc(mx * 4);
    for (size_t i = 0; i < mx; i++) A[i] = randn(), B[i] = randn();
    char err[PZ_ERRLEN];
    double flops = 0, best = 1e30;
    for (int i = 0; i < n; i++) flops += 2.0 * p[i].M * p[i].N * p[i].K;
    for (int rep = 0; rep < 6; rep++) {
        double t0 = pz_now();
        for (int i = 0; i < n; i++) {
            int lda = p[i].ta ? p[i].M : p[i].K, ldb = p[i].tb ? p[i].K : p[i].N;
            if (g->train->gemm(g, p[i].ta, p[i].tb, p[i].M, p[i].N, p[i].K, A, lda, B, ldb, C, p[i].N, 0,
                            PZ_DT_BF16, err)) {
                fprintf(stderr, "gemm: %s\n", err);
                exit(1);
            }
        }
        double dt = pz_now() - t0;
        if (rep > 0 && dt < best) best = dt;  // the first repetition warms up
    }
    free(A), free(B), free(C);
    *flops_out = flops;
    return flops / best / 1e9;
}

typedef struct {
    const char *name;
    double tok_s, step_gflops, prod_gflops, lib_gflops, ratio, step_ms;
} result;

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    const char *out_md = argc > 2 ? argv[2] : "results/bld_bench.md";
    char err[PZ_ERRLEN];
    pz_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = 1, c.hidden = 576, c.n_head = 9, c.head_dim = 64, c.vocab = 512, c.max_ctx = 2048;
    c.rope_theta = 100000, c.norm_eps = 1e-5f, c.bos_id = c.eos_id = -1;
    c.layers[0] = (pz_layer_spec){PZ_ATTN_GQA, 3, PZ_FFN_SWIGLU, 1536};
    pz_model *m = pz_model_alloc(&c, PZ_DT_F32, err);
    if (!m) return fprintf(stderr, "%s\n", err), 1;
    fill(&m->tok_embd);
    pz_layer_weights *L = &m->layers[0];
    fill(&L->wq), fill(&L->wk), fill(&L->wv), fill(&L->wo), fill(&L->w_gate), fill(&L->w_up), fill(&L->w_down);
    for (int i = 0; i < c.hidden; i++) L->attn_norm[i] = L->ffn_norm[i] = m->out_norm[i] = 1.0f;

    // Capture: 10 windows (9 train, 1 held out), bf16.
    const long n_tok = 10L * T;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)n_tok);
    for (long i = 0; i < n_tok; i++) tok[i] = (int32_t)((i * 7919 + 13) % c.vocab);
    char dir[] = "/tmp/pz_bench_bld_XXXXXX";
    if (!mkdtemp(dir)) return perror("mkdtemp"), 1;
    pz_capture_params cp = pz_capture_default_params();
    cp.seq_len = T, cp.n_threads = threads;
    printf("capture: %zu bytes predicted\n", pz_capture_disk_bytes(&c, n_tok, T, cp.dtype, 0));
    if (pz_capture_run(m, tok, n_tok, dir, &cp, err)) return fprintf(stderr, "%s\n", err), 1;
    pz_capture *cap = pz_capture_open(dir, 0, &c, 0, err);
    if (!cap) return fprintf(stderr, "%s\n", err), 1;

    pz_backend *g = pz_backend_create(PZ_BACKEND_CPU, threads, err);
    const int M = BW * T, H = c.hidden;
    result res[2];
    for (int k = 0; k < 2; k++) {
        pz_block b;
        memset(&b, 0, sizeof b);
        b.layer = 0, b.needs_training = 1;
        prod p[16];
        int np = 0;
        if (k == 0) {
            b.sub = PZ_SUB_FFN, b.ffn = (pz_variant){.ffn = PZ_FFN_SWIGLU, .size = 768}, b.attn = (pz_variant){.attn = PZ_ATTN_GQA, .size = 3};
            np += linear_prods(p + np, M, 768, H);  // gate
            np += linear_prods(p + np, M, 768, H);  // up
            np += linear_prods(p + np, M, H, 768);  // down
        } else {
            b.sub = PZ_SUB_ATTN, b.attn = (pz_variant){.attn = PZ_ATTN_GQA, .size = 1}, b.ffn = (pz_variant){.ffn = PZ_FFN_SWIGLU, .size = 1536};
            np += linear_prods(p + np, M, H, H);   // q
            np += linear_prods(p + np, M, 64, H);  // k
            np += linear_prods(p + np, M, 64, H);  // v
            np += linear_prods(p + np, M, H, H);   // o
        }
        pz_block_make_id(&b, 1);
        double prod_flops;
        double lib = lib_rate(g, p, np, &prod_flops);
        pz_bld_params bp = pz_bld_default_params();
        bp.n_threads = threads, bp.batch_windows = BW, bp.steps = STEPS, bp.eval_every = STEPS;
        bp.val_max_tokens = T, bp.prec = PZ_DT_BF16;
        // Warm-up run (primitive creation), then the measured one.
        pz_bld_result r;
        bp.steps = 2;
        if (pz_bld_train(m, &b, cap, &bp, NULL, NULL, &r, err)) return fprintf(stderr, "%s\n", err), 1;
        pz_bld_result_free(&r);
        bp.steps = STEPS;
        if (pz_bld_train(m, &b, cap, &bp, NULL, NULL, &r, err)) return fprintf(stderr, "%s\n", err), 1;
        double step_s = (double)r.tokens / r.tokens_per_s / (double)r.steps;
        res[k].name = k == 0 ? "FFN swiglu 1536->768" : "attention gqa kv 3->1";
        res[k].tok_s = r.tokens_per_s;
        res[k].step_ms = step_s * 1e3;
        res[k].step_gflops = pz_bld_step_flops(&c, &b, M, T) / step_s / 1e9;
        res[k].prod_gflops = prod_flops / step_s / 1e9;
        res[k].lib_gflops = lib;
        res[k].ratio = res[k].prod_gflops / lib;
        pz_bld_result_free(&r);
    }
    pz_backend_free(g);
    pz_capture_close(cap);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);

    char host[256] = "?";
    FILE *f = popen("lscpu | sed -n 's/^Model name: *//p' | head -1", "r");
    if (f) {
        if (fgets(host, sizeof host, f)) host[strcspn(host, "\n")] = 0;
        pclose(f);
    }
    char table[4096];
    int len = snprintf(table, sizeof table,
                       "| block | tokens/s | step ms | step GFLOP/s (all) | step GFLOP/s (products) | "
                       "bf16 library GFLOP/s (same products) | ratio |\n|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < 2; k++)
        len += snprintf(table + len, sizeof table - (size_t)len, "| %s | %.0f | %.1f | %.1f | %.1f | %.1f | %.0f %% |\n",
                        res[k].name, res[k].tok_s, res[k].step_ms, res[k].step_gflops, res[k].prod_gflops,
                        res[k].lib_gflops, 100 * res[k].ratio);
    printf("%s", table);
    FILE *o = fopen(out_md, "w");
    if (!o) return perror(out_md), 1;
    fprintf(o, "# BLD training throughput\n\n"
               "`bench_bld %d` on %s, %d threads; batches of %d windows x %d tokens (%d rows), bf16 products with "
               "fp32 master weights, AdamW, data read from a bf16 capture. \"products\" counts only the matrix "
               "products of a step (the ones the library column times: forward, dX and dW of every projection); "
               "\"all\" adds the attention scores (causal, QK^T and PV, forward and backward). Ratio = step "
               "products GFLOP/s / library GFLOP/s on the same shapes in the same run (target for the FFN: >= 40 %%).\n\n%s",
            threads, host, threads, BW, T, M, table);
    fclose(o);
    printf("wrote %s\n", out_md);
    free(tok);
    pz_model_free(m);
    return 0;
}
