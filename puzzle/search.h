// search.h — the Puzzle search over a run's library (docs/ARCHITECTURE.md step 4):
// what `puzzle search` puts into the solver. It reads the library's blocks
// and their replace-1-block scores from the run database, prices every
// variant under a budget and a scenario, builds one multiple-choice problem
// per batch size (solver/solver.h), and turns a choice back into a child:
// per-layer variants and block ids, predicted time, throughput, memory and
// parameters.
//
// Budgets: "N x NAME" (e.g. "8xH100"): N accelerators of a hardware file
// (scoring/hardware/), priced by the roofline cost model, as tp-way tensor
// parallel replicas (N/tp of them); "cpu": the local CPU, priced by the
// measured profiles that `puzzle profile` stored in the run database.
//
// Scenarios and the serving model: pricing.h (the one `puzzle plan` uses):
// per item, time = prefill(B×I) + O · step(B, mean context I+O/2),
// throughput = replicas · B·O / Σ time, latency = the step, TTFT =
// prefill(1×I) + step; decode:BxC and prefill:BxS price one pass.
// The prices themselves come from pricing.h too; this file loads the
// library, the scores and the measured rows, and adapts the prices to
// solver rows.
// The embedding and the LM head are priced apart and added to every child.
//
// Rows (each named; the solver only sees the part that depends on the
// choice, the fixed part is moved to the right-hand side):
//   throughput  Σ time ≤ B·O / (target per replica) − fixed  (--throughput, --speedup)
//   memory      Σ weights + B·context·Σ KV per token ≤ usable − fixed (per device)
//   latency     Σ step ≤ L − fixed        (--max-latency)
//   ttft        Σ ttft ≤ T − fixed        (--max-ttft)
//   params      Σ params ≤ P − fixed      (--max-params)
#ifndef PZ_SEARCH_H
#define PZ_SEARCH_H

#include <stddef.h>

#include "config.h"
#include "costmodel.h"
#include "hardware.h"
#include "pricing.h"
#include "rundb.h"
#include "solver.h"
#include "space.h"

// The scenario (pricing.h owns its parsing and the serving model).
typedef pz_serve_scenario pz_search_scenario;
#define pz_search_scenario_parse pz_serve_scenario_parse

typedef struct {
    int cpu;           // "cpu"
    int n_devices;     // N of "N x NAME" (1 for cpu)
    pz_hw hw;          // the accelerator (GPU budgets)
    char name[96];     // canonical: "8xh100_sxm", "cpu"
} pz_search_budget;

// Parses "cpu" or "N x NAME" / "NxNAME" (NAME as hardware.h finds it).
int pz_search_budget_parse(const char *s, const char *hw_dir, pz_search_budget *b, char *err);

// User limits (0 or NAN: not set).
typedef struct {
    double throughput;   // output tokens/s in total
    double speedup;      // × the parent's best throughput under the same budget and scenario
    double max_memory;   // bytes per device (replaces the device's usable memory)
    double max_latency;  // seconds
    double max_ttft;     // seconds
    double max_params;   // parameters
} pz_search_limits;

typedef enum { PZ_OBJ_KL = 0, PZ_OBJ_LOSS = 1 } pz_search_objective;

// One candidate block of the problem: a half (or, coupled, both halves) of a layer.
typedef struct {
    int layer;
    pz_sub_kind sub;       // PZ_SUB_ATTN, PZ_SUB_FFN, or PZ_SUB_PAIR
    pz_variant attn, ffn;  // the variant(s) it sets
    char attn_block[80];   // block id of the attention half ("" when none: the parent's half outside the library)
    char ffn_block[80];
    int is_parent;         // the parent's own variant(s)
    int family;            // FFN width index (uniform baseline), -1 otherwise
    int noop;              // removes its half(s)
    double score;          // objective contribution (KL or LM-loss change)
} pz_search_item;

typedef struct pz_search pz_search;

// Loads the parent, the library and the scores (data_hash NULL: the scoring
// windows that cover the most blocks) from db, and the prices: for a cpu
// budget the profiles of device (NULL: the only CPU device with profiles)
// and dtype (NULL: the only dtype profiled), else the cost model with cp.
// warn (may be NULL) receives notes such as unscored blocks left out.
pz_search *pz_search_load(pz_rundb *db, const pz_search_budget *b, const pz_search_scenario *sc,
                          const pz_cost_params *cp, pz_search_objective obj, const char *data_hash,
                          const char *device, const char *dtype, char *warn, size_t warn_cap, char *err);
void pz_search_free(pz_search *s);

// The batch sizes to try: the scenario's own (one pass), the given one
// (batch > 0), or for batch 0 (auto) powers of two while the smallest child
// still fits (GPU), or the batches profiled (cpu). Returns the count (≤ cap) or -1.
int pz_search_batches(pz_search *s, long batch, const pz_search_limits *lim, long *out, int cap, char *err);

// Per-batch evaluation of the parent (its best throughput over the batches
// is the reference of --speedup).
typedef struct {
    long batch;
    int fits;              // the parent fits the memory row (by itself)
    double time_s;         // scenario time (Σ items + fixed)
    double throughput;     // tokens/s in total
    double latency_s, ttft_s, memory_bytes, params;
} pz_search_eval;

// Builds the problem for one batch with the rows of lim (speedup needs
// ref_throughput > 0). Free with pz_solver_free.
pz_solver *pz_search_problem(pz_search *s, long batch, const pz_search_limits *lim, double ref_throughput,
                             char *err);

// Predicted numbers of a choice (item index per group of a problem built
// for that batch); choice NULL = the parent.
int pz_search_evaluate(pz_search *s, long batch, const int *choice, pz_search_eval *out, char *err);

// Groups and items of the problems (the same for every batch).
int pz_search_n_groups(const pz_search *s);
int pz_search_n_items(const pz_search *s, int group);
const pz_search_item *pz_search_item_at(const pz_search *s, int group, int item);
const pz_config *pz_search_parent(const pz_search *s);
const char *pz_search_data_hash(const pz_search *s);
long pz_search_data_seq_len(const pz_search *s);  // window length of those scores
const char *pz_search_device(const pz_search *s);  // "cpu: ..." or the hardware id
const char *pz_search_dtype(const pz_search *s);
int pz_search_tp(const pz_search *s);
// Prices GPU budgets at tensor-parallel degree tp from now on: 0, or -1 with
// err when tp does not divide the devices or the parent cannot be split tp ways.
int pz_search_set_tp(pz_search *s, int tp, char *err);
int pz_search_replicas(const pz_search *s);
// The child's layer specs for a choice.
void pz_search_child_layers(const pz_search *s, const int *choice, pz_layer_spec *layers);

// Search in context: replaces the score of item i of group g (problems built
// after this call use it).
void pz_search_set_score(pz_search *s, int g, int i, double score);
// The choice (item per group) of a stored solution's layers: the items whose
// variants the layers hold. 0, or -1 with err filled.
int pz_search_choice_of(const pz_search *s, const pz_rundb_solution_layer *layers, int n_layers, int *choice,
                        char *err);

// One human line per violated row of an infeasible problem, in the terms of
// the limits ("throughput: the fastest child that meets the other rows reaches
// 1.74x the parent (asked 2x)"). ref_throughput as given to pz_search_problem.
int pz_search_explain(pz_search *s, long batch, const pz_solver_infeasibility *inf, double ref_throughput,
                      char *buf, size_t cap);

#endif
