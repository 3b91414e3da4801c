// server.c — routes and connection handling over libmicrohttpd (server.h).
// Thread per connection: a handler may block while its request runs, and
// polls its socket meanwhile so that a client that hangs up frees its
// sequence at once (pz_job_cancel) instead of when the next byte is sent.
#include "server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "common.h"

struct pz_server {
    struct MHD_Daemon *d;
    pz_server_params p;
    pz_metrics *m;
    pz_sched *sched;
    const pz_tokenizer *tok;
    pthread_mutex_t mu;
    int ready, draining, active;  // active: requests holding a job
    int port;
    char model[256];
    long long started;
};

enum { R_NONE, R_CHAT, R_COMPL, R_MODELS, R_HEALTH, R_METRICS };

typedef struct {
    pz_server *sv;
    struct MHD_Connection *c;
    char *body;
    size_t n_body, cap_body, dropped;
    int too_big;
    pz_job *job;
} conn_ctx;

// ---- responses --------------------------------------------------------------

static enum MHD_Result send_buf(pz_server *sv, struct MHD_Connection *c, int status, const char *ctype,
                                const char *body, size_t n, int retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after) {
        char v[16];
        snprintf(v, sizeof v, "%d", retry_after);
        MHD_add_response_header(r, "Retry-After", v);
    }
    if (status == 405) MHD_add_response_header(r, "Allow", "GET, POST");
    if (status == 401) MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    pz_metrics_count_status(sv->m, status);
    return rc;
}

static enum MHD_Result send_json(pz_server *sv, struct MHD_Connection *c, int status, const char *json) {
    return send_buf(sv, c, status, "application/json", json, strlen(json), 0);
}

static enum MHD_Result send_error(pz_server *sv, struct MHD_Connection *c, const pz_oai_error *e) {
    char *b = pz_oai_error_json(e);
    if (!b) return MHD_NO;
    enum MHD_Result rc = send_buf(sv, c, e->status, "application/json", b, strlen(b), e->status == 503 ? 1 : 0);
    free(b);
    return rc;
}

static enum MHD_Result fail(pz_server *sv, struct MHD_Connection *c, int status, const char *type,
                            const char *code, const char *msg) {
    pz_oai_error e;
    pz_oai_fail(&e, status, type, NULL, code, "%s", msg);
    return send_error(sv, c, &e);
}

// ---- helpers ----------------------------------------------------------------

static int route_of(const char *url, const char **method) {
    static const struct {
        const char *path, *method;
        int route;
    } t[] = {{"/v1/chat/completions", "POST", R_CHAT}, {"/v1/completions", "POST", R_COMPL},
             {"/v1/models", "GET", R_MODELS},          {"/health", "GET", R_HEALTH},
             {"/metrics", "GET", R_METRICS}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(url, t[i].path)) {
            *method = t[i].method;
            return t[i].route;
        }
    return R_NONE;
}

// The peer closed or reset the connection.
static int peer_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 1;
    struct pollfd pf = {.fd = ci->connect_fd, .events = POLLRDHUP};
    if (poll(&pf, 1, 0) < 0) return 0;
    return (pf.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

// Constant-time comparison of the Authorization header with "Bearer KEY".
static int key_ok(const pz_server *sv, struct MHD_Connection *c) {
    if (!sv->p.api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t n = strlen(h), k = strlen(sv->p.api_key);
    unsigned diff = (unsigned)(n ^ k);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)h[i] ^ (unsigned char)sv->p.api_key[i % (k ? k : 1)];
    return diff == 0;
}

static void active_add(pz_server *sv, int d) {
    pthread_mutex_lock(&sv->mu);
    sv->active += d;
    pthread_mutex_unlock(&sv->mu);
}

// ---- completions ------------------------------------------------------------

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    conn_ctx *x = cls;
    for (;;) {
        int done = 0, status = 0;
        size_t n = pz_job_read(x->job, buf, max, 50, &done, &status);
        if (n) return (ssize_t)n;
        if (done) {
            MHD_set_connection_option(x->c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)x->sv->p.timeout_s);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (peer_gone(x->c)) {
            pz_job_cancel(x->job);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static enum MHD_Result completion(pz_server *sv, conn_ctx *x, int chat) {
    struct MHD_Connection *c = x->c;
    pz_oai_request r;
    pz_oai_error e;
    int32_t *ids = NULL;
    int n_ids = 0;
    if (pz_oai_parse(x->body ? x->body : "", x->n_body, chat, sv->tok, &r, &e) != 0) {
        pz_oai_request_free(&r);
        return send_error(sv, c, &e);
    }
    if (r.ids) {
        ids = r.ids, n_ids = r.n_ids;
        r.ids = NULL;
    } else {
        char err[PZ_ERRLEN];
        n_ids = pz_tokenizer_encode_prompt(sv->tok, r.text, strlen(r.text), &ids, err);  // BOS as the model wants
        if (n_ids < 0) {
            pz_oai_fail(&e, 400, NULL, chat ? "messages" : "prompt", "invalid_value", "%s", err);
            pz_oai_request_free(&r);
            return send_error(sv, c, &e);
        }
    }
    pz_job *j = pz_sched_submit(sv->sched, &r, ids, n_ids, &e);
    free(ids);
    pz_oai_request_free(&r);
    if (!j) return send_error(sv, c, &e);
    x->job = j;
    active_add(sv, 1);
    // the request may wait in the queue and run long: no idle timeout meanwhile
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    if (pz_job_stream(j)) {
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, x, NULL);
        if (!resp) return MHD_NO;
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        pz_metrics_count_status(sv->m, 200);
        return rc;
    }
    char *body = NULL;
    size_t n = 0, cap = 0;
    int done = 0, status = 200;
    while (!done) {
        char buf[16384];
        size_t k = pz_job_read(j, buf, sizeof buf, 50, &done, &status);
        if (k) {
            if (n + k + 1 > cap) {
                cap = (cap + k) * 2;
                char *p = realloc(body, cap);
                if (!p) {
                    free(body);
                    pz_job_cancel(j);
                    return MHD_NO;
                }
                body = p;
            }
            memcpy(body + n, buf, k);
            n += k;
        } else if (!done && peer_gone(c)) {
            pz_job_cancel(j);
            free(body);
            return MHD_NO;
        }
    }
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)sv->p.timeout_s);
    enum MHD_Result rc = send_buf(sv, c, status, "application/json", body ? body : "", n, status == 503 ? 1 : 0);
    free(body);
    return rc;
}

// ---- dispatch ---------------------------------------------------------------

static enum MHD_Result dispatch(pz_server *sv, conn_ctx *x, const char *url, const char *method) {
    struct MHD_Connection *c = x->c;
    const char *want = NULL;
    int route = route_of(url, &want);
    if (route == R_NONE) return fail(sv, c, 404, "invalid_request_error", "not_found", "unknown route");
    if (strcmp(method, want) && !(route != R_CHAT && route != R_COMPL && !strcmp(method, "HEAD")))
        return fail(sv, c, 405, "invalid_request_error", "method_not_allowed", "method not allowed on this route");
    if (x->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", sv->p.max_body);
        return fail(sv, c, 413, "invalid_request_error", "request_too_large", msg);
    }
    pthread_mutex_lock(&sv->mu);
    int ready = sv->ready, draining = sv->draining;
    pthread_mutex_unlock(&sv->mu);
    if (route == R_HEALTH) {
        if (!ready) return fail(sv, c, 503, "unavailable_error", "loading", "loading the model");
        return send_json(sv, c, 200, "{\"status\":\"ok\"}");
    }
    if (route == R_METRICS) {
        char *t = pz_metrics_render(sv->m);
        if (!t) return fail(sv, c, 500, "server_error", NULL, "out of memory");
        enum MHD_Result rc = send_buf(sv, c, 200, "text/plain; version=0.0.4", t, strlen(t), 0);
        free(t);
        return rc;
    }
    if (!key_ok(sv, c))
        return fail(sv, c, 401, "invalid_request_error", "invalid_api_key", "missing or incorrect API key");
    if (!ready) return fail(sv, c, 503, "unavailable_error", "loading", "loading the model");
    if (route == R_MODELS) {
        cJSON *o = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(o, "data"), *mo = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "object", "list");
        cJSON_AddStringToObject(mo, "id", sv->model);
        cJSON_AddStringToObject(mo, "object", "model");
        cJSON_AddNumberToObject(mo, "created", (double)sv->started);
        cJSON_AddStringToObject(mo, "owned_by", "puzzle");
        cJSON_AddItemToArray(a, mo);
        char *b = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!b) return MHD_NO;
        enum MHD_Result rc = send_json(sv, c, 200, b);
        free(b);
        return rc;
    }
    if (draining) return fail(sv, c, 503, "unavailable_error", "shutting_down", "the server is shutting down");
    return completion(sv, x, route == R_CHAT);
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                               const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    pz_server *sv = cls;
    conn_ctx *x = *con_cls;
    if (!x) {
        if (!(x = calloc(1, sizeof *x))) return MHD_NO;
        x->sv = sv, x->c = c;
        *con_cls = x;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > sv->p.max_body) {  // refuse before reading the body
            x->too_big = 1;
            return dispatch(sv, x, url, method);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (x->too_big || x->n_body + n > sv->p.max_body) {
            x->too_big = 1;
            x->dropped += n;
            return x->dropped > 16 * sv->p.max_body ? MHD_NO : MHD_YES;  // a flood: hang up
        }
        if (x->n_body + n + 1 > x->cap_body) {
            size_t cap = (x->cap_body + n) * 2;
            char *b = realloc(x->body, cap);
            if (!b) return MHD_NO;
            x->body = b, x->cap_body = cap;
        }
        memcpy(x->body + x->n_body, upload, n);
        x->n_body += n;
        return MHD_YES;
    }
    if (x->job) return MHD_YES;  // answered already (HEAD-less re-entry)
    return dispatch(sv, x, url, method);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode tc) {
    (void)c, (void)tc;
    pz_server *sv = cls;
    conn_ctx *x = *con_cls;
    if (!x) return;
    if (x->job) {
        pz_job_cancel(x->job);  // no-op when it finished
        pz_job_release(x->job);
        active_add(sv, -1);
    }
    free(x->body);
    free(x);
    *con_cls = NULL;
}

// ---- lifecycle --------------------------------------------------------------

pz_server *pz_server_start(pz_server_params p, pz_metrics *m, char *err) {
    if (!p.host) p.host = "127.0.0.1";
    if (p.timeout_s <= 0) p.timeout_s = 30;
    if (!p.max_body) p.max_body = 1 << 20;
    if (p.max_connections <= 0) p.max_connections = 256;
    if (p.port < 0 || p.port > 65535) {
        pz_err(err, "port %d is out of range", p.port);
        return NULL;
    }
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(p.host, NULL, &hints, &ai);
    if (g != 0 || !ai) {
        pz_err(err, "cannot resolve host '%s': %s", p.host, gai_strerror(g));
        return NULL;
    }
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof sa);
    memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
    int v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    if (v6) ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)p.port);
    else ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)p.port);
    pz_server *sv = calloc(1, sizeof *sv);
    if (!sv) {
        pz_err(err, "out of memory");
        return NULL;
    }
    sv->p = p, sv->m = m;
    sv->started = (long long)time(NULL);
    snprintf(sv->model, sizeof sv->model, "%s", p.model_name ? p.model_name : "model");
    pthread_mutex_init(&sv->mu, NULL);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
    if (v6) flags |= MHD_USE_IPv6;
    sv->d = MHD_start_daemon(flags, (uint16_t)p.port, NULL, NULL, handler, sv,
                             MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                             MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p.timeout_s,
                             MHD_OPTION_CONNECTION_LIMIT, (unsigned)p.max_connections,
                             MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 * 1024),
                             MHD_OPTION_NOTIFY_COMPLETED, completed, sv,
                             MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
                             MHD_OPTION_END);
    if (!sv->d) {
        pz_err(err, "cannot listen on %s:%d (address in use, or not allowed)", p.host, p.port);
        pthread_mutex_destroy(&sv->mu);
        free(sv);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(sv->d, MHD_DAEMON_INFO_BIND_PORT);
    sv->port = di ? di->port : p.port;
    return sv;
}

int pz_server_port(const pz_server *sv) { return sv->port; }

void pz_server_ready(pz_server *sv, pz_sched *s, const pz_tokenizer *tok) {
    pthread_mutex_lock(&sv->mu);
    sv->sched = s, sv->tok = tok;
    sv->ready = 1;
    pthread_mutex_unlock(&sv->mu);
}

static int quiet(pz_server *sv) {
    pthread_mutex_lock(&sv->mu);
    int a = sv->active;
    pthread_mutex_unlock(&sv->mu);
    return a == 0 && (!sv->sched || pz_sched_idle(sv->sched));
}

static void nap(void) {
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
}

int pz_server_drain(pz_server *sv, double drain_s) {
    pthread_mutex_lock(&sv->mu);
    sv->draining = 1;
    pthread_mutex_unlock(&sv->mu);
    MHD_socket ls = MHD_quiesce_daemon(sv->d);
    if (ls != MHD_INVALID_SOCKET) close(ls);
    if (sv->sched) pz_sched_close(sv->sched, 0);
    double t0 = pz_now();
    while (!quiet(sv) && pz_now() - t0 < drain_s) nap();
    if (quiet(sv)) return 1;
    if (sv->sched) pz_sched_close(sv->sched, 1);
    t0 = pz_now();
    while (!quiet(sv) && pz_now() - t0 < 5) nap();
    return 0;
}

void pz_server_stop(pz_server *sv) {
    if (!sv) return;
    MHD_stop_daemon(sv->d);
    pthread_mutex_destroy(&sv->mu);
    free(sv);
}
