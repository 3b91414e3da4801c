// gguf.c — GGUF v2/v3 reader over a read-only mapping.
//
// The parser is one forward pass through a cursor that refuses to step past
// the end, so every length and count in the file is checked against the bytes
// actually left before anything is allocated from it. The checks follow
// ggml's reference reader (src/gguf.cpp): no nested arrays, no duplicate keys
// or tensor names, n_dims <= 4, ne[0] a multiple of the block size, a power
// of two alignment, and tensor offsets that are exactly the running sum of
// the aligned sizes, all inside the file.
#include "gguf.h"
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u      // "GGUF" read as a little-endian u32
#define GGUF_MAX_STR (1ull << 30)   // as ggml: strings and arrays up to 2^30
#define GGUF_MAX_DIMS 4
#define GGUF_NAME_MAX 63            // GGML_MAX_NAME 64, with the NUL

typedef struct {
    pz_gguf_str key;
    pz_gguf_type type;
    pz_gguf_type elem;      // arrays only
    uint64_t n;             // arrays only: element count
    const uint8_t *val;     // the value (for arrays: the first element)
    uint64_t *str_off;      // string arrays: offset of each element from val
} gguf_kv;

struct pz_gguf {
    const uint8_t *base;
    size_t size;
    int mapped;
    uint32_t version;
    uint32_t alignment;
    int64_t n_kv;
    gguf_kv *kv;
    int64_t n_tensors;
    pz_gguf_tensor *tensors;
    // Open-addressing hash tables of indices (+1; 0 = empty), for duplicate
    // detection at load and O(1) lookup later.
    uint32_t *kv_hash, *t_hash;
    size_t kv_cap, t_cap;
};

typedef struct {
    const uint8_t *p, *end, *base;
    const char *what;
    char *err;
} cursor;

static int cerr(cursor *c, const char *msg, const char *detail) {
    return pz_err(c->err, "%s: at byte %zu: %s%s%s", c->what, (size_t)(c->p - c->base), msg,
                  detail ? ": " : "", detail ? detail : "");
}

static int need(cursor *c, uint64_t n, const char *what) {
    if (n > (uint64_t)(c->end - c->p)) {
        char d[128];
        snprintf(d, sizeof d, "%s needs %llu bytes, only %zu left", what, (unsigned long long)n,
                 (size_t)(c->end - c->p));
        return cerr(c, "file is truncated", d);
    }
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return -1;
    memcpy(v, c->p, 4);
    c->p += 4;
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return -1;
    memcpy(v, c->p, 8);
    c->p += 8;
    return 0;
}

static int rd_str(cursor *c, pz_gguf_str *s, const char *what) {
    uint64_t n;
    if (rd_u64(c, &n, what)) return -1;
    if (n > GGUF_MAX_STR) {
        char d[96];
        snprintf(d, sizeof d, "%s length %llu exceeds 2^30", what, (unsigned long long)n);
        return cerr(c, "string too long", d);
    }
    if (need(c, n, what)) return -1;
    s->data = (const char *)c->p;
    s->len = n;
    c->p += n;
    return 0;
}

static int scalar_size(pz_gguf_type t) {
    switch (t) {
    case PZ_GGUF_U8: case PZ_GGUF_I8: case PZ_GGUF_BOOL: return 1;
    case PZ_GGUF_U16: case PZ_GGUF_I16: return 2;
    case PZ_GGUF_U32: case PZ_GGUF_I32: case PZ_GGUF_F32: return 4;
    case PZ_GGUF_U64: case PZ_GGUF_I64: case PZ_GGUF_F64: return 8;
    default: return 0;  // string, array, unknown
    }
}

// FNV-1a over the bytes of a name.
static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static size_t table_cap(int64_t n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    return cap;
}

static const char *kv_name(const pz_gguf *g, uint32_t i, size_t *len) {
    *len = g->kv[i].key.len;
    return g->kv[i].key.data;
}

static const char *t_name(const pz_gguf *g, uint32_t i, size_t *len) {
    *len = strlen(g->tensors[i].name);
    return g->tensors[i].name;
}

// Looks name up in a table; with insert_idx >= 0 inserts it unless present.
// Returns the index found, or -1.
static int64_t table_find(const pz_gguf *g, uint32_t *tab, size_t cap,
                          const char *(*get)(const pz_gguf *, uint32_t, size_t *),
                          const char *name, size_t len, int64_t insert_idx) {
    if (!tab) return -1;
    size_t h = (size_t)hash_bytes(name, len) & (cap - 1);
    for (;;) {
        uint32_t v = tab[h];
        if (v == 0) {
            if (insert_idx >= 0) tab[h] = (uint32_t)insert_idx + 1;
            return -1;
        }
        size_t l2;
        const char *n2 = get(g, v - 1, &l2);
        if (l2 == len && memcmp(n2, name, len) == 0) return v - 1;
        h = (h + 1) & (cap - 1);
    }
}

static const char *type_name(uint32_t t) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                  "string", "array", "u64", "i64", "f64"};
    return t <= PZ_GGUF_F64 ? names[t] : "?";
}

// ggml type ids we know of but cannot dequantize, for a useful message.
static const char *ggml_type_name(uint32_t t) {
    static const char *names[] = {
        "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
        "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
        "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64",
        "IQ1_M", "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4",
        "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4", "NVFP4", "Q1_0", "Q2_0"};
    return t < sizeof names / sizeof names[0] ? names[t] : NULL;
}

// Copies a name from the file into buf for a message: at most 80 bytes, with
// anything unprintable shown as '?', so the message stays one line.
static const char *show(const char *s, uint64_t len, char *buf, size_t cap) {
    size_t n = len > 80 ? 80 : (size_t)len, j = 0;
    for (size_t i = 0; i < n && j + 4 < cap; i++) buf[j++] = (s[i] >= 32 && s[i] < 127) ? s[i] : '?';
    if (len > n && j + 4 < cap) buf[j++] = '.', buf[j++] = '.', buf[j++] = '.';
    buf[j] = 0;
    return buf;
}

static int parse_kv(pz_gguf *g, cursor *c, int64_t i) {
    gguf_kv *kv = &g->kv[i];
    uint32_t t;
    char d[200], k[96];
    if (rd_str(c, &kv->key, "key")) return -1;
    show(kv->key.data, kv->key.len, k, sizeof k);
    if (rd_u32(c, &t, "value type")) return -1;
    if (t > PZ_GGUF_F64) {
        snprintf(d, sizeof d, "key '%s' has value type %u", k, t);
        return cerr(c, "unknown metadata value type", d);
    }
    kv->type = (pz_gguf_type)t;
    if (table_find(g, g->kv_hash, g->kv_cap, kv_name, kv->key.data, (size_t)kv->key.len, i) >= 0) {
        snprintf(d, sizeof d, "'%s'", k);
        return cerr(c, "duplicate metadata key", d);
    }
    if (t == PZ_GGUF_STRING) {
        pz_gguf_str s;
        kv->val = c->p;
        return rd_str(c, &s, "string value");
    }
    if (t != PZ_GGUF_ARRAY) {
        if (need(c, (uint64_t)scalar_size(kv->type), type_name(t))) return -1;
        kv->val = c->p;
        c->p += scalar_size(kv->type);
        return 0;
    }
    uint32_t et;
    uint64_t n;
    if (rd_u32(c, &et, "array element type") || rd_u64(c, &n, "array length")) return -1;
    if (et == PZ_GGUF_ARRAY || et > PZ_GGUF_F64) {
        snprintf(d, sizeof d, "key '%s' has element type %u", k, et);
        return cerr(c, et == PZ_GGUF_ARRAY ? "nested arrays are not allowed" : "unknown array element type", d);
    }
    if (n > GGUF_MAX_STR) {
        snprintf(d, sizeof d, "key '%s' has %llu elements", k, (unsigned long long)n);
        return cerr(c, "array too long (limit 2^30)", d);
    }
    kv->elem = (pz_gguf_type)et;
    kv->n = n;
    kv->val = c->p;
    if (et != PZ_GGUF_STRING) {
        if (need(c, n * (uint64_t)scalar_size(kv->elem), "array data")) return -1;
        c->p += n * (uint64_t)scalar_size(kv->elem);
        return 0;
    }
    // Each string takes at least its 8-byte length, which bounds n before we
    // allocate the offset table.
    if (need(c, n * 8, "string array")) return -1;
    kv->str_off = malloc((size_t)(n ? n : 1) * sizeof(uint64_t));
    if (!kv->str_off) return cerr(c, "out of memory", "string array index");
    for (uint64_t j = 0; j < n; j++) {
        pz_gguf_str s;
        kv->str_off[j] = (uint64_t)(c->p - kv->val);
        if (rd_str(c, &s, "array string")) return -1;
    }
    return 0;
}

static int parse_tensor(pz_gguf *g, cursor *c, int64_t i, uint64_t *offs) {
    pz_gguf_tensor *t = &g->tensors[i];
    pz_gguf_str name;
    uint32_t nd, type;
    char d[200];
    if (rd_str(c, &name, "tensor name")) return -1;
    if (name.len > GGUF_NAME_MAX) {
        char k[96];
        snprintf(d, sizeof d, "tensor %lld name '%s' is %llu bytes (max %d)", (long long)i,
                 show(name.data, name.len, k, sizeof k), (unsigned long long)name.len, GGUF_NAME_MAX);
        return cerr(c, "tensor name too long", d);
    }
    if (memchr(name.data, 0, (size_t)name.len)) return cerr(c, "tensor name contains a NUL byte", NULL);
    memcpy(t->name, name.data, (size_t)name.len);
    t->name[name.len] = 0;
    if (table_find(g, g->t_hash, g->t_cap, t_name, t->name, (size_t)name.len, i) >= 0)
        return cerr(c, "duplicate tensor name", t->name);
    if (rd_u32(c, &nd, "n_dims")) return -1;
    if (nd > GGUF_MAX_DIMS) {
        snprintf(d, sizeof d, "tensor '%s' has %u dimensions (max %d)", t->name, nd, GGUF_MAX_DIMS);
        return cerr(c, "too many dimensions", d);
    }
    t->n_dims = (int)nd;
    uint64_t n = 1;
    for (int j = 0; j < GGUF_MAX_DIMS; j++) t->ne[j] = 1;
    for (uint32_t j = 0; j < nd; j++) {
        if (rd_u64(c, &t->ne[j], "dimension")) return -1;
        // ggml keeps ne as int64: a value past INT64_MAX is negative to it.
        if (t->ne[j] > (uint64_t)INT64_MAX || (t->ne[j] && n > (uint64_t)INT64_MAX / t->ne[j])) {
            snprintf(d, sizeof d, "tensor '%s' dimension %u = %llu", t->name, j, (unsigned long long)t->ne[j]);
            return cerr(c, "tensor element count overflows", d);
        }
        n *= t->ne[j];
    }
    t->n_elems = n;
    if (rd_u32(c, &type, "tensor type")) return -1;
    if (!pz_dtype_supported((int)type)) {
        const char *tn = ggml_type_name(type);
        if (tn)
            snprintf(d, sizeof d, "tensor '%s' has ggml type %u (%s), which puzzle cannot read "
                     "(supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)", t->name, type, tn);
        else
            snprintf(d, sizeof d, "tensor '%s' has unknown ggml type id %u", t->name, type);
        return cerr(c, "unsupported tensor type", d);
    }
    t->type = (pz_dtype)type;
    if (t->ne[0] % (uint64_t)pz_dtype_block_elems(t->type) != 0) {
        snprintf(d, sizeof d, "tensor '%s' (%s) row length %llu is not a multiple of %d", t->name,
                 pz_dtype_name(t->type), (unsigned long long)t->ne[0], pz_dtype_block_elems(t->type));
        return cerr(c, "bad row length", d);
    }
    if (pz_dtype_row_bytes(t->type, n, &t->nbytes) != 0) return cerr(c, "tensor size overflows", t->name);
    return rd_u64(c, &offs[i], "tensor offset");
}

static int parse(pz_gguf *g, const char *what, char *err) {
    cursor cur = {g->base, g->base + g->size, g->base, what, err}, *c = &cur;
    uint32_t magic;
    uint64_t n_tensors, n_kv;
    char d[160];
    if (rd_u32(c, &magic, "magic")) return -1;
    if (magic != GGUF_MAGIC) {
        c->p = c->base;
        return cerr(c, "not a GGUF file (bad magic)", NULL);
    }
    if (rd_u32(c, &g->version, "version")) return -1;
    if (g->version == 1) return cerr(c, "GGUF version 1 is not supported (need 2 or 3)", NULL);
    if (g->version != 2 && g->version != 3) {
        // A byte-swapped 2 or 3 is the tell of a big-endian file.
        snprintf(d, sizeof d, "version %u%s", g->version,
                 (g->version == 0x02000000u || g->version == 0x03000000u) ? " (a big-endian file?)" : "");
        return cerr(c, "unsupported GGUF version", d);
    }
    if (rd_u64(c, &n_tensors, "tensor count") || rd_u64(c, &n_kv, "metadata count")) return -1;
    // Each key/value needs at least 13 bytes and each tensor info 24, which
    // bounds both counts by the file size before anything is allocated.
    uint64_t left = (uint64_t)(c->end - c->p);
    if (n_kv > left / 13 || n_tensors > left / 24 || n_kv > INT32_MAX || n_tensors > INT32_MAX) {
        snprintf(d, sizeof d, "%llu tensors and %llu metadata keys in a %zu-byte file",
                 (unsigned long long)n_tensors, (unsigned long long)n_kv, g->size);
        return cerr(c, "counts too large for the file", d);
    }
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;
    g->kv_cap = table_cap(g->n_kv);
    g->t_cap = table_cap(g->n_tensors);
    g->kv = calloc((size_t)n_kv + 1, sizeof *g->kv);
    g->tensors = calloc((size_t)n_tensors + 1, sizeof *g->tensors);
    g->kv_hash = calloc(g->kv_cap, sizeof *g->kv_hash);
    g->t_hash = calloc(g->t_cap, sizeof *g->t_hash);
    uint64_t *offs = calloc((size_t)n_tensors + 1, sizeof *offs);
    if (!g->kv || !g->tensors || !g->kv_hash || !g->t_hash || !offs) {
        free(offs);
        return pz_err(err, "%s: out of memory", what);
    }
    int rc = -1;
    for (int64_t i = 0; i < g->n_kv; i++)
        if (parse_kv(g, c, i)) goto out;

    g->alignment = 32;
    int64_t ai = pz_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        if (g->kv[ai].type != PZ_GGUF_U32) {
            snprintf(d, sizeof d, "general.alignment has type %s, expected u32", type_name(g->kv[ai].type));
            pz_err(err, "%s: %s", what, d);
            goto out;
        }
        memcpy(&g->alignment, g->kv[ai].val, 4);
        if (g->alignment == 0 || (g->alignment & (g->alignment - 1)) != 0) {
            pz_err(err, "%s: general.alignment %u is not a power of two", what, g->alignment);
            goto out;
        }
    }

    for (int64_t i = 0; i < g->n_tensors; i++)
        if (parse_tensor(g, c, i, offs)) goto out;

    uint64_t pos = (uint64_t)(c->p - c->base), a = g->alignment;
    uint64_t data_start = (pos + a - 1) / a * a;
    if (g->n_tensors > 0 && data_start > g->size) {
        pz_err(err, "%s: file is truncated: tensor data would start at byte %llu of %zu", what,
               (unsigned long long)data_start, g->size);
        goto out;
    }
    uint64_t expect = 0, avail = g->size - (g->n_tensors > 0 ? data_start : 0);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        pz_gguf_tensor *t = &g->tensors[i];
        if (offs[i] != expect) {
            pz_err(err, "%s: tensor '%s' data offset %llu is %s (expected %llu: offsets must be "
                   "contiguous and aligned to %u)", what, t->name, (unsigned long long)offs[i],
                   offs[i] % a ? "misaligned" : "out of sequence", (unsigned long long)expect, g->alignment);
            goto out;
        }
        if ((uint64_t)t->nbytes > avail || offs[i] > avail - t->nbytes) {
            pz_err(err, "%s: file is truncated: tensor '%s' needs bytes %llu..%llu of the data section, "
                   "which has %llu", what, t->name, (unsigned long long)offs[i],
                   (unsigned long long)(offs[i] + t->nbytes), (unsigned long long)avail);
            goto out;
        }
        t->data = g->base + data_start + offs[i];
        expect = offs[i] + ((uint64_t)t->nbytes + a - 1) / a * a;  // cannot overflow: both <= file size
    }
    rc = 0;
out:
    free(offs);
    return rc;
}

pz_gguf *pz_gguf_open_buffer(const void *buf, size_t len, char *err) {
    pz_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        pz_err(err, "<buffer>: out of memory");
        return NULL;
    }
    g->base = buf;
    g->size = len;
    if (parse(g, "<buffer>", err)) {
        pz_gguf_close(g);
        return NULL;
    }
    return g;
}

pz_gguf *pz_gguf_open(const char *path, char *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        pz_err(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        pz_err(err, "%s: not a regular file", path);
        return NULL;
    }
    if (st.st_size < 24) {
        close(fd);
        pz_err(err, "%s: file is truncated: %lld bytes is smaller than a GGUF header", path,
               (long long)st.st_size);
        return NULL;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);  // the mapping keeps the file alive
    if (m == MAP_FAILED) {
        pz_err(err, "%s: mmap: %s", path, strerror(errno));
        return NULL;
    }
    pz_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        munmap(m, (size_t)st.st_size);
        pz_err(err, "%s: out of memory", path);
        return NULL;
    }
    g->base = m;
    g->size = (size_t)st.st_size;
    g->mapped = 1;
    if (parse(g, path, err)) {
        pz_gguf_close(g);
        return NULL;
    }
    return g;
}

void pz_gguf_close(pz_gguf *g) {
    if (!g) return;
    if (g->kv)
        for (int64_t i = 0; i < g->n_kv; i++) free(g->kv[i].str_off);
    free(g->kv);
    free(g->tensors);
    free(g->kv_hash);
    free(g->t_hash);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g);
}

uint32_t pz_gguf_version(const pz_gguf *g) { return g->version; }
uint32_t pz_gguf_alignment(const pz_gguf *g) { return g->alignment; }
int64_t pz_gguf_n_kv(const pz_gguf *g) { return g->n_kv; }
int64_t pz_gguf_n_tensors(const pz_gguf *g) { return g->n_tensors; }

int64_t pz_gguf_find_key(const pz_gguf *g, const char *key) {
    return table_find(g, g->kv_hash, g->kv_cap, kv_name, key, strlen(key), -1);
}

pz_gguf_str pz_gguf_key_name(const pz_gguf *g, int64_t i) {
    pz_gguf_str s = {"", 0};
    if (i >= 0 && i < g->n_kv) s = g->kv[i].key;
    return s;
}

pz_gguf_type pz_gguf_kv_type(const pz_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_kv) ? g->kv[i].type : (pz_gguf_type)-1;
}

// Reads one integer of type t at p; -1 if t is not an integer type or the
// value does not fit an int64.
static int load_int(pz_gguf_type t, const uint8_t *p, int64_t *out) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
            uint64_t u64; int64_t i64; } v;
    int n = scalar_size(t);
    if (n == 0 || t == PZ_GGUF_F32 || t == PZ_GGUF_F64 || t == PZ_GGUF_BOOL) return -1;
    memcpy(&v, p, (size_t)n);
    switch (t) {
    case PZ_GGUF_U8: *out = v.u8; break;
    case PZ_GGUF_I8: *out = v.i8; break;
    case PZ_GGUF_U16: *out = v.u16; break;
    case PZ_GGUF_I16: *out = v.i16; break;
    case PZ_GGUF_U32: *out = v.u32; break;
    case PZ_GGUF_I32: *out = v.i32; break;
    case PZ_GGUF_I64: *out = v.i64; break;
    case PZ_GGUF_U64:
        if (v.u64 > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)v.u64;
        break;
    default: return -1;
    }
    return 0;
}

static int load_float(pz_gguf_type t, const uint8_t *p, float *out) {
    if (t == PZ_GGUF_F32) {
        memcpy(out, p, 4);
        return 0;
    }
    if (t == PZ_GGUF_F64) {
        double v;
        memcpy(&v, p, 8);
        *out = (float)v;
        return 0;
    }
    return -1;
}

static const gguf_kv *kv_of(const pz_gguf *g, const char *key) {
    int64_t i = pz_gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

int pz_gguf_get_i64(const pz_gguf *g, const char *key, int64_t *out) {
    const gguf_kv *kv = kv_of(g, key);
    return kv ? load_int(kv->type, kv->val, out) : -1;
}

int pz_gguf_get_f32(const pz_gguf *g, const char *key, float *out) {
    const gguf_kv *kv = kv_of(g, key);
    return kv ? load_float(kv->type, kv->val, out) : -1;
}

int pz_gguf_get_bool(const pz_gguf *g, const char *key, int *out) {
    const gguf_kv *kv = kv_of(g, key);
    if (!kv || kv->type != PZ_GGUF_BOOL) return -1;
    *out = kv->val[0] != 0;
    return 0;
}

static pz_gguf_str str_at(const uint8_t *p) {
    pz_gguf_str s;
    memcpy(&s.len, p, 8);
    s.data = (const char *)p + 8;
    return s;
}

int pz_gguf_get_str(const pz_gguf *g, const char *key, pz_gguf_str *out) {
    const gguf_kv *kv = kv_of(g, key);
    if (!kv || kv->type != PZ_GGUF_STRING) return -1;
    *out = str_at(kv->val);
    return 0;
}

int pz_gguf_get_arr(const pz_gguf *g, const char *key, pz_gguf_type *elem_type, uint64_t *n) {
    const gguf_kv *kv = kv_of(g, key);
    if (!kv || kv->type != PZ_GGUF_ARRAY) return -1;
    if (elem_type) *elem_type = kv->elem;
    if (n) *n = kv->n;
    return 0;
}

static const gguf_kv *arr_of(const pz_gguf *g, const char *key, uint64_t i) {
    const gguf_kv *kv = kv_of(g, key);
    return (kv && kv->type == PZ_GGUF_ARRAY && i < kv->n) ? kv : NULL;
}

int pz_gguf_arr_str(const pz_gguf *g, const char *key, uint64_t i, pz_gguf_str *out) {
    const gguf_kv *kv = arr_of(g, key, i);
    if (!kv || kv->elem != PZ_GGUF_STRING) return -1;
    *out = str_at(kv->val + kv->str_off[i]);
    return 0;
}

int pz_gguf_arr_i64(const pz_gguf *g, const char *key, uint64_t i, int64_t *out) {
    const gguf_kv *kv = arr_of(g, key, i);
    return kv ? load_int(kv->elem, kv->val + i * (uint64_t)scalar_size(kv->elem), out) : -1;
}

int pz_gguf_arr_f32(const pz_gguf *g, const char *key, uint64_t i, float *out) {
    const gguf_kv *kv = arr_of(g, key, i);
    return kv ? load_float(kv->elem, kv->val + i * (uint64_t)scalar_size(kv->elem), out) : -1;
}

const pz_gguf_tensor *pz_gguf_tensor_at(const pz_gguf *g, int64_t i) {
    return (i >= 0 && i < g->n_tensors) ? &g->tensors[i] : NULL;
}

const pz_gguf_tensor *pz_gguf_find_tensor(const pz_gguf *g, const char *name) {
    int64_t i = table_find(g, g->t_hash, g->t_cap, t_name, name, strlen(name), -1);
    return i < 0 ? NULL : &g->tensors[i];
}
