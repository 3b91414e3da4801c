// common.h — error buffers, checked allocation and small helpers shared by
// every runtime module. Library code never exits: it returns a status and
// writes one line of explanation into a caller-supplied buffer.
#ifndef PZ_COMMON_H
#define PZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define PZ_ERRLEN 512

// Formats a message into err (which may be NULL) and returns -1, so callers can
// write `return pz_err(err, "bad %s", x);`.
int pz_err(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Size arithmetic that reports overflow instead of wrapping: returns 0 on
// success, -1 on overflow (out is left unspecified).
int pz_mul_size(size_t a, size_t b, size_t *out);
int pz_add_size(size_t a, size_t b, size_t *out);

// Reads a whole file into a NUL-terminated heap buffer (caller frees).
// Refuses files larger than max_bytes.
char *pz_read_file(const char *path, size_t max_bytes, size_t *len, char *err);

// Joins a directory and a file name into buf; returns buf.
char *pz_path_join(char *buf, size_t cap, const char *dir, const char *name);

int pz_is_dir(const char *path);
int pz_file_exists(const char *path);
// fsyncs the directory holding path, so that a rename into it is durable (errors ignored).
void pz_fsync_dir_of(const char *path);

// Monotonic wall clock in seconds.
double pz_now(void);
// The median of v[0..n), n >= 1 (sorts v in place).
double pz_median(double *v, int n);

#endif
