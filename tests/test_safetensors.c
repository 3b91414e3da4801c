// test_safetensors.c — the reader against files written by the `safetensors`
// package (tests/ref/make_format_fixtures.py), hostile headers and files,
// broken shard indexes, and round trips through our writer (single file and
// sharded directory).
#include "common.h"
#include "safetensors.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *fixture(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/formats/%s", pz_test_data_dir(), name);
    return buf;
}

// Checks every tensor the manifest lists for files whose name starts with
// prefix against st, and returns how many it checked.
static int check_manifest(const pz_st *st, const char *prefix) {
    char path[1024], err[PZ_ERRLEN];
    size_t mlen, blen;
    char *man = pz_read_file(fixture(path, sizeof path, "st.manifest"), 1 << 20, &mlen, err);
    char *blob = pz_read_file(fixture(path, sizeof path, "st.expected.bin"), 1 << 20, &blen, err);
    CHECKF(man && blob, "%s", err);
    int n = 0;
    char *save = NULL;
    for (char *line = man ? strtok_r(man, "\n", &save) : NULL; blob && line; line = strtok_r(NULL, "\n", &save)) {
        char file[256], name[256], dtype[16];
        int nd, pos;
        if (sscanf(line, "st %255s %255s %15s %d%n", file, name, dtype, &nd, &pos) < 4) continue;
        if (strncmp(file, prefix, strlen(prefix)) != 0) continue;
        const char *p = line + pos;
        long long shape[8];
        for (int i = 0; i < nd; i++) {
            int adv;
            sscanf(p, "%lld%n", &shape[i], &adv);
            p += adv;
        }
        unsigned long long off, nbytes;
        sscanf(p, "%llu %llu", &off, &nbytes);
        const pz_st_tensor *t = pz_st_find(st, name);
        CHECKF(t != NULL, "%s missing", name);
        if (!t) continue;
        n++;
        CHECKF(strcmp(pz_st_dtype_name(t->dtype), dtype) == 0 && t->n_dims == nd, "%s: %s/%d", name,
               pz_st_dtype_name(t->dtype), t->n_dims);
        uint64_t ne = 1;
        for (int i = 0; i < nd && i < 8; i++) {
            CHECKF(t->shape[i] == shape[i], "%s shape[%d]", name, i);
            ne *= (uint64_t)shape[i];
        }
        CHECK(t->n_elems == ne && t->nbytes == nbytes);
        CHECKF(nbytes == 0 || memcmp(t->data, blob + off, nbytes) == 0, "%s: data differs", name);
    }
    free(man);
    free(blob);
    return n;
}

static void test_fixtures(void) {
    char path[1024], err[PZ_ERRLEN];
    pz_st *st = pz_st_open(fixture(path, sizeof path, "st_single.safetensors"), err);
    CHECKF(st != NULL, "%s", err);
    if (st) {
        CHECK(pz_st_n_tensors(st) == 18);
        CHECK(check_manifest(st, "st_single") == 18);
        CHECK(pz_st_metadata(st, "format") && strcmp(pz_st_metadata(st, "format"), "pt") == 0);
        CHECK(pz_st_metadata(st, "note") && strcmp(pz_st_metadata(st, "note"), "fixture \xc3\xa9") == 0);
        CHECK(pz_st_metadata(st, "nope") == NULL);
        CHECK(pz_st_find(st, "nope") == NULL);
        CHECK(pz_st_tensor_at(st, 18) == NULL && pz_st_tensor_at(st, -1) == NULL);
        const pz_st_tensor *s = pz_st_find(st, "w.scalar");
        CHECK(s && s->n_dims == 0 && s->n_elems == 1 && s->nbytes == 4);
        const pz_st_tensor *e = pz_st_find(st, "w.empty");
        CHECK(e && e->n_elems == 0 && e->nbytes == 0);
        pz_st_close(st);
    }
    st = pz_st_open(fixture(path, sizeof path, "st_sharded"), err);
    CHECKF(st != NULL, "%s", err);
    if (st) {
        CHECK(pz_st_n_tensors(st) == 5);
        CHECK(check_manifest(st, "st_sharded/") == 5);
        CHECK(pz_st_metadata(st, "format") != NULL);
        pz_st_close(st);
    }
    st = pz_st_open(fixture(path, sizeof path, "st_sharded/model-00002-of-00002.safetensors"), err);
    CHECKF(st && pz_st_n_tensors(st) == 3, "%s", err);
    pz_st_close(st);
    CHECK(pz_st_open("/nonexistent.safetensors", err) == NULL && strstr(err, "/nonexistent"));
    CHECK(pz_st_open(pz_test_data_dir(), err) == NULL && strstr(err, "no model.safetensors"));
}

static int open_copy(const void *buf, size_t len, char *err) {
    void *c = malloc(len ? len : 1);
    memcpy(c, buf, len);
    err[0] = 0;
    pz_st *st = pz_st_open_buffer(c, len, err);
    int ok = st != NULL;
    for (int64_t i = 0; st && i < pz_st_n_tensors(st); i++) {
        const pz_st_tensor *t = pz_st_tensor_at(st, i);
        volatile uint8_t sum = 0;  // touch every byte under ASan
        for (size_t j = 0; j < t->nbytes; j++) sum += ((const uint8_t *)t->data)[j];
        (void)sum;
    }
    pz_st_close(st);
    free(c);
    return ok;
}

// A file from a header text and n data bytes (filled with a pattern).
static size_t make(uint8_t *out, const char *header, size_t data) {
    uint64_t n = strlen(header);
    memcpy(out, &n, 8);
    memcpy(out + 8, header, n);
    for (size_t i = 0; i < data; i++) out[8 + n + i] = (uint8_t)(i * 7);
    return 8 + n + data;
}

static void expect(const char *header, size_t data, const char *needle) {
    uint8_t buf[4096];
    char err[PZ_ERRLEN];
    size_t len = make(buf, header, data);
    int ok = open_copy(buf, len, err);
    if (!needle)
        CHECKF(ok, "%s: %s", header, err);
    else
        CHECKF(!ok && strstr(err, needle), "%s: expected '%s', got %s", header, needle, ok ? "success" : err);
}

static void test_hostile(void) {
    char path[1024], err[PZ_ERRLEN];
    size_t len;
    uint8_t *buf = (uint8_t *)pz_read_file(fixture(path, sizeof path, "st_single.safetensors"), 1 << 20, &len, err);
    CHECK(buf != NULL);
    if (!buf) return;
    CHECK(open_copy(buf, len, err));
    int bad = 0;
    for (size_t n = 0; n < len; n++) bad += open_copy(buf, n, err) || !err[0];
    CHECKF(bad == 0, "%d truncations misjudged", bad);
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    CHECK(!open_copy(longer, len + 1, err) && strstr(err, "trailing bytes"));
    free(longer);
    int silent = 0;
    static const uint8_t pats[] = {0xff, 0x80, 0x01, 0x20};
    for (size_t i = 0; i < len; i++)
        for (int p = 0; p < 4; p++) {
            buf[i] ^= pats[p];
            if (!open_copy(buf, len, err) && !err[0]) silent++;
            buf[i] ^= pats[p];
        }
    CHECKF(silent == 0, "%d failures without a message", silent);
    uint64_t huge[] = {100000001ull, 1ull << 63, UINT64_MAX, len};
    for (int i = 0; i < 4; i++) {
        uint8_t *c = malloc(len);
        memcpy(c, buf, len);
        memcpy(c, &huge[i], 8);
        CHECKF(!open_copy(c, len, err) && err[0], "header length %llu", (unsigned long long)huge[i]);
        free(c);
    }
    free(buf);

    const char *T = "\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char h[1024];
    snprintf(h, sizeof h, "{%s}", T);
    expect(h, 8, NULL);
    snprintf(h, sizeof h, "{%s}     ", T);  // space padding is allowed
    expect(h, 8, NULL);
    expect("{}", 0, NULL);
    expect("{\"__metadata__\":{\"a\":\"b\"}}", 0, NULL);
    expect("{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, NULL);
    expect("{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
           "\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, NULL);
    snprintf(h, sizeof h, "{%s}", T);
    expect(h, 9, "trailing bytes");
    expect(h, 7, "truncated");
    snprintf(h, sizeof h, "{%s}x", T);
    expect(h, 8, "after the JSON");
    snprintf(h, sizeof h, "{%s,%s}", T, T);
    expect(h, 8, "duplicate tensor name");
    snprintf(h, sizeof h, " {%s}", T);
    expect(h, 8, "start with '{'");
    expect("[]", 0, "start with '{'");
    expect("{\"t\":", 0, "not valid JSON");
    expect("{\"\xff\":1}", 0, "UTF-8");
    expect("{\"\xed\xa0\x80\":1}", 0, "UTF-8");  // a UTF-16 surrogate
    expect("{\"__metadata__\":{\"a\":1}}", 0, "not a string");
    expect("{\"__metadata__\":[]}", 0, "not an object");
    expect("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__");
    expect("{\"t\":1}", 0, "not a JSON object");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets");
    expect("{\"t\":{\"dtype\":\"F4\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unsupported dtype");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]}}", 4, "shape[0]");
    expect("{\"t\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
           "overflow");
    expect("{\"t\":{\"dtype\":\"F64\",\"shape\":[2147483648,2147483648,2],\"data_offsets\":[0,8]}}", 8,
           "bytes");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "begin <= end");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "data_offsets");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "span");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "hole");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlaps");
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "hole");
    expect("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[9007199254740988,9007199254740992]}}", 4,
           "hole");
    // Deep nesting must not blow the stack.
    char deep[3000];
    size_t k = 0;
    deep[k++] = '{';
    memcpy(deep + k, "\"a\":", 4);
    k += 4;
    for (int i = 0; i < 1200; i++) deep[k++] = '[';
    deep[k++] = '}';
    deep[k] = 0;
    expect(deep, 0, "not valid JSON");
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void copy_file(const char *from, const char *to) {
    char err[PZ_ERRLEN];
    size_t n;
    char *b = pz_read_file(from, 1 << 20, &n, err);
    FILE *f = fopen(to, "wb");
    if (b && f) fwrite(b, 1, n, f);
    if (f) fclose(f);
    free(b);
}

static void test_bad_index(void) {
    char *dir = pz_test_tmpdir("stidx");
    char src[1024], dst[1024], idx[1024], err[PZ_ERRLEN];
    const char *shards[] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    for (int i = 0; i < 2; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "st_sharded/%s", shards[i]);
        copy_file(fixture(src, sizeof src, rel), pz_path_join(dst, sizeof dst, dir, shards[i]));
    }
    pz_path_join(idx, sizeof idx, dir, "model.safetensors.index.json");
    copy_file(fixture(src, sizeof src, "st_sharded/model.safetensors.index.json"), idx);
    pz_st *st = pz_st_open(dir, err);
    CHECKF(st && pz_st_n_tensors(st) == 5, "%s", err);
    pz_st_close(st);
    struct { const char *json, *needle; } cases[] = {
        {"{\"weight_map\":{\"model.norm.weight\":\"../x.safetensors\"}}", "same directory"},
        {"{\"weight_map\":{\"model.norm.weight\":\"missing.safetensors\"}}", "missing.safetensors"},
        {"{\"weight_map\":[]}", "weight_map"},
        {"not json", "weight_map"},
        {"{\"weight_map\":{\"model.norm.weight\":\"model-00001-of-00002.safetensors\"}}", "not in the weight_map"},
        {"{\"weight_map\":{\"model.norm.weight\":\"model-00002-of-00002.safetensors\","
         "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\"}}", "found in"},
        {"{\"weight_map\":{\"ghost\":\"model-00001-of-00002.safetensors\","
         "\"model.norm.weight\":\"model-00001-of-00002.safetensors\","
         "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\"}}", "missing from"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(idx, cases[i].json);
        st = pz_st_open(dir, err);
        CHECKF(!st && strstr(err, cases[i].needle), "index %zu: expected '%s', got %s", i, cases[i].needle,
               st ? "success" : err);
        pz_st_close(st);
    }
    // The same tensor in two shards.
    copy_file(fixture(src, sizeof src, "st_sharded/model-00001-of-00002.safetensors"),
              pz_path_join(dst, sizeof dst, dir, "copy.safetensors"));
    write_text(idx, "{\"weight_map\":{\"model.norm.weight\":\"copy.safetensors\","
                    "\"model.embed_tokens.weight\":\"model-00001-of-00002.safetensors\"}}");
    st = pz_st_open(dir, err);
    CHECKF(!st && strstr(err, "duplicate tensor name"), "%s", st ? "success" : err);
    pz_st_close(st);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    free(dir);
}

typedef struct {
    const char *name;
    pz_st_dtype dt;
    int nd;
    int64_t shape[3];
} spec;

static void compare(const pz_st *st, const spec *s, int n, uint8_t **data) {
    CHECK(pz_st_n_tensors(st) == n);
    for (int i = 0; i < n; i++) {
        const pz_st_tensor *t = pz_st_find(st, s[i].name);
        CHECKF(t != NULL, "%s", s[i].name);
        if (!t) continue;
        CHECK(t->dtype == s[i].dt && t->n_dims == s[i].nd);
        size_t nb = (size_t)pz_st_dtype_size(s[i].dt);
        for (int d = 0; d < s[i].nd; d++) {
            CHECK(t->shape[d] == s[i].shape[d]);
            nb *= (size_t)s[i].shape[d];
        }
        CHECK(t->nbytes == nb && (nb == 0 || memcmp(t->data, data[i], nb) == 0));
        CHECKF((uintptr_t)t->data % (uintptr_t)pz_st_dtype_size(s[i].dt) == 0, "%s misaligned", s[i].name);
    }
}

static void test_writer(void) {
    spec s[] = {{"a.bf16", PZ_ST_BF16, 2, {3, 5}},   {"b.f32", PZ_ST_F32, 2, {4, 7}},
                {"c.u8", PZ_ST_U8, 1, {3}},          {"d.f64", PZ_ST_F64, 1, {5}},
                {"e.scalar", PZ_ST_F32, 0, {0}},     {"f.empty", PZ_ST_I32, 2, {0, 4}},
                {"g \"quoted\"\\name\n", PZ_ST_I16, 3, {2, 2, 3}}, {"h.f8", PZ_ST_F8_E4M3, 1, {33}}};
    int n = (int)(sizeof s / sizeof s[0]);
    uint8_t *data[8];
    uint64_t rng = 7;
    char err[PZ_ERRLEN];
    pz_st_writer *w = pz_st_writer_new();
    for (int i = 0; i < n; i++) {
        size_t nb = (size_t)pz_st_dtype_size(s[i].dt);
        for (int d = 0; d < s[i].nd; d++) nb *= (size_t)s[i].shape[d];
        data[i] = malloc(nb + 1);
        for (size_t j = 0; j < nb; j++) data[i][j] = (uint8_t)pz_test_rand_u64(&rng);
        CHECKF(pz_st_writer_add(w, s[i].name, s[i].dt, s[i].nd, s[i].shape, data[i], err) == 0, "%s", err);
    }
    CHECK(pz_st_writer_add(w, "a.bf16", PZ_ST_F32, 1, s[0].shape, data[0], err) != 0 && strstr(err, "duplicate"));
    int64_t neg[1] = {-1};
    CHECK(pz_st_writer_add(w, "x", PZ_ST_F32, 1, neg, data[0], err) != 0);
    CHECK(pz_st_writer_add(w, "x", PZ_ST_INVALID, 1, s[0].shape, data[0], err) != 0);
    CHECK(pz_st_writer_add(w, "__metadata__", PZ_ST_F32, 1, s[0].shape, data[0], err) != 0);
    CHECK(pz_st_writer_set_metadata(w, "format", "np") == 0);
    CHECK(pz_st_writer_set_metadata(w, "format", "pt") == 0);  // replaces
    CHECK(pz_st_writer_set_metadata(w, "origin", "puzzle \xe2\x9c\x93") == 0);

    char *dir = pz_test_tmpdir("stw"), path[1024];
    pz_path_join(path, sizeof path, dir, "one.safetensors");
    CHECKF(pz_st_writer_write_file(w, path, err) == 0, "%s", err);
    pz_st *st = pz_st_open(path, err);
    CHECKF(st != NULL, "%s", err);
    if (st) {
        compare(st, s, n, data);
        CHECK(strcmp(pz_st_metadata(st, "format"), "pt") == 0);
        CHECK(strcmp(pz_st_metadata(st, "origin"), "puzzle \xe2\x9c\x93") == 0);
        pz_st_close(st);
    }
    size_t len;
    char *raw = pz_read_file(path, 1 << 20, &len, err);
    uint64_t hl;
    memcpy(&hl, raw, 8);
    CHECK(hl % 8 == 0 && (raw[8 + hl - 1] == ' ' || raw[8 + hl - 1] == '}'));
    free(raw);

    // Sharded: a 100-byte limit forces several shards.
    char sdir[1024];
    pz_path_join(sdir, sizeof sdir, dir, "sharded");
    CHECKF(pz_st_writer_write_dir(w, sdir, 100, err) == 0, "%s", err);
    pz_path_join(path, sizeof path, sdir, "model.safetensors.index.json");
    CHECK(pz_file_exists(path));
    pz_path_join(path, sizeof path, sdir, "model-00001-of-00004.safetensors");
    CHECK(pz_file_exists(path));
    st = pz_st_open(sdir, err);
    CHECKF(st != NULL, "%s", err);
    if (st) {
        compare(st, s, n, data);
        pz_st_close(st);
    }
    // Rewriting as one file replaces the index.
    CHECKF(pz_st_writer_write_dir(w, sdir, 0, err) == 0, "%s", err);
    pz_path_join(path, sizeof path, sdir, "model.safetensors.index.json");
    CHECK(!pz_file_exists(path));
    st = pz_st_open(sdir, err);
    CHECKF(st != NULL, "%s", err);
    if (st) {
        compare(st, s, n, data);
        pz_st_close(st);
    }
    CHECK(pz_st_writer_write_file(w, "/nonexistent/dir/x.safetensors", err) != 0 && strstr(err, "/nonexistent"));
    pz_st_writer_free(w);

    // An empty writer makes a valid empty file.
    w = pz_st_writer_new();
    pz_path_join(path, sizeof path, dir, "empty.safetensors");
    CHECK(pz_st_writer_write_file(w, path, err) == 0);
    st = pz_st_open(path, err);
    CHECKF(st && pz_st_n_tensors(st) == 0, "%s", err);
    pz_st_close(st);
    pz_st_writer_free(w);

    for (int i = 0; i < n; i++) free(data[i]);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    free(dir);
}

int main(void) {
    CHECK(pz_st_dtype_size(PZ_ST_BF16) == 2 && pz_st_dtype_size(PZ_ST_F64) == 8 && pz_st_dtype_size(PZ_ST_BOOL) == 1);
    CHECK(strcmp(pz_st_dtype_name(PZ_ST_F8_E5M2), "F8_E5M2") == 0 && strcmp(pz_st_dtype_name(PZ_ST_INVALID), "?") == 0);
    test_fixtures();
    test_hostile();
    test_bad_index();
    test_writer();
    return pz_test_finish("test_safetensors");
}
