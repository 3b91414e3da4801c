// safetensors.h — reader (single file, or a sharded directory through
// model.safetensors.index.json) and writer. Files are memory-mapped and
// treated as hostile: header size, JSON, dtypes, shapes, offsets, overlaps and
// holes are all checked.
#ifndef PZ_SAFETENSORS_H
#define PZ_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PZ_ST_F32, PZ_ST_F16, PZ_ST_BF16, PZ_ST_F64,
    PZ_ST_I8, PZ_ST_U8, PZ_ST_I16, PZ_ST_U16, PZ_ST_I32, PZ_ST_U32,
    PZ_ST_I64, PZ_ST_U64, PZ_ST_BOOL, PZ_ST_F8_E4M3, PZ_ST_F8_E5M2,
    PZ_ST_INVALID = -1,
} pz_st_dtype;

const char *pz_st_dtype_name(pz_st_dtype t);  // "F32", "BF16", ...
int pz_st_dtype_size(pz_st_dtype t);          // bytes per element

typedef struct {
    const char *name;   // NUL-terminated, owned by the handle
    pz_st_dtype dtype;
    int n_dims;
    int64_t shape[8];   // outermost first (PyTorch order)
    uint64_t n_elems;
    size_t nbytes;
    const void *data;   // points into a mapping; valid while the handle lives
} pz_st_tensor;

typedef struct pz_st pz_st;

// Opens a .safetensors file, or a directory holding either
// model.safetensors.index.json (+ its shards) or a single model.safetensors.
pz_st *pz_st_open(const char *path, char *err);
// Parses one in-memory file (used by the fuzzer); buf must outlive the handle.
pz_st *pz_st_open_buffer(const void *buf, size_t len, char *err);
void pz_st_close(pz_st *st);

int64_t pz_st_n_tensors(const pz_st *st);
const pz_st_tensor *pz_st_tensor_at(const pz_st *st, int64_t i);
const pz_st_tensor *pz_st_find(const pz_st *st, const char *name);  // NULL if absent
// __metadata__ value for key (of the first file), or NULL.
const char *pz_st_metadata(const pz_st *st, const char *key);

// Writer: collect tensors (the data pointers must stay valid until
// pz_st_writer_finish), then write one file, or shards of at most
// max_shard_bytes plus model.safetensors.index.json when writing into a
// directory. Files are written to a temporary name, fsync'ed and renamed.
typedef struct pz_st_writer pz_st_writer;
pz_st_writer *pz_st_writer_new(void);
int pz_st_writer_add(pz_st_writer *w, const char *name, pz_st_dtype dtype,
                     int n_dims, const int64_t *shape, const void *data, char *err);
int pz_st_writer_set_metadata(pz_st_writer *w, const char *key, const char *value);
// Writes exactly path (a single file).
int pz_st_writer_write_file(pz_st_writer *w, const char *path, char *err);
// Writes dir/model.safetensors, or when the total exceeds max_shard_bytes,
// dir/model-0000i-of-0000n.safetensors + dir/model.safetensors.index.json.
int pz_st_writer_write_dir(pz_st_writer *w, const char *dir, size_t max_shard_bytes, char *err);
void pz_st_writer_free(pz_st_writer *w);

#endif
