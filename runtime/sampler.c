// sampler.c — see sampler.h. Top-p keeps the smallest set of most likely
// tokens whose probability reaches top_p; to avoid sorting the whole
// vocabulary it first keeps only tokens within a factor 1e-9 of the best
// (whose total mass is negligible), then sorts those.
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

pz_sampler pz_sampler_init(float temperature, float top_p, uint64_t seed) {
    pz_sampler s;
    s.temperature = temperature < 0 ? 0 : temperature;
    s.top_p = (top_p <= 0 || top_p > 1) ? 1.0f : top_p;
    uint64_t st = seed;
    s.rng = splitmix(&st);
    if (s.rng == 0) s.rng = 0x2545F4914F6CDD1DULL;
    return s;
}

// xorshift64*: uniform in [0, 1).
static double next_uniform(pz_sampler *s) {
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

// The first index of the largest value; a NaN never wins, and x[0] wins when it
// is NaN (the plain loop's rule). Vectorized as two passes (the largest value
// and whether any NaN is there, then its first index): a server samples a
// vocabulary-long row per sequence per step on its one loop thread.
static int32_t argmax_plain(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

int32_t pz_argmax(const float *x, int n) {
    if (n <= 1) return 0;
    float m = x[0];
    int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
    for (int i = 0; i < n; i++) {
        m = x[i] > m ? x[i] : m;
        nan |= x[i] != x[i];
    }
    if (!nan)
        for (int i = 0; i < n; i++)
            if (x[i] == m) return i;
    return argmax_plain(x, n);
}

typedef struct {
    float p;
    int32_t id;
} cand;

static int cand_desc(const void *a, const void *b) {
    float pa = ((const cand *)a)->p, pb = ((const cand *)b)->p;
    if (pa != pb) return pa < pb ? 1 : -1;
    return ((const cand *)a)->id - ((const cand *)b)->id;
}

size_t pz_sampler_scratch_bytes(int vocab) { return sizeof(cand) * (size_t)(vocab > 0 ? vocab : 1); }

int32_t pz_sampler_sample(pz_sampler *s, const float *logits, int vocab) {
    if (vocab <= 0) return -1;
    if (s->temperature <= 0) return pz_argmax(logits, vocab);
    void *scratch = malloc(pz_sampler_scratch_bytes(vocab));
    if (!scratch) return pz_argmax(logits, vocab);
    int32_t r = pz_sampler_sample_scratch(s, logits, vocab, scratch);
    free(scratch);
    return r;
}

int32_t pz_sampler_sample_scratch(pz_sampler *s, const float *logits, int vocab, void *scratch) {
    if (vocab <= 0) return -1;
    int32_t best = pz_argmax(logits, vocab);
    if (s->temperature <= 0 || !isfinite(logits[best])) return best;
    cand *c = scratch;
    double inv_t = 1.0 / s->temperature, mx = logits[best], sum = 0;
    int n = 0;
    for (int i = 0; i < vocab; i++) {
        double p = exp(((double)logits[i] - mx) * inv_t);
        sum += p;
        if (p >= 1e-9) c[n++] = (cand){(float)p, i};
    }
    qsort(c, (size_t)n, sizeof *c, cand_desc);
    // Truncate to the nucleus, then draw within it.
    double keep = 0;
    int k = 0;
    while (k < n) {
        keep += c[k].p;
        k++;
        if (keep >= s->top_p * sum) break;
    }
    double r = next_uniform(s) * keep, acc = 0;
    int32_t pick = c[k - 1].id;
    for (int i = 0; i < k; i++) {
        acc += c[i].p;
        if (r < acc) {
            pick = c[i].id;
            break;
        }
    }
    return pick;
}
