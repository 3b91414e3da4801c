// serve_load.c — the project's own load generator for an OpenAI-compatible server that is
// already running (`puzzle serve`, llama.cpp's llama-server): the measurement tool behind
// results/serve_cpu.md. bench/serve_load.py keeps the orchestration (starting servers side by
// side) and runs this program through --loadgen; this file is its C counterpart, same behaviour.
//
// At each concurrency level C, C client threads each send R streaming chat requests back to
// back (distinct prompts, max_tokens fixed, temperature 0, stream_options.include_usage) over
// plain HTTP/1.1 sockets, parse the SSE `data: ` events and record time to first token (TTFT:
// request sent -> first content chunk), inter-token latency (ITL: between content chunks of
// one stream) and the generated tokens (usage.completion_tokens of the final chunk; the number
// of content chunks when the server sends no usage). Throughput = all generated tokens / wall
// time of the level. Errors (connection failures, non-200, malformed or truncated streams,
// timeouts) are counted and reported, never fatal. Every request is bounded by --timeout.
//
// usage:
//   serve_load --url http://127.0.0.1:PORT [--levels 1,4,16,64] [--requests R] [--max-tokens N]
//              [--vary-tokens] [--label NAME] [--timeout S]
//   serve_load --url ... --levels 16 --soak SECONDS [--pid PID]   (errors; server RSS)
// Output: progress lines on stderr, a markdown table on stdout; exit 1 when any request failed.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // strcasestr
#endif
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *TOPICS[] = {"a lighthouse keeper", "the first snow", "a lost key", "an old map",
                               "a quiet library", "a red kite", "the night train", "a small robot",
                               "a river town", "a broken clock", "the tallest tree", "a tea shop",
                               "a violin", "the desert wind", "a paper boat", "a mountain cabin"};
#define NTOPICS ((int)(sizeof TOPICS / sizeof TOPICS[0]))

typedef struct {
    char host[256], port[16];
    int max_tokens;
    int vary;        // 1: request i asks for a max_tokens spread over [N/2, 3N/2] (tokens_for)
    double timeout;  // seconds, per request
} target;

// max_tokens of request i. With --vary-tokens the streams of a level stop at
// different steps, so new prompts arrive while others decode (staggered load,
// as in real traffic) instead of all together; the same spread on every
// server (a hash of i), and the same mean as the fixed N.
static int tokens_for(const target *t, long i) {
    if (!t->vary || t->max_tokens < 2) return t->max_tokens;
    unsigned long h = (unsigned long)i * 2654435761ul;
    h ^= h >> 15;
    int lo = t->max_tokens / 2, span = t->max_tokens + 1;
    return lo + (int)(h % (unsigned long)span);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// ---- a growable array of doubles ------------------------------------------------------------
typedef struct {
    double *v;
    size_t n, cap;
} dvec;

static int dvec_push(dvec *a, double x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        double *v = realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v, a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// The p-th percentile by nearest rank on the sorted values (serve_load.py's rule); NAN if empty.
static double pct(dvec *a, double p) {
    if (!a->n) return NAN;
    qsort(a->v, a->n, sizeof *a->v, dcmp);
    size_t i = (size_t)llround(p / 100.0 * (double)(a->n - 1));
    return a->v[i < a->n ? i : a->n - 1];
}

// ---- one streaming request ------------------------------------------------------------------
typedef struct {
    char *buf;  // raw bytes received, not yet consumed
    size_t n, cap;
} bytes;

static int bytes_add(bytes *b, const char *p, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->buf, cap);
        if (!q) return -1;
        b->buf = q, b->cap = cap;
    }
    memcpy(b->buf + b->n, p, n);
    b->n += n;
    b->buf[b->n] = 0;
    return 0;
}

static void bytes_drop(bytes *b, size_t n) {
    memmove(b->buf, b->buf + n, b->n - n);
    b->n -= n;
    if (b->buf) b->buf[b->n] = 0;
}

typedef struct {
    int tokens;       // usage.completion_tokens, or content chunks without usage
    double ttft;      // seconds; NAN when no content arrived
    dvec stamps;      // arrival time of every content chunk
    int usage, done;  // a usage object / the [DONE] event was seen
    char err[160];
} result;

// Handles one SSE event (the text between blank lines). Returns -1 on a malformed event.
static int sse_event(char *ev, result *r) {
    for (char *line = ev, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[--len] = 0;
        if (strncmp(line, "data:", 5)) continue;  // comments, event:, id: lines
        const char *d = line + 5;
        if (*d == ' ') d++;
        if (!strcmp(d, "[DONE]")) {
            r->done = 1;
            continue;
        }
        double t = now_s();
        cJSON *o = cJSON_Parse(d);
        if (!o) {
            snprintf(r->err, sizeof r->err, "malformed SSE data: %.60s", d);
            return -1;
        }
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
        if (cJSON_IsNumber(ct)) r->usage = 1, r->tokens = ct->valueint;
        const cJSON *ch, *choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
        cJSON_ArrayForEach(ch, choices) {
            const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(delta, "content");
            if (cJSON_IsString(c) && c->valuestring[0] && dvec_push(&r->stamps, t)) {
                cJSON_Delete(o);
                snprintf(r->err, sizeof r->err, "out of memory");
                return -1;
            }
        }
        cJSON_Delete(o);
    }
    return 0;
}

// Consumes every complete SSE event in `sse`. Returns -1 on a malformed event.
static int sse_feed(bytes *sse, result *r) {
    for (;;) {
        char *end = strstr(sse->buf ? sse->buf : "", "\n\n");
        char *end_cr = strstr(sse->buf ? sse->buf : "", "\r\n\r\n");
        size_t skip = 2;
        if (end_cr && (!end || end_cr < end)) end = end_cr, skip = 4;
        if (!end) return 0;
        *end = 0;
        size_t used = (size_t)(end - sse->buf) + skip;
        if (sse_event(sse->buf, r)) return -1;
        bytes_drop(sse, used);
    }
}

// Decodes complete chunks of a chunked body from `raw` into `out`. Returns 1 at the last
// chunk, 0 when more is needed, -1 on a malformed chunk header.
static int unchunk(bytes *raw, bytes *out) {
    for (;;) {
        char *eol = raw->n ? strstr(raw->buf, "\r\n") : NULL;
        if (!eol) return raw->n > 64 ? -1 : 0;
        char *endp;
        unsigned long size = strtoul(raw->buf, &endp, 16);
        if (endp == raw->buf) return -1;
        size_t head = (size_t)(eol - raw->buf) + 2;
        if (size == 0) return 1;
        if (raw->n < head + size + 2) return 0;
        if (bytes_add(out, raw->buf + head, size)) return -1;
        bytes_drop(raw, head + size + 2);
    }
}

static int open_conn(const target *t, double deadline, char *err, size_t errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(t->host, t->port, &hints, &ai);
    if (rc) {
        snprintf(err, errlen, "getaddrinfo %.64s: %s", t->host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *p = ai; p; p = p->ai_next) {
        fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
        if (fd < 0) continue;
        double left = deadline - now_s();
        if (left < 0.001) left = 0.001;
        struct timeval tv = {(time_t)left, (suseconds_t)((left - (time_t)left) * 1e6)};
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds connect and send
        if (!connect(fd, p->ai_addr, p->ai_addrlen)) break;
        snprintf(err, errlen, "connect: %s", strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    return fd;
}

static int send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, n -= (size_t)k;
    }
    return 0;
}

// Sends request number i and reads its stream into r (r->stamps owned by the caller).
// Returns 0, or -1 with r->err set.
static int one_request(const target *t, long i, int max_tokens, result *r) {
    memset(r, 0, sizeof *r);
    r->ttft = NAN;
    char content[160];
    snprintf(content, sizeof content, "Write a short story about %s (number %ld).",
             TOPICS[i % NTOPICS], i);
    cJSON *b = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(b, "messages");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", content);
    cJSON_AddItemToArray(msgs, m);
    cJSON_AddStringToObject(b, "model", "m");
    cJSON_AddNumberToObject(b, "max_tokens", max_tokens);
    cJSON_AddNumberToObject(b, "temperature", 0);
    cJSON_AddBoolToObject(b, "stream", 1);
    cJSON_AddBoolToObject(cJSON_AddObjectToObject(b, "stream_options"), "include_usage", 1);
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    if (!body) {
        snprintf(r->err, sizeof r->err, "out of memory");
        return -1;
    }
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%s\r\n"
                      "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                      t->host, t->port, strlen(body));
    double t0 = now_s(), deadline = t0 + t->timeout;
    int fd = open_conn(t, deadline, r->err, sizeof r->err), rc = -1;
    bytes raw = {0}, sse = {0};
    if (fd < 0) goto out;
    t0 = now_s();  // request sent -> first content chunk
    if (send_all(fd, head, (size_t)hn) || send_all(fd, body, strlen(body))) {
        snprintf(r->err, sizeof r->err, "send: %s", strerror(errno));
        goto out;
    }
    int have_head = 0, chunked = 0, last = 0;
    char in[16384];
    for (;;) {
        double left = deadline - now_s();
        if (left <= 0) {
            snprintf(r->err, sizeof r->err, "timeout after %.0f s", t->timeout);
            goto out;
        }
        struct pollfd pf = {fd, POLLIN, 0};
        int pr = poll(&pf, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) continue;
        ssize_t k = pr < 0 ? -1 : recv(fd, in, sizeof in, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            snprintf(r->err, sizeof r->err, "recv: %s", strerror(errno));
            goto out;
        }
        if (k > 0 && bytes_add(&raw, in, (size_t)k)) {
            snprintf(r->err, sizeof r->err, "out of memory");
            goto out;
        }
        if (!have_head) {
            char *e = raw.n ? strstr(raw.buf, "\r\n\r\n") : NULL;
            if (!e) {
                if (k == 0) {
                    snprintf(r->err, sizeof r->err, "connection closed before the response head");
                    goto out;
                }
                continue;
            }
            int status = 0;
            if (sscanf(raw.buf, "HTTP/%*d.%*d %d", &status) != 1 || status != 200) {
                snprintf(r->err, sizeof r->err, "HTTP %d: %.100s", status, e + 4);
                goto out;
            }
            *e = 0;
            for (char *h = raw.buf; (h = strcasestr(h, "\r\ntransfer-encoding:")); h += 2)
                if (strcasestr(h, "chunked")) chunked = 1;
            bytes_drop(&raw, (size_t)(e - raw.buf) + 4);
            have_head = 1;
        }
        if (chunked) {
            last = unchunk(&raw, &sse);
            if (last < 0) {
                snprintf(r->err, sizeof r->err, "malformed chunked encoding");
                goto out;
            }
        } else if (raw.n) {
            if (bytes_add(&sse, raw.buf, raw.n)) goto out;
            bytes_drop(&raw, raw.n);
        }
        if (sse_feed(&sse, r)) goto out;
        if (last || k == 0) break;
    }
    if (!r->done) {
        snprintf(r->err, sizeof r->err, "stream ended without data: [DONE]");
        goto out;
    }
    r->tokens = r->usage ? r->tokens : (int)r->stamps.n;
    if (r->stamps.n) r->ttft = r->stamps.v[0] - t0;
    rc = 0;
out:
    if (fd >= 0) close(fd);
    free(raw.buf);
    free(sse.buf);
    free(body);
    return rc;
}

// ---- one level ----------------------------------------------------------------------------
typedef struct {
    pthread_mutex_t mu;
    const target *t;
    int reqs;
    double stop;  // soak: clients loop until this time (0: R requests each)
    long requests, tokens, errors;
    dvec ttft, itl;
    char first_err[160];
} level;

typedef struct {
    level *L;
    int w;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    level *L = a->L;
    result r;
    for (long k = 0;; k++) {
        if (L->stop ? now_s() >= L->stop : k >= L->reqs) break;
        long id = L->stop ? a->w * 100000L + k : (long)a->w * L->reqs + k;
        int rc = one_request(L->t, id, tokens_for(L->t, id), &r);
        pthread_mutex_lock(&L->mu);
        if (rc) {
            if (!L->errors++) snprintf(L->first_err, sizeof L->first_err, "%s", r.err);
            if (L->stop) fprintf(stderr, "error: %s\n", r.err);
        } else {
            L->requests++;
            L->tokens += r.tokens;
            if (!L->stop) {
                if (!isnan(r.ttft)) dvec_push(&L->ttft, r.ttft);
                for (size_t j = 1; j < r.stamps.n; j++)
                    dvec_push(&L->itl, r.stamps.v[j] - r.stamps.v[j - 1]);
            }
        }
        pthread_mutex_unlock(&L->mu);
        free(r.stamps.v);
    }
    return NULL;
}

// Starts `conc` clients on L and returns them (joined by join_clients); NULL on failure.
static pthread_t *start_clients(level *L, int conc, worker_arg **args) {
    pthread_t *th = calloc((size_t)conc, sizeof *th);
    *args = calloc((size_t)conc, sizeof **args);
    if (!th || !*args) return NULL;
    for (int w = 0; w < conc; w++) {
        (*args)[w] = (worker_arg){L, w};
        if (pthread_create(&th[w], NULL, worker, &(*args)[w])) {
            fprintf(stderr, "serve_load: pthread_create failed\n");
            exit(2);
        }
    }
    return th;
}

static double rss_mib(long pid) {
    if (pid <= 0) return NAN;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return NAN;
    double v = NAN;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) v = atof(line + 6) / 1024.0;
    fclose(f);
    return v;
}

static void usage(void) {
    fprintf(stderr,
            "usage: serve_load --url http://HOST:PORT [--levels 1,4,16,64] [--requests R]\n"
            "                  [--max-tokens N [--vary-tokens]] [--label NAME] [--timeout S]\n"
            "                  [--soak SECONDS [--pid PID]]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *url = NULL, *levels_s = "1,4,16,64", *label = "server";
    int reqs = 2;
    long pid = 0;
    double soak = 0;
    target t = {.max_tokens = 64, .timeout = 600};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--vary-tokens")) {  // the one flag without a value
            t.vary = 1;
            continue;
        }
        if (!v) usage();
        if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--levels")) levels_s = v;
        else if (!strcmp(a, "--requests")) reqs = atoi(v);
        else if (!strcmp(a, "--max-tokens")) t.max_tokens = atoi(v);
        else if (!strcmp(a, "--label")) label = v;
        else if (!strcmp(a, "--timeout")) t.timeout = atof(v);
        else if (!strcmp(a, "--soak")) soak = atof(v);
        else if (!strcmp(a, "--pid")) pid = atol(v);
        else usage();
        i++;
    }
    if (!url || reqs < 1 || t.max_tokens < 1 || t.timeout <= 0 || soak < 0) usage();
    if (strncmp(url, "http://", 7) || sscanf(url + 7, "%255[^:/]:%15[0-9]", t.host, t.port) != 2) {
        fprintf(stderr, "serve_load: --url must be http://HOST:PORT (got %s)\n", url);
        return 2;
    }
    int levels[64], nlev = 0;
    for (const char *p = levels_s; *p && nlev < 64;) {
        char *e;
        long c = strtol(p, &e, 10);
        if (e == p || c < 1 || c > 4096) usage();
        levels[nlev++] = (int)c;
        p = *e == ',' ? e + 1 : e;
        if (*e && *e != ',') usage();
    }
    if (!nlev) usage();

    // One short request first, as serve_load.py does; retried every 0.2 s for up to --timeout
    // seconds, so that a server still loading its model (503, refused connection) is waited for.
    result warm;
    for (double w0 = now_s();;) {
        int rc = one_request(&t, 999, 8, &warm);
        free(warm.stamps.v);
        if (!rc) break;
        if (now_s() - w0 > t.timeout) {
            fprintf(stderr, "serve_load: warm-up request to %s failed: %s\n", url, warm.err);
            return 2;
        }
        nanosleep(&(struct timespec){0, 200000000L}, NULL);
    }

    if (soak > 0) {
        int conc = levels[0];
        for (int i = 1; i < nlev; i++) conc = levels[i] > conc ? levels[i] : conc;
        level L = {.mu = PTHREAD_MUTEX_INITIALIZER, .t = &t, .stop = now_s() + soak};
        double t0 = now_s(), rss0 = rss_mib(pid);
        printf("| %s soak (%d clients) | elapsed s | requests | tokens | errors | "
               "server RSS MiB |\n|---|---|---|---|---|---|\n| | 0 | 0 | 0 | 0 | %.1f |\n",
               label, conc, rss0);
        fflush(stdout);
        worker_arg *args;
        pthread_t *th = start_clients(&L, conc, &args);
        if (!th) return 2;
        while (now_s() < L.stop) {
            double left = L.stop - now_s(), nap = left < 30 ? left : 30;
            struct timespec ts = {(time_t)nap, (long)((nap - (time_t)nap) * 1e9)};
            nanosleep(&ts, NULL);
            pthread_mutex_lock(&L.mu);
            if (now_s() < L.stop)
                printf("| | %.0f | %ld | %ld | %ld | %.1f |\n", now_s() - t0, L.requests, L.tokens,
                       L.errors, rss_mib(pid));
            pthread_mutex_unlock(&L.mu);
            fflush(stdout);
        }
        for (int w = 0; w < conc; w++) pthread_join(th[w], NULL);
        double rss1 = rss_mib(pid);
        printf("| | %.0f | %ld | %ld | %ld | %.1f |\n", now_s() - t0, L.requests, L.tokens,
               L.errors, rss1);
        fprintf(stderr,
                "%s soak: %ld requests, %ld tokens, %ld errors; server RSS %.1f -> %.1f MiB\n",
                label, L.requests, L.tokens, L.errors, rss0, rss1);
        free(th);
        free(args);
        return L.errors ? 1 : 0;
    }

    char (*rows)[512] = calloc((size_t)nlev, sizeof *rows);
    if (!rows) return 2;
    double base = NAN;
    long any_err = 0;
    for (int li = 0; li < nlev; li++) {
        int conc = levels[li];
        level L = {.mu = PTHREAD_MUTEX_INITIALIZER, .t = &t, .reqs = reqs};
        worker_arg *args;
        double t0 = now_s();
        pthread_t *th = start_clients(&L, conc, &args);
        if (!th) return 2;
        for (int w = 0; w < conc; w++) pthread_join(th[w], NULL);
        double wall = now_s() - t0, tps = L.tokens / wall;
        if (li == 0) base = tps;
        double tf[3] = {pct(&L.ttft, 50), pct(&L.ttft, 90), pct(&L.ttft, 99)};
        double it[3] = {pct(&L.itl, 50), pct(&L.itl, 90), pct(&L.itl, 99)};
        fprintf(stderr,
                "%s C=%3d  %7.1f tok/s  TTFT p50 %6.0f p90 %6.0f p99 %6.0f ms  ITL p50 %6.1f "
                "p90 %6.1f p99 %6.1f ms  (%ld requests, %ld tokens, %ld errors%s%s)\n",
                label, conc, tps, tf[0] * 1e3, tf[1] * 1e3, tf[2] * 1e3, it[0] * 1e3, it[1] * 1e3,
                it[2] * 1e3, L.requests, L.tokens, L.errors, L.errors ? "; first: " : "",
                L.first_err);
        snprintf(rows[li], sizeof rows[li],
                 "| %s | %d | %ld | %ld | %ld | %.1f | %.1f | %.2f | %.0f | %.0f | %.0f | %.1f | "
                 "%.1f | %.1f |",
                 label, conc, L.requests, L.errors, L.tokens, wall, tps,
                 base > 0 ? tps / base : NAN, tf[0] * 1e3, tf[1] * 1e3, tf[2] * 1e3, it[0] * 1e3,
                 it[1] * 1e3, it[2] * 1e3);
        any_err += L.errors;
        free(L.ttft.v);
        free(L.itl.v);
        free(th);
        free(args);
    }
    printf("| server | streams | requests | errors | tokens | wall s | tok/s | × 1 stream | "
           "TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | ITL p50 ms | ITL p90 ms | ITL p99 ms |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int li = 0; li < nlev; li++) printf("%s\n", rows[li]);
    free(rows);
    return any_err ? 1 : 0;
}
