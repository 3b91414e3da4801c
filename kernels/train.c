// train.c — the backend-independent parts of train.h: the optimizer's
// defaults and the learning-rate schedule (host arithmetic).
#include "train.h"

#include <math.h>

pz_adamw_params pz_adamw_default_params(void) {
    pz_adamw_params p = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                         .clip_norm = 1.0f};
    return p;
}

float pz_lr_schedule(long s, long warmup, long total_steps, float lr_max, float lr_min) {
    if (s < 0) s = 0;
    if (warmup > 0 && s < warmup) return (float)((double)lr_max * (s + 1) / warmup);
    double span = (double)(total_steps - warmup);
    double p = span > 0 ? (s - warmup) / span : 1.0;
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    return (float)(lr_min + (lr_max - (double)lr_min) * 0.5 * (1 + cos(M_PI * p)));
}
