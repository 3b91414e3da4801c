// test_contradictions.c — metadata that contradicts the tensors stored
// beside it (a layer count, a KV-head count, a head count, a width, a
// vocabulary size, a block kind, a tampered llama.cpp stand-in) is refused
// with a message naming both sides, in Hugging Face directories and GGUF
// files alike, never silently reinterpreted. Each hostile fixture is a valid
// model file with one value changed.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gguf.h"
#include "model.h"
#include "testmodel.h"
#include "testutil.h"

static char err[PZ_ERRLEN];

// Loads path and expects failure with every needle in the message.
static void expect_refused(const char *what, const char *path, const char *n1, const char *n2, const char *n3) {
    const char *need[] = {n1, n2, n3};
    pz_model *m = pz_model_load(path, PZ_DT_F32, err);
    CHECKF(m == NULL, "%s: loaded", what);
    pz_model_free(m);
    if (m) return;
    for (int i = 0; i < 3; i++)
        if (need[i]) CHECKF(strstr(err, need[i]) != NULL, "%s: '%s' lacks '%s'", what, err, need[i]);
    // A GGUF's config alone (puzzle info, plan) is refused the same way,
    // except for a stand-in's values, which only loading reads.
    size_t n = strlen(path);
    pz_config c;
    if (n < 5 || strcmp(path + n - 5, ".gguf") != 0 || strstr(what, "d_gate") || strstr(what, "d_noop")) return;
    CHECKF(pz_model_load_config(path, &c, err) != 0, "%s: config loaded", what);
    for (int i = 0; i < 3; i++)
        if (need[i]) CHECKF(strstr(err, need[i]) != NULL, "%s (config): '%s' lacks '%s'", what, err, need[i]);
}

// ---- Hugging Face: a valid directory whose config.json is then rewritten -------------
static void hf_case(const char *base, const char *name, const pz_config *c, const char *n1, const char *n2,
                    const char *n3) {
    char dir[1024], cmd[2200], cpath[1100];
    snprintf(dir, sizeof dir, "%s/%s", base, name);
    snprintf(cmd, sizeof cmd, "cp -r '%s/ok' '%s'", base, dir);
    CHECK(system(cmd) == 0);
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    CHECKF(pz_config_write_hf_file(c, cpath, err) == 0, "%s: %s", name, err);
    expect_refused(name, dir, n1, n2, n3);
}

static void test_hf(const char *tmp) {
    pz_config c;
    pz_testmodel_config(&c, 0);  // g4:s96 g2:l l:s160 n:s64 g1:n g2:s96, hidden 64, 4 heads x 16
    char ok[1024];
    snprintf(ok, sizeof ok, "%s/ok", tmp);
    CHECK(pz_testmodel_write_hf(&c, PZ_DT_F32, 7, ok, err) == 0);
    pz_model *m = pz_model_load(ok, PZ_DT_F32, err);
    CHECKF(m != NULL, "the unmodified fixture loads: %s", err);
    pz_model_free(m);

    pz_config x = c;
    x.n_layer = 5;  // the checkpoint still holds layer 5
    hf_case(tmp, "layers", &x, "model.layers.5.", "num_hidden_layers 5", NULL);
    x = c;
    x.layers[0].n_kv = 2;  // k_proj holds 4 KV heads x 16 = 64 rows
    hf_case(tmp, "kv", &x, "model.layers.0.self_attn.k_proj.weight", "[64, 64]", "2 KV heads");
    x = c;
    x.layers[2].n_ff = 128;  // the checkpoint's width is 160
    hf_case(tmp, "ffn", &x, "model.layers.2.mlp.gate_proj.weight", "[160, 64]", "FFN width 128");
    x = c;
    x.n_head = 2, x.layers[0].n_kv = 2, x.layers[1].n_kv = 2, x.layers[4].n_kv = 1, x.layers[5].n_kv = 2;
    hf_case(tmp, "heads", &x, "q_proj.weight", "[64, 64]", "2 heads x head dim 16");
    x = c;
    x.hidden = 48, x.head_dim = 16;
    hf_case(tmp, "hidden", &x, "model.embed_tokens.weight", "[97, 64]", "hidden 48");
    x = c;
    x.layers[1].attn = PZ_ATTN_NOOP, x.layers[1].n_kv = 0;  // q/k/v/o of layer 1 are stored
    hf_case(tmp, "kind", &x, "model.layers.1.", "is not used by layer 1", "noop attention");
    x = c;
    x.layers[4].ffn = PZ_FFN_LINEAR;  // the checkpoint has no linear_mlp for layer 4
    hf_case(tmp, "missing", &x, "model.layers.4.", "missing tensor", "linear FFN");
}

// ---- GGUF: a valid file patched in memory --------------------------------------------
static char *slurp(const char *path, size_t *len) {
    char e[PZ_ERRLEN];
    return pz_read_file(path, (size_t)1 << 30, len, e);
}

static int spit(const char *path, const char *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = fwrite(buf, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

// Sets the u32 (or first i32 array element) value of metadata key to v.
static int patch_u32(char *buf, size_t len, const char *key, uint32_t v) {
    size_t kl = strlen(key);
    for (size_t i = 8; i + kl + 20 < len; i++) {
        uint64_t n;
        memcpy(&n, buf + i - 8, 8);
        if (n != kl || memcmp(buf + i, key, kl) != 0) continue;
        uint32_t type;
        memcpy(&type, buf + i + kl, 4);
        if (type == PZ_GGUF_U32 || type == PZ_GGUF_I32) {
            memcpy(buf + i + kl + 4, &v, 4);
            return 0;
        }
        if (type == PZ_GGUF_ARRAY) {
            memcpy(buf + i + kl + 4 + 4 + 8, &v, 4);
            return 0;
        }
        return -1;
    }
    return -1;
}

static void gguf_case(const char *src, const char *tmp, const char *name, const char *key, uint32_t v,
                      const char *n1, const char *n2, const char *n3) {
    size_t len;
    char *buf = slurp(src, &len), path[1024];
    CHECK(buf != NULL);
    if (!buf) return;
    CHECKF(patch_u32(buf, len, key, v) == 0, "%s: key %s not found", name, key);
    snprintf(path, sizeof path, "%s/%s.gguf", tmp, name);
    CHECK(spit(path, buf, len) == 0);
    free(buf);
    expect_refused(name, path, n1, n2, n3);
}

// Overwrites element 0 of tensor tname with value, through a parse of the
// file's bytes (the tensor data points into buf).
static void tamper_case(const char *src, const char *tmp, const char *name, const char *tname, float value,
                        const char *n1, const char *n2) {
    size_t len;
    char *buf = slurp(src, &len), path[1024];
    CHECK(buf != NULL);
    if (!buf) return;
    pz_gguf *g = pz_gguf_open_buffer(buf, len, err);
    CHECK(g != NULL);
    const pz_gguf_tensor *t = g ? pz_gguf_find_tensor(g, tname) : NULL;
    CHECKF(t && t->type == PZ_F32, "%s: no f32 tensor %s", name, tname);
    if (t && t->type == PZ_F32) memcpy((char *)t->data, &value, 4);
    pz_gguf_close(g);
    snprintf(path, sizeof path, "%s/%s.gguf", tmp, name);
    CHECK(spit(path, buf, len) == 0);
    free(buf);
    expect_refused(name, path, n1, n2, NULL);
}

static void test_gguf(const char *tmp) {
    // A uniform model is a `llama` file with scalar keys.
    pz_config c;
    pz_testmodel_config(&c, 2);
    for (int i = 0; i < c.n_layer; i++) c.layers[i] = (pz_layer_spec){PZ_ATTN_GQA, 3, PZ_FFN_SWIGLU, 256};
    pz_model *m = pz_testmodel_random(&c, PZ_DT_F32, 5, err);
    CHECK(m != NULL);
    char ok[1024];
    snprintf(ok, sizeof ok, "%s/llama.gguf", tmp);
    CHECKF(m && pz_model_save_gguf(m, NULL, ok, err) == 0, "%s", err);
    pz_model_free(m);
    m = pz_model_load(ok, PZ_DT_F32, err);
    CHECKF(m != NULL, "the unmodified llama fixture loads: %s", err);
    pz_model_free(m);
    gguf_case(ok, tmp, "g_layers", "llama.block_count", 3, "blk.3.", "llama.block_count is 3", NULL);
    gguf_case(ok, tmp, "g_kv", "llama.attention.head_count_kv", 1, "blk.0.attn_k.weight", "[96, 96]",
              "1 KV heads");
    gguf_case(ok, tmp, "g_ffn", "llama.feed_forward_length", 512, "blk.0.ffn_gate.weight", "[96, 256]",
              "FFN width 512");
    gguf_case(ok, tmp, "g_vocab", "llama.vocab_size", 100, "vocab_size is 100", "130 rows", NULL);

    // Heterogeneous: a `deci` file with the linear- and noop-FFN stand-ins.
    pz_testmodel_config(&c, 0);  // layer 1: linear FFN; layer 4: gqa1 + noop FFN
    m = pz_testmodel_random(&c, PZ_DT_F32, 9, err);
    CHECK(m != NULL);
    snprintf(ok, sizeof ok, "%s/deci.gguf", tmp);
    CHECKF(m && pz_model_save_gguf(m, NULL, ok, err) == 0, "%s", err);
    pz_model_free(m);
    m = pz_model_load(ok, PZ_DT_F32, err);
    CHECKF(m != NULL, "the unmodified deci fixture loads: %s", err);
    if (m) CHECK(m->cfg.layers[1].ffn == PZ_FFN_LINEAR && m->cfg.layers[4].ffn == PZ_FFN_NOOP);
    pz_model_free(m);
    gguf_case(ok, tmp, "d_kv", "deci.attention.head_count_kv", 2, "blk.0.attn_k.weight", "[64, 64]", "2 KV heads");
    gguf_case(ok, tmp, "d_ffn", "deci.feed_forward_length", 128, "blk.0.ffn_gate.weight", "[64, 96]",
              "FFN width 128");
    tamper_case(ok, tmp, "d_gate", "blk.1.ffn_gate.bias", 31.0f, "blk.1.ffn_gate.bias", "exactly 32");
    tamper_case(ok, tmp, "d_noop", "blk.4.ffn_down.weight", 0.5f, "blk.4.ffn_down.weight", "noop FFN stand-in");
}

int main(void) {
    char *tmp = pz_test_tmpdir("contra");
    CHECK(tmp != NULL);
    if (!tmp) return pz_test_finish("test_contradictions");
    test_hf(tmp);
    test_gguf(tmp);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    free(tmp);
    return pz_test_finish("test_contradictions");
}
