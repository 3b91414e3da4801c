// bench_engine.c — prefill and decode speed of the engine on the reference
// parent, for fp32 and bf16 weights, each next to the ceiling it should be
// judged against, measured in the same run:
//   decode  ceiling: a plain read pass over as many bytes as the weights
//           (decode must stream every weight once per token), so
//           efficiency = (decode tok/s) / (read GB/s / weight bytes);
//   prefill ceiling: the matmul library itself on exactly the products of
//           one prefill pass (same M, N, K, dtype), so efficiency =
//           (library time for those products) / (engine prefill time)
//           = achieved GFLOP/s / library GFLOP/s.
// Prints a table and writes it to results/engine_bench.md.
//
// usage: bench_engine [-e] [-w f32|bf16] [-n decode] [-r reps] [model.gguf|hf-dir]
//                     [threads] [prompt] [out.md]
//        (model defaults to $PUZZLE_MODEL; threads 2; prompt 512 tokens;
//        decode 48 tokens; 5 repetitions; both weight types)
//   -e: the engine alone (no library pass, no read pass, no table): one
//       line per weight type, "engine wt=.. prompt=.. decode=.. prefill_tps=..
//       decode_tps=..", for scripts (bench/vs_llama_cpp.sh) that compare runs.
#include "common.h"
#include "engine.h"
#include "model.h"
#include "cpu/gemv.h"
#include "cpu/matmul.h"

#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static int DECODE_TOKENS = 48, REPS = 5, ENGINE_ONLY = 0;

typedef struct {
    const char *wt;
    double load_s, prefill_tps, decode_tps, read_gbs, weight_gb;
    double lib_s, engine_prefill_s, mm_gflop;
    double eff_prefill, eff_decode;  // medians of the per-repetition ratios
} row;


// ---- the read pass ----------------------------------------------------------------
__attribute__((target("avx512f"))) static float sum_avx512(const float *x, size_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_add_ps(a0, _mm512_loadu_ps(x + i));
        a1 = _mm512_add_ps(a1, _mm512_loadu_ps(x + i + 16));
        a2 = _mm512_add_ps(a2, _mm512_loadu_ps(x + i + 32));
        a3 = _mm512_add_ps(a3, _mm512_loadu_ps(x + i + 48));
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; i++) s += x[i];
    return s;
}

__attribute__((target("avx2"))) static float sum_avx2(const float *x, size_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_add_ps(a0, _mm256_loadu_ps(x + i));
        a1 = _mm256_add_ps(a1, _mm256_loadu_ps(x + i + 8));
        a2 = _mm256_add_ps(a2, _mm256_loadu_ps(x + i + 16));
        a3 = _mm256_add_ps(a3, _mm256_loadu_ps(x + i + 24));
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    float s = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
    for (; i < n; i++) s += x[i];
    return s;
}

static float sum_plain(const float *x, size_t n) {
    float s = 0;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

// GB/s of the best of several passes over a buffer of `bytes`, split over
// nt threads the way the decode kernel splits rows.
static double read_pass_gbs(size_t bytes, int nt) {
    size_t n = bytes / 4;
    // Allocated like the weights (2 MiB-aligned, transparent huge pages), so
    // both sides of the ratio see the same TLB behaviour.
    size_t huge = (size_t)2 << 20, cap = (n * 4 + huge - 1) / huge * huge;
    float *buf = aligned_alloc(huge, cap);
    if (!buf) return 0;
    madvise(buf, cap, MADV_HUGEPAGE);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 7);
    double best = 1e30;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = pz_now();
        float tot = 0;
#pragma omp parallel num_threads(nt) reduction(+ : tot)
        {
            int t = omp_get_thread_num(), T = omp_get_num_threads();
            size_t a = n * t / T, b = n * (t + 1) / T;
            pz_isa isa = pz_cpu_isa();
            tot += isa >= PZ_ISA_AVX512 ? sum_avx512(buf + a, b - a)
                   : isa == PZ_ISA_AVX2 ? sum_avx2(buf + a, b - a)
                                        : sum_plain(buf + a, b - a);
        }
        double dt = pz_now() - t0;
        sink += tot;
        if (rep && dt < best) best = dt;
    }
    (void)sink;
    free(buf);
    return (double)bytes / best * 1e-9;
}

// ---- the library on the products of one prefill pass ------------------------------
typedef struct {
    int M, N, K, count;
} shape;

static int add_shape(shape *s, int n, int M, int N, int K) {
    for (int i = 0; i < n; i++)
        if (s[i].M == M && s[i].N == N && s[i].K == K) {
            s[i].count++;
            return n;
        }
    s[n] = (shape){M, N, K, 1};
    return n + 1;
}

// Seconds the library needs for the matmuls of one prefill of P tokens
// (chunk M = min(P, max_batch)), as the engine issues them (fused q|k|v and
// gate|up, lm_head on the last token only). flop: their total FLOPs.
static double library_prefill_s(const pz_model *m, int P, int max_batch, int nt, double *flop) {
    const pz_config *c = &m->cfg;
    shape s[4 * PZ_MAX_LAYERS + 1];
    int ns = 0;
    int H = c->hidden, qd = c->n_head * c->head_dim;
    for (int done = 0; done < P; done += max_batch) {
        int M = P - done < max_batch ? P - done : max_batch;
        for (int l = 0; l < c->n_layer; l++) {
            const pz_layer_spec *L = &c->layers[l];
            if (L->attn == PZ_ATTN_GQA) {
                ns = add_shape(s, ns, M, qd + 2 * L->n_kv * c->head_dim, H);
                ns = add_shape(s, ns, M, H, qd);
            } else if (L->attn == PZ_ATTN_LINEAR) {
                ns = add_shape(s, ns, M, H, H);
            }
            if (L->ffn == PZ_FFN_SWIGLU) {
                ns = add_shape(s, ns, M, 2 * L->n_ff, H);
                ns = add_shape(s, ns, M, H, L->n_ff);
            } else if (L->ffn == PZ_FFN_LINEAR) {
                ns = add_shape(s, ns, M, H, H);
            }
        }
    }
    ns = add_shape(s, ns, 1, c->vocab, H);
    char err[PZ_ERRLEN];
    pz_cpu_mm *mm = pz_cpu_matmul_create(nt, err);
    pz_dt dt = m->wtype == PZ_DT_BF16 ? PZ_DT_BF16 : PZ_DT_F32;
    size_t eb = dt == PZ_DT_BF16 ? 2 : 4;
    double total = 0;
    *flop = 0;
    for (int i = 0; i < ns; i++) {
        // Weights: distinct buffers per use would exceed cache like the real
        // model does; one buffer of the layer's size per shape is enough for
        // M >= 64 (compute-bound), and the M = 1 head is a single use anyway.
        size_t wbytes = (size_t)s[i].N * s[i].K * eb;
        void *w = aligned_alloc(64, (wbytes + 63) / 64 * 64);
        float *x = aligned_alloc(64, ((size_t)s[i].M * s[i].K * 4 + 63) / 64 * 64);
        float *y = aligned_alloc(64, ((size_t)s[i].M * s[i].N * 4 + 63) / 64 * 64);
        memset(w, 0x3c, wbytes);
        for (size_t j = 0; j < (size_t)s[i].M * s[i].K; j++) x[j] = (float)((j % 13) - 6) * 0.1f;
        double best = 1e30;
        for (int rep = 0; rep < 4; rep++) {
            double t0 = pz_now();
            pz_cpu_matmul_lib(mm, y, s[i].N, x, s[i].K, w, dt, s[i].M, s[i].N, s[i].K, 0, err);
            double t = pz_now() - t0;
            if (rep && t < best) best = t;
        }
        total += best * s[i].count;
        *flop += 2.0 * s[i].M * s[i].N * s[i].K * s[i].count;
        free(w), free(x), free(y);
    }
    pz_cpu_matmul_free(mm);
    return total;
}

static int run(const char *path, pz_dt wt, int nt, int P, row *r) {
    char err[PZ_ERRLEN];
    memset(r, 0, sizeof *r);
    r->wt = wt == PZ_DT_BF16 ? "bf16" : "fp32";
    double t0 = pz_now();
    pz_model *m = pz_model_load(path, wt, err);
    if (!m) {
        fprintf(stderr, "bench_engine: %s\n", err);
        return -1;
    }
    r->load_s = pz_now() - t0;
    r->weight_gb = pz_model_weight_bytes(m) * 1e-9;
    pz_engine_params p = pz_engine_default_params();
    p.n_threads = nt;
    p.max_ctx = P + DECODE_TOKENS + 8;
    p.max_batch = 512;
    pz_engine *e = pz_engine_create(m, p, err);
    if (!e) {
        fprintf(stderr, "bench_engine: %s\n", err);
        pz_model_free(m);
        return -1;
    }
    int V = m->cfg.vocab;
    int32_t *tok = malloc(sizeof(int32_t) * (P + DECODE_TOKENS));
    uint64_t s = 88172645463325252ULL;
    for (int i = 0; i < P + DECODE_TOKENS; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        tok[i] = (int32_t)(s % (uint64_t)V);
    }
    float *lg = malloc(sizeof(float) * V);
    // Engine, library and read pass take turns in every repetition, so a
    // change of load from other processes (or of the host's memory
    // bandwidth) hits both sides of a ratio alike; the efficiencies are the
    // medians of the per-repetition ratios, the rates the best seen.
    double best_pf = 1e30, best_dc = 1e30, best_lib = 1e30, best_read = 0;
    double eff_pf[64], eff_dc[64];
    int nrep = 0;
    double wbytes = (double)pz_model_weight_bytes(m);
    for (int rep = 0; rep < REPS; rep++) {
        pz_engine_slot_reset(e, 0);
        double a = pz_now();
        if (pz_engine_prefill(e, 0, tok, P, lg, 0, err)) {
            fprintf(stderr, "bench_engine: %s\n", err);
            break;
        }
        double b = pz_now();
        double lib = ENGINE_ONLY ? 1 : library_prefill_s(m, P, p.max_batch, nt, &r->mm_gflop);
        double c = pz_now();
        int slot = 0;
        for (int i = 0; i < DECODE_TOKENS; i++)
            if (pz_engine_decode(e, &slot, &tok[P + i], 1, lg, err)) fprintf(stderr, "bench_engine: %s\n", err);
        double d = pz_now();
        double rd = ENGINE_ONLY ? 1 : read_pass_gbs(pz_model_weight_bytes(m), nt);
        if (b - a < best_pf) best_pf = b - a;
        if (d - c < best_dc) best_dc = d - c;
        if (lib < best_lib) best_lib = lib;
        if (rd > best_read) best_read = rd;
        eff_pf[nrep] = lib / (b - a);
        eff_dc[nrep] = (DECODE_TOKENS / (d - c)) / (rd * 1e9 / wbytes);
        nrep++;
    }
    r->engine_prefill_s = best_pf;
    r->prefill_tps = P / best_pf;
    r->decode_tps = DECODE_TOKENS / best_dc;
    r->read_gbs = best_read;
    r->lib_s = best_lib;
    r->eff_prefill = nrep ? pz_median(eff_pf, nrep) : 0;
    r->eff_decode = nrep ? pz_median(eff_dc, nrep) : 0;
    r->mm_gflop *= 1e-9;
    free(tok);
    free(lg);
    pz_engine_free(e);
    pz_model_free(m);
    return 0;
}

static void cpu_name(char *buf, size_t cap) {
    snprintf(buf, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                p += 2;
                p[strcspn(p, "\n")] = 0;
                snprintf(buf, cap, "%s", p);
            }
            break;
        }
    fclose(f);
}

int main(int argc, char **argv) {
    // With other processes on the cores, libgomp's default spinning at each
    // barrier starves the thread it waits for (decode: ~150 barriers per
    // token ran 10-30x slower than one thread). The policy is read when
    // libgomp loads, so set it and start again.
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    int wmask = 3, ai = 1;  // bit 0: fp32, bit 1: bf16
    for (; ai < argc && argv[ai][0] == '-' && argv[ai][1]; ai++) {
        const char *o = argv[ai], *v = ai + 1 < argc ? argv[ai + 1] : NULL;
        if (strcmp(o, "-e") == 0) {
            ENGINE_ONLY = 1;
        } else if (strcmp(o, "-w") == 0 && v) {
            wmask = strcmp(v, "bf16") == 0 ? 2 : strcmp(v, "f32") == 0 || strcmp(v, "fp32") == 0 ? 1 : 0;
            ai++;
        } else if (strcmp(o, "-n") == 0 && v) {
            DECODE_TOKENS = atoi(v);
            ai++;
        } else if (strcmp(o, "-r") == 0 && v) {
            REPS = atoi(v);
            ai++;
        } else {
            wmask = 0;
            break;
        }
    }
    const char *path = argc > ai ? argv[ai] : getenv("PUZZLE_MODEL");
    int nt = argc > ai + 1 ? atoi(argv[ai + 1]) : 2;
    int P = argc > ai + 2 ? atoi(argv[ai + 2]) : 512;
    const char *out = argc > ai + 3 ? argv[ai + 3] : "results/engine_bench.md";
    if (!path || !*path || !wmask || DECODE_TOKENS < 1 || REPS < 1 || REPS > 64 || P < 1) {
        fprintf(stderr, "usage: bench_engine [-e] [-w f32|bf16] [-n decode] [-r reps] [model] [threads] [prompt] "
                        "[out.md] (or set PUZZLE_MODEL)\n");
        return 2;
    }
    row rows[2];
    int nrows = 0;
    for (int w = 0; w < 2; w++)
        if ((wmask >> w & 1) && run(path, w ? PZ_DT_BF16 : PZ_DT_F32, nt, P, &rows[nrows]) == 0) nrows++;
    if (!nrows) return 1;
    if (ENGINE_ONLY) {
        for (int i = 0; i < nrows; i++)
            printf("engine wt=%s prompt=%d decode=%d prefill_tps=%.2f decode_tps=%.2f isa=%s wait=%s\n",
                   rows[i].wt, P, DECODE_TOKENS, rows[i].prefill_tps, rows[i].decode_tps,
                   pz_cpu_isa_name(pz_cpu_isa()), getenv("OMP_WAIT_POLICY"));
        return 0;
    }

    char cpu[256], date[64], host[128] = "?";
    cpu_name(cpu, sizeof cpu);
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    gethostname(host, sizeof host);
    char cmd[1024] = "";
    for (int i = 0; i < argc; i++) {
        strncat(cmd, argv[i], sizeof cmd - strlen(cmd) - 2);
        strncat(cmd, " ", sizeof cmd - strlen(cmd) - 1);
    }
    char tab[4096];
    int n = 0;
    n += snprintf(tab + n, sizeof tab - n,
                  "| weights | MB | load s | prefill tok/s | engine GFLOP/s | library GFLOP/s | prefill eff. | "
                  "decode tok/s | read GB/s | read-bound tok/s | decode eff. |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nrows; i++) {
        row *r = &rows[i];
        double bound = r->read_gbs / r->weight_gb;
        n += snprintf(tab + n, sizeof tab - n,
                      "| %s | %.0f | %.2f | %.1f | %.1f | %.1f | %.0f %% | %.1f | %.1f | %.1f | %.0f %% |\n", r->wt,
                      r->weight_gb * 1e3, r->load_s, r->prefill_tps, r->mm_gflop / r->engine_prefill_s,
                      r->mm_gflop / r->lib_s, 100 * r->eff_prefill, r->decode_tps, r->read_gbs,
                      bound, 100 * r->eff_decode);
    }
    printf("%s", tab);
    FILE *f = fopen(out, "w");
    if (!f) {
        fprintf(stderr, "bench_engine: cannot write %s\n", out);
        return 0;
    }
    fprintf(f, "# Engine benchmark (CPU)\n\n");
    fprintf(f, "- machine: %s, %d threads used (%d online), host %s\n", cpu, nt, (int)sysconf(_SC_NPROCESSORS_ONLN), host);
    fprintf(f, "- matmul library: %s; kernels at level %s (processor: %s), AVX512_BF16 %s\n",
            pz_cpu_matmul_library(), pz_cpu_isa_name(pz_cpu_isa()), pz_cpu_isa_name(pz_cpu_isa_detected()),
            pz_cpu_have_avx512_bf16() ? "yes" : "no");
    double la[3] = {0, 0, 0};
    if (getloadavg(la, 3) < 0) la[0] = -1;
    fprintf(f, "- date: %s\n- command: `%s` (OMP_WAIT_POLICY=%s)\n- model: %s\n", date, cmd,
            getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "(unset)", path);
    fprintf(f, "- load average when done: %.2f %.2f %.2f (other engineers' jobs share the cores)\n", la[0], la[1], la[2]);
    fprintf(f, "- prefill: one %d-token prompt (logits of the last token); decode: %d tokens at batch 1 after "
               "the %d-token prompt; %d repetitions\n\n", P, DECODE_TOKENS, P, REPS);
    fprintf(f, "%s\n", tab);
    fprintf(f, "Columns: *engine GFLOP/s* = FLOPs of the pass's matrix products / engine prefill time; "
               "*library GFLOP/s* = the same products run alone through the library (same M, N, K, dtype); "
               "*prefill eff.* = library time / engine time. *read GB/s* = a plain vector read pass (AVX-512 or AVX2) over a buffer "
               "as large as the weights (allocated like them, transparent huge pages), same threads; *read-bound "
               "tok/s* = read GB/s / weight bytes; *decode eff.* = decode tok/s / read-bound tok/s. Rates are the "
               "best of the repetitions; each efficiency is the median over repetitions of the ratio measured "
               "within one repetition (engine, library and read pass run back to back). The machine is shared, so "
               "absolute numbers are noisy.\n");
    fprintf(f, "\nNotes (how the engine gets there; see kernels/cpu/*.h):\n\n"
               "- Decode products (M <= 8 rows) bypass the library: oneDNN's M = 1 path streamed weights at "
               "about a third of the read rate. kernels/cpu/gemv.c walks W front to back, one row against up to "
               "4 (AVX-512) or 3 (AVX2) activation rows; bf16 weights are split into even/odd fp32 halves with a shift and a mask "
               "against a pre-permuted activation row (no widening shuffles), exact bf16 weights x fp32 "
               "activations. One core already saturates memory bandwidth here, so products under 4 MiB (and "
               "decode attention under 32k key-head pairs) run on one thread and skip the wake-up.\n"
               "- Weights and KV cache are 2 MiB-aligned with MADV_HUGEPAGE (the read pass buffer too): "
               "4 KiB-page TLB misses cost ~20-30 %% of the streaming rate.\n"
               "- KV cache: per KV head one contiguous run, K transposed in 16-position blocks (16 scores per "
               "vector FMA chain, no horizontal sums), V row-major; decode attention handles all query heads "
               "of a KV head in one pass, so the cache is read once per token at full bandwidth. The KV cache "
               "is fp32 and its bytes are not in the read-bound denominator (at 512 tokens of context they add "
               "~6 %% to fp32 and ~11 %% to bf16 decode traffic).\n"
               "- Prefill: q|k|v and gate|up are each one product (adjacent in the weight arena), residual adds "
               "are fused into the products (oneDNN sum post-op), primitives are cached per shape. bf16: %s "
               "The rest of prefill time is "
               "attention (causal, 512 x 512 per head) and the element-wise ops. The library's share includes "
               "the lm_head at M = 1 through oneDNN (~1 %% of the pass).\n"
               "- OMP_WAIT_POLICY: the benchmark sets passive when unset; with libgomp's default spinning and "
               "other jobs on the two cores, 2-thread decode ran 10-30x slower than with one thread.\n",
            pz_cpu_matmul_bf16_rounds_activations()
                ? "activations are rounded to bf16 and oneDNN runs bf16 x bf16 -> fp32 (AVX512_BF16 or AMX); "
                  "on an AVX512_BF16 processor without AMX the library reached ~1.9x its fp32 rate."
                : "this oneDNN has no bf16 matmul for this processor (AVX2 only), so the weights are widened to "
                  "fp32 a ~4 MiB tile at a time and the product is fp32 (exact, at the fp32 rate).");
    fclose(f);
    printf("wrote %s\n", out);
    return 0;
}
