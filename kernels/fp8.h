// fp8.h — the two OCP FP8 formats as numbers: encoding from fp32 and
// decoding to fp32, one value or a row at a time. Backend-neutral (no
// vector code): the CPU kernels, the model loader, the checkpoint writers
// and the tests all convert through here, so a value means the same thing
// everywhere. The formats are those of torch.float8_e4m3fn /
// torch.float8_e5m2 and of H100 tensor cores (see dtype.h):
//   e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; max ±448,
//           subnormals m·2^-9, no infinities, NaN = S.1111.111 (0x7f, 0xff).
//   e5m2:   sign, 5 exponent bits (bias 15), 2 mantissa bits; max ±57344,
//           subnormals m·2^-16, ±inf = S.11111.00, NaN = S.11111.{01,10,11}.
//
// Encoding rounds to nearest, ties to even (on the integer bits, so the
// floating-point rounding mode does not matter), and saturates: a finite
// value beyond ±max, and ±inf, become ±max. That is the conversion PTX's
// cvt.rn.satfinite.{e4m3x2,e5m2x2}.f32 performs on the GPU and what vLLM and
// TensorRT-LLM get by clamping to ±max before casting (a bare torch cast
// would turn an e4m3 overflow into NaN and an e5m2 one into inf). NaN
// becomes NaN with its sign kept (0x7f / 0xff for both formats). Values
// below half the smallest subnormal become ±0 with their sign.
#ifndef PZ_FP8_H
#define PZ_FP8_H

#include <stddef.h>
#include <stdint.h>

#define PZ_E4M3_MAX 448.0f
#define PZ_E5M2_MAX 57344.0f

uint8_t pz_f32_to_e4m3(float f);
uint8_t pz_f32_to_e5m2(float f);
// Exact (every code is an fp32 value); the NaN codes give a quiet NaN.
float pz_e4m3_to_f32(uint8_t c);
float pz_e5m2_to_f32(uint8_t c);
// The 256-entry decode tables behind the two functions above (static storage).
const float *pz_e4m3_table(void);
const float *pz_e5m2_table(void);

// dst[i] = e4m3(src[i] * inv_scale) for n values: quantization with a
// per-tensor scale (dequantized value = code · scale, inv_scale = 1/scale).
void pz_f32_to_e4m3_row(const float *src, uint8_t *dst, size_t n, float inv_scale);
// dst[i] = decode(src[i]) * scale.
void pz_e4m3_to_f32_row(const uint8_t *src, float *dst, size_t n, float scale);

// The per-tensor scale that maps the largest magnitude of x (n values) onto
// ±448: amax / 448, or 1 when x is all zeros. -1 if x holds a NaN or an
// infinity (nothing sensible to scale), else 0.
int pz_e4m3_scale_for(const float *x, size_t n, float *scale);

#endif
