// comm_nccl.c — comm.h over NCCL: all-reduce (sum, max) of fp32 buffers,
// broadcast of bytes and a barrier, each enqueued on the CUDA backend's
// stream so they order with the ops around them. Rank 0 makes the NCCL
// unique id and hands it over by kernels/bootstrap.h (shared file or TCP).
// Waits poll the stream and NCCL's asynchronous error instead of blocking in
// cudaStreamSynchronize, so a rank whose peer failed (and NCCL noticed)
// stops with a message instead of hanging; abort is ncclCommAbort.
#include "comm_nccl.h"

#include <nccl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend_cuda.h"
#include "bootstrap.h"

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
    float *dev_one;  // the barrier's one-float all-reduce
    char *dev_msg;   // status: int32 lowest failing rank, then its reason (STATUS_MSG bytes)
    char *abort_path;  // file: bootstrap: PATH.abort, a rank's abort notice to the others (else NULL)
} nccl_impl;

#define STATUS_MSG (PZ_ERRLEN - 16)

static int nccl_fail(pz_comm *c, char *err, ncclResult_t r, const char *what) {
    if (r == ncclSuccess) return 0;
    if (c) c->health = PZ_COMM_BROKEN;
    if (err) snprintf(err, PZ_ERRLEN, "nccl %s: %s", what, ncclGetErrorString(r));
    return -1;
}

static int nccl_all_reduce(pz_comm *c, float *buf, size_t n, pz_reduce_op op, char *err) {
    nccl_impl *x = c->impl;
    if ((n && !buf) || (op != PZ_REDUCE_SUM && op != PZ_REDUCE_MAX)) {
        if (err) snprintf(err, PZ_ERRLEN, "all_reduce: bad arguments (n %zu, op %d)", n, (int)op);
        return -1;
    }
    if (!n) return 0;
    return nccl_fail(c, err, ncclAllReduce(buf, buf, n, ncclFloat32, op == PZ_REDUCE_SUM ? ncclSum : ncclMax,
                                        x->comm, x->stream), "all_reduce");
}

static int nccl_broadcast(pz_comm *c, void *buf, size_t bytes, int root, char *err) {
    nccl_impl *x = c->impl;
    if ((bytes && !buf) || root < 0 || root >= c->size) {
        if (err) snprintf(err, PZ_ERRLEN, "broadcast: bad arguments (root %d of %d ranks)", root, c->size);
        return -1;
    }
    if (!bytes) return 0;
    return nccl_fail(c, err, ncclBroadcast(buf, buf, bytes, ncclUint8, root, x->comm, x->stream), "broadcast");
}

// A rank's abort notice (nccl_abort): 1 with its line in err when there is one.
static int peer_aborted(pz_comm *c, char *err) {
    nccl_impl *x = c->impl;
    struct stat st;
    if (!x->abort_path || stat(x->abort_path, &st) != 0) return 0;
    char line[STATUS_MSG] = "";
    FILE *f = fopen(x->abort_path, "r");
    if (f) {
        if (!fgets(line, sizeof line, f)) line[0] = 0;
        fclose(f);
    }
    line[strcspn(line, "\n")] = 0;
    c->health = PZ_COMM_BROKEN;
    if (err) snprintf(err, PZ_ERRLEN, "another rank ended the job: %s", line[0] ? line : "(no reason given)");
    return 1;
}

// Spins on cudaStreamQuery for about a millisecond (a decode step's
// collectives finish within it), then sleeps 100 us between polls; checks
// NCCL's asynchronous error (a peer's abort or loss, a timeout) as it goes,
// and every ~25 ms of sleeping a peer's abort notice (file: bootstrap).
static int nccl_wait(pz_comm *c, char *err) {
    nccl_impl *x = c->impl;
    for (long i = 0;; i++) {
        cudaError_t q = cudaStreamQuery(x->stream);
        if (q != cudaErrorNotReady) break;  // done, or an error the backend's synchronize reports
        if (i % 64 == 63) {
            ncclResult_t r = ncclSuccess;
            ncclResult_t g = ncclCommGetAsyncError(x->comm, &r);
            if (g != ncclSuccess || (r != ncclSuccess && r != ncclInProgress)) {
                const char *last = ncclGetLastError(x->comm);
                c->health = PZ_COMM_BROKEN;
                if (err)
                    snprintf(err, PZ_ERRLEN, "nccl: the collective failed (%s)%s%.200s: another rank failed or is gone",
                             ncclGetErrorString(g != ncclSuccess ? g : r), last && *last ? ": " : "", last ? last : "");
                return -1;
            }
        }
        if (i > 4096) {
            if (i % 256 == 0 && peer_aborted(c, err)) return -1;
            struct timespec ts = {0, 100 * 1000L};
            nanosleep(&ts, NULL);
        }
    }
    return c->b->synchronize(c->b, err);
}

static int nccl_barrier(pz_comm *c, char *err) {
    nccl_impl *x = c->impl;
    if (nccl_fail(c, err, ncclAllReduce(x->dev_one, x->dev_one, 1, ncclFloat32, ncclMax, x->comm, x->stream),
                  "barrier"))
        return -1;
    return nccl_wait(c, err);
}

// Waits first: a copy to pageable host memory would block in the driver
// behind a collective that never ends.
static int copy_wait(pz_comm *c, void *dst, const void *src, size_t n, enum cudaMemcpyKind k, char *err) {
    nccl_impl *x = c->impl;
    if (nccl_wait(c, err)) return -1;
    cudaError_t e = cudaMemcpyAsync(dst, src, n, k, x->stream);
    if (e != cudaSuccess) {
        c->health = PZ_COMM_BROKEN;
        if (err) snprintf(err, PZ_ERRLEN, "nccl status: %s", cudaGetErrorString(e));
        return -1;
    }
    return nccl_wait(c, err);
}

// The lowest failing rank (size when none) by an ncclMin all-reduce, then
// its reason broadcast from it, on the failure path only.
static int nccl_status(pz_comm *c, int ok, const char *why, char *err) {
    nccl_impl *x = c->impl;
    char msg[STATUS_MSG];  // why may be err itself
    snprintf(msg, sizeof msg, "%s", ok ? "" : why ? why : "failed");
    int32_t first = ok ? c->size : c->rank;
    if (copy_wait(c, x->dev_msg, &first, sizeof first, cudaMemcpyHostToDevice, err) ||
        nccl_fail(c, err, ncclAllReduce(x->dev_msg, x->dev_msg, 1, ncclInt32, ncclMin, x->comm, x->stream), "status") ||
        copy_wait(c, &first, x->dev_msg, sizeof first, cudaMemcpyDeviceToHost, err))
        return -1;
    if (first >= c->size) return 0;
    c->health = PZ_COMM_FAILED;
    char *dm = x->dev_msg + sizeof(int32_t);
    if ((c->rank == first && copy_wait(c, dm, msg, sizeof msg, cudaMemcpyHostToDevice, err)) ||
        nccl_fail(c, err, ncclBroadcast(dm, dm, sizeof msg, ncclUint8, first, x->comm, x->stream), "status") ||
        copy_wait(c, msg, dm, sizeof msg, cudaMemcpyDeviceToHost, err))
        return -1;
    msg[sizeof msg - 1] = 0;
    if (err) snprintf(err, PZ_ERRLEN, "rank %d: %s", (int)first, msg);
    return 1;
}

// Peers blocked in a collective with this rank see an asynchronous error
// where NCCL detects the loss (network transports); under a launcher
// (mpirun, torchrun-like) this rank's non-zero exit ends the job.
static void nccl_abort(pz_comm *c, const char *why) {
    nccl_impl *x = c->impl;
    fflush(stdout);
    fflush(stderr);
    if (x && x->abort_path) {  // the first rank's notice stays; written whole, then renamed
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.%d", x->abort_path, c->rank);
        FILE *f = fopen(tmp, "w");
        if (f) {
            fprintf(f, "rank %d: %s\n", c->rank, why ? why : "aborted");
            fclose(f);
            if (link(tmp, x->abort_path) != 0) { /* another rank's notice is there */ }
            unlink(tmp);
        }
    }
    if (x && x->comm) ncclCommAbort(x->comm);
    if (x) x->comm = NULL;
    _Exit(1);
}

static void nccl_destroy(pz_comm *c) {
    nccl_impl *x = c->impl;
    if (x) {
        if (x->comm) ncclCommDestroy(x->comm);
        cudaFree(x->dev_one);
        cudaFree(x->dev_msg);
        free(x->abort_path);
        free(x);
    }
    free(c);
}

pz_comm *pz_comm_nccl_create(pz_backend *b, int rank, int size, const char *bootstrap,
                             double timeout_s, char *err) {
    if (!b || b->kind != PZ_BACKEND_CUDA || rank < 0 || rank >= size) {
        if (err) snprintf(err, PZ_ERRLEN, "nccl: needs a CUDA backend and 0 <= rank %d < size %d", rank, size);
        return NULL;
    }
    ncclUniqueId id;
    if (rank == 0 && nccl_fail(NULL, err, ncclGetUniqueId(&id), "unique id")) return NULL;
    if (pz_bootstrap_exchange(bootstrap ? bootstrap : "", rank, size, &id, sizeof id, timeout_s, err))
        return NULL;
    pz_comm *c = calloc(1, sizeof *c);
    nccl_impl *x = calloc(1, sizeof *x);
    if (!c || !x) {
        free(c), free(x);
        if (err) snprintf(err, PZ_ERRLEN, "nccl: out of memory");
        return NULL;
    }
    c->impl = x;
    if (bootstrap && !strncmp(bootstrap, "file:", 5)) {
        size_t n = strlen(bootstrap + 5) + 8;
        if ((x->abort_path = malloc(n))) snprintf(x->abort_path, n, "%s.abort", bootstrap + 5);
    }
    c->destroy = nccl_destroy;
    x->stream = (cudaStream_t)pz_cuda_stream(b);
    cudaError_t e = cudaSetDevice(pz_cuda_device(b));
    if (e == cudaSuccess) e = cudaMalloc((void **)&x->dev_one, sizeof(float));
    if (e == cudaSuccess) e = cudaMemset(x->dev_one, 0, sizeof(float));
    if (e == cudaSuccess) e = cudaMalloc((void **)&x->dev_msg, sizeof(int32_t) + STATUS_MSG);
    if (e != cudaSuccess) {
        if (err) snprintf(err, PZ_ERRLEN, "nccl: %s", cudaGetErrorString(e));
        nccl_destroy(c);
        return NULL;
    }
    if (nccl_fail(c, err, ncclCommInitRank(&x->comm, size, id, rank), "init")) {
        x->comm = NULL;
        nccl_destroy(c);
        return NULL;
    }
    c->name = "nccl";
    c->rank = rank;
    c->size = size;
    c->b = b;
    c->all_reduce = nccl_all_reduce;
    c->broadcast = nccl_broadcast;
    c->barrier = nccl_barrier;
    c->status = nccl_status;
    c->wait = nccl_wait;
    c->abort = nccl_abort;
    return c;
}
