// rope.h — rotary position embedding in the Hugging Face "rotate_half" form
// (dimension i of a head rotates with i + head_dim/2), in place, and the
// frequency table it uses (pz_rope_inv_freq in backend.h, implemented in
// rope.c). Angles and their cos/sin are computed in double per row.
#ifndef PZ_CPU_ROPE_H
#define PZ_CPU_ROPE_H

#include <stdint.h>

// x: (M, n_heads*head_dim) with rows ld apart; row m at position pos[m].
// inv_freq: (head_dim/2). head_dim even and <= 1024.
void pz_cpu_rope(float *x, int ld, const int32_t *pos, int M, int n_heads, int head_dim,
                 const float *inv_freq, int n_threads);

// The same in two halves, so a caller can compute the angles' cos/sin once
// for the rows of a forward pass and rotate every layer's heads with them
// (the result is bit for bit pz_cpu_rope's). cs: (M, head_dim) floats, row m
// holding cos then sin of pos[m] * inv_freq[i], i < head_dim/2.
void pz_cpu_rope_table(float *cs, const int32_t *pos, int M, int head_dim, const float *inv_freq);
void pz_cpu_rope_apply(float *x, int ld, const float *cs, int M, int n_heads, int head_dim, int n_threads);

#endif
