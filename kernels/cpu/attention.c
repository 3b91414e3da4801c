// attention.c — see attention.h.
#include "attention.h"
#include "attention_narrow.h"
#include "gemv.h"
#include "vexp.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#define KB 16  // positions per K block
// (key, head) pairs of a call below which it runs on one thread. A pair
// costs ~9 ns with the pages in cache and ~16-20 ns when they come from
// memory (a decode step's KV pages do not stay in cache; AVX2 EPYC here,
// one thread), so 8192 pairs are ~70-160 us, several times the wake-up of
// a sleeping OpenMP thread. It was 32768: 16 decode streams of the
// reference parent (9 heads) stayed on one thread up to 227 tokens of
// average context, while the other core waited. One stream stays on one
// thread up to 910 tokens.
#ifndef PZ_ATTN_PAIRS_PER_THREAD
#define PZ_ATTN_PAIRS_PER_THREAD 8192L
#endif

size_t pz_cpu_kv_page_floats(int n_kv, int head_dim) { return (size_t)n_kv * (size_t)head_dim * KB; }

void pz_cpu_kv_write(float *k_pool, float *v_pool, int n_kv, int head_dim, int page, int pos, const float *k,
                     const float *v) {
    size_t base = (size_t)page * pz_cpu_kv_page_floats(n_kv, head_dim);
    int o = pos % KB;
    for (int g = 0; g < n_kv; g++) {
        float *kb = k_pool + base + (size_t)g * head_dim * KB + o;
        const float *kg = k + (size_t)g * head_dim;
        for (int i = 0; i < head_dim; i++) kb[(size_t)i * KB] = kg[i];
        memcpy(v_pool + base + ((size_t)g * KB + o) * head_dim, v + (size_t)g * head_dim,
               sizeof(float) * head_dim);
    }
}

// K element (key j, dimension i) and V row of key j, of KV head g;
// kld 0: the page layout (pages: the sequence's page table, pf: floats
// per page).
static inline float kat(const float *k, int kld, const int32_t *pages, size_t pf, int d, int g, int j, int i) {
    if (kld) return k[(size_t)j * kld + (size_t)g * d + i];
    return k[(size_t)pages[j / KB] * pf + ((size_t)g * d + i) * KB + j % KB];
}
static inline const float *vrow(const float *v, int kld, const int32_t *pages, size_t pf, int d, int g, int j) {
    if (kld) return v + (size_t)j * kld + (size_t)g * d;
    return v + (size_t)pages[j / KB] * pf + ((size_t)g * KB + j % KB) * d;
}
// The K block (16 keys from j0, a multiple of 16) and the V rows of that
// page, of KV head g.
static inline const float *kblock(const float *k, const int32_t *pages, size_t pf, int d, int g, int j0) {
    return k + (size_t)pages[j0 / KB] * pf + (size_t)g * d * KB;
}
static inline const float *vblock(const float *v, const int32_t *pages, size_t pf, int d, int g, int j0) {
    return v + (size_t)pages[j0 / KB] * pf + (size_t)g * KB * d;
}

// ---- plain C: one query row, one head ------------------------------------------
static void attn_row_ref(const float *q, float *out, const float *k, const float *v, int kld, const int32_t *pages, size_t pf,
                         int g, int n_keys, int d, float scale) {
    float acc[PZ_ATTN_MAX_HEAD_DIM];
    float m = -INFINITY, l = 0;
    memset(acc, 0, sizeof(float) * (size_t)d);
    for (int j = 0; j < n_keys; j++) {
        const float *vj = vrow(v, kld, pages, pf, d, g, j);
        float s = 0;
        for (int i = 0; i < d; i++) s += q[i] * kat(k, kld, pages, pf, d, g, j, i);
        s *= scale;
        if (s > m) {
            float c = expf(m - s);  // exp(-inf) = 0 on the first key
            for (int i = 0; i < d; i++) acc[i] *= c;
            l *= c;
            m = s;
        }
        float p = expf(s - m);
        l += p;
        for (int i = 0; i < d; i++) acc[i] += p * vj[i];
    }
    float inv = 1.0f / l;
    for (int i = 0; i < d; i++) out[i] = acc[i] * inv;
}

// ---- AVX-512: 16 keys per block --------------------------------------------------
// Scores of a block: sum over dimensions of q[i] (broadcast) times the
// block's row i (16 keys), four accumulators deep. The output accumulator
// has NV = ceil(head_dim/16) vectors, a compile-time constant in each
// instance (the always_inline body is stamped out per NV below), so it
// stays in registers; the last vector is masked when head_dim % 16 != 0.
PZ_T512 static inline __attribute__((always_inline)) void
attn_row_avx512_nv(const float *q, float *out, const float *k, const float *v, int kld, const int32_t *pages, size_t pf, int g,
                   int n_keys, int d, float scale, const int NV) {
    float qs[PZ_ATTN_MAX_HEAD_DIM] __attribute__((aligned(64)));
    for (int i = 0; i < d; i++) qs[i] = q[i] * scale;
    __m512 acc[8];  // fixed size (not a VLA) so it can live in registers
    const __mmask16 last = (d % 16) ? (__mmask16)((1u << (d % 16)) - 1) : (__mmask16)0xFFFF;
#define MK(c) ((c) == NV - 1 ? last : (__mmask16)0xFFFF)
#pragma GCC unroll 8
    for (int c = 0; c < NV; c++) acc[c] = _mm512_setzero_ps();
    float m = -INFINITY, l = 0;
    float sc[16] __attribute__((aligned(64)));
    __m512 qv[8];  // row-major K only: q (scaled) in registers
#pragma GCC unroll 8
    for (int c = 0; c < NV; c++) qv[c] = _mm512_maskz_loadu_ps(MK(c), qs + c * 16);
    for (int j0 = 0; j0 < n_keys; j0 += KB) {
        int nb = n_keys - j0 < KB ? n_keys - j0 : KB;
        __mmask16 bm = nb == KB ? (__mmask16)0xFFFF : (__mmask16)((1u << nb) - 1);
        __m512 s;
        if (kld == 0) {
            const float *kt = kblock(k, pages, pf, d, g, j0);
            __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
            int i = 0;
            for (; i + 4 <= d; i += 4) {
                s0 = _mm512_fmadd_ps(_mm512_set1_ps(qs[i]), _mm512_load_ps(kt + (i + 0) * KB), s0);
                s1 = _mm512_fmadd_ps(_mm512_set1_ps(qs[i + 1]), _mm512_load_ps(kt + (i + 1) * KB), s1);
                s2 = _mm512_fmadd_ps(_mm512_set1_ps(qs[i + 2]), _mm512_load_ps(kt + (i + 2) * KB), s2);
                s3 = _mm512_fmadd_ps(_mm512_set1_ps(qs[i + 3]), _mm512_load_ps(kt + (i + 3) * KB), s3);
            }
            for (; i < d; i++) s0 = _mm512_fmadd_ps(_mm512_set1_ps(qs[i]), _mm512_load_ps(kt + i * KB), s0);
            s = _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));
        } else {
            // Row-major K: one dot product (and one horizontal sum) per key.
            for (int jj = 0; jj < nb; jj++) {
                const float *kj = k + (size_t)(j0 + jj) * kld + (size_t)g * d;
                __m512 t = _mm512_mul_ps(qv[0], _mm512_maskz_loadu_ps(MK(0), kj));
#pragma GCC unroll 8
                for (int c = 1; c < NV; c++) t = _mm512_fmadd_ps(qv[c], _mm512_maskz_loadu_ps(MK(c), kj + c * 16), t);
                sc[jj] = _mm512_reduce_add_ps(t);
            }
            s = _mm512_maskz_load_ps(bm, sc);
        }
        float bmax = _mm512_mask_reduce_max_ps(bm, s);
        if (bmax > m) {
            float c = expf(m - bmax);
            __m512 cv = _mm512_set1_ps(c);
#pragma GCC unroll 8
            for (int t = 0; t < NV; t++) acc[t] = _mm512_mul_ps(acc[t], cv);
            l *= c;
            m = bmax;
        }
        // Lanes past the last key (unwritten cache) are masked to exactly 0.
        __m512 p = _mm512_maskz_mov_ps(bm, pz_vexp512(_mm512_sub_ps(s, _mm512_set1_ps(m))));
        l += _mm512_reduce_add_ps(p);
        _mm512_store_ps(sc, p);
        for (int jj = 0; jj < nb; jj++) {
            const float *vj = vrow(v, kld, pages, pf, d, g, j0 + jj);
            __m512 pj = _mm512_set1_ps(sc[jj]);
#pragma GCC unroll 8
            for (int c = 0; c < NV; c++) acc[c] = _mm512_fmadd_ps(pj, _mm512_maskz_loadu_ps(MK(c), vj + c * 16), acc[c]);
        }
    }
    __m512 inv = _mm512_set1_ps(1.0f / l);
#pragma GCC unroll 8
    for (int c = 0; c < NV; c++) _mm512_mask_storeu_ps(out + c * 16, MK(c), _mm512_mul_ps(acc[c], inv));
#undef MK
}

#define NV_CASE(n) \
    case n: attn_row_avx512_nv(q, out, k, v, kld, pages, pf, g, n_keys, d, scale, n); return 1;
PZ_T512 static int attn_row_avx512(const float *q, float *out, const float *k, const float *v, int kld,
                                   const int32_t *pages, size_t pf, int g, int n_keys, int d, float scale) {
    switch ((d + 15) / 16) {
        NV_CASE(1) NV_CASE(2) NV_CASE(3) NV_CASE(4) NV_CASE(5) NV_CASE(6) NV_CASE(7) NV_CASE(8)
    default: return 0;  // head_dim > 128: the plain loop
    }
}
#undef NV_CASE

// ---- AVX-512, decode: all G query heads of one KV head together ---------------
// For one query row: every K and V vector loaded from the cache serves the
// G heads that share it (the cache is read once per KV head, not once per
// query head). Cache layout only (kv_ld == 0). G*NV <= 16 accumulators.
PZ_T512 static inline __attribute__((always_inline)) void
attn_group_avx512_t(const float *q, float *out, const float *k, const float *v, const int32_t *pages,
                    size_t pf, int g, int n_keys,
                    int d, float scale, const int G, const int NV) {
    float qs[4][128] __attribute__((aligned(64)));
    for (int h = 0; h < G; h++)
        for (int i = 0; i < d; i++) qs[h][i] = q[(size_t)h * d + i] * scale;
    const __mmask16 last = (d % 16) ? (__mmask16)((1u << (d % 16)) - 1) : (__mmask16)0xFFFF;
#define MK(c) ((c) == NV - 1 ? last : (__mmask16)0xFFFF)
    __m512 acc[4][8];
    float m[4], l[4];
#pragma GCC unroll 4
    for (int h = 0; h < G; h++) {
        m[h] = -INFINITY, l[h] = 0;
#pragma GCC unroll 8
        for (int c = 0; c < NV; c++) acc[h][c] = _mm512_setzero_ps();
    }
    float sc[4][16] __attribute__((aligned(64)));
    for (int j0 = 0; j0 < n_keys; j0 += KB) {
        int nb = n_keys - j0 < KB ? n_keys - j0 : KB;
        __mmask16 bm = nb == KB ? (__mmask16)0xFFFF : (__mmask16)((1u << nb) - 1);
        const float *kt = kblock(k, pages, pf, d, g, j0);
        __m512 s0[4], s1[4];
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) s0[h] = s1[h] = _mm512_setzero_ps();
        for (int i = 0; i < d; i += 2) {  // d is even
            __m512 k0 = _mm512_load_ps(kt + i * KB), k1 = _mm512_load_ps(kt + (i + 1) * KB);
#pragma GCC unroll 4
            for (int h = 0; h < G; h++) {
                s0[h] = _mm512_fmadd_ps(_mm512_set1_ps(qs[h][i]), k0, s0[h]);
                s1[h] = _mm512_fmadd_ps(_mm512_set1_ps(qs[h][i + 1]), k1, s1[h]);
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) {
            __m512 s = _mm512_add_ps(s0[h], s1[h]);
            float bmax = _mm512_mask_reduce_max_ps(bm, s);
            if (bmax > m[h]) {
                float c = expf(m[h] - bmax);
                __m512 cv = _mm512_set1_ps(c);
#pragma GCC unroll 8
                for (int t = 0; t < NV; t++) acc[h][t] = _mm512_mul_ps(acc[h][t], cv);
                l[h] *= c;
                m[h] = bmax;
            }
            __m512 p = _mm512_maskz_mov_ps(bm, pz_vexp512(_mm512_sub_ps(s, _mm512_set1_ps(m[h]))));
            l[h] += _mm512_reduce_add_ps(p);
            _mm512_store_ps(sc[h], p);
        }
        const float *vb = vblock(v, pages, pf, d, g, j0);
        for (int jj = 0; jj < nb; jj++) {
            __m512 vv[8];
#pragma GCC unroll 8
            for (int c = 0; c < NV; c++) vv[c] = _mm512_maskz_loadu_ps(MK(c), vb + (size_t)jj * d + c * 16);
#pragma GCC unroll 4
            for (int h = 0; h < G; h++) {
                __m512 pj = _mm512_set1_ps(sc[h][jj]);
#pragma GCC unroll 8
                for (int c = 0; c < NV; c++) acc[h][c] = _mm512_fmadd_ps(pj, vv[c], acc[h][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < G; h++) {
        __m512 inv = _mm512_set1_ps(1.0f / l[h]);
#pragma GCC unroll 8
        for (int c = 0; c < NV; c++) _mm512_mask_storeu_ps(out + (size_t)h * d + c * 16, MK(c), _mm512_mul_ps(acc[h][c], inv));
    }
#undef MK
}

// Heads [h0, h0+G) of KV head g; returns 0 when no instance fits (G*NV > 16).
PZ_T512 static int attn_group_avx512(const float *q, float *out, const float *k, const float *v,
                                     const int32_t *pages, size_t pf, int g, int n_keys, int d, float scale, int G) {
    int NV = (d + 15) / 16;
#define GC(gg, nv) \
    case (gg) * 16 + (nv): attn_group_avx512_t(q, out, k, v, pages, pf, g, n_keys, d, scale, gg, nv); return 1;
    switch (G * 16 + NV) {
        GC(1, 1) GC(1, 2) GC(1, 3) GC(1, 4) GC(1, 8) GC(2, 1) GC(2, 2) GC(2, 3) GC(2, 4) GC(2, 8)
        GC(3, 1) GC(3, 2) GC(3, 3) GC(3, 4) GC(4, 1) GC(4, 2) GC(4, 3) GC(4, 4)
    default: return 0;
    }
#undef GC
}

// ---- AVX2: 16 keys per block, as two 8-lane halves ---------------------------------
// The row kernel of the AVX-512 section on 8-lane vectors: a block's 16
// scores are two vectors, summed over dimensions four at a time (eight FMA
// chains); the output accumulator is NV = ceil(head_dim/8) vectors, a
// compile-time constant per instance (registers up to head_dim 64, the
// stack above), the last one masked when head_dim % 8 != 0. Lanes past the
// last key are -inf before the max and exactly 0 after the exp, so unwritten
// cache positions are never used.
PZ_T256 static inline __attribute__((always_inline)) void
attn_row_avx2_nv(const float *q, float *out, const float *k, const float *v, int kld, const int32_t *pages, size_t pf, int g,
                 int n_keys, int d, float scale, const int NV) {
    float qs[PZ_ATTN_MAX_HEAD_DIM] __attribute__((aligned(32)));
    for (int i = 0; i < d; i++) qs[i] = q[i] * scale;
    const int tail = d % 8;
    const __m256i lastm = pz_lanes256(tail ? tail : 8);
#define LD(p, c) ((c) == NV - 1 && tail ? _mm256_maskload_ps((p), lastm) : _mm256_loadu_ps(p))
    __m256 acc[16];  // fixed size (not a VLA) so it can live in registers
#pragma GCC unroll 16
    for (int c = 0; c < NV; c++) acc[c] = _mm256_setzero_ps();
    float m = -INFINITY, l = 0;
    float sc[16] __attribute__((aligned(32)));
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int j0 = 0; j0 < n_keys; j0 += KB) {
        int nb = n_keys - j0 < KB ? n_keys - j0 : KB;
        __m256 slo, shi;
        if (kld == 0) {
            const float *kt = kblock(k, pages, pf, d, g, j0);
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            int i = 0;
            for (; i + 4 <= d; i += 4) {
                const float *r = kt + (size_t)i * KB;
                __m256 q0 = _mm256_broadcast_ss(qs + i), q1 = _mm256_broadcast_ss(qs + i + 1);
                a0 = _mm256_fmadd_ps(q0, _mm256_load_ps(r), a0);
                a1 = _mm256_fmadd_ps(q0, _mm256_load_ps(r + 8), a1);
                a2 = _mm256_fmadd_ps(q1, _mm256_load_ps(r + KB), a2);
                a3 = _mm256_fmadd_ps(q1, _mm256_load_ps(r + KB + 8), a3);
                __m256 q2 = _mm256_broadcast_ss(qs + i + 2), q3 = _mm256_broadcast_ss(qs + i + 3);
                a4 = _mm256_fmadd_ps(q2, _mm256_load_ps(r + 2 * KB), a4);
                a5 = _mm256_fmadd_ps(q2, _mm256_load_ps(r + 2 * KB + 8), a5);
                a6 = _mm256_fmadd_ps(q3, _mm256_load_ps(r + 3 * KB), a6);
                a7 = _mm256_fmadd_ps(q3, _mm256_load_ps(r + 3 * KB + 8), a7);
            }
            for (; i < d; i++) {
                __m256 qi = _mm256_broadcast_ss(qs + i);
                a0 = _mm256_fmadd_ps(qi, _mm256_load_ps(kt + (size_t)i * KB), a0);
                a1 = _mm256_fmadd_ps(qi, _mm256_load_ps(kt + (size_t)i * KB + 8), a1);
            }
            slo = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a4, a6));
            shi = _mm256_add_ps(_mm256_add_ps(a1, a3), _mm256_add_ps(a5, a7));
        } else {
            // Row-major K: one dot product (and one horizontal sum) per key.
            for (int jj = 0; jj < KB; jj++) {
                if (jj >= nb) {
                    sc[jj] = 0;
                    continue;
                }
                const float *kj = k + (size_t)(j0 + jj) * kld + (size_t)g * d;
                __m256 t = _mm256_mul_ps(LD(qs, 0), LD(kj, 0));
#pragma GCC unroll 16
                for (int c = 1; c < NV; c++) t = _mm256_fmadd_ps(LD(qs + c * 8, c), LD(kj + c * 8, c), t);
                sc[jj] = pz_hsum256(t);
            }
            slo = _mm256_load_ps(sc), shi = _mm256_load_ps(sc + 8);
        }
        __m256 vlo = _mm256_castsi256_ps(pz_lanes256(nb)), vhi = _mm256_castsi256_ps(pz_lanes256(nb - 8));
        slo = _mm256_blendv_ps(ninf, slo, vlo);
        shi = _mm256_blendv_ps(ninf, shi, vhi);
        float bmax = pz_hmax256(_mm256_max_ps(slo, shi));
        if (bmax > m) {
            float cf = expf(m - bmax);  // exp(-inf) = 0 on the first block
            __m256 cv = _mm256_set1_ps(cf);
#pragma GCC unroll 16
            for (int c = 0; c < NV; c++) acc[c] = _mm256_mul_ps(acc[c], cv);
            l *= cf;
            m = bmax;
        }
        __m256 mv = _mm256_set1_ps(m);
        __m256 plo = _mm256_and_ps(vlo, pz_vexp256(_mm256_sub_ps(slo, mv)));
        __m256 phi = _mm256_and_ps(vhi, pz_vexp256(_mm256_sub_ps(shi, mv)));
        l += pz_hsum256(_mm256_add_ps(plo, phi));
        _mm256_store_ps(sc, plo);
        _mm256_store_ps(sc + 8, phi);
        for (int jj = 0; jj < nb; jj++) {
            const float *vj = vrow(v, kld, pages, pf, d, g, j0 + jj);
            __m256 pj = _mm256_broadcast_ss(sc + jj);
#pragma GCC unroll 16
            for (int c = 0; c < NV; c++) acc[c] = _mm256_fmadd_ps(pj, LD(vj + c * 8, c), acc[c]);
        }
    }
    __m256 inv = _mm256_set1_ps(1.0f / l);
#pragma GCC unroll 16
    for (int c = 0; c < NV; c++) {
        __m256 o = _mm256_mul_ps(acc[c], inv);
        if (c == NV - 1 && tail)
            _mm256_maskstore_ps(out + c * 8, lastm, o);
        else
            _mm256_storeu_ps(out + c * 8, o);
    }
#undef LD
}

#define NV_CASE(n) \
    case n: attn_row_avx2_nv(q, out, k, v, kld, pages, pf, g, n_keys, d, scale, n); return 1;
PZ_T256 static int attn_row_avx2(const float *q, float *out, const float *k, const float *v, int kld,
                                 const int32_t *pages, size_t pf, int g, int n_keys, int d, float scale) {
    switch ((d + 7) / 8) {
        NV_CASE(1) NV_CASE(2) NV_CASE(3) NV_CASE(4) NV_CASE(5) NV_CASE(6) NV_CASE(7) NV_CASE(8)
        NV_CASE(9) NV_CASE(10) NV_CASE(11) NV_CASE(12) NV_CASE(13) NV_CASE(14) NV_CASE(15) NV_CASE(16)
    default: return 0;  // head_dim > 128: the plain loop
    }
}
#undef NV_CASE

// Decode on narrow pages: pz_cpu_attn_group_narrow for the item's heads at
// once (1) or one head per call (0); see pz_cpu_attention_set_grouped_narrow.
static int grouped_narrow = 1;

void pz_cpu_attention_set_grouped_narrow(int on) { grouped_narrow = on != 0; }

int pz_cpu_attention_reads_narrow(pz_dt kv_type, int head_dim) {
    return (kv_type == PZ_DT_BF16 || kv_type == PZ_DT_E4M3) && pz_cpu_isa() >= PZ_ISA_AVX2 &&
           __builtin_cpu_supports("f16c") && head_dim % 8 == 0 && head_dim >= 8 && head_dim <= 128;
}

// One query row and head through the best kernel the level allows.
static inline void attn_row(pz_isa isa, const float *q, float *out, const float *k, const float *v,
                            int kld, const int32_t *pages, size_t pf, int g, int n_keys, int d, float scale) {
    if (isa >= PZ_ISA_AVX512 && attn_row_avx512(q, out, k, v, kld, pages, pf, g, n_keys, d, scale)) return;
    if (isa == PZ_ISA_AVX2 && attn_row_avx2(q, out, k, v, kld, pages, pf, g, n_keys, d, scale)) return;
    attn_row_ref(q, out, k, v, kld, pages, pf, g, n_keys, d, scale);
}

// Work item it of a sequence: head h, query row t; head-major (heads that
// share a KV head are adjacent), so the K and V of one KV head stay in the
// core's cache while all its rows are done, rather than the caches of all
// KV heads cycling through it once per row; within a head, later rows
// (more keys) first.
static inline void attn_item(const pz_attn_seq *sq, long it, int n_head, int group, int head_dim,
                             size_t pf, float scale, pz_isa isa) {
    (void)n_head;
    int h = (int)(it / sq->n_q), t = sq->n_q - 1 - (int)(it % sq->n_q);
    int g = h / group;
    const float *q = sq->q + (size_t)t * sq->q_ld + (size_t)h * head_dim;
    float *o = sq->out + (size_t)t * sq->out_ld + (size_t)h * head_dim;
    int n_keys = sq->pos0 + t + 1;
    attn_row(isa, q, o, sq->k, sq->v, sq->kv_ld, sq->pages, pf, g, n_keys, head_dim, scale);
}

// The same on narrow pages, a sub-group of gs heads sharing a KV head per
// item (query row t, sub-group it / n_q of nsub per KV head; later rows
// first), through the grouped kernel as decode (the same result per head
// for any number of heads per call).
static inline void attn_item_narrow(const pz_attn_seq *sq, long it, int gs, int nsub, int group, int head_dim,
                                    size_t pf, float scale) {
    int sub = (int)(it / sq->n_q), t = sq->n_q - 1 - (int)(it % sq->n_q);
    int g = sub / nsub, h0 = g * group + (sub % nsub) * gs;
    int n = h0 + gs <= (g + 1) * group ? gs : (g + 1) * group - h0, step = grouped_narrow ? n : 1;
    for (int h = h0; h < h0 + n; h += step)
        pz_cpu_attn_group_narrow(sq->q + (size_t)t * sq->q_ld + (size_t)h * head_dim,
                                 sq->out + (size_t)t * sq->out_ld + (size_t)h * head_dim, sq->k, sq->v,
                                 sq->kv_type, sq->k_scale, sq->v_scale, sq->pages, pf, g, sq->pos0 + t + 1,
                                 head_dim, scale, step);
}

// Decode work item: query row 0 of a sequence, heads [h0, h0+gs) of KV
// head g = h0 / group, through the grouped kernel when an instance fits.
static inline void attn_item_grouped(const pz_attn_seq *sq, int h0, int gs, int group,
                                     int head_dim, size_t pf, float scale, pz_isa isa) {
    int g = h0 / group;
    const float *q = sq->q + (size_t)h0 * head_dim;
    float *o = sq->out + (size_t)h0 * head_dim;
    int n_keys = sq->pos0 + 1;
    if (sq->kv_ld == 0 && sq->kv_type != PZ_DT_F32) {
        int n = grouped_narrow ? gs : 1;  // heads per kernel call
        for (int h = h0; h < h0 + gs; h += n)
            pz_cpu_attn_group_narrow(sq->q + (size_t)h * head_dim, sq->out + (size_t)h * head_dim, sq->k, sq->v,
                                     sq->kv_type, sq->k_scale, sq->v_scale, sq->pages, pf, g, n_keys, head_dim,
                                     scale, n);
        return;
    }
    if (isa >= PZ_ISA_AVX512 && sq->kv_ld == 0 && attn_group_avx512(q, o, sq->k, sq->v, sq->pages, pf, g, n_keys, head_dim, scale, gs))
        return;
    for (int h = h0; h < h0 + gs; h++) {
        const float *qh = sq->q + (size_t)h * head_dim;
        float *oh = sq->out + (size_t)h * head_dim;
        attn_row(isa, qh, oh, sq->k, sq->v, sq->kv_ld, sq->pages, pf, g, n_keys, head_dim, scale);
    }
}

int pz_cpu_attention(const pz_attn_seq *seqs, int n_seq, int n_head, int n_kv, int head_dim,
                     int n_threads, char *err) {
    if (head_dim <= 0 || head_dim % 2 || head_dim > PZ_ATTN_MAX_HEAD_DIM || n_kv <= 0 ||
        n_head % n_kv) {
        if (err)
            snprintf(err, PZ_ERRLEN, "attention: unsupported shape n_head=%d n_kv=%d head_dim=%d",
                     n_head, n_kv, head_dim);
        return -1;
    }
    for (int s = 0; s < n_seq; s++)
        if (seqs[s].kv_ld == 0 && seqs[s].kv_type != PZ_DT_F32 &&
            !pz_cpu_attention_reads_narrow(seqs[s].kv_type, head_dim)) {
            if (err)
                snprintf(err, PZ_ERRLEN, "attention: %s KV pages are not supported by the CPU backend",
                         pz_dt_name(seqs[s].kv_type));
            return -1;
        }
    const int group = n_head / n_kv;
    const size_t pf = pz_cpu_kv_page_floats(n_kv, head_dim);
    const float scale = 1.0f / sqrtf((float)head_dim);
    const pz_isa isa = pz_cpu_isa();
    long total = 0, pairs = 0;  // (query, head) items; (key, head) pairs
    for (int s = 0; s < n_seq; s++) {
        total += (long)seqs[s].n_q * n_head;
        pairs += (long)seqs[s].n_q * n_head * (seqs[s].pos0 + (seqs[s].n_q + 1) / 2);
    }
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    // A short call (a few tens of microseconds) is not worth waking a
    // thread for (PZ_ATTN_PAIRS_PER_THREAD; PZ_GEMV_BYTES_PER_THREAD in gemv.c).
    if (total < 2 || pairs < PZ_ATTN_PAIRS_PER_THREAD) nt = 1;
    // One-query sequences (decode): items are sub-groups of gs heads sharing a
    // KV head (as many of a group as fit 16 accumulators), so the heads of one
    // KV head run on one core and read its cache once; all sequences' items in
    // one loop (per sequence, 2 threads would split its n_kv items unevenly, the
    // same way every time). Longer sequences (prefill): (query, head) items,
    // dynamic, as work per query grows with its position; on narrow pages
    // (query, sub-group) items through the decode kernel. The kernel is chosen
    // per sequence, so a one-query sequence takes the same one whether or not
    // its call also holds longer ones (a batched prefill); on narrow pages a
    // row's result is also the same in decode and in prefill.
    int nvv = (head_dim + 15) / 16, gs = group < 4 ? group : 4;
    while (gs > 1 && gs * nvv > 16) gs--;
    const int nsub = (group + gs - 1) / gs, per = n_kv * nsub;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(dynamic, 2) nowait
        for (long f = 0; f < (long)n_seq * per; f++) {
            const pz_attn_seq *sq = &seqs[f / per];
            if (sq->n_q != 1) continue;
            int it = (int)(f % per), g = it / nsub, h0 = g * group + (it % nsub) * gs;
            int n = h0 + gs <= (g + 1) * group ? gs : (g + 1) * group - h0;
            attn_item_grouped(sq, h0, n, group, head_dim, pf, scale, isa);
        }
        for (int s = 0; s < n_seq; s++) {
            const pz_attn_seq *sq = &seqs[s];
            if (sq->n_q <= 1) continue;
            if (sq->kv_ld == 0 && sq->kv_type != PZ_DT_F32) {
                long items = (long)sq->n_q * per;
#pragma omp for schedule(dynamic, 1) nowait
                for (long it = 0; it < items; it++) attn_item_narrow(sq, it, gs, nsub, group, head_dim, pf, scale);
                continue;
            }
            long items = (long)sq->n_q * n_head;
#pragma omp for schedule(dynamic, 1) nowait
            for (long it = 0; it < items; it++) attn_item(sq, it, n_head, group, head_dim, pf, scale, isa);
        }
    }
    return 0;
}
