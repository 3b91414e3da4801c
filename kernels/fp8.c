// fp8.c — see fp8.h. Encoding works on the fp32 bit pattern: a normal
// result is the fp32 exponent rebiased and the mantissa cut to 3 (e4m3) or
// 2 (e5m2) bits, rounded to nearest even on the bits cut; a subnormal result
// is the 24-bit significand shifted down to the subnormal unit, rounded the
// same way. A carry out of the mantissa moves into the exponent by itself,
// so the largest subnormal rounds up to the smallest normal and a mantissa
// of all ones to the next power of two.
#include "fp8.h"

#include <math.h>
#include <string.h>

// Decode tables, every code written out (generated from the definitions in
// fp8.h; tests/test_fp8.c checks each entry against them).
static const float e4m3_table[256] = {
    0.0f, 0.001953125f, 0.00390625f, 0.005859375f, 0.0078125f, 0.009765625f, 0.01171875f, 0.013671875f,
    0.015625f, 0.017578125f, 0.01953125f, 0.021484375f, 0.0234375f, 0.025390625f, 0.02734375f, 0.029296875f,
    0.03125f, 0.03515625f, 0.0390625f, 0.04296875f, 0.046875f, 0.05078125f, 0.0546875f, 0.05859375f,
    0.0625f, 0.0703125f, 0.078125f, 0.0859375f, 0.09375f, 0.1015625f, 0.109375f, 0.1171875f,
    0.125f, 0.140625f, 0.15625f, 0.171875f, 0.1875f, 0.203125f, 0.21875f, 0.234375f,
    0.25f, 0.28125f, 0.3125f, 0.34375f, 0.375f, 0.40625f, 0.4375f, 0.46875f,
    0.5f, 0.5625f, 0.625f, 0.6875f, 0.75f, 0.8125f, 0.875f, 0.9375f,
    1.0f, 1.125f, 1.25f, 1.375f, 1.5f, 1.625f, 1.75f, 1.875f,
    2.0f, 2.25f, 2.5f, 2.75f, 3.0f, 3.25f, 3.5f, 3.75f,
    4.0f, 4.5f, 5.0f, 5.5f, 6.0f, 6.5f, 7.0f, 7.5f,
    8.0f, 9.0f, 10.0f, 11.0f, 12.0f, 13.0f, 14.0f, 15.0f,
    16.0f, 18.0f, 20.0f, 22.0f, 24.0f, 26.0f, 28.0f, 30.0f,
    32.0f, 36.0f, 40.0f, 44.0f, 48.0f, 52.0f, 56.0f, 60.0f,
    64.0f, 72.0f, 80.0f, 88.0f, 96.0f, 104.0f, 112.0f, 120.0f,
    128.0f, 144.0f, 160.0f, 176.0f, 192.0f, 208.0f, 224.0f, 240.0f,
    256.0f, 288.0f, 320.0f, 352.0f, 384.0f, 416.0f, 448.0f, NAN,
    -0.0f, -0.001953125f, -0.00390625f, -0.005859375f, -0.0078125f, -0.009765625f, -0.01171875f, -0.013671875f,
    -0.015625f, -0.017578125f, -0.01953125f, -0.021484375f, -0.0234375f, -0.025390625f, -0.02734375f, -0.029296875f,
    -0.03125f, -0.03515625f, -0.0390625f, -0.04296875f, -0.046875f, -0.05078125f, -0.0546875f, -0.05859375f,
    -0.0625f, -0.0703125f, -0.078125f, -0.0859375f, -0.09375f, -0.1015625f, -0.109375f, -0.1171875f,
    -0.125f, -0.140625f, -0.15625f, -0.171875f, -0.1875f, -0.203125f, -0.21875f, -0.234375f,
    -0.25f, -0.28125f, -0.3125f, -0.34375f, -0.375f, -0.40625f, -0.4375f, -0.46875f,
    -0.5f, -0.5625f, -0.625f, -0.6875f, -0.75f, -0.8125f, -0.875f, -0.9375f,
    -1.0f, -1.125f, -1.25f, -1.375f, -1.5f, -1.625f, -1.75f, -1.875f,
    -2.0f, -2.25f, -2.5f, -2.75f, -3.0f, -3.25f, -3.5f, -3.75f,
    -4.0f, -4.5f, -5.0f, -5.5f, -6.0f, -6.5f, -7.0f, -7.5f,
    -8.0f, -9.0f, -10.0f, -11.0f, -12.0f, -13.0f, -14.0f, -15.0f,
    -16.0f, -18.0f, -20.0f, -22.0f, -24.0f, -26.0f, -28.0f, -30.0f,
    -32.0f, -36.0f, -40.0f, -44.0f, -48.0f, -52.0f, -56.0f, -60.0f,
    -64.0f, -72.0f, -80.0f, -88.0f, -96.0f, -104.0f, -112.0f, -120.0f,
    -128.0f, -144.0f, -160.0f, -176.0f, -192.0f, -208.0f, -224.0f, -240.0f,
    -256.0f, -288.0f, -320.0f, -352.0f, -384.0f, -416.0f, -448.0f, NAN,
};
static const float e5m2_table[256] = {
    0.0f, 1.52587890625e-05f, 3.0517578125e-05f, 4.57763671875e-05f, 6.103515625e-05f, 7.62939453125e-05f, 9.1552734375e-05f, 0.0001068115234375f,
    0.0001220703125f, 0.000152587890625f, 0.00018310546875f, 0.000213623046875f, 0.000244140625f, 0.00030517578125f, 0.0003662109375f, 0.00042724609375f,
    0.00048828125f, 0.0006103515625f, 0.000732421875f, 0.0008544921875f, 0.0009765625f, 0.001220703125f, 0.00146484375f, 0.001708984375f,
    0.001953125f, 0.00244140625f, 0.0029296875f, 0.00341796875f, 0.00390625f, 0.0048828125f, 0.005859375f, 0.0068359375f,
    0.0078125f, 0.009765625f, 0.01171875f, 0.013671875f, 0.015625f, 0.01953125f, 0.0234375f, 0.02734375f,
    0.03125f, 0.0390625f, 0.046875f, 0.0546875f, 0.0625f, 0.078125f, 0.09375f, 0.109375f,
    0.125f, 0.15625f, 0.1875f, 0.21875f, 0.25f, 0.3125f, 0.375f, 0.4375f,
    0.5f, 0.625f, 0.75f, 0.875f, 1.0f, 1.25f, 1.5f, 1.75f,
    2.0f, 2.5f, 3.0f, 3.5f, 4.0f, 5.0f, 6.0f, 7.0f,
    8.0f, 10.0f, 12.0f, 14.0f, 16.0f, 20.0f, 24.0f, 28.0f,
    32.0f, 40.0f, 48.0f, 56.0f, 64.0f, 80.0f, 96.0f, 112.0f,
    128.0f, 160.0f, 192.0f, 224.0f, 256.0f, 320.0f, 384.0f, 448.0f,
    512.0f, 640.0f, 768.0f, 896.0f, 1024.0f, 1280.0f, 1536.0f, 1792.0f,
    2048.0f, 2560.0f, 3072.0f, 3584.0f, 4096.0f, 5120.0f, 6144.0f, 7168.0f,
    8192.0f, 10240.0f, 12288.0f, 14336.0f, 16384.0f, 20480.0f, 24576.0f, 28672.0f,
    32768.0f, 40960.0f, 49152.0f, 57344.0f, INFINITY, NAN, NAN, NAN,
    -0.0f, -1.52587890625e-05f, -3.0517578125e-05f, -4.57763671875e-05f, -6.103515625e-05f, -7.62939453125e-05f, -9.1552734375e-05f, -0.0001068115234375f,
    -0.0001220703125f, -0.000152587890625f, -0.00018310546875f, -0.000213623046875f, -0.000244140625f, -0.00030517578125f, -0.0003662109375f, -0.00042724609375f,
    -0.00048828125f, -0.0006103515625f, -0.000732421875f, -0.0008544921875f, -0.0009765625f, -0.001220703125f, -0.00146484375f, -0.001708984375f,
    -0.001953125f, -0.00244140625f, -0.0029296875f, -0.00341796875f, -0.00390625f, -0.0048828125f, -0.005859375f, -0.0068359375f,
    -0.0078125f, -0.009765625f, -0.01171875f, -0.013671875f, -0.015625f, -0.01953125f, -0.0234375f, -0.02734375f,
    -0.03125f, -0.0390625f, -0.046875f, -0.0546875f, -0.0625f, -0.078125f, -0.09375f, -0.109375f,
    -0.125f, -0.15625f, -0.1875f, -0.21875f, -0.25f, -0.3125f, -0.375f, -0.4375f,
    -0.5f, -0.625f, -0.75f, -0.875f, -1.0f, -1.25f, -1.5f, -1.75f,
    -2.0f, -2.5f, -3.0f, -3.5f, -4.0f, -5.0f, -6.0f, -7.0f,
    -8.0f, -10.0f, -12.0f, -14.0f, -16.0f, -20.0f, -24.0f, -28.0f,
    -32.0f, -40.0f, -48.0f, -56.0f, -64.0f, -80.0f, -96.0f, -112.0f,
    -128.0f, -160.0f, -192.0f, -224.0f, -256.0f, -320.0f, -384.0f, -448.0f,
    -512.0f, -640.0f, -768.0f, -896.0f, -1024.0f, -1280.0f, -1536.0f, -1792.0f,
    -2048.0f, -2560.0f, -3072.0f, -3584.0f, -4096.0f, -5120.0f, -6144.0f, -7168.0f,
    -8192.0f, -10240.0f, -12288.0f, -14336.0f, -16384.0f, -20480.0f, -24576.0f, -28672.0f,
    -32768.0f, -40960.0f, -49152.0f, -57344.0f, -INFINITY, NAN, NAN, NAN,
};

const float *pz_e4m3_table(void) { return e4m3_table; }
const float *pz_e5m2_table(void) { return e5m2_table; }
float pz_e4m3_to_f32(uint8_t c) { return e4m3_table[c]; }
float pz_e5m2_to_f32(uint8_t c) { return e5m2_table[c]; }

// q = v >> shift rounded to nearest even on the bits shifted out (shift 1..31).
static inline uint32_t shift_rne(uint32_t v, int shift) {
    uint32_t q = v >> shift, rem = v & ((1u << shift) - 1), half = 1u << (shift - 1);
    return q + (rem > half || (rem == half && (q & 1)));
}

// A format with `mb` mantissa bits and exponent bias `bias`; `maxbits` is the
// fp32 pattern of its largest finite value and `maxcode` its code; `nan` the
// code of a positive NaN.
static inline uint8_t encode(float f, int mb, int bias, uint32_t maxbits, uint8_t maxcode, uint8_t nan) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | nan;
    if (a >= maxbits) return sign | maxcode;  // saturate, ±inf included
    int e = (int)(a >> 23) - 127;              // unbiased exponent (fp32 subnormals: -127)
    if (e >= 1 - bias)                         // normal in the target: rebias, cut the mantissa
        return sign | (uint8_t)shift_rne(a - ((uint32_t)(127 - bias) << 23), 23 - mb);
    if (e == -127) return sign;                // fp32 zero or subnormal: far below the unit
    // subnormal: significand (with its leading one) in units of 2^(1-bias-mb)
    int shift = 23 + 1 - bias - mb - e;
    if (shift >= 32) return sign;
    return sign | (uint8_t)shift_rne((a & 0x7fffffu) | 0x800000u, shift);
}

uint8_t pz_f32_to_e4m3(float f) { return encode(f, 3, 7, 0x43e00000u, 0x7e, 0x7f); }
uint8_t pz_f32_to_e5m2(float f) { return encode(f, 2, 15, 0x47600000u, 0x7b, 0x7f); }

void pz_f32_to_e4m3_row(const float *src, uint8_t *dst, size_t n, float inv_scale) {
    for (size_t i = 0; i < n; i++) dst[i] = pz_f32_to_e4m3(src[i] * inv_scale);
}

void pz_e4m3_to_f32_row(const uint8_t *src, float *dst, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) dst[i] = e4m3_table[src[i]] * scale;
}

int pz_e4m3_scale_for(const float *x, size_t n, float *scale) {
    float amax = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return -1;
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    *scale = amax > 0 ? amax / PZ_E4M3_MAX : 1.0f;
    return 0;
}
