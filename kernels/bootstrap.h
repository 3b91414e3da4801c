// bootstrap.h — hands one small blob (an NCCL unique id: 128 bytes) from
// rank 0 to every other rank of a job before any collective exists, by a
// shared file or over TCP, so tensor-parallel and data-parallel jobs can
// span processes and nodes without MPI. Plain POSIX; built everywhere and
// tested on the CPU (the NCCL communicator, kernels/cuda/comm_nccl.c, is
// its user).
//
// spec:
//   "file:PATH"       rank 0 writes PATH (created exclusively: the path
//                     must be fresh for each job, e.g. named by the job id;
//                     written to PATH.tmp and renamed, so readers never see
//                     half a file); the others poll until it appears.
//   "tcp:HOST:PORT"   rank 0 listens on PORT (all interfaces) and sends the
//                     blob to each of the size-1 others, which connect to
//                     HOST:PORT, retrying until the timeout.
// Every rank calls it with the same spec, size and len; rank 0's blob is
// the input, the others' buffers receive it.
#ifndef PZ_BOOTSTRAP_H
#define PZ_BOOTSTRAP_H

#include <stddef.h>

// Waits at most timeout_s seconds. 0, or -1 with err (PZ_ERRLEN) filled.
int pz_bootstrap_exchange(const char *spec, int rank, int size, void *blob, size_t len,
                          double timeout_s, char *err);

#endif
