// seterr.h — the solver's one error helper, shared by its .c files: writes
// "solver: " and the message into err (PZ_ERRLEN bytes; may be NULL) and
// returns -1, so a failure reads `return seterr(err, "...", ...);`.
#ifndef PZ_SOLVER_SETERR_H
#define PZ_SOLVER_SETERR_H

#include <stdarg.h>
#include <stdio.h>

#include "solver.h"

static int seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static int seterr(char *err, const char *fmt, ...) {
    if (!err) return -1;
    int n = snprintf(err, PZ_ERRLEN, "solver: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, PZ_ERRLEN - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

#endif
