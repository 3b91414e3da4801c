// labels: cpu model
// test_eval_chat.c — the chat part of `puzzle eval` (puzzle/eval_chat.c) generates the greedy
// replies of several prompts at once, one batched decode call per step: on the reference
// parent, with batch-invariant engines (a row's logits do not depend on the rows beside it),
// the batched replies, their parent log-likelihoods and top-1 agreements equal those of
// engines with one slot that answer one prompt at a time, whether the reference (parent)
// model's replies are generated batched too, known from an earlier evaluation (one missing,
// answered alone), or the model is its own reference; more prompts than slots are answered in
// turns.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "engine.h"
#include "eval_chat.h"
#include "model.h"
#include "testutil.h"
#include "tokenizer.h"

#define N_PROMPTS 5
#define MAX_NEW 12

static pz_engine *engine(const pz_model *m, int slots, char *err) {
    pz_engine_params ep = pz_engine_default_params();
    ep.n_slots = slots;
    ep.max_ctx = 128;
    ep.max_batch = 128;
    ep.n_threads = 2;
    ep.batch_invariant = 1;
    return pz_engine_create(m, ep, err);
}

static void free_scores(pz_chat_score *s, int n) {
    for (int i = 0; i < n; i++) free(s[i].reply), free(s[i].reply_ids);
}

// a and b scored the same prompts: the same replies and the same numbers, bit for bit.
static void same(const char *what, const pz_chat_score *a, const pz_chat_score *b, int n) {
    for (int i = 0; i < n; i++) {
        CHECKF(a[i].reply_tokens == b[i].reply_tokens && a[i].reply_tokens >= 1 && a[i].reply_tokens <= MAX_NEW &&
                   !memcmp(a[i].reply_ids, b[i].reply_ids, sizeof(int32_t) * (size_t)a[i].reply_tokens),
               "%s: prompt %d: replies differ (%d and %d tokens: '%s' / '%s')", what, i, a[i].reply_tokens,
               b[i].reply_tokens, a[i].reply, b[i].reply);
        CHECKF(a[i].parent_ll == b[i].parent_ll && a[i].top1 == b[i].top1 && a[i].top1_tokens == b[i].top1_tokens,
               "%s: prompt %d: ll %.9g / %.9g, top-1 %.6f / %.6f over %d / %d tokens", what, i, a[i].parent_ll,
               b[i].parent_ll, a[i].top1, b[i].top1, a[i].top1_tokens, b[i].top1_tokens);
    }
}

int main(void) {
    const char *path = pz_test_model_path();
    if (!path) {
        fprintf(stderr, "test_eval_chat: skipped: $PUZZLE_MODEL unset or missing (scripts/fetch_model.sh)\n");
        return PZ_TEST_SKIP;
    }
    char err[PZ_ERRLEN] = "";
    char *prompts[N_PROMPTS] = {"What is the capital of France?", "Name three colours.",
                                "Write one sentence about the sea.", "What is 2 + 2?",
                                "Say hello in Spanish."};
    // The model: the parent in bf16; its reference: the parent in fp32 (close, not equal).
    pz_model *mf = pz_model_load(path, PZ_DT_F32, err), *mb = mf ? pz_model_load(path, PZ_DT_BF16, err) : NULL;
    pz_tokenizer *tok = mb ? pz_tokenizer_load(path, err) : NULL;
    CHECKF(tok != NULL, "%s", err);
    if (!tok) return pz_test_finish("test_eval_chat");
    int vocab = mf->cfg.vocab;
    // One slot each, and 3 slots (5 prompts: a turn of 3, then one of 2).
    pz_engine *m1 = engine(mb, 1, err), *r1 = engine(mf, 1, err), *m3 = engine(mb, 3, err), *r3 = engine(mf, 3, err);
    CHECKF(m1 && r1 && m3 && r3, "%s", err);
    if (!m1 || !r1 || !m3 || !r3) return pz_test_finish("test_eval_chat");

    pz_chat_score one[N_PROMPTS], bat[N_PROMPTS], self1[N_PROMPTS], self3[N_PROMPTS], known[N_PROMPTS];
    // The reference's replies generated here: one at a time, and batched on both engines.
    int rc1 = pz_chat_eval(m1, r1, tok, vocab, prompts, N_PROMPTS, MAX_NEW, NULL, NULL, one, NULL, NULL, err);
    CHECKF(rc1 == 0, "%s", err);
    int rc3 = pz_chat_eval(m3, r3, tok, vocab, prompts, N_PROMPTS, MAX_NEW, NULL, NULL, bat, NULL, NULL, err);
    CHECKF(rc3 == 0, "%s", err);
    if (!rc1 && !rc3) same("reference's replies generated", one, bat, N_PROMPTS);

    // The reference as its own model (the parent's evaluation): its greedy replies.
    int rs1 = pz_chat_eval(r1, r1, tok, vocab, prompts, N_PROMPTS, MAX_NEW, NULL, NULL, self1, NULL, NULL, err);
    CHECKF(rs1 == 0, "%s", err);
    int rs3 = pz_chat_eval(r3, r3, tok, vocab, prompts, N_PROMPTS, MAX_NEW, NULL, NULL, self3, NULL, NULL, err);
    CHECKF(rs3 == 0, "%s", err);
    if (!rs1 && !rs3) {
        same("model is its own reference", self1, self3, N_PROMPTS);
        for (int i = 0; i < N_PROMPTS; i++)
            CHECKF(self3[i].top1 == 1.0, "prompt %d: the model agrees with itself on %.3f of its reply", i,
                   self3[i].top1);
    }

    // The reference's replies known (its own evaluation), prompt 2's missing: answered alone.
    if (!rc1 && !rs3) {
        int32_t *ids[N_PROMPTS];
        int lens[N_PROMPTS];
        for (int i = 0; i < N_PROMPTS; i++) ids[i] = self3[i].reply_ids, lens[i] = self3[i].reply_tokens;
        ids[2] = NULL, lens[2] = 0;
        int rk = pz_chat_eval(m3, r3, tok, vocab, prompts, N_PROMPTS, MAX_NEW, ids, lens, known, NULL, NULL, err);
        CHECKF(rk == 0, "%s", err);
        if (!rk) {
            same("reference's replies known", one, known, N_PROMPTS);
            free_scores(known, N_PROMPTS);
        }
    }
    if (!rc1) free_scores(one, N_PROMPTS);
    if (!rc3) free_scores(bat, N_PROMPTS);
    if (!rs1) free_scores(self1, N_PROMPTS);
    if (!rs3) free_scores(self3, N_PROMPTS);
    pz_engine_free(m1), pz_engine_free(r1), pz_engine_free(m3), pz_engine_free(r3);
    pz_tokenizer_free(tok);
    pz_model_free(mf), pz_model_free(mb);
    return pz_test_finish("test_eval_chat");
}
