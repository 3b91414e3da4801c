// bench_attn.c — decode attention alone, as in one batched decode step of
// `puzzle serve`: S sequences (16) with one query each, L layers (30), each
// layer with its own page pools (so the pages stream from memory as in a
// real step, not from cache), the reference parent's shape (9 query heads,
// 3 KV heads, head_dim 64), pages interleaved across the sequences as
// sequences that decode in lockstep allocate them. For each context length,
// the two ways of running the narrow-page kernel alternate within each
// repetition (pz_cpu_attention_set_grouped_narrow): once per query head
// (each page read and widened once per head, as before the grouped kernel)
// and once per KV head for the query heads that share it, so a shared
// machine's load falls on both alike. Prints, per
// context, the best and median time per (sequence, layer), the effective
// KV read rate (each K and V element of every sequence's context counted
// once per step) and the median of the per-repetition time ratios.
//
// usage: bench_attn [threads] [reps] [kv bf16|fp8] [contexts] [seqs] [layers] [H:KV:D]
//        (2 threads, 15 repetitions, bf16 pages, contexts 64,256,1024,
//        16 sequences, 30 layers, 9 query heads : 3 KV heads : head_dim 64)
#include "backend.h"
#include "common.h"
#include "cpu/attention.h"
#include "fp8.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int H = 9, KV = 3, D = 64;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) {  // uniform in [-1, 1)
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0) - 1.0);
}

static uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_d);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, reps = argc > 2 ? atoi(argv[2]) : 15;
    const char *kvs = argc > 3 ? argv[3] : "bf16", *ctxs = argc > 4 ? argv[4] : "64,256,1024";
    int S = argc > 5 ? atoi(argv[5]) : 16, L = argc > 6 ? atoi(argv[6]) : 30;
    pz_dt kt = strcmp(kvs, "fp8") == 0 ? PZ_DT_E4M3 : PZ_DT_BF16;
    if (argc > 7 && sscanf(argv[7], "%d:%d:%d", &H, &KV, &D) != 3) H = 0;
    if (threads < 1 || reps < 1 || reps > 1000 || S < 1 || L < 1 || (kt == PZ_DT_BF16 && strcmp(kvs, "bf16")) ||
        H < 1 || KV < 1 || H % KV || D < 2 || D % 2) {
        fprintf(stderr, "usage: bench_attn [threads] [reps] [kv bf16|fp8] [contexts] [seqs] [layers] [H:KV:D]\n");
        return 2;
    }
    char err[PZ_ERRLEN];
    pz_backend *B = pz_backend_create(PZ_BACKEND_CPU, threads, err);
    if (!B) {
        fprintf(stderr, "bench_attn: %s\n", err);
        return 1;
    }
    if (!pz_cpu_attention_reads_narrow(kt, D))
        printf("note: this processor level does not read %s pages directly (the backend widens them first)\n",
               kvs);
    const size_t esz = kt == PZ_DT_E4M3 ? 1 : 2;
    printf("decode attention, %d sequences x %d layers, %d heads / %d KV heads x %d, %s pages, %d threads, "
           "best / median of %d\n",
           S, L, H, KV, D, kvs, threads, reps);
    printf("| context | kernel | ns / (seq, layer) best | median | KV GB/s (best) | per-head / grouped time (median) |\n"
           "|---|---|---|---|---|---|\n");
    for (const char *c = ctxs; *c;) {
        int ctx = atoi(c);
        while (*c && *c != ',') c++;
        if (*c == ',') c++;
        if (ctx < 1) continue;
        int np = (ctx + PZ_KV_PAGE - 1) / PZ_KV_PAGE, pages = np * S;
        size_t pb = B->kv_page_bytes(B, KV, D, kt), pool = pb * (size_t)pages;
        void **kp = malloc(sizeof(void *) * (size_t)L), **vp = malloc(sizeof(void *) * (size_t)L);
        int32_t *tab = malloc(sizeof(int32_t) * (size_t)pages);
        float *q = malloc(sizeof(float) * (size_t)S * H * D), *out = malloc(sizeof(float) * (size_t)S * H * D);
        pz_attn_seq *seqs = malloc(sizeof(pz_attn_seq) * (size_t)S * L);
        for (int s = 0; s < S; s++)
            for (int p = 0; p < np; p++) tab[s * np + p] = p * S + s;  // lockstep allocation
        for (size_t i = 0; i < (size_t)S * H * D; i++) q[i] = 2.0f * frand();
        for (int l = 0; l < L; l++) {
            kp[l] = B->alloc(B, pool), vp[l] = B->alloc(B, pool);
            if (!kp[l] || !vp[l]) {
                fprintf(stderr, "bench_attn: out of memory (%zu bytes per pool)\n", pool);
                return 1;
            }
            if (l == 0) {
                size_t n = pool / esz;
                for (int w = 0; w < 2; w++) {
                    void *dst = w ? vp[0] : kp[0];
                    for (size_t i = 0; i < n; i++) {
                        float x = 2.0f * frand();
                        if (kt == PZ_DT_BF16) ((uint16_t *)dst)[i] = to_bf16(x);
                        else ((uint8_t *)dst)[i] = pz_f32_to_e4m3(x * 100.0f);
                    }
                }
            } else {
                memcpy(kp[l], kp[0], pool), memcpy(vp[l], vp[0], pool);
            }
            for (int s = 0; s < S; s++)
                seqs[l * S + s] = (pz_attn_seq){.q = q + (size_t)s * H * D, .q_ld = H * D,
                                                .out = out + (size_t)s * H * D, .out_ld = H * D, .k = kp[l],
                                                .v = vp[l], .kv_ld = 0, .pages = tab + s * np, .kv_type = kt,
                                                .k_scale = kt == PZ_DT_E4M3 ? 0.01f : 1,
                                                .v_scale = kt == PZ_DT_E4M3 ? 0.01f : 1, .n_q = 1,
                                                .pos0 = ctx - 1};
        }
        double *t[2], *ratio = malloc(sizeof(double) * (size_t)reps);
        t[0] = malloc(sizeof(double) * (size_t)reps), t[1] = malloc(sizeof(double) * (size_t)reps);
        for (int r = -1; r < reps; r++) {  // r = -1: warm-up
            for (int v = 0; v < 2; v++) {
                pz_cpu_attention_set_grouped_narrow(v);
                double t0 = pz_now();
                for (int l = 0; l < L; l++)
                    if (B->attention(B, seqs + (size_t)l * S, S, H, KV, D, err)) {
                        fprintf(stderr, "bench_attn: %s\n", err);
                        return 1;
                    }
                if (r >= 0) t[v][r] = pz_now() - t0;
            }
            if (r >= 0) ratio[r] = t[0][r] / t[1][r];
        }
        pz_cpu_attention_set_grouped_narrow(1);
        double bytes = 2.0 * S * L * (double)ctx * KV * D * (double)esz;  // K and V read once per step
        for (int v = 0; v < 2; v++) {
            double best = 1e30;
            for (int r = 0; r < reps; r++) best = t[v][r] < best ? t[v][r] : best;
            double med = median(t[v], reps);
            printf("| %d | %s | %.0f | %.0f | %.1f |", ctx, v ? "grouped" : "per head", best * 1e9 / (S * L),
                   med * 1e9 / (S * L), bytes / best * 1e-9);
            if (v) printf(" %.2f |\n", median(ratio, reps));
            else printf(" |\n");
        }
        fflush(stdout);
        for (int l = 0; l < L; l++) B->free(B, kp[l]), B->free(B, vp[l]);
        free(kp), free(vp), free(tab), free(q), free(out), free(seqs), free(t[0]), free(t[1]), free(ratio);
    }
    pz_backend_free(B);
    return 0;
}
