// net.h — the whole heterogeneous model as a trainable function: embedding,
// every layer (attention half: gqa of any KV count, linear, noop; FFN half:
// swiglu of any width, linear, noop), the final norm and the LM head,
// forward over windows of T tokens with every activation the backward
// needs kept, and the backward into a gradient model of the same shape.
// Global distillation runs the teacher (forward only) and the child
// (forward and backward) through this; the sub-blocks are blocklib's
// (subblock.h), so BLD, scoring and distillation share one code path.
//
// Weights are those of an fp32 pz_model (pz_model_load / pz_model_alloc
// with PZ_DT_F32): the model is only read, and a gradient model (the same
// config, fp32, zeroed by the caller) receives += gradients; a tied model's
// LM head and embedding share one gradient array (pz_model_alloc aliases
// them), so both contributions add up there.
//
// Memory: every weight, gradient and activation is backend memory. The
// models given to pz_net_fwd / pz_net_bwd are views whose weights live in
// the backend's memory (pz_model_dev; on the CPU backend a host model is
// its own view). Token ids are host memory (copied over once per forward);
// the embedding gather is the backend's embed op, its gradient one add per row.
#ifndef PZ_NET_H
#define PZ_NET_H

#include <stdint.h>

#include "backend.h"
#include "model.h"

typedef struct pz_net pz_net;

// A runner for models of m's architecture (m->wtype must be PZ_DT_F32),
// for up to max_rows rows (windows × T) per call. prec: the products' type
// (PZ_DT_F32 or PZ_DT_BF16; attention scores are fp32). be is borrowed and
// must outlive the runner. NULL with err on failure; free with pz_net_free.
pz_net *pz_net_create(const pz_model *m, int max_rows, pz_dt prec, pz_backend *be, char *err);
void pz_net_free(pz_net *n);

// dev = host (fp32) with its weights in be's memory: the same struct and
// shapes, a layer table of its own, every weight pointer rebased into one
// backend allocation, the values copied when copy is 1 (else zeroed). When
// the backend's memory is the host's (pz_dev_host_shared), dev is host
// itself (the same pointers). Free with pz_model_dev_free(be, dev, host).
int pz_model_dev(pz_backend *be, const pz_model *host, int copy, pz_model *dev, char *err);
void pz_model_dev_free(pz_backend *be, pz_model *dev, const pz_model *host);
// Copies every weight between a host model and its view (either way, same
// config); to_host synchronizes. No-ops when dev is host's own view.
int pz_model_dev_copy(pz_backend *be, pz_model *dev, pz_model *host, int to_host, char *err);

// Forward of m over ids (n_seq windows of T tokens, host memory; each
// window at positions 0..T-1). Keeps the activations for pz_net_bwd.
int pz_net_fwd(pz_net *n, const pz_model *m, const int32_t *ids, int n_seq, int T, char *err);

// After a forward: the residual stream leaving layer l (0 <= l < n_layer),
// (rows, hidden), before the final norm for the last layer; and the logits
// (rows, vocab), which the caller may overwrite (e.g. with their gradient).
// Backend memory owned by n, valid until the next forward. The hidden
// states of consecutive layers are max_rows · hidden floats apart.
const float *pz_net_hidden(const pz_net *n, int l);
float *pz_net_logits(pz_net *n);
int pz_net_rows(const pz_net *n);

// Backward of the last forward of m: dlogits (rows, vocab) is ∂L/∂logits
// (backend memory; may be pz_net_logits' buffer); dhid (may be NULL) is an array of
// n_layer pointers, entry l the direct ∂L/∂(hidden of layer l) (rows,
// hidden) or NULL where the loss does not read that layer. grad (same
// config as m, fp32) receives += every weight's gradient.
int pz_net_bwd(pz_net *n, const pz_model *m, pz_model *grad, const float *dlogits,
               const float *const *dhid, char *err);

// Multiply-adds ×2 of one forward over rows (windows of T) of m's config:
// every product, attention scores causally, LM head included.
double pz_net_fwd_flops(const pz_config *c, int rows, int T);

#endif
