// adamw.h — the optimizer side of Blockwise Local Distillation on the CPU:
// AdamW with decoupled weight decay, global gradient-norm clipping, the
// learning-rate schedule (linear warm-up, then cosine decay to a floor),
// and the normalized-MSE loss ‖y_parent − y_child‖² / ‖y_parent‖² with its
// gradient. Parameters and moments are fp32; norms and losses are summed
// in double in fixed-size chunks added in a fixed order, so results are
// bit-identical for any thread count.
#ifndef PZ_CPU_ADAMW_H
#define PZ_CPU_ADAMW_H

#include <stddef.h>

#include "train.h"  // pz_adamw_params, pz_adamw_tensor, pz_lr_schedule


// sqrt(Σ g²) over all tensors.
double pz_cpu_grad_norm(const pz_adamw_tensor *t, int n_tensors, int n_threads);

// Scales every gradient by min(1, max_norm / (norm + 1e-6)) (as
// torch.nn.utils.clip_grad_norm_ does). Returns the norm before clipping.
// max_norm <= 0: no scaling.
double pz_cpu_clip_grads(pz_adamw_tensor *t, int n_tensors, float max_norm, int n_threads);

// One optimizer step: clips the gradients by hp->clip_norm, then for each
// element, with step t = 1, 2, ... (for the bias corrections):
//   p -= lr·wd·p (decay tensors)
//   m = β1·m + (1−β1)·g,  v = β2·v + (1−β2)·g²
//   p -= lr · (m / (1−β1^t)) / (sqrt(v / (1−β2^t)) + eps)
// Gradients are left clipped, not zeroed. Returns the norm before clipping.
double pz_cpu_adamw_step(pz_adamw_tensor *t, int n_tensors, long step, float lr,
                         const pz_adamw_params *hp, int n_threads);


// Normalized MSE: ‖y_parent − y_child‖² / ‖y_parent‖² over n elements,
// in double. d_child (may be NULL) receives ∂loss/∂y_child =
// 2·(y_child − y_parent) / ‖y_parent‖², times grad_scale (e.g. 1/micro-
// batches). Returns the loss; NAN when ‖y_parent‖ = 0.
double pz_cpu_nmse_loss(const float *y_parent, const float *y_child, size_t n, float *d_child,
                        float grad_scale, int n_threads);

// Per-token normalized MSE over rows of cols values: the mean over rows r of
// ‖t_r − y_r‖² / (‖t_r‖² + eps), t = y_parent, y = y_child, in double (each
// row's sum by one thread, the rows added in order: the same bits for any
// thread count). d_child (may be NULL) receives ∂loss/∂y_child =
// 2·(y_r − t_r) / ((‖t_r‖² + eps)·rows), times grad_scale. Returns the loss;
// NAN when a row has ‖t_r‖² + eps = 0 (eps = 0 and a zero target row), when
// rows or cols < 1, or out of memory.
double pz_cpu_token_nmse_loss(const float *y_parent, const float *y_child, int rows, int cols, float eps,
                              float *d_child, float grad_scale, int n_threads);

#endif
