// engine.h — the forward pass of a heterogeneous Llama-family model over a
// per-layer KV cache, for one or many sequences ("slots"). Every stage of the
// toolkit (scoring, distillation, serving) runs models through this.
//
// Prefill of one slot processes many tokens in one pass; batched decode
// processes one new token for each of several slots in one pass (the shape
// continuous batching needs). The KV cache is allocated per layer, sized by
// that layer's KV heads; linear and noop attention layers hold none.
//
// Numerics: activations are fp32. With bf16 weights, products of more than
// 8 rows (prefill) round the activations to bf16 (bf16 x bf16 -> fp32 in
// the library), while decode multiplies the exact bf16 weights with fp32
// activations, so one sequence's logits do not depend on what it is batched
// with in decode.
//
// Threads: OpenMP (the engine's own kernels and oneDNN). On a machine shared
// with other busy processes, run with OMP_WAIT_POLICY=passive: libgomp's
// default spinning at each of the ~150 barriers of a decode step starves the
// thread it waits for (measured 10-30x slower decode); the variable is read
// when libgomp loads, so it must be set in the environment.
#ifndef PZ_ENGINE_H
#define PZ_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include "backend.h"
#include "model.h"

typedef struct {
    int n_threads;     // 0: all cores (omp_get_num_procs)
    int n_slots;       // sequences held at once (default 1)
    int max_ctx;       // KV positions per slot (default min(model max_ctx, 4096))
    int max_batch;     // most tokens in one forward call (default 512)
    pz_backend_kind backend;  // where weights, KV cache and every op live (default CPU)
} pz_engine_params;

pz_engine_params pz_engine_default_params(void);

typedef struct pz_engine pz_engine;

// The engine borrows m (which must outlive it), hands its weight arena to
// the backend once (the CPU backend uses it in place; a device copies it),
// and owns its KV cache and scratch in backend memory, allocated here once;
// no allocation happens per token. Token ids and logits cross between host
// and backend at each call.
pz_engine *pz_engine_create(const pz_model *m, pz_engine_params p, char *err);
void pz_engine_free(pz_engine *e);

// Appends n tokens to slot's sequence (positions len..len+n-1), splitting
// into chunks of max_batch internally. logits: if non-NULL, receives vocab
// floats for the last token, or n*vocab floats (row per token) when
// all_logits. Returns 0, or -1 with err filled (context full, bad token id).
int pz_engine_prefill(pz_engine *e, int slot, const int32_t *tokens, int n,
                      float *logits, int all_logits, char *err);

// One new token for each of n slots (distinct) in a single batched pass.
// logits: n*vocab floats, row i for slots[i].
int pz_engine_decode(pz_engine *e, const int *slots, const int32_t *tokens, int n,
                     float *logits, char *err);

int pz_engine_slot_len(const pz_engine *e, int slot);   // tokens in the cache
void pz_engine_slot_reset(pz_engine *e, int slot);      // forget the sequence
const pz_model *pz_engine_model(const pz_engine *e);
size_t pz_engine_kv_bytes(const pz_engine *e);          // KV cache allocated

#endif
