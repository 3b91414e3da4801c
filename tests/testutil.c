// testutil.c — see testutil.h.
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int pz_test_failures = 0;
int pz_test_checks = 0;

int pz_test_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, pz_test_checks, pz_test_failures);
    return pz_test_failures ? 1 : 0;
}

uint64_t pz_test_rand_u64(uint64_t *s) {
    // splitmix64: good enough for test data, and never stuck at zero.
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

float pz_test_uniform(uint64_t *s, float lo, float hi) {
    double u = (double)(pz_test_rand_u64(s) >> 11) / 9007199254740992.0;
    return lo + (float)(u * (hi - lo));
}

float pz_test_randn(uint64_t *s) {
    double u1 = ((double)(pz_test_rand_u64(s) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(pz_test_rand_u64(s) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

void pz_test_fill_randn(float *x, size_t n, float scale, uint64_t *s) {
    for (size_t i = 0; i < n; i++) x[i] = scale * pz_test_randn(s);
}

double pz_rel_err_f(const float *a, const float *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    if (mb == 0) return md;
    return md / mb;
}

double pz_rel_err_fd(const float *a, const double *b, size_t n) {
    double md = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    if (mb == 0) return md;
    return md / mb;
}

const char *pz_test_model_path(void) {
    const char *p = getenv("PUZZLE_MODEL");
    struct stat st;
    if (!p || !*p || stat(p, &st) != 0) return NULL;
    return p;
}

const char *pz_test_python(const char *modules, const char *what) {
    const char *py = getenv("PUZZLE_PYTHON");
    if (py && !*py) {
        fprintf(stderr, "PUZZLE_PYTHON is empty (configured with -DPZ_PYTHON=): %s skipped\n", what);
        return NULL;
    }
    if (!py) py = "python3";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' -c 'import %s' >/dev/null 2>&1", py, modules);
    int ok = system(cmd) == 0;
    CHECKF(ok, "%s: %s cannot import %s; run scripts/setup_venv.sh and configure with -DPZ_PYTHON=ITS_PYTHON "
           "(or -DPZ_PYTHON= to skip on purpose)", what, py, modules);
    return ok ? py : NULL;
}

const char *pz_test_data_dir(void) {
    const char *p = getenv("PUZZLE_TESTDATA");
    return (p && *p) ? p : "tests/data";
}

char *pz_test_tmpdir(const char *tag) {
    char *buf = malloc(256);
    snprintf(buf, 256, "/tmp/pz_%s_XXXXXX", tag);
    if (!mkdtemp(buf)) {
        free(buf);
        return NULL;
    }
    return buf;
}
