// kv_quant.c — see kv_quant.h.
#include "kv_quant.h"
#include "attention.h"
#include "fp8.h"

#include <string.h>

static inline uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // NaN stays NaN
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static inline float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline void put(void *pool, pz_dt t, size_t idx, float v, float scale) {
    if (t == PZ_DT_BF16) ((uint16_t *)pool)[idx] = to_bf16(v);
    else ((uint8_t *)pool)[idx] = pz_f32_to_e4m3(v / scale);
}

void pz_cpu_kv_write_q(void *k_pool, void *v_pool, pz_dt t, float k_scale, float v_scale, int n_kv,
                       int head_dim, int page, int pos, const float *k, const float *v) {
    const size_t pf = pz_cpu_kv_page_floats(n_kv, head_dim), base = (size_t)page * pf;
    const int o = pos % PZ_KV_PAGE, d = head_dim;
    for (int g = 0; g < n_kv; g++)
        for (int i = 0; i < d; i++) {
            put(k_pool, t, base + ((size_t)g * d + i) * PZ_KV_PAGE + o, k[(size_t)g * d + i], k_scale);
            put(v_pool, t, base + ((size_t)g * PZ_KV_PAGE + o) * d + i, v[(size_t)g * d + i], v_scale);
        }
}

static void widen_page(float *dst, const void *pool, pz_dt t, size_t src0, size_t pf, float scale) {
    if (t == PZ_DT_BF16) {
        const uint16_t *s = (const uint16_t *)pool + src0;
        for (size_t i = 0; i < pf; i++) dst[i] = from_bf16(s[i]);
    } else {
        pz_e4m3_to_f32_row((const uint8_t *)pool + src0, dst, pf, scale);
    }
}

void pz_cpu_kv_widen(float *dst, const void *k_pool, const void *v_pool, pz_dt t, float k_scale,
                     float v_scale, int n_kv, int head_dim, const int32_t *pages, int n_pages, int n_keys) {
    const size_t pf = pz_cpu_kv_page_floats(n_kv, head_dim);
    float *kd = dst, *vd = dst + (size_t)n_pages * pf;
    for (int p = 0; p < n_pages; p++) {
        widen_page(kd + (size_t)p * pf, k_pool, t, (size_t)pages[p] * pf, pf, k_scale);
        widen_page(vd + (size_t)p * pf, v_pool, t, (size_t)pages[p] * pf, pf, v_scale);
    }
    int tail0 = n_keys - (n_pages - 1) * PZ_KV_PAGE;  // valid positions in the last page
    if (n_pages <= 0 || tail0 >= PZ_KV_PAGE) return;
    float *kl = kd + (size_t)(n_pages - 1) * pf, *vl = vd + (size_t)(n_pages - 1) * pf;
    for (int g = 0; g < n_kv; g++)
        for (int o = tail0; o < PZ_KV_PAGE; o++) {
            for (int i = 0; i < head_dim; i++) kl[((size_t)g * head_dim + i) * PZ_KV_PAGE + o] = 0;
            memset(vl + ((size_t)g * PZ_KV_PAGE + o) * head_dim, 0, sizeof(float) * (size_t)head_dim);
        }
}
