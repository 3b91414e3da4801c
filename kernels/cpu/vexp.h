// vexp.h — private: a 16-lane AVX-512 exp for softmax and SiLU (relative
// error ~2e-7 over the range used), and the target attribute the AVX-512
// kernels in this folder are compiled with (they are chosen at run time by
// pz_cpu_have_avx512(), so the build needs no -march flag).
#ifndef PZ_CPU_VEXP_H
#define PZ_CPU_VEXP_H

#include <immintrin.h>

#define PZ_T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

// exp(x) for x in about [-87, 88]; smaller inputs give ~0 (not exactly 0:
// callers that need exact zeros mask them).
PZ_T512 static inline __m512 pz_vexp512(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    // Taylor polynomial of degree 7 on |r| <= 0.35.
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

#endif
