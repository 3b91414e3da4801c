// test_decilm_readers.c — every FFN width this toolkit writes into a DeciLM
// config.json for the reference parent (the default search space's widths,
// scripts/demo_space.json's, the parent's own, linear and noop, next to
// every attention kind) reads back as the same shape under the rule
// transformers and vLLM apply, checked by an independent Python reader
// (tests/ref/check_decilm_config.py) against the stored safetensors shapes.
// A width that rule cannot express (1152: the old demo space) must make that
// reader fail, so the check can fail.
// labels: cpu
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "model.h"
#include "space.h"
#include "testmodel.h"
#include "testutil.h"

static char err[PZ_ERRLEN];
static char python[1200] = "python3";
static char checker[1200];

// SmolLM2-135M's shape (vocabulary cut to keep the files small).
static void parent_config(pz_config *c) {
    memset(c, 0, sizeof *c);
    c->n_layer = 30, c->hidden = 576, c->n_head = 9, c->head_dim = 64, c->vocab = 64, c->max_ctx = 2048;
    c->rope_theta = 100000, c->norm_eps = 1e-5f, c->tie_embeddings = 1, c->bos_id = c->eos_id = -1;
    for (int i = 0; i < c->n_layer; i++) c->layers[i] = (pz_layer_spec){PZ_ATTN_GQA, 3, PZ_FFN_SWIGLU, 1536};
}

static int add_width(int *w, int n, int x) {
    for (int i = 0; i < n; i++)
        if (w[i] == x) return n;
    w[n] = x;
    return n + 1;
}

static int run_checker(const char *dir) {
    char cmd[4000];
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' >&2", python, checker, dir);
    int rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

// A child of the parent's shape whose layers are the given FFN widths (then
// a linear and a noop FFN), attention cycling through gqa3, gqa1, linear, noop.
static int write_child(const int *widths, int nw, const char *dir) {
    pz_config c;
    parent_config(&c);
    c.n_layer = nw + 2;
    static const pz_layer_spec attn[4] = {{PZ_ATTN_GQA, 3, 0, 0}, {PZ_ATTN_GQA, 1, 0, 0},
                                          {PZ_ATTN_LINEAR, 0, 0, 0}, {PZ_ATTN_NOOP, 0, 0, 0}};
    for (int i = 0; i < c.n_layer; i++) {
        c.layers[i] = attn[i % 4];
        if (i < nw) c.layers[i].ffn = PZ_FFN_SWIGLU, c.layers[i].n_ff = widths[i];
        else c.layers[i].ffn = i == nw ? PZ_FFN_LINEAR : PZ_FFN_NOOP;
    }
    if (pz_testmodel_write_hf(&c, PZ_DT_BF16, 11, dir, err)) return -1;
    pz_config back;
    if (pz_model_load_config(dir, &back, err)) return -1;
    for (int i = 0; i < c.n_layer; i++)
        CHECKF(back.layers[i].ffn == c.layers[i].ffn && back.layers[i].n_ff == c.layers[i].n_ff &&
               back.layers[i].attn == c.layers[i].attn && back.layers[i].n_kv == c.layers[i].n_kv,
               "layer %d does not read back in C", i);
    return 0;
}

int main(void) {
    const char *data = pz_test_data_dir(), *cache = getenv("PUZZLE_CACHE");
    if (!data || !*data) {
        fprintf(stderr, "skip: PUZZLE_TESTDATA unset\n");
        return PZ_TEST_SKIP;
    }
    snprintf(checker, sizeof checker, "%s/../ref/check_decilm_config.py", data);
    if (cache && *cache) {
        char venv[1100];
        snprintf(venv, sizeof venv, "%s/venv/bin/python3", cache);
        if (access(venv, X_OK) == 0) snprintf(python, sizeof python, "%s", venv);
    }
    char probe[1300];
    snprintf(probe, sizeof probe, "'%s' -c pass 2>/dev/null", python);
    if (system(probe) != 0) {
        fprintf(stderr, "skip: no %s\n", python);
        return PZ_TEST_SKIP;
    }

    pz_config parent;
    parent_config(&parent);
    int widths[2 * PZ_SPACE_MAX_VARIANTS], nw = 0;
    pz_space s;
    CHECKF(pz_space_default(&s, &parent, 0, err) == 0, "%s", err);
    for (int i = 0; i < s.n_ffn; i++)
        if (s.ffn[i].ffn == PZ_FFN_SWIGLU) nw = add_width(widths, nw, s.ffn[i].size);
    pz_space_free(&s);
    char demo[1100];
    snprintf(demo, sizeof demo, "%s/../../scripts/demo_space.json", data);
    CHECKF(pz_space_read_file(&s, demo, &parent, err) == 0, "%s", err);
    for (int i = 0; i < s.n_ffn; i++)
        if (s.ffn[i].ffn == PZ_FFN_SWIGLU) nw = add_width(widths, nw, s.ffn[i].size);
    pz_space_free(&s);
    CHECKF(nw >= 5, "%d widths", nw);
    for (int i = 0; i < nw; i++)
        CHECKF(pz_decilm_ffn_width(pz_decilm_ffn_mult(widths[i], 576), 576) == widths[i], "width %d", widths[i]);

    char *tmp = pz_test_tmpdir("decilm");
    CHECK(tmp != NULL);
    if (!tmp) return pz_test_finish("test_decilm_readers");
    char dir[1100];
    snprintf(dir, sizeof dir, "%s/child", tmp);
    CHECKF(write_child(widths, nw, dir) == 0, "%s", err);
    CHECKF(run_checker(dir) == 0, "the DeciLM rule reads %s with other shapes", dir);

    // The old demo space's 1152: our reader gets it from the extension, the
    // DeciLM rule does not.
    const int odd[] = {1536, 1152};
    snprintf(dir, sizeof dir, "%s/odd", tmp);
    CHECKF(write_child(odd, 2, dir) == 0, "%s", err);
    CHECKF(run_checker(dir) == 1, "the checker accepted a width of 1152");

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
    free(tmp);
    return pz_test_finish("test_decilm_readers");
}
