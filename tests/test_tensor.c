// test_tensor.c — dtype tables, scalar conversions and block dequantization.
// fp32->bf16 is compared bit for bit with gguf-py's implementation of ggml's
// rounding and fp32->fp16 with numpy (tests/data/formats/conv_cases.bin);
// the block formats are checked here on hand-built blocks and in test_gguf
// against gguf-py's dequantize.
#include "common.h"
#include "tensor.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static void test_tables(void) {
    CHECK(strcmp(pz_dtype_name(PZ_Q4_1), "Q4_1") == 0 && strcmp(pz_dtype_name(PZ_BF16), "BF16") == 0);
    CHECK(strcmp(pz_dtype_name((pz_dtype)12), "?") == 0);
    int ids[] = {0, 1, 2, 3, 8, 30};
    int be[] = {1, 1, 32, 32, 32, 1}, bb[] = {4, 2, 18, 20, 34, 2};
    for (int i = 0; i < 6; i++) {
        CHECK(pz_dtype_supported(ids[i]));
        CHECK(pz_dtype_block_elems((pz_dtype)ids[i]) == be[i]);
        CHECK(pz_dtype_block_bytes((pz_dtype)ids[i]) == bb[i]);
    }
    for (int t = -1; t < 50; t++) {
        int known = 0;
        for (int i = 0; i < 6; i++) known |= t == ids[i];
        CHECK(pz_dtype_supported(t) == known);
    }
    size_t n;
    CHECK(pz_dtype_row_bytes(PZ_Q4_1, 64, &n) == 0 && n == 40);
    CHECK(pz_dtype_row_bytes(PZ_Q8_0, 576, &n) == 0 && n == 18 * 34);
    CHECK(pz_dtype_row_bytes(PZ_F32, 5, &n) == 0 && n == 20);
    CHECK(pz_dtype_row_bytes(PZ_Q4_0, 33, &n) != 0);
    CHECK(pz_dtype_row_bytes(PZ_F32, UINT64_MAX / 2, &n) != 0);
    CHECK(pz_dtype_row_bytes((pz_dtype)12, 32, &n) != 0);
}

// Every binary16 value against its mathematical value.
static void test_f16_exhaustive(void) {
    int bad = 0, bad_rt = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        float f = pz_f16_to_f32((uint16_t)h);
        if (e == 31) {
            bad += m ? !isnan(f) : !(isinf(f) && (signbit(f) != 0) == s);
            if (m) bad_rt += !(pz_f32_to_f16(f) & 0x7c00) || !(pz_f32_to_f16(f) & 0x3ff);
            continue;
        }
        double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        if (s) v = -v;
        bad += (double)f != v || (signbit(f) != 0) != s;
        bad_rt += pz_f32_to_f16(f) != h;  // exact values round-trip
    }
    CHECKF(bad == 0, "%d fp16 values decoded wrong", bad);
    CHECKF(bad_rt == 0, "%d fp16 values do not round-trip", bad_rt);
}

static void test_conv_cases(void) {
    char path[512], err[PZ_ERRLEN];
    size_t len;
    snprintf(path, sizeof path, "%s/formats/conv_cases.bin", pz_test_data_dir());
    char *b = pz_read_file(path, 1 << 20, &len, err);
    CHECKF(b != NULL, "%s", err);
    if (!b) return;
    uint32_t n;
    memcpy(&n, b, 4);
    CHECK(len == 4 + (size_t)n * 8);
    if (len != 4 + (size_t)n * 8) {
        free(b);
        return;
    }
    float *x = malloc(n * sizeof *x);
    uint16_t *bf = malloc(n * 2), *hf = malloc(n * 2), *row = malloc(n * 2);
    memcpy(x, b + 4, n * 4);
    memcpy(bf, b + 4 + n * 4, n * 2);
    memcpy(hf, b + 4 + n * 6, n * 2);
    int bad_bf = 0, bad_hf = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint16_t got = pz_f32_to_bf16(x[i]);
        if (got != bf[i]) {
            if (bad_bf++ < 5) fprintf(stderr, "bf16(%08x) = %04x, gguf says %04x\n", bits(x[i]), got, bf[i]);
        }
        uint16_t h = pz_f32_to_f16(x[i]);
        if (isnan(x[i])) {
            bad_hf += !((h & 0x7c00) == 0x7c00 && (h & 0x3ff));
        } else if (h != hf[i]) {
            if (bad_hf++ < 5) fprintf(stderr, "f16(%08x) = %04x, numpy says %04x\n", bits(x[i]), h, hf[i]);
        }
    }
    CHECKF(bad_bf == 0, "%d of %u bf16 conversions differ from gguf-py", bad_bf, n);
    CHECKF(bad_hf == 0, "%d of %u fp16 conversions differ from numpy", bad_hf, n);
    pz_f32_to_bf16_row(x, row, n);
    CHECK(memcmp(row, bf, n * 2) == 0);
    float *back = malloc(n * sizeof *back);
    pz_bf16_to_f32_row(row, back, n);
    int bad_back = 0;
    for (uint32_t i = 0; i < n; i++) bad_back += bits(back[i]) != (uint32_t)row[i] << 16;
    CHECK(bad_back == 0);
    free(back);
    free(x);
    free(bf);
    free(hf);
    free(row);
    free(b);
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

static void test_blocks(void) {
    // Two blocks each, at odd addresses (sources are unaligned in mmaps).
    uint8_t raw[2 * 34 + 1], *q = raw + 1;
    float out[64];
    for (int b = 0; b < 2; b++) {
        put16(q + 34 * b, pz_f32_to_f16(b ? -0.25f : 0.5f));
        for (int j = 0; j < 32; j++) q[34 * b + 2 + j] = (uint8_t)(int8_t)(j * 8 - 128);
    }
    pz_to_f32(PZ_Q8_0, q, out, 64);
    int bad = 0;
    for (int i = 0; i < 64; i++) bad += out[i] != (float)((i % 32) * 8 - 128) * (i < 32 ? 0.5f : -0.25f);
    CHECK(bad == 0);

    uint8_t r40[2 * 18 + 1], *q40 = r40 + 1;
    for (int b = 0; b < 2; b++) {
        put16(q40 + 18 * b, pz_f32_to_f16(b ? 2.0f : 0.125f));
        for (int j = 0; j < 16; j++) q40[18 * b + 2 + j] = (uint8_t)(j | ((15 - j) << 4));
    }
    pz_to_f32(PZ_Q4_0, q40, out, 64);
    bad = 0;
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < 16; j++) {
            float d = b ? 2.0f : 0.125f;
            bad += out[32 * b + j] != (float)(j - 8) * d;              // low nibbles: elements 0-15
            bad += out[32 * b + 16 + j] != (float)(15 - j - 8) * d;    // high nibbles: 16-31
        }
    CHECK(bad == 0);

    uint8_t r41[2 * 20 + 1], *q41 = r41 + 1;
    for (int b = 0; b < 2; b++) {
        put16(q41 + 20 * b, pz_f32_to_f16(b ? 0.1f : 1.0f));
        put16(q41 + 20 * b + 2, pz_f32_to_f16(b ? -1.5f : 3.0f));
        for (int j = 0; j < 16; j++) q41[20 * b + 4 + j] = (uint8_t)((j * 7 % 16) | (j << 4));
    }
    pz_to_f32(PZ_Q4_1, q41, out, 64);
    bad = 0;
    for (int b = 0; b < 2; b++) {
        float d = pz_f16_to_f32(pz_f32_to_f16(b ? 0.1f : 1.0f)), m = b ? -1.5f : 3.0f;
        for (int j = 0; j < 16; j++) {
            float lo = (float)(j * 7 % 16) * d, hi = (float)j * d;
            bad += out[32 * b + j] != lo + m;
            bad += out[32 * b + 16 + j] != hi + m;
        }
    }
    CHECK(bad == 0);

    uint8_t r16[7];
    put16(r16 + 1, 0x3c00);  // 1.0
    put16(r16 + 3, 0xc000);  // -2.0
    put16(r16 + 5, 0x7c00);  // inf
    pz_to_f32(PZ_F16, r16 + 1, out, 3);
    CHECK(out[0] == 1.0f && out[1] == -2.0f && isinf(out[2]));
    put16(r16 + 1, 0x3f80);  // bf16 1.0
    put16(r16 + 3, 0xc040);  // -3.0
    pz_to_f32(PZ_BF16, r16 + 1, out, 2);
    CHECK(out[0] == 1.0f && out[1] == -3.0f);
    float f[3] = {1.5f, -0.0f, 7.25f};
    uint8_t r32[13];
    memcpy(r32 + 1, f, 12);
    pz_to_f32(PZ_F32, r32 + 1, out, 3);
    CHECK(memcmp(out, f, 12) == 0);

    // Specific roundings: ties to even, NaN quieted, overflow to inf.
    CHECK(pz_f32_to_bf16(1.0f) == 0x3f80);
    float tie;
    uint32_t u = 0x3f808000;  // halfway between 0x3f80 and 0x3f81: even is 0x3f80
    memcpy(&tie, &u, 4);
    CHECK(pz_f32_to_bf16(tie) == 0x3f80);
    u = 0x3f818000;
    memcpy(&tie, &u, 4);
    CHECK(pz_f32_to_bf16(tie) == 0x3f82);
    u = 0x7f800001;  // signalling NaN
    memcpy(&tie, &u, 4);
    CHECK(pz_f32_to_bf16(tie) == 0x7fc0);
    CHECK(pz_f32_to_f16(65504.0f) == 0x7bff && pz_f32_to_f16(65520.0f) == 0x7c00);
    CHECK(pz_f32_to_f16(-1e-8f) == 0x8000 && pz_f32_to_f16(5.9604645e-8f) == 0x0001);
}

int main(void) {
    test_tables();
    test_f16_exhaustive();
    test_conv_cases();
    test_blocks();
    return pz_test_finish("test_tensor");
}
