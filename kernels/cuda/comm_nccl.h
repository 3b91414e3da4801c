// comm_nccl.h — the NCCL communicator (comm.h) for CUDA backends: one
// process per GPU, buffers in that GPU's memory, collectives enqueued on the
// backend's stream. Only in builds with PZ_HAVE_NCCL.
#ifndef PZ_COMM_NCCL_H
#define PZ_COMM_NCCL_H

#include "comm.h"

// Rank `rank` of `size`. b must be a CUDA backend (borrowed; it outlives
// the communicator). bootstrap: how rank 0's NCCL id reaches the others
// ("file:PATH" or "tcp:HOST:PORT", kernels/bootstrap.h); timeout_s bounds
// that exchange. NULL with err filled on failure.
// Failures (comm.h): waits poll NCCL's asynchronous error; with a file:
// bootstrap, abort also leaves PATH.abort ("rank R: WHY"), which the other
// ranks' waits notice within ~25 ms, so they end too even where NCCL does
// not detect the loss of a peer (NVLink, PCIe, shared memory). With tcp:,
// only NCCL's own detection or the launcher (mpirun ends a job whose rank
// exits non-zero) ends them.
pz_comm *pz_comm_nccl_create(pz_backend *b, int rank, int size, const char *bootstrap,
                             double timeout_s, char *err);

#endif
