// metrics.c — Prometheus text rendering of the server's figures (metrics.h).
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hist_init(pz_histogram *h) {
    static const double le[PZ_METRICS_BUCKETS] = {0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
                                                  1, 2, 5, 10, 20, 60, 120};
    memset(h, 0, sizeof *h);
    memcpy(h->le, le, sizeof le);
}

void pz_metrics_init(pz_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    hist_init(&m->ttft);
    hist_init(&m->itl);
}

void pz_metrics_destroy(pz_metrics *m) { pthread_mutex_destroy(&m->mu); }

void pz_metrics_count_status(pz_metrics *m, int status) {
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < PZ_METRICS_STATUSES; i++) {
        if (m->status_code[i] == status || m->status_code[i] == 0) {
            m->status_code[i] = status;
            m->status_count[i]++;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

void pz_metrics_observe(pz_metrics *m, pz_histogram *h, double s) {
    pthread_mutex_lock(&m->mu);
    int b = 0;
    while (b < PZ_METRICS_BUCKETS && s > h->le[b]) b++;
    h->count[b]++;
    h->n++;
    h->sum += s;
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)k + 1;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
}

static void metric(sbuf *b, const char *name, const char *type, const char *help, double v) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type, name, v);
}

static void hist(sbuf *b, const char *name, const char *help, const pz_histogram *h) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    long long cum = 0;
    for (int i = 0; i < PZ_METRICS_BUCKETS; i++) {
        cum += h->count[i];
        sb_printf(b, "%s_bucket{le=\"%g\"} %lld\n", name, h->le[i], cum);
    }
    sb_printf(b, "%s_bucket{le=\"+Inf\"} %lld\n%s_sum %.9g\n%s_count %lld\n", name, h->n, name, h->sum,
              name, h->n);
}

char *pz_metrics_render(pz_metrics *m) {
    sbuf b = {malloc(4096), 0, 4096, 0};
    if (!b.p) return NULL;
    pthread_mutex_lock(&m->mu);
    sb_printf(&b, "# HELP puzzle_requests_total HTTP responses sent, by status code.\n"
                  "# TYPE puzzle_requests_total counter\n");
    for (int i = 0; i < PZ_METRICS_STATUSES && m->status_code[i]; i++)
        sb_printf(&b, "puzzle_requests_total{status=\"%d\"} %lld\n", m->status_code[i], m->status_count[i]);
    metric(&b, "puzzle_prompt_tokens_total", "counter", "Prompt tokens of admitted completion requests.",
           (double)m->prompt_tokens);
    metric(&b, "puzzle_prefill_tokens_total", "counter",
           "Tokens run through prefill (prompt tokens not found in the prefix cache, and recomputation).",
           (double)m->prefill_tokens);
    metric(&b, "puzzle_generation_tokens_total", "counter", "Tokens sampled, all choices.",
           (double)m->generated_tokens);
    metric(&b, "puzzle_completions_finished_total", "counter", "Completion requests finished or cancelled.",
           (double)m->requests_finished);
    metric(&b, "puzzle_preemptions_total", "counter",
           "Requests sent back to the queue because the KV pool ran out of pages.", (double)m->preemptions);
    metric(&b, "puzzle_queue_depth", "gauge", "Requests waiting for admission.", m->queue_depth);
    metric(&b, "puzzle_running_requests", "gauge", "Requests holding engine slots.", m->running_requests);
    metric(&b, "puzzle_running_sequences", "gauge", "Sequences (choices) holding engine slots.",
           m->running_seqs);
    metric(&b, "puzzle_kv_page_tokens", "gauge", "Token positions per KV page.", m->kv_page_tokens);
    metric(&b, "puzzle_kv_pages_total", "gauge", "Pages in the KV pool.", m->kv_pages_total);
    metric(&b, "puzzle_kv_pages_used", "gauge", "KV pages held by running sequences.", m->kv_pages_used);
    metric(&b, "puzzle_kv_pages_free", "gauge", "KV pages on the free list.", m->kv_pages_free);
    metric(&b, "puzzle_kv_pages_cached", "gauge", "KV pages held only by the prefix cache (evictable).",
           m->kv_pages_cached);
    metric(&b, "puzzle_prefix_cache_hits_total", "counter", "KV pages reused from the prefix cache.",
           (double)m->prefix_hit_pages);
    metric(&b, "puzzle_prefix_cache_hit_tokens_total", "counter", "Prompt tokens reused from the prefix cache.",
           (double)m->prefix_hit_tokens);
    metric(&b, "puzzle_kv_evictions_total", "counter", "Cached KV pages evicted to make room.",
           (double)m->kv_evictions);
    static const char *kinds[PZ_STEPS] = {"decode", "prefill", "mixed"};
    static const char *names[3] = {"puzzle_engine_steps_total", "puzzle_engine_step_rows_total",
                                   "puzzle_engine_step_seconds_total"};
    static const char *helps[3] = {
        "Engine calls of the serve loop: decode rows only, prompt chunks only, or both in one pass.",
        "Token rows those calls ran (decode tokens plus prompt tokens).",
        "Wall time inside those calls."};
    for (int k = 0; k < 3; k++) {
        sb_printf(&b, "# HELP %s %s\n# TYPE %s counter\n", names[k], helps[k], names[k]);
        for (int i = 0; i < PZ_STEPS; i++)
            sb_printf(&b, "%s{kind=\"%s\"} %.17g\n", names[k], kinds[i],
                      k == 0 ? (double)m->steps[i] : k == 1 ? (double)m->step_rows[i] : m->step_seconds[i]);
    }
    hist(&b, "puzzle_time_to_first_token_seconds", "From request arrival to its first sampled token.", &m->ttft);
    hist(&b, "puzzle_inter_token_latency_seconds", "Between consecutive tokens of one sequence.", &m->itl);
    pthread_mutex_unlock(&m->mu);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
