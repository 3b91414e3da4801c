// testmodel.h — small random heterogeneous models for tests: configs that
// mix every sub-block kind (gqa with several KV-head counts, linear, noop;
// swiglu with several widths, linear, noop; tied and untied embeddings),
// weights of sensible scale (activations and logits stay O(1), attention is
// far from uniform), and writing them as Hugging Face DeciLM directories.
#ifndef PZ_TESTMODEL_H
#define PZ_TESTMODEL_H

#include <stdint.h>
#include "model.h"

#define PZ_TESTMODEL_VARIANTS 3

// Fills c with preset variant v (0 .. PZ_TESTMODEL_VARIANTS-1):
//   0: hidden 64, 4 heads x 16, vocab 97, untied, 6 layers:
//      gqa4+swiglu96, gqa2+linear, linear+swiglu160, noop+swiglu64,
//      gqa1+noop, gqa2+swiglu96
//   1: hidden 48, 6 heads x 8, vocab 61, tied, Llama-3 RoPE scaling,
//      5 layers: gqa3+swiglu128, noop+noop, gqa6+linear, linear+linear,
//      gqa2+swiglu40
//   2: hidden 96, 3 heads x 32, vocab 130, untied, theta 1e5, 4 layers:
//      gqa3+swiglu256, gqa1+swiglu512, gqa3+swiglu256, gqa1+swiglu200
void pz_testmodel_config(pz_config *c, int variant);

// A model of config c with random weights from seed, stored as wt.
// Returns NULL with err filled on failure; free with pz_model_free.
pz_model *pz_testmodel_random(const pz_config *c, pz_dt wt, uint64_t seed, char *err);

// pz_testmodel_random + pz_model_save_hf into dir (created if missing).
int pz_testmodel_write_hf(const pz_config *c, pz_dt wt, uint64_t seed, const char *dir, char *err);

#endif
