// weights.h — the fp32 weights of one library block (an attention half, an
// FFN half, or both for a coupled pair) in one allocation, taken from a
// parent layer, and saved to / loaded from a safetensors file under the
// Hugging Face names of that layer ("model.layers.7.self_attn.k_proj.weight",
// "model.layers.7.mlp.linear_mlp.weight", ...; DeciLM names for linear
// blocks), so a realized child can take the tensors as they are.
#ifndef PZ_BLK_WEIGHTS_H
#define PZ_BLK_WEIGHTS_H

#include <stddef.h>
#include "model.h"
#include "safetensors.h"
#include "space.h"

typedef struct {
    int layer;
    pz_sub_kind sub;       // which halves are present
    pz_variant attn, ffn;  // the variant of each present half
    int hidden, n_head, head_dim;
    // Attention half (sub ATTN or PAIR); NULL where the kind has none.
    float *attn_norm;      // (hidden)                   gqa, linear
    float *wq;             // (n_head*head_dim, hidden)  gqa
    float *wk, *wv;        // (n_kv*head_dim, hidden)    gqa
    float *wo;             // (hidden, n_head*head_dim)  gqa
    float *attn_lin;       // (hidden, hidden)           linear
    // FFN half (sub FFN or PAIR).
    float *ffn_norm;       // (hidden)                   swiglu, linear
    float *gate, *up;      // (n_ff, hidden)             swiglu
    float *down;           // (hidden, n_ff)             swiglu
    float *ffn_lin;        // (hidden, hidden)           linear
    float *arena;          // owns every array above
    size_t n_floats;
} pz_block_weights;

// Zeroed weights of the given shape (attn used when sub is ATTN or PAIR,
// ffn when FFN or PAIR). Free with pz_block_weights_free.
int pz_block_weights_alloc(pz_block_weights *w, const pz_config *c, int layer, pz_sub_kind sub,
                           pz_variant attn, pz_variant ffn, char *err);
void pz_block_weights_free(pz_block_weights *w);

// The parent's own sub-block(s) of layer, converted to fp32.
int pz_block_weights_from_parent(pz_block_weights *w, const pz_model *m, int layer,
                                 pz_sub_kind sub, char *err);

// Number of trainable floats (everything in the arena).
size_t pz_block_weights_count(const pz_block_weights *w);

// Writes w to path (a temporary name, fsync, rename: a file at path is
// always complete) with tensors stored as dtype (PZ_ST_F32 or PZ_ST_BF16)
// and metadata {"block_id", "layer", "sub", "attn", "ffn"}. sha256_hex (may
// be NULL) receives the file's SHA-256 as 64 hex digits.
int pz_block_weights_save(const pz_block_weights *w, const char *path, pz_st_dtype dtype,
                          const char *block_id, char sha256_hex[65], char *err);
// Reads a file written by pz_block_weights_save (F32 or BF16 tensors) for a
// parent of config c; shapes are checked against the metadata.
int pz_block_weights_load(pz_block_weights *w, const pz_config *c, const char *path, char *err);

// SHA-256 of a file as 64 lowercase hex digits (OpenSSL libcrypto).
int pz_sha256_file(const char *path, char hex[65], char *err);

#endif
