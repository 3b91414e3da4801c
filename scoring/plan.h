// plan.h — capacity planning on top of the cost model: for a model, an
// accelerator and a serving scenario (input and output lengths), the memory
// per GPU, the largest batch, throughput, time to first token and time per
// output token; and, given a request rate and latency SLOs, the fewest GPUs
// that serve it. Used by `puzzle plan`.
//
// Serving model: pricing.h's, the one `puzzle search` uses (one replica =
// tp GPUs, continuous batching at a steady `batch` sequences in flight;
// TPOT = (prefill(B) + output · step(B)) / output with the step at the mean
// decode context; throughput = B / TPOT; TTFT = prefill(1) + step(B)).
#ifndef PZ_PLAN_H
#define PZ_PLAN_H

#include "costmodel.h"

typedef struct {
    int tp, replicas, gpus;
    long batch;           // sequences in flight per replica
    long max_batch;       // largest batch that fits
    pz_mem mem;           // per GPU at `batch`
    double prefill_s;     // prefill of `batch` prompts
    double step_s;        // mean decode step at `batch`
    double ttft_s, tpot_s;
    double tok_s_replica, tok_s_gpu, tok_s_total;  // output tokens/s
    double req_s_total;   // completed requests/s
} pz_plan;

// Evaluates one configuration: p->tp, `gpus` in total (a multiple of tp),
// batch 0 = the largest that fits. 0, or -1 with err (does not fit, bad tp...).
int pz_plan_eval(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, long input, long output, long batch,
                 int gpus, pz_plan *out, char *err);

// SLO sizing: the smallest number of GPUs (over tp ∈ {1,2,4,8} that the model
// admits, or only p->tp when fixed_tp, and over the batch) whose replicas meet
// TTFT ≤ ttft_s and TPOT ≤ tpot_s while serving qps requests/s (at full
// utilization). found = 0 when nothing meets them; `binding` then names the
// bound that fails ("memory", "ttft", "tpot", "ttft+tpot") and `why` explains.
typedef struct {
    int found;
    pz_plan best;         // when found
    char binding[16];
    char why[256];
} pz_plan_slo;

int pz_plan_for_slo(const pz_config *c, const pz_hw *hw, const pz_cost_params *p, int fixed_tp, long input,
                    long output, double qps, double ttft_s, double tpot_s, pz_plan_slo *out, char *err);

#endif
