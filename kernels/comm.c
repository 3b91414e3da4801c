// comm.c — the single-process communicator (comm.h): one rank, so every
// collective is the identity once its arguments are checked.
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>

static int single_all_reduce(pz_comm *c, float *buf, size_t n, pz_reduce_op op, char *err) {
    (void)c;
    if ((n && !buf) || (op != PZ_REDUCE_SUM && op != PZ_REDUCE_MAX)) {
        if (err) snprintf(err, PZ_ERRLEN, "all_reduce: bad arguments (buf %p, n %zu, op %d)", (void *)buf, n, (int)op);
        return -1;
    }
    return 0;
}

static int single_broadcast(pz_comm *c, void *buf, size_t bytes, int root, char *err) {
    if ((bytes && !buf) || root < 0 || root >= c->size) {
        if (err) snprintf(err, PZ_ERRLEN, "broadcast: bad arguments (root %d of %d ranks)", root, c->size);
        return -1;
    }
    return 0;
}

static int single_barrier(pz_comm *c, char *err) {
    (void)c, (void)err;
    return 0;
}

static int single_status(pz_comm *c, int ok, const char *why, char *err) {
    if (ok) return 0;
    char msg[PZ_ERRLEN - 16];  // why may be err itself
    snprintf(msg, sizeof msg, "%s", why ? why : "failed");
    if (err) snprintf(err, PZ_ERRLEN, "rank 0: %s", msg);
    c->health = PZ_COMM_FAILED;
    return 1;
}

static int single_wait(pz_comm *c, char *err) { return c->b ? c->b->synchronize(c->b, err) : 0; }

static void single_abort(pz_comm *c, const char *why) {
    (void)c, (void)why;
    exit(1);
}

static void single_destroy(pz_comm *c) { free(c); }

pz_comm *pz_comm_single_create(pz_backend *b, char *err) {
    pz_comm *c = calloc(1, sizeof *c);
    if (!c) {
        if (err) snprintf(err, PZ_ERRLEN, "comm: out of memory");
        return NULL;
    }
    c->name = "single";
    c->rank = 0;
    c->size = 1;
    c->b = b;
    c->all_reduce = single_all_reduce;
    c->broadcast = single_broadcast;
    c->barrier = single_barrier;
    c->status = single_status;
    c->wait = single_wait;
    c->abort = single_abort;
    c->destroy = single_destroy;
    return c;
}

void pz_comm_free(pz_comm *c) {
    if (c && c->destroy) c->destroy(c);
}
