// kd_loss.h — the losses of global distillation on the CPU (train.h's
// cosine_loss and kl_loss): Σ over layers of 1 − cos(h_child, h_parent) per
// token, and KL(parent‖child) over the vocabulary per token, with their
// gradients. Each row is summed in double by one thread and the row terms are
// added in row order afterwards, so the results are the same bits for any
// thread count. These are the formulas distill/distill.c computed on the host
// before they became backend ops. The KL's rows run on 8 lanes where AVX2 is
// in use (isa.h): exp is vexp.h's (relative error ~2e-7 against expf) and
// the double sums are taken in 4 lanes, so its bits differ from the plain
// path's (PZ_CPU_ISA=plain), which are that host code's; each path is
// deterministic for any thread count.
#ifndef PZ_CPU_KD_LOSS_H
#define PZ_CPU_KD_LOSS_H

#include <stddef.h>

// Over n_mat matrices m (at y + m·mat_stride) of rows × cols (contiguous
// rows): returns Σ_r Σ_m (1 − cos(y_child[m][r], y_parent[m][r])), each row's
// terms added over m first (cos taken as 0 when either vector is zero).
// d_child (may be NULL; the same layout) receives grad_scale · ∂/∂y_child.
// NAN when out of memory or a size < 1. Caller's memory throughout.
double pz_cpu_cosine_loss(const float *y_parent, const float *y_child, int n_mat, size_t mat_stride,
                          int rows, int cols, float *d_child, double grad_scale, int n_threads);

// Σ_r KL(softmax(p_r) ‖ softmax(q_r)) over rows of vocab logits, p = parent,
// q = child, in double. d_child (may be NULL, may equal logits_child)
// receives grad_scale · (softmax(q_r) − softmax(p_r)). NAN when out of memory
// or a size < 1.
double pz_cpu_kl_loss(const float *logits_parent, const float *logits_child, int rows, int vocab,
                      float *d_child, double grad_scale, int n_threads);

#endif
