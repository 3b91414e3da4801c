// eval_chat.c — see eval_chat.h: greedy chat replies of a model, scored by
// the parent's log-likelihood, and the model's agreement with the parent's
// own greedy reply.
#include "eval_chat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "sampler.h"

int pz_chat_load_prompts(const char *path, char ***prompts, int *n, char *err) {
    size_t len;
    char *text = pz_read_file(path, (size_t)1 << 24, &len, err);
    if (!text) return -1;
    char **out = NULL;
    int cnt = 0, cap = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t')) line[--l] = 0;
        if (!l || line[0] == '#') continue;
        if (cnt == cap) {
            cap = cap ? 2 * cap : 32;
            char **g = realloc(out, sizeof *g * (size_t)cap);
            if (!g) goto oom;
            out = g;
        }
        char *p = malloc(l + 1), *w = p;
        if (!p) goto oom;
        for (const char *r = line; *r; r++) {
            if (r[0] == '\\' && r[1] == 'n') *w++ = '\n', r++;
            else *w++ = *r;
        }
        *w = 0;
        out[cnt++] = p;
    }
    free(text);
    if (!cnt) {
        free(out);
        return pz_err(err, "%s: no prompts (one per line; '#' starts a comment)", path);
    }
    *prompts = out, *n = cnt;
    return 0;
oom:
    free(text);
    pz_chat_prompts_free(out, cnt);
    return pz_err(err, "out of memory");
}

void pz_chat_prompts_free(char **prompts, int n) {
    for (int i = 0; prompts && i < n; i++) free(prompts[i]);
    free(prompts);
}

int pz_chat_prompt_ids(const pz_tokenizer *tok, const char *prompt, int32_t **ids, char *err) {
    const char *roles[1] = {"user"}, *contents[1] = {prompt};
    char *text = pz_tokenizer_chat_render(tok, roles, contents, 1, 1, err);
    if (!text) return -1;
    int n = pz_tokenizer_encode_prompt(tok, text, strlen(text), ids, err);  // BOS as `puzzle generate`
    free(text);
    return n;
}

// The tokens that end a reply: EOS and the chat template's end-of-turn tokens
// (pz_tokenizer_chat_stop_ids), as `puzzle generate --chat` and the server stop.
typedef struct {
    int32_t id[8];
    int n;
} stop_set;

static int is_stop(const stop_set *s, int32_t t) {
    for (int i = 0; i < s->n; i++)
        if (s->id[i] == t) return 1;
    return 0;
}

// Greedy continuations of nb prompts at once, prompt b in e's slot b (nb <= the engine's
// slots): each prompt ids[b][0..n[b]) is prefilled, then every unfinished reply gets its next
// token in one batched decode call per step (the batched engine does 16 rows in about a third
// of the time of 16 single-row steps). out[b] (max_new tokens) receives reply b, len[b] its
// count (a stop token, when produced, is the last one kept). logits: nb * vocab floats.
// 0, or -1 with err.
static int greedy_batch(pz_engine *e, int vocab, int32_t *const *ids, const int *n, int nb, int max_new,
                        const stop_set *stops, float *logits, int32_t *const *out, int *len, char *err) {
    int slots[PZ_CHAT_BATCH], live = 0;
    int32_t next[PZ_CHAT_BATCH];
    for (int b = 0; b < nb; b++) {
        pz_engine_slot_reset(e, b);
        if (pz_engine_prefill(e, b, ids[b], n[b], logits, 0, err)) return -1;
        int32_t t = pz_argmax(logits, vocab);
        out[b][0] = t, len[b] = 1;
        if (!is_stop(stops, t) && max_new > 1) slots[live] = b, next[live++] = t;
    }
    while (live) {
        if (pz_engine_decode(e, slots, next, live, logits, err)) return -1;
        int k = 0;
        for (int i = 0; i < live; i++) {
            int b = slots[i];
            int32_t t = pz_argmax(logits + (size_t)i * vocab, vocab);
            out[b][len[b]++] = t;
            if (!is_stop(stops, t) && len[b] < max_new) slots[k] = b, next[k++] = t;
        }
        live = k;
    }
    return 0;
}

// Teacher-forced pass of e over prompt ⊕ cont: the mean log-probability of
// cont (*ll) and the fraction of cont tokens that are e's argmax (*top1).
static int forced(pz_engine *e, int vocab, const int32_t *prompt, int n, const int32_t *cont, int m, int32_t *buf,
                  float *all, double *ll, double *top1, char *err) {
    memcpy(buf, prompt, sizeof *buf * (size_t)n);
    memcpy(buf + n, cont, sizeof *buf * (size_t)m);
    pz_engine_slot_reset(e, 0);
    if (pz_engine_prefill(e, 0, buf, n + m, all, 1, err)) return -1;
    double s = 0;
    int agree = 0;
    for (int j = 0; j < m; j++) {
        const float *row = all + (size_t)(n - 1 + j) * vocab;
        float mx = row[0];
        for (int v = 1; v < vocab; v++)
            if (row[v] > mx) mx = row[v];
        double z = 0;
        for (int v = 0; v < vocab; v++) z += exp((double)row[v] - mx);
        s += (double)row[cont[j]] - mx - log(z);
        agree += pz_argmax(row, vocab) == cont[j];
    }
    *ll = m ? s / m : NAN;
    *top1 = m ? (double)agree / m : NAN;
    return 0;
}

int pz_chat_eval(pz_engine *model, pz_engine *ref, const pz_tokenizer *tok, int vocab, char *const *prompts, int n,
                 int max_new, int32_t *const *ref_ids, const int *ref_lens, pz_chat_score *out, void (*progress)(void *user, int done, int n), void *user,
                 char *err) {
    stop_set stops;  // EOS and the chat template's end-of-turn tokens
    stops.n = pz_tokenizer_chat_stop_ids(tok, stops.id, (int)(sizeof stops.id / sizeof stops.id[0]));
    int max_ctx = pz_engine_max_ctx(model) < pz_engine_max_ctx(ref) ? pz_engine_max_ctx(model)
                                                                     : pz_engine_max_ctx(ref);
    int rc = -1;
    int need_ref = ref != model && !ref_ids;  // the reference's replies are generated here too
    int32_t **ids = calloc((size_t)n, sizeof *ids), **reply = calloc((size_t)n, sizeof *reply);
    int32_t **preply = calloc((size_t)n, sizeof *preply);
    int *np = calloc((size_t)n, sizeof *np), *m = calloc((size_t)n, sizeof *m), *pm = calloc((size_t)n, sizeof *pm);
    int32_t *buf = malloc(sizeof(int32_t) * (size_t)max_ctx);
    float *logits = malloc(sizeof(float) * (size_t)vocab * PZ_CHAT_BATCH);
    float *all = malloc(sizeof(float) * (size_t)vocab * (size_t)max_ctx);
    memset(out, 0, sizeof *out * (size_t)n);
    if (!ids || !reply || !preply || !np || !m || !pm || !buf || !logits || !all) {
        pz_err(err, "out of memory for chat evaluation (%d positions x %d logits)", max_ctx, vocab);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if ((np[i] = pz_chat_prompt_ids(tok, prompts[i], &ids[i], err)) < 0) goto done;
        if (np[i] + max_new > max_ctx) {
            pz_err(err, "chat prompt %d has %d tokens: with %d new ones it exceeds the context of %d", i + 1, np[i],
                   max_new, max_ctx);
            goto done;
        }
        if (!(reply[i] = malloc(sizeof(int32_t) * (size_t)max_new)) ||
            (need_ref && !(preply[i] = malloc(sizeof(int32_t) * (size_t)max_new)))) {
            pz_err(err, "out of memory");
            goto done;
        }
    }
    // The greedy replies, as many prompts at once as the engines have slots.
    int bm = pz_engine_n_slots(model), br = pz_engine_n_slots(ref);
    if (bm > PZ_CHAT_BATCH) bm = PZ_CHAT_BATCH;
    if (br > PZ_CHAT_BATCH) br = PZ_CHAT_BATCH;
    for (int i = 0; i < n; i += bm)
        if (greedy_batch(model, vocab, ids + i, np + i, n - i < bm ? n - i : bm, max_new, &stops, logits, reply + i,
                         m + i, err))
            goto done;
    for (int i = 0; need_ref && i < n; i += br)
        if (greedy_batch(ref, vocab, ids + i, np + i, n - i < br ? n - i : br, max_new, &stops, logits, preply + i,
                         pm + i, err))
            goto done;
    for (int i = 0; i < n; i++) {
        const int32_t *pr = reply[i];
        int pl = m[i];
        if (ref_ids && ref_ids[i] && ref_lens[i] > 0 && ref_lens[i] <= max_new) pr = ref_ids[i], pl = ref_lens[i];
        else if (need_ref) pr = preply[i], pl = pm[i];
        else if (ref != model) {  // a known reply missing for this prompt: generated alone
            if (!(preply[i] = malloc(sizeof(int32_t) * (size_t)max_new)) ||
                greedy_batch(ref, vocab, ids + i, np + i, 1, max_new, &stops, logits, preply + i, pm + i, err)) {
                if (!preply[i]) pz_err(err, "out of memory");
                goto done;
            }
            pr = preply[i], pl = pm[i];
        }
        double ll, t1, ll2, t2;
        if (forced(ref, vocab, ids[i], np[i], reply[i], m[i], buf, all, &ll, &t1, err) ||
            forced(model, vocab, ids[i], np[i], pr, pl, buf, all, &ll2, &t2, err))
            goto done;
        int shown = m[i] && is_stop(&stops, reply[i][m[i] - 1]) ? m[i] - 1 : m[i];
        out[i].reply = pz_tokenizer_decode(tok, reply[i], (size_t)shown, 1);
        out[i].reply_ids = malloc(sizeof(int32_t) * (size_t)m[i]);
        if (out[i].reply_ids) memcpy(out[i].reply_ids, reply[i], sizeof(int32_t) * (size_t)m[i]);
        if (!out[i].reply || !out[i].reply_ids) {
            pz_err(err, "out of memory");
            goto done;
        }
        out[i].reply_tokens = m[i];
        out[i].parent_ll = ll;
        out[i].top1 = t2;
        out[i].top1_tokens = pl;
        if (progress) progress(user, i + 1, n);
    }
    rc = 0;
done:
    if (rc)
        for (int i = 0; i < n; i++) {
            free(out[i].reply), out[i].reply = NULL;
            free(out[i].reply_ids), out[i].reply_ids = NULL;
        }
    for (int i = 0; i < n; i++) {
        if (ids) free(ids[i]);
        if (reply) free(reply[i]);
        if (preply) free(preply[i]);
    }
    free(ids);
    free(reply);
    free(preply);
    free(np);
    free(m);
    free(pm);
    free(buf);
    free(logits);
    free(all);
    return rc;
}
