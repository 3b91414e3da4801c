// bwd_rope.h — the backward pass of RoPE (rope.h; implemented in rope.c): the gradient of a
// rotation is the inverse rotation, so dx = R(−angle)·dy, with the same
// Hugging Face "rotate_half" pairing (dimension i with i + head_dim/2), the
// same inv_freq table (pz_rope_inv_freq in backend.h) and the same angles
// (pos · inv_freq, cos/sin in double, rounded to float) as the forward.
#ifndef PZ_CPU_BWD_ROPE_H
#define PZ_CPU_BWD_ROPE_H

#include <stdint.h>

// In place on dx: (M, n_heads*head_dim) with rows ld apart, holding ∂L/∂y
// on entry and ∂L/∂x on return; row m at position pos[m]. inv_freq:
// (head_dim/2). head_dim even and <= 1024.
void pz_cpu_rope_bwd(float *dx, int ld, const int32_t *pos, int M, int n_heads, int head_dim,
                     const float *inv_freq, int n_threads);

#endif
