// comm_nccl.c — comm.h over NCCL: all-reduce (sum, max) of fp32 buffers,
// broadcast of bytes and a barrier, each enqueued on the CUDA backend's
// stream so they order with the ops around them. Rank 0 makes the NCCL
// unique id and hands it over by kernels/bootstrap.h (shared file or TCP).
#include "comm_nccl.h"

#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend_cuda.h"
#include "bootstrap.h"

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
    float *dev_one;  // the barrier's one-float all-reduce
} nccl_impl;

static int nccl_fail(char *err, ncclResult_t r, const char *what) {
    if (r == ncclSuccess) return 0;
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
    return nccl_fail(err, ncclAllReduce(buf, buf, n, ncclFloat32, op == PZ_REDUCE_SUM ? ncclSum : ncclMax,
                                        x->comm, x->stream), "all_reduce");
}

static int nccl_broadcast(pz_comm *c, void *buf, size_t bytes, int root, char *err) {
    nccl_impl *x = c->impl;
    if ((bytes && !buf) || root < 0 || root >= c->size) {
        if (err) snprintf(err, PZ_ERRLEN, "broadcast: bad arguments (root %d of %d ranks)", root, c->size);
        return -1;
    }
    if (!bytes) return 0;
    return nccl_fail(err, ncclBroadcast(buf, buf, bytes, ncclUint8, root, x->comm, x->stream), "broadcast");
}

static int nccl_barrier(pz_comm *c, char *err) {
    nccl_impl *x = c->impl;
    if (nccl_fail(err, ncclAllReduce(x->dev_one, x->dev_one, 1, ncclFloat32, ncclMax, x->comm, x->stream),
                  "barrier"))
        return -1;
    cudaError_t e = cudaStreamSynchronize(x->stream);
    if (e != cudaSuccess) {
        if (err) snprintf(err, PZ_ERRLEN, "barrier: %s", cudaGetErrorString(e));
        return -1;
    }
    return 0;
}

static void nccl_destroy(pz_comm *c) {
    nccl_impl *x = c->impl;
    if (x) {
        if (x->comm) ncclCommDestroy(x->comm);
        cudaFree(x->dev_one);
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
    if (rank == 0 && nccl_fail(err, ncclGetUniqueId(&id), "unique id")) return NULL;
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
    c->destroy = nccl_destroy;
    x->stream = (cudaStream_t)pz_cuda_stream(b);
    cudaError_t e = cudaSetDevice(pz_cuda_device(b));
    if (e == cudaSuccess) e = cudaMalloc((void **)&x->dev_one, sizeof(float));
    if (e == cudaSuccess) e = cudaMemset(x->dev_one, 0, sizeof(float));
    if (e != cudaSuccess) {
        if (err) snprintf(err, PZ_ERRLEN, "nccl: %s", cudaGetErrorString(e));
        nccl_destroy(c);
        return NULL;
    }
    if (nccl_fail(err, ncclCommInitRank(&x->comm, size, id, rank), "init")) {
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
    return c;
}
