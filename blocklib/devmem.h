// devmem.h — small helpers for the training stages (BLD, scoring,
// distillation) that keep their tensors in backend memory (kernels/backend.h):
// allocation with an error message, zeroing (the interface has no memset
// op: a D2D copy from a zeroed buffer), and block weights mirrored into one
// backend allocation with every pointer rebased, so the training ops get
// backend pointers and the host only touches what it really reads (losses,
// files). Nothing here synchronizes unless it says so.
#ifndef PZ_DEVMEM_H
#define PZ_DEVMEM_H

#include <stddef.h>

#include "backend.h"
#include "weights.h"

// b->alloc with err filled on failure ("<what>: out of backend memory (N bytes)").
void *pz_dev_alloc(pz_backend *b, size_t bytes, const char *what, char *err);

// 1 when the backend's memory is the host's (its upload_weights hands the
// host pointer back: the CPU backend), so a host mirror of a backend buffer
// may simply alias it; 0 otherwise (a device, or a test backend that
// guards its memory). Each call probes (call it at set-up).
int pz_dev_host_shared(pz_backend *b);

// A zeroed backend buffer that zeroes others by D2D copies.
typedef struct {
    void *z;
    size_t bytes;
} pz_dev_zeros;

// bytes: the chunk (larger buffers are zeroed chunk by chunk).
int pz_dev_zeros_init(pz_dev_zeros *z, pz_backend *b, size_t bytes, char *err);
void pz_dev_zeros_free(pz_dev_zeros *z, pz_backend *b);
// dst[0..bytes) = 0 (backend memory), enqueued.
int pz_dev_zero(const pz_dev_zeros *z, pz_backend *b, void *dst, size_t bytes, char *err);

// dev = host's shape with its arena in backend memory (owned by dev; free
// with pz_block_weights_dev_free) and every pointer rebased into it; the
// values copied from host when copy is 1, else zeroed.
int pz_block_weights_dev(pz_backend *b, const pz_block_weights *host, int copy,
                         pz_block_weights *dev, char *err);
void pz_block_weights_dev_free(pz_backend *b, pz_block_weights *dev);
// host->arena = dev->arena (same shapes); synchronizes, so host is valid on return.
int pz_block_weights_to_host(pz_backend *b, const pz_block_weights *dev, pz_block_weights *host,
                             char *err);
// dev->arena = host->arena (same shapes), enqueued.
int pz_block_weights_to_dev(pz_backend *b, const pz_block_weights *host, pz_block_weights *dev,
                            char *err);

#endif
