// attention.c — see attention.h.
#include "attention.h"
#include "gemv.h"
#include "vexp.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#define KB 16  // positions per K block

size_t pz_cpu_kv_bytes(int n_kv, int head_dim, int n_pos) {
    size_t blocks = ((size_t)n_pos + KB - 1) / KB;
    return blocks * KB * (size_t)n_kv * (size_t)head_dim * sizeof(float);
}

void pz_cpu_kv_write(float *k_cache, float *v_cache, int n_kv, int head_dim, int pos, const float *k,
                     const float *v) {
    size_t kvd = (size_t)n_kv * head_dim;
    float *kb = k_cache + (size_t)(pos / KB) * kvd * KB + pos % KB;
    for (size_t c = 0; c < kvd; c++) kb[c * KB] = k[c];  // c = g*head_dim + i
    memcpy(v_cache + (size_t)pos * kvd, v, sizeof(float) * kvd);
}

// K element (key j, dimension i) of KV head g; kld 0: the cache layout.
static inline float kat(const float *k, int kld, int n_kv, int d, int g, int j, int i) {
    if (kld) return k[(size_t)j * kld + (size_t)g * d + i];
    return k[(((size_t)(j / KB) * n_kv + g) * d + i) * KB + j % KB];
}

// ---- plain C: one query row, one head ------------------------------------------
static void attn_row_ref(const float *q, float *out, const float *k, const float *v, int kld, int n_kv,
                         int g, int n_keys, int d, float scale) {
    float acc[PZ_ATTN_MAX_HEAD_DIM];
    float m = -INFINITY, l = 0;
    const size_t kvd = kld ? (size_t)kld : (size_t)n_kv * d;
    memset(acc, 0, sizeof(float) * (size_t)d);
    for (int j = 0; j < n_keys; j++) {
        const float *vj = v + (size_t)j * kvd + (size_t)g * d;
        float s = 0;
        for (int i = 0; i < d; i++) s += q[i] * kat(k, kld, n_kv, d, g, j, i);
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
attn_row_avx512_nv(const float *q, float *out, const float *k, const float *v, int kld, int n_kv, int g,
                   int n_keys, int d, float scale, const int NV) {
    float qs[PZ_ATTN_MAX_HEAD_DIM] __attribute__((aligned(64)));
    for (int i = 0; i < d; i++) qs[i] = q[i] * scale;
    __m512 acc[8];  // fixed size (not a VLA) so it can live in registers
    const __mmask16 last = (d % 16) ? (__mmask16)((1u << (d % 16)) - 1) : (__mmask16)0xFFFF;
#define MK(c) ((c) == NV - 1 ? last : (__mmask16)0xFFFF)
#pragma GCC unroll 8
    for (int c = 0; c < NV; c++) acc[c] = _mm512_setzero_ps();
    const size_t kvd = kld ? (size_t)kld : (size_t)n_kv * d;
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
            const float *kt = k + ((size_t)(j0 / KB) * n_kv + g) * d * KB;
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
            const float *vj = v + (size_t)(j0 + jj) * kvd + (size_t)g * d;
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
    case n: attn_row_avx512_nv(q, out, k, v, kld, n_kv, g, n_keys, d, scale, n); return 1;
PZ_T512 static int attn_row_avx512(const float *q, float *out, const float *k, const float *v, int kld,
                                   int n_kv, int g, int n_keys, int d, float scale) {
    switch ((d + 15) / 16) {
        NV_CASE(1) NV_CASE(2) NV_CASE(3) NV_CASE(4) NV_CASE(5) NV_CASE(6) NV_CASE(7) NV_CASE(8)
    default: return 0;  // head_dim > 128: the plain loop
    }
}
#undef NV_CASE

int pz_cpu_attention(const pz_attn_seq *seqs, int n_seq, int n_head, int n_kv, int head_dim,
                     int n_threads, char *err) {
    if (head_dim <= 0 || head_dim % 2 || head_dim > PZ_ATTN_MAX_HEAD_DIM || n_kv <= 0 ||
        n_head % n_kv) {
        if (err)
            snprintf(err, PZ_ERRLEN, "attention: unsupported shape n_head=%d n_kv=%d head_dim=%d",
                     n_head, n_kv, head_dim);
        return -1;
    }
    const int group = n_head / n_kv;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const int avx = pz_cpu_have_avx512();
    long total = 0;
    for (int s = 0; s < n_seq; s++) total += (long)seqs[s].n_q * n_head;
    int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
    if (total < 2) nt = 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    for (int s = 0; s < n_seq; s++) {
        const pz_attn_seq *sq = &seqs[s];
        long items = (long)sq->n_q * n_head;
#pragma omp for schedule(dynamic, 1) nowait
        for (long it = 0; it < items; it++) {
            // Later queries have more keys: hand them out first.
            int t = sq->n_q - 1 - (int)(it / n_head), h = (int)(it % n_head);
            int g = h / group;
            const float *q = sq->q + (size_t)t * sq->q_ld + (size_t)h * head_dim;
            float *o = sq->out + (size_t)t * sq->out_ld + (size_t)h * head_dim;
            int n_keys = sq->pos0 + t + 1;
            if (!avx || !attn_row_avx512(q, o, sq->k, sq->v, sq->kv_ld, n_kv, g, n_keys, head_dim, scale))
                attn_row_ref(q, o, sq->k, sq->v, sq->kv_ld, n_kv, g, n_keys, head_dim, scale);
        }
    }
    return 0;
}
