// kerr.h — the one error helper of kernels/cpu. Kernels may not include
// runtime/, so this is runtime/common.c's pz_err one layer down.
#ifndef PZ_CPU_KERR_H
#define PZ_CPU_KERR_H

#include <stdarg.h>
#include <stdio.h>
#include "backend.h"

// Formats one line into err (PZ_ERRLEN bytes; NULL is fine) and returns -1,
// so a failure reads `return pz_kerr(err, "bad %s", x);`.
static inline int pz_kerr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline int pz_kerr(char *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, PZ_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#endif
