// backend.c — what every backend shares: pz_backend_create (the switch over
// the kinds built into this binary), the kind names, dense weight
// descriptors and the RoPE frequency table (host arithmetic).
#include "backend.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

pz_backend *pz_backend_cpu_create(int n_threads, char *err);  // kernels/cpu/backend_cpu.c
#ifdef PZ_HAVE_CUDA
pz_backend *pz_backend_cuda_create(int n_threads, char *err);  // kernels/cuda/backend_cuda.c
#endif

pz_backend *pz_backend_create(pz_backend_kind kind, int n_threads, char *err) {
    switch (kind) {
    case PZ_BACKEND_CPU: return pz_backend_cpu_create(n_threads, err);
#ifdef PZ_HAVE_CUDA
    case PZ_BACKEND_CUDA: return pz_backend_cuda_create(n_threads, err);
#endif
    default:
        if (err)
            snprintf(err, PZ_ERRLEN, "the %s backend is not built into this binary",
                     pz_backend_kind_name(kind));
        return NULL;
    }
}

void pz_backend_free(pz_backend *b) {
    if (b && b->destroy) b->destroy(b);
}

int pz_backend_kind_parse(const char *s, pz_backend_kind *kind) {
    if (s && strcmp(s, "cpu") == 0) *kind = PZ_BACKEND_CPU;
    else if (s && strcmp(s, "cuda") == 0) *kind = PZ_BACKEND_CUDA;
    else return -1;
    return 0;
}

const char *pz_backend_kind_name(pz_backend_kind kind) {
    switch (kind) {
    case PZ_BACKEND_CPU: return "cpu";
    case PZ_BACKEND_CUDA: return "cuda";
    default: return "unknown";
    }
}

pz_weight pz_weight_dense(const void *data, pz_dt type, int rows, int cols) {
    pz_weight w = {.data = data, .type = type, .rows = rows, .cols = cols, .ld = cols, .scale = 1.0f};
    return w;
}

void pz_rope_inv_freq(const pz_rope_params *p, float *inv_freq) {
    int half = p->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = pow((double)p->theta, -2.0 * i / p->head_dim);
        if (p->llama3 && p->factor > 0 && p->orig_ctx > 0) {
            // Llama 3.1 rule (transformers _compute_llama3_parameters).
            double low_wl = p->orig_ctx / (double)p->low_freq_factor;
            double high_wl = p->orig_ctx / (double)p->high_freq_factor;
            double wl = 2 * M_PI / f;
            if (wl > low_wl) {
                f = f / p->factor;
            } else if (wl >= high_wl) {
                double smooth = (p->orig_ctx / wl - p->low_freq_factor) /
                                (p->high_freq_factor - p->low_freq_factor);
                f = (1 - smooth) * f / p->factor + smooth * f;
            }
        }
        inv_freq[i] = (float)f;
    }
}
