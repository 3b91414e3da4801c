// scheduler.c — the engine loop (scheduler.h). One mutex (s->mu) guards the
// queue, the running list, every job's output buffer and flags; the loop
// thread holds it except around engine calls, and only it touches the
// engine and the sequences' sampling state.
#include "scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "sampler.h"

enum { SEQ_WAIT_FORK, SEQ_PREFILL, SEQ_DECODE, SEQ_DONE };

typedef struct {
    int index;          // choice index
    int slot;           // engine slot, -1 when none
    int state;
    int32_t *ctx;       // tokens to put in the KV cache before decoding (prompt, or prompt +
    int n_ctx, n_fed;   // generated tokens but the last on readmission after preemption)
    int32_t pending;    // sampled, not yet in the KV cache (the next decode input)
    int32_t *gen;       // sampled tokens
    int n_gen, cap_gen;
    pz_sampler smp;
    pz_utf8_stream us;
    char *hold;         // decoded text held back (could begin a stop string)
    size_t n_hold;
    char *text;         // non-streaming: the whole text
    size_t n_text;
    long text_bytes;    // bytes emitted so far (completions text_offset)
    pz_oai_logprob *lp; // non-streaming with logprobs: one per sampled token
    int n_lp;
    const char *finish; // "stop" / "length" once done
    double t_last;      // time of the previous token (inter-token latency)
    int deferred;       // waits for a page another prompt computes (step_prefill)
} seq;

struct pz_job {
    pz_sched *s;
    pz_oai_request r;
    int32_t *prompt;
    int n_prompt;
    int max_tokens;     // per choice
    seq seqs[PZ_OAI_MAX_N];
    int n_seq;
    long long order;    // admission order (larger: younger)
    int refs, cancelled, finished, status, started;
    int queued, running;
    char *out;          // bytes for the HTTP side: [off, n) not read yet
    size_t n_out, off_out, cap_out;
    pthread_cond_t cv;
    double t_arrive;
    int first_done;
    long completion_tokens;
    char id[48];
    long long created;
    pz_job *next;       // queue or running list
};

struct pz_sched {
    pz_engine *e;
    const pz_tokenizer *tok;
    pz_metrics *m;
    char model[256];
    pz_sched_params p;
    pthread_mutex_t mu;
    pthread_cond_t work;
    pthread_t thread;
    int stop, closed, cancel_all;
    pz_job *queue, *running;    // singly linked; queue in arrival order (preempted first)
    int n_queued;
    int n_slots, *slot_used;
    int vocab, max_ctx, eos;
    int32_t chat_stop[8];       // EOS and the chat format's end-of-turn tokens
    int n_chat_stop;
    long long order, next_id;
    float *logits;              // (n_slots, vocab)
    void *scratch;              // sampler scratch
    int *dslots;
    int32_t *dtoks;
    seq **dseq;
    pz_job **djob;
    int max_batch;              // the engine's most tokens in one call
    int32_t *ptoks;             // one prefill call: its tokens (max_batch),
    int *pslot, *pn, *pwant;    // and per sequence (n_slots): slot, tokens, logits wanted,
    seq **pseq;                 // the sequence, its job, and the call's jobs once each
    pz_job **pjob, **fjob;
    int mixed;                  // pz_engine_mixed_steps: decode rows and prompt chunks in one call
    int32_t *ctoks;             // such a call: tokens (max_batch), and per sequence (n_slots)
    int *cslot, *cn, *cwant;    // slot, tokens, logits wanted
};

// ---- output (s->mu held) ----------------------------------------------------

static int out_append(pz_job *j, const char *b, size_t n) {
    if (j->n_out + n + 1 > j->cap_out) {
        size_t cap = (j->cap_out ? j->cap_out * 2 : 4096) + n;
        char *p = realloc(j->out, cap);
        if (!p) return -1;
        j->out = p, j->cap_out = cap;
    }
    memcpy(j->out + j->n_out, b, n);
    j->n_out += n;
    j->out[j->n_out] = 0;
    pthread_cond_broadcast(&j->cv);
    return 0;
}

static void out_event(pz_job *j, cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return;
    out_append(j, "data: ", 6);
    out_append(j, s, strlen(s));
    out_append(j, "\n\n", 2);
    free(s);
}

static cJSON *chunk(pz_job *j) {
    cJSON *o = pz_oai_envelope(j->r.chat, 1, j->id, j->created, j->s->model);
    if (j->r.include_usage) cJSON_AddNullToObject(o, "usage");
    return o;
}

// ---- job bookkeeping (s->mu held) --------------------------------------------

static void job_free(pz_job *j) {
    for (int i = 0; i < j->n_seq; i++) {
        seq *q = &j->seqs[i];
        if (q->ctx != j->prompt) free(q->ctx);
        free(q->gen);
        free(q->hold);
        free(q->text);
        free(q->lp);
    }
    free(j->prompt);
    free(j->out);
    pz_oai_request_free(&j->r);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static void job_unref(pz_job *j) {
    if (--j->refs == 0) job_free(j);
}

static void list_remove(pz_job **head, pz_job *j) {
    for (pz_job **p = head; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            j->next = NULL;
            return;
        }
}

static void seq_release(pz_sched *s, seq *q) {
    if (q->slot >= 0) {
        pz_engine_slot_reset(s->e, q->slot);
        s->slot_used[q->slot] = 0;
        q->slot = -1;
    }
}

// The final non-streaming body.
static void job_body(pz_job *j) {
    pz_sched *s = j->s;
    cJSON *o = pz_oai_envelope(j->r.chat, 0, j->id, j->created, s->model);
    for (int i = 0; i < j->n_seq; i++) {
        seq *q = &j->seqs[i];
        char *t = pz_oai_utf8(q->text ? q->text : "", q->n_text);
        cJSON *lp = j->r.logprobs ? pz_oai_logprobs_json(s->tok, j->r.chat, q->lp, q->n_lp, 0) : NULL;
        pz_oai_add_choice(o, j->r.chat, 0, i, t ? t : "", 0, q->finish ? q->finish : "length", lp);
        free(t);
    }
    cJSON_AddItemToObject(o, "usage", pz_oai_usage(j->n_prompt, j->completion_tokens));
    char *b = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (b) out_append(j, b, strlen(b));
    free(b);
}

// Leaves the running list (or queue) for good: slots freed, output closed.
static void job_finish(pz_sched *s, pz_job *j, int status, const char *errmsg) {
    for (int i = 0; i < j->n_seq; i++) seq_release(s, &j->seqs[i]);
    if (j->running) list_remove(&s->running, j), j->running = 0;
    if (j->queued) list_remove(&s->queue, j), j->queued = 0, s->n_queued--;
    j->status = status;
    if (!j->cancelled) {
        if (errmsg) {
            pz_oai_error e;
            pz_oai_fail(&e, status, "server_error", NULL, NULL, "%s", errmsg);
            char *b = pz_oai_error_json(&e);
            if (b) {
                if (j->r.stream) out_append(j, "data: ", 6);
                out_append(j, b, strlen(b));
                if (j->r.stream) out_append(j, "\n\n", 2);
            }
            free(b);
        } else if (!j->r.stream) {
            job_body(j);
        } else if (j->r.include_usage) {
            cJSON *o = pz_oai_envelope(j->r.chat, 1, j->id, j->created, s->model);
            cJSON_AddItemToObject(o, "usage", pz_oai_usage(j->n_prompt, j->completion_tokens));
            out_event(j, o);
        }
        if (j->r.stream) out_append(j, "data: [DONE]\n\n", 14);
    }
    j->finished = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_lock(&s->m->mu);
    s->m->requests_finished++;
    pthread_mutex_unlock(&s->m->mu);
    job_unref(j);
}

// ---- text out: stop strings, streaming deltas (s->mu held) ---------------------

static void emit_text(pz_job *j, seq *q, const char *t, size_t n, pz_oai_logprob *lp, const char *finish) {
    if (!j->r.stream) {
        if (n) {
            char *p = realloc(q->text, q->n_text + n + 1);
            if (!p) return;
            memcpy(p + q->n_text, t, n);
            q->text = p, q->n_text += n;
            p[q->n_text] = 0;
        }
        q->text_bytes += (long)n;
        return;
    }
    if (!n && !lp && !finish) return;
    char *u = pz_oai_utf8(t, n);
    cJSON *o = chunk(j);
    cJSON *ljs = lp ? pz_oai_logprobs_json(j->s->tok, j->r.chat, lp, 1, q->text_bytes) : NULL;
    pz_oai_add_choice(o, j->r.chat, 1, q->index, (n || !j->r.chat) ? (u ? u : "") : NULL, 0, finish, ljs);
    q->text_bytes += (long)n;
    free(u);
    out_event(j, o);
}

// Adds bytes to q's held-back text; emits what can no longer start a stop
// string. Returns 1 when a stop string was found (text up to it emitted).
static int feed_text(pz_job *j, seq *q, const char *b, size_t n, pz_oai_logprob *lp) {
    char *h = realloc(q->hold, q->n_hold + n + 1);
    if (!h) return 0;
    memcpy(h + q->n_hold, b, n);
    q->hold = h, q->n_hold += n;
    h[q->n_hold] = 0;
    size_t cut = q->n_hold, keep = 0;
    int stopped = 0;
    for (int k = 0; k < j->r.n_stop; k++) {  // earliest full occurrence
        const char *st = j->r.stop[k];
        size_t sl = strlen(st);
        for (size_t i = 0; i + sl <= q->n_hold && i < cut; i++)
            if (!memcmp(h + i, st, sl)) {
                cut = i, stopped = 1;
                break;
            }
    }
    if (!stopped) {
        for (int k = 0; k < j->r.n_stop; k++) {  // longest suffix that starts a stop string
            const char *st = j->r.stop[k];
            size_t sl = strlen(st);
            for (size_t m = sl - 1 < q->n_hold ? sl - 1 : q->n_hold; m > keep; m--)
                if (!memcmp(h + q->n_hold - m, st, m)) {
                    keep = m;
                    break;
                }
        }
        cut = q->n_hold - keep;
    }
    emit_text(j, q, h, cut, lp, NULL);
    if (stopped) {
        q->n_hold = 0;
    } else {
        memmove(h, h + cut, keep);
        q->n_hold = keep;
    }
    return stopped;
}

// Ends a choice. flush: the text still held back (an incomplete UTF-8
// character, a possible stop-string start) goes out first; a stop string
// completed by it still ends the text there.
static void seq_done(pz_sched *s, pz_job *j, seq *q, const char *finish, int flush) {
    if (flush) {
        char tail[8];
        size_t nt = pz_tokenizer_stream_flush(&q->us, tail, sizeof tail);
        if (nt && feed_text(j, q, tail, nt, NULL)) finish = "stop";
        if (q->n_hold) emit_text(j, q, q->hold, q->n_hold, NULL, NULL);
    }
    q->n_hold = 0;
    q->finish = finish;
    q->state = SEQ_DONE;
    seq_release(s, q);
    if (j->r.stream) emit_text(j, q, "", 0, NULL, finish);
}

// Samples q's next token from logits and routes its text (s->mu held).
static void take_token(pz_sched *s, pz_job *j, seq *q, const float *logits) {
    double now = pz_now();
    int32_t t = pz_sampler_sample_scratch(&q->smp, logits, s->vocab, s->scratch);
    pz_oai_logprob lpv, *lp = NULL;
    if (j->r.logprobs) {
        pz_oai_logprob_fill(&lpv, logits, s->vocab, t, j->r.top_logprobs);
        lp = &lpv;
        if (!j->r.stream) {
            pz_oai_logprob *p = realloc(q->lp, (size_t)(q->n_lp + 1) * sizeof *p);
            if (p) q->lp = p, q->lp[q->n_lp++] = lpv;
        }
    }
    if (q->n_gen == q->cap_gen) {
        int cap = q->cap_gen ? q->cap_gen * 2 : 64;
        int32_t *g = realloc(q->gen, (size_t)cap * sizeof *g);
        if (!g) {
            seq_done(s, j, q, "length", 1);
            return;
        }
        q->gen = g, q->cap_gen = cap;
    }
    q->gen[q->n_gen++] = t;
    j->completion_tokens++;
    pthread_mutex_lock(&s->m->mu);
    s->m->generated_tokens++;
    pthread_mutex_unlock(&s->m->mu);
    if (!j->first_done) {
        j->first_done = 1;
        pz_metrics_observe(s->m, &s->m->ttft, now - j->t_arrive);
    } else if (q->t_last > 0) {
        pz_metrics_observe(s->m, &s->m->itl, now - q->t_last);
    }
    q->t_last = now;
    if (!j->r.stream) lp = NULL;  // kept in q->lp for the body
    int stop = t == s->eos;
    for (int k = 0; j->r.chat && k < s->n_chat_stop; k++) stop |= t == s->chat_stop[k];
    if (stop) {
        if (lp) emit_text(j, q, "", 0, lp, NULL);
        seq_done(s, j, q, "stop", 1);
        return;
    }
    char piece[1024];
    size_t np = pz_tokenizer_stream(s->tok, &q->us, t, 1, piece, sizeof piece);
    if (feed_text(j, q, piece, np, lp)) {
        seq_done(s, j, q, "stop", 0);
        return;
    }
    if (q->n_gen >= j->max_tokens || j->n_prompt + q->n_gen >= s->max_ctx) {
        seq_done(s, j, q, "length", 1);
        return;
    }
    q->pending = t;
    q->state = SEQ_DECODE;
}

static int all_done(const pz_job *j) {
    for (int i = 0; i < j->n_seq; i++)
        if (j->seqs[i].state != SEQ_DONE) return 0;
    return 1;
}

static int free_slots(const pz_sched *s) {
    int n = 0;
    for (int i = 0; i < s->n_slots; i++) n += !s->slot_used[i];
    return n;
}

static int take_slot(pz_sched *s) {
    for (int i = 0; i < s->n_slots; i++)
        if (!s->slot_used[i]) {
            s->slot_used[i] = 1;
            return i;
        }
    return -1;
}

static int running_seqs(const pz_sched *s) {
    int n = 0;
    for (const pz_job *j = s->running; j; j = j->next)
        for (int i = 0; i < j->n_seq; i++) n += j->seqs[i].slot >= 0;
    return n;
}

static void kv_avail(pz_sched *s, pz_kv_stats *st, int *avail) {
    pz_engine_kv_stats(s->e, st);
    *avail = st->pages_free + st->pages_cached;
}

// Admits queued jobs while slots and pages allow (s->mu held). Pages are
// counted before prefix attach: attached pages leave the evictable count as
// much as they lower the need, so the comparison does not change.
static void admit(pz_sched *s) {
    while (s->queue) {
        pz_job *j = s->queue;
        int need_slots = 0, need_pages = 0, slot_probe = -1;
        for (int i = 0; i < s->n_slots; i++)
            if (!s->slot_used[i]) slot_probe = i;
        for (int i = 0; i < j->n_seq; i++) {
            seq *q = &j->seqs[i];
            if (q->state == SEQ_DONE) continue;
            need_slots++;
            if (q->state == SEQ_PREFILL && slot_probe >= 0)
                need_pages += pz_engine_pages_needed(s->e, slot_probe, q->n_ctx + 1);
            else if (q->state == SEQ_WAIT_FORK)
                need_pages += 1;
        }
        if (free_slots(s) < need_slots) break;
        pz_kv_stats st;
        int avail;
        kv_avail(s, &st, &avail);
        if (s->running && need_pages + running_seqs(s) > avail) break;
        list_remove(&s->queue, j);
        j->queued = 0;
        s->n_queued--;
        for (int i = 0; i < j->n_seq; i++) {
            seq *q = &j->seqs[i];
            if (q->state == SEQ_DONE) continue;
            q->slot = take_slot(s);
            if (q->state == SEQ_PREFILL) q->n_fed = pz_engine_prefix_attach(s->e, q->slot, q->ctx, q->n_ctx);
        }
        pz_job **tail = &s->running;
        while (*tail) tail = &(*tail)->next;
        *tail = j;
        j->running = 1;
        j->order = ++s->order;
        if (!j->started) {
            pthread_mutex_lock(&s->m->mu);
            s->m->prompt_tokens += j->n_prompt;
            pthread_mutex_unlock(&s->m->mu);
        }
    }
}

static pz_job *youngest(pz_sched *s) {
    pz_job *y = s->running;
    for (pz_job *j = s->running; j; j = j->next)
        if (j->order > y->order) y = j;
    return y;
}

// Sends a running job back to the head of the queue (s->mu held); its
// choices resume by recomputing prompt + generated tokens on readmission.
static void preempt(pz_sched *s, pz_job *j) {
    int fresh = 1;
    for (int i = 0; i < j->n_seq; i++) fresh &= j->seqs[i].n_gen == 0;
    for (int i = 0; i < j->n_seq; i++) {
        seq *q = &j->seqs[i];
        if (q->state == SEQ_DONE) continue;
        seq_release(s, q);
        q->n_fed = 0;
        q->deferred = 0;
        if (fresh) {
            q->state = i == 0 ? SEQ_PREFILL : SEQ_WAIT_FORK;
            continue;
        }
        int n = j->n_prompt + q->n_gen - 1;
        int32_t *c = malloc((size_t)n * sizeof *c);
        if (!c) {
            seq_done(s, j, q, "length", 1);
            continue;
        }
        memcpy(c, j->prompt, (size_t)j->n_prompt * sizeof *c);
        memcpy(c + j->n_prompt, q->gen, (size_t)(q->n_gen - 1) * sizeof *c);
        if (q->ctx != j->prompt) free(q->ctx);
        q->ctx = c, q->n_ctx = n;
        q->pending = q->gen[q->n_gen - 1];
        q->state = SEQ_PREFILL;
    }
    list_remove(&s->running, j);
    j->running = 0;
    if (all_done(j)) {
        job_finish(s, j, 200, NULL);
        return;
    }
    j->next = s->queue;
    s->queue = j;
    j->queued = 1;
    s->n_queued++;
    pthread_mutex_lock(&s->m->mu);
    s->m->preemptions++;
    pthread_mutex_unlock(&s->m->mu);
}

// ---- engine steps (s->mu held on entry and exit; released around engine calls) ----
// Each pass of the loop runs the running sequences' next tokens (decode rows)
// and chunks of the prompts still prefilling. Where the engine allows
// (pz_engine_mixed_steps: a decode row has the same bits either way) both go
// in one call, one pass over the weights; otherwise, or when the prompt
// chunks do not fit beside the decode rows, a decode call and then a prefill call.

// The decode rows: every running sequence with a pending token, once the pool
// holds the pages they need (preempting the youngest job until it does). Fills
// s->dslots, dtoks, dseq, djob; returns the rows and their pages in *pages.
static int plan_decode(pz_sched *s, int *pages) {
    int need = 0;
    for (;;) {
        int n = 0, avail;
        need = 0;
        for (pz_job *j = s->running; j; j = j->next)
            for (int i = 0; i < j->n_seq; i++)
                if (j->seqs[i].state == SEQ_DECODE) {
                    need += pz_engine_pages_needed(s->e, j->seqs[i].slot, 1);
                    n++;
                }
        if (!n) return 0;
        pz_kv_stats st;
        kv_avail(s, &st, &avail);
        if (need <= avail) break;
        pz_job *y = youngest(s);
        if (y == s->running && !y->next) {  // alone and still out of pages: it cannot grow
            for (int i = 0; i < y->n_seq; i++)
                if (y->seqs[i].state == SEQ_DECODE && pz_engine_pages_needed(s->e, y->seqs[i].slot, 1) > 0)
                    seq_done(s, y, &y->seqs[i], "length", 1);
            if (all_done(y)) job_finish(s, y, 200, NULL);
            continue;
        }
        preempt(s, y);
    }
    int n = 0;
    for (pz_job *j = s->running; j; j = j->next)
        for (int i = 0; i < j->n_seq; i++)
            if (j->seqs[i].state == SEQ_DECODE) {
                s->dslots[n] = j->seqs[i].slot;
                s->dtoks[n] = j->seqs[i].pending;
                s->dseq[n] = &j->seqs[i];
                s->djob[n] = j;
                n++;
            }
    *pages = need;
    return n;
}

// After a successful call: each decode row's token from its logits row.
static void finish_decode(pz_sched *s, int n, const float *logits) {
    for (int i = 0; i < n; i++) {
        pz_job *j = s->djob[i];
        if (!j->cancelled) take_token(s, j, s->dseq[i], logits + (size_t)i * s->vocab);
        if ((i == n - 1 || s->djob[i + 1] != j) && all_done(j)) job_finish(s, j, 200, NULL);
    }
}

// Prefill chunks of the oldest sequences still prefilling, up to a budget of
// prefill_chunk tokens per step and max_rows rows in all. Chunks end at
// multiples of prefill_chunk, so a prompt is split the same way whatever the
// load (the last chunk of a step may overshoot the budget: chunks are never
// cut by it); a chunk joins while the pool has the pages for it (avail), the
// first one regardless when `force_first` (its failure is handled as when
// alone). Fills s->ptoks, pslot, pn, pwant, pseq, pjob; the tokens into *total.
//
// Prompts that arrive together and share a prefix (a system prompt) would
// each compute the same pages: a prompt whose next full page another one
// computes in this call waits (deferred), and at the next step attaches the
// pages that call published, as a later request would; where the engine
// attaches partial pages, so does one that shares only the start of that
// page (the next token at least: it attaches a copy of the matching part).
static int shares_next_page(const seq *q, const seq *p, int p_end, int partial) {
    int upto = q->n_fed + PZ_KV_PAGE;
    if (p->n_fed != q->n_fed || p_end < upto || p->n_ctx < upto) return 0;
    int need = partial ? q->n_fed + 1 : upto;  // tokens that must be equal
    return q->n_ctx > need && !memcmp(q->ctx, p->ctx, (size_t)need * sizeof *q->ctx);
}

static int plan_prefill(pz_sched *s, int max_rows, int avail, int force_first, int *total_out) {
    const int c = s->p.prefill_chunk, partial = pz_engine_prefix_partial(s->e);
    int n = 0, total = 0, need = 0;
    for (pz_job *k = s->running; k && total < c; k = k->next) {
        if (k->cancelled) continue;
        for (int i = 0; i < k->n_seq && total < c; i++) {
            seq *q = &k->seqs[i];
            if (q->state != SEQ_PREFILL) continue;
            if (q->deferred) {  // nothing of its own prefilled yet: attach what was published since
                q->deferred = 0;
                q->n_fed = pz_engine_prefix_attach(s->e, q->slot, q->ctx, q->n_ctx);
            }
            int start = q->n_fed, end = (start / c + 1) * c;
            if (end > q->n_ctx) end = q->n_ctx;
            for (int r = 0; r < n && !q->deferred; r++)
                q->deferred = shares_next_page(q, s->pseq[r], s->pseq[r]->n_fed + s->pn[r], partial);
            if (q->deferred) continue;
            int pg = pz_engine_pages_needed(s->e, q->slot, end - start);
            if ((n || !force_first) && (total + end - start > max_rows || need + pg > avail)) goto chosen;
            memcpy(s->ptoks + total, q->ctx + start, (size_t)(end - start) * sizeof *s->ptoks);
            s->pslot[n] = q->slot;
            s->pn[n] = end - start;
            s->pwant[n] = end == q->n_ctx && q->n_gen == 0;  // fresh: its logits give the first token
            s->pseq[n] = q;
            s->pjob[n] = k;
            n++, total += end - start, need += pg;
        }
    }
chosen:
    *total_out = total;
    return n;
}

// After a successful call: the chunks' progress, and the first token of each
// prompt that is complete now (its other choices forked from it).
static void finish_prefill(pz_sched *s, int n, int total, const float *logits) {
    char err[PZ_ERRLEN];
    int nj = 0;  // the call's jobs, each once (a job's choices may prefill side by side)
    for (int i = 0; i < n; i++) {
        int seen = 0;
        for (int k = 0; k < nj && !seen; k++) seen = s->fjob[k] == s->pjob[i];
        if (!seen) s->fjob[nj++] = s->pjob[i];
    }
    pthread_mutex_lock(&s->m->mu);
    s->m->prefill_tokens += total;
    pthread_mutex_unlock(&s->m->mu);
    for (int r = 0; r < n; r++) {
        pz_job *j = s->pjob[r];
        seq *q = s->pseq[r];
        q->n_fed += s->pn[r];
        if (q->n_fed < q->n_ctx) continue;
        q->state = SEQ_DECODE;
        if (!s->pwant[r]) continue;
        const float *lg = logits + (size_t)r * s->vocab;
        for (int i = 0; i < j->n_seq; i++) {  // n > 1: the other choices share this prefill
            seq *o = &j->seqs[i];
            if (o->state != SEQ_WAIT_FORK) continue;
            if (pz_engine_slot_fork(s->e, o->slot, q->slot, err) != 0) {
                seq_done(s, j, o, "length", 0);
                continue;
            }
            o->state = SEQ_DECODE;
        }
        if (j->r.stream && j->r.chat && !j->started)
            for (int i = 0; i < j->n_seq; i++) {
                cJSON *o = chunk(j);
                pz_oai_add_choice(o, 1, 1, i, "", 1, NULL, NULL);
                out_event(j, o);
            }
        j->started = 1;
        for (int i = 0; i < j->n_seq; i++)
            if (j->seqs[i].state == SEQ_DECODE) take_token(s, j, &j->seqs[i], lg);
    }
    for (int k = 0; k < nj; k++)
        if (all_done(s->fjob[k])) job_finish(s, s->fjob[k], 200, NULL);
}

// Counts one engine call for /metrics.
static void count_step(pz_sched *s, int kind, int rows, double seconds) {
    pthread_mutex_lock(&s->m->mu);
    s->m->steps[kind]++;
    s->m->step_rows[kind] += rows;
    s->m->step_seconds[kind] += seconds;
    pthread_mutex_unlock(&s->m->mu);
}

// A failed call that was not short of pages: every job with a row in it ends
// with 500, each once (pjob, djob: the rows' jobs; fjob collects them).
static void fail_jobs(pz_sched *s, int nd, int np, const char *err) {
    int nj = 0;
    for (int i = 0; i < nd + np; i++) {
        pz_job *j = i < nd ? s->djob[i] : s->pjob[i - nd];
        int seen = 0;
        for (int k = 0; k < nj && !seen; k++) seen = s->fjob[k] == j;
        if (!seen) s->fjob[nj++] = j;
    }
    for (int k = 0; k < nj; k++) job_finish(s, s->fjob[k], 500, err);
}

// One engine call with s->mu released: pz_engine_decode of n decode rows (kind
// PZ_STEP_DECODE; cn and want unused), else pz_engine_prefill_many of n
// sequences; counted for /metrics when it succeeds. The engine's return code.
static int engine_call(pz_sched *s, int kind, int n, const int *slots, const int32_t *toks, const int *cn,
                       const int *want, int rows, char *err) {
    pthread_mutex_unlock(&s->mu);
    double t0 = pz_now();
    int rc = kind == PZ_STEP_DECODE ? pz_engine_decode(s->e, slots, toks, n, s->logits, err)
                                    : pz_engine_prefill_many(s->e, n, slots, toks, cn, s->logits, want, err);
    double dt = pz_now() - t0;
    pthread_mutex_lock(&s->mu);
    if (rc == 0) count_step(s, kind, rows, dt);
    return rc;
}

// After a call of nd decode rows and np prompt chunks: 1 when it failed. Short of
// pages (counted beforehand, so rare) preempts the youngest job, as when short
// before the call; any other failure ends the call's jobs with 500.
static int call_failed(pz_sched *s, int rc, int nd, int np, const char *err) {
    if (rc == PZ_ENGINE_ENOPAGES) preempt(s, youngest(s));
    else if (rc != 0) fail_jobs(s, nd, np, err);
    return rc != 0;
}

static void run_decode(pz_sched *s, int n) {
    char err[PZ_ERRLEN];
    int rc = engine_call(s, PZ_STEP_DECODE, n, s->dslots, s->dtoks, NULL, NULL, n, err);
    if (!call_failed(s, rc, n, 0, err)) finish_decode(s, n, s->logits);
}

static void step_prefill(pz_sched *s) {
    pz_kv_stats st;
    int avail, total;
    kv_avail(s, &st, &avail);
    int n = plan_prefill(s, s->max_batch, avail, 1, &total);
    if (!n) return;
    char err[PZ_ERRLEN];
    int rc = engine_call(s, PZ_STEP_PREFILL, n, s->pslot, s->ptoks, s->pn, s->pwant, total, err);
    pz_job *j = s->pjob[0];
    if (rc == PZ_ENGINE_ENOPAGES && j == s->running && !j->next) {  // alone: the pool cannot hold it
        for (int i = 0; i < j->n_seq; i++)
            if (j->seqs[i].state != SEQ_DONE) seq_done(s, j, &j->seqs[i], "length", 1);
        job_finish(s, j, 200, NULL);
        return;
    }
    if (!call_failed(s, rc, 0, n, err)) finish_prefill(s, n, total, s->logits);
}

// One pass of the loop: the decode rows and the prompt chunks that fit beside
// them in one call (decode rows first, one token each, logits wanted), else
// the decode call and then the prefill call.
static void step(pz_sched *s) {
    int dpages = 0, nd = plan_decode(s, &dpages), np = 0, total = 0;
    if (nd && s->mixed) {
        pz_kv_stats st;
        int avail;
        kv_avail(s, &st, &avail);
        np = plan_prefill(s, s->max_batch - nd, avail - dpages, 0, &total);
    }
    if (!np) {
        if (nd) run_decode(s, nd);
        step_prefill(s);
        return;
    }
    int N = nd + np;
    for (int i = 0; i < nd; i++) s->cslot[i] = s->dslots[i], s->cn[i] = 1, s->cwant[i] = 1, s->ctoks[i] = s->dtoks[i];
    for (int r = 0; r < np; r++) s->cslot[nd + r] = s->pslot[r], s->cn[nd + r] = s->pn[r], s->cwant[nd + r] = s->pwant[r];
    memcpy(s->ctoks + nd, s->ptoks, (size_t)total * sizeof *s->ctoks);
    char err[PZ_ERRLEN];
    int rc = engine_call(s, PZ_STEP_MIXED, N, s->cslot, s->ctoks, s->cn, s->cwant, nd + total, err);
    if (call_failed(s, rc, nd, np, err)) return;
    // As in two calls: decode rows first. A job with choices in both parts (readmitted
    // after preemption) ends in neither before both are done: all_done sees the other.
    finish_decode(s, nd, s->logits);
    finish_prefill(s, np, total, s->logits + (size_t)nd * s->vocab);
}

static void snapshot(pz_sched *s) {
    pz_kv_stats st;
    pz_engine_kv_stats(s->e, &st);
    int rj = 0;
    for (pz_job *j = s->running; j; j = j->next) rj++;
    int rs = running_seqs(s);
    pthread_mutex_lock(&s->m->mu);
    s->m->queue_depth = s->n_queued;
    s->m->running_requests = rj;
    s->m->running_seqs = rs;
    s->m->kv_page_tokens = st.page_tokens;
    s->m->kv_pages_total = st.pages_total;
    s->m->kv_pages_used = st.pages_used;
    s->m->kv_pages_free = st.pages_free;
    s->m->kv_pages_cached = st.pages_cached;
    s->m->prefix_hit_pages = st.prefix_hits;
    s->m->prefix_hit_tokens = st.prefix_tokens;
    s->m->kv_evictions = st.evictions;
    pthread_mutex_unlock(&s->m->mu);
}

static void drop_cancelled(pz_sched *s) {
    pz_job *lists[2] = {s->running, s->queue};
    for (int l = 0; l < 2; l++)
        for (pz_job *j = lists[l], *nx; j; j = nx) {
            nx = j->next;
            if (j->cancelled) job_finish(s, j, 499, NULL);
            else if (s->cancel_all) job_finish(s, j, 503, "the server is shutting down");
        }
}

static void *loop(void *arg) {
    pz_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !s->queue && !s->running) {
            snapshot(s);
            pthread_cond_wait(&s->work, &s->mu);
        }
        if (s->stop) break;
        drop_cancelled(s);
        admit(s);
        step(s);
        snapshot(s);
    }
    while (s->running) job_finish(s, s->running, 503, "the server stopped");
    while (s->queue) job_finish(s, s->queue, 503, "the server stopped");
    snapshot(s);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

// ---- public -------------------------------------------------------------------

static void free_buffers(pz_sched *s) {
    free(s->slot_used), free(s->logits), free(s->scratch);
    free(s->dslots), free(s->dtoks), free(s->dseq), free(s->djob);
    free(s->ptoks), free(s->pslot), free(s->pn), free(s->pwant), free(s->pseq), free(s->pjob), free(s->fjob);
    free(s->ctoks), free(s->cslot), free(s->cn), free(s->cwant);
    free(s);
}

pz_sched *pz_sched_create(pz_engine *e, const pz_tokenizer *tok, pz_metrics *m, const char *model_name,
                          pz_sched_params p, char *err) {
    pz_sched *s = calloc(1, sizeof *s);
    if (!s) {
        pz_err(err, "out of memory");
        return NULL;
    }
    s->e = e, s->tok = tok, s->m = m, s->p = p;
    if (s->p.prefill_chunk <= 0) s->p.prefill_chunk = 256;
    if (s->p.max_queue < 0) s->p.max_queue = 0;
    snprintf(s->model, sizeof s->model, "%s", model_name);
    s->n_slots = pz_engine_n_slots(e);
    s->vocab = pz_engine_model(e)->cfg.vocab;
    s->max_ctx = pz_engine_max_ctx(e);
    s->eos = pz_tokenizer_eos(tok);
    s->n_chat_stop = pz_tokenizer_chat_stop_ids(tok, s->chat_stop, 8);
    s->slot_used = calloc((size_t)s->n_slots, sizeof *s->slot_used);
    s->logits = malloc((size_t)s->n_slots * (size_t)s->vocab * sizeof *s->logits);
    s->scratch = malloc(pz_sampler_scratch_bytes(s->vocab));
    s->dslots = malloc((size_t)s->n_slots * sizeof *s->dslots);
    s->dtoks = malloc((size_t)s->n_slots * sizeof *s->dtoks);
    s->dseq = malloc((size_t)s->n_slots * sizeof *s->dseq);
    s->djob = malloc((size_t)s->n_slots * sizeof *s->djob);
    s->max_batch = pz_engine_max_batch(e);
    if (s->p.prefill_chunk > s->max_batch) s->p.prefill_chunk = s->max_batch;
    s->ptoks = malloc((size_t)s->max_batch * sizeof *s->ptoks);
    s->pslot = malloc((size_t)s->n_slots * sizeof *s->pslot);
    s->pn = malloc((size_t)s->n_slots * sizeof *s->pn);
    s->pwant = malloc((size_t)s->n_slots * sizeof *s->pwant);
    s->pseq = malloc((size_t)s->n_slots * sizeof *s->pseq);
    s->pjob = malloc((size_t)s->n_slots * sizeof *s->pjob);
    s->fjob = malloc((size_t)s->n_slots * sizeof *s->fjob);
    s->mixed = pz_engine_mixed_steps(e) && !s->p.separate_steps;
    s->ctoks = malloc((size_t)s->max_batch * sizeof *s->ctoks);
    s->cslot = malloc((size_t)s->n_slots * sizeof *s->cslot);
    s->cn = malloc((size_t)s->n_slots * sizeof *s->cn);
    s->cwant = malloc((size_t)s->n_slots * sizeof *s->cwant);
    if (!s->slot_used || !s->logits || !s->scratch || !s->dslots || !s->dtoks || !s->dseq || !s->djob ||
        !s->ptoks || !s->pslot || !s->pn || !s->pwant || !s->pseq || !s->pjob || !s->fjob || !s->ctoks ||
        !s->cslot || !s->cn || !s->cwant) {
        pz_err(err, "out of memory");
        goto fail;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    if (pthread_create(&s->thread, NULL, loop, s) != 0) {
        pz_err(err, "cannot start the engine thread");
        pthread_cond_destroy(&s->work);
        pthread_mutex_destroy(&s->mu);
        goto fail;
    }
    return s;
fail:
    free_buffers(s);
    return NULL;
}

void pz_sched_free(pz_sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->work);
    pthread_mutex_destroy(&s->mu);
    free_buffers(s);
}

static uint64_t mix64(uint64_t x) {  // splitmix64 finalizer
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

pz_job *pz_sched_submit(pz_sched *s, pz_oai_request *r, const int32_t *ids, int n_ids, pz_oai_error *e) {
    const char *pparam = r->chat ? "messages" : "prompt";
    if (n_ids < 1) {
        pz_oai_fail(e, 400, NULL, pparam, "invalid_value", "the prompt is empty after tokenization");
        return NULL;
    }
    if (r->max_tokens < 0) r->max_tokens = s->max_ctx - n_ids;
    if (n_ids >= s->max_ctx || (long)n_ids + r->max_tokens > s->max_ctx) {
        pz_oai_fail(e, 400, NULL, pparam, "context_length_exceeded",
                    "this model's context is %d tokens; the prompt has %d and max_tokens asks for %ld", s->max_ctx,
                    n_ids, r->max_tokens);
        return NULL;
    }
    if (r->n > s->n_slots) {
        pz_oai_fail(e, 400, NULL, "n", "invalid_value", "'n' is at most %d here (--max-seqs)", s->n_slots);
        return NULL;
    }
    pz_kv_stats st;
    pthread_mutex_lock(&s->mu);
    pz_engine_kv_stats(s->e, &st);  // page_tokens and pages_total are constant
    pthread_mutex_unlock(&s->mu);
    long pages = (n_ids + 1 + st.page_tokens - 1) / st.page_tokens + r->n;
    if (pages > st.pages_total) {
        pz_oai_fail(e, 400, NULL, pparam, "context_length_exceeded",
                    "the prompt needs %ld KV pages but the pool has %d (--kv-tokens)", pages, st.pages_total);
        return NULL;
    }
    pz_job *j = calloc(1, sizeof *j);
    if (!j || !(j->prompt = malloc((size_t)n_ids * sizeof *j->prompt))) {
        free(j);
        pz_oai_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    memcpy(j->prompt, ids, (size_t)n_ids * sizeof *ids);
    j->n_prompt = n_ids;
    j->r = *r;
    memset(r, 0, sizeof *r);
    j->s = s;
    j->max_tokens = (int)j->r.max_tokens;
    j->n_seq = j->r.n;
    j->refs = 2;
    j->status = 200;
    j->t_arrive = pz_now();
    j->created = (long long)time(NULL);
    pthread_cond_init(&j->cv, NULL);
    uint64_t seed = j->r.has_seed ? j->r.seed : mix64((uint64_t)(pz_now() * 1e9) ^ (uint64_t)(uintptr_t)j);
    for (int i = 0; i < j->n_seq; i++) {
        seq *q = &j->seqs[i];
        q->index = i;
        q->slot = -1;
        q->state = i == 0 ? SEQ_PREFILL : SEQ_WAIT_FORK;
        q->ctx = j->prompt, q->n_ctx = n_ids;
        // choice 0 uses the seed itself (as `puzzle generate --seed`), choice i a mix of (seed, i)
        q->smp = pz_sampler_init(j->r.temperature, j->r.top_p, i == 0 ? seed : mix64(seed ^ mix64((uint64_t)i)));
    }
    pthread_mutex_lock(&s->mu);
    if (s->closed || s->stop) {
        pthread_mutex_unlock(&s->mu);
        pz_oai_fail(e, 503, "server_error", NULL, "shutting_down", "the server is shutting down");
        j->refs = 1;
        job_free(j);
        return NULL;
    }
    // the queue bound counts requests that cannot be admitted at once: those
    // the free slots would take (at the next loop step) do not count
    int claimed = 0, waiting = 0, free = free_slots(s);
    for (pz_job *q = s->queue; q; q = q->next) {
        claimed += q->n_seq;
        waiting += claimed > free;
    }
    if (claimed + j->n_seq > free && waiting >= s->p.max_queue) {
        pthread_mutex_unlock(&s->mu);
        pz_oai_fail(e, 503, "server_error", NULL, "queue_full", "the request queue is full (%d); retry later",
                    s->p.max_queue);
        job_free(j);
        return NULL;
    }
    snprintf(j->id, sizeof j->id, "%s-%lld", j->r.chat ? "chatcmpl" : "cmpl", ++s->next_id);
    pz_job **tail = &s->queue;
    while (*tail) tail = &(*tail)->next;
    *tail = j;
    j->queued = 1;
    s->n_queued++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return j;
}

int pz_sched_idle(pz_sched *s) {
    pthread_mutex_lock(&s->mu);
    int idle = !s->queue && !s->running;
    pthread_mutex_unlock(&s->mu);
    return idle;
}

void pz_sched_close(pz_sched *s, int cancel) {
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    if (cancel) s->cancel_all = 1;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
}

size_t pz_job_read(pz_job *j, char *buf, size_t cap, int timeout_ms, int *done, int *status) {
    pz_sched *s = j->s;
    pthread_mutex_lock(&s->mu);
    if (j->off_out == j->n_out && !j->finished && timeout_ms > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        while (j->off_out == j->n_out && !j->finished)
            if (pthread_cond_timedwait(&j->cv, &s->mu, &ts) == ETIMEDOUT) break;
    }
    size_t n = j->n_out - j->off_out;
    if (n > cap) n = cap;
    if (n) memcpy(buf, j->out + j->off_out, n);
    j->off_out += n;
    *done = j->finished && j->off_out == j->n_out;
    *status = j->status;
    pthread_mutex_unlock(&s->mu);
    return n;
}

size_t pz_job_pending(pz_job *j) {
    pthread_mutex_lock(&j->s->mu);
    size_t n = j->n_out - j->off_out;
    pthread_mutex_unlock(&j->s->mu);
    return n;
}

void pz_job_cancel(pz_job *j) {
    pthread_mutex_lock(&j->s->mu);
    if (!j->finished) {
        j->cancelled = 1;
        pthread_cond_signal(&j->s->work);
    }
    pthread_mutex_unlock(&j->s->mu);
}

void pz_job_release(pz_job *j) {
    if (!j) return;
    pz_sched *s = j->s;
    pthread_mutex_lock(&s->mu);
    job_unref(j);
    pthread_mutex_unlock(&s->mu);
}

int pz_job_stream(const pz_job *j) { return j->r.stream; }
