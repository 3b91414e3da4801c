// comm_mpi.c — see comm_mpi.h. fp32 sums and maxima with MPI_Allreduce in
// place, broadcasts of bytes in chunks below INT_MAX, and a barrier. Open
// MPI's reductions combine ranks in a fixed order for a fixed rank count,
// so a run is repeatable; its sums differ from one process's only by the
// order of fp32 additions.
#include "comm_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int initialized_here;
} mpi_impl;

static int mpi_fail(pz_comm *c, char *err, const char *what, int rc) {
    if (c) c->health = PZ_COMM_BROKEN;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "code %d", rc);
    if (err) snprintf(err, PZ_ERRLEN, "mpi: %s: %s", what, msg);
    return -1;
}

static int mpi_all_reduce(pz_comm *c, float *buf, size_t n, pz_reduce_op op, char *err) {
    (void)c;
    if ((n && !buf) || (op != PZ_REDUCE_SUM && op != PZ_REDUCE_MAX)) {
        if (err) snprintf(err, PZ_ERRLEN, "all_reduce: bad arguments (n %zu, op %d)", n, (int)op);
        return -1;
    }
    for (size_t off = 0; off < n;) {
        size_t k = n - off > (size_t)INT_MAX ? (size_t)INT_MAX : n - off;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, op == PZ_REDUCE_SUM ? MPI_SUM : MPI_MAX,
                               MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(c, err, "MPI_Allreduce", rc);
        off += k;
    }
    return 0;
}

static int mpi_broadcast(pz_comm *c, void *buf, size_t bytes, int root, char *err) {
    if ((bytes && !buf) || root < 0 || root >= c->size) {
        if (err) snprintf(err, PZ_ERRLEN, "broadcast: bad arguments (root %d of %d ranks)", root, c->size);
        return -1;
    }
    for (size_t off = 0; off < bytes;) {
        size_t k = bytes - off > (size_t)INT_MAX ? (size_t)INT_MAX : bytes - off;
        int rc = MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(c, err, "MPI_Bcast", rc);
        off += k;
    }
    return 0;
}

static int mpi_barrier(pz_comm *c, char *err) {
    (void)c;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(c, err, "MPI_Barrier", rc);
}

// The lowest failing rank (size when none) by one MPI_MIN, then its reason
// by a broadcast from it, on the failure path only.
static int mpi_status(pz_comm *c, int ok, const char *why, char *err) {
    char msg[PZ_ERRLEN - 16];  // why may be err itself
    snprintf(msg, sizeof msg, "%s", ok ? "" : why ? why : "failed");
    int first = ok ? c->size : c->rank;
    int rc = MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return mpi_fail(c, err, "MPI_Allreduce (status)", rc);
    if (first >= c->size) return 0;
    c->health = PZ_COMM_FAILED;
    if ((rc = MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, MPI_COMM_WORLD)) != MPI_SUCCESS)
        return mpi_fail(c, err, "MPI_Bcast (status)", rc);
    msg[sizeof msg - 1] = 0;
    if (err) snprintf(err, PZ_ERRLEN, "rank %d: %s", first, msg);
    return 1;
}

// Host memory, blocking collectives: nothing is left in flight but the
// backend's own ops.
static int mpi_wait(pz_comm *c, char *err) { return c->b ? c->b->synchronize(c->b, err) : 0; }

// mpirun then ends every other rank (SIGTERM, then SIGKILL).
static void mpi_abort(pz_comm *c, const char *why) {
    (void)c, (void)why;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);  // not reached with a working launcher
}

static void mpi_destroy(pz_comm *c) {
    mpi_impl *im = c->impl;
    if (im && im->initialized_here) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
    }
    free(im);
    free(c);
}

int pz_comm_mpi_launched(void) {
    const char *keys[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(keys[i]);
        if (v && atoi(v) > 1) return 1;
    }
    return 0;
}

pz_comm *pz_comm_mpi_create(pz_backend *b, char *err) {
    pz_comm *c = calloc(1, sizeof *c);
    mpi_impl *im = calloc(1, sizeof *im);
    if (!c || !im) {
        free(c), free(im);
        if (err) snprintf(err, PZ_ERRLEN, "comm: out of memory");
        return NULL;
    }
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        // Serialized: one thread at a time calls MPI, not always the main
        // one (a tensor-parallel server's engine thread).
        int provided = 0;
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
        if (rc != MPI_SUCCESS) {
            mpi_fail(c, err, "MPI_Init_thread", rc);
            free(c), free(im);
            return NULL;
        }
        im->initialized_here = 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    c->name = "mpi";
    c->b = b;
    c->impl = im;
    c->all_reduce = mpi_all_reduce;
    c->broadcast = mpi_broadcast;
    c->barrier = mpi_barrier;
    c->status = mpi_status;
    c->wait = mpi_wait;
    c->abort = mpi_abort;
    c->destroy = mpi_destroy;
    return c;
}
