// backend_cuda.h — what the CUDA backend offers beyond backend.h, for the
// few callers that know they hold a CUDA backend (the GPU checks in
// tests/gpu, a future CUDA-graph decode loop). Everything else goes through
// pz_backend_create(PZ_BACKEND_CUDA, ...) and the interface. Only in builds
// with PZ_HAVE_CUDA.
#ifndef PZ_BACKEND_CUDA_H
#define PZ_BACKEND_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

// What pz_backend_create calls. NULL with "no CUDA device ..." in err when
// the machine has none (or no driver).
pz_backend *pz_backend_cuda_create(int n_threads, char *err);

// Number of CUDA devices; 0 with err filled ("no CUDA device ...") when none.
int pz_cuda_device_count(char *err);

// out[m] (backend memory, M int32) = argmax of logits row m (ld floats
// apart, n entries); the lowest index wins ties, a row with NaN gives its
// first NaN's index. Enqueued.
int pz_cuda_argmax(pz_backend *b, int32_t *out, const float *logits, int ld, int M, int n, char *err);

// The backend's cudaStream_t (as void *) and device index; NULL / -1 for
// another kind of backend.
void *pz_cuda_stream(pz_backend *b);
int pz_cuda_device(pz_backend *b);

// The device's name ("NVIDIA H200") into buf; "?" for another kind of backend.
void pz_cuda_device_name(pz_backend *b, char *buf, size_t cap);

// ---- CUDA graphs ---------------------------------------------------------------------
// A graph replays one fixed sequence of op calls (a decode step of one
// batch size) as a single launch. pz_cuda_graph_begin arms g for the calls
// up to the next synchronize: g's first pass runs eagerly (warm-up), its
// second is captured, later ones replay it — the calls must then be the
// same ops on the same device buffers with the same sizes (host data may
// change: host-to-device copies, shorter or equal to the captured ones, and
// attention descriptors are refreshed; device-to-host copies reach the
// buffers of this pass at synchronize). A pass that differs fails at
// synchronize and breaks g (free it, go on eagerly or with a new one).
// stage_bytes: pinned staging for the pass's host data (0: 1 MiB). A pass
// abandoned before its synchronize (an op returned -1) stays armed until
// synchronize or pz_cuda_graph_free (which also ends a capture in flight).
typedef struct pz_cuda_graph pz_cuda_graph;
pz_cuda_graph *pz_cuda_graph_create(pz_backend *b, size_t stage_bytes, char *err);
void pz_cuda_graph_free(pz_backend *b, pz_cuda_graph *g);
int pz_cuda_graph_begin(pz_backend *b, pz_cuda_graph *g, char *err);

// 1 (the default): the first product of each shape times the heuristic's
// candidates; 0: take its first choice untimed.
void pz_cuda_set_trials(pz_backend *b, int on);

#endif
