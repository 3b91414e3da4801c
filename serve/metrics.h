// metrics.h — the server's counters, gauges and latency histograms, and
// their rendering in the Prometheus text exposition format (GET /metrics).
// HTTP threads count responses by status; the engine loop counts tokens and
// latencies and copies the queue, running and KV-pool figures in once per
// step, so reading /metrics never touches the engine. Every function may be
// called from any thread (one mutex inside).
#ifndef PZ_SERVE_METRICS_H
#define PZ_SERVE_METRICS_H

#include <pthread.h>

#define PZ_METRICS_BUCKETS 14
#define PZ_METRICS_STATUSES 12

typedef struct {
    double le[PZ_METRICS_BUCKETS];  // upper bounds, seconds (+Inf implied)
    long long count[PZ_METRICS_BUCKETS + 1];
    long long n;
    double sum;
} pz_histogram;

// Engine calls of the serve loop, by what they ran.
enum { PZ_STEP_DECODE, PZ_STEP_PREFILL, PZ_STEP_MIXED, PZ_STEPS };

typedef struct {
    pthread_mutex_t mu;
    int status_code[PZ_METRICS_STATUSES];       // HTTP statuses seen (0: unused entry)
    long long status_count[PZ_METRICS_STATUSES];
    long long prompt_tokens, generated_tokens, prefill_tokens;
    long long preemptions;
    long long requests_finished;
    // gauges, set by the engine loop
    int queue_depth, running_requests, running_seqs;
    int kv_pages_total, kv_pages_used, kv_pages_free, kv_pages_cached, kv_page_tokens;
    long long prefix_hit_pages, prefix_hit_tokens, kv_evictions;
    long long steps[PZ_STEPS], step_rows[PZ_STEPS];  // engine calls, and the token rows they ran
    double step_seconds[PZ_STEPS];                  // wall time inside them
    pz_histogram ttft, itl;
} pz_metrics;

void pz_metrics_init(pz_metrics *m);
void pz_metrics_destroy(pz_metrics *m);
void pz_metrics_count_status(pz_metrics *m, int status);
void pz_metrics_observe(pz_metrics *m, pz_histogram *h, double seconds);  // h: &m->ttft or &m->itl
// The exposition text: malloc'ed, NUL-terminated (caller frees); NULL when out of memory.
char *pz_metrics_render(pz_metrics *m);

#endif
