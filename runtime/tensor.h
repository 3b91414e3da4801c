// tensor.h — element types of the formats we read, their block sizes, and
// conversion of any of them to fp32 / bf16. The numeric type ids are ggml's,
// so a GGUF file's type field maps onto pz_dtype directly.
#ifndef PZ_TENSOR_H
#define PZ_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    PZ_F32 = 0,
    PZ_F16 = 1,
    PZ_Q4_0 = 2,
    PZ_Q4_1 = 3,
    PZ_Q8_0 = 8,
    PZ_BF16 = 30,
    PZ_DTYPE_INVALID = -1,
} pz_dtype;

const char *pz_dtype_name(pz_dtype t);      // "F32", "Q4_1", ...; "?" if unknown
int pz_dtype_supported(int ggml_type);      // 1 if we can read (dequantize) it
int pz_dtype_block_elems(pz_dtype t);       // 1 for F32/F16/BF16, 32 for Q*
int pz_dtype_block_bytes(pz_dtype t);       // bytes per block (4, 2, 2, 18, 20, 34)

// Bytes for n elements (n must be a multiple of the block size);
// returns -1 on a bad multiple or overflow.
int pz_dtype_row_bytes(pz_dtype t, uint64_t n, size_t *out);

// Converts n elements of type t at src to fp32 at dst (n a multiple of the
// block size). Each is the reference definition of that format.
void pz_to_f32(pz_dtype t, const void *src, float *dst, size_t n);

// Scalar conversions. fp32 -> bf16 rounds to nearest even, NaN stays NaN.
float pz_f16_to_f32(uint16_t h);
uint16_t pz_f32_to_f16(float f);
float pz_bf16_to_f32(uint16_t b);
uint16_t pz_f32_to_bf16(float f);
void pz_f32_to_bf16_row(const float *src, uint16_t *dst, size_t n);
void pz_bf16_to_f32_row(const uint16_t *src, float *dst, size_t n);

#endif
