// pointwise.c — see pointwise.h.
#include "pointwise.h"
#include "gemv.h"
#include "vexp.h"

#include <math.h>
#include <omp.h>
#include <string.h>

PZ_T512 static void swiglu_row_avx512(float *h, const float *g, const float *u, int n) {
    int i = 0;
    for (; i < n; i += 16) {
        __mmask16 mk = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512 gv = _mm512_maskz_loadu_ps(mk, g + i), uv = _mm512_maskz_loadu_ps(mk, u + i);
        __m512 e = pz_vexp512(_mm512_sub_ps(_mm512_setzero_ps(), gv));
        __m512 sig = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_add_ps(_mm512_set1_ps(1.0f), e));
        _mm512_mask_storeu_ps(h + i, mk, _mm512_mul_ps(_mm512_mul_ps(gv, sig), uv));
    }
}

PZ_T256 static void swiglu_row_avx2(float *h, const float *g, const float *u, int n) {
    for (int i = 0; i < n; i += 8) {
        __m256i mk = pz_lanes256(n - i);
        __m256 gv, uv;
        if (n - i >= 8)
            gv = _mm256_loadu_ps(g + i), uv = _mm256_loadu_ps(u + i);
        else
            gv = _mm256_maskload_ps(g + i, mk), uv = _mm256_maskload_ps(u + i, mk);
        __m256 e = pz_vexp256(_mm256_sub_ps(_mm256_setzero_ps(), gv));
        __m256 sig = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        __m256 r = _mm256_mul_ps(_mm256_mul_ps(gv, sig), uv);
        if (n - i >= 8)
            _mm256_storeu_ps(h + i, r);
        else
            _mm256_maskstore_ps(h + i, mk, r);
    }
}

static void swiglu_row_ref(float *h, const float *g, const float *u, int n) {
    for (int i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void pz_cpu_swiglu(float *h, int ldh, const float *g, const float *u, int gu_ld, int M, int n, int n_threads) {
    pz_isa isa = pz_cpu_isa();
    int nt = (size_t)M * n >= 65536 ? n_threads : 1;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int m = 0; m < M; m++) {
        float *hr = h + (size_t)m * ldh;
        const float *gr = g + (size_t)m * gu_ld, *ur = u + (size_t)m * gu_ld;
        if (isa >= PZ_ISA_AVX512)
            swiglu_row_avx512(hr, gr, ur, n);
        else if (isa == PZ_ISA_AVX2)
            swiglu_row_avx2(hr, gr, ur, n);
        else
            swiglu_row_ref(hr, gr, ur, n);
    }
}

void pz_cpu_add(float *y, const float *x, size_t n, int n_threads) {
    int nt = n >= 65536 ? n_threads : 1;
#pragma omp parallel for simd num_threads(nt) if (nt > 1) schedule(static)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

int pz_cpu_embed(float *y, const void *table, pz_dt dt, const int32_t *ids, int M, int n, int vocab) {
    for (int m = 0; m < M; m++)
        if (ids[m] < 0 || ids[m] >= vocab) return m;
    for (int m = 0; m < M; m++) {
        float *yr = y + (size_t)m * n;
        if (dt == PZ_DT_F32) {
            memcpy(yr, (const float *)table + (size_t)ids[m] * n, sizeof(float) * (size_t)n);
        } else {
            const uint16_t *t = (const uint16_t *)table + (size_t)ids[m] * n;
            for (int i = 0; i < n; i++) {
                uint32_t b = (uint32_t)t[i] << 16;
                memcpy(&yr[i], &b, 4);
            }
        }
    }
    return -1;
}
