// safetensors.c — reader and writer for Hugging Face safetensors files.
//
// Reader: each file is mapped read-only; its JSON header is checked the way
// the reference implementation (huggingface/safetensors, tensor.rs) does it:
// header at most 100,000,000 bytes, valid UTF-8 starting with '{', known
// dtypes, shapes whose byte size matches data_offsets, no duplicate names,
// and offsets that tile the data section exactly (no holes, no overlaps, no
// trailing bytes). A directory is read through model.safetensors.index.json,
// whose weight_map must agree exactly with what the shards contain.
// The writer is in safetensors_write.c.
#include "safetensors.h"
#include "common.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000ull
#define ST_MAX_DIMS 8
#define ST_MAX_EXACT 9007199254740992.0  // 2^53: JSON numbers beyond this are not exact in cJSON

static const struct {
    const char *name;
    int size;
} st_types[] = {
    [PZ_ST_F32] = {"F32", 4},   [PZ_ST_F16] = {"F16", 2},   [PZ_ST_BF16] = {"BF16", 2},
    [PZ_ST_F64] = {"F64", 8},   [PZ_ST_I8] = {"I8", 1},     [PZ_ST_U8] = {"U8", 1},
    [PZ_ST_I16] = {"I16", 2},   [PZ_ST_U16] = {"U16", 2},   [PZ_ST_I32] = {"I32", 4},
    [PZ_ST_U32] = {"U32", 4},   [PZ_ST_I64] = {"I64", 8},   [PZ_ST_U64] = {"U64", 8},
    [PZ_ST_BOOL] = {"BOOL", 1}, [PZ_ST_F8_E4M3] = {"F8_E4M3", 1}, [PZ_ST_F8_E5M2] = {"F8_E5M2", 1},
};
#define ST_NTYPES ((int)(sizeof st_types / sizeof st_types[0]))

const char *pz_st_dtype_name(pz_st_dtype t) {
    return (t >= 0 && (int)t < ST_NTYPES) ? st_types[t].name : "?";
}

int pz_st_dtype_size(pz_st_dtype t) { return (t >= 0 && (int)t < ST_NTYPES) ? st_types[t].size : 0; }

static pz_st_dtype dtype_from_name(const char *s) {
    for (int i = 0; i < ST_NTYPES; i++)
        if (strcmp(s, st_types[i].name) == 0) return (pz_st_dtype)i;
    return PZ_ST_INVALID;
}

// ---- reader ---------------------------------------------------------------

typedef struct {
    const uint8_t *base;
    size_t size;
    int mapped;
    char *name;  // file name within the directory, for the weight_map check
} st_file;

struct pz_st {
    st_file *files;
    int n_files;
    pz_st_tensor *t;
    int *t_file;  // which file each tensor came from
    int64_t n, cap;
    char **meta;  // key, value, key, value, ... (first file)
    int n_meta;
    uint32_t *hash;  // index + 1; 0 = empty
    size_t hash_cap;
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

// Finds name; when insert_idx >= 0 and absent, records it. Returns the index
// found or -1.
static int64_t hash_find(pz_st *st, const char *name, int64_t insert_idx) {
    if (!st->hash) return -1;
    size_t h = (size_t)hash_str(name) & (st->hash_cap - 1);
    for (;;) {
        uint32_t v = st->hash[h];
        if (v == 0) {
            if (insert_idx >= 0) st->hash[h] = (uint32_t)insert_idx + 1;
            return -1;
        }
        if (strcmp(st->t[v - 1].name, name) == 0) return v - 1;
        h = (h + 1) & (st->hash_cap - 1);
    }
}

static int hash_grow(pz_st *st, int64_t need) {
    if ((size_t)need * 2 <= st->hash_cap) return 0;
    size_t cap = st->hash_cap ? st->hash_cap : 64;
    while (cap < (size_t)need * 2) cap <<= 1;
    uint32_t *nh = calloc(cap, sizeof *nh);
    if (!nh) return -1;
    free(st->hash);
    st->hash = nh;
    st->hash_cap = cap;
    for (int64_t i = 0; i < st->n; i++) hash_find(st, st->t[i].name, i);
    return 0;
}

static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        int len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i < (size_t)len) return 0;
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += (size_t)len;
    }
    return 1;
}

// A non-negative integer that cJSON holds exactly.
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!(v >= 0) || v > ST_MAX_EXACT || v != (double)(uint64_t)v) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int add_tensor(pz_st *st, int file, const char *what, const cJSON *e, uint64_t *off, char *err) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return pz_err(err, "%s: tensor '%s': entry is not a JSON object", what, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
        return pz_err(err, "%s: tensor '%s': needs string \"dtype\", array \"shape\" and array \"data_offsets\"",
                      what, name);
    pz_st_dtype dt = dtype_from_name(jd->valuestring);
    if (dt == PZ_ST_INVALID)
        return pz_err(err, "%s: tensor '%s': unsupported dtype \"%.32s\"", what, name, jd->valuestring);
    int nd = cJSON_GetArraySize(js);
    if (nd > ST_MAX_DIMS) return pz_err(err, "%s: tensor '%s': %d dimensions (max %d)", what, name, nd, ST_MAX_DIMS);
    if (st->n == st->cap) {
        int64_t cap = st->cap ? st->cap * 2 : 64;
        pz_st_tensor *nt = realloc(st->t, (size_t)cap * sizeof *nt);
        if (!nt) return pz_err(err, "%s: out of memory", what);
        st->t = nt;
        int *nf = realloc(st->t_file, (size_t)cap * sizeof *nf);
        if (!nf) return pz_err(err, "%s: out of memory", what);
        st->t_file = nf;
        st->cap = cap;
    }
    pz_st_tensor *t = &st->t[st->n];
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->n_dims = nd;
    uint64_t n = 1;
    const cJSON *d;
    int k = 0;
    cJSON_ArrayForEach(d, js) {
        uint64_t v;
        if (json_uint(d, &v) != 0)
            return pz_err(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", what, name, k);
        if (v > (uint64_t)INT64_MAX || (v && n > UINT64_MAX / v))
            return pz_err(err, "%s: tensor '%s': element count overflows", what, name);
        n *= v;
        t->shape[k++] = (int64_t)v;
    }
    uint64_t b, en;
    if (cJSON_GetArraySize(jo) != 2 || json_uint(cJSON_GetArrayItem(jo, 0), &b) != 0 ||
        json_uint(cJSON_GetArrayItem(jo, 1), &en) != 0 || b > en)
        return pz_err(err, "%s: tensor '%s': data_offsets must be [begin, end] with begin <= end", what, name);
    uint64_t es = (uint64_t)pz_st_dtype_size(dt);
    if (n > UINT64_MAX / es || n * es != en - b)
        return pz_err(err, "%s: tensor '%s': shape and dtype %s give %s bytes but data_offsets span %llu", what,
                      name, st_types[dt].name, n > UINT64_MAX / es ? "too many" : "a different number of",
                      (unsigned long long)(en - b));
    t->n_elems = n;
    t->nbytes = (size_t)(en - b);
    t->name = strdup(name);
    if (!t->name) return pz_err(err, "%s: out of memory", what);
    off[2 * (st->n)] = b;
    off[2 * (st->n) + 1] = en;
    st->t_file[st->n] = file;
    if (hash_grow(st, st->n + 1) != 0) {
        free((char *)t->name);
        return pz_err(err, "%s: out of memory", what);
    }
    if (hash_find(st, t->name, st->n) >= 0) {
        pz_err(err, "%s: duplicate tensor name '%s'", what, name);
        free((char *)t->name);
        return -1;
    }
    st->n++;
    return 0;
}

static int cmp_range(const void *a, const void *b) {
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

static int parse_meta(pz_st *st, const char *what, const cJSON *m, int keep, char *err) {
    if (!cJSON_IsObject(m)) return pz_err(err, "%s: __metadata__ is not an object", what);
    int n = cJSON_GetArraySize(m), i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, m) {
        if (!cJSON_IsString(e)) return pz_err(err, "%s: __metadata__ value for '%s' is not a string", what, e->string);
    }
    if (!keep) return 0;
    st->meta = calloc((size_t)2 * (size_t)n + 1, sizeof *st->meta);
    if (!st->meta) return pz_err(err, "%s: out of memory", what);
    cJSON_ArrayForEach(e, m) {
        st->meta[2 * i] = strdup(e->string);
        st->meta[2 * i + 1] = strdup(e->valuestring);
        st->n_meta = ++i;
        if (!st->meta[2 * i - 2] || !st->meta[2 * i - 1]) return pz_err(err, "%s: out of memory", what);
    }
    return 0;
}

// Parses one file's header and appends its tensors.
static int parse_file(pz_st *st, int file, const char *what, char *err) {
    const uint8_t *buf = st->files[file].base;
    size_t len = st->files[file].size;
    uint64_t hn;
    if (len < 8) return pz_err(err, "%s: file is truncated: %zu bytes, no header length", what, len);
    memcpy(&hn, buf, 8);
    if (hn > ST_MAX_HEADER)
        return pz_err(err, "%s: header length %llu exceeds the 100,000,000-byte limit", what, (unsigned long long)hn);
    if (hn > len - 8)
        return pz_err(err, "%s: file is truncated: header of %llu bytes, only %zu left", what,
                      (unsigned long long)hn, len - 8);
    const char *h = (const char *)buf + 8;
    if (hn < 2 || h[0] != '{') return pz_err(err, "%s: header does not start with '{'", what);
    if (!utf8_valid((const uint8_t *)h, (size_t)hn)) return pz_err(err, "%s: header is not valid UTF-8", what);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hn, &end, 0);
    if (!root) {
        size_t at = end && end >= h && end <= h + hn ? (size_t)(end - h) : 0;
        return pz_err(err, "%s: header is not valid JSON (near byte %zu of %llu)", what, at, (unsigned long long)hn);
    }
    for (const char *p = end; p < h + hn; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(root);
            return pz_err(err, "%s: unexpected bytes after the JSON header (at byte %zu)", what, (size_t)(p - h));
        }
    }
    int rc = -1;
    int64_t first = st->n;
    int n_entries = cJSON_GetArraySize(root);
    uint64_t *off = NULL, *ranges = NULL;
    const uint8_t *data = buf + 8 + hn;
    uint64_t data_len = len - 8 - hn;
    if (!cJSON_IsObject(root)) {
        pz_err(err, "%s: header is not a JSON object", what);
        goto out;
    }
    // off is indexed by global tensor index, so size it for all tensors so far.
    off = calloc(2 * ((size_t)st->n + (size_t)n_entries + 1), sizeof *off);
    if (!off) {
        pz_err(err, "%s: out of memory", what);
        goto out;
    }
    const cJSON *e;
    int seen_meta = 0;
    cJSON_ArrayForEach(e, root) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (seen_meta++) {
                pz_err(err, "%s: duplicate __metadata__", what);
                goto out;
            }
            if (parse_meta(st, what, e, file == 0, err)) goto out;
            continue;
        }
        if (add_tensor(st, file, what, e, off, err)) goto out;
    }
    // The tensors must tile [0, data_len) exactly.
    int64_t nt = st->n - first;
    ranges = malloc(2 * ((size_t)nt + 1) * sizeof *ranges);
    if (!ranges) {
        pz_err(err, "%s: out of memory", what);
        goto out;
    }
    memcpy(ranges, off + 2 * first, 2 * (size_t)nt * sizeof *ranges);
    qsort(ranges, (size_t)nt, 2 * sizeof *ranges, cmp_range);
    uint64_t pos = 0;
    for (int64_t i = 0; i < nt; i++) {
        if (ranges[2 * i] != pos) {
            pz_err(err, "%s: tensor data %s at byte %llu of the data section (offsets must tile it with no "
                   "holes or overlaps)", what, ranges[2 * i] > pos ? "has a hole" : "overlaps",
                   (unsigned long long)(ranges[2 * i] > pos ? pos : ranges[2 * i]));
            goto out;
        }
        pos = ranges[2 * i + 1];
    }
    if (pos != data_len) {
        pz_err(err, "%s: %s: tensors cover %llu bytes of a %llu-byte data section", what,
               pos > data_len ? "file is truncated" : "trailing bytes", (unsigned long long)pos,
               (unsigned long long)data_len);
        goto out;
    }
    // Only now are the offsets known to lie inside the file.
    for (int64_t i = first; i < st->n; i++) st->t[i].data = data + off[2 * i];
    rc = 0;
out:
    if (rc != 0) {  // drop this file's tensors so close() frees each name once
        for (int64_t i = first; i < st->n; i++) free((char *)st->t[i].name);
        st->n = first;
    }
    free(off);
    free(ranges);
    cJSON_Delete(root);
    return rc;
}

static int map_file(st_file *f, const char *path, char *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pz_err(err, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return pz_err(err, "%s: not a regular file", path);
    }
    f->size = (size_t)sb.st_size;
    if (f->size == 0) {
        close(fd);
        return pz_err(err, "%s: file is empty", path);
    }
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return pz_err(err, "%s: mmap: %s", path, strerror(errno));
    f->base = m;
    f->mapped = 1;
    return 0;
}

void pz_st_close(pz_st *st) {
    if (!st) return;
    for (int64_t i = 0; i < st->n; i++) free((char *)st->t[i].name);
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].mapped) munmap((void *)st->files[i].base, st->files[i].size);
        free(st->files[i].name);
    }
    for (int i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->meta);
    free(st->files);
    free(st->t);
    free(st->t_file);
    free(st->hash);
    free(st);
}

pz_st *pz_st_open_buffer(const void *buf, size_t len, char *err) {
    pz_st *st = calloc(1, sizeof *st);
    if (st) st->files = calloc(1, sizeof *st->files);
    if (!st || !st->files) {
        pz_st_close(st);
        pz_err(err, "<buffer>: out of memory");
        return NULL;
    }
    st->n_files = 1;
    st->files[0].base = buf;
    st->files[0].size = len;
    if (parse_file(st, 0, "<buffer>", err) != 0) {
        pz_st_close(st);
        return NULL;
    }
    return st;
}

static int open_one(pz_st *st, const char *path, const char *name, char *err) {
    st_file *nf = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *nf);
    if (!nf) return pz_err(err, "%s: out of memory", path);
    st->files = nf;
    st_file *f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    f->name = strdup(name);
    st->n_files++;
    if (!f->name) return pz_err(err, "%s: out of memory", path);
    if (map_file(f, path, err) != 0) return -1;
    return parse_file(st, st->n_files - 1, path, err);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// A shard named in an index must be a plain file name in the same directory.
static int plain_name(const char *s) {
    return s[0] && strlen(s) < 256 && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int open_index(pz_st *st, const char *dir, const char *ipath, char *err) {
    size_t len;
    char *text = pz_read_file(ipath, 64u << 20, &len, err);
    if (!text) return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    int rc = -1, n_names = 0;
    char **names = NULL;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        pz_err(err, "%s: not a JSON object with a \"weight_map\" object", ipath);
        goto out;
    }
    int n = cJSON_GetArraySize(wm);
    names = calloc((size_t)n + 1, sizeof *names);
    if (!names) {
        pz_err(err, "%s: out of memory", ipath);
        goto out;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !plain_name(e->valuestring)) {
            pz_err(err, "%s: weight_map entry '%s' must name a file in the same directory", ipath, e->string);
            goto out;
        }
        names[n_names++] = e->valuestring;
    }
    qsort(names, (size_t)n_names, sizeof *names, cmp_str);
    for (int i = 0; i < n_names; i++) {
        if (i > 0 && strcmp(names[i], names[i - 1]) == 0) continue;
        char path[4096];
        pz_path_join(path, sizeof path, dir, names[i]);
        if (open_one(st, path, names[i], err) != 0) goto out;
    }
    // weight_map and the shards must agree both ways; duplicates across shards
    // were already refused while loading.
    int listed = 0;
    cJSON_ArrayForEach(e, wm) {
        int64_t ti = hash_find(st, e->string, -1);
        if (ti < 0) {
            pz_err(err, "%s: tensor '%s' is listed in %s but missing from it", ipath, e->string, e->valuestring);
            goto out;
        }
        if (strcmp(st->files[st->t_file[ti]].name, e->valuestring) != 0) {
            pz_err(err, "%s: tensor '%s' is listed in %s but found in %s", ipath, e->string, e->valuestring,
                   st->files[st->t_file[ti]].name);
            goto out;
        }
        listed++;
    }
    if (listed != st->n) {
        // Some shard holds a tensor the index does not mention: name one.
        for (int64_t i = 0; i < st->n; i++) {
            if (!cJSON_GetObjectItemCaseSensitive(wm, st->t[i].name)) {
                pz_err(err, "%s: tensor '%s' in %s is not in the weight_map", ipath, st->t[i].name,
                       st->files[st->t_file[i]].name);
                goto out;
            }
        }
        pz_err(err, "%s: weight_map lists a tensor twice", ipath);
        goto out;
    }
    rc = 0;
out:
    free(names);
    cJSON_Delete(root);
    return rc;
}

pz_st *pz_st_open(const char *path, char *err) {
    pz_st *st = calloc(1, sizeof *st);
    if (!st) {
        pz_err(err, "%s: out of memory", path);
        return NULL;
    }
    int rc;
    if (pz_is_dir(path)) {
        char p[4096];
        if (pz_file_exists(pz_path_join(p, sizeof p, path, "model.safetensors.index.json")))
            rc = open_index(st, path, p, err);
        else if (pz_file_exists(pz_path_join(p, sizeof p, path, "model.safetensors")))
            rc = open_one(st, p, "model.safetensors", err);
        else
            rc = pz_err(err, "%s: no model.safetensors.index.json or model.safetensors in this directory", path);
    } else {
        const char *slash = strrchr(path, '/');
        rc = open_one(st, path, slash ? slash + 1 : path, err);
    }
    if (rc != 0) {
        pz_st_close(st);
        return NULL;
    }
    return st;
}

int64_t pz_st_n_tensors(const pz_st *st) { return st->n; }

const pz_st_tensor *pz_st_tensor_at(const pz_st *st, int64_t i) {
    return (i >= 0 && i < st->n) ? &st->t[i] : NULL;
}

const pz_st_tensor *pz_st_find(const pz_st *st, const char *name) {
    int64_t i = hash_find((pz_st *)st, name, -1);
    return i < 0 ? NULL : &st->t[i];
}

const char *pz_st_metadata(const pz_st *st, const char *key) {
    for (int i = 0; i < st->n_meta; i++)
        if (strcmp(st->meta[2 * i], key) == 0) return st->meta[2 * i + 1];
    return NULL;
}
