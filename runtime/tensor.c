// tensor.c — element types and their reference conversions to fp32.
//
// These loops are the ground truth the faster kernels are tested against, so
// each one follows ggml's dequantize_row_* (and gguf-py's numpy dequantize,
// which our tests compare with bit for bit). In particular the affine formats
// compute q*d first and then add m in a separate statement: a fused
// multiply-add would round once instead of twice and no longer match.
#include "tensor.h"

#include <string.h>

#define QK 32  // elements per block for all the Q formats we read

const char *pz_dtype_name(pz_dtype t) {
    switch (t) {
    case PZ_F32: return "F32";
    case PZ_F16: return "F16";
    case PZ_Q4_0: return "Q4_0";
    case PZ_Q4_1: return "Q4_1";
    case PZ_Q8_0: return "Q8_0";
    case PZ_BF16: return "BF16";
    default: return "?";
    }
}

int pz_dtype_supported(int ggml_type) {
    switch (ggml_type) {
    case PZ_F32: case PZ_F16: case PZ_Q4_0: case PZ_Q4_1: case PZ_Q8_0: case PZ_BF16:
        return 1;
    default:
        return 0;
    }
}

int pz_dtype_block_elems(pz_dtype t) {
    switch (t) {
    case PZ_F32: case PZ_F16: case PZ_BF16: return 1;
    case PZ_Q4_0: case PZ_Q4_1: case PZ_Q8_0: return QK;
    default: return 0;
    }
}

int pz_dtype_block_bytes(pz_dtype t) {
    switch (t) {
    case PZ_F32: return 4;
    case PZ_F16: return 2;
    case PZ_BF16: return 2;
    case PZ_Q4_0: return 2 + QK / 2;
    case PZ_Q4_1: return 4 + QK / 2;
    case PZ_Q8_0: return 2 + QK;
    default: return 0;
    }
}

int pz_dtype_row_bytes(pz_dtype t, uint64_t n, size_t *out) {
    int be = pz_dtype_block_elems(t), bb = pz_dtype_block_bytes(t);
    if (be <= 0 || bb <= 0 || n % (uint64_t)be != 0) return -1;
    uint64_t blocks = n / (uint64_t)be;
    if (blocks > SIZE_MAX / (uint64_t)bb) return -1;
    *out = (size_t)(blocks * (uint64_t)bb);
    return 0;
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Exact: every binary16 value is representable in binary32.
float pz_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f)  // inf / NaN: keep the payload
        return bits_f32(sign | 0x7f800000u | (man << 13));
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        // Subnormal: renormalize.
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400));
        man &= 0x3ff;
        return bits_f32(sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13));
    }
    return bits_f32(sign | ((exp + 127 - 15) << 23) | (man << 13));
}

// Round to nearest even, overflow to inf, NaN stays NaN (quiet), as IEEE
// conversion (and numpy's astype(float16), F16C's vcvtps2ph) does.
uint16_t pz_f32_to_f16(float f) {
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff));
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);  // rounds to >= 65520: inf
    if (a < 0x38800000u) {
        // Result is subnormal (or zero) in fp16: value = a / 2^-24 units.
        if (a < 0x33000000u) return sign;  // < 2^-25: rounds to zero
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;  // 14..24 (bits dropped = 13 + (113 - e))
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t r = a - 0x38000000u;  // rebias exponent 127 -> 15, mantissa kept
    uint32_t q = r >> 13;
    uint32_t rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;  // carry may bump exponent: still correct
    return (uint16_t)(sign | q);
}

float pz_bf16_to_f32(uint16_t b) { return bits_f32((uint32_t)b << 16); }

// ggml_compute_fp32_to_bf16: quiet the NaN by setting bit 6, else RNE.
uint16_t pz_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

void pz_f32_to_bf16_row(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = pz_f32_to_bf16(src[i]);
}

void pz_bf16_to_f32_row(const uint16_t *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = pz_bf16_to_f32(src[i]);
}

// Sources come from mmaps with arbitrary alignment: read through memcpy.
static uint16_t ld16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static void deq_q8_0(const uint8_t *src, float *dst, size_t nb) {
    for (size_t b = 0; b < nb; b++, src += 34, dst += QK) {
        float d = pz_f16_to_f32(ld16(src));
        const int8_t *qs = (const int8_t *)(src + 2);
        for (int j = 0; j < QK; j++) dst[j] = (float)qs[j] * d;
    }
}

static void deq_q4_0(const uint8_t *src, float *dst, size_t nb) {
    for (size_t b = 0; b < nb; b++, src += 18, dst += QK) {
        float d = pz_f16_to_f32(ld16(src));
        const uint8_t *qs = src + 2;
        for (int j = 0; j < QK / 2; j++) {
            dst[j] = (float)((int)(qs[j] & 0x0f) - 8) * d;
            dst[j + QK / 2] = (float)((int)(qs[j] >> 4) - 8) * d;
        }
    }
}

static void deq_q4_1(const uint8_t *src, float *dst, size_t nb) {
    for (size_t b = 0; b < nb; b++, src += 20, dst += QK) {
        float d = pz_f16_to_f32(ld16(src));
        float m = pz_f16_to_f32(ld16(src + 2));
        const uint8_t *qs = src + 4;
        for (int j = 0; j < QK / 2; j++) {
            float lo = (float)(qs[j] & 0x0f) * d;  // separate statements: no FMA contraction
            float hi = (float)(qs[j] >> 4) * d;
            dst[j] = lo + m;
            dst[j + QK / 2] = hi + m;
        }
    }
}

void pz_to_f32(pz_dtype t, const void *src, float *dst, size_t n) {
    const uint8_t *s = (const uint8_t *)src;
    switch (t) {
    case PZ_F32:
        memcpy(dst, s, n * 4);
        break;
    case PZ_F16:
        for (size_t i = 0; i < n; i++) dst[i] = pz_f16_to_f32(ld16(s + 2 * i));
        break;
    case PZ_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = pz_bf16_to_f32(ld16(s + 2 * i));
        break;
    case PZ_Q8_0: deq_q8_0(s, dst, n / QK); break;
    case PZ_Q4_0: deq_q4_0(s, dst, n / QK); break;
    case PZ_Q4_1: deq_q4_1(s, dst, n / QK); break;
    default: break;
    }
}
