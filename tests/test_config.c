// test_config.c — HF config.json parsing (Llama, Llama 3.1 rope scaling,
// DeciLM block_configs), validation, parameter and KV totals, the ffn_mult
// rule both ways, writer/reader round trips, and malformed configs.
#include "common.h"
#include "config.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// SmolLM2-135M-Instruct's config.json (abridged to the fields that matter).
static const char *SMOL =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"attention_dropout\":0.0,"
    "\"bos_token_id\":1,\"eos_token_id\":2,\"hidden_act\":\"silu\",\"hidden_size\":576,"
    "\"initializer_range\":0.041666666666666664,\"intermediate_size\":1536,\"is_llama_config\":true,"
    "\"max_position_embeddings\":8192,\"mlp_bias\":false,\"model_type\":\"llama\",\"num_attention_heads\":9,"
    "\"num_hidden_layers\":30,\"num_key_value_heads\":3,\"pad_token_id\":2,\"pretraining_tp\":1,"
    "\"rms_norm_eps\":1e-05,\"rope_interleaved\":false,\"rope_scaling\":null,\"rope_theta\":100000,"
    "\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.42.3\","
    "\"use_cache\":true,\"vocab_size\":49152}";

// Llama 3.1 8B: eos as a list, llama3 rope scaling.
static const char *LLAMA31 =
    "{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":false,\"bos_token_id\":128000,"
    "\"eos_token_id\":[128001,128008,128009],\"hidden_act\":\"silu\",\"hidden_size\":4096,"
    "\"intermediate_size\":14336,\"max_position_embeddings\":131072,\"mlp_bias\":false,\"model_type\":\"llama\","
    "\"num_attention_heads\":32,\"num_hidden_layers\":32,\"num_key_value_heads\":8,\"rms_norm_eps\":1e-05,"
    "\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
    "\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"},\"rope_theta\":500000.0,"
    "\"tie_word_embeddings\":false,\"vocab_size\":128256}";

// A DeciLM (nemotron-nas) config in the shape Nemotron-51B uses.
static const char *DECI =
    "{\"architectures\":[\"DeciLMForCausalLM\"],\"model_type\":\"nemotron-nas\",\"hidden_size\":8192,"
    "\"num_hidden_layers\":4,\"num_attention_heads\":64,\"vocab_size\":128256,\"max_position_embeddings\":131072,"
    "\"rms_norm_eps\":1e-05,\"rope_theta\":500000.0,\"bos_token_id\":128000,\"eos_token_id\":128009,"
    "\"hidden_act\":\"silu\",\"tie_word_embeddings\":false,\"rope_scaling\":{\"factor\":8.0,"
    "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192,"
    "\"rope_type\":\"llama3\"},\"block_configs\":["
    "{\"attention\":{\"n_heads_in_group\":8,\"no_op\":false,\"replace_with_linear\":false,\"sparsify\":null,"
    "\"num_sink_tokens\":null,\"window_length\":null,\"unshifted_sink\":false,"
    "\"use_prefill_window_in_sink_attention\":false},"
    "\"ffn\":{\"ffn_mult\":5.25,\"no_op\":false,\"replace_with_linear\":false,\"sparsify\":null}},"
    "{\"attention\":{\"n_heads_in_group\":null,\"no_op\":true,\"replace_with_linear\":false},"
    "\"ffn\":{\"ffn_mult\":2.625,\"no_op\":false,\"replace_with_linear\":false}},"
    "{\"attention\":{\"n_heads_in_group\":null,\"no_op\":false,\"replace_with_linear\":true},"
    "\"ffn\":{\"ffn_mult\":null,\"no_op\":false,\"replace_with_linear\":true}},"
    "{\"attention\":{\"n_heads_in_group\":64,\"no_op\":false,\"replace_with_linear\":false},"
    "\"ffn\":{\"ffn_mult\":null,\"no_op\":true,\"replace_with_linear\":false}}]}";

static int parse(pz_config *c, const char *json, char *err) {
    return pz_config_from_hf_json(c, json, strlen(json), "test", err);
}

static int same(const pz_config *a, const pz_config *b) {
    int ok = a->n_layer == b->n_layer && a->hidden == b->hidden && a->n_head == b->n_head &&
             a->head_dim == b->head_dim && a->vocab == b->vocab && a->max_ctx == b->max_ctx &&
             a->rope_theta == b->rope_theta && a->norm_eps == b->norm_eps &&
             a->tie_embeddings == b->tie_embeddings && a->bos_id == b->bos_id && a->eos_id == b->eos_id &&
             a->rope_scaling == b->rope_scaling;
    if (a->rope_scaling == PZ_ROPE_SCALING_LLAMA3)
        ok = ok && a->rope_factor == b->rope_factor && a->rope_low_freq_factor == b->rope_low_freq_factor &&
             a->rope_high_freq_factor == b->rope_high_freq_factor && a->rope_orig_ctx == b->rope_orig_ctx;
    for (int i = 0; ok && i < a->n_layer; i++)
        ok = a->layers[i].attn == b->layers[i].attn && a->layers[i].n_kv == b->layers[i].n_kv &&
             a->layers[i].ffn == b->layers[i].ffn && a->layers[i].n_ff == b->layers[i].n_ff;
    return ok;
}

static void round_trip(const pz_config *c, const char *what) {
    char err[PZ_ERRLEN];
    char *json = pz_config_to_hf_json(c);
    CHECK(json != NULL);
    if (!json) return;
    pz_config *back = malloc(sizeof *back);
    int rc = parse(back, json, err);
    CHECKF(rc == 0, "%s: %s", what, err);
    CHECKF(rc == 0 && same(c, back), "%s: differs after a round trip:\n%s", what, json);
    CHECK(strstr(json, "\"DeciLMForCausalLM\"") && strstr(json, "\"nemotron-nas\""));
    free(back);
    free(json);
}

// The LlamaForCausalLM form of a plain config reads back the same, names no
// block_configs, and is refused for a config that is not plain.
static void round_trip_llama(pz_config *c, const char *what) {
    char err[PZ_ERRLEN];
    CHECKF(pz_config_is_plain_llama(c), "%s: plain", what);
    char *json = pz_config_to_hf_json_as(c, 1);
    CHECK(json != NULL);
    if (!json) return;
    pz_config *back = malloc(sizeof *back);
    int rc = parse(back, json, err);
    CHECKF(rc == 0 && same(c, back), "%s (Llama form): %s\n%s", what, rc ? err : "differs", json);
    CHECK(strstr(json, "\"LlamaForCausalLM\"") && strstr(json, "\"num_key_value_heads\"") &&
          !strstr(json, "block_configs"));
    free(json);
    *back = *c;
    back->layers[1].n_ff += 256;  // one layer of another width: not plain
    CHECKF(!pz_config_is_plain_llama(back) && !pz_config_to_hf_json_as(back, 1), "%s: other width", what);
    *back = *c;
    back->layers[0].attn = PZ_ATTN_NOOP;
    CHECKF(!pz_config_is_plain_llama(back), "%s: a no-op attention", what);
    free(back);
}

static void test_llama(void) {
    char err[PZ_ERRLEN];
    pz_config *c = malloc(sizeof *c);
    CHECKF(parse(c, SMOL, err) == 0, "%s", err);
    CHECK(c->n_layer == 30 && c->hidden == 576 && c->n_head == 9 && c->head_dim == 64 && c->vocab == 49152);
    CHECK(c->max_ctx == 8192 && c->rope_theta == 100000.0f && c->norm_eps == 1e-5f && c->tie_embeddings == 1);
    CHECK(c->bos_id == 1 && c->eos_id == 2 && c->rope_scaling == PZ_ROPE_SCALING_NONE);
    int uniform = 1;
    for (int i = 0; i < 30; i++)
        uniform &= c->layers[i].attn == PZ_ATTN_GQA && c->layers[i].n_kv == 3 && c->layers[i].ffn == PZ_FFN_SWIGLU &&
                   c->layers[i].n_ff == 1536;
    CHECK(uniform);
    CHECKF(pz_config_n_params(c) == 134515008u, "%zu", pz_config_n_params(c));
    CHECK(pz_config_kv_bytes_per_token(c, 2) == 30 * 2 * 3 * 64 * 2);
    round_trip(c, "smollm2");
    round_trip_llama(c, "smollm2");

    CHECKF(parse(c, LLAMA31, err) == 0, "%s", err);
    CHECK(c->eos_id == 128001 && c->bos_id == 128000 && c->head_dim == 128 && c->tie_embeddings == 0);
    CHECK(c->rope_scaling == PZ_ROPE_SCALING_LLAMA3 && c->rope_factor == 8.0f && c->rope_low_freq_factor == 1.0f &&
          c->rope_high_freq_factor == 4.0f && c->rope_orig_ctx == 8192 && c->rope_theta == 500000.0f);
    CHECK(c->layers[31].n_kv == 8 && c->layers[31].n_ff == 14336);
    CHECKF(pz_config_n_params(c) == 8030261248u, "%zu", pz_config_n_params(c));  // Llama 3.1 8B
    round_trip(c, "llama3.1");
    round_trip_llama(c, "llama3.1");

    // Newer transformers: rope_parameters carries theta and the scaling.
    const char *rp = "{\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
                     "\"intermediate_size\":128,\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":1000.0,"
                     "\"factor\":4.0,\"low_freq_factor\":1.0,\"high_freq_factor\":2.0,"
                     "\"original_max_position_embeddings\":512},\"eos_token_id\":null}";
    CHECKF(parse(c, rp, err) == 0, "%s", err);
    CHECK(c->rope_theta == 1000.0f && c->rope_scaling == PZ_ROPE_SCALING_LLAMA3 && c->rope_factor == 4.0f &&
          c->rope_orig_ctx == 512 && c->eos_id == -1 && c->layers[1].n_kv == 4 && c->head_dim == 16);
    const char *rp2 = "{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":100,"
                      "\"intermediate_size\":128,\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":5e5}}";
    CHECKF(parse(c, rp2, err) == 0 && c->rope_theta == 5e5f && c->rope_scaling == PZ_ROPE_SCALING_NONE, "%s", err);
    free(c);
}

static void test_deci(void) {
    char err[PZ_ERRLEN];
    pz_config *c = malloc(sizeof *c);
    CHECKF(parse(c, DECI, err) == 0, "%s", err);
    CHECK(c->layers[0].attn == PZ_ATTN_GQA && c->layers[0].n_kv == 8 && c->layers[0].n_ff == 28672);
    CHECK(c->layers[1].attn == PZ_ATTN_NOOP && c->layers[1].n_kv == 0 && c->layers[1].n_ff == 14336);
    CHECK(c->layers[2].attn == PZ_ATTN_LINEAR && c->layers[2].ffn == PZ_FFN_LINEAR && c->layers[2].n_ff == 0);
    CHECK(c->layers[3].attn == PZ_ATTN_GQA && c->layers[3].n_kv == 1 && c->layers[3].ffn == PZ_FFN_NOOP);
    CHECK(pz_config_kv_bytes_per_token(c, 1) == 2 * (8 + 1) * 128);
    size_t h = 8192, v = 128256;
    size_t want = 2 * v * h + h + (h + h * h + 2 * h * 1024 + h * h) + (h + 3 * h * 28672) + (h + 3 * h * 14336) +
                  (h + h * h) + (h + h * h) + (h + h * h + 2 * h * 128 + h * h);
    CHECKF(pz_config_n_params(c) == want, "%zu vs %zu", pz_config_n_params(c), want);
    round_trip(c, "deci");

    // Widths ffn_mult cannot express go through per-block intermediate_size.
    c->layers[0].n_ff = 1000;
    c->layers[1].n_ff = 12345;
    round_trip(c, "odd widths");
    char *json = pz_config_to_hf_json(c);
    CHECK(json && strstr(json, "\"intermediate_size\":\t1000") && strstr(json, "\"intermediate_size\":\t12345"));
    free(json);

    // Write and read back a file.
    char *dir = pz_test_tmpdir("cfg"), path[1024];
    pz_path_join(path, sizeof path, dir, "config.json");
    CHECKF(pz_config_write_hf_file(c, path, err) == 0, "%s", err);
    pz_config *back = malloc(sizeof *back);
    CHECKF(pz_config_from_hf_file(back, path, err) == 0 && same(c, back), "%s", err);
    c->layers[0].n_kv = 7;  // does not divide 64
    CHECK(pz_config_write_hf_file(c, path, err) != 0 && strstr(err, "divide"));
    CHECK(pz_config_from_hf_file(back, "/nonexistent/config.json", err) != 0 && strstr(err, "/nonexistent"));
    unlink(path);
    rmdir(dir);
    free(dir);
    free(back);

    // A random heterogeneous model round-trips exactly.
    uint64_t rng = 42;
    int bad = 0;
    for (int trial = 0; trial < 50; trial++) {
        memset(c, 0, sizeof *c);
        c->n_layer = 1 + (int)(pz_test_rand_u64(&rng) % 80);
        c->n_head = 24;
        c->head_dim = 128;
        c->hidden = 3072;
        c->vocab = 32000;
        c->max_ctx = 4096;
        c->rope_theta = 10000.0f;
        c->norm_eps = 1e-6f;
        c->bos_id = 1, c->eos_id = trial % 2 ? 2 : -1;
        c->tie_embeddings = trial % 3 == 0;
        for (int i = 0; i < c->n_layer; i++) {
            static const int kv[] = {1, 2, 3, 4, 6, 8, 12, 24};
            int a = (int)(pz_test_rand_u64(&rng) % 10), f = (int)(pz_test_rand_u64(&rng) % 10);
            c->layers[i].attn = a < 8 ? PZ_ATTN_GQA : a == 8 ? PZ_ATTN_LINEAR : PZ_ATTN_NOOP;
            c->layers[i].n_kv = a < 8 ? kv[a] : 0;
            c->layers[i].ffn = f < 8 ? PZ_FFN_SWIGLU : f == 8 ? PZ_FFN_LINEAR : PZ_FFN_NOOP;
            c->layers[i].n_ff = f < 8 ? (f % 2 ? 256 * (1 + (int)(pz_test_rand_u64(&rng) % 40))
                                               : 1 + (int)(pz_test_rand_u64(&rng) % 12000))
                                      : 0;
        }
        char *j = pz_config_to_hf_json(c);
        pz_config *b2 = malloc(sizeof *b2);
        bad += !j || parse(b2, j, err) != 0 || !same(c, b2);
        free(b2);
        free(j);
    }
    CHECKF(bad == 0, "%d of 50 random configs did not round-trip", bad);
    free(c);
}

static void test_ffn_mult(void) {
    CHECK(pz_decilm_ffn_width(5.25, 8192) == 28672);
    CHECK(pz_decilm_ffn_width(2.625, 8192) == 14336);
    CHECK(pz_decilm_ffn_width(1.0, 576) == 512);
    CHECK(pz_decilm_ffn_width(4.0, 576) == 1536);
    CHECK(pz_decilm_ffn_mult(1536, 576) == 4.0);
    CHECK(pz_decilm_ffn_mult(1000, 576) < 0 && pz_decilm_ffn_mult(0, 576) < 0);
    int hiddens[] = {576, 2048, 3072, 4096, 5120, 8192, 12288, 16384, 1000, 777};
    int bad = 0;
    for (int h = 0; h < 10; h++)
        for (int n = 256; n <= 65536; n += 256) {
            double m = pz_decilm_ffn_mult(n, hiddens[h]);
            if (!(m > 0) || pz_decilm_ffn_width(m, hiddens[h]) != n) {
                if (bad++ < 5) fprintf(stderr, "ffn_mult(%d, %d) = %g\n", n, hiddens[h], m);
            }
        }
    CHECKF(bad == 0, "%d widths without an exact ffn_mult", bad);
}

static void test_bad(void) {
    char err[PZ_ERRLEN];
    pz_config *c = malloc(sizeof *c);
    struct { const char *json, *needle; } cases[] = {
        {"", "not valid JSON"},
        {"[1]", "not a JSON object"},
        {"{\"num_hidden_layers\":2}", "hidden_size"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":0,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8}", "num_hidden_layers"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1.5,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8}", "num_hidden_layers"},
        {"{\"hidden_size\":\"64\",\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8}", "hidden_size"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10}",
         "intermediate_size"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8,\"num_key_value_heads\":3}", "divide"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8,\"attention_bias\":true}", "attention_bias"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8,\"hidden_act\":\"gelu\"}", "silu"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}", "yarn"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8,\"eos_token_id\":10}", "eos_token_id"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8,\"eos_token_id\":[\"x\"]}", "eos_token_id"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8,\"rms_norm_eps\":0}", "rms_norm_eps"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8,\"head_dim\":7}", "head_dim"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"intermediate_size\":8,\"tie_word_embeddings\":1}", "tie_word_embeddings"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"block_configs\":[]}", "block_configs"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"block_configs\":[{\"attention\":{\"no_op\":true,\"replace_with_linear\":true},\"ffn\":{\"no_op\":true}}]}",
         "both"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"block_configs\":[{\"attention\":{\"n_heads_in_group\":3},\"ffn\":{\"no_op\":true}}]}", "divide"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"block_configs\":[{\"attention\":{\"n_heads_in_group\":0},\"ffn\":{\"no_op\":true}}]}", "n_heads_in_group"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"block_configs\":[{\"attention\":{\"n_heads_in_group\":1,\"window_length\":4096},\"ffn\":{\"no_op\":true}}]}",
         "window_length"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"block_configs\":[{\"attention\":{\"no_op\":true},\"ffn\":{\"ffn_mult\":1e300}}]}", "ffn_mult"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"block_configs\":[{\"attention\":{\"no_op\":true},\"ffn\":{\"ffn_mult\":-1}}]}", "ffn_mult"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"block_configs\":[{\"attention\":{\"no_op\":true},\"ffn\":{}}]}", "ffn_mult"},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"block_configs\":[{\"attention\":{\"no_op\":true}}]}", "\"ffn\""},
        {"{\"hidden_size\":64,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
         "\"block_configs\":[{\"attention\":{\"no_op\":true},\"ffn\":{\"intermediate_size\":-5}}]}",
         "intermediate_size"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = 0;
        int rc = pz_config_from_hf_json(c, cases[i].json, strlen(cases[i].json), "bad.json", err);
        CHECKF(rc != 0 && strstr(err, cases[i].needle) && strstr(err, "bad.json"), "case %zu: expected '%s', got %s",
               i, cases[i].needle, rc ? err : "success");
    }
    CHECK(strcmp(pz_attn_kind_name(PZ_ATTN_LINEAR), "linear") == 0 && strcmp(pz_ffn_kind_name(PZ_FFN_NOOP), "noop") == 0);
    free(c);
}

int main(void) {
    test_llama();
    test_deci();
    test_ffn_mult();
    test_bad();
    return pz_test_finish("test_config");
}
