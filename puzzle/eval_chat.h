// eval_chat.h — the chat part of `puzzle eval --chat FILE`: a fixed set of
// chat prompts, each wrapped as one user turn in the model's chat template.
// For each prompt the model's greedy reply is scored by the reference
// (parent) model's mean log-likelihood of it, and the model's top-1
// agreement is measured along the reference's own greedy reply
// (teacher-forced). Used by cmd_eval.c only; nothing here prints.
#ifndef PZ_EVAL_CHAT_H
#define PZ_EVAL_CHAT_H

#include <stdint.h>

#include "engine.h"
#include "tokenizer.h"

// Reads prompts from path: one per line, blank lines and lines starting with
// '#' skipped, "\n" in a line stands for a line break. *prompts (and each
// string) malloc'ed: free with pz_chat_prompts_free. 0, or -1 with err.
int pz_chat_load_prompts(const char *path, char ***prompts, int *n, char *err);
void pz_chat_prompts_free(char **prompts, int n);

// The token ids of prompt as a user turn with the generation prompt (BOS
// first when the tokenizer adds one). *ids malloc'ed. Returns the count or -1.
int pz_chat_prompt_ids(const pz_tokenizer *tok, const char *prompt, int32_t **ids, char *err);

typedef struct {
    char *reply;        // the model's greedy reply, decoded (malloc'ed)
    int32_t *reply_ids; // its token ids (malloc'ed)
    int reply_tokens;   // their count, the end-of-turn token included when the model ended
    double parent_ll;   // mean log-likelihood per reply token under the reference (nats)
    double top1;        // fraction of the reference's greedy reply tokens the model predicts
    int top1_tokens;    // the reference reply's length in tokens
} pz_chat_score;

// Prompts whose greedy replies are decoded together (one batched decode call per step).
#define PZ_CHAT_BATCH 16

// Scores n prompts: model and ref are engines (ref may be model itself) of at
// least max_ctx >= longest prompt + max_new tokens, whose first slots (up to
// PZ_CHAT_BATCH) generate the replies of as many prompts at once; vocab is
// their vocabulary. ref_ids / ref_lens (may be NULL): the reference's greedy
// replies already known (from an earlier evaluation of it), not recomputed.
// out[n] is filled (free each reply and reply_ids with free()).
// progress (may be NULL) is called after each prompt. 0, or -1 with err.
int pz_chat_eval(pz_engine *model, pz_engine *ref, const pz_tokenizer *tok, int vocab, char *const *prompts, int n,
                 int max_new, int32_t *const *ref_ids, const int *ref_lens, pz_chat_score *out, void (*progress)(void *user, int done, int n), void *user,
                 char *err);

#endif
