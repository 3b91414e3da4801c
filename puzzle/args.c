// args.c — option-value parsing and stop signals shared by the subcommands
// (see cli.h).
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int pz_is_help(const char *s) { return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0; }

const char *pz_arg_value(const char *cmd, int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "puzzle %s: option %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    *i += 1;
    return argv[*i];
}

int pz_arg_int(const char *cmd, const char *opt, const char *val, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi) {
        fprintf(stderr, "puzzle %s: %s wants an integer in [%ld, %ld], got '%s'\n", cmd, opt, lo, hi, val);
        return -1;
    }
    *out = v;
    return 0;
}

int pz_arg_float(const char *cmd, const char *opt, const char *val, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "puzzle %s: %s wants a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi, val);
        return -1;
    }
    *out = v;
    return 0;
}

int pz_arg_wtype(const char *cmd, const char *val, pz_dt *wtype) {
    pz_dt t;
    if (pz_dt_parse(val, &t) == 0 && (t == PZ_DT_F32 || t == PZ_DT_BF16 || t == PZ_DT_E4M3)) {
        *wtype = t;
        return 0;
    }
    fprintf(stderr, "puzzle %s: --dtype wants f32, bf16 or fp8, got '%s'\n", cmd, val);
    return -1;
}

int pz_parse_shard(const char *v, long *i, long *n) {
    char *end;
    errno = 0;
    long a = strtol(v, &end, 10);
    if (errno || end == v || *end != '/') return -1;
    const char *s = end + 1;
    long b = strtol(s, &end, 10);
    if (errno || end == s || *end || b < 1 || b > 1000000 || a < 0 || a >= b) return -1;
    *i = a, *n = b;
    return 0;
}

volatile sig_atomic_t pz_stop_signal = 0;

static void on_stop_signal(int sig) { pz_stop_signal = sig; }

void pz_install_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND;  // a second signal takes the default action
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
