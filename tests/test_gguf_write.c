// labels: cpu model
// test_gguf_write.c — pz_model_save_gguf round trips: random heterogeneous
// test models (every variant, F32 and BF16, "deci" and "llama") come back
// from pz_model_load with the same config, bit-identical weights and
// identical logits; the reference parent ($PUZZLE_MODEL, when present) comes
// back with the same weights and a tokenizer that encodes identically. When
// the gguf Python package (llama.cpp's gguf-py) is installed,
// tests/ref/check_gguf.py reads our files independently. Error cases: Llama-3
// RoPE scaling is refused, an unwritable path fails naming the path.
#include "common.h"
#include "engine.h"
#include "gguf.h"
#include "model.h"
#include "testmodel.h"
#include "testutil.h"
#include "tokenizer.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *gguf_py;  // the interpreter of the gguf-py cross-check (NULL: not run)
static char script[1024];

static int run_check(const char *gguf, const char *mode, const char *other) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' %s '%s'", gguf_py, script, gguf, mode, other);
    return system(cmd);
}

static void compare_configs(const pz_config *a, const pz_config *b, const char *what) {
    CHECKF(a->n_layer == b->n_layer && a->hidden == b->hidden && a->n_head == b->n_head &&
           a->head_dim == b->head_dim && a->vocab == b->vocab && a->max_ctx == b->max_ctx, "%s", what);
    CHECKF(a->rope_theta == b->rope_theta && a->norm_eps == b->norm_eps, "%s", what);
    CHECKF(a->tie_embeddings == b->tie_embeddings && a->bos_id == b->bos_id && a->eos_id == b->eos_id &&
           a->rope_scaling == b->rope_scaling, "%s", what);
    for (int i = 0; i < a->n_layer && i < b->n_layer; i++) {
        const pz_layer_spec *x = &a->layers[i], *y = &b->layers[i];
        CHECKF(x->attn == y->attn && x->n_kv == y->n_kv && x->ffn == y->ffn && x->n_ff == y->n_ff,
               "%s: layer %d", what, i);
    }
}

static void compare_weights(const pz_model *a, const pz_model *b, const char *what) {
    int n = pz_model_n_weights(a);
    CHECKF(n == pz_model_n_weights(b), "%s", what);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        pz_weight_info x, y;
        if (pz_model_weight_at(a, i, &x) || pz_model_weight_at(b, i, &y)) {
            bad++;
            continue;
        }
        if (strcmp(x.name, y.name) || x.type != y.type || x.rows != y.rows || x.cols != y.cols ||
            x.bytes != y.bytes || memcmp(x.data, y.data, x.bytes) != 0) {
            if (bad++ < 5) fprintf(stderr, "%s: weight %s differs\n", what, x.name);
        }
    }
    CHECKF(bad == 0, "%s: %d weights differ", what, bad);
}

static void compare_logits(const pz_model *a, const pz_model *b, const char *what) {
    static const int32_t prompt[] = {1, 5, 17, 33, 8, 42, 60, 3, 17, 17};
    int n = (int)(sizeof prompt / sizeof prompt[0]), V = a->cfg.vocab;
    char err[PZ_ERRLEN];
    pz_engine_params p = pz_engine_default_params();
    p.max_ctx = 32;
    pz_engine *ea = pz_engine_create(a, p, err), *eb = ea ? pz_engine_create(b, p, err) : NULL;
    float *la = malloc(sizeof(float) * (size_t)(n * V)), *lb = malloc(sizeof(float) * (size_t)(n * V));
    CHECKF(ea && eb && la && lb, "%s: %s", what, err);
    if (ea && eb && la && lb) {
        int ra = pz_engine_prefill(ea, 0, prompt, n, la, 1, err);
        int rb = pz_engine_prefill(eb, 0, prompt, n, lb, 1, err);
        CHECKF(ra == 0 && rb == 0, "%s: %s", what, err);
        CHECKF(memcmp(la, lb, sizeof(float) * (size_t)(n * V)) == 0, "%s: logits differ", what);
    }
    free(la);
    free(lb);
    pz_engine_free(ea);
    pz_engine_free(eb);
}

static void arch_is(const char *path, const char *want) {
    char err[PZ_ERRLEN];
    pz_gguf *g = pz_gguf_open(path, err);
    pz_gguf_str s = {0};
    CHECKF(g && pz_gguf_get_str(g, "general.architecture", &s) == 0 && s.len == strlen(want) &&
           memcmp(s.data, want, s.len) == 0, "%s: architecture '%.*s', expected %s", path, (int)s.len,
           s.data ? s.data : "", want);
    if (g) CHECK(pz_gguf_alignment(g) == 32);
    pz_gguf_close(g);
}

// Saves a random model of cfg as GGUF, reloads, compares; with gguf-py also
// checks the file against a Hugging Face copy of the same model.
static void round_trip(const pz_config *cfg, pz_dt wt, const char *arch, const char *dir, const char *tag) {
    char err[PZ_ERRLEN], path[1024], hf[1024];
    snprintf(path, sizeof path, "%s/%s.gguf", dir, tag);
    pz_model *m = pz_testmodel_random(cfg, wt, 11, err);
    CHECKF(m, "%s: %s", tag, err);
    if (!m) return;
    int rc = pz_model_save_gguf(m, NULL, path, err);
    CHECKF(rc == 0, "%s: %s", tag, err);
    pz_model *r = rc == 0 ? pz_model_load(path, wt, err) : NULL;
    CHECKF(r, "%s: reload: %s", tag, err);
    if (r) {
        arch_is(path, arch);
        compare_configs(&m->cfg, &r->cfg, tag);
        compare_weights(m, r, tag);
        compare_logits(m, r, tag);
        if (gguf_py) {
            snprintf(hf, sizeof hf, "%s/%s.hf", dir, tag);
            CHECKF(pz_model_save_hf(m, hf, err) == 0, "%s: %s", tag, err);
            CHECKF(run_check(path, "--hf", hf) == 0, "%s: gguf-py check", tag);
        }
    }
    pz_model_free(r);
    pz_model_free(m);
}

static void test_random(const char *dir) {
    for (int v = 0; v < PZ_TESTMODEL_VARIANTS; v++) {
        for (int w = 0; w < 2; w++) {
            pz_dt wt = w ? PZ_DT_BF16 : PZ_DT_F32;
            pz_config c;
            pz_testmodel_config(&c, v);
            char tag[64], err[PZ_ERRLEN], path[1024];
            if (c.rope_scaling != PZ_ROPE_SCALING_NONE) {
                // Refused: the loader cannot read Llama-3 scaling back.
                snprintf(path, sizeof path, "%s/llama3.gguf", dir);
                pz_model *m = pz_testmodel_random(&c, wt, 3, err);
                CHECK(m && pz_model_save_gguf(m, NULL, path, err) == -1);
                CHECKF(strstr(err, "RoPE scaling") && strstr(err, path), "%s", err);
                CHECK(!pz_file_exists(path));
                pz_model_free(m);
                c.rope_scaling = PZ_ROPE_SCALING_NONE;  // the rest of the variant still round trips
            }
            snprintf(tag, sizeof tag, "v%d_%s", v, w ? "bf16" : "f32");
            round_trip(&c, wt, "deci", dir, tag);
        }
    }
    // Homogeneous: architecture "llama" with scalar keys (variant 2's first layer everywhere).
    for (int w = 0; w < 2; w++) {
        pz_config c;
        pz_testmodel_config(&c, 2);
        for (int i = 1; i < c.n_layer; i++) c.layers[i] = c.layers[0];
        round_trip(&c, w ? PZ_DT_BF16 : PZ_DT_F32, "llama", dir, w ? "llama_bf16" : "llama_f32");
    }
}

static void test_errors(const char *dir) {
    char err[PZ_ERRLEN], path[1024];
    pz_config c;
    pz_testmodel_config(&c, 0);
    pz_model *m = pz_testmodel_random(&c, PZ_DT_F32, 5, err);
    CHECK(m);
    if (!m) return;
    snprintf(path, sizeof path, "%s/no/such/dir/model.gguf", dir);
    err[0] = 0;
    CHECK(pz_model_save_gguf(m, NULL, path, err) == -1);
    CHECKF(strstr(err, path) != NULL, "message does not name the path: %s", err);
    // A read-only directory (meaningless as root, who may write anywhere).
    char ro[512];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    mkdir(ro, 0555);
    snprintf(path, sizeof path, "%s/model.gguf", ro);
    if (geteuid() != 0) {
        CHECK(pz_model_save_gguf(m, NULL, path, err) == -1);
        CHECKF(strstr(err, path) != NULL, "message does not name the path: %s", err);
    }
    chmod(ro, 0755);
    // Overwriting an existing file replaces it whole.
    snprintf(path, sizeof path, "%s/over.gguf", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("junk", f);
        fclose(f);
    }
    CHECKF(pz_model_save_gguf(m, NULL, path, err) == 0, "%s", err);
    pz_model *r = pz_model_load(path, PZ_DT_F32, err);
    CHECKF(r, "%s", err);
    if (r) compare_weights(m, r, "overwrite");
    pz_model_free(r);
    pz_model_free(m);
}

static void test_smollm2(const char *model, const char *dir) {
    char err[PZ_ERRLEN], path[1024];
    snprintf(path, sizeof path, "%s/smollm2.gguf", dir);
    pz_model *m = pz_model_load(model, PZ_DT_F32, err);
    pz_tokenizer *t = m ? pz_tokenizer_load(model, err) : NULL;
    CHECKF(m && t, "%s", err);
    if (!m || !t) goto out0;
    CHECKF(pz_model_save_gguf(m, t, path, err) == 0, "%s", err);
    pz_model *r = pz_model_load(path, PZ_DT_F32, err);
    pz_tokenizer *u = r ? pz_tokenizer_load(path, err) : NULL;
    CHECKF(r && u, "%s", err);
    if (!r || !u) goto out1;
    arch_is(path, "llama");
    compare_configs(&m->cfg, &r->cfg, "smollm2");
    compare_weights(m, r, "smollm2");
    CHECK(pz_tokenizer_vocab_size(t) == pz_tokenizer_vocab_size(u));
    CHECK(pz_tokenizer_bos(t) == pz_tokenizer_bos(u) && pz_tokenizer_eos(t) == pz_tokenizer_eos(u));
    CHECK(pz_tokenizer_add_bos(t) == pz_tokenizer_add_bos(u));
    CHECK(pz_tokenizer_max_token_len(t) == pz_tokenizer_max_token_len(u));
    const char *ta = pz_tokenizer_chat_template(t), *tb = pz_tokenizer_chat_template(u);
    CHECK(ta && tb && strcmp(ta, tb) == 0);
    int bad = 0;
    for (int32_t id = 0; id < pz_tokenizer_vocab_size(t); id++) {
        const char *a = pz_tokenizer_piece(t, id), *b = pz_tokenizer_piece(u, id);
        if (!a || !b || strcmp(a, b) || pz_tokenizer_is_special(t, id) != pz_tokenizer_is_special(u, id)) bad++;
    }
    CHECKF(bad == 0, "%d vocabulary entries differ", bad);
    static const char *texts[] = {
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "1234567890 3.14159 -42 1e10 0x1F",
        "int main(void) {\n    return printf(\"%d\\n\", 42);\n}\n",
        "    leading spaces and   runs\t\ttabs\n\n\nnewlines   ",
        "naïve café résumé Zürich",
        "日本語のテキスト、中文文本，한국어 텍스트",
        "emoji 😀🎉👍🏽 and ZWJ 👨‍👩‍👧",
        "Ελληνικά και русский текст",
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
        "<|endoftext|> after the end",
        "def f(x):\n\treturn x**2 # comment\n",
        "https://example.com/path?q=1&r=two#frag",
        "   ",
        "",
        "a",
        "don't won't I'm you're we've they'll",
        "$$\\frac{a}{b}$$ and 2+2=4",
        "MixedCASE camelCase snake_case SCREAMING_CASE",
        "\xff\xfe invalid bytes \xc3\x28 here",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        for (int sp = 0; sp < 2; sp++) {
            int32_t *ia = NULL, *ib = NULL;
            int na = pz_tokenizer_encode(t, texts[i], strlen(texts[i]), sp, &ia, err);
            int nb = pz_tokenizer_encode(u, texts[i], strlen(texts[i]), sp, &ib, err);
            CHECKF(na >= 0 && na == nb && memcmp(ia, ib, sizeof(int32_t) * (size_t)(na > 0 ? na : 0)) == 0,
                   "encode of text %zu (special %d) differs", i, sp);
            free(ia);
            free(ib);
        }
    }
    if (gguf_py) CHECKF(run_check(path, "--orig", model) == 0, "smollm2: gguf-py check");
out1:
    pz_tokenizer_free(u);
    pz_model_free(r);
out0:
    pz_tokenizer_free(t);
    pz_model_free(m);
    unlink(path);
}

int main(void) {
    char *dir = pz_test_tmpdir("gguf_write");
    if (!dir) {
        fprintf(stderr, "no temporary directory\n");
        return 1;
    }
    snprintf(script, sizeof script, "%s/../ref/check_gguf.py", pz_test_data_dir());
    gguf_py = pz_test_python("gguf, numpy", "the gguf-py cross-check");
    test_random(dir);
    test_errors(dir);
    const char *model = pz_test_model_path();
    if (model) test_smollm2(model, dir);
    else fprintf(stderr, "PUZZLE_MODEL not found: the SmolLM2 round trip is skipped\n");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
    return pz_test_finish("test_gguf_write");
}
