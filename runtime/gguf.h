// gguf.h — GGUF v2/v3 reader. The file is memory-mapped read-only and treated
// as hostile: every count, length, offset and size is bounds-checked, and a
// bad file yields one line in err and a NULL handle, never a crash.
#ifndef PZ_GGUF_H
#define PZ_GGUF_H

#include <stddef.h>
#include <stdint.h>
#include "tensor.h"

typedef enum {
    PZ_GGUF_U8 = 0, PZ_GGUF_I8 = 1, PZ_GGUF_U16 = 2, PZ_GGUF_I16 = 3,
    PZ_GGUF_U32 = 4, PZ_GGUF_I32 = 5, PZ_GGUF_F32 = 6, PZ_GGUF_BOOL = 7,
    PZ_GGUF_STRING = 8, PZ_GGUF_ARRAY = 9, PZ_GGUF_U64 = 10, PZ_GGUF_I64 = 11,
    PZ_GGUF_F64 = 12,
} pz_gguf_type;

typedef struct {
    const char *data;  // points into the mapping; NOT NUL-terminated
    uint64_t len;
} pz_gguf_str;

typedef struct {
    char name[64];      // NUL-terminated
    pz_dtype type;
    int n_dims;
    uint64_t ne[4];     // innermost first (ggml order): ne[0] is the row length
    uint64_t n_elems;
    size_t nbytes;
    const void *data;   // points into the mapping; valid while the handle lives
} pz_gguf_tensor;

typedef struct pz_gguf pz_gguf;

// Opens and validates path. Returns NULL and fills err (PZ_ERRLEN) on failure;
// the message names the file and the problem.
pz_gguf *pz_gguf_open(const char *path, char *err);
// Same checks over a caller-owned buffer (used by the fuzzer); buf must outlive
// the handle.
pz_gguf *pz_gguf_open_buffer(const void *buf, size_t len, char *err);
void pz_gguf_close(pz_gguf *g);

uint32_t pz_gguf_version(const pz_gguf *g);
uint32_t pz_gguf_alignment(const pz_gguf *g);

// Metadata. Index lookups return -1 when absent.
int64_t pz_gguf_find_key(const pz_gguf *g, const char *key);
int64_t pz_gguf_n_kv(const pz_gguf *g);
pz_gguf_str pz_gguf_key_name(const pz_gguf *g, int64_t i);
pz_gguf_type pz_gguf_kv_type(const pz_gguf *g, int64_t i);

// Typed getters by key: return 0 on success, -1 when absent or of an
// incompatible type. Integer getters accept any integer width that fits.
int pz_gguf_get_i64(const pz_gguf *g, const char *key, int64_t *out);
int pz_gguf_get_f32(const pz_gguf *g, const char *key, float *out); // F32 or F64
int pz_gguf_get_bool(const pz_gguf *g, const char *key, int *out);
int pz_gguf_get_str(const pz_gguf *g, const char *key, pz_gguf_str *out);

// Arrays: element type and count; element access by index.
int pz_gguf_get_arr(const pz_gguf *g, const char *key, pz_gguf_type *elem_type, uint64_t *n);
int pz_gguf_arr_str(const pz_gguf *g, const char *key, uint64_t i, pz_gguf_str *out);
int pz_gguf_arr_i64(const pz_gguf *g, const char *key, uint64_t i, int64_t *out);
int pz_gguf_arr_f32(const pz_gguf *g, const char *key, uint64_t i, float *out);

// Tensors.
int64_t pz_gguf_n_tensors(const pz_gguf *g);
const pz_gguf_tensor *pz_gguf_tensor_at(const pz_gguf *g, int64_t i);
const pz_gguf_tensor *pz_gguf_find_tensor(const pz_gguf *g, const char *name); // NULL if absent

// How pz_model_save_gguf writes the FFN blocks llama.cpp's `deci` graph has
// no tensors for, so that llama.cpp computes the same function and
// pz_model_load reads the block back as what it was:
// - linear FFN (x += W n(x)): a SwiGLU of width hidden whose gate weight is
//   zero with bias PZ_GGUF_LINEAR_GATE on every channel (silu of it is exactly
//   itself in fp32), up = I / PZ_GGUF_LINEAR_GATE, down = W;
// - noop FFN after a layer with attention (the deci graph skips the whole
//   layer when its FFN width is 0): a zero SwiGLU of width PZ_GGUF_NOOP_FF;
// - the per-layer kinds in the string array PZ_GGUF_FFN_KIND_KEY
//   ("swiglu", "linear", "noop"), which the loader checks against the tensors.
#define PZ_GGUF_FFN_KIND_KEY "puzzle.ffn_kind"
#define PZ_GGUF_LINEAR_GATE 32.0f
#define PZ_GGUF_NOOP_FF 32

#endif
