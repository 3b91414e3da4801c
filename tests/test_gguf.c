// labels: cpu model
// test_gguf.c — the GGUF reader against files written by the `gguf` Python
// package (tests/ref/make_format_fixtures.py), against the reference parent
// when $PUZZLE_MODEL is set, and against hostile inputs: every truncation,
// flipped bytes, huge counts, and hand-built files breaking each rule.
#include "common.h"
#include "gguf.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *data_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/formats/%s", pz_test_data_dir(), name);
    return buf;
}

static char *slurp(const char *name, size_t *len) {
    char path[1024], err[PZ_ERRLEN];
    char *b = pz_read_file(data_path(path, sizeof path, name), 64u << 20, len, err);
    if (!b) fprintf(stderr, "%s\n", err);
    return b;
}

static int unhex(const char *h, char *out, size_t cap) {
    if (strcmp(h, "-") == 0) return 0;
    size_t n = strlen(h) / 2;
    if (n > cap) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    return (int)n;
}

static int str_eq(pz_gguf_str s, const char *b, int n) {
    return s.len == (uint64_t)n && memcmp(s.data, b, (size_t)n) == 0;
}

// Checks one scalar value (type t, manifest text v) read through the getters.
static void check_scalar(const pz_gguf *g, const char *key, int t, const char *v) {
    char buf[256];
    switch (t) {
    case PZ_GGUF_STRING: {
        pz_gguf_str s;
        int n = unhex(v, buf, sizeof buf);
        CHECKF(pz_gguf_get_str(g, key, &s) == 0 && str_eq(s, buf, n), "%s", key);
        int64_t i;
        CHECK(pz_gguf_get_i64(g, key, &i) != 0);
        break;
    }
    case PZ_GGUF_F32: {
        float f;
        uint32_t bits = (uint32_t)strtoul(v, NULL, 16), got;
        CHECKF(pz_gguf_get_f32(g, key, &f) == 0, "%s", key);
        memcpy(&got, &f, 4);
        CHECKF(got == bits, "%s: %08x vs %08x", key, got, bits);
        break;
    }
    case PZ_GGUF_F64: {
        float f;
        uint64_t bits = strtoull(v, NULL, 16);
        double d;
        memcpy(&d, &bits, 8);
        CHECKF(pz_gguf_get_f32(g, key, &f) == 0 && f == (float)d, "%s", key);
        break;
    }
    case PZ_GGUF_BOOL: {
        int b;
        CHECKF(pz_gguf_get_bool(g, key, &b) == 0 && b == atoi(v), "%s", key);
        break;
    }
    default: {
        int64_t i;
        if (t == PZ_GGUF_U64 && strtoull(v, NULL, 10) > (unsigned long long)INT64_MAX) {
            CHECKF(pz_gguf_get_i64(g, key, &i) != 0, "%s: u64 past INT64_MAX must not read as i64", key);
        } else {
            CHECKF(pz_gguf_get_i64(g, key, &i) == 0 && i == strtoll(v, NULL, 10), "%s", key);
        }
        float f;
        CHECK(pz_gguf_get_f32(g, key, &f) != 0);
        int b;
        CHECK(pz_gguf_get_bool(g, key, &b) != 0);
    }
    }
}

// Checks a fixture against its manifest and expected dequantized values.
static void check_fixture(const char *name, uint32_t alignment) {
    char path[512], err[PZ_ERRLEN] = "";
    size_t mlen, elen;
    snprintf(path, sizeof path, "%s.manifest", name);
    char *man = slurp(path, &mlen);
    snprintf(path, sizeof path, "%s.expected.f32", name);
    float *expect = (float *)slurp(path, &elen);
    snprintf(path, sizeof path, "%s.gguf", name);
    char full[1024];
    pz_gguf *g = pz_gguf_open(data_path(full, sizeof full, path), err);
    CHECKF(g && man && expect, "%s: %s", name, err);
    if (!g || !man || !expect) goto done;
    CHECK(pz_gguf_version(g) == 3);
    CHECK(pz_gguf_alignment(g) == alignment);
    pz_gguf_str arch;
    CHECK(pz_gguf_get_str(g, "general.architecture", &arch) == 0 && str_eq(arch, "llama", 5));
    int64_t n_kv = alignment != 32 ? 2 : 1, n_t = 0;  // general.architecture (+ general.alignment)
    for (char *line = strtok(man, "\n"); line; line = strtok(NULL, "\n")) {
        char kind[16], key[128];
        int t, off;
        if (sscanf(line, "%15s %127s %d%n", kind, key, &t, &off) < 3) continue;
        const char *rest = line + off;
        if (strcmp(kind, "kv") == 0) {
            n_kv++;
            int64_t i = pz_gguf_find_key(g, key);
            CHECKF(i >= 0 && (int)pz_gguf_kv_type(g, i) == t, "%s", key);
            pz_gguf_str kn = pz_gguf_key_name(g, i);
            CHECK(str_eq(kn, key, (int)strlen(key)));
            char v[512];
            sscanf(rest, "%511s", v);
            check_scalar(g, key, t, v);
        } else if (strcmp(kind, "arr") == 0) {
            n_kv++;
            int n, pos;
            sscanf(rest, "%d%n", &n, &pos);
            rest += pos;
            pz_gguf_type et;
            uint64_t cnt;
            CHECKF(pz_gguf_get_arr(g, key, &et, &cnt) == 0 && (int)et == t && cnt == (uint64_t)n, "%s", key);
            for (int j = 0; j < n; j++) {
                char v[512], buf[256];
                sscanf(rest, "%511s%n", v, &pos);
                rest += pos;
                if (t == PZ_GGUF_STRING) {
                    pz_gguf_str s;
                    int len = unhex(v, buf, sizeof buf);
                    CHECKF(pz_gguf_arr_str(g, key, (uint64_t)j, &s) == 0 && str_eq(s, buf, len), "%s[%d]", key, j);
                } else if (t == PZ_GGUF_F32 || t == PZ_GGUF_F64) {
                    float f, want;
                    if (t == PZ_GGUF_F32) {
                        uint32_t b = (uint32_t)strtoul(v, NULL, 16);
                        memcpy(&want, &b, 4);
                    } else {
                        uint64_t b = strtoull(v, NULL, 16);
                        double d;
                        memcpy(&d, &b, 8);
                        want = (float)d;
                    }
                    CHECKF(pz_gguf_arr_f32(g, key, (uint64_t)j, &f) == 0 && f == want, "%s[%d]", key, j);
                } else if (t != PZ_GGUF_BOOL) {
                    int64_t i;
                    int r = pz_gguf_arr_i64(g, key, (uint64_t)j, &i);
                    if (t == PZ_GGUF_U64 && v[0] != '-' && strtoull(v, NULL, 10) > (unsigned long long)INT64_MAX)
                        CHECKF(r != 0, "%s[%d]", key, j);
                    else
                        CHECKF(r == 0 && i == strtoll(v, NULL, 10), "%s[%d] = %lld, want %s", key, j, (long long)i, v);
                }
            }
            int64_t i;
            pz_gguf_str s;
            CHECK(pz_gguf_arr_i64(g, key, (uint64_t)n, &i) != 0);  // past the end
            CHECK(pz_gguf_arr_str(g, key, (uint64_t)n, &s) != 0);
        } else if (strcmp(kind, "tensor") == 0) {
            int nd;
            unsigned long long ne[4], eoff;
            sscanf(rest, "%d %llu %llu %llu %llu %llu", &nd, &ne[0], &ne[1], &ne[2], &ne[3], &eoff);
            const pz_gguf_tensor *tt = pz_gguf_find_tensor(g, key);
            CHECKF(tt != NULL, "tensor %s", key);
            if (!tt) continue;
            CHECK(tt == pz_gguf_tensor_at(g, n_t));
            n_t++;
            CHECKF((int)tt->type == t && tt->n_dims == nd, "%s", key);
            uint64_t n = 1;
            for (int j = 0; j < 4; j++) {
                CHECKF(tt->ne[j] == ne[j], "%s ne[%d]", key, j);
                n *= ne[j];
            }
            CHECK(tt->n_elems == n);
            CHECKF(((uintptr_t)tt->data % alignment) == 0, "%s data misaligned", key);
            float *out = malloc(n * sizeof(float));
            pz_to_f32(tt->type, tt->data, out, n);
            CHECKF(memcmp(out, expect + eoff, n * sizeof(float)) == 0, "%s: dequantized values differ from gguf-py",
                   key);
            free(out);
        }
    }
    CHECK(pz_gguf_n_kv(g) == n_kv);
    CHECK(pz_gguf_n_tensors(g) == n_t);
    CHECK(pz_gguf_find_tensor(g, "nope") == NULL);
    CHECK(pz_gguf_find_key(g, "nope") < 0);
    CHECK(pz_gguf_tensor_at(g, -1) == NULL && pz_gguf_tensor_at(g, n_t) == NULL);
done:
    pz_gguf_close(g);
    free(man);
    free(expect);
}

// Opens a private heap copy of exactly len bytes, so ASan sees any overread.
static pz_gguf *open_copy(const void *buf, size_t len, char *err) {
    void *c = malloc(len ? len : 1);
    memcpy(c, buf, len);
    err[0] = 0;
    pz_gguf *g = pz_gguf_open_buffer(c, len, err);
    if (g) {
        // Touch everything a consumer would.
        for (int64_t i = 0; i < pz_gguf_n_tensors(g); i++) {
            const pz_gguf_tensor *t = pz_gguf_tensor_at(g, i);
            float *out = malloc(t->n_elems * sizeof(float) + 1);
            pz_to_f32(t->type, t->data, out, t->n_elems);
            free(out);
        }
        for (int64_t i = 0; i < pz_gguf_n_kv(g); i++) {
            pz_gguf_str k = pz_gguf_key_name(g, i);
            char key[256];
            if (k.len >= sizeof key) continue;
            memcpy(key, k.data, (size_t)k.len);
            key[k.len] = 0;
            pz_gguf_type et;
            uint64_t n;
            pz_gguf_str s;
            if (pz_gguf_get_arr(g, key, &et, &n) == 0 && n > 0) pz_gguf_arr_str(g, key, n - 1, &s);
        }
        pz_gguf_close(g);
        free(c);
        return (pz_gguf *)1;  // opened (already closed)
    }
    free(c);
    return NULL;
}

static void test_hostile_file(void) {
    size_t len;
    char *buf = slurp("small.gguf", &len), err[PZ_ERRLEN];
    if (!buf) {
        CHECK(0);
        return;
    }
    // The end of the last tensor's data: any shorter prefix must fail.
    pz_gguf *g = pz_gguf_open_buffer(buf, len, err);
    CHECK(g != NULL);
    size_t end = 0;
    for (int64_t i = 0; g && i < pz_gguf_n_tensors(g); i++) {
        const pz_gguf_tensor *t = pz_gguf_tensor_at(g, i);
        size_t e = (size_t)((const char *)t->data - buf) + t->nbytes;
        if (e > end) end = e;
    }
    pz_gguf_close(g);
    int bad_trunc = 0;
    for (size_t n = 0; n < len; n++) {
        int ok = open_copy(buf, n, err) != NULL;
        if (n < end && (ok || err[0] == 0)) bad_trunc++;
        if (n >= end && !ok) bad_trunc++;
    }
    CHECKF(bad_trunc == 0, "%d truncations misjudged", bad_trunc);

    // Every byte flipped in three ways: must open or fail with a message.
    static const uint8_t pats[] = {0xff, 0x80, 0x01};
    int silent = 0, opened = 0;
    for (size_t i = 0; i < len; i++) {
        for (int p = 0; p < 3; p++) {
            buf[i] ^= (char)pats[p];
            if (open_copy(buf, len, err)) opened++;
            else if (!err[0]) silent++;
            buf[i] ^= (char)pats[p];
        }
    }
    CHECKF(silent == 0, "%d failures without a message", silent);
    CHECK(opened > 0);  // flips inside tensor data are harmless

    // Huge counts and lengths in the header and the first key.
    char *c = malloc(len);
    uint64_t huge[] = {1ull << 62, UINT64_MAX, (uint64_t)INT64_MAX + 1, 1ull << 31, 1ull << 30};
    for (size_t h = 0; h < sizeof huge / sizeof huge[0]; h++) {
        for (size_t at = 8; at <= 24; at += 8) {  // tensor count, kv count, first key length
            memcpy(c, buf, len);
            memcpy(c + at, &huge[h], 8);
            CHECKF(open_copy(c, len, err) == NULL && err[0], "huge %llu at %zu", (unsigned long long)huge[h], at);
        }
    }
    // Versions: 2 reads the same, 1 and 4 are refused; so is a bad magic.
    memcpy(c, buf, len);
    c[4] = 2;
    CHECK(open_copy(c, len, err) != NULL);
    c[4] = 1;
    CHECK(open_copy(c, len, err) == NULL && strstr(err, "version 1"));
    c[4] = 4;
    CHECK(open_copy(c, len, err) == NULL && strstr(err, "version"));
    c[4] = 0, c[7] = 3;
    CHECK(open_copy(c, len, err) == NULL && strstr(err, "big-endian"));
    memcpy(c, buf, len);
    c[0] = 'X';
    CHECK(open_copy(c, len, err) == NULL && strstr(err, "magic"));
    free(c);
    free(buf);
}

// ---- hand-built files: one rule broken at a time -------------------------
typedef struct {
    uint8_t b[4096];
    size_t n;
} bld;

static void put(bld *w, const void *p, size_t n) {
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void u32(bld *w, uint32_t v) { put(w, &v, 4); }
static void u64(bld *w, uint64_t v) { put(w, &v, 8); }
static void str(bld *w, const char *s) {
    u64(w, strlen(s));
    put(w, s, strlen(s));
}
static void hdr(bld *w, uint64_t nt, uint64_t nkv) {
    w->n = 0;
    put(w, "GGUF", 4);
    u32(w, 3);
    u64(w, nt);
    u64(w, nkv);
}
static void tinfo(bld *w, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    str(w, name);
    u32(w, nd);
    for (uint32_t i = 0; i < nd; i++) u64(w, ne[i]);
    u32(w, type);
    u64(w, off);
}
static void pad_data(bld *w, size_t align, size_t data_bytes) {
    while (w->n % align) w->b[w->n++] = 0;
    memset(w->b + w->n, 0x3c, data_bytes);  // fp16 1.0 / small floats
    w->n += data_bytes;
}

static void expect_fail(bld *w, const char *needle, const char *what) {
    char err[PZ_ERRLEN];
    int ok = open_copy(w->b, w->n, err) != NULL;
    CHECKF(!ok && strstr(err, needle), "%s: expected an error containing '%s', got %s", what, needle,
           ok ? "success" : err);
}

static void expect_ok(bld *w, const char *what) {
    char err[PZ_ERRLEN];
    CHECKF(open_copy(w->b, w->n, err) != NULL, "%s: %s", what, err);
}

static void test_rules(void) {
    bld w;
    uint64_t ne1[1] = {32}, ne2[2] = {32, 2};
    // A valid baseline: one f32 tensor, one key.
    hdr(&w, 1, 1);
    str(&w, "a.b");
    u32(&w, PZ_GGUF_U32);
    u32(&w, 7);
    tinfo(&w, "t", 1, ne1, 0, 0);
    pad_data(&w, 32, 128);
    expect_ok(&w, "baseline");

    // Zero tensors and zero keys: valid, no data section needed.
    hdr(&w, 0, 0);
    expect_ok(&w, "empty");
    // Empty arrays are valid.
    hdr(&w, 0, 1);
    str(&w, "arr");
    u32(&w, PZ_GGUF_ARRAY);
    u32(&w, PZ_GGUF_STRING);
    u64(&w, 0);
    expect_ok(&w, "empty array");

    hdr(&w, 0, 1);
    str(&w, "nested");
    u32(&w, PZ_GGUF_ARRAY);
    u32(&w, PZ_GGUF_ARRAY);
    u64(&w, 1);
    u32(&w, PZ_GGUF_U8);
    u64(&w, 1);
    w.b[w.n++] = 1;
    expect_fail(&w, "nested", "nested array");

    hdr(&w, 0, 1);
    str(&w, "k");
    u32(&w, 13);
    expect_fail(&w, "value type 13", "unknown value type");

    hdr(&w, 0, 1);
    str(&w, "k");
    u32(&w, PZ_GGUF_ARRAY);
    u32(&w, 99);
    u64(&w, 0);
    expect_fail(&w, "element type 99", "unknown element type");

    hdr(&w, 0, 2);
    str(&w, "dup");
    u32(&w, PZ_GGUF_U8);
    w.b[w.n++] = 1;
    str(&w, "dup");
    u32(&w, PZ_GGUF_U8);
    w.b[w.n++] = 2;
    expect_fail(&w, "duplicate metadata key", "duplicate key");

    hdr(&w, 0, 1);
    str(&w, "s");
    u32(&w, PZ_GGUF_ARRAY);
    u32(&w, PZ_GGUF_STRING);
    u64(&w, 1ull << 40);
    expect_fail(&w, "array too long", "huge string array");
    hdr(&w, 0, 1);
    str(&w, "s");
    u32(&w, PZ_GGUF_ARRAY);
    u32(&w, PZ_GGUF_STRING);
    u64(&w, 100000);  // within limits, but the file is short
    expect_fail(&w, "truncated", "short string array");

    // Alignment: must be a u32 power of two.
    hdr(&w, 0, 1);
    str(&w, "general.alignment");
    u32(&w, PZ_GGUF_U32);
    u32(&w, 48);
    expect_fail(&w, "power of two", "alignment 48");
    hdr(&w, 0, 1);
    str(&w, "general.alignment");
    u32(&w, PZ_GGUF_U32);
    u32(&w, 0);
    expect_fail(&w, "power of two", "alignment 0");
    hdr(&w, 0, 1);
    str(&w, "general.alignment");
    u32(&w, PZ_GGUF_U64);
    u64(&w, 64);
    expect_fail(&w, "expected u32", "alignment u64");
    hdr(&w, 1, 1);
    str(&w, "general.alignment");
    u32(&w, PZ_GGUF_U32);
    u32(&w, 256);
    tinfo(&w, "t", 1, ne1, 0, 0);
    pad_data(&w, 256, 128);
    expect_ok(&w, "alignment 256");

    // Tensor infos.
    hdr(&w, 2, 0);
    tinfo(&w, "t", 1, ne1, 0, 0);
    tinfo(&w, "t", 1, ne1, 0, 128);
    pad_data(&w, 32, 256);
    expect_fail(&w, "duplicate tensor name", "duplicate tensor");

    uint64_t ne5[5] = {32, 1, 1, 1, 1};
    hdr(&w, 1, 0);
    tinfo(&w, "t", 5, ne5, 0, 0);
    pad_data(&w, 32, 128);
    expect_fail(&w, "dimensions", "5 dims");

    hdr(&w, 1, 0);
    tinfo(&w, "t", 4, ne5, 0, 0);
    pad_data(&w, 32, 128);
    expect_ok(&w, "4 dims");

    uint64_t ne_odd[2] = {48, 2};
    hdr(&w, 1, 0);
    tinfo(&w, "q", 2, ne_odd, PZ_Q8_0, 0);
    pad_data(&w, 32, 3 * 34);
    expect_fail(&w, "not a multiple of 32", "ne0 % block");

    hdr(&w, 1, 0);
    tinfo(&w, "mystery.weight", 2, ne2, 77, 0);
    pad_data(&w, 32, 256);
    expect_fail(&w, "unknown ggml type id 77", "type 77");
    expect_fail(&w, "mystery.weight", "type 77 names the tensor");
    hdr(&w, 1, 0);
    tinfo(&w, "k.weight", 2, ne2, 12, 0);
    pad_data(&w, 32, 256);
    expect_fail(&w, "Q4_K", "known but unsupported type");

    uint64_t ne_big[2] = {1ull << 32, 1ull << 32};
    hdr(&w, 1, 0);
    tinfo(&w, "t", 2, ne_big, 0, 0);
    pad_data(&w, 32, 64);
    expect_fail(&w, "overflow", "element count overflow");
    uint64_t ne_neg[1] = {1ull << 63};
    hdr(&w, 1, 0);
    tinfo(&w, "t", 1, ne_neg, 0, 0);
    pad_data(&w, 32, 64);
    expect_fail(&w, "overflow", "negative dimension");
    uint64_t ne_sz[1] = {1ull << 62};
    hdr(&w, 1, 0);
    tinfo(&w, "t", 1, ne_sz, 0, 0);
    pad_data(&w, 32, 64);
    expect_fail(&w, "overflow", "byte size overflow");

    char longname[80];
    memset(longname, 'x', 64);
    longname[64] = 0;
    hdr(&w, 1, 0);
    tinfo(&w, longname, 1, ne1, 0, 0);
    pad_data(&w, 32, 128);
    expect_fail(&w, "name too long", "64-byte name");
    longname[63] = 0;
    hdr(&w, 1, 0);
    tinfo(&w, longname, 1, ne1, 0, 0);
    pad_data(&w, 32, 128);
    expect_ok(&w, "63-byte name");

    // Offsets: misaligned, overlapping, out of order, gapped, past the end.
    hdr(&w, 1, 0);
    tinfo(&w, "t", 1, ne1, 0, 4);
    pad_data(&w, 32, 160);
    expect_fail(&w, "misaligned", "misaligned offset");
    hdr(&w, 2, 0);
    tinfo(&w, "a", 1, ne1, 0, 0);
    tinfo(&w, "b", 1, ne1, 0, 0);
    pad_data(&w, 32, 256);
    expect_fail(&w, "out of sequence", "overlapping offsets");
    hdr(&w, 2, 0);
    tinfo(&w, "a", 1, ne1, 0, 128);
    tinfo(&w, "b", 1, ne1, 0, 0);
    pad_data(&w, 32, 256);
    expect_fail(&w, "out of sequence", "reversed offsets");
    hdr(&w, 2, 0);
    tinfo(&w, "a", 1, ne1, 0, 0);
    tinfo(&w, "b", 1, ne1, 0, 160);
    pad_data(&w, 32, 288);
    expect_fail(&w, "out of sequence", "gap between tensors");
    hdr(&w, 1, 0);
    tinfo(&w, "t", 1, ne1, 0, 0);
    pad_data(&w, 32, 127);
    expect_fail(&w, "truncated", "data past the end");
    hdr(&w, 1, 0);
    tinfo(&w, "t", 1, ne1, 0, 1ull << 60);
    pad_data(&w, 32, 128);
    expect_fail(&w, "offset", "huge offset");

    // Several types packed with padding between them, as a writer would.
    uint64_t ne64[2] = {64, 3};
    hdr(&w, 3, 0);
    tinfo(&w, "q40", 2, ne64, PZ_Q4_0, 0);     // 6 blocks * 18 = 108 -> 128
    tinfo(&w, "q41", 2, ne64, PZ_Q4_1, 128);   // 120 -> 128
    tinfo(&w, "bf", 2, ne64, PZ_BF16, 256);    // 384
    pad_data(&w, 32, 256 + 384);
    expect_ok(&w, "packed types");
}

static void test_model(void) {
    const char *path = pz_test_model_path();
    if (!path) {
        fprintf(stderr, "PUZZLE_MODEL not set: skipping the reference-model checks\n");
        return;
    }
    char err[PZ_ERRLEN];
    double t0 = pz_now();
    pz_gguf *g = pz_gguf_open(path, err);
    CHECKF(g != NULL, "%s", err);
    if (!g) return;
    printf("opened %s in %.1f ms\n", path, 1e3 * (pz_now() - t0));
    CHECK(pz_gguf_version(g) == 3);
    CHECK(pz_gguf_n_tensors(g) == 272);
    CHECK(pz_gguf_n_kv(g) == 33);
    int counts[31] = {0};
    for (int64_t i = 0; i < pz_gguf_n_tensors(g); i++) counts[pz_gguf_tensor_at(g, i)->type]++;
    CHECK(counts[PZ_Q4_1] == 210 && counts[PZ_F32] == 61 && counts[PZ_Q8_0] == 1);
    const pz_gguf_tensor *e = pz_gguf_find_tensor(g, "token_embd.weight");
    CHECK(e && e->type == PZ_Q8_0 && e->n_dims == 2 && e->ne[0] == 576 && e->ne[1] == 49152);
    const pz_gguf_tensor *d = pz_gguf_find_tensor(g, "blk.0.ffn_down.weight");
    CHECK(d && d->type == PZ_Q4_1 && d->ne[0] == 1536 && d->ne[1] == 576);
    CHECK(pz_gguf_find_tensor(g, "output.weight") == NULL);  // tied embeddings

    struct { const char *key; int64_t v; } ints[] = {
        {"llama.block_count", 30}, {"llama.context_length", 8192}, {"llama.embedding_length", 576},
        {"llama.feed_forward_length", 1536}, {"llama.attention.head_count", 9},
        {"llama.attention.head_count_kv", 3}, {"general.file_type", 3}, {"llama.vocab_size", 49152},
        {"llama.rope.dimension_count", 64}, {"tokenizer.ggml.bos_token_id", 1},
        {"tokenizer.ggml.eos_token_id", 2}, {"tokenizer.ggml.unknown_token_id", 0},
        {"tokenizer.ggml.padding_token_id", 2}, {"general.quantization_version", 2}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v = -1;
        CHECKF(pz_gguf_get_i64(g, ints[i].key, &v) == 0 && v == ints[i].v, "%s = %lld", ints[i].key, (long long)v);
    }
    float f;
    CHECK(pz_gguf_get_f32(g, "llama.rope.freq_base", &f) == 0 && f == 100000.0f);
    CHECK(pz_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f) == 0 && f == 1e-5f);
    int b = -1;
    CHECK(pz_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) == 0 && b == 0);
    pz_gguf_str s;
    CHECK(pz_gguf_get_str(g, "general.architecture", &s) == 0 && str_eq(s, "llama", 5));
    CHECK(pz_gguf_get_str(g, "tokenizer.ggml.pre", &s) == 0 && str_eq(s, "smollm", 6));
    CHECK(pz_gguf_get_str(g, "general.name", &s) == 0 && str_eq(s, "Smollm2 135M 8k Lc100K Mix1 Ep2", 31));
    pz_gguf_type et;
    uint64_t n;
    CHECK(pz_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n) == 0 && et == PZ_GGUF_STRING && n == 49152);
    CHECK(pz_gguf_arr_str(g, "tokenizer.ggml.tokens", 0, &s) == 0 && str_eq(s, "<|endoftext|>", 13));
    CHECK(pz_gguf_arr_str(g, "tokenizer.ggml.tokens", 49151, &s) == 0 && str_eq(s, "ectable", 7));
    CHECK(pz_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n) == 0 && n == 48900);
    CHECK(pz_gguf_arr_str(g, "tokenizer.ggml.merges", 0, &s) == 0 && str_eq(s, "\xc4\xa0 t", 4));
    CHECK(pz_gguf_arr_str(g, "tokenizer.ggml.merges", 48899, &s) == 0 && str_eq(s, "ect able", 8));
    int64_t tt;
    CHECK(pz_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n) == 0 && et == PZ_GGUF_I32 && n == 49152);
    CHECK(pz_gguf_arr_i64(g, "tokenizer.ggml.token_type", 0, &tt) == 0 && tt == 3);
    CHECK(pz_gguf_arr_i64(g, "tokenizer.ggml.token_type", 49151, &tt) == 0 && tt == 1);

    // Spot values dequantized by gguf-py.
    size_t len;
    char *spots = slurp("model_spots.txt", &len);
    int n_spots = 0;
    for (char *line = spots ? strtok(spots, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char name[64];
        unsigned long long start;
        int pos;
        if (sscanf(line, "%63s %llu%n", name, &start, &pos) < 2) continue;
        const pz_gguf_tensor *t = pz_gguf_find_tensor(g, name);
        CHECKF(t != NULL, "%s", name);
        if (!t) continue;
        // Dequantize the whole blocks around the window.
        size_t be = (size_t)pz_dtype_block_elems(t->type), first = (size_t)start / be * be, bytes;
        size_t cnt = ((size_t)start + 64 - first + be - 1) / be * be;
        pz_dtype_row_bytes(t->type, first, &bytes);
        float *out = malloc(cnt * sizeof(float));
        pz_to_f32(t->type, (const char *)t->data + bytes, out, cnt);
        const char *p = line + pos;
        int bad = 0;
        for (int j = 0; j < 64; j++) {
            unsigned v;
            int adv;
            sscanf(p, "%x%n", &v, &adv);
            p += adv;
            uint32_t got;
            memcpy(&got, &out[start - first + (size_t)j], 4);
            bad += got != v;
        }
        CHECKF(bad == 0, "%s @%llu: %d values differ from gguf-py", name, start, bad);
        free(out);
        n_spots++;
    }
    CHECK(n_spots == 8);
    free(spots);

    // Dequantize every tensor once: no NaN or inf in a trained model.
    int nonfinite = 0;
    for (int64_t i = 0; i < pz_gguf_n_tensors(g); i++) {
        const pz_gguf_tensor *t = pz_gguf_tensor_at(g, i);
        float *out = malloc(t->n_elems * sizeof(float));
        pz_to_f32(t->type, t->data, out, t->n_elems);
        for (uint64_t j = 0; j < t->n_elems; j++) nonfinite += !isfinite(out[j]);
        free(out);
    }
    CHECK(nonfinite == 0);
    pz_gguf_close(g);
}

int main(void) {
    char err[PZ_ERRLEN];
    CHECK(pz_gguf_open("/nonexistent/x.gguf", err) == NULL && strstr(err, "/nonexistent/x.gguf"));
    CHECK(pz_gguf_open("/tmp", err) == NULL && strstr(err, "regular"));
    check_fixture("small", 32);
    check_fixture("align64", 64);
    test_hostile_file();
    test_rules();
    test_model();
    return pz_test_finish("test_gguf");
}
