// comm_mpi.h — the MPI communicator (comm.h) over MPI_COMM_WORLD: the
// data-parallel ranks of global distillation on CPU machines, started by
// mpirun. Built when CMake finds MPI (Debian: libopenmpi-dev; the build
// then defines PZ_HAVE_MPI). Buffers are host memory (the CPU backend's).
#ifndef PZ_COMM_MPI_H
#define PZ_COMM_MPI_H

#include "comm.h"

// 1 when this process was started by an MPI launcher with more than one
// rank (Open MPI's OMPI_COMM_WORLD_SIZE, or PMI_SIZE / PMIX_RANK set).
int pz_comm_mpi_launched(void);

// Initializes MPI (unless already initialized; then the caller finalizes)
// and returns a communicator over MPI_COMM_WORLD; b is borrowed. The
// communicator's destroy finalizes MPI when it initialized it. NULL with
// err on failure.
pz_comm *pz_comm_mpi_create(pz_backend *b, char *err);

#endif
