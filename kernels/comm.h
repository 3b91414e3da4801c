// comm.h — collectives between the ranks of one job (tensor-parallel
// shards of a model, data-parallel distillation workers), behind one small
// interface so the engine and the trainers never name a library. This file
// provides the single-process implementation (one rank: every collective is
// the identity); MPI (CPU clusters) and NCCL (GPUs) fill the same struct.
//
// Buffers are backend memory of the backend the communicator was made
// for; collectives are enqueued on that backend's stream like any op, and
// their failures are reported by the call or by `wait`.
//
// Failures of one rank (docs/TP.md "Failures"): a rank that fails where the
// others cannot know it tells them through `status`, a collective every rank
// reaches whether its own work succeeded or not, so every rank stops with
// the same one-line reason naming the rank. When the collectives themselves
// are out of step or broken (a failed all-reduce, a device fault), no
// collective can carry the news: `abort` ends every rank of the job.
#ifndef PZ_COMM_H
#define PZ_COMM_H

#include <stddef.h>

#include "backend.h"

typedef enum { PZ_REDUCE_SUM = 0, PZ_REDUCE_MAX = 1 } pz_reduce_op;

// pz_comm.health: the job as this rank knows it.
enum {
    PZ_COMM_OK = 0,
    PZ_COMM_FAILED = 1,  // a rank failed and every rank learnt it from `status`: no collective is
                         // pending, each rank stops with a non-zero status
    PZ_COMM_BROKEN = 2   // a collective failed, or the ranks' collectives are out of step
                         // (callers set it then): only `abort` ends the job
};

typedef struct pz_comm pz_comm;
struct pz_comm {
    const char *name;  // "single", "mpi", "nccl"
    int rank, size;
    pz_backend *b;     // whose memory the buffers are in (borrowed)
    void *impl;
    _Atomic int health;  // PZ_COMM_*: set by the calls below (FAILED by status, BROKEN by a failed
                         // collective) and by callers that leave the collectives out of step;
                         // atomic: a server's main thread watches it beside its engine thread
    // buf[n] (fp32) = op over all ranks of buf[n], in place, on every rank.
    int (*all_reduce)(pz_comm *c, float *buf, size_t n, pz_reduce_op op, char *err);
    // bytes at buf on root copied to buf on every other rank.
    int (*broadcast)(pz_comm *c, void *buf, size_t bytes, int root, char *err);
    // Returns when every rank has called it.
    int (*barrier)(pz_comm *c, char *err);
    // Every rank calls it, with ok = 1 when its own work so far succeeded,
    // else 0 and why (one line; NULL reads "failed"). 0 when every rank is
    // ok; 1 when some rank is not: err (every rank) then reads "rank R: WHY"
    // for the lowest failing rank R, and health becomes PZ_COMM_FAILED; -1
    // with err when the exchange itself failed (health PZ_COMM_BROKEN: then
    // abort). Host memory; blocking.
    int (*status)(pz_comm *c, int ok, const char *why, char *err);
    // Returns when the collectives this rank enqueued have completed (and
    // the backend's stream with them: the backend's synchronize, with its
    // errors). While waiting it watches for the job failing elsewhere
    // (NCCL: ncclCommGetAsyncError), and then returns -1 with err.
    int (*wait)(pz_comm *c, char *err);
    // Ends every rank of the job with a non-zero status, at once; does not
    // return. The caller prints its one rank-tagged line first; why (one
    // line) is what other ranks may report. MPI: MPI_Abort (mpirun ends the
    // others). NCCL: ncclCommAbort and exit; the others, waiting, notice it
    // by NCCL's async error where NCCL detects the loss, and with a file:
    // bootstrap by PATH.abort, which this writes (comm_nccl.h).
    void (*abort)(pz_comm *c, const char *why);
    void (*destroy)(pz_comm *c);
};

// One rank of one: all_reduce and broadcast leave buf as it is (after
// checking the arguments), barrier returns at once. b is borrowed.
pz_comm *pz_comm_single_create(pz_backend *b, char *err);
void pz_comm_free(pz_comm *c);

#endif
