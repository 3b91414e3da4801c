// labels: cpu model
// test_smollm2_ref.c — the golden end-to-end test of the runtime: the engine
// running the reference parent (SmolLM2-135M-Instruct Q4_1, loaded as fp32)
// against an independent NumPy implementation (tests/ref/smollm2_numpy.py,
// float64 over gguf-dequantized weights, adjacent-pair RoPE on the GGUF's
// permuted Q/K, so it also checks the loader's un-permutation).
//
// For each prompt in tests/data/smollm2_ref/index.txt: prefill with
// all_logits; at the stored positions (first, middle, last) the relative
// error max|a-b|/max|b| must be <= 1e-4 and the top-1 token must match; then
// greedy decoding (pz_engine_decode + pz_argmax) must reproduce the stored 16
// tokens. Skipped (77) when the model file is absent ($PUZZLE_MODEL).
//
// index.txt layout (one prompt = 5 lines; logits files are little-endian
// float32, [n_positions][vocab] row-major):
//   vocab V
//   prompt NAME FILE N_IDS N_POS N_GREEDY
//   ids ...        positions ...        top1 ...        greedy ...
#include "common.h"
#include "engine.h"
#include "model.h"
#include "sampler.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#define MAX_IDS 64
#define MAX_POS 8
#define MAX_GREEDY 32
#define TOL 1e-4

typedef struct {
    char name[64], file[128];
    int n_ids, n_pos, n_greedy;
    int32_t ids[MAX_IDS];
    int pos[MAX_POS], top1[MAX_POS];
    int32_t greedy[MAX_GREEDY];
} ref_prompt;

// Reads "KEY v1 v2 ... vn" into v; returns 0 when the key and count match.
static int read_ints(FILE *f, const char *key, int *v, int n) {
    char k[32];
    if (fscanf(f, "%31s", k) != 1 || strcmp(k, key) != 0) return -1;
    for (int i = 0; i < n; i++)
        if (fscanf(f, "%d", &v[i]) != 1) return -1;
    return 0;
}

// Returns the number of prompts read into p (at most cap), or -1.
static int read_index(const char *path, int *vocab, ref_prompt *p, int cap) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[512];
    int n = 0, ok = 1;
    *vocab = 0;
    while (ok && fscanf(f, "%511s", line) == 1) {
        if (line[0] == '#') {
            if (!fgets(line, sizeof line, f)) break;
        } else if (strcmp(line, "vocab") == 0) {
            ok = fscanf(f, "%d", vocab) == 1;
        } else if (strcmp(line, "prompt") == 0 && n < cap) {
            ref_prompt *r = &p[n];
            int tmp[MAX_IDS > MAX_GREEDY ? MAX_IDS : MAX_GREEDY];
            ok = fscanf(f, "%63s %127s %d %d %d", r->name, r->file, &r->n_ids, &r->n_pos, &r->n_greedy) == 5 &&
                 r->n_ids > 0 && r->n_ids <= MAX_IDS && r->n_pos > 0 && r->n_pos <= MAX_POS &&
                 r->n_greedy >= 0 && r->n_greedy <= MAX_GREEDY;
            ok = ok && read_ints(f, "ids", tmp, r->n_ids) == 0;
            for (int i = 0; ok && i < r->n_ids; i++) r->ids[i] = tmp[i];
            ok = ok && read_ints(f, "positions", r->pos, r->n_pos) == 0;
            ok = ok && read_ints(f, "top1", r->top1, r->n_pos) == 0;
            ok = ok && read_ints(f, "greedy", tmp, r->n_greedy) == 0;
            for (int i = 0; ok && i < r->n_greedy; i++) r->greedy[i] = tmp[i];
            for (int i = 0; ok && i < r->n_pos; i++) ok = r->pos[i] >= 0 && r->pos[i] < r->n_ids;
            n += ok;
        } else {
            ok = 0;
        }
    }
    fclose(f);
    return ok ? n : -1;
}

static float *read_f32(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *x = malloc(n * sizeof(float));
    size_t got = x ? fread(x, sizeof(float), n, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != n || extra) {
        free(x);
        return NULL;
    }
    return x;  // little-endian on disk; this test assumes a little-endian host
}

int main(void) {
    const char *model_path = pz_test_model_path();
    if (!model_path) {
        fprintf(stderr, "test_smollm2_ref: skipped: $PUZZLE_MODEL unset or missing (scripts/fetch_model.sh)\n");
        return PZ_TEST_SKIP;
    }
    char dir[1024], path[1200], err[PZ_ERRLEN];
    snprintf(dir, sizeof dir, "%s/smollm2_ref", pz_test_data_dir() ? pz_test_data_dir() : "");
    snprintf(path, sizeof path, "%s/index.txt", dir);
    static ref_prompt prompts[16];
    int vocab = 0;
    int n_prompts = read_index(path, &vocab, prompts, 16);
    CHECKF(n_prompts >= 4, "%s: %d prompts read", path, n_prompts);
    if (n_prompts < 1) return pz_test_finish("test_smollm2_ref");

    double t0 = pz_now();
    pz_model *m = pz_model_load(model_path, PZ_DT_F32, err);
    CHECKF(m != NULL, "%s", err);
    if (!m) return pz_test_finish("test_smollm2_ref");
    CHECKF(m->cfg.vocab == vocab, "model vocab %d, reference %d", m->cfg.vocab, vocab);
    fprintf(stderr, "loaded %s in %.1f s\n", model_path, pz_now() - t0);

    pz_engine_params ep = pz_engine_default_params();
    ep.n_slots = 1;
    ep.max_ctx = MAX_IDS + MAX_GREEDY;
    ep.max_batch = MAX_IDS;
    pz_engine *e = pz_engine_create(m, ep, err);
    CHECKF(e != NULL, "%s", err);
    if (!e) {
        pz_model_free(m);
        return pz_test_finish("test_smollm2_ref");
    }

    float *logits = malloc((size_t)MAX_IDS * vocab * sizeof(float));
    double worst = 0;
    for (int p = 0; p < n_prompts; p++) {
        ref_prompt *r = &prompts[p];
        snprintf(path, sizeof path, "%s/%s", dir, r->file);
        float *ref = read_f32(path, (size_t)r->n_pos * vocab);
        CHECKF(ref != NULL, "%s: missing or not %d x %d float32", path, r->n_pos, vocab);
        if (!ref) continue;

        pz_engine_slot_reset(e, 0);
        int rc = pz_engine_prefill(e, 0, r->ids, r->n_ids, logits, 1, err);
        CHECKF(rc == 0, "%s: prefill: %s", r->name, err);
        if (rc) {
            free(ref);
            continue;
        }
        for (int i = 0; i < r->n_pos; i++) {
            const float *a = logits + (size_t)r->pos[i] * vocab, *b = ref + (size_t)i * vocab;
            double rel = pz_rel_err_f(a, b, (size_t)vocab);
            if (rel > worst) worst = rel;
            int top = pz_argmax(a, vocab);
            fprintf(stderr, "%-14s pos %2d: rel err %.3e, top-1 %d (ref %d)\n", r->name, r->pos[i], rel, top,
                    r->top1[i]);
            CHECKF(rel <= TOL, "%s pos %d: rel err %.3e > %.0e", r->name, r->pos[i], rel, TOL);
            CHECKF(top == r->top1[i], "%s pos %d: top-1 %d, reference %d", r->name, r->pos[i], top, r->top1[i]);
        }

        // Greedy: the first token from the prefill's last row, then one decode per token.
        int32_t tok = pz_argmax(logits + (size_t)(r->n_ids - 1) * vocab, vocab);
        int matched = 0;
        for (int g = 0; g < r->n_greedy; g++) {
            if (tok != r->greedy[g]) break;
            matched++;
            if (g + 1 == r->n_greedy) break;
            int slot = 0;
            rc = pz_engine_decode(e, &slot, &tok, 1, logits, err);
            CHECKF(rc == 0, "%s: decode step %d: %s", r->name, g, err);
            if (rc) break;
            tok = pz_argmax(logits, vocab);
        }
        fprintf(stderr, "%-14s greedy: %d/%d tokens match\n", r->name, matched, r->n_greedy);
        CHECKF(matched == r->n_greedy, "%s: greedy diverges at step %d (got %d, reference %d)", r->name, matched,
               tok, matched < r->n_greedy ? r->greedy[matched] : -1);
        CHECK(pz_engine_slot_len(e, 0) == r->n_ids + (matched == r->n_greedy ? r->n_greedy - 1 : matched));
        free(ref);
    }
    fprintf(stderr, "worst relative error %.3e (tolerance %.0e), %.1f s\n", worst, TOL, pz_now() - t0);

    free(logits);
    pz_engine_free(e);
    pz_model_free(m);
    return pz_test_finish("test_smollm2_ref");
}
