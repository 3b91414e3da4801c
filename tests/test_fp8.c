// test_fp8.c — the FP8 conversions of kernels/fp8.h, exhaustively: every
// one of the 256 codes of each format decoded against the definition of the
// format written here independently (sign · 2^(e-bias) · (1 + m/2^mb), or
// m · 2^(1-bias-mb) for e = 0), every code re-encoded, every midpoint
// between adjacent codes (ties to the even code, one fp32 step either side
// to the nearer code), saturation, NaN, and random fp32 values against a
// nearest-code search over the definition's values.
#include "testutil.h"
#include "fp8.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int eb, mb, bias;          // exponent bits, mantissa bits, bias
    int ieee_inf;              // e5m2: top exponent is inf/NaN; e4m3fn: only S.1111.111 is NaN
    uint8_t (*enc)(float);
    float (*dec)(uint8_t);
    const float *(*table)(void);
    float max;
} fmt;

// The definition: NAN for the NaN codes, ±INFINITY for e5m2's infinities.
static double def_value(const fmt *f, int c) {
    int s = c >> 7, e = (c >> f->mb) & ((1 << f->eb) - 1), m = c & ((1 << f->mb) - 1);
    int emax = (1 << f->eb) - 1;
    if (f->ieee_inf && e == emax) return m ? NAN : (s ? -INFINITY : INFINITY);
    if (!f->ieee_inf && e == emax && m == (1 << f->mb) - 1) return NAN;
    double v = e == 0 ? ldexp(m, 1 - f->bias - f->mb) : ldexp(1.0 + ldexp(m, -f->mb), e - f->bias);
    return s ? -v : v;
}

static int is_nan_code(const fmt *f, int c) { return isnan(def_value(f, c)); }

// Reference encoder: the code whose value is nearest (ties: the even code),
// saturating at ±max (±inf included), NaN to S|0x7f.
static uint8_t ref_encode(const fmt *f, float x) {
    if (isnan(x)) return (uint8_t)((signbit(x) ? 0x80 : 0) | 0x7f);
    int neg = signbit(x) != 0;
    double a = fabs((double)x);
    if (a >= f->max) return (uint8_t)((neg ? 0x80 : 0) | f->enc(f->max));
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c < 128; c++) {
        double v = def_value(f, c);
        if (isnan(v) || isinf(v)) continue;
        double d = fabs(v - a);
        if (d < bd || (d == bd && (c & 1) == 0)) bd = d, best = c;
    }
    return (uint8_t)((neg ? 0x80 : 0) | best);
}

static void test_format(const fmt *f) {
    const float *tab = f->table();
    int bad_dec = 0, bad_rt = 0, bad_mid = 0, n_mid = 0;
    // 1. every code decodes to its definition (bit for bit; signed zeros too)
    for (int c = 0; c < 256; c++) {
        double v = def_value(f, c);
        float d = f->dec((uint8_t)c);
        int ok = isnan(v) ? isnan(d) : ((double)d == v && !signbit(d) == !signbit(v) && tab[c] == d);
        if (!ok && bad_dec++ < 5) fprintf(stderr, "%s: code 0x%02x decodes to %g, definition %g\n", f->name, c, d, v);
    }
    CHECKF(bad_dec == 0, "%s: %d codes decode wrongly", f->name, bad_dec);
    // 2. encode(decode(c)) == c for every non-NaN code (e5m2's infinities saturate)
    for (int c = 0; c < 256; c++) {
        if (is_nan_code(f, c)) continue;
        double v = def_value(f, c);
        uint8_t want = isinf(v) ? (uint8_t)((c & 0x80) | f->enc(f->max)) : (uint8_t)c;
        uint8_t got = f->enc((float)v);
        if (got != want && bad_rt++ < 5) fprintf(stderr, "%s: encode(decode(0x%02x)) = 0x%02x\n", f->name, c, got);
    }
    CHECKF(bad_rt == 0, "%s: %d codes do not survive a round trip", f->name, bad_rt);
    // 3. midpoints between adjacent finite codes, both signs: the tie goes to
    // the even code; one fp32 step below / above goes to the lower / upper one
    for (int c = 0; c < 127; c++) {
        double lo = def_value(f, c), hi = def_value(f, c + 1);
        if (isnan(hi) || isinf(hi)) continue;
        float mid = (float)((lo + hi) / 2);
        CHECK((double)mid == (lo + hi) / 2);  // midpoints are exact in fp32
        for (int s = 0; s < 2; s++) {
            float sg = s ? -1.0f : 1.0f;
            uint8_t sb = s ? 0x80 : 0;
            uint8_t even = (uint8_t)(sb | ((c & 1) ? c + 1 : c));
            uint8_t below = f->enc(sg * nextafterf(mid, 0.0f)), at = f->enc(sg * mid);
            uint8_t above = f->enc(sg * nextafterf(mid, INFINITY));
            n_mid++;
            if ((at != even || below != (sb | c) || above != (sb | (c + 1))) && bad_mid++ < 5)
                fprintf(stderr, "%s: midpoint %g of 0x%02x/0x%02x: below 0x%02x at 0x%02x above 0x%02x\n",
                        f->name, (double)(sg * mid), c, c + 1, below, at, above);
        }
    }
    CHECKF(bad_mid == 0 && n_mid > 200, "%s: %d of %d midpoints round wrongly", f->name, bad_mid, n_mid);
    // 4. saturation: beyond max, and ±inf, give ±max; NaN stays NaN with its sign
    uint8_t maxc = f->enc(f->max);
    CHECK(f->dec(maxc) == f->max && (maxc & 0x80) == 0);
    float big[] = {nextafterf(f->max, INFINITY), f->max * 1.0625f, f->max * 1.2f, 1e30f, 3.4e38f, INFINITY};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        CHECKF(f->enc(big[i]) == maxc, "%s: %g -> 0x%02x", f->name, (double)big[i], f->enc(big[i]));
        CHECKF(f->enc(-big[i]) == (0x80 | maxc), "%s: %g -> 0x%02x", f->name, (double)-big[i], f->enc(-big[i]));
    }
    CHECK(f->enc(NAN) == 0x7f && f->enc(-NAN) == 0xff);
    CHECK(is_nan_code(f, 0x7f) && is_nan_code(f, 0xff));
    // 5. subnormals and the bottom: half the smallest subnormal ties to 0,
    // anything above it gives the smallest; tiny values keep their sign
    float tiny = (float)ldexp(1.0, 1 - f->bias - f->mb);
    CHECK(f->dec(0x01) == tiny && f->enc(tiny) == 0x01);
    CHECK(f->enc(tiny / 2) == 0x00 && f->enc(nextafterf(tiny / 2, 1.0f)) == 0x01);
    CHECK(f->enc(-tiny / 2) == 0x80 && f->enc(1e-30f) == 0x00 && f->enc(-1e-40f) == 0x80);
    CHECK(f->enc(0.0f) == 0x00 && f->enc(-0.0f) == 0x80);
    // the largest subnormal plus half a unit rounds up into the smallest normal
    float min_normal = (float)ldexp(1.0, 1 - f->bias);
    CHECK(f->enc(min_normal - tiny / 2) == (uint8_t)(1 << f->mb));
    // 6. random fp32 values across the whole range against the nearest-code search
    uint64_t st = 99;
    int bad_rand = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)pz_test_rand_u64(&st);
        if (i & 1) u = (u & 0x807fffffu) | ((uint32_t)(100 + (i >> 1) % 50) << 23);  // near the range
        float x;
        memcpy(&x, &u, 4);
        uint8_t want = ref_encode(f, x), got = f->enc(x);
        if (got != want && bad_rand++ < 5)
            fprintf(stderr, "%s: %a -> 0x%02x, nearest code 0x%02x\n", f->name, (double)x, got, want);
    }
    CHECKF(bad_rand == 0, "%s: %d random values encode wrongly", f->name, bad_rand);
}

int main(void) {
    fmt e4m3 = {"e4m3", 4, 3, 7, 0, pz_f32_to_e4m3, pz_e4m3_to_f32, pz_e4m3_table, PZ_E4M3_MAX};
    fmt e5m2 = {"e5m2", 5, 2, 15, 1, pz_f32_to_e5m2, pz_e5m2_to_f32, pz_e5m2_table, PZ_E5M2_MAX};
    test_format(&e4m3);
    test_format(&e5m2);
    CHECK(def_value(&e4m3, 0x7e) == 448.0 && def_value(&e5m2, 0x7b) == 57344.0);
    CHECK(def_value(&e4m3, 0x08) == ldexp(1, -6) && def_value(&e5m2, 0x7c) == INFINITY);

    // rows with a scale, and the amax scale
    float x[5] = {1.0f, -3.5f, 0.0f, 896.0f, 0.3f}, y[5], sc;
    uint8_t q[5];
    CHECK(pz_e4m3_scale_for(x, 5, &sc) == 0 && sc == 2.0f);
    pz_f32_to_e4m3_row(x, q, 5, 1.0f / sc);
    pz_e4m3_to_f32_row(q, y, 5, sc);
    CHECK(y[0] == 1.0f && y[1] == -3.5f && y[2] == 0.0f && y[3] == 896.0f);
    CHECK(y[4] == 0.3125f);  // 0.15 -> 0.15625, the nearer of 0.140625 and 0.15625
    float z[3] = {0, 0, 0}, w[2] = {1, NAN};
    CHECK(pz_e4m3_scale_for(z, 3, &sc) == 0 && sc == 1.0f);
    CHECK(pz_e4m3_scale_for(w, 2, &sc) == -1);
    return pz_test_finish("test_fp8");
}
