// dtype.c — see dtype.h.
#include "dtype.h"

#include <string.h>

size_t pz_dt_size(pz_dt dt) {
    switch (dt) {
    case PZ_DT_F32: return 4;
    case PZ_DT_BF16:
    case PZ_DT_F16: return 2;
    case PZ_DT_E4M3:
    case PZ_DT_E5M2: return 1;
    default: return 0;
    }
}

const char *pz_dt_name(pz_dt dt) {
    switch (dt) {
    case PZ_DT_F32: return "f32";
    case PZ_DT_BF16: return "bf16";
    case PZ_DT_F16: return "f16";
    case PZ_DT_E4M3: return "fp8";
    case PZ_DT_E5M2: return "fp8_e5m2";
    default: return "?";
    }
}

int pz_dt_parse(const char *s, pz_dt *dt) {
    static const struct {
        const char *name;
        pz_dt dt;
    } names[] = {{"f32", PZ_DT_F32},   {"fp32", PZ_DT_F32},      {"bf16", PZ_DT_BF16},
                 {"f16", PZ_DT_F16},   {"fp16", PZ_DT_F16},      {"fp8", PZ_DT_E4M3},
                 {"e4m3", PZ_DT_E4M3}, {"fp8_e4m3", PZ_DT_E4M3}, {"e5m2", PZ_DT_E5M2},
                 {"fp8_e5m2", PZ_DT_E5M2}};
    if (!s) return -1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *dt = names[i].dt;
            return 0;
        }
    return -1;
}
