// cuda_plan.c — see cuda_plan.h. Host arithmetic only: no CUDA header.
#include "cuda_plan.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

int pz_cuda_flatten_attn(const pz_attn_seq *seqs, int n_seq, int n_head, int head_dim,
                         pz_cuda_attn_desc *out, char *err) {
    long rows = 0;
    const int width = n_head * head_dim;
    for (int i = 0; i < n_seq; i++) {
        const pz_attn_seq *s = &seqs[i];
        const char *bad = NULL;
        if (s->n_q < 0 || s->pos0 < 0) bad = "negative n_q or pos0";
        else if (s->n_q > 0 && (!s->q || !s->out || !s->k || !s->v)) bad = "a NULL q, out, k or v";
        else if (s->q_ld < width || s->out_ld < width) bad = "q_ld or out_ld below n_head*head_dim";
        else if (s->kv_ld < 0) bad = "negative kv_ld";
        else if (s->kv_ld == 0 && s->n_q > 0 && !s->pages) bad = "paged K/V without a page table";
        else if (s->kv_ld > 0 && s->kv_type != PZ_DT_F32) bad = "row-major K/V that is not f32";
        else if ((long)s->pos0 + s->n_q > INT_MAX) bad = "positions past INT_MAX";
        if (bad) {
            if (err) snprintf(err, PZ_ERRLEN, "attention: sequence %d has %s", i, bad);
            return -1;
        }
        pz_cuda_attn_desc d = {
            .q = s->q, .out = s->out, .k = s->k, .v = s->v, .pages = s->pages,
            .k_scale = s->kv_ld ? 1.0f : s->k_scale, .v_scale = s->kv_ld ? 1.0f : s->v_scale,
            .q_ld = s->q_ld, .out_ld = s->out_ld, .kv_ld = s->kv_ld,
            .kv_type = s->kv_ld ? PZ_DT_F32 : (int)s->kv_type,
            .n_q = s->n_q, .pos0 = s->pos0, .row0 = (int)rows,
        };
        out[i] = d;
        rows += s->n_q;
        if (rows > INT_MAX) {
            if (err) snprintf(err, PZ_ERRLEN, "attention: more than INT_MAX query rows");
            return -1;
        }
    }
    return (int)rows;
}

int pz_cuda_attn_find_seq(const pz_cuda_attn_desc *d, int n_seq, int r) {
    int lo = 0, hi = n_seq - 1;
    while (lo < hi) {  // last i with d[i].row0 <= r
        int mid = (lo + hi + 1) / 2;
        if (d[mid].row0 <= r) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

int pz_pack_page_tables(const int32_t *const *tables, const int *n_pages, int n_seq, int stride,
                        int32_t *out, char *err) {
    for (int i = 0; i < n_seq; i++) {
        if (n_pages[i] < 0 || n_pages[i] > stride) {
            if (err) snprintf(err, PZ_ERRLEN, "page table %d has %d pages, more than the %d packed",
                              i, n_pages[i], stride);
            return -1;
        }
        for (int j = 0; j < stride; j++) {
            int32_t p = j < n_pages[i] ? tables[i][j] : -1;
            if (j < n_pages[i] && p < 0) {
                if (err) snprintf(err, PZ_ERRLEN, "page table %d: page %d has id %d", i, j, (int)p);
                return -1;
            }
            out[(size_t)i * stride + j] = p;
        }
    }
    return 0;
}

int pz_kv_row_pages(const int32_t *table, int n_pages, const int32_t *pos, int R, int32_t *row_page,
                    char *err) {
    for (int r = 0; r < R; r++) {
        if (pos[r] < 0 || pos[r] / PZ_KV_PAGE >= n_pages) {
            if (err) snprintf(err, PZ_ERRLEN, "kv rows: position %d is outside a %d-page table",
                              (int)pos[r], n_pages);
            return -1;
        }
        row_page[r] = table[pos[r] / PZ_KV_PAGE];
    }
    return 0;
}

float pz_fp8_scale(float amax) {
    if (!(amax > 0) || isinf(amax)) return 1.0f;
    float s = amax / PZ_E4M3_MAX;
    return s > 0 ? s : 1.0f;  // amax below 448 · FLT_TRUE_MIN underflows
}

float pz_fp8_fused_scale(const float *scales, int n) {
    float m = scales[0];
    for (int i = 1; i < n; i++)
        if (scales[i] > m) m = scales[i];
    return m;
}

int pz_graph_bucket(int batch, const int *buckets, int n_buckets) {
    if (batch < 1) return -1;
    for (int i = 0; i < n_buckets; i++)
        if (buckets[i] >= batch) return i;
    return -1;
}

int pz_graph_default_buckets(int max_batch, int *buckets, int cap) {
    int n = 0;
    for (int b = 1; b < max_batch && n < cap;) {
        buckets[n++] = b;
        b = b < 8 ? b * 2 : b < 64 ? b + 8 : b + 32;
    }
    if (max_batch >= 1 && n < cap) buckets[n++] = max_batch;
    return n;
}
