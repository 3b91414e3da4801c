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

// Greedy continuation of ids[0..n) into out (at most max_new tokens; a stop
// token, when produced, is the last one kept). Returns the count or -1.
static int greedy(pz_engine *e, int vocab, const int32_t *ids, int n, int max_new, const stop_set *stops,
                  float *logits, int32_t *out, char *err) {
    pz_engine_slot_reset(e, 0);
    if (pz_engine_prefill(e, 0, ids, n, logits, 0, err)) return -1;
    int k = 0, slot = 0;
    while (k < max_new) {
        int32_t next = pz_argmax(logits, vocab);
        out[k++] = next;
        if (is_stop(stops, next) || k == max_new) break;
        if (pz_engine_decode(e, &slot, &next, 1, logits, err)) return -1;
    }
    return k;
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
    int32_t *ids = NULL, *reply = malloc(sizeof(int32_t) * (size_t)max_new);
    int32_t *preply = malloc(sizeof(int32_t) * (size_t)max_new), *buf = malloc(sizeof(int32_t) * (size_t)max_ctx);
    float *logits = malloc(sizeof(float) * (size_t)vocab);
    float *all = malloc(sizeof(float) * (size_t)vocab * (size_t)max_ctx);
    memset(out, 0, sizeof *out * (size_t)n);
    if (!reply || !preply || !buf || !logits || !all) {
        pz_err(err, "out of memory for chat evaluation (%d positions x %d logits)", max_ctx, vocab);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        int np = pz_chat_prompt_ids(tok, prompts[i], &ids, err);
        if (np < 0) goto done;
        if (np + max_new > max_ctx) {
            pz_err(err, "chat prompt %d has %d tokens: with %d new ones it exceeds the context of %d", i + 1, np,
                   max_new, max_ctx);
            goto done;
        }
        int m = greedy(model, vocab, ids, np, max_new, &stops, logits, reply, err);
        int known = ref_ids && ref_ids[i] && ref_lens[i] > 0 && ref_lens[i] <= max_new;
        int pm = m < 0 ? -1 : known ? ref_lens[i] : ref == model ? m
               : greedy(ref, vocab, ids, np, max_new, &stops, logits, preply, err);
        if (m < 0 || pm < 0) goto done;
        if (known) memcpy(preply, ref_ids[i], sizeof *preply * (size_t)pm);
        else if (ref == model) memcpy(preply, reply, sizeof *reply * (size_t)m);
        double ll, t1, ll2, t2;
        if (forced(ref, vocab, ids, np, reply, m, buf, all, &ll, &t1, err) ||
            forced(model, vocab, ids, np, preply, pm, buf, all, &ll2, &t2, err))
            goto done;
        int shown = m && is_stop(&stops, reply[m - 1]) ? m - 1 : m;
        out[i].reply = pz_tokenizer_decode(tok, reply, (size_t)shown, 1);
        out[i].reply_ids = malloc(sizeof *reply * (size_t)m);
        if (out[i].reply_ids) memcpy(out[i].reply_ids, reply, sizeof *reply * (size_t)m);
        if (!out[i].reply || !out[i].reply_ids) {
            pz_err(err, "out of memory");
            goto done;
        }
        out[i].reply_tokens = m;
        out[i].parent_ll = ll;
        out[i].top1 = t2;
        out[i].top1_tokens = pm;
        free(ids);
        ids = NULL;
        if (progress) progress(user, i + 1, n);
    }
    rc = 0;
done:
    if (rc)
        for (int i = 0; i < n; i++) {
            free(out[i].reply), out[i].reply = NULL;
            free(out[i].reply_ids), out[i].reply_ids = NULL;
        }
    free(ids);
    free(reply);
    free(preply);
    free(buf);
    free(logits);
    free(all);
    return rc;
}
