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

#endif
