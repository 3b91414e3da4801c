// server.h — the HTTP side of `puzzle serve`: libmicrohttpd (one thread per
// connection), routes, API-key check, body and connection limits, and the
// drain on shutdown. It parses requests (openai.h), tokenizes them (the
// tokenizer is thread-safe) and hands them to the engine loop
// (scheduler.h); it never touches the engine. The server listens before
// the model is loaded, answering /health with 503 until pz_server_ready.
#ifndef PZ_SERVE_SERVER_H
#define PZ_SERVE_SERVER_H

#include <stddef.h>

#include "metrics.h"
#include "scheduler.h"
#include "tokenizer.h"

typedef struct {
    const char *host;      // address to bind (default 127.0.0.1)
    int port;              // 0: any free port (pz_server_port tells which)
    const char *api_key;   // required as "Authorization: Bearer KEY" on /v1/*; NULL: none
    const char *model_name;// the id /v1/models lists and responses carry
    int timeout_s;         // idle or stalled connection timeout (default 30)
    size_t max_body;       // request body limit, bytes (default 1 MiB; beyond: 413)
    int max_connections;   // concurrent connections (threads) (default 256)
} pz_server_params;

typedef struct pz_server pz_server;

// Starts listening. m is borrowed (outlives the server). NULL with err.
pz_server *pz_server_start(pz_server_params p, pz_metrics *m, char *err);
int pz_server_port(const pz_server *sv);
// The model is loaded: completions go to s, prompts are tokenized with tok
// (both borrowed until pz_server_stop).
void pz_server_ready(pz_server *sv, pz_sched *s, const pz_tokenizer *tok);
// Draining: stops accepting connections, answers new requests on open
// ones with 503, lets queued and running requests finish and their
// responses go out, for at most drain_s seconds; then cancels what is left.
// Returns 1 when everything finished in time, 0 otherwise.
int pz_server_drain(pz_server *sv, double drain_s);
// Closes every connection and frees the server (joins its threads).
void pz_server_stop(pz_server *sv);

#endif
