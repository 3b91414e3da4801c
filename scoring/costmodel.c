// costmodel.c — the roofline cost model (see costmodel.h for the equations).
#include "costmodel.h"

#include <math.h>
#include <string.h>

#include "common.h"

#define ACT_BYTES 2.0  // activations between kernels stay bf16

pz_cost_params pz_cost_default_params(void) {
    pz_cost_params p;
    memset(&p, 0, sizeof p);
    p.dtype = PZ_DT_BF16;
    p.kv_dtype = PZ_DT_BF16;
    p.tp = 1;
    p.eff_gemm = 0.55;
    p.eff_attn = 0.50;
    p.eff_mem = 0.80;
    p.eff_link = 0.70;
    p.kernels_gqa = 5;     // norm, qkv GEMM, rope + KV write, attention, o GEMM
    p.kernels_swiglu = 4;  // norm, gate/up GEMM, silu·mul, down GEMM
    p.kernels_linear = 2;  // norm, GEMM
    p.mem_util = 0.95;
    p.reserve_bytes = 2.0 * 1024 * 1024 * 1024;
    p.max_step_tokens = 8192;
    p.max_batch = 2048;
    return p;
}

int pz_cost_dtype_parse(const char *s, pz_dt *d) {
    pz_dt t;
    if (pz_dt_parse(s, &t) || (t != PZ_DT_BF16 && t != PZ_DT_E4M3)) return -1;
    *d = t;
    return 0;
}

static double dbytes(pz_dt d) { return (double)pz_dt_size(d); }

static int is_fp8(pz_dt d) { return d == PZ_DT_E4M3 || d == PZ_DT_E5M2; }

static double peak(const pz_hw *hw, pz_dt d) { return is_fp8(d) ? hw->flops_fp8 : hw->flops_bf16; }

static long ceil_div(long a, long b) { return (a + b - 1) / b; }

// GEMM rate for products of `rows` rows: peak · eff_gemm · the device's row factor.
static double gemm_rate(const pz_hw *hw, const pz_cost_params *p, pz_dt d, double rows) {
    return peak(hw, d) * p->eff_gemm * pz_hw_rows_eff(hw, rows);
}

// Local KV heads of a gqa layer under tp, or -1 when it cannot be split.
static int kv_local(int n_kv, int tp) {
    if (n_kv <= 0) return -1;
    if (n_kv >= tp) return n_kv % tp == 0 ? n_kv / tp : -1;
    return tp % n_kv == 0 ? 1 : -1;  // replicated: each rank keeps one head
}

// Adds one roofline operation to *c.
static void add_op(pz_cost *c, double flops, double bytes, double fl_rate, double bw) {
    double tc = flops / fl_rate, tm = bytes / bw;
    c->flops += flops;
    c->bytes += bytes;
    c->compute_s += tc;
    c->memory_s += tm;
    c->roof_s += tc > tm ? tc : tm;
}

// Ring all-reduce of `bytes` over tp devices.
static double allreduce_s(const pz_hw *hw, const pz_cost_params *p, double bytes) {
    if (p->tp <= 1) return 0;
    double t = p->tp;
    return 2 * (t - 1) * hw->link_latency + 2 * (t - 1) / t * bytes / (hw->link_bw * p->eff_link);
}

static double tokens(const pz_scenario *s) {
    return s->phase == PZ_PHASE_PREFILL ? (double)s->batch * (double)s->len : (double)s->batch;
}

static void finish(pz_cost *c) { c->time_s = c->roof_s + c->comm_s + c->launch_s; }

// A linear sub-block (attention or FFN replaced by one [hidden, hidden]
// matrix after the norm): a column-parallel [hidden, hidden/tp] slice whose
// outputs are gathered. Returns 0 so callers can return it directly.
static int cost_linear(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, double T, double rate,
                       double bw, pz_cost *out) {
    const double h = c->hidden, wb = dbytes(p->dtype), cols = (double)ceil_div(c->hidden, p->tp);
    out->weight_bytes = h * cols * wb + h * ACT_BYTES;
    add_op(out, 2 * T * h * cols, out->weight_bytes + ACT_BYTES * T * (h + cols), rate, bw);
    add_op(out, 0, ACT_BYTES * T * 3 * h, 1, bw);  // norm, residual: kernels of their own
    out->comm_s = allreduce_s(hw, p, T * h * ACT_BYTES);
    out->launch_s = p->kernels_linear * hw->launch_overhead;
    finish(out);
    return 0;
}

int pz_cost_attn(const pz_config *c, const pz_layer_spec *l, const pz_hw *hw, const pz_cost_params *p,
                 const pz_scenario *s, pz_cost *out, char *err) {
    memset(out, 0, sizeof *out);
    if (l->attn == PZ_ATTN_NOOP) return 0;
    const double h = c->hidden, d = c->head_dim, tp = p->tp, T = tokens(s);
    const double wb = dbytes(p->dtype), kvb = dbytes(p->kv_dtype);
    const double rate = gemm_rate(hw, p, p->dtype, T), bw = hw->mem_bw * p->eff_mem;
    if (l->attn == PZ_ATTN_LINEAR) return cost_linear(c, hw, p, T, rate, bw, out);
    if (c->n_head % p->tp != 0)
        return pz_err(err, "tp %d does not divide the %d query heads", p->tp, c->n_head);
    int kvl = kv_local(l->n_kv, p->tp);
    if (kvl < 0)
        return pz_err(err, "tp %d cannot split %d KV heads (needs tp | n_kv or n_kv | tp)", p->tp, l->n_kv);
    const double hq = c->n_head / tp, qkv = (hq + 2.0 * kvl) * d;
    out->weight_bytes = (h * qkv + hq * d * h) * wb + h * ACT_BYTES;
    out->kv_bytes_per_token = 2.0 * kvl * d * kvb;
    // GEMMs (q/k/v, o): weights, inputs and outputs.
    add_op(out, 2 * T * (h * qkv + hq * d * h), out->weight_bytes + ACT_BYTES * T * (2 * h + qkv + hq * d), rate, bw);
    // Norm, RoPE and residual traffic: kernels of their own, memory-bound
    // even when the GEMMs are compute-bound (large batches), so not hidden
    // under the GEMMs' roof.
    add_op(out, 0, ACT_BYTES * T * (2 * h + 2 * qkv + hq * d), 1, bw);
    // Attention core: scores and weighted values against the KV cache.
    const double B = (double)s->batch, L = (double)s->len, kvt = out->kv_bytes_per_token;
    double fl, by;
    if (s->phase == PZ_PHASE_PREFILL) {
        fl = 4 * B * hq * d * L * (L + 1) / 2;  // causal
        by = 2 * B * L * kvt;                  // write the cache, read it back once
    } else {
        fl = 4 * B * hq * d * (L + 1);
        by = B * (L + 1) * kvt;  // read the context, write the new token
    }
    add_op(out, fl, by, peak(hw, PZ_DT_BF16) * p->eff_attn, bw);
    out->comm_s = allreduce_s(hw, p, T * h * ACT_BYTES);
    out->launch_s = p->kernels_gqa * hw->launch_overhead;
    finish(out);
    return 0;
}

int pz_cost_ffn(const pz_config *c, const pz_layer_spec *l, const pz_hw *hw, const pz_cost_params *p,
                const pz_scenario *s, pz_cost *out, char *err) {
    memset(out, 0, sizeof *out);
    if (l->ffn == PZ_FFN_NOOP) return 0;
    const double h = c->hidden, T = tokens(s), wb = dbytes(p->dtype);
    const double rate = gemm_rate(hw, p, p->dtype, T), bw = hw->mem_bw * p->eff_mem;
    if (l->ffn == PZ_FFN_LINEAR) return cost_linear(c, hw, p, T, rate, bw, out);
    if (l->n_ff <= 0) return pz_err(err, "swiglu FFN with width %d", l->n_ff);
    const double nf = (double)ceil_div(l->n_ff, p->tp);  // columns per rank, padded
    out->weight_bytes = 3 * h * nf * wb + h * ACT_BYTES;
    add_op(out, 6 * T * h * nf, out->weight_bytes + ACT_BYTES * T * (2 * h + 3 * nf), rate, bw);
    add_op(out, 0, ACT_BYTES * T * (2 * h + 2 * nf), 1, bw);  // norm, silu·mul, residual: own kernels
    out->comm_s = allreduce_s(hw, p, T * h * ACT_BYTES);
    out->launch_s = p->kernels_swiglu * hw->launch_overhead;
    finish(out);
    return 0;
}

static double vocab_local(const pz_config *c, const pz_cost_params *p) { return (double)ceil_div(c->vocab, p->tp); }

void pz_cost_embed(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, const pz_scenario *s, pz_cost *out) {
    memset(out, 0, sizeof *out);
    const double h = c->hidden, T = tokens(s);
    out->weight_bytes = vocab_local(c, p) * h * ACT_BYTES;  // bf16 table, vocab-parallel
    add_op(out, 0, 2 * T * h * ACT_BYTES, 1, hw->mem_bw * p->eff_mem);
    out->comm_s = allreduce_s(hw, p, T * h * ACT_BYTES);
    out->launch_s = hw->launch_overhead;
    finish(out);
}

void pz_cost_head(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, const pz_scenario *s, pz_cost *out) {
    memset(out, 0, sizeof *out);
    const double h = c->hidden, B = (double)s->batch, vl = vocab_local(c, p);
    const double w = vl * h * ACT_BYTES;  // bf16 LM head (kept unquantized, as vLLM/TRT-LLM do)
    out->weight_bytes = (c->tie_embeddings ? 0 : w) + h * ACT_BYTES;
    // Final norm over all tokens, then logits for the last token of each sequence.
    add_op(out, 0, 2 * tokens(s) * h * ACT_BYTES, 1, hw->mem_bw * p->eff_mem);
    add_op(out, 2 * B * h * vl, w + B * (h * ACT_BYTES + vl * 4), gemm_rate(hw, p, PZ_DT_BF16, B),
           hw->mem_bw * p->eff_mem);
    if (p->tp > 1) {  // all-gather fp32 logits
        double t = p->tp;
        out->comm_s = (t - 1) * hw->link_latency + (t - 1) / t * B * c->vocab * 4.0 / (hw->link_bw * p->eff_link);
    }
    out->launch_s = 2 * hw->launch_overhead;
    finish(out);
}

static void accumulate(pz_cost *sum, const pz_cost *c) {
    sum->time_s += c->time_s;
    sum->roof_s += c->roof_s;
    sum->compute_s += c->compute_s;
    sum->memory_s += c->memory_s;
    sum->comm_s += c->comm_s;
    sum->launch_s += c->launch_s;
    sum->flops += c->flops;
    sum->bytes += c->bytes;
    sum->weight_bytes += c->weight_bytes;
    sum->kv_bytes_per_token += c->kv_bytes_per_token;
}

int pz_cost_check(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, char *err) {
    if (p->tp < 1) return pz_err(err, "tp must be at least 1 (got %d)", p->tp);
    if (c->n_layer <= 0 || c->hidden <= 0 || c->n_head <= 0 || c->head_dim <= 0 || c->vocab <= 0)
        return pz_err(err, "model config has non-positive sizes");
    if (p->dtype == PZ_DT_E4M3 && hw->flops_fp8 <= 0)
        return pz_err(err, "%s has no fp8 tensor cores; use --dtype bf16", hw->name);
    if (c->n_head % p->tp != 0)
        return pz_err(err, "tp %d does not divide the %d attention heads", p->tp, c->n_head);
    for (int i = 0; i < c->n_layer; i++) {
        const pz_layer_spec *l = &c->layers[i];
        if (l->attn == PZ_ATTN_GQA && kv_local(l->n_kv, p->tp) < 0)
            return pz_err(err, "layer %d: tp %d cannot split %d KV heads (needs tp | n_kv or n_kv | tp)", i, p->tp,
                          l->n_kv);
    }
    return 0;
}

int pz_cost_forward(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, const pz_scenario *s,
                    pz_cost *out, char *err) {
    memset(out, 0, sizeof *out);
    if (pz_cost_check(c, hw, p, err)) return -1;
    pz_cost part;
    pz_cost_embed(c, hw, p, s, &part);
    accumulate(out, &part);
    for (int i = 0; i < c->n_layer; i++) {
        if (pz_cost_attn(c, &c->layers[i], hw, p, s, &part, err)) return -1;
        accumulate(out, &part);
        if (pz_cost_ffn(c, &c->layers[i], hw, p, s, &part, err)) return -1;
        accumulate(out, &part);
    }
    pz_cost_head(c, hw, p, s, &part);
    accumulate(out, &part);
    return 0;
}

void pz_cost_memory(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, long batch, long seq_tokens,
                    pz_mem *out) {
    memset(out, 0, sizeof *out);
    pz_scenario s = {PZ_PHASE_DECODE, 1, 0};
    pz_cost part;
    char err[PZ_ERRLEN];
    double kv_tok = 0, act_max = 0;
    const double h = c->hidden;
    pz_cost_embed(c, hw, p, &s, &part);
    out->weights += part.weight_bytes;
    pz_cost_head(c, hw, p, &s, &part);
    out->weights += part.weight_bytes;
    for (int i = 0; i < c->n_layer; i++) {
        const pz_layer_spec *l = &c->layers[i];
        if (pz_cost_attn(c, l, hw, p, &s, &part, err) == 0) {
            out->weights += part.weight_bytes;
            kv_tok += part.kv_bytes_per_token;
            if (l->attn == PZ_ATTN_GQA) {
                double hq = c->n_head / (double)p->tp, kvl = part.kv_bytes_per_token / (2.0 * c->head_dim * dbytes(p->kv_dtype));
                double a = (hq + 2 * kvl) * c->head_dim + hq * c->head_dim;
                if (a > act_max) act_max = a;
            } else if (l->attn == PZ_ATTN_LINEAR && h > act_max) act_max = h;
        }
        if (pz_cost_ffn(c, l, hw, p, &s, &part, err) == 0) {
            out->weights += part.weight_bytes;
            double a = l->ffn == PZ_FFN_SWIGLU ? 3.0 * ceil_div(l->n_ff, p->tp) : l->ffn == PZ_FFN_LINEAR ? h : 0;
            if (a > act_max) act_max = a;
        }
    }
    out->kv_per_seq = kv_tok * (double)seq_tokens;
    out->kv = out->kv_per_seq * (double)batch;
    // Live activations of the largest step: residual + normed input + the widest
    // sub-block's intermediates, bf16; plus fp32 logits for every sequence.
    double step = (double)batch * (double)seq_tokens;
    if (step > (double)p->max_step_tokens) step = (double)p->max_step_tokens;
    if (step < (double)batch) step = (double)batch;
    out->workspace = step * (2 * h + act_max) * ACT_BYTES + (double)batch * vocab_local(c, p) * 4.0;
    out->reserve = p->reserve_bytes;
    out->total = out->weights + out->kv + out->workspace + out->reserve;
    out->usable = hw->mem_bytes * p->mem_util;
}

int pz_cost_fits(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, long batch, long seq_tokens) {
    pz_mem m;
    pz_cost_memory(c, hw, p, batch, seq_tokens, &m);
    return m.total <= m.usable;
}

long pz_cost_max_batch(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, long seq_tokens) {
    if (!pz_cost_fits(c, hw, p, 1, seq_tokens)) return 0;
    long lo = 1, hi = p->max_batch > 1 ? p->max_batch : 1;  // memory grows with batch: bisect
    if (pz_cost_fits(c, hw, p, hi, seq_tokens)) return hi;
    while (hi - lo > 1) {
        long mid = lo + (hi - lo) / 2;
        if (pz_cost_fits(c, hw, p, mid, seq_tokens)) lo = mid;
        else hi = mid;
    }
    return lo;
}
