// sampler.h — next-token choice from logits: greedy at temperature 0,
// otherwise temperature + top-p (nucleus) sampling with a seeded PRNG, so a
// fixed seed reproduces a run.
#ifndef PZ_SAMPLER_H
#define PZ_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temperature;  // 0: greedy
    float top_p;        // 1: no truncation
    uint64_t rng;       // xorshift state (never 0)
} pz_sampler;

pz_sampler pz_sampler_init(float temperature, float top_p, uint64_t seed);
// scratch: at least 2*vocab ints' worth (vocab floats + vocab ints) or NULL
// to allocate internally.
int32_t pz_sampler_sample(pz_sampler *s, const float *logits, int vocab);
int32_t pz_argmax(const float *x, int n);

#endif
