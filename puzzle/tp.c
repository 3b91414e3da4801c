// tp.c — `--tp N` for the commands that run the engine (generate, eval,
// serve): the communicator and the backend it lives on (cli.h). The engine
// does the sharding and the replay of rank 0's calls (runtime/engine.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "comm.h"
#include "common.h"
#include "tp_plan.h"
#ifdef PZ_HAVE_MPI
#include "comm_mpi.h"
#endif
#ifdef PZ_HAVE_NCCL
#include "comm_nccl.h"
#endif

int pz_arg_tp(const char *cmd, int argc, char **argv, int *i, long *tp, const char **init) {
    const char *a = argv[*i], *v;
    if (!strcmp(a, "--tp")) {
        if (!(v = pz_arg_value(cmd, argc, argv, i)) || pz_arg_int(cmd, a, v, 1, 4096, tp)) return -1;
        return 1;
    }
    if (!strcmp(a, "--tp-init")) {
        if (!(*init = pz_arg_value(cmd, argc, argv, i))) return -1;
        return 1;
    }
    return 0;
}

// The first of the variables that is set, as an integer; -1 when none is.
static int env_int(const char *const *keys) {
    for (; *keys; keys++) {
        const char *v = getenv(*keys);
        if (v && *v) return atoi(v);
    }
    return -1;
}

static const char *const SIZE_KEYS[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "WORLD_SIZE", NULL};
static const char *const RANK_KEYS[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "RANK", NULL};
static const char *const LOCAL_KEYS[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "LOCAL_RANK", NULL};

// Frees what pz_cli_tp_open made so far; -1.
static int undo(pz_comm **comm, pz_backend **be) {
    pz_comm_free(*comm);
    if (*be) pz_backend_free(*be);
    *comm = NULL;
    *be = NULL;
    return -1;
}

int pz_cli_tp_open(int tp, int backend_kind, int threads, const char *init, pz_comm **comm, pz_backend **be,
                   char *err) {
    *comm = NULL;
    *be = NULL;
    int world = env_int(SIZE_KEYS);
    if (tp <= 1) {
        if (world > 1)
            return pz_err(err, "started as %d processes (an MPI launcher) without --tp: pass --tp %d to split "
                          "the model over them, or run one process", world, world);
        return 0;
    }
    pz_backend_kind kind = (pz_backend_kind)backend_kind;
    if (kind == PZ_BACKEND_CPU) {
#ifdef PZ_HAVE_MPI
        if (!pz_comm_mpi_launched())
            return pz_err(err, "--tp %d runs one process per rank: start it with mpirun -np %d", tp, tp);
        if (!(*be = pz_backend_create(kind, threads, err))) return -1;
        if (!(*comm = pz_comm_mpi_create(*be, err))) return undo(comm, be);
        if ((*comm)->size != tp) {
            pz_err(err, "--tp %d but the launcher started %d processes (mpirun -np %d)", tp, (*comm)->size, tp);
            return undo(comm, be);
        }
        return 0;
#else
        return pz_err(err, "--tp %d on the CPU needs MPI: this build has none (install libopenmpi-dev, rebuild)", tp);
#endif
    }
#ifdef PZ_HAVE_NCCL
    int rank = env_int(RANK_KEYS);
    if (world < 0 || rank < 0)
        return pz_err(err, "--tp %d: no rank in the environment (start one process per GPU with mpirun, or set "
                      "RANK and WORLD_SIZE)", tp);
    if (world != tp) return pz_err(err, "--tp %d but the launcher started %d processes", tp, world);
    if (!init || !*init)
        return pz_err(err, "--tp %d on CUDA needs --tp-init file:PATH or tcp:HOST:PORT (how rank 0's NCCL id "
                      "reaches the others)", tp);
    if (!getenv("PUZZLE_CUDA_DEVICE")) {
        int local = env_int(LOCAL_KEYS);
        char dev[16];
        snprintf(dev, sizeof dev, "%d", local >= 0 ? local : rank);
        setenv("PUZZLE_CUDA_DEVICE", dev, 1);
    }
    if (!(*be = pz_backend_create(kind, threads, err))) return -1;
    if (!(*comm = pz_comm_nccl_create(*be, rank, tp, init, 300, err))) return undo(comm, be);
    return 0;
#else
    (void)init, (void)RANK_KEYS, (void)LOCAL_KEYS, (void)undo;
    return pz_err(err, "--tp %d on %s needs NCCL: this build has none", tp, pz_backend_kind_name(kind));
#endif
}

int pz_cli_tp_loaded(pz_comm *comm, char *err) {
    if (!comm || comm->size <= 1) return 0;
    if (pz_tp_fault("load", comm->rank))
        return pz_err(err, "injected fault (PZ_TP_FAULT=load@%d) after loading the shard", comm->rank);
    return comm->status(comm, 1, NULL, err) ? -1 : 0;
}

// A follower of a failed job leaves a moment after rank 0, which prints the
// job's line: a launcher that sees a rank exit non-zero ends the job, and
// Open MPI's mpirun then may drop output of the others not yet forwarded.
static void linger(void) {
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
}

void pz_cli_tp_fail(const char *cmd, pz_comm *comm, int loaded, char *err) {
    if (!comm || comm->size <= 1) {
        fprintf(stderr, "puzzle %s: %s\n", cmd, err);
        return;
    }
    // Before the load check the others wait in it (or fail in it too):
    // this rank's reason reaches every rank there.
    if (!loaded && comm->health == PZ_COMM_OK) {
        char why[PZ_ERRLEN];
        snprintf(why, sizeof why, "%s", err);
        comm->status(comm, 0, why, err);
    }
    if (comm->health == PZ_COMM_BROKEN) {  // no collective can carry it: end every rank
        fprintf(stderr, "puzzle %s: rank %d: %s (ending all %d ranks)\n", cmd, comm->rank, err, comm->size);
        comm->abort(comm, err);
    }
    if (comm->health == PZ_COMM_FAILED) {  // every rank knows err: rank 0 says it
        if (comm->rank == 0)
            fprintf(stderr, "puzzle %s: %s\n", cmd, err);
        else
            atexit(linger);
        return;
    }
    fprintf(stderr, "puzzle %s: rank %d: %s\n", cmd, comm->rank, err);  // rank 0's own (met alike)
}
