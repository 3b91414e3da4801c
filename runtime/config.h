// config.h — the architecture of a (possibly heterogeneous) Llama-family
// model, one definition used by every stage. See docs/ARCHITECTURE.md "Heterogeneous
// model semantics". Read from a GGUF file's metadata or a Hugging Face
// config.json (LlamaForCausalLM or DeciLM / nemotron-nas), and written back
// as a DeciLM config.json.
#ifndef PZ_CONFIG_H
#define PZ_CONFIG_H

#include <stddef.h>
#include "dtype.h"

typedef enum { PZ_ATTN_GQA = 0, PZ_ATTN_LINEAR = 1, PZ_ATTN_NOOP = 2 } pz_attn_kind;
typedef enum { PZ_FFN_SWIGLU = 0, PZ_FFN_LINEAR = 1, PZ_FFN_NOOP = 2 } pz_ffn_kind;

typedef struct {
    pz_attn_kind attn;
    int n_kv;          // KV heads, gqa only (0 otherwise); divides n_head
    pz_ffn_kind ffn;
    int n_ff;          // intermediate width, swiglu only (0 otherwise)
} pz_layer_spec;

typedef enum { PZ_ROPE_SCALING_NONE = 0, PZ_ROPE_SCALING_LLAMA3 = 1 } pz_rope_scaling;

#define PZ_MAX_LAYERS 512

typedef struct {
    int n_layer;
    int hidden;          // model width
    int n_head;          // query heads
    int head_dim;        // per head (usually hidden / n_head)
    int vocab;
    int max_ctx;         // max_position_embeddings / context_length
    float rope_theta;
    float norm_eps;
    int tie_embeddings;  // lm_head shares token embedding
    int bos_id, eos_id;  // -1 when unknown
    // Llama-3 style frequency scaling (rope_scaling.rope_type == "llama3").
    pz_rope_scaling rope_scaling;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_ctx;
    // The checkpoint's quantization (config.json "quantization_config"):
    // quant PZ_DT_E4M3 for quant_method "fp8" (float8_e4m3fn weights with
    // weight_scale; quant_static: activation_scheme "static", input_scale
    // tensors present; quant_kv: k_scale / v_scale tensors present), else
    // PZ_DT_F32 (0: none). quant_method "compressed-tensors" with float
    // 8-bit weights (llm-compressor's FP8 schemes) reads the same way, with
    // quant_channel: weights strategy "channel" (weight_scale [out, 1]);
    // written so when a matrix has per-channel scales. docs/FP8.md.
    pz_dt quant;
    int quant_static, quant_kv, quant_channel;
    pz_layer_spec layers[PZ_MAX_LAYERS];
} pz_config;

// Checks internal consistency (positive sizes, n_kv divides n_head, ...).
int pz_config_validate(const pz_config *c, char *err);

// Parses a Hugging Face config.json text (Llama or DeciLM). `what` names the
// source in messages (usually the path).
int pz_config_from_hf_json(pz_config *c, const char *json, size_t len, const char *what, char *err);
int pz_config_from_hf_file(pz_config *c, const char *path, char *err);

// Serializes c as a DeciLM config.json ("architectures": ["DeciLMForCausalLM"],
// "model_type": "nemotron-nas", block_configs). Caller frees the string.
char *pz_config_to_hf_json(const pz_config *c);
int pz_config_write_hf_file(const pz_config *c, const char *path, char *err);

// 1 when every layer is full attention with the same KV-head count and a SwiGLU
// of the same width: a plain Llama, which a LlamaForCausalLM config describes.
int pz_config_is_plain_llama(const pz_config *c);
// With llama set (c must be plain), a LlamaForCausalLM config.json
// ("model_type": "llama", num_key_value_heads, intermediate_size; no
// block_configs) with the same fields otherwise: what serving engines read
// without remote code, where "nemotron-nas" needs NVIDIA's configuration_decilm.py.
char *pz_config_to_hf_json_as(const pz_config *c, int llama);
int pz_config_write_hf_file_as(const pz_config *c, const char *path, int llama, char *err);

// DeciLM rules: n_kv = n_head / n_heads_in_group;
// n_ff = round_up(int(2 * ffn_mult * hidden / 3), 256).
int pz_decilm_ffn_width(double ffn_mult, int hidden);
// Inverse used when writing: an ffn_mult that maps back to exactly n_ff
// (searching for the smallest such value with few decimals); -1 when
// n_ff is not representable (not a multiple of 256), in which case the
// writer also emits "intermediate_size" per block.
double pz_decilm_ffn_mult(int n_ff, int hidden);

// Totals.
size_t pz_config_n_params(const pz_config *c);            // incl. embeddings (once if tied)
size_t pz_config_kv_bytes_per_token(const pz_config *c, int bytes_per_elem);

const char *pz_attn_kind_name(pz_attn_kind k);  // "gqa", "linear", "noop"
const char *pz_ffn_kind_name(pz_ffn_kind k);    // "swiglu", "linear", "noop"
// The inverses (s may be NULL): 0 with *out set, or -1 for an unknown name.
int pz_attn_kind_parse(const char *s, pz_attn_kind *out);
int pz_ffn_kind_parse(const char *s, pz_ffn_kind *out);

#endif
