// attention_narrow.c — attention over bf16 / e4m3 KV pages read as they are
// (AVX2 + F16C, no fp32 copy of the pages), see attention_narrow.h: one
// kernel for the G (up to 4) query heads that share a KV head, for one
// query row each (decode, and each row of a prefill). Widening a narrow
// element costs more instructions than the multiply-add it feeds, so the
// kernel widens each K and V vector once for all heads of the group.
#include "attention_narrow.h"
#include "vexp.h"

#include <math.h>
#include <string.h>

#define KB PZ_KV_PAGE  // positions per page (16)
#define T256F __attribute__((target("avx2,fma,f16c")))

// Eight narrow elements from element i of p, widened: bf16 by a shift, e4m3
// by the shift + F16C of gemv_fp8.c (code value / 2^8). The dequantization
// scales join q (K: k_scale, and 2^8 for e4m3) and the final 1/l (V), so
// each page element enters exactly as its code value.
T256F static inline __attribute__((always_inline)) __m256 ld8_narrow(const void *p, size_t i, const int KT) {
    if (KT == PZ_DT_BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    __m128i b = _mm_loadl_epi64((const __m128i *)((const uint8_t *)p + i));
    __m128i h = _mm_and_si128(_mm_slli_epi16(_mm_cvtepi8_epi16(b), 7), _mm_set1_epi16((short)0xBFFF));
    return _mm256_cvtph_ps(h);
}

// ---- the G query heads of one KV head in one pass -------------------------------------
// Keys go in segments of SEG (4 pages): (1) the scores of all G heads, page
// by page: each K row of the page (dimension i of its 16 keys) is loaded
// and widened once and multiplied into G heads' score accumulators; (2) per
// head, the online softmax update over the segment (running max m and sum
// l, the output rescaled when the max grows); (3) the V rows of the
// segment, CW output vectors of each head at a time (G * CW accumulators in
// registers, the whole output in an aligned stack array between passes),
// each V vector loaded and widened once for the G heads.
//
// bf16 K rows are read as 8 dwords of two keys each: even keys by a shift,
// odd keys by a mask (no widening shuffle), so a page's 16 scores are held
// as [keys 0, 2, .., 14 | keys 1, 3, .., 15]; e4m3 K rows widen through
// ld8_narrow in key order. The slot of key o of a page follows (kslot). The
// V rows of bf16 pages go the same way when head_dim % 16 == 0 (VP): the
// accumulators hold each 16 dimensions as [even | odd], interleaved back
// when the output is stored.
//
// A head's result does not depend on G or on the other heads: its scores,
// softmax and sums go through the same operations in the same order for
// every G (2 score chains per key for any G; each output element takes the
// keys in order whatever CW is), so decode and prefill rows agree bit for
// bit however their heads are grouped, and a prefix hit reproduces a cold
// prefill.
#define SEG 64
#ifndef PZ_ATTN_PREFETCH_PAGES
#define PZ_ATTN_PREFETCH_PAGES 2  // K blocks prefetched this many pages ahead
#endif
#define PFD PZ_ATTN_PREFETCH_PAGES

T256F static inline __attribute__((always_inline)) void ld16_narrow(const void *p, size_t r, const int KT, __m256 *a,
                                                                   __m256 *b) {
    if (KT == PZ_DT_BF16) {
        __m256i w = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + r));
        *a = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
        *b = _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32((int)0xFFFF0000u)));
    } else {
        *a = ld8_narrow(p, r, KT);
        *b = ld8_narrow(p, r + 8, KT);
    }
}

static inline int kslot(int o, const int KT) { return KT == PZ_DT_BF16 ? (o & 1) * 8 + (o >> 1) : o; }

// (1) Scores of the nb (1..16) keys of one page, K row i at element offset
// kt + i * 16, into sc[h][b .. b+16) in slot order; slots past nb get -inf.
// U dimensions per step, each with its own accumulators (2 * G * U chains).
T256F static inline __attribute__((always_inline)) void
group_scores(const void *k, size_t kt, const float (*qs)[128], int d, int nb, float (*sc)[SEG], int b,
             const char *pk, const char *pv, const int KT, const int G) {
    const int U = 2;  // as for every G: a head's scores do not depend on G
    const int ESZ = KT == PZ_DT_E4M3 ? 1 : 2, PF = 64 / (KB * ESZ);  // K rows per cache line
    __m256 sa[4][4], sb[4][4];
#pragma GCC unroll 4
    for (int u = 0; u < U; u++)
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) sa[u][h] = sb[u][h] = _mm256_setzero_ps();
    for (int i = 0; i < d; i += U) {  // d % 8 == 0
#pragma GCC unroll 4
        for (int u = 0; u < U; u++) {
            if (((i + u) & (PF - 1)) == 0) {  // a line of the blocks to come per line read
                _mm_prefetch(pk + (size_t)(i + u) * KB * ESZ, _MM_HINT_T0);
                _mm_prefetch(pv + (size_t)(i + u) * KB * ESZ, _MM_HINT_T0);
            }
            __m256 ka, kb;
            ld16_narrow(k, kt + (size_t)(i + u) * KB, KT, &ka, &kb);
#pragma GCC unroll 4
            for (int h = 0; h < G; h++) {
                __m256 qb = _mm256_broadcast_ss(&qs[h][i + u]);
                sa[u][h] = _mm256_fmadd_ps(qb, ka, sa[u][h]);
                sb[u][h] = _mm256_fmadd_ps(qb, kb, sb[u][h]);
            }
        }
    }
    const __m256i ia = KT == PZ_DT_BF16 ? _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)
                                        : _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i ib = _mm256_add_epi32(ia, KT == PZ_DT_BF16 ? _mm256_set1_epi32(1) : _mm256_set1_epi32(8));
    const __m256 va = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(nb), ia));
    const __m256 vb = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(nb), ib));
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
#pragma GCC unroll 4
    for (int h = 0; h < G; h++) {
        __m256 a = sa[0][h], c = sb[0][h];
#pragma GCC unroll 4
        for (int u = 1; u < U; u++) a = _mm256_add_ps(a, sa[u][h]), c = _mm256_add_ps(c, sb[u][h]);
        _mm256_store_ps(&sc[h][b], _mm256_blendv_ps(ninf, a, va));
        _mm256_store_ps(&sc[h][b + 8], _mm256_blendv_ps(ninf, c, vb));
    }
}

// One key's V row (element offset r, from output vector c0) into the G x CW
// accumulators, weighted by each head's probability in slot `slot`. One
// V vector (VP: one pair) at a time, the probabilities broadcast again for
// each, so that no more than 16 vector registers are live (12 accumulators).
#define VKEY(r, slot)                                                                                   \
    do {                                                                                                \
        if (VP) {                                                                                       \
            _Pragma("GCC unroll 6") for (int c = 0; c < CW; c += 2) {                                   \
                __m256 ve, vo;                                                                          \
                const float *sp = &sc[0][slot];                                                         \
                __asm__("" : "+r"(sp)); /* a fresh broadcast per pair, not G more live registers */     \
                ld16_narrow(v, (r) + (size_t)c * 8, KT, &ve, &vo);                                      \
                _Pragma("GCC unroll 4") for (int h = 0; h < G; h++) {                                   \
                    __m256 pb = _mm256_broadcast_ss(sp + h * SEG);                                      \
                    acc[h][c] = _mm256_fmadd_ps(pb, ve, acc[h][c]);                                     \
                    acc[h][c + 1] = _mm256_fmadd_ps(pb, vo, acc[h][c + 1]);                             \
                }                                                                                       \
            }                                                                                           \
        } else {                                                                                        \
            _Pragma("GCC unroll 12") for (int c = 0; c < CW; c++) {                                     \
                const float *sp = &sc[0][slot];                                                         \
                __asm__("" : "+r"(sp));                                                                 \
                __m256 vc = ld8_narrow(v, (r) + (size_t)c * 8, KT);                                     \
                _Pragma("GCC unroll 4") for (int h = 0; h < G; h++)                                     \
                    acc[h][c] = _mm256_fmadd_ps(_mm256_broadcast_ss(sp + h * SEG), vc, acc[h][c]);      \
            }                                                                                           \
        }                                                                                               \
    } while (0)

// (3) Output vectors [c0, c0+CW) of the G heads over the ns keys of the
// segment from key s0 (probabilities in sc), accumulated into oacc.
T256F static inline __attribute__((always_inline)) void
group_values(const void *v, const int32_t *pages, size_t pf, int g, int d, int s0, int ns, const float (*sc)[SEG],
             float (*oacc)[128], int c0, const int KT, const int G, const int CW, const int VP) {
    __m256 acc[4][12];
#pragma GCC unroll 4
    for (int h = 0; h < G; h++)
#pragma GCC unroll 12
        for (int c = 0; c < CW; c++) acc[h][c] = _mm256_load_ps(&oacc[h][(c0 + c) * 8]);
    for (int b = 0; b < ns; b += KB) {
        int nb = ns - b < KB ? ns - b : KB;
        size_t vt = (size_t)pages[(s0 + b) / KB] * pf + (size_t)g * KB * d + (size_t)c0 * 8;
        if (nb == KB) {
#pragma GCC unroll 16
            for (int o = 0; o < KB; o++) VKEY(vt + (size_t)o * d, b + kslot(o, KT));
        } else {
            for (int o = 0; o < nb; o++) VKEY(vt + (size_t)o * d, b + kslot(o, KT));
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < G; h++)
#pragma GCC unroll 12
        for (int c = 0; c < CW; c++) _mm256_store_ps(&oacc[h][(c0 + c) * 8], acc[h][c]);
}
#undef VKEY

T256F static inline __attribute__((always_inline)) void
attn_group_narrow_t(const float *q, float *out, const void *k, const void *v, const int32_t *pages, size_t pf,
                    int g, int n_keys, int d, float scale, float k_scale, float v_scale, const int KT,
                    const int G, const int VP) {
    // V output vectors per pass: G * CW <= 12 accumulators; CW even with VP.
    const int CW = G == 1 ? 8 : G == 2 ? 6 : G == 3 ? 4 : VP ? 2 : 3, CR = VP ? 2 : 1;
    const float wide = KT == PZ_DT_E4M3 ? 256.0f : 1.0f;  // e4m3 widens to value / 2^8
    const float ks = KT == PZ_DT_E4M3 ? k_scale * wide : 1.0f, vs = KT == PZ_DT_E4M3 ? v_scale * wide : 1.0f;
    const int nv = d / 8, npg = (n_keys + KB - 1) / KB;
    const size_t esz = KT == PZ_DT_E4M3 ? 1 : 2;
    float qs[4][128] __attribute__((aligned(32)));
    float oacc[4][128] __attribute__((aligned(32)));
    float sc[4][SEG] __attribute__((aligned(32)));
    float m[4], l[4];
    for (int h = 0; h < G; h++) {
        for (int i = 0; i < d; i++) qs[h][i] = q[(size_t)h * d + i] * scale * ks;
        memset(oacc[h], 0, sizeof(float) * (size_t)d);
        m[h] = -INFINITY, l[h] = 0;
    }
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int s0 = 0; s0 < n_keys; s0 += SEG) {
        int ns = n_keys - s0 < SEG ? n_keys - s0 : SEG, nsv = (ns + KB - 1) / KB * 2;
        for (int b = 0; b < ns; b += KB) {
            // Prefetched meanwhile: the K block of the page after next and
            // this page's V rows (read after the segment's scores).
            int pg = (s0 + b) / KB, pn = pg + PFD < npg ? pg + PFD : npg - 1;
            const char *pk = (const char *)k + ((size_t)pages[pn] * pf + (size_t)g * d * KB) * esz;
            const char *pv = (const char *)v + ((size_t)pages[pg] * pf + (size_t)g * KB * d) * esz;
            group_scores(k, (size_t)pages[pg] * pf + (size_t)g * d * KB, (const float (*)[128])qs, d,
                         ns - b < KB ? ns - b : KB, sc, b, pk, pv, KT, G);
        }
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) {
            __m256 mx = ninf;
            for (int t = 0; t < nsv; t++) mx = _mm256_max_ps(mx, _mm256_load_ps(&sc[h][t * 8]));
            float smax = pz_hmax256(mx);
            if (smax > m[h]) {
                float cf = expf(m[h] - smax);  // exp(-inf) = 0 on the first segment
                __m256 cv = _mm256_set1_ps(cf);
                for (int c = 0; c < nv; c++)
                    _mm256_store_ps(&oacc[h][c * 8], _mm256_mul_ps(_mm256_load_ps(&oacc[h][c * 8]), cv));
                l[h] *= cf;
                m[h] = smax;
            }
            __m256 mv = _mm256_set1_ps(m[h]), ls = _mm256_setzero_ps();
            for (int t = 0; t < nsv; t++) {
                __m256 s = _mm256_load_ps(&sc[h][t * 8]);
                // slots past the last key are -inf: exactly 0
                __m256 p = _mm256_and_ps(_mm256_cmp_ps(s, ninf, _CMP_NEQ_OQ), pz_vexp256(_mm256_sub_ps(s, mv)));
                ls = _mm256_add_ps(ls, p);
                _mm256_store_ps(&sc[h][t * 8], p);
            }
            l[h] += pz_hsum256(ls);
        }
        int c0 = 0;
        for (; c0 + CW <= nv; c0 += CW)
            group_values(v, pages, pf, g, d, s0, ns, (const float (*)[SEG])sc, oacc, c0, KT, G, CW, VP);
        for (; c0 < nv; c0 += CR)
            group_values(v, pages, pf, g, d, s0, ns, (const float (*)[SEG])sc, oacc, c0, KT, G, CR, VP);
    }
#pragma GCC unroll 4
    for (int h = 0; h < G; h++) {
        __m256 inv = _mm256_set1_ps(vs / l[h]);
        float *o = out + (size_t)h * d;
        if (VP) {
            for (int c = 0; c < nv; c += 2) {  // [even | odd] dimensions back in order
                __m256 e = _mm256_mul_ps(_mm256_load_ps(&oacc[h][c * 8]), inv);
                __m256 f = _mm256_mul_ps(_mm256_load_ps(&oacc[h][c * 8 + 8]), inv);
                __m256 lo = _mm256_unpacklo_ps(e, f), hi = _mm256_unpackhi_ps(e, f);
                _mm256_storeu_ps(o + c * 8, _mm256_permute2f128_ps(lo, hi, 0x20));
                _mm256_storeu_ps(o + c * 8 + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
            }
        } else {
            for (int c = 0; c < nv; c++) _mm256_storeu_ps(o + c * 8, _mm256_mul_ps(_mm256_load_ps(&oacc[h][c * 8]), inv));
        }
    }
}

#define GR_CASE(gg)                                                                                     \
    case gg:                                                                                            \
        if (kt == PZ_DT_E4M3)                                                                           \
            attn_group_narrow_t(q, out, k, v, pages, pf, g, n_keys, d, scale, ks, vs, PZ_DT_E4M3, gg, 0); \
        else if (d % 16 == 0)                                                                           \
            attn_group_narrow_t(q, out, k, v, pages, pf, g, n_keys, d, scale, ks, vs, PZ_DT_BF16, gg, 1); \
        else                                                                                            \
            attn_group_narrow_t(q, out, k, v, pages, pf, g, n_keys, d, scale, ks, vs, PZ_DT_BF16, gg, 0); \
        return 1;
T256F int pz_cpu_attn_group_narrow(const float *q, float *out, const void *k, const void *v, pz_dt kt, float ks,
                                   float vs, const int32_t *pages, size_t pf, int g, int n_keys, int d,
                                   float scale, int G) {
    if (d % 8 || d > 128) return 0;  // excluded by pz_cpu_attention_reads_narrow
    switch (G) {
        GR_CASE(1) GR_CASE(2) GR_CASE(3) GR_CASE(4)
    default: return 0;
    }
}
#undef GR_CASE
