// safetensors_write.c — the safetensors writer (see safetensors.h).
//
// Tensors are laid out by element size, largest first, after a header padded
// with spaces to a multiple of 8, so every tensor in a file we write is
// aligned to its element size once mapped. Each file goes to a temporary name
// in the same directory, is fsync'ed and renamed, so a crash never leaves a
// half-written file under the real name; in a sharded directory the index is
// written last.
#include "safetensors.h"
#include "common.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000ull
#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    pz_st_dtype dtype;
    int n_dims;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} st_entry;

struct pz_st_writer {
    st_entry *e;
    int n, cap;
    char **meta;  // key, value pairs
    int n_meta;
};

pz_st_writer *pz_st_writer_new(void) { return calloc(1, sizeof(pz_st_writer)); }

void pz_st_writer_free(pz_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->e[i].name);
    for (int i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->e);
    free(w->meta);
    free(w);
}

int pz_st_writer_add(pz_st_writer *w, const char *name, pz_st_dtype dtype, int n_dims, const int64_t *shape,
                     const void *data, char *err) {
    if (!name || !name[0] || strcmp(name, "__metadata__") == 0)
        return pz_err(err, "safetensors writer: invalid tensor name '%s'", name ? name : "(null)");
    if (pz_st_dtype_size(dtype) == 0) return pz_err(err, "safetensors writer: tensor '%s': bad dtype", name);
    if (n_dims < 0 || n_dims > ST_MAX_DIMS)
        return pz_err(err, "safetensors writer: tensor '%s': %d dimensions (max %d)", name, n_dims, ST_MAX_DIMS);
    size_t nb = (size_t)pz_st_dtype_size(dtype);
    for (int i = 0; i < n_dims; i++) {
        if (shape[i] < 0 || pz_mul_size(nb, (size_t)shape[i], &nb) != 0)
            return pz_err(err, "safetensors writer: tensor '%s': bad shape", name);
    }
    if (nb > 0 && !data) return pz_err(err, "safetensors writer: tensor '%s': no data", name);
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->e[i].name, name) == 0) return pz_err(err, "safetensors writer: duplicate tensor '%s'", name);
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        st_entry *ne = realloc(w->e, (size_t)cap * sizeof *ne);
        if (!ne) return pz_err(err, "safetensors writer: out of memory");
        w->e = ne;
        w->cap = cap;
    }
    st_entry *e = &w->e[w->n];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return pz_err(err, "safetensors writer: out of memory");
    e->dtype = dtype;
    e->n_dims = n_dims;
    for (int i = 0; i < n_dims; i++) e->shape[i] = shape[i];
    e->data = data;
    e->nbytes = nb;
    w->n++;
    return 0;
}

int pz_st_writer_set_metadata(pz_st_writer *w, const char *key, const char *value) {
    for (int i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta[2 * i], key) == 0) {
            char *v = strdup(value);
            if (!v) return -1;
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = v;
            return 0;
        }
    }
    char **nm = realloc(w->meta, (size_t)(2 * w->n_meta + 2) * sizeof *nm);
    if (!nm) return -1;
    w->meta = nm;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return -1;
    }
    w->meta[2 * w->n_meta] = k;
    w->meta[2 * w->n_meta + 1] = v;
    w->n_meta++;
    return 0;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t k = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

// Writes parts to path through a temporary file in the same directory,
// fsync'ed and renamed over path, so readers never see a partial file.
static int write_atomic(const char *path, const void *const *parts, const size_t *lens, int n, char *err) {
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path) >= sizeof tmp)
        return pz_err(err, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0) return pz_err(err, "%s: cannot create a temporary file: %s", path, strerror(errno));
    for (int i = 0; i < n; i++) {
        if (write_all(fd, parts[i], lens[i]) != 0) {
            pz_err(err, "%s: write failed: %s", tmp, strerror(errno));
            goto fail;
        }
    }
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) {
        pz_err(err, "%s: fsync failed: %s", tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        pz_err(err, "%s: close failed: %s", tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        pz_err(err, "%s: rename failed: %s", path, strerror(errno));
        goto fail;
    }
    pz_fsync_dir_of(path);
    return 0;
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    return -1;
}

static cJSON *json_u64(uint64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(b);  // exact, never in exponent form
}

// Writes entries idx[0..n) as one file.
static int write_subset(pz_st_writer *w, const int *idx, int n, const char *path, char *err) {
    // Data order: by element size, largest first (stable), for alignment.
    int *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    uint64_t *begin = malloc((size_t)(n ? n : 1) * sizeof *begin);
    const void **parts = malloc((size_t)(n + 2) * sizeof *parts);
    size_t *lens = malloc((size_t)(n + 2) * sizeof *lens);
    cJSON *root = cJSON_CreateObject();
    char *json = NULL, *hdr = NULL;
    int rc = -1, k = 0;
    if (!order || !begin || !parts || !lens || !root) {
        pz_err(err, "%s: out of memory", path);
        goto out;
    }
    for (int sz = 8; sz >= 1; sz /= 2)
        for (int i = 0; i < n; i++)
            if (pz_st_dtype_size(w->e[idx[i]].dtype) == sz) order[k++] = i;
    uint64_t pos = 0;
    for (int i = 0; i < n; i++) {
        begin[order[i]] = pos;
        pos += w->e[idx[order[i]]].nbytes;
    }
    if (w->n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; m && i < w->n_meta; i++)
            if (!cJSON_AddStringToObject(m, w->meta[2 * i], w->meta[2 * i + 1])) m = NULL;
        if (!m) {
            pz_err(err, "%s: out of memory", path);
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        const st_entry *e = &w->e[idx[i]];
        cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        if (!t || !shape || !offs) {
            cJSON_Delete(t);
            cJSON_Delete(shape);
            cJSON_Delete(offs);
            pz_err(err, "%s: out of memory", path);
            goto out;
        }
        cJSON_AddItemToObject(root, e->name, t);
        cJSON_AddStringToObject(t, "dtype", pz_st_dtype_name(e->dtype));
        for (int d = 0; d < e->n_dims; d++) cJSON_AddItemToArray(shape, json_u64((uint64_t)e->shape[d]));
        cJSON_AddItemToObject(t, "shape", shape);
        cJSON_AddItemToArray(offs, json_u64(begin[i]));
        cJSON_AddItemToArray(offs, json_u64(begin[i] + e->nbytes));
        cJSON_AddItemToObject(t, "data_offsets", offs);
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) {
        pz_err(err, "%s: out of memory", path);
        goto out;
    }
    size_t jl = strlen(json), hl = (jl + 7) / 8 * 8;
    if (hl > ST_MAX_HEADER) {
        pz_err(err, "%s: header of %zu bytes exceeds the safetensors limit", path, hl);
        goto out;
    }
    hdr = malloc(8 + hl);
    if (!hdr) {
        pz_err(err, "%s: out of memory", path);
        goto out;
    }
    uint64_t hl64 = hl;
    memcpy(hdr, &hl64, 8);
    memcpy(hdr + 8, json, jl);
    memset(hdr + 8 + jl, ' ', hl - jl);
    parts[0] = hdr;
    lens[0] = 8 + hl;
    for (int i = 0; i < n; i++) {
        parts[1 + i] = w->e[idx[order[i]]].data;
        lens[1 + i] = w->e[idx[order[i]]].nbytes;
    }
    rc = write_atomic(path, parts, lens, n + 1, err);
out:
    free(order);
    free(begin);
    free(parts);
    free(lens);
    free(hdr);
    free(json);
    cJSON_Delete(root);
    return rc;
}

int pz_st_writer_write_file(pz_st_writer *w, const char *path, char *err) {
    int *idx = malloc((size_t)(w->n ? w->n : 1) * sizeof *idx);
    if (!idx) return pz_err(err, "%s: out of memory", path);
    for (int i = 0; i < w->n; i++) idx[i] = i;
    int rc = write_subset(w, idx, w->n, path, err);
    free(idx);
    return rc;
}

int pz_st_writer_write_dir(pz_st_writer *w, const char *dir, size_t max_shard_bytes, char *err) {
    char path[4096];
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return pz_err(err, "%s: mkdir: %s", dir, strerror(errno));
    if (!pz_is_dir(dir)) return pz_err(err, "%s: not a directory", dir);
    size_t total = 0;
    for (int i = 0; i < w->n; i++)
        if (pz_add_size(total, w->e[i].nbytes, &total) != 0) return pz_err(err, "%s: total size overflows", dir);
    if (max_shard_bytes == 0 || total <= max_shard_bytes) {
        // A stale index would shadow the single file: remove it first.
        pz_path_join(path, sizeof path, dir, "model.safetensors.index.json");
        if (unlink(path) != 0 && errno != ENOENT) return pz_err(err, "%s: %s", path, strerror(errno));
        return pz_st_writer_write_file(w, pz_path_join(path, sizeof path, dir, "model.safetensors"), err);
    }
    // Greedy packing in insertion order; an oversized tensor gets its own shard.
    int *shard = malloc((size_t)(w->n ? w->n : 1) * sizeof *shard);
    int *idx = malloc((size_t)(w->n ? w->n : 1) * sizeof *idx);
    cJSON *index = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(index, "metadata");
    cJSON *wm = cJSON_AddObjectToObject(index, "weight_map");
    char *json = NULL;
    int rc = -1, n_shards = 0;
    if (!shard || !idx || !index || !meta || !wm) {
        pz_err(err, "%s: out of memory", dir);
        goto out;
    }
    size_t fill = 0;
    for (int i = 0; i < w->n; i++) {
        if (n_shards == 0 || (fill > 0 && fill + w->e[i].nbytes > max_shard_bytes)) {
            n_shards++;
            fill = 0;
        }
        shard[i] = n_shards - 1;
        fill += w->e[i].nbytes;
    }
    cJSON_AddItemToObject(meta, "total_size", json_u64(total));
    for (int s = 0; s < n_shards; s++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        int k = 0;
        for (int i = 0; i < w->n; i++) {
            if (shard[i] != s) continue;
            idx[k++] = i;
            cJSON_AddStringToObject(wm, w->e[i].name, name);
        }
        if (write_subset(w, idx, k, pz_path_join(path, sizeof path, dir, name), err) != 0) goto out;
    }
    json = cJSON_Print(index);
    if (!json) {
        pz_err(err, "%s: out of memory", dir);
        goto out;
    }
    const void *parts[1] = {json};
    size_t lens[1] = {strlen(json)};
    if (write_atomic(pz_path_join(path, sizeof path, dir, "model.safetensors.index.json"), parts, lens, 1, err))
        goto out;
    pz_path_join(path, sizeof path, dir, "model.safetensors");
    unlink(path);  // a stale single file would confuse other tools
    rc = 0;
out:
    free(shard);
    free(idx);
    free(json);
    cJSON_Delete(index);
    return rc;
}
