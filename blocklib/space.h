// space.h — the Puzzle search space: which alternative attention and FFN
// sub-blocks the block library builds for each layer of a parent, as a JSON
// file, and the enumeration of the blocks it implies. See docs/ARCHITECTURE.md "The
// pipeline", step 1.
//
// JSON form (what pz_space_to_json writes and pz_space_from_json reads):
//   {
//     "version": 1,
//     "round_to": 256,                 // FFN widths were rounded to this multiple
//     "layers": "all" | [0, 1, 5, ...],
//     "attention": [{"kind": "gqa", "n_kv": 3}, {"kind": "gqa", "n_kv": 1},
//                   {"kind": "linear"}, {"kind": "noop"}],
//     "ffn": [{"kind": "swiglu", "n_ff": 1536}, ..., {"kind": "linear"}, {"kind": "noop"}]
//   }
// The default for a parent (pz_space_default): attention = the parent's GQA,
// GQA with every smaller KV-head count that divides the query heads,
// linear, noop; FFN = the parent's width and 87, 75, 50, 25, 20, 10 % of
// it, each rounded to the nearest multiple of round_to (ties away from
// zero), clamped to [round_to, parent width], duplicates dropped (widest
// first), then linear, noop. round_to must be a multiple of 256 unless the
// parent's own widths are not (see pz_space_validate).
//
// Block ids are stable strings: "L07.attn.gqa_kv1", "L07.attn.linear",
// "L07.ffn.swiglu_768", "L07.ffn.noop" (layer zero-padded to at least two
// digits, more when the model has 100+ layers). Coupled blocks (attention
// and FFN trained together) are "L07.pair.gqa_kv1+swiglu_768".
#ifndef PZ_SPACE_H
#define PZ_SPACE_H

#include <stddef.h>
#include "config.h"

#define PZ_SPACE_MAX_VARIANTS 64

// Which half of a layer a block replaces. PZ_SUB_PAIR: both (coupled BLD).
typedef enum { PZ_SUB_ATTN = 0, PZ_SUB_FFN = 1, PZ_SUB_PAIR = 2 } pz_sub_kind;

// One variant of one half of a layer: its kind, typed by the half it
// belongs to (attn for an attention half, ffn for an FFN half; the other
// member is meaningless), and its size: n_kv for gqa, n_ff for swiglu, 0
// otherwise.
typedef struct {
    union {
        pz_attn_kind attn;
        pz_ffn_kind ffn;
    };
    int size;
} pz_variant;

// 1 when a and b, variants of the given half (PZ_SUB_ATTN or PZ_SUB_FFN),
// are the same kind and size.
int pz_variant_eq(pz_sub_kind half, pz_variant a, pz_variant b);
// 1 when v (of the given half) is linear / noop.
int pz_variant_is_linear(pz_sub_kind half, pz_variant v);
int pz_variant_is_noop(pz_sub_kind half, pz_variant v);

typedef struct {
    int round_to;                              // multiple used for FFN widths (informational after build)
    int all_layers;                            // 1: every layer of the parent
    int n_layers;                              // when !all_layers: the layers listed
    int *layers;                               //   (owned; sorted, unique)
    int n_attn;
    pz_variant attn[PZ_SPACE_MAX_VARIANTS];    // kind: pz_attn_kind
    int n_ffn;
    pz_variant ffn[PZ_SPACE_MAX_VARIANTS];     // kind: pz_ffn_kind
} pz_space;

// The default space for parent c (see the top of this file). round_to <= 0
// means 256. s is overwritten; free with pz_space_free. Returns 0, or -1
// with err filled (a parent without a GQA or SwiGLU layer still gets a
// space: its GQA/SwiGLU lists come from the layers that have them).
int pz_space_default(pz_space *s, const pz_config *c, int round_to, char *err);
void pz_space_free(pz_space *s);

// Reads and validates a space (what = the source, for messages). When c is
// non-NULL the space is also checked against that parent (pz_space_validate).
int pz_space_from_json(pz_space *s, const char *json, size_t len, const char *what,
                       const pz_config *c, char *err);
int pz_space_read_file(pz_space *s, const char *path, const pz_config *c, char *err);
// The JSON text (caller frees), or NULL on out of memory.
char *pz_space_to_json(const pz_space *s);
// Written to path.tmp, then renamed.
int pz_space_write_file(const pz_space *s, const char *path, char *err);

// Checks s against parent c: KV-head counts in 1..max parent n_kv dividing
// n_head; FFN widths in 1..max parent n_ff and, when every parent width is a
// multiple of 256, multiples of 256 too (the widths DeciLM's ffn_mult rule in
// transformers and vLLM can express: others would load the child with the
// wrong shape); layer indices in range; no duplicate variants. Errors name
// the offending entry.
int pz_space_validate(const pz_space *s, const pz_config *c, char *err);

// ---- blocks -----------------------------------------------------------------
typedef struct {
    int layer;
    pz_sub_kind sub;
    pz_variant attn;     // PZ_SUB_ATTN or PZ_SUB_PAIR
    pz_variant ffn;      // PZ_SUB_FFN or PZ_SUB_PAIR
    int is_parent;       // identical to the parent's sub-block(s): copied, not trained
    int needs_training;  // 0 for parent copies and noop (nothing to learn)
    char id[80];
} pz_block;

// Every block of the space for parent c, in a stable order (layer, then
// attention variants in space order, then FFN variants). A variant is
// listed for a layer only when it can be derived from that layer's parent
// sub-block: gqa(n_kv) from a gqa parent with at least n_kv KV heads;
// swiglu(n_ff) from a swiglu parent at least n_ff wide; linear from gqa,
// swiglu or linear; noop always. coupled: instead of the halves, every
// (attention, FFN) pair of a layer is one PZ_SUB_PAIR block.
// *out is malloc'ed (caller frees); returns 0 or -1 with err filled.
int pz_space_blocks(const pz_space *s, const pz_config *c, int coupled, pz_block **out, int *n,
                    char *err);

// Fills b->id from its fields (n_layer decides the zero padding).
void pz_block_make_id(pz_block *b, int n_layer);
// "gqa_kv3", "linear", "noop", "swiglu_768" (into buf; returns buf).
char *pz_variant_name(pz_sub_kind sub, const pz_variant *v, char *buf, size_t cap);

// Shard i of n (0 <= i < n) owns the blocks whose index in the enumeration
// is congruent to i modulo n.
static inline int pz_block_in_shard(int index, int shard_i, int shard_n) {
    return shard_n <= 1 || index % shard_n == shard_i;
}

#endif
