// sampler.h — next-token choice from logits: greedy at temperature 0,
// otherwise temperature + top-p (nucleus) sampling with a seeded PRNG, so a
// fixed seed reproduces a run.
#ifndef PZ_SAMPLER_H
#define PZ_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float temperature;  // 0: greedy
    float top_p;        // 1: no truncation
    uint64_t rng;       // xorshift state (never 0)
} pz_sampler;

pz_sampler pz_sampler_init(float temperature, float top_p, uint64_t seed);
// Picks a token from logits (vocab floats). Greedy (the argmax, lowest id on
// ties) when temperature is 0. pz_sampler_sample allocates a vocab-sized
// candidate list per call; pz_sampler_sample_scratch uses the caller's
// scratch of at least pz_sampler_scratch_bytes(vocab) bytes instead (for
// decode loops that must not allocate).
int32_t pz_sampler_sample(pz_sampler *s, const float *logits, int vocab);
size_t pz_sampler_scratch_bytes(int vocab);
int32_t pz_sampler_sample_scratch(pz_sampler *s, const float *logits, int vocab, void *scratch);
int32_t pz_argmax(const float *x, int n);

#endif
