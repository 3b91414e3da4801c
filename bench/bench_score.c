// bench_score.c — the cost of replace-1-block scoring (scoring/score.h)
// against one parent pass over the same tokens, measured side by side in one
// run (issue 11 item 10: search in context rescores often, so a block
// should cost at most 0.7 of a parent pass):
//   parent pass   pz_scorer_set_base with the parent: every layer, the LM
//                 head and the KL over the vocabulary for every position
//                 (what a replace-1-block pass without the cache costs)
//   cached        a block of layer L starts from the residual entering L,
//                 kept from the base pass (cache stride 1): layers L..end,
//                 the head and the KL
//   from layer 0  the same block with only layer 0 kept (stride n_layer):
//                 the whole model, i.e. no prefix cache
// Blocks: the parent's own attention and FFN half of every layer, as
// stand-ins of the same shape (a trained block of a library costs the same
// or less; the parent's own variants need no pass at all in `puzzle score`,
// pz_scorer_base). The library average counts them as free.
//
// usage: bench_score MODEL TEXT [tokens 1024] [seq_len 256] [threads 2] [f32|bf16] [layer step 1]
// (a layer step k times every k-th layer, 0, k, 2k, ...: an unbiased sample when k divides n_layer)
#include "common.h"
#include "model.h"
#include "score.h"
#include "tokenizer.h"
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_score MODEL TEXT [tokens 1024] [seq_len 256] [threads 2] [f32|bf16] [layer step 1]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);  // progress as it goes
    const long want = argc > 3 ? atol(argv[3]) : 1024;
    const int T = argc > 4 ? atoi(argv[4]) : 256, threads = argc > 5 ? atoi(argv[5]) : 2;
    const pz_dt prec = argc > 6 && !strcmp(argv[6], "bf16") ? PZ_DT_BF16 : PZ_DT_F32;
    const int step = argc > 7 && atoi(argv[7]) > 0 ? atoi(argv[7]) : 1;
    char err[PZ_ERRLEN];
    size_t len;
    char *text = pz_read_file(argv[2], (size_t)1 << 30, &len, err);
    pz_tokenizer *tok = text ? pz_tokenizer_load(argv[1], err) : NULL;
    int32_t *ids = NULL;
    int got = tok ? pz_tokenizer_encode(tok, text, len, 0, &ids, err) : -1;
    pz_model *m = got > 0 ? pz_model_load(argv[1], PZ_DT_F32, err) : NULL;
    if (!m) {
        fprintf(stderr, "bench_score: %s\n", err);
        return 1;
    }
    long n = got < want ? got : want;
    n -= n % T;
    const int NL = m->cfg.n_layer;
    pz_score_params sp = pz_score_default_params();
    sp.n_threads = threads, sp.prec = prec;
    pz_scorer *s = pz_scorer_create(m, ids, n, T, &sp, err);
    sp.cache_stride = NL;
    pz_scorer *s0 = s ? pz_scorer_create(m, ids, n, T, &sp, err) : NULL;
    if (!s || !s0) {
        fprintf(stderr, "bench_score: %s\n", err);
        return 1;
    }
    printf("bench_score: %s, %ld tokens (%ld windows of %d), %d threads, %s products, %d layers\n", argv[1], n, n / T,
           T, threads, pz_dt_name(prec), NL);
    double t_cached = 0, t_old = 0, t_parent = 0;
    int n_blocks = 0;
    printf("%5s %6s %12s %12s %12s %10s %10s\n", "layer", "half", "parent s", "cached s", "layer-0 s", "cached/p",
           "layer-0/p");
    for (int L = 0; L < NL; L += step) {
        for (int h = 0; h < 2; h++) {
            pz_block_weights w;
            pz_score_result r, r0, pb;
            if (pz_block_weights_from_parent(&w, m, L, h ? PZ_SUB_FFN : PZ_SUB_ATTN, err)) {
                fprintf(stderr, "bench_score: %s\n", err);
                return 1;
            }
            // One parent pass, then the block both ways, in turn (the machine may be shared).
            if (pz_scorer_set_base(s, NULL, NULL, err) || pz_scorer_score(s, &w, &r, err) ||
                pz_scorer_score(s0, &w, &r0, err)) {
                fprintf(stderr, "bench_score: %s\n", err);
                return 1;
            }
            pz_scorer_base(s, &pb);
            if (r.kl != r0.kl) fprintf(stderr, "bench_score: L%d: cached KL %.17g, from layer 0 %.17g\n", L, r.kl, r0.kl);
            t_parent += pb.wall_s, t_cached += r.wall_s, t_old += r0.wall_s, n_blocks++;
            printf("%5d %6s %12.3f %12.3f %12.3f %10.3f %10.3f\n", L, h ? "ffn" : "attn", pb.wall_s, r.wall_s,
                   r0.wall_s, r.wall_s / pb.wall_s, r0.wall_s / pb.wall_s);
            pz_block_weights_free(&w);
        }
    }
    const double parent = t_parent / n_blocks;
    printf("\nmean over %d blocks: parent pass %.3f s (%.0f tokens/s); per block cached %.3f s = %.3f x the parent "
           "pass, from layer 0 %.3f s = %.3f x\n",
           n_blocks, parent, (double)n / parent, t_cached / n_blocks, t_cached / t_parent, t_old / n_blocks,
           t_old / t_parent);
    pz_scorer_free(s);
    pz_scorer_free(s0);
    pz_model_free(m);
    pz_tokenizer_free(tok);
    free(ids);
    free(text);
    return 0;
}
