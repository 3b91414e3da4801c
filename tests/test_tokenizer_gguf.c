// labels: cpu model
// test_tokenizer_gguf.c — the tokenizer loaded from the reference GGUF
// ($PUZZLE_MODEL): the same tables as tests/data/smollm2_tokenizer (written
// from that GGUF by tests/ref/gguf_tokenizer_json.py), exact ids for every
// vector in tests/data/tokenizer_vectors.json, chat rendering from the GGUF's
// own template, and pz_tokenizer_write_hf from the GGUF-loaded tokenizer
// checked by reloading and, where Python has `tokenizers`, by HF itself.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "gguf.h"
#include "testutil.h"
#include "tokenizer.h"
#include "tokenizer_vectors.h"

static void same_tables(const pz_tokenizer *a, const pz_tokenizer *b) {
    CHECK(pz_tokenizer_vocab_size(a) == pz_tokenizer_vocab_size(b));
    CHECK(pz_tokenizer_bos(a) == pz_tokenizer_bos(b) && pz_tokenizer_eos(a) == pz_tokenizer_eos(b));
    CHECK(pz_tokenizer_add_bos(a) == pz_tokenizer_add_bos(b));
    CHECK(pz_tokenizer_max_token_len(a) == pz_tokenizer_max_token_len(b));
    int same = 1;
    for (int32_t id = 0; id < pz_tokenizer_vocab_size(a) && id < pz_tokenizer_vocab_size(b); id++) {
        size_t la, lb;
        const char *ba = pz_tokenizer_token_bytes(a, id, &la), *bb = pz_tokenizer_token_bytes(b, id, &lb);
        same &= strcmp(pz_tokenizer_piece(a, id), pz_tokenizer_piece(b, id)) == 0 &&
                pz_tokenizer_is_special(a, id) == pz_tokenizer_is_special(b, id) && la == lb &&
                memcmp(ba, bb, la) == 0;
    }
    CHECK(same);
    const char *ta = pz_tokenizer_chat_template(a), *tb = pz_tokenizer_chat_template(b);
    CHECK(ta && tb && strcmp(ta, tb) == 0);
}

int main(void) {
    const char *model = pz_test_model_path();
    if (!model) {
        fprintf(stderr, "PUZZLE_MODEL unset or missing: skipped\n");
        return PZ_TEST_SKIP;
    }
    char err[PZ_ERRLEN], path[1024], cmd[4096];
    cJSON *vectors = tv_load();
    CHECK(vectors != NULL);

    pz_tokenizer *g = pz_tokenizer_load(model, err);
    CHECKF(g != NULL, "load %s: %s", model, err);
    pz_gguf *gg = pz_gguf_open(model, err);
    CHECKF(gg != NULL, "gguf open: %s", err);
    pz_tokenizer *g2 = gg ? pz_tokenizer_from_gguf(gg, err) : NULL;
    CHECKF(g2 != NULL, "from_gguf: %s", err);
    pz_gguf_close(gg);  // the tokenizer keeps copies of everything it needs
    snprintf(path, sizeof path, "%s/smollm2_tokenizer", pz_test_data_dir());
    pz_tokenizer *j = pz_tokenizer_load(path, err);
    CHECKF(j != NULL, "load %s: %s", path, err);
    if (!g || !g2 || !j || !vectors) goto done;

    same_tables(g, j);
    same_tables(g, g2);
    CHECK(strstr(pz_tokenizer_chat_template(g), "You are a helpful AI assistant named SmolLM") != NULL);
    int n = cJSON_GetArraySize(cJSON_GetObjectItem(vectors, "vectors"));
    CHECK(tv_check(g, vectors, "GGUF") == n);
    CHECK(tv_check(g2, vectors, "GGUF (pz_tokenizer_from_gguf)") == n);

    // write_hf from the GGUF-loaded tokenizer: reload and compare
    char *dir = pz_test_tmpdir("tokgguf");
    CHECK(dir != NULL);
    if (dir) {
        CHECKF(pz_tokenizer_write_hf(g, dir, err) == 0, "write_hf: %s", err);
        pz_tokenizer *back = pz_tokenizer_load(dir, err);
        CHECKF(back != NULL, "reload: %s", err);
        if (back) {
            same_tables(g, back);
            CHECK(tv_check(back, vectors, "GGUF -> write_hf -> tokenizer.json") == n);
            pz_tokenizer_free(back);
        }
        const char *py = pz_test_python("tokenizers, jinja2", "the Hugging Face tokenizers check of write_hf");
        if (py) {
            snprintf(cmd, sizeof cmd, "'%s' %s/../ref/check_tokenizer_hf.py %s %s/tokenizer_vectors.json", py,
                     pz_test_data_dir(), dir, pz_test_data_dir());
            CHECKF(system(cmd) == 0, "HF tokenizers disagrees with the written files (%s)", cmd);
        }
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
        free(dir);
    }
done:
    pz_tokenizer_free(g);
    pz_tokenizer_free(g2);
    pz_tokenizer_free(j);
    cJSON_Delete(vectors);
    return pz_test_finish("test_tokenizer_gguf");
}
