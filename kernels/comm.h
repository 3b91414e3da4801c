// comm.h — collectives between the ranks of one job (tensor-parallel
// shards of a model, data-parallel distillation workers), behind one small
// interface so the engine and the trainers never name a library. This file
// provides the single-process implementation (one rank: every collective is
// the identity); MPI (CPU clusters) and NCCL (GPUs) fill the same struct.
//
// Buffers are backend memory of the backend the communicator was made
// for; collectives are enqueued on that backend's stream like any op, and
// their failures are reported by the call or by the backend's synchronize.
#ifndef PZ_COMM_H
#define PZ_COMM_H

#include <stddef.h>

#include "backend.h"

typedef enum { PZ_REDUCE_SUM = 0, PZ_REDUCE_MAX = 1 } pz_reduce_op;

typedef struct pz_comm pz_comm;
struct pz_comm {
    const char *name;  // "single", "mpi", "nccl"
    int rank, size;
    pz_backend *b;     // whose memory the buffers are in (borrowed)
    void *impl;
    // buf[n] (fp32) = op over all ranks of buf[n], in place, on every rank.
    int (*all_reduce)(pz_comm *c, float *buf, size_t n, pz_reduce_op op, char *err);
    // bytes at buf on root copied to buf on every other rank.
    int (*broadcast)(pz_comm *c, void *buf, size_t bytes, int root, char *err);
    // Returns when every rank has called it.
    int (*barrier)(pz_comm *c, char *err);
    void (*destroy)(pz_comm *c);
};

// One rank of one: all_reduce and broadcast leave buf as it is (after
// checking the arguments), barrier returns at once. b is borrowed.
pz_comm *pz_comm_single_create(pz_backend *b, char *err);
void pz_comm_free(pz_comm *c);

#endif
