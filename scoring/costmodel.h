// costmodel.h — a roofline model of one forward pass of a heterogeneous
// Llama-family model on an accelerator (hardware.h), per sub-block, so that
// the solver can price every library variant on hardware the user does not
// have, and `puzzle plan` can size deployments (docs/ARCHITECTURE.md step 3).
//
// Time of one operation = max(FLOPs / (peak · eff), bytes / (bandwidth · eff_mem)).
// A sub-block is a few operations (the GEMMs with their weights, inputs and
// outputs; the elementwise kernels — norm, RoPE, SwiGLU product, residual —
// as a memory-bound operation of their own, since they are separate kernels
// that a compute-bound GEMM does not hide; the attention core with its
// KV-cache traffic), each priced by that roofline and summed, plus kernel launches (kernels × launch overhead) and, under tensor
// parallelism, one ring all-reduce of the [tokens, hidden] bf16 output:
//   2·(tp−1)·latency + 2·(tp−1)/tp · bytes / (link bandwidth · eff_link).
// Tensor parallelism (reference §5): query heads and FFN columns split by tp
// (tp must divide the heads; FFN widths are padded up); KV heads split when
// n_kv ≥ tp (tp must divide n_kv), else each rank holds one replicated KV
// head (n_kv must divide tp). A noop sub-block costs exactly nothing: no time,
// no launches, no all-reduce, no weights, no KV cache. The embedding
// (vocab-parallel) and the LM head (vocab-split, logits gathered) are priced
// separately, always in bf16. All figures are per device.
#ifndef PZ_COSTMODEL_H
#define PZ_COSTMODEL_H

#include "config.h"
#include "dtype.h"
#include "hardware.h"

typedef enum { PZ_PHASE_PREFILL = 0, PZ_PHASE_DECODE = 1 } pz_phase;

// One forward pass. Prefill: `batch` prompts of `len` tokens each (causal
// attention, KV written). Decode: `batch` sequences each adding one token to
// a KV cache that already holds `len` tokens.
typedef struct {
    pz_phase phase;
    long batch;
    long len;
} pz_scenario;

typedef struct {
    pz_dt dtype;     // weights and GEMM inputs: bf16, or fp8 (e4m3 weights + activations)
    pz_dt kv_dtype;  // KV-cache storage
    int tp;                // tensor-parallel degree (≥ 1)
    // Efficiency factors (fractions of the data-sheet peaks that real kernels
    // reach); see results/costmodel_validation.md "Calibration" for why.
    double eff_gemm;       // dense GEMMs vs peak FLOP/s (times the device's row factor for a
                           // product of M rows, hardware.h gemm_rows_eff: 1 on the GPU files)
    double eff_attn;       // attention core (flash-attention style) vs peak FLOP/s
    double eff_mem;        // streaming reads/writes vs memory bandwidth
    double eff_link;       // ring all-reduce vs link bandwidth per direction
    int kernels_gqa, kernels_swiglu, kernels_linear;  // kernel launches per sub-block
    // Memory accounting for plans.
    double mem_util;       // fraction of device memory the engine may use
    double reserve_bytes;  // CUDA context, cuBLAS/NCCL workspaces
    long max_step_tokens;  // prefill chunk size: most tokens in one forward pass
    long max_batch;        // scheduler cap on concurrent sequences
} pz_cost_params;

// The defaults: bf16, bf16 KV, tp 1, eff_gemm 0.55, eff_attn 0.50,
// eff_mem 0.80, eff_link 0.70, 5/4/2 kernels per gqa/swiglu/linear sub-block,
// mem_util 0.95, reserve 2 GiB, 8192-token steps, max batch 2048.
pz_cost_params pz_cost_default_params(void);

typedef struct {
    double time_s;        // roof_s + comm_s + launch_s
    double roof_s;        // Σ over operations of max(compute, memory)
    double compute_s;     // Σ of the compute sides
    double memory_s;      // Σ of the memory sides
    double comm_s;        // all-reduce / all-gather time
    double launch_s;      // kernel launches
    double flops;         // FLOPs on one device
    double bytes;         // device-memory traffic on one device
    double weight_bytes;  // weights resident on one device
    double kv_bytes_per_token;  // KV cache per token of context on one device
} pz_cost;

// The types the model prices: "bf16" or "fp8" (e4m3). 0, or -1 (d untouched).
int pz_cost_dtype_parse(const char *s, pz_dt *d);

// Checks that the whole model can run with p->tp on hw in p->dtype (head
// divisibility per layer, fp8 support, positive sizes). 0, or -1 with err.
int pz_cost_check(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, char *err);

// Per-variant costs (what the solver needs): the attention or FFN sub-block
// described by l (only l->attn/n_kv, or l->ffn/n_ff, is read) in a model
// shaped like c, for one scenario. Return 0, or -1 with err when the
// variant cannot be split p->tp ways. *out is zeroed first.
int pz_cost_attn(const pz_config *c, const pz_layer_spec *l, const pz_hw *hw, const pz_cost_params *p,
                 const pz_scenario *s, pz_cost *out, char *err);
int pz_cost_ffn(const pz_config *c, const pz_layer_spec *l, const pz_hw *hw, const pz_cost_params *p,
                const pz_scenario *s, pz_cost *out, char *err);
// Embedding lookup, and final norm + LM head (logits for one token per sequence).
void pz_cost_embed(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, const pz_scenario *s, pz_cost *out);
void pz_cost_head(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, const pz_scenario *s, pz_cost *out);

// The whole forward pass: embedding + every layer + head, summed into *out.
int pz_cost_forward(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, const pz_scenario *s,
                    pz_cost *out, char *err);

// Memory on one device for `batch` sequences of up to `seq_tokens` tokens.
typedef struct {
    double weights;     // all weights held by this device
    double kv_per_seq;  // KV cache of one sequence of seq_tokens
    double kv;          // batch · kv_per_seq
    double workspace;   // activations of the largest forward pass + logits
    double reserve;     // p->reserve_bytes
    double total;       // weights + kv + workspace + reserve
    double usable;      // hw->mem_bytes · p->mem_util
} pz_mem;

void pz_cost_memory(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, long batch, long seq_tokens,
                    pz_mem *out);
// 1 when `batch` sequences of seq_tokens fit (total ≤ usable).
int pz_cost_fits(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, long batch, long seq_tokens);
// The largest batch ≤ p->max_batch that fits; 0 when not even one does.
long pz_cost_max_batch(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, long seq_tokens);

#endif
