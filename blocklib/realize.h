// realize.h — the child model of a search solution, assembled in memory from
// the parent and library block files (docs/ARCHITECTURE.md step 5): the parent's
// embeddings, final norm and LM head; per layer and half, the parent's own
// sub-block, a library block's tensors, or nothing (noop).
//
// The result is an ordinary pz_model (pz_model_alloc layout, so the engine
// runs its fused [q;k;v] and [gate;up] products), ready for the engine or
// for pz_model_save_hf.
#ifndef PZ_BLK_REALIZE_H
#define PZ_BLK_REALIZE_H

#include "model.h"
#include "space.h"

typedef struct {
    pz_variant attn, ffn;   // the child's variant of each half (kind: pz_attn_kind / pz_ffn_kind;
                            // size n_kv for gqa, n_ff for swiglu, 0 otherwise)
    const char *attn_file;  // block file (pz_block_weights_save format) holding this attention half,
                            // or NULL: the parent's own attention (attn must then equal the parent's variant), or noop
    const char *ffn_file;   // likewise for the FFN half. A coupled PAIR file may be named in both fields
                            // (it is then read once).
} pz_realize_layer;

// The child of parent with layers[0 .. parent->cfg.n_layer-1]: config = the
// parent's config with layers[l] replaced by the given variants (everything
// else, tie_embeddings included, is the parent's); weights stored as
// parent->wtype (fp32 block tensors rounded to bf16, nearest even, when the
// parent is bf16; parent tensors copied as they are).
//
// A named block file is loaded with pz_block_weights_load and must be for
// that layer and hold that half (sub attn/ffn/pair) with that variant;
// otherwise the error names the file, the layer and the mismatch. A noop
// half needs no file (one named for it must say noop too). A NULL file for
// a non-noop half requires the parent's variant to equal the requested one
// ("layer 7 attention gqa_kv1 needs a block file: the parent has gqa_kv3").
//
// Returns a new model (caller frees with pz_model_free; it shares nothing
// with the parent or the files), or NULL with err filled. The parent is only
// read. m->source is empty and m->format is "realized".
pz_model *pz_realize_child(const pz_model *parent, const pz_realize_layer *layers, char *err);

#endif
