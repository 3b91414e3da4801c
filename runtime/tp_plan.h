// tp_plan.h — how a (possibly heterogeneous) model splits over `tp`
// tensor-parallel ranks, layer by layer: which query heads, KV heads and
// FFN channels each rank holds, and which layers end in an all-reduce.
// Pure arithmetic on a pz_config, the same on every rank, so every rank
// derives its share without talking to the others; the engine uses it to
// cut its weights and size its KV pools, the cost model to price
// `--budget NxGPU`.
//
// The Megatron split: q/k/v and gate/up are cut by output rows
// ("column-parallel"), o_proj and down_proj by input columns
// ("row-parallel"), and each rank's partial o/down products are summed by
// one all-reduce per sub-block. Per layer:
//   gqa, n_kv >= tp, tp | n_kv:   n_kv/tp KV heads per rank;
//   gqa, n_kv <  tp, n_kv | tp:   one KV head per rank, each head held by
//                                 tp/n_kv ranks (replicas; rank r holds
//                                 head r / (tp/n_kv)), as vLLM does;
//   gqa, otherwise (e.g. n_kv 2, tp 3): the whole sub-block is replicated
//                                 (every rank computes it, no all-reduce);
//   linear (one hidden x hidden matrix) and noop: replicated / nothing.
//   swiglu: channels split in units of `align` (16 keeps FP8 products
//           legal), the last ranks taking the remainder; a rank may get
//           zero channels when n_ff/align < tp and still joins the
//           all-reduce.
// Query heads must divide evenly (n_head % tp == 0): the model is refused
// otherwise.
#ifndef PZ_TP_PLAN_H
#define PZ_TP_PLAN_H

#include "config.h"

typedef enum {
    PZ_TP_NONE = 0,       // noop: nothing to hold or compute
    PZ_TP_SHARDED = 1,    // split over the ranks, all-reduce after the row-parallel product
    PZ_TP_REPLICATED = 2  // every rank holds and computes the whole sub-block
} pz_tp_mode;

typedef struct {
    pz_tp_mode attn_mode, ffn_mode;
    // Attention (gqa). Sharded: query heads [q_head0, q_head0+n_q) and KV
    // heads [kv_head0, kv_head0+n_kv) of the parent's numbering; q/k/v rows
    // and o columns follow (times head_dim). Replicated: all of them.
    int q_head0, n_q;
    int kv_head0, n_kv;
    int kv_replicas;      // ranks holding each of this rank's KV heads (1: no replication)
    // FFN (swiglu): channels [ff0, ff0+n_ff) of gate/up rows and down columns.
    int ff0, n_ff;
    int all_reduces;      // per forward pass of this layer: 0, 1 or 2
    long long params;     // weight elements this rank holds for the layer (norms included)
} pz_tp_layer;

// Checks that c can run on tp ranks (tp >= 1, n_head % tp == 0).
int pz_tp_check(const pz_config *c, int tp, char *err);

// Rank `rank`'s share of layer `layer`. align >= 1 (16 for FP8 products).
int pz_tp_plan_layer(const pz_config *c, int layer, int tp, int rank, int align, pz_tp_layer *out,
                     char *err);

// Start and length of rank's share of n items cut in units of align
// (balanced over ranks by units; the last unit may be short).
void pz_tp_split(int n, int tp, int rank, int align, int *off, int *len);

// Test hook for one rank's failure (tests/test_tp_fault.sh, docs/TP.md):
// with PZ_TP_FAULT="WHAT@RANK" or "WHAT:N@RANK" in the environment, the N
// (1 without ":N") when what and rank match, else 0. WHAT: "load" (the
// command fails after loading its shard), "step" (the engine's N-th
// forward pass fails halfway through its layers), "comm" (the N-th pass
// leaves its collectives out of step: a failed all-reduce).
int pz_tp_fault(const char *what, int rank);

#endif
