// testutil.h — tiny test harness: CHECK macros that count failures, random
// fills, relative-error helpers, and paths to test data.
#ifndef PZ_TESTUTIL_H
#define PZ_TESTUTIL_H

#include <stdio.h>
#include <stdint.h>
#include <stddef.h>

extern int pz_test_failures;
extern int pz_test_checks;

#define CHECK(cond) do { pz_test_checks++; if (!(cond)) { pz_test_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECKF(cond, ...) do { pz_test_checks++; if (!(cond)) { pz_test_failures++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

// Prints "N checks, M failed" and returns the process exit code.
int pz_test_finish(const char *name);
// Exit code 77 = skipped (ctest SKIP_RETURN_CODE), with a reason on stderr.
#define PZ_TEST_SKIP 77

// Deterministic PRNG for tests.
uint64_t pz_test_rand_u64(uint64_t *state);
float pz_test_randn(uint64_t *state);              // ~N(0,1)
float pz_test_uniform(uint64_t *state, float lo, float hi);
void pz_test_fill_randn(float *x, size_t n, float scale, uint64_t *state);

// max|a-b| / max|b| (0 when both are zero).
double pz_rel_err_f(const float *a, const float *b, size_t n);
double pz_rel_err_fd(const float *a, const double *b, size_t n);

// Environment helpers: $PUZZLE_MODEL (reference parent), $PUZZLE_TESTDATA
// (tests/data in the source tree); NULL/"" when unset.
const char *pz_test_model_path(void);   // NULL if unset or the file is missing
const char *pz_test_data_dir(void);
// The interpreter of the reference scripts (tests/ref/) for an independent
// cross-check that imports `modules` (e.g. "gguf, numpy"): $PUZZLE_PYTHON
// (ctest sets it from CMake's PZ_PYTHON, the venv of scripts/setup_venv.sh),
// "python3" when unset (a test run by hand). NULL when the check must not run:
// $PUZZLE_PYTHON set empty (skipped on purpose, a note on stderr), or the
// interpreter cannot import the modules — a counted failure that names
// scripts/setup_venv.sh, never a silent skip.
const char *pz_test_python(const char *modules, const char *what);
// A fresh empty temporary directory (mkdtemp under /tmp), caller frees.
char *pz_test_tmpdir(const char *tag);

#endif
