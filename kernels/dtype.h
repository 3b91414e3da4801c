// dtype.h — the one element-type enum of the whole tree: weights, activations,
// KV caches, cost-model pricing and the CLI's --dtype / --kv-dtype all speak
// pz_dt. The values are stable (they may be stored), so append only.
//
// FP8 formats are the OCP ones that H100 tensor cores and the Hugging Face
// "float8_e4m3fn" / "float8_e5m2" safetensors types use:
//   e4m3: bias 7, max 448, no infinities, NaN = S.1111.111
//   e5m2: bias 15, max 57344, IEEE-style infinities and NaNs
#ifndef PZ_DTYPE_H
#define PZ_DTYPE_H

#include <stddef.h>

typedef enum {
    PZ_DT_F32 = 0,
    PZ_DT_BF16 = 1,
    PZ_DT_F16 = 2,
    PZ_DT_E4M3 = 3,  // float8_e4m3fn ("fp8" on the command line)
    PZ_DT_E5M2 = 4,  // float8_e5m2
    PZ_DT_COUNT
} pz_dt;

// Bytes per element (4, 2, 2, 1, 1); 0 for an out-of-range value.
size_t pz_dt_size(pz_dt dt);
// "f32", "bf16", "f16", "fp8" (e4m3), "fp8_e5m2"; "?" out of range. Static strings.
const char *pz_dt_name(pz_dt dt);
// Parses a name: f32|fp32, bf16, f16|fp16, fp8|e4m3|fp8_e4m3, e5m2|fp8_e5m2.
// Returns 0, or -1 (dt untouched) for anything else.
int pz_dt_parse(const char *s, pz_dt *dt);

#endif
