// fuzz_config.c — libFuzzer entry point for the config.json reader. Inputs
// that parse must also survive the writer: writing and re-reading gives the
// same config (a crash here is a round-trip bug, not just a parser bug).
#include "common.h"
#include "config.h"

#include <stdlib.h>
#include <string.h>

static pz_config a, b;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[PZ_ERRLEN];
    err[0] = 0;
    if (pz_config_from_hf_json(&a, (const char *)data, size, "fuzz", err) != 0) {
        if (!err[0]) __builtin_trap();
        return 0;
    }
    pz_config_n_params(&a);
    pz_config_kv_bytes_per_token(&a, 2);
    char *json = pz_config_to_hf_json(&a);
    if (!json) return 0;
    if (pz_config_from_hf_json(&b, json, strlen(json), "fuzz-rt", err) != 0) __builtin_trap();
    int same = a.n_layer == b.n_layer && a.hidden == b.hidden && a.n_head == b.n_head &&
               a.head_dim == b.head_dim && a.vocab == b.vocab && a.max_ctx == b.max_ctx &&
               a.rope_theta == b.rope_theta && a.norm_eps == b.norm_eps && a.tie_embeddings == b.tie_embeddings &&
               a.bos_id == b.bos_id && a.eos_id == b.eos_id && a.rope_scaling == b.rope_scaling &&
               memcmp(a.layers, b.layers, sizeof a.layers[0] * (size_t)a.n_layer) == 0;
    if (a.rope_scaling == PZ_ROPE_SCALING_LLAMA3)
        same = same && a.rope_factor == b.rope_factor && a.rope_low_freq_factor == b.rope_low_freq_factor &&
               a.rope_high_freq_factor == b.rope_high_freq_factor && a.rope_orig_ctx == b.rope_orig_ctx;
    if (!same) __builtin_trap();
    free(json);
    return 0;
}
