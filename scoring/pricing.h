// pricing.h — the cost of a sub-block variant (or a whole model) under a
// serving scenario, in one place for `puzzle search` and `puzzle plan`
// (docs/ARCHITECTURE.md steps 3–4). A price comes either from the roofline cost model
// (costmodel.h, an accelerator described by hardware.h) or from measured
// profile rows (`puzzle profile`, profile.h); both go through the same
// serving model below, so the two commands cannot disagree on what a
// scenario means.
//
// Scenarios:
//   input=I,output=O   serving requests: B sequences in flight per replica
//                      (continuous batching), each prompt of I tokens
//                      generating O tokens.
//   decode:BxC         one decode step of B sequences over C cached tokens.
//   prefill:BxS        one prefill of B prompts of S tokens.
//
// The serving model (one replica, batch B), for a request scenario:
//   prefill(B)  = prefill pass of B prompts of I tokens
//   step(B)     = decode pass of B sequences at the mean context
//                 c̄ = I + O/2 (integer division); every price is affine in
//                 the context (the roofline's only context-dependent term is
//                 the attention core, linear in it; measured attention rows
//                 are too, to first order), so the step at c̄ is the mean
//                 step over the O decode steps
//   time(B)     = prefill(B) + O · step(B): the time in which B sequences
//                 produce B·O tokens (the replacement prompts' prefill is
//                 amortized over the decode steps)
//   TPOT        = time(B) / O;  throughput = B · O / time(B) per replica
//   TTFT        = prefill(1) + step(B): a new prompt's prefill after the step
//                 in flight; queueing behind other prompts is not modelled
//                 (engines that admit many prompts at once report more:
//                 results/costmodel_vs_aiconfigurator.md)
// For a pass scenario the time is the pass's (throughput B/time for decode,
// B·S/time for prefill; TTFT = the time for a prefill pass).
#ifndef PZ_PRICING_H
#define PZ_PRICING_H

#include <stddef.h>

#include "config.h"
#include "costmodel.h"
#include "hardware.h"
#include "profile.h"

// The scenario of `puzzle search` and `puzzle profile` when none is given.
#define PZ_SERVE_DEFAULT "input=128,output=1024"

typedef struct {
    int request;         // 1: input=I,output=O; 0: one pass
    long input, output;  // request
    pz_scenario pass;    // one pass (phase, batch, len)
    char name[64];       // canonical text: "input=128,output=1024", "decode:1x512"
} pz_serve_scenario;

// Parses "input=I,output=O" (either order) or "prefill:BxS" / "decode:BxC".
int pz_serve_scenario_parse(const char *s, pz_serve_scenario *out, char *err);

// The mean decode context c̄ = I + O/2 of a request scenario.
long pz_serve_decode_context(const pz_serve_scenario *sc);
// KV-cache positions one sequence holds at most: I + O (request), C + 1
// (decode pass), S (prefill pass).
long pz_serve_context_tokens(const pz_serve_scenario *sc);
// The passes whose prices the scenario needs at batch B (what `puzzle
// profile` must measure for a cpu search): request: prefill B×I, decode B×c̄,
// and for TTFT prefill 1×I (the same pass when B = 1); else the pass itself
// at batch B. Writes up to 3 into out, returns the count.
int pz_serve_passes(const pz_serve_scenario *sc, long B, pz_scenario out[3]);
// Output tokens/s of one replica that runs the scenario at batch B in time_s.
double pz_serve_throughput(const pz_serve_scenario *sc, long B, double time_s);

// A measured profile row (a cpu search's prices). scenario is the canonical
// pass name (pz_prof_scenario_name).
typedef struct {
    char part[8], kind[16];
    int size;
    char scenario[48];
    double median_s, param_bytes, kv_bytes_per_token;
} pz_price_row;

// Where prices come from. model: the parent whose shapes (hidden, heads,
// vocab) every variant shares. Roofline: hw and cp; measured: rows (borrowed,
// the caller keeps them alive), device and dtype name them in messages.
// measured: 0 the roofline alone; 1 the rows alone (a missing row is an
// error: cpu budgets); PZ_PRICE_MEASURED_WHERE_PROFILED the row where one
// exists, else the roofline (a GPU budget with measured GPU profiles).
enum { PZ_PRICE_MEASURED_WHERE_PROFILED = 2 };
typedef struct {
    const pz_config *model;
    int measured;
    pz_hw hw;
    pz_cost_params cp;
    const pz_price_row *rows;
    int n_rows;
    const char *device, *dtype;
} pz_pricer;

// The price of one pass of one variant, per device.
typedef struct {
    double time_s, weight_bytes, kv_bytes_per_token;
} pz_price;

// v->part says which part (ATTN/FFN: kind and size as in pz_prof_variant;
// EMBED/HEAD: kind and size 0). A noop costs exactly 0. 0, or -1 with err (a
// variant tp cannot split; a measured row that is missing, naming the
// `puzzle profile` command that measures it).
int pz_price_pass(const pz_pricer *pr, const pz_prof_variant *v, const pz_scenario *sc, pz_price *out, char *err);

// Serving costs of one variant (or, summed, of a model) at batch B.
typedef struct {
    double time_s;     // request: prefill(B) + O·step(B); pass: the pass
    double prefill_s;  // request: prefill(B); pass: the pass if a prefill, else 0
    double step_s;     // request: step(B); pass: the pass
    double ttft_s;     // request (want_ttft): prefill(1) + step(B); prefill pass: the pass; else NAN
    double weight_bytes, kv_bytes_per_token;
} pz_serve_cost;

// want_ttft = 0 skips the prefill(1) pass (ttft_s is then the step alone
// for a request). 0, or -1 with err.
int pz_price_serve(const pz_pricer *pr, const pz_serve_scenario *sc, const pz_prof_variant *v, long B, int want_ttft,
                   pz_serve_cost *out, char *err);

// The same for a whole model shaped like c (the pricer's model's widths;
// c's own layers): embedding + every layer's attention and FFN + head.
int pz_price_serve_model(const pz_pricer *pr, const pz_config *c, const pz_serve_scenario *sc, long B,
                         int want_ttft, pz_serve_cost *out, char *err);

#endif
