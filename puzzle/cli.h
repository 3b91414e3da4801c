// cli.h — shared plumbing for the `puzzle` subcommands: option parsing
// helpers, the command table and model opening with uniform messages. Only
// the CLI (and later the pipeline) prints and exits; libraries return status.
#ifndef PZ_CLI_H
#define PZ_CLI_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "dtype.h"

typedef struct {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);  // argv[0] is the command name
    void (*usage)(FILE *out);
} pz_command;

// Each cmd_*.c defines one of these.
int pz_cmd_info(int argc, char **argv);
int pz_cmd_generate(int argc, char **argv);
int pz_cmd_eval(int argc, char **argv);
int pz_cmd_tokenize(int argc, char **argv);
int pz_cmd_convert(int argc, char **argv);
int pz_cmd_build_library(int argc, char **argv);
int pz_cmd_merge_db(int argc, char **argv);
int pz_cmd_plan(int argc, char **argv);
int pz_cmd_score(int argc, char **argv);
int pz_cmd_profile(int argc, char **argv);
int pz_cmd_search(int argc, char **argv);
int pz_cmd_solutions(int argc, char **argv);
int pz_cmd_solution(int argc, char **argv);
int pz_cmd_realize(int argc, char **argv);
int pz_cmd_serve(int argc, char **argv);
int pz_cmd_distill(int argc, char **argv);
int pz_cmd_quantize(int argc, char **argv);
int pz_cmd_run(int argc, char **argv);
int pz_cmd_report(int argc, char **argv);
void pz_usage_info(FILE *out);
void pz_usage_generate(FILE *out);
void pz_usage_eval(FILE *out);
void pz_usage_tokenize(FILE *out);
void pz_usage_convert(FILE *out);
void pz_usage_build_library(FILE *out);
void pz_usage_merge_db(FILE *out);
void pz_usage_plan(FILE *out);
void pz_usage_score(FILE *out);
void pz_usage_profile(FILE *out);
void pz_usage_search(FILE *out);
void pz_usage_solutions(FILE *out);
void pz_usage_solution(FILE *out);
void pz_usage_realize(FILE *out);
void pz_usage_serve(FILE *out);
void pz_usage_distill(FILE *out);
void pz_usage_quantize(FILE *out);
void pz_usage_run(FILE *out);
void pz_usage_report(FILE *out);

// Option parsing: argv is scanned left to right; options take their value
// from the next argument (or after '=' for --long=value). These helpers
// print "puzzle CMD: <problem>" to stderr and return -1 on a bad value.
int pz_arg_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out);
int pz_arg_float(const char *cmd, const char *opt, const char *val, double lo, double hi, double *out);
// Returns the option's value for argv[*i] == opt (advancing *i), or NULL with
// a message when the value is missing.
const char *pz_arg_value(const char *cmd, int argc, char **argv, int *i);
// 1 when s is "--help" or "-h".
int pz_is_help(const char *s);

// Parses a --dtype for weights the runtime holds: "f32"/"fp32" or "bf16".
// 0, or -1 with a message on stderr.
int pz_arg_wtype(const char *cmd, const char *val, pz_dt *wtype);

// Parses "I/N" (0 <= I < N) as given to --shard; 0 on success, -1 otherwise.
int pz_parse_shard(const char *v, long *i, long *n);

// Long jobs (build-library, score): after pz_install_stop_signals(), the
// first SIGINT or SIGTERM sets pz_stop_signal (the job finishes or discards
// the item in flight and exits saying a rerun resumes); a second one takes
// the default action.
extern volatile sig_atomic_t pz_stop_signal;
void pz_install_stop_signals(void);

// Tensor parallelism (--tp N on generate, eval, serve): one process per
// rank. tp <= 1: *comm = NULL, *be = NULL (the engine makes its own
// backend), refused when an MPI launcher started several processes. tp > 1
// on the CPU: the processes come from mpirun (Open MPI), the communicator is
// MPI_COMM_WORLD, whose size must be tp. On CUDA: NCCL, rank and size from
// the launcher's environment (OMPI_COMM_WORLD_RANK/SIZE, PMI_RANK/SIZE or
// RANK/WORLD_SIZE), the GPU from the local rank unless PUZZLE_CUDA_DEVICE
// is set, rank 0's NCCL id handed over by `init` ("file:PATH" or
// "tcp:HOST:PORT", kernels/bootstrap.h; required). On success the caller
// owns *comm and *be: pass the communicator as pz_engine_params.comm and,
// after the engine is freed, pz_comm_free(*comm) then pz_backend_free(*be).
// 0, or -1 with err.
struct pz_comm;
struct pz_backend;
int pz_cli_tp_open(int tp, int backend_kind, int threads, const char *init, struct pz_comm **comm,
                   struct pz_backend **be, char *err);
// Tensor parallel (comm with more than one rank; no-ops otherwise): a
// failure on one rank ends every rank (docs/TP.md "Failures").
// pz_cli_tp_loaded: every rank calls it once its shard is loaded; 0 when
// every rank got there, -1 with err "rank R: WHY" when one failed (its fail
// path told the others, below). Honours the PZ_TP_FAULT=load@RANK test hook.
int pz_cli_tp_loaded(struct pz_comm *comm, char *err);
// A command's fail path: prints the one line this rank owes for err
// ("puzzle CMD: ..."; under tensor parallelism rank-tagged, and a failure
// every rank learnt of is printed by rank 0 alone). loaded: 0 while the
// rank has not passed pz_cli_tp_loaded, whose exchange it then makes with
// err as its reason. When the ranks' collectives are broken it ends the
// whole job (comm->abort) and does not return.
void pz_cli_tp_fail(const char *cmd, struct pz_comm *comm, int loaded, char *err);
// Parses --tp N and --tp-init SPEC at argv[*i] (advancing *i): 1 when
// argv[*i] was one of them, 0 when not, -1 on a bad value (message printed).
int pz_arg_tp(const char *cmd, int argc, char **argv, int *i, long *tp, const char **init);

// Process exit codes.
enum { PZ_EXIT_OK = 0, PZ_EXIT_FAIL = 1, PZ_EXIT_USAGE = 2 };

#endif
