// devmem.c — see devmem.h.
#include "devmem.h"
#include "common.h"

#include <stdint.h>
#include <string.h>

void *pz_dev_alloc(pz_backend *b, size_t bytes, const char *what, char *err) {
    void *p = b->alloc(b, bytes ? bytes : 1);
    if (!p) pz_err(err, "%s: out of backend memory (%zu bytes)", what, bytes);
    return p;
}

int pz_dev_host_shared(pz_backend *b) {
    // Probed by the documented contract of upload_weights (backend.h): the
    // CPU backend returns the host arena itself. A backend without it is
    // taken for a device.
    // Callers probe once at set-up (a device backend copies 64 bytes).
    static const float probe[16];
    int shared = 0;
    if (b->upload_weights) {
        void *p = b->upload_weights(b, probe, sizeof probe, NULL);
        shared = p == (const void *)probe;
        if (p && b->free_weights) b->free_weights(b, p);
    }
    return shared;
}

int pz_dev_zeros_init(pz_dev_zeros *z, pz_backend *b, size_t bytes, char *err) {
    z->bytes = bytes ? bytes : 64;
    z->z = pz_dev_alloc(b, z->bytes, "zeros", err);  // alloc returns zeroed memory
    return z->z ? 0 : -1;
}

void pz_dev_zeros_free(pz_dev_zeros *z, pz_backend *b) {
    if (z->z) b->free(b, z->z);
    z->z = NULL, z->bytes = 0;
}

int pz_dev_zero(const pz_dev_zeros *z, pz_backend *b, void *dst, size_t bytes, char *err) {
    for (size_t o = 0; o < bytes; o += z->bytes) {
        size_t n = bytes - o < z->bytes ? bytes - o : z->bytes;
        if (b->copy(b, (char *)dst + o, z->z, n, PZ_COPY_D2D, err)) return -1;
    }
    return 0;
}

static float *rebase(const float *p, const float *from, float *to) {
    return p ? to + (p - from) : NULL;
}

int pz_block_weights_dev(pz_backend *b, const pz_block_weights *host, int copy,
                         pz_block_weights *dev, char *err) {
    *dev = *host;
    const size_t bytes = host->n_floats * sizeof(float);
    float *a = pz_dev_alloc(b, bytes, "block weights", err);
    if (!a) {
        memset(dev, 0, sizeof *dev);
        return -1;
    }
    const float *h = host->arena;
    dev->arena = a;
    dev->attn_norm = rebase(host->attn_norm, h, a);
    dev->wq = rebase(host->wq, h, a), dev->wk = rebase(host->wk, h, a);
    dev->wv = rebase(host->wv, h, a), dev->wo = rebase(host->wo, h, a);
    dev->attn_lin = rebase(host->attn_lin, h, a);
    dev->ffn_norm = rebase(host->ffn_norm, h, a);
    dev->gate = rebase(host->gate, h, a), dev->up = rebase(host->up, h, a);
    dev->down = rebase(host->down, h, a), dev->ffn_lin = rebase(host->ffn_lin, h, a);
    if (copy && bytes && b->copy(b, a, h, bytes, PZ_COPY_H2D, err)) {
        pz_block_weights_dev_free(b, dev);
        return -1;
    }
    return 0;
}

void pz_block_weights_dev_free(pz_backend *b, pz_block_weights *dev) {
    if (dev->arena) b->free(b, dev->arena);
    memset(dev, 0, sizeof *dev);
}

int pz_block_weights_to_host(pz_backend *b, const pz_block_weights *dev, pz_block_weights *host,
                             char *err) {
    if (dev->n_floats != host->n_floats) return pz_err(err, "block weights: shapes differ");
    if (b->copy(b, host->arena, dev->arena, host->n_floats * sizeof(float), PZ_COPY_D2H, err)) return -1;
    return b->synchronize(b, err);
}

int pz_block_weights_to_dev(pz_backend *b, const pz_block_weights *host, pz_block_weights *dev,
                            char *err) {
    if (dev->n_floats != host->n_floats) return pz_err(err, "block weights: shapes differ");
    return b->copy(b, dev->arena, host->arena, host->n_floats * sizeof(float), PZ_COPY_H2D, err);
}
