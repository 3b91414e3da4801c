// testmodel.c — see testmodel.h.
#include "testmodel.h"
#include "testutil.h"
#include "tensor.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void set_layers(pz_config *c, const char *spec) {
    // spec: "a:f a:f ...", a = g<kv> | l | n, f = s<n_ff> | l | n
    int n = 0;
    const char *p = spec;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        pz_layer_spec *L = &c->layers[n++];
        memset(L, 0, sizeof *L);
        char a = *p++;
        if (a == 'g') {
            L->attn = PZ_ATTN_GQA;
            L->n_kv = (int)strtol(p, (char **)&p, 10);
        } else {
            L->attn = a == 'l' ? PZ_ATTN_LINEAR : PZ_ATTN_NOOP;
        }
        p++;  // ':'
        char f = *p++;
        if (f == 's') {
            L->ffn = PZ_FFN_SWIGLU;
            L->n_ff = (int)strtol(p, (char **)&p, 10);
        } else {
            L->ffn = f == 'l' ? PZ_FFN_LINEAR : PZ_FFN_NOOP;
        }
    }
    c->n_layer = n;
}

void pz_testmodel_config(pz_config *c, int v) {
    memset(c, 0, sizeof *c);
    c->max_ctx = 256;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->bos_id = 1;
    c->eos_id = 2;
    switch (v) {
    case 0:
        c->hidden = 64, c->n_head = 4, c->head_dim = 16, c->vocab = 97, c->tie_embeddings = 0;
        set_layers(c, "g4:s96 g2:l l:s160 n:s64 g1:n g2:s96");
        break;
    case 1:
        c->hidden = 48, c->n_head = 6, c->head_dim = 8, c->vocab = 61, c->tie_embeddings = 1;
        c->rope_scaling = PZ_ROPE_SCALING_LLAMA3;
        c->rope_factor = 8, c->rope_low_freq_factor = 1, c->rope_high_freq_factor = 4, c->rope_orig_ctx = 32;
        set_layers(c, "g3:s128 n:n g6:l l:l g2:s40");
        break;
    default:
        c->hidden = 96, c->n_head = 3, c->head_dim = 32, c->vocab = 130, c->tie_embeddings = 0;
        c->rope_theta = 100000.0f;
        set_layers(c, "g3:s256 g1:s512 g3:s256 g1:s200");
        break;
    }
}

static void fill(pz_mat *w, float scale, uint64_t *rng) {
    size_t n = (size_t)w->rows * w->cols;
    if (w->type == PZ_DT_F32) {
        pz_test_fill_randn((float *)w->data, n, scale, rng);
        return;
    }
    uint16_t *d = w->data;
    for (size_t i = 0; i < n; i++) d[i] = pz_f32_to_bf16(scale * pz_test_randn(rng));
}

static void fill_norm(float *x, int n, uint64_t *rng) {
    for (int i = 0; i < n; i++) x[i] = 1.0f + 0.2f * pz_test_randn(rng);
}

pz_model *pz_testmodel_random(const pz_config *c, pz_dt wt, uint64_t seed, char *err) {
    pz_model *m = pz_model_alloc(c, wt, err);
    if (!m) return NULL;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ULL + 7;
    float sh = 1.0f / sqrtf((float)c->hidden);
    fill(&m->tok_embd, 1.0f, &rng);
    for (int l = 0; l < c->n_layer; l++) {
        const pz_layer_spec *s = &c->layers[l];
        pz_layer_weights *w = &m->layers[l];
        if (s->attn != PZ_ATTN_NOOP) fill_norm(w->attn_norm, c->hidden, &rng);
        if (s->attn == PZ_ATTN_GQA) {
            // q and k a bit larger than 1/sqrt(in) so the softmax is peaked.
            fill(&w->wq, 2.0f * sh, &rng);
            fill(&w->wk, 2.0f * sh, &rng);
            fill(&w->wv, sh, &rng);
            fill(&w->wo, 0.5f / sqrtf((float)(c->n_head * c->head_dim)), &rng);
        } else if (s->attn == PZ_ATTN_LINEAR) {
            fill(&w->wo, 0.5f * sh, &rng);
        }
        if (s->ffn != PZ_FFN_NOOP) fill_norm(w->ffn_norm, c->hidden, &rng);
        if (s->ffn == PZ_FFN_SWIGLU) {
            fill(&w->w_gate, 1.5f * sh, &rng);
            fill(&w->w_up, sh, &rng);
            fill(&w->w_down, 0.7f / sqrtf((float)s->n_ff), &rng);
        } else if (s->ffn == PZ_FFN_LINEAR) {
            fill(&w->w_down, 0.5f * sh, &rng);
        }
    }
    fill_norm(m->out_norm, c->hidden, &rng);
    if (!c->tie_embeddings) fill(&m->lm_head, 2.0f * sh, &rng);
    return m;
}

int pz_testmodel_write_hf(const pz_config *c, pz_dt wt, uint64_t seed, const char *dir, char *err) {
    pz_model *m = pz_testmodel_random(c, wt, seed, err);
    if (!m) return -1;
    int rc = pz_model_save_hf(m, dir, err);
    pz_model_free(m);
    return rc;
}
