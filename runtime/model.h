// model.h — a loaded model: its config and its weights, in memory, in one
// allocation carved by a size table. Weights are fp32, bf16 or FP8 e4m3 with
// scales (quantized GGUF tensors are dequantized at load). Matrices are row-major [out, in] (the
// Hugging Face orientation), and Q/K rows use the Hugging Face RoPE pairing
// (dimension i rotates with i + head_dim/2): GGUF files, whose llama
// converter permutes Q/K rows for adjacent-pair RoPE, are un-permuted here.
//
// Arena layout (pz_model_alloc): each tensor 64-byte aligned, in the order
// of pz_model_weight_at, except that wk and wv directly follow wq, and w_up
// directly follows w_gate, so [q;k;v] and [gate;up] can each be one matrix
// product (the engine checks the adjacency and falls back when a caller
// has pointed the weights elsewhere). The arena is 2 MiB-aligned and
// advised for transparent huge pages. Norm vectors are always fp32.
//
// GGUF: architectures "llama" and "deci" (per-layer head_count,
// head_count_kv and feed_forward_length arrays; head_count 0 = noop
// attention, head_count_kv 0 = linear attention in attn_output, n_ff 0 =
// noop FFN; linear FFNs and noop FFNs after attention as the SwiGLU
// stand-ins of gguf.h, named in puzzle.ffn_kind and checked value by value).
// A tied model has no output.weight. Baked Llama-3 RoPE scaling
// (rope_freqs.weight) is refused.
// Hugging Face: LlamaForCausalLM or DeciLM config.json + safetensors,
// tensors F32, BF16 or F16; every tensor's shape is checked against the
// config. Both formats: a tensor the metadata contradicts (a shape, a layer
// beyond the layer count, a sub-block the metadata says is absent) is an
// error naming the tensor and the metadata values, never reinterpreted.
#ifndef PZ_MODEL_H
#define PZ_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "dtype.h"


typedef struct {
    void *data;       // float* (PZ_DT_F32), uint16_t* bf16 (PZ_DT_BF16) or uint8_t* e4m3
                      // (PZ_DT_E4M3, kernels/fp8.h); NULL if absent
    pz_dt type;
    int rows, cols;   // (out, in)
    float scale;      // e4m3: dequantized value = code · scale (per tensor); else 1
    float x_scale;    // e4m3: static input scale of the activations (checkpoints'
                      // input_scale, from calibration); 0 when not calibrated
    const float *ch_scale;  // e4m3: NULL, or per-output-row scales (rows floats) applied
                            // on top of scale (pz_model_e4m3_head; per-channel models:
                            // scale 1, in m->chs)
} pz_mat;

typedef struct {
    float *attn_norm;          // (hidden); NULL when attention is noop
    pz_mat wq;                 // gqa: (n_head*head_dim, hidden)
    pz_mat wk, wv;             // gqa: (n_kv*head_dim, hidden)
    pz_mat wo;                 // gqa: (hidden, n_head*head_dim); linear: (hidden, hidden)
    float *ffn_norm;           // (hidden); NULL when ffn is noop
    pz_mat w_gate, w_up;       // swiglu: (n_ff, hidden)
    pz_mat w_down;             // swiglu: (hidden, n_ff); linear: (hidden, hidden)
    float k_scale, v_scale;    // FP8 KV cache scales from calibration (0: none)
} pz_layer_weights;

typedef struct {
    pz_config cfg;
    pz_dt wtype;
    pz_mat tok_embd;           // (vocab, hidden)
    float *out_norm;           // (hidden)
    pz_mat lm_head;            // (vocab, hidden); aliases tok_embd when tied
    pz_layer_weights *layers;  // n_layer entries
    void *arena;               // the one allocation holding every weight
    size_t arena_bytes;
    void *head8;               // pz_model_e4m3_head: the e4m3 lm_head (else NULL)
    float *chs;                // per-channel e4m3 models: every matrix's row scales, in
                               // weight-table order (else NULL); owned
    char source[1024];         // path it was loaded from
    char format[16];           // "gguf" or "hf"
    int tp, tp_rank, tp_align; // pz_model_load_shard: a shard of rank tp_rank of tp (the sharded
                               // matrices hold only that rank's rows or columns); else 1, 0, 0
} pz_model;

// Loads a GGUF file or a Hugging Face directory (config.json + safetensors,
// single or sharded), converting weights to wtype. PZ_DT_E4M3 (FP8): the
// model is loaded in fp32 and converted by pz_model_to_e4m3. Returns NULL and fills err
// (naming the file and the problem) on failure.
pz_model *pz_model_load(const char *path, pz_dt wtype, char *err);
// Rank `rank`'s shard of tp tensor-parallel ranks (runtime/tp_plan.h, FFN
// channels in units of align): the same config, replicated tensors whole,
// and of each sharded sub-block only this rank's rows of q/k/v and
// gate/up and columns of o_proj and down_proj, read from the file slice by
// slice (a GGUF tensor is converted whole, one at a time, then sliced), so
// the rank never holds the whole model. Stored shapes are the shard's
// (pz_model_weight_at reports them); shards are not saved or quantized.
// An FP8 checkpoint is sharded as stored (tensor scales are global); with
// wtype PZ_DT_E4M3 from a bf16/f32 source the whole model is loaded and
// quantized (tp 1), since its scales must come from whole tensors: the
// engine then slices it. tp <= 1: pz_model_load. NULL with err on failure,
// including a plan the model does not admit (query heads not divisible).
pz_model *pz_model_load_shard(const char *path, pz_dt wtype, int tp, int rank, int align, char *err);
// Reads only the architecture (no weights): from a GGUF's metadata or a
// directory's config.json (or a config.json path).
int pz_model_load_config(const char *path, pz_config *cfg, char *err);
// Allocates a model with the given config and zeroed weights (for tests,
// and for stages that fill weights themselves). Free with pz_model_free.
pz_model *pz_model_alloc(const pz_config *cfg, pz_dt wtype, char *err);
void pz_model_free(pz_model *m);
// A new model of weight type PZ_DT_E4M3 from src (any type): every matrix
// of the layers in e4m3 with a per-tensor scale amax/448 (round to nearest
// even, kernels/fp8.h), one shared scale for q/k/v and one for gate/up
// (the groups the engine runs as one product; vLLM requantizes fused
// projections to their largest scale likewise); the embedding table and
// lm_head in bf16; norm vectors fp32. x_scale carries over from e4m3
// sources, else 0. NULL with err on a non-finite weight or out of memory.
pz_model *pz_model_to_e4m3(const pz_model *src, char *err);
// The same with per_channel 1: one scale per output row of every matrix
// (amax of the row / 448, 1 for a zero row; pz_mat.scale 1, ch_scale into
// m->chs), as llm-compressor's "channel" strategy; no group sharing needed.
pz_model *pz_model_to_e4m3_ex(const pz_model *src, int per_channel, char *err);
// Runtime option of an e4m3 model: lm_head in e4m3 too, with one scale per
// vocabulary row (amax/448; a per-tensor scale cost 5 % perplexity on
// SmolLM2), in its own allocation (m->head8: the codes, then the row
// scales; a tied head stops aliasing the bf16 embedding, which stays for
// the lookup). FP8 checkpoints keep lm_head in
// bf16, so writers leave this copy out. 0, or -1 with err.
int pz_model_e4m3_head(pz_model *m, char *err);

// Writes m as a Hugging Face DeciLM directory (config.json +
// model.safetensors, sharded above 4 GiB), weights in their stored dtype
// (F32, BF16 or F8_E4M3; norms F32). An e4m3 model is written in the FP8
// layout vLLM and TensorRT-LLM read (docs/FP8.md): each e4m3 matrix X.weight
// with X.weight_scale (F32, 0-dim; [out, 1] with per-channel scales, and then
// quantization_config in compressed-tensors form) and, when calibrated, X.input_scale;
// model.layers.i.self_attn.k_scale / v_scale when calibrated; and
// quantization_config in config.json. HF names (linear blocks as
// self_attn.linear_attn.weight and mlp.linear_mlp.weight; no lm_head.weight
// when tied). The directory is created if missing.
int pz_model_save_hf(const pz_model *m, const char *dir, char *err);

struct pz_tokenizer;
// Writes m (with tokenizer t, may be NULL: no tokenizer keys, only the
// config's bos/eos ids) as a GGUF v3 file: architecture "llama" when every
// layer is gqa + swiglu with the same n_kv and n_ff, else "deci" with
// per-layer int32 arrays (llama.cpp's convention: attention.head_count 0 =
// noop attention, head_count_kv 0 with head_count > 0 = linear attention (in
// attn_output), feed_forward_length 0 = noop FFN; a linear FFN, and a noop
// FFN after attention, as the SwiGLU stand-ins of gguf.h that llama.cpp's
// deci graph computes identically, with puzzle.ffn_kind). Matrices F32 or
// BF16 as stored in m (norms F32), Q/K rows permuted back to the GGUF llama
// converter's layout so that pz_model_load un-permutes them to the same
// weights; general.* keys (architecture, type, name, file_type, alignment
// 32), context length, embedding length, block count, head counts,
// key/value length, rms epsilon, rope dimension count and freq base,
// vocab_size, and the tokenizer (tokenizer.ggml.model "gpt2", pre, tokens,
// token_type, merges, bos/eos/unknown/padding ids, add_bos_token,
// add_eos_token, chat_template). Refused (-1): Llama-3 RoPE scaling (llama.cpp
// needs rope_freqs.weight, which pz_model_load refuses), a model with no
// attention layer, a tokenizer whose size differs from the vocabulary or
// whose pre-tokenizer has no GGUF name. Written to a temporary file beside
// path (path.tmp.XXXXXX), fsynced, renamed. 0, or -1 with err (naming path).
int pz_model_save_gguf(const pz_model *m, const struct pz_tokenizer *t, const char *path, char *err);

// Bytes of weights as stored in memory (a tied lm_head counted once).
size_t pz_model_weight_bytes(const pz_model *m);

// Every weight with its conventional names, in a fixed order (the arena
// order; a tied lm_head is not listed), for writers and `puzzle info`.
typedef struct {
    char name[96];        // Hugging Face name, e.g. "model.layers.3.mlp.up_proj.weight"
    char gguf_name[64];   // GGUF name, e.g. "blk.3.ffn_up.weight"
    const void *data;     // points into m's arena
    pz_dt type;        // norm vectors are always PZ_DT_F32
    int is_matrix;        // 0: a vector of cols elements
    int rows, cols;       // (out, in); vectors: rows = 1
    size_t bytes;
    float scale, x_scale; // matrices: pz_mat's (e4m3 scales); vectors 0
    const float *ch_scale;  // matrices: pz_mat's (per-row e4m3 scales, or NULL)
} pz_weight_info;
int pz_model_n_weights(const pz_model *m);
// Fills out for weight i (0 <= i < pz_model_n_weights); -1 if out of range.
int pz_model_weight_at(const pz_model *m, int i, pz_weight_info *out);

#endif
