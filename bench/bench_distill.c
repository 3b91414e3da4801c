// bench_distill — time of one global-distillation micro-batch on a real
// child and parent, split into its parts (teacher forward, child forward,
// the loss, child backward), against the matrix-product library's own rate
// on the step's largest shapes (the LM head and one FFN projection), in
// the same run on the same cores (and the LM head's two backward products,
// dx = dy·W and dW += dyᵀ·x, on their own). The loss row times the two backend loss
// ops (cosine over the layers' hidden states, KL over the logits, with their
// gradients) on the micro-batch's activations, and says how many bytes a
// step would move between host and device were the loss host code.
//
//   bench_distill CHILD PARENT [--threads T] [--rows R] [--seq S] [--prec bf16|f32] [--reps N]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common.h"
#include "distill.h"
#include "model.h"
#include "net.h"

static double now(void) { return pz_now(); }

int main(int argc, char **argv) {
    const char *cp = NULL, *pp = NULL;
    int threads = 2, rows = 1024, seq = 256, reps = 2;
    pz_dt prec = PZ_DT_BF16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rows") && i + 1 < argc) rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) seq = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prec") && i + 1 < argc) prec = strcmp(argv[++i], "f32") ? PZ_DT_BF16 : PZ_DT_F32;
        else if (!cp) cp = argv[i];
        else if (!pp) pp = argv[i];
    }
    if (!cp || !pp || rows % seq) {
        fprintf(stderr, "usage: bench_distill CHILD PARENT [--threads T] [--rows R (multiple of --seq)] [--seq S] "
                        "[--prec bf16|f32] [--reps N]\n");
        return 2;
    }
    char err[PZ_ERRLEN];
    pz_model *child = pz_model_load(cp, PZ_DT_F32, err), *parent = child ? pz_model_load(pp, PZ_DT_F32, err) : NULL;
    pz_backend *be = parent ? pz_backend_create(PZ_BACKEND_CPU, threads, err) : NULL;
    pz_model *grad = be ? pz_model_alloc(&child->cfg, PZ_DT_F32, err) : NULL;
    pz_net *tn = grad ? pz_net_create(parent, rows, prec, be, err) : NULL;
    pz_net *cn = tn ? pz_net_create(child, rows, prec, be, err) : NULL;
    pz_gkd *g = cn ? pz_gkd_create(parent, child, rows, prec, be, err) : NULL;
    if (!g) {
        fprintf(stderr, "bench_distill: %s\n", err);
        return 1;
    }
    const pz_config *c = &child->cfg;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)rows);
    uint64_t s = 1;
    for (int i = 0; i < rows; i++) s = s * 6364136223846793005ull + 1442695040888963407ull, ids[i] = (int32_t)((s >> 33) % (uint64_t)c->vocab);
    const int ns = rows / seq;
    double t_tf = 1e30, t_cf = 1e30, t_cb = 1e30, t_step = 1e30;
    float *dl = malloc(sizeof(float) * (size_t)rows * c->vocab);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (pz_net_fwd(tn, parent, ids, ns, seq, err)) goto fail;
        double t1 = now();
        if (pz_net_fwd(cn, child, ids, ns, seq, err)) goto fail;
        double t2 = now();
        for (size_t i = 0; i < (size_t)rows * c->vocab; i++) dl[i] = 1e-6f;
        double t3 = now();
        if (pz_net_bwd(cn, child, grad, dl, NULL, err)) goto fail;
        double t4 = now();
        double cs, kl;
        if (pz_gkd_batch(g, parent, child, grad, 1, ids, ns, seq, &cs, &kl, err)) goto fail;
        double t5 = now();
        if (t1 - t0 < t_tf) t_tf = t1 - t0;
        if (t2 - t1 < t_cf) t_cf = t2 - t1;
        if (t4 - t3 < t_cb) t_cb = t4 - t3;
        if (t5 - t4 < t_step) t_step = t5 - t4;
    }
    // The loss ops alone on the activations the nets hold (both forwarded above).
    const int H = c->hidden, V = c->vocab, F = 1536, L = c->n_layer;
    double t_loss = 1e30;
    float *dh = be->alloc(be, sizeof(float) * (size_t)L * rows * H);
    if (!dh) {
        fprintf(stderr, "bench_distill: out of memory\n");
        return 1;
    }
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        double cs = be->train->cosine_loss(be, pz_net_hidden(tn, 0), pz_net_hidden(cn, 0), L, (size_t)rows * H,
                                           rows, H, dh, 1.0 / rows);
        double kl = be->train->kl_loss(be, pz_net_logits(tn), pz_net_logits(cn), rows, V, dl, 1.0 / rows);
        double t1 = now();
        if (r == 0) printf("loss: cosine %.6f, KL %.6f per row\n", cs / rows, kl / rows);
        if (t1 - t0 < t_loss) t_loss = t1 - t0;
    }
    be->free(be, dh);
    // What a host-side loss moves per micro-batch on a device: both models'
    // hidden states and logits down, the child's gradients of both up.
    double host_bytes = 4.0 * (3.0 * L * rows * H + 3.0 * (double)rows * V);
    // The library on the step's shapes: the LM head forward and an FFN projection.
    float *x = calloc((size_t)rows * (H > F ? H : F), sizeof(float)), *w = calloc((size_t)V * H, sizeof(float));
    float *y = malloc(sizeof(float) * (size_t)rows * V);
    for (size_t i = 0; i < (size_t)rows * H; i++) x[i] = 0.01f * (float)(i % 7);
    for (size_t i = 0; i < (size_t)V * H; i++) w[i] = 0.01f * (float)(i % 5);
    float *gx = calloc((size_t)rows * H, sizeof(float)), *gw = calloc((size_t)V * H, sizeof(float));
    double t_head = 1e30, t_ffn = 1e30, t_hdx = 1e30, t_hdw = 1e30;
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now();
        if (be->train->gemm(be, 0, 1, rows, V, H, x, H, w, H, y, V, 0, prec, err)) goto fail;
        double t1 = now();
        if (be->train->gemm(be, 0, 1, rows, F, H, x, H, w, H, y, F, 0, prec, err)) goto fail;
        double t2 = now();
        // The LM head's backward products: dx = dy·W and dW += dyᵀ·x.
        if (be->train->gemm(be, 0, 0, rows, H, V, y, V, w, H, gx, H, 0, prec, err)) goto fail;
        double t3 = now();
        if (be->train->gemm(be, 1, 0, V, H, rows, y, V, x, H, gw, H, 1, prec, err)) goto fail;
        double t4 = now();
        if (t1 - t0 < t_head) t_head = t1 - t0;
        if (t2 - t1 < t_ffn) t_ffn = t2 - t1;
        if (t3 - t2 < t_hdx) t_hdx = t3 - t2;
        if (t4 - t3 < t_hdw) t_hdw = t4 - t3;
    }
    free(gx), free(gw);
    double f_t = pz_net_fwd_flops(&parent->cfg, rows, seq), f_c = pz_net_fwd_flops(c, rows, seq);
    double lib_head = 2.0 * rows * V * H / t_head / 1e9, lib_ffn = 2.0 * rows * F * H / t_ffn / 1e9;
    double step_rate = (f_t + 3 * f_c) / t_step / 1e9;
    printf("| part | ms | GFLOP | GFLOP/s |\n|---|---|---|---|\n");
    printf("| teacher forward | %.0f | %.1f | %.1f |\n", t_tf * 1e3, f_t / 1e9, f_t / t_tf / 1e9);
    printf("| child forward | %.0f | %.1f | %.1f |\n", t_cf * 1e3, f_c / 1e9, f_c / t_cf / 1e9);
    printf("| child backward | %.0f | %.1f | %.1f |\n", t_cb * 1e3, 2 * f_c / 1e9, 2 * f_c / t_cb / 1e9);
    printf("| loss ops (cosine + KL, with gradients) | %.0f | | |\n", t_loss * 1e3);
    printf("| whole micro-batch (pz_gkd_batch) | %.0f | %.1f | %.1f |\n", t_step * 1e3, (f_t + 3 * f_c) / 1e9, step_rate);
    printf("| library, LM head shape %dx%dx%d | %.0f | | %.1f |\n", rows, V, H, t_head * 1e3, lib_head);
    printf("| library, FFN shape %dx%dx%d | %.0f | | %.1f |\n", rows, F, H, t_ffn * 1e3, lib_ffn);
    const double f_head = 2.0 * rows * V * H / 1e9;
    printf("| library, LM head dx = dy·W | %.0f | %.1f | %.1f |\n", t_hdx * 1e3, f_head, f_head / t_hdx);
    printf("| library, LM head dW += dyᵀ·x | %.0f | %.1f | %.1f |\n", t_hdw * 1e3, f_head, f_head / t_hdw);
    printf("\n%d rows (%d windows of %d), %s products, %d threads: %.0f tokens/s per micro-batch; "
           "step rate / library rate (mean of the two shapes) = %.0f %%\n",
           rows, ns, seq, prec == PZ_DT_BF16 ? "bf16" : "f32", threads, rows / t_step,
           100 * step_rate / (0.5 * (lib_head + lib_ffn)));
    printf("a host-side loss would move %.2f GB per micro-batch between host and device; the loss ops move "
           "two doubles\n", host_bytes / 1e9);
    return 0;
fail:
    fprintf(stderr, "bench_distill: %s\n", err);
    return 1;
}
