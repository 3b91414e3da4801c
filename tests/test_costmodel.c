// test_costmodel.c — invariants of the roofline cost model, the serving
// model and pricing (scoring/pricing.h) and plan sizing (scoring/plan.h),
// and clean errors for bad hardware JSON. Uses the shipped hardware files and synthetic Llama-shaped configs.
// labels: cpu
#include "common.h"
#include "config.h"
#include "costmodel.h"
#include "hardware.h"
#include "plan.h"
#include "pricing.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static pz_config llama(int layers, int hidden, int heads, int kv, int ff) {
    pz_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = layers;
    c.hidden = hidden;
    c.n_head = heads;
    c.head_dim = hidden / heads;
    c.vocab = 128256;
    c.max_ctx = 131072;
    for (int i = 0; i < layers; i++) c.layers[i] = (pz_layer_spec){PZ_ATTN_GQA, kv, PZ_FFN_SWIGLU, ff};
    return c;
}

static int near(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b); }

static pz_scenario sc(pz_phase ph, long b, long len) { return (pz_scenario){ph, b, len}; }

static void test_kv_heads_monotone(const pz_hw *hw) {
    static pz_config c;
    c = llama(32, 4096, 32, 8, 14336);
    pz_cost_params p = pz_cost_default_params();
    const pz_scenario scs[] = {sc(PZ_PHASE_PREFILL, 1, 128), sc(PZ_PHASE_PREFILL, 8, 2048),
                               sc(PZ_PHASE_DECODE, 1, 1024), sc(PZ_PHASE_DECODE, 256, 4096)};
    const int kvs[] = {1, 2, 4, 8, 16, 32};
    char err[PZ_ERRLEN];
    for (int tp = 1; tp <= 8; tp *= 2) {
        p.tp = tp;
        for (size_t s = 0; s < sizeof scs / sizeof scs[0]; s++) {
            pz_cost prev = {0};
            for (size_t k = 0; k < sizeof kvs / sizeof kvs[0]; k++) {
                pz_layer_spec l = {PZ_ATTN_GQA, kvs[k], PZ_FFN_NOOP, 0};
                pz_cost cur;
                CHECKF(pz_cost_attn(&c, &l, hw, &p, &scs[s], &cur, err) == 0, "%s", err);
                if (k > 0) {
                    CHECKF(cur.time_s >= prev.time_s, "tp %d kv %d: %g < %g", tp, kvs[k], cur.time_s, prev.time_s);
                    CHECK(cur.weight_bytes >= prev.weight_bytes);
                    CHECK(cur.kv_bytes_per_token >= prev.kv_bytes_per_token);
                }
                prev = cur;
            }
        }
        // The same through whole-model memory: more KV heads never fit more sequences.
        long prev_b = 1L << 30;
        for (size_t k = 0; k < sizeof kvs / sizeof kvs[0]; k++) {
            for (int i = 0; i < c.n_layer; i++) c.layers[i].n_kv = kvs[k];
            pz_mem m;
            pz_cost_memory(&c, hw, &p, 16, 4096, &m);
            long b = pz_cost_max_batch(&c, hw, &p, 4096);
            CHECK(b <= prev_b);
            prev_b = b;
        }
        for (int i = 0; i < c.n_layer; i++) c.layers[i].n_kv = 8;
    }
}

static void test_noop_free(const pz_hw *hw) {
    static pz_config c;
    c = llama(4, 4096, 32, 8, 14336);
    pz_cost_params p = pz_cost_default_params();
    char err[PZ_ERRLEN];
    for (int tp = 1; tp <= 8; tp *= 2) {
        p.tp = tp;
        pz_scenario s = sc(PZ_PHASE_DECODE, 64, 2048);
        pz_layer_spec l = {PZ_ATTN_NOOP, 0, PZ_FFN_NOOP, 0};
        pz_cost a, f;
        CHECK(pz_cost_attn(&c, &l, hw, &p, &s, &a, err) == 0);
        CHECK(pz_cost_ffn(&c, &l, hw, &p, &s, &f, err) == 0);
        CHECK(a.time_s == 0 && a.weight_bytes == 0 && a.kv_bytes_per_token == 0 && a.comm_s == 0 && a.launch_s == 0);
        CHECK(f.time_s == 0 && f.weight_bytes == 0 && f.comm_s == 0 && f.launch_s == 0);
        // Linear replacements: no KV cache, a [hidden, hidden/tp] weight, cheaper than the parent's blocks.
        pz_layer_spec lin = {PZ_ATTN_LINEAR, 0, PZ_FFN_LINEAR, 0};
        pz_cost la, lf, ga, gf;
        CHECK(pz_cost_attn(&c, &lin, hw, &p, &s, &la, err) == 0 && pz_cost_ffn(&c, &lin, hw, &p, &s, &lf, err) == 0);
        CHECK(pz_cost_attn(&c, &c.layers[0], hw, &p, &s, &ga, err) == 0);
        CHECK(pz_cost_ffn(&c, &c.layers[0], hw, &p, &s, &gf, err) == 0);
        CHECK(la.kv_bytes_per_token == 0 && la.weight_bytes == 4096.0 * (4096 / tp) * 2 + 4096 * 2);
        CHECK(la.time_s > 0 && la.time_s < ga.time_s && lf.time_s < gf.time_s);
        CHECK((tp == 1) == (la.comm_s == 0));
        // A model whose layers are all noop costs only its embedding and head.
        pz_config *z = &c;
        pz_config saved = c;
        for (int i = 0; i < z->n_layer; i++) z->layers[i] = l;
        pz_cost whole, e, h;
        CHECK(pz_cost_forward(z, hw, &p, &s, &whole, err) == 0);
        pz_cost_embed(z, hw, &p, &s, &e);
        pz_cost_head(z, hw, &p, &s, &h);
        CHECK(near(whole.time_s, e.time_s + h.time_s, 1e-12));
        CHECK(whole.kv_bytes_per_token == 0);
        c = saved;
    }
}

static double matrix_bytes(const pz_cost *k, const pz_config *c) { return k->weight_bytes - 2.0 * c->hidden; }

static void test_tp_and_fp8_bytes(const pz_hw *hw) {
    static pz_config c;
    c = llama(32, 4096, 32, 8, 14336);
    pz_cost_params p1 = pz_cost_default_params(), p2 = p1, p8 = p1;
    p2.tp = 2;
    p8.dtype = PZ_DT_E4M3;
    char err[PZ_ERRLEN];
    pz_scenario s = sc(PZ_PHASE_DECODE, 8, 512);
    pz_cost a1, a2, a8, f1, f2, f8;
    CHECK(pz_cost_attn(&c, &c.layers[0], hw, &p1, &s, &a1, err) == 0);
    CHECK(pz_cost_attn(&c, &c.layers[0], hw, &p2, &s, &a2, err) == 0);
    CHECK(pz_cost_attn(&c, &c.layers[0], hw, &p8, &s, &a8, err) == 0);
    CHECK(pz_cost_ffn(&c, &c.layers[0], hw, &p1, &s, &f1, err) == 0);
    CHECK(pz_cost_ffn(&c, &c.layers[0], hw, &p2, &s, &f2, err) == 0);
    CHECK(pz_cost_ffn(&c, &c.layers[0], hw, &p8, &s, &f8, err) == 0);
    // Matrices split exactly in two (norm weights are replicated, bf16).
    CHECK(matrix_bytes(&a1, &c) == 2 * matrix_bytes(&a2, &c));
    CHECK(matrix_bytes(&f1, &c) == 2 * matrix_bytes(&f2, &c));
    CHECK(a1.kv_bytes_per_token == 2 * a2.kv_bytes_per_token);
    // fp8 halves the matrices.
    CHECK(matrix_bytes(&a1, &c) == 2 * matrix_bytes(&a8, &c));
    CHECK(matrix_bytes(&f1, &c) == 2 * matrix_bytes(&f8, &c));
    // Whole-model weights per device: tp 2 within a hair of half (norms replicated).
    pz_mem m1, m2;
    pz_cost_memory(&c, hw, &p1, 1, 1, &m1);
    pz_cost_memory(&c, hw, &p2, 1, 1, &m2);
    CHECK(near(m2.weights, m1.weights / 2, 1e-4));
    // fp8 KV halves the cache.
    pz_cost_params pk = p1;
    pk.kv_dtype = PZ_DT_E4M3;
    pz_cost k8;
    CHECK(pz_cost_attn(&c, &c.layers[0], hw, &pk, &s, &k8, err) == 0);
    CHECK(a1.kv_bytes_per_token == 2 * k8.kv_bytes_per_token);
    // Replicated KV heads: 8 KV heads at tp 16 keep one head per rank; 8 at tp 3 cannot split.
    static pz_config wide;
    wide = llama(2, 8192, 64, 8, 28672);
    pz_cost_params p16 = p1, p3 = p1;
    p16.tp = 16;
    p3.tp = 3;
    pz_cost r;
    CHECK(pz_cost_attn(&wide, &wide.layers[0], hw, &p16, &s, &r, err) == 0);
    CHECK(r.kv_bytes_per_token == 2.0 * 1 * 128 * 2);
    CHECK(pz_cost_check(&wide, hw, &p3, err) != 0 && strstr(err, "tp 3"));
}

static void test_bandwidth_and_peak_scaling(const pz_hw *h100) {
    static pz_config c;
    c = llama(32, 4096, 32, 8, 14336);
    pz_cost_params p = pz_cost_default_params();
    char err[PZ_ERRLEN];
    pz_hw fast = *h100;
    fast.mem_bw *= 2;
    // Memory-bound decode (batch 1): the roofline part halves with twice the bandwidth.
    pz_scenario d = sc(PZ_PHASE_DECODE, 1, 1024);
    pz_cost a, b;
    CHECK(pz_cost_forward(&c, h100, &p, &d, &a, err) == 0);
    CHECK(pz_cost_forward(&c, &fast, &p, &d, &b, err) == 0);
    CHECK(a.memory_s > a.compute_s);
    CHECKF(near(b.roof_s, a.roof_s / 2, 1e-9), "%g vs %g", b.roof_s, a.roof_s / 2);
    CHECK(b.launch_s == a.launch_s);
    // Compute-bound prefill at a large batch: twice the FLOP/s, half the roofline time.
    pz_hw big = *h100;
    big.flops_bf16 *= 2;
    pz_scenario pf = sc(PZ_PHASE_PREFILL, 64, 2048);
    CHECK(pz_cost_forward(&c, h100, &p, &pf, &a, err) == 0);
    CHECK(pz_cost_forward(&c, &big, &p, &pf, &b, err) == 0);
    CHECK(a.compute_s > 5 * a.memory_s);
    CHECKF(near(b.compute_s, a.compute_s / 2, 1e-9), "%g vs %g", b.compute_s, a.compute_s / 2);
    // Only the compute side halves: the elementwise kernels (norm, RoPE,
    // SwiGLU product, residual) stay memory-bound and are not hidden under a
    // compute-bound GEMM, so the roofline is strictly above the compute side.
    CHECKF(near(b.roof_s, a.roof_s - a.compute_s / 2, 1e-4), "%g vs %g", b.roof_s, a.roof_s - a.compute_s / 2);
    CHECKF(a.roof_s > a.compute_s * 1.01, "elementwise traffic hidden: roof %g, compute %g", a.roof_s, a.compute_s);
    // TP pays all-reduces; tp 1 pays none.
    CHECK(a.comm_s == 0);
    p.tp = 2;
    CHECK(pz_cost_forward(&c, h100, &p, &pf, &b, err) == 0);
    CHECK(b.comm_s > 0);
}

static void test_plan_batch_fits(const pz_hw *hw) {
    static pz_config c;
    c = llama(32, 4096, 32, 8, 14336);
    pz_cost_params p = pz_cost_default_params();
    char err[PZ_ERRLEN];
    const long seqs[] = {128 + 1024, 2048 + 2048, 20000};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        for (int kv = 0; kv < 2; kv++) {
            p.kv_dtype = kv ? PZ_DT_E4M3 : PZ_DT_BF16;
            long b = pz_cost_max_batch(&c, hw, &p, seqs[i]);
            CHECK(b > 0);
            CHECK(pz_cost_fits(&c, hw, &p, b, seqs[i]));
            if (b < p.max_batch) CHECKF(!pz_cost_fits(&c, hw, &p, b + 1, seqs[i]), "seq %ld batch %ld", seqs[i], b);
        }
    }
    // The plan uses that batch and reports consistent throughput.
    pz_plan r;
    p.kv_dtype = PZ_DT_BF16;
    CHECKF(pz_plan_eval(&c, hw, &p, 128, 1024, 0, 8, &r, err) == 0, "%s", err);
    CHECK(r.batch == r.max_batch && r.replicas == 8);
    CHECK(r.mem.total <= r.mem.usable);
    CHECK(near(r.tok_s_total, 8 * r.tok_s_gpu, 1e-9));
    CHECK(r.ttft_s > 0 && r.tpot_s > r.step_s);
    CHECK(pz_plan_eval(&c, hw, &p, 128, 1024, r.max_batch + 1, 8, &r, err) != 0 && strstr(err, "does not fit"));
    // A 70B model in bf16 does not fit one 80 GB GPU.
    static pz_config big;
    big = llama(80, 8192, 64, 8, 28672);
    CHECK(pz_plan_eval(&big, hw, &p, 128, 1024, 0, 1, &r, err) != 0 && strstr(err, "does not fit"));
    // SLO sizing (seconds): a generous SLO is met, an impossible one names its bound.
    pz_plan_slo s;
    CHECK(pz_plan_for_slo(&big, hw, &p, 0, 128, 1024, 10, 2.0, 0.1, &s, err) == 0);
    CHECK(s.found && s.best.gpus >= 2 && s.best.ttft_s <= 2.0 && s.best.tpot_s <= 0.1);
    CHECK(s.best.req_s_total >= 10);
    CHECK(pz_plan_for_slo(&big, hw, &p, 0, 128, 1024, 10, 2.0, 1e-4, &s, err) == 0);
    CHECKF(!s.found && strcmp(s.binding, "tpot") == 0, "%d %s: %s", s.found, s.binding, s.why);
}

static const char *GOOD =
    "{\"id\":\"x\",\"name\":\"X\",\"interconnect\":\"NVLink\",\"flops_bf16\":1e15,\"flops_fp8\":null,"
    "\"mem_bandwidth_bytes_per_s\":3e12,\"mem_bytes\":8e10,\"link_bandwidth_bytes_per_s\":4e11,"
    "\"link_latency_s\":2e-6,\"launch_overhead_s\":4e-6,\"sources\":{"
    "\"flops_bf16\":{\"title\":\"t\",\"url\":\"u\"},\"flops_fp8\":{\"title\":\"t\",\"url\":\"u\"},"
    "\"mem_bandwidth_bytes_per_s\":{\"title\":\"t\",\"url\":\"u\"},\"mem_bytes\":{\"title\":\"t\",\"url\":\"u\"},"
    "\"link_bandwidth_bytes_per_s\":{\"title\":\"t\",\"url\":\"u\"},\"link_latency_s\":{\"title\":\"t\",\"url\":\"u\"},"
    "\"launch_overhead_s\":{\"title\":\"t\",\"url\":\"u\"}}}";

static int parse_with(const char *from, const char *to, char *err) {
    char buf[4096];
    const char *at = strstr(GOOD, from);
    if (!at) return 99;
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - GOOD), GOOD, to, at + strlen(from));
    pz_hw hw;
    return pz_hw_parse(buf, strlen(buf), "bad.json", &hw, err);
}

static void test_hardware_files(void) {
    char err[PZ_ERRLEN];
    pz_hw hw;
    CHECKF(pz_hw_parse(GOOD, strlen(GOOD), "good.json", &hw, err) == 0, "%s", err);
    CHECK(hw.flops_fp8 == 0 && hw.mem_bw == 3e12);
    CHECK(parse_with("\"mem_bandwidth_bytes_per_s\":3e12", "\"mem_bandwidth_bytes_per_s\":-3e12", err) == -1);
    CHECKF(strstr(err, "mem_bandwidth_bytes_per_s") && strstr(err, "positive") && !strchr(err, '\n'), "%s", err);
    CHECK(parse_with("\"mem_bytes\":8e10,", "", err) == -1);
    CHECKF(strstr(err, "missing field 'mem_bytes'"), "%s", err);
    CHECK(parse_with("\"link_latency_s\":{\"title\":\"t\",\"url\":\"u\"},", "", err) == -1);
    CHECKF(strstr(err, "sources.link_latency_s"), "%s", err);
    CHECK(parse_with("\"flops_bf16\":1e15", "\"flops_bf16\":\"fast\"", err) == -1);
    CHECK(parse_with("{\"id\"", "[{\"id\"", err) == -1);
    CHECK(pz_hw_parse("{", 1, "trunc.json", &hw, err) == -1 && strstr(err, "not valid JSON"));
    // Every shipped file loads; names resolve case-insensitively through aliases.
    const char *names[] = {"H100", "h100_sxm", "H200", "A100", "B200", "L40S"};
    const char *ids[] = {"h100_sxm", "h100_sxm", "h200_sxm", "a100_80gb_sxm", "b200", "l40s"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        CHECKF(pz_hw_find(names[i], NULL, &hw, err) == 0, "%s: %s", names[i], err);
        CHECK(strcmp(hw.id, ids[i]) == 0);
    }
    CHECK(pz_hw_find("H100", NULL, &hw, err) == 0 && near(hw.flops_bf16, 989.5e12, 1e-3) && hw.mem_bw == 3.35e12);
    CHECK(pz_hw_find("A100", NULL, &hw, err) == 0 && hw.flops_fp8 == 0);
    CHECK(pz_hw_find("tpu-v9", NULL, &hw, err) == -1);
    CHECKF(strstr(err, "unknown hardware 'tpu-v9'") && strstr(err, "h100_sxm") && strstr(err, "l40s"), "%s", err);
    char list[512];
    CHECK(pz_hw_list(NULL, list, sizeof list) >= 5);
}

// The row factor table (hardware.h gemm_rows_eff): parsed, interpolated in
// log M, held beyond its ends, and applied to the GEMMs of a pass with that
// many rows (tokens) only.
static void test_rows_eff(const pz_hw *h100) {
    char err[PZ_ERRLEN];
    pz_hw hw;
    CHECKF(parse_with("\"launch_overhead_s\":4e-6,", "\"launch_overhead_s\":4e-6,\"cost_params\":{\"gemm_rows_eff\":"
                      "[[1,0.1],[8,0.4],[512,1]]},", err) == 0, "%s", err);
    {
        char buf[4096];
        const char *at = strstr(GOOD, "\"launch_overhead_s\":4e-6,");
        snprintf(buf, sizeof buf, "%.*s%s%s", (int)(at - GOOD), GOOD,
                 "\"launch_overhead_s\":4e-6,\"cost_params\":{\"gemm_rows_eff\":[[1,0.1],[8,0.4],[512,1]]},",
                 at + strlen("\"launch_overhead_s\":4e-6,"));
        CHECKF(pz_hw_parse(buf, strlen(buf), "rows.json", &hw, err) == 0, "%s", err);
    }
    CHECK(hw.n_rows_eff == 3);
    CHECK(near(pz_hw_rows_eff(&hw, 1), 0.1, 1e-12) && near(pz_hw_rows_eff(&hw, 0.5), 0.1, 1e-12));
    CHECK(near(pz_hw_rows_eff(&hw, 8), 0.4, 1e-12) && near(pz_hw_rows_eff(&hw, 4096), 1, 1e-12));
    CHECKF(near(pz_hw_rows_eff(&hw, 2), 0.2, 1e-12), "%g", pz_hw_rows_eff(&hw, 2));  // a third of the way in log M
    CHECKF(near(pz_hw_rows_eff(&hw, 64), 0.7, 1e-12), "%g", pz_hw_rows_eff(&hw, 64));
    CHECK(pz_hw_rows_eff(h100, 7) == 1.0);  // GPU files carry no table
    CHECK(parse_with("\"launch_overhead_s\":4e-6,", "\"launch_overhead_s\":4e-6,\"cost_params\":{\"gemm_rows_eff\":"
                     "[[8,0.4],[1,0.1]]},", err) == -1);
    CHECKF(strstr(err, "gemm_rows_eff[1]") && strstr(err, "ascending"), "%s", err);
    CHECK(parse_with("\"launch_overhead_s\":4e-6,", "\"launch_overhead_s\":4e-6,\"cost_params\":{\"gemm_rows_eff\":"
                     "[]},", err) == -1);
    // A compute-bound FFN pass of 8 rows on a device whose 8-row products run at
    // 0.4 of the rate: its compute side is 2.5x; a 512-row pass is unchanged.
    static pz_config c;
    c = llama(1, 4096, 32, 8, 14336);
    pz_hw slow = *h100, flat = *h100;
    slow.mem_bw = flat.mem_bw = 1e15;  // make every pass compute-bound
    slow.n_rows_eff = hw.n_rows_eff;
    memcpy(slow.rows_eff_m, hw.rows_eff_m, sizeof hw.rows_eff_m);
    memcpy(slow.rows_eff, hw.rows_eff, sizeof hw.rows_eff);
    pz_cost_params p = pz_cost_default_params();
    pz_layer_spec l = c.layers[0];
    pz_cost a, b;
    pz_scenario d8 = sc(PZ_PHASE_DECODE, 8, 512), p512 = sc(PZ_PHASE_PREFILL, 1, 512);
    CHECK(pz_cost_ffn(&c, &l, &flat, &p, &d8, &a, err) == 0 && pz_cost_ffn(&c, &l, &slow, &p, &d8, &b, err) == 0);
    CHECKF(near(b.compute_s, a.compute_s / 0.4, 1e-9), "%g vs %g", b.compute_s, a.compute_s / 0.4);
    CHECK(pz_cost_ffn(&c, &l, &flat, &p, &p512, &a, err) == 0 && pz_cost_ffn(&c, &l, &slow, &p, &p512, &b, err) == 0);
    CHECK(near(b.compute_s, a.compute_s, 1e-12));
}

// pricing.h: scenarios, the passes a scenario needs, the serving model (the
// step at the mean context is the mean step over every context, because the
// roofline is affine in the context), plan agreeing with it, measured rows.
static void test_pricing(const pz_hw *hw) {
    char err[PZ_ERRLEN];
    pz_serve_scenario sc;
    CHECK(pz_serve_scenario_parse("output=64,input=100", &sc, err) == 0 && sc.request && sc.input == 100 &&
          sc.output == 64 && !strcmp(sc.name, "input=100,output=64"));
    CHECK(pz_serve_decode_context(&sc) == 132 && pz_serve_context_tokens(&sc) == 164);
    CHECK(pz_serve_scenario_parse(PZ_SERVE_DEFAULT, &sc, err) == 0 && sc.input == 128 && sc.output == 1024);
    CHECK(pz_serve_scenario_parse("input=5", &sc, err) == -1 && strstr(err, "output="));
    CHECK(pz_serve_scenario_parse("decode:0x5", &sc, err) == -1);
    CHECK(pz_serve_scenario_parse("decode:4x512", &sc, err) == 0 && !sc.request && pz_serve_context_tokens(&sc) == 513);
    pz_scenario pass[3];
    pz_serve_scenario_parse("input=128,output=1024", &sc, err);
    CHECK(pz_serve_passes(&sc, 1, pass) == 2 && pass[0].phase == PZ_PHASE_PREFILL && pass[0].len == 128 &&
          pass[1].phase == PZ_PHASE_DECODE && pass[1].batch == 1 && pass[1].len == 640);
    CHECK(pz_serve_passes(&sc, 8, pass) == 3 && pass[1].batch == 8 && pass[2].batch == 1 && pass[2].len == 128);

    static pz_config c;
    c = llama(8, 4096, 32, 8, 14336);
    pz_cost_params p = pz_cost_default_params();
    p.dtype = p.kv_dtype = PZ_DT_E4M3;
    pz_pricer pr = {.model = &c, .hw = *hw, .cp = p};
    const long O = 16, B = 64;
    pz_serve_scenario req = {.request = 1, .input = 2000, .output = O};
    pz_serve_cost k;
    CHECKF(pz_price_serve_model(&pr, &c, &req, B, 1, &k, err) == 0, "%s", err);
    double mean = 0;  // every decode step of a request: contexts I .. I+O-1, mean I + (O-1)/2
    for (long j = 0; j < O; j++) {
        pz_cost f;
        pz_scenario d = {PZ_PHASE_DECODE, B, req.input + j};
        CHECK(pz_cost_forward(&c, hw, &p, &d, &f, err) == 0);
        mean += f.time_s / (double)O;
    }
    pz_cost at;
    pz_scenario mid = {PZ_PHASE_DECODE, B, req.input + (O - 1) / 2};
    pz_scenario mid1 = {PZ_PHASE_DECODE, B, req.input + (O - 1) / 2 + 1};
    pz_cost at1;
    CHECK(pz_cost_forward(&c, hw, &p, &mid, &at, err) == 0 && pz_cost_forward(&c, hw, &p, &mid1, &at1, err) == 0);
    CHECKF(near(mean, 0.5 * (at.time_s + at1.time_s), 1e-9), "affine: %g vs %g", mean, 0.5 * (at.time_s + at1.time_s));
    CHECK(near(k.step_s, at1.time_s, 1e-12));  // c̄ = I + O/2 = I + 8
    CHECK(near(k.time_s, k.prefill_s + (double)O * k.step_s, 1e-12) && k.ttft_s > k.step_s);
    pz_plan pl;
    CHECKF(pz_plan_eval(&c, hw, &p, req.input, O, B, 1, &pl, err) == 0, "%s", err);
    CHECK(near(pl.tpot_s, k.time_s / O, 1e-12) && near(pl.ttft_s, k.ttft_s, 1e-12) && near(pl.step_s, k.step_s, 1e-12));
    CHECK(near(pl.tok_s_replica, pz_serve_throughput(&req, B, k.time_s), 1e-12));

    // Measured rows: looked up exactly, noops free, a missing row names the command that measures it.
    pz_price_row rows[2] = {{"ffn", "swiglu", 14336, "decode:1x640", 2e-3, 1e8, 0},
                            {"head", "head", 0, "decode:1x640", 5e-3, 2e8, 0}};
    pz_pricer mr = {.model = &c, .measured = 1, .rows = rows, .n_rows = 2, .device = "cpu: test", .dtype = "bf16"};
    pz_prof_variant ffn = {.part = PZ_PROF_FFN, .ffn = PZ_FFN_SWIGLU, .size = 14336},
                    noop = {.part = PZ_PROF_ATTN, .attn = PZ_ATTN_NOOP},
                    attn = {.part = PZ_PROF_ATTN, .attn = PZ_ATTN_GQA, .size = 8};
    pz_scenario d1 = {PZ_PHASE_DECODE, 1, 640};
    pz_price pp;
    CHECK(pz_price_pass(&mr, &ffn, &d1, &pp, err) == 0 && pp.time_s == 2e-3 && pp.weight_bytes == 1e8);
    CHECK(pz_price_pass(&mr, &noop, &d1, &pp, err) == 0 && pp.time_s == 0);
    CHECK(pz_price_pass(&mr, &attn, &d1, &pp, err) == -1);
    CHECKF(strstr(err, "no profile of attn gqa 8 for decode:1x640") && strstr(err, "puzzle profile"), "%s", err);
    pz_serve_scenario dpass;
    pz_serve_scenario_parse("decode:1x640", &dpass, err);
    CHECK(pz_price_serve(&mr, &dpass, &ffn, 1, 1, &k, err) == 0 && k.time_s == 2e-3 && k.step_s == 2e-3 &&
          isnan(k.ttft_s));
    CHECK(pz_price_serve(&mr, &dpass, &ffn, 2, 0, &k, err) == -1 && strstr(err, "decode:2x640"));
}

int main(void) {
    pz_hw h100;
    char err[PZ_ERRLEN];
    if (pz_hw_find("H100", NULL, &h100, err)) {
        fprintf(stderr, "cannot load H100: %s\n", err);
        return 1;
    }
    test_hardware_files();
    test_kv_heads_monotone(&h100);
    test_noop_free(&h100);
    test_tp_and_fp8_bytes(&h100);
    test_bandwidth_and_peak_scaling(&h100);
    test_plan_batch_fits(&h100);
    test_rows_eff(&h100);
    test_pricing(&h100);
    return pz_test_finish("test_costmodel");
}
