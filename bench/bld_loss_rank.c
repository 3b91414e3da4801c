// bld_loss_rank — which BLD loss ranks library blocks like their
// replace-1-block KL (issue 11, item 3)? For every trained block of a run's
// library, three losses of its stored weights on held-out windows of the
// parent's own activations: the normalized MSE BLD trains with today
// (Σ‖t − y‖² / Σ‖t‖² over all tokens), the same with each token normalized
// on its own (mean over tokens of ‖t − y‖² / ‖t‖²), and the global NMSE
// without the first position of each window (the attention sink, where
// some layers put almost all of their output energy). Each is compared with
// the block's replace-1-block KL by Spearman rank correlation, over all
// blocks and within each half. Nothing is trained.
//
//   sqlite3 -separator $'\t' RUN.db "SELECT b.block_id, b.layer, b.sub, b.attn_kind, coalesce(b.attn_size,0),
//       b.ffn_kind, coalesce(b.ffn_size,0), coalesce(b.weight_file,''), s.kl FROM blocks b
//       JOIN scores s USING (block_id) WHERE b.is_parent = 0" > blocks.tsv
//   bld_loss_rank PARENT TEXT blocks.tsv RUN_DIR [--tokens N] [--skip N] [--seq S] [--threads T]
// (weight files are relative to RUN_DIR, the database's directory).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "common.h"
#include "model.h"
#include "subblock.h"
#include "tokenizer.h"
#include "weights.h"

typedef struct {
    char id[80], file[1024];
    int layer;
    pz_sub_kind sub;
    pz_variant v;
    double kl, m[3];  // global NMSE, per-token NMSE, NMSE without position 0
} row;

static void ranks(const double *x, int n, double *r) {
    for (int i = 0; i < n; i++) {
        int less = 0, eq = 0;
        for (int j = 0; j < n; j++) less += x[j] < x[i], eq += x[j] == x[i];
        r[i] = less + (eq + 1) / 2.0;
    }
}

static double spearman(const double *a, const double *b, int n) {
    if (n < 3) return NAN;
    double *ra = malloc(sizeof(double) * n), *rb = malloc(sizeof(double) * n);
    ranks(a, n, ra), ranks(b, n, rb);
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) ma += ra[i] / n, mb += rb[i] / n;
    for (int i = 0; i < n; i++)
        sab += (ra[i] - ma) * (rb[i] - mb), saa += (ra[i] - ma) * (ra[i] - ma), sbb += (rb[i] - mb) * (rb[i] - mb);
    free(ra), free(rb);
    return sab / sqrt(saa * sbb);
}

int main(int argc, char **argv) {
    const char *parent = NULL, *text = NULL, *tsv = NULL, *dir = NULL;
    long tokens = 2048, skip = 0;
    int seq = 256, threads = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = atol(argv[++i]);
        else if (!strcmp(argv[i], "--skip") && i + 1 < argc) skip = atol(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) seq = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!parent) parent = argv[i];
        else if (!text) text = argv[i];
        else if (!tsv) tsv = argv[i];
        else if (!dir) dir = argv[i];
    }
    if (!dir) {
        fprintf(stderr, "usage: bld_loss_rank PARENT TEXT blocks.tsv RUN_DIR [--tokens N] [--skip N] [--seq S] [--threads T]\n");
        return 2;
    }
    char err[PZ_ERRLEN];
    pz_model *m = pz_model_load(parent, PZ_DT_F32, err);
    pz_tokenizer *tok = m ? pz_tokenizer_load(parent, err) : NULL;
    pz_backend *be = tok ? pz_backend_create(PZ_BACKEND_CPU, threads, err) : NULL;
    if (!be) return fprintf(stderr, "bld_loss_rank: %s\n", err), 1;
    size_t len;
    char *txt = pz_read_file(text, (size_t)1 << 32, &len, err);
    int32_t *ids = NULL;
    int got = txt ? pz_tokenizer_encode(tok, txt, len, 0, &ids, err) : -1;
    if (got < 0) return fprintf(stderr, "bld_loss_rank: %s\n", err), 1;
    const int ns = (int)((tokens < got - skip ? tokens : got - skip) / seq), M = ns * seq, H = m->cfg.hidden;
    if (ns < 1) return fprintf(stderr, "bld_loss_rank: too few tokens\n"), 1;

    // Blocks.
    FILE *f = fopen(tsv, "r");
    if (!f) return fprintf(stderr, "bld_loss_rank: cannot read %s\n", tsv), 1;
    row *rows = NULL;
    int n = 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        char id[80], sub[8], ak[16], fk[16], file[1024] = "";
        int layer, as, fs;
        double kl;
        char *fld[9], *s = line;
        for (int k = 0; k < 9; k++) fld[k] = strsep(&s, "\t\n");
        if (!fld[8]) continue;
        snprintf(id, sizeof id, "%s", fld[0]), layer = atoi(fld[1]), snprintf(sub, sizeof sub, "%s", fld[2]);
        snprintf(ak, sizeof ak, "%s", fld[3]), as = atoi(fld[4]), snprintf(fk, sizeof fk, "%s", fld[5]);
        fs = atoi(fld[6]), snprintf(file, sizeof file, "%s", fld[7]), kl = atof(fld[8]);
        rows = realloc(rows, sizeof(row) * (size_t)(n + 1));
        row *r = &rows[n++];
        memset(r, 0, sizeof *r);
        snprintf(r->id, sizeof r->id, "%s", id);
        r->layer = layer, r->kl = kl;
        r->sub = !strcmp(sub, "attn") ? PZ_SUB_ATTN : PZ_SUB_FFN;
        if (r->sub == PZ_SUB_ATTN) pz_attn_kind_parse(ak, &r->v.attn), r->v.size = as;
        else pz_ffn_kind_parse(fk, &r->v.ffn), r->v.size = fs;
        if (file[0]) snprintf(r->file, sizeof r->file, "%s/%s", dir, file);
    }
    fclose(f);

    // The parent's activations layer by layer, and every block of the layer on them.
    const size_t MH = (size_t)M * H;
    float *h = malloc(MH * 4), *x2 = malloc(MH * 4), *ta = malloc(MH * 4), *tf = malloc(MH * 4), *y = malloc(MH * 4);
    for (int r = 0; r < M; r++)
        memcpy(h + (size_t)r * H, (float *)m->tok_embd.data + (size_t)ids[skip + r] * H, 4 * (size_t)H);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        pz_block_weights pw;
        if (pz_block_weights_from_parent(&pw, m, l, PZ_SUB_PAIR, err)) return fprintf(stderr, "%s\n", err), 1;
        pz_sub_exec *ea = pz_sub_exec_create(&m->cfg, PZ_SUB_ATTN, pw.attn, M, PZ_DT_F32, be, err);
        pz_sub_exec *ef = ea ? pz_sub_exec_create(&m->cfg, PZ_SUB_FFN, pw.ffn, M, PZ_DT_F32, be, err) : NULL;
        if (!ef || pz_sub_exec_fwd(ea, &pw, h, ns, seq, ta, err)) return fprintf(stderr, "%s\n", err), 1;
        for (size_t i = 0; i < MH; i++) x2[i] = h[i] + ta[i];
        if (pz_sub_exec_fwd(ef, &pw, x2, ns, seq, tf, err)) return fprintf(stderr, "%s\n", err), 1;
        pz_sub_exec_free(ea), pz_sub_exec_free(ef), pz_block_weights_free(&pw);
        for (int b = 0; b < n; b++) {
            row *r = &rows[b];
            if (r->layer != l) continue;
            const float *x = r->sub == PZ_SUB_ATTN ? h : x2, *t = r->sub == PZ_SUB_ATTN ? ta : tf;
            int noop = pz_variant_is_noop(r->sub, r->v);
            if (noop) memset(y, 0, MH * 4);
            else {
                pz_block_weights w;
                pz_sub_exec *e = pz_block_weights_load(&w, &m->cfg, r->file, err) ? NULL
                               : pz_sub_exec_create(&m->cfg, r->sub, r->v, M, PZ_DT_F32, be, err);
                if (!e || pz_sub_exec_fwd(e, &w, x, ns, seq, y, err))
                    return fprintf(stderr, "bld_loss_rank: %s: %s\n", r->id, err), 1;
                pz_sub_exec_free(e), pz_block_weights_free(&w);
            }
            double num = 0, den = 0, tok_sum = 0, num1 = 0, den1 = 0;
            for (int q = 0; q < M; q++) {
                double a = 0, c = 0;
                for (int i = 0; i < H; i++) {
                    double d = (double)t[(size_t)q * H + i] - y[(size_t)q * H + i];
                    a += d * d, c += (double)t[(size_t)q * H + i] * t[(size_t)q * H + i];
                }
                num += a, den += c, tok_sum += c > 0 ? a / c : 0;
                if (q % seq) num1 += a, den1 += c;
            }
            r->m[0] = num / den, r->m[1] = tok_sum / M, r->m[2] = num1 / den1;
        }
        for (size_t i = 0; i < MH; i++) h[i] = x2[i] + tf[i];
    }

    printf("# BLD losses of the stored blocks against their replace-1-block KL\n\n");
    printf("%d blocks, %d held-out windows of %d tokens (%s, skipping %ld tokens).\n\n", n, ns, seq, text, skip);
    printf("| blocks | n | Spearman(global NMSE, KL) | Spearman(per-token NMSE, KL) | Spearman(NMSE without pos 0, KL) |\n");
    printf("|---|---|---|---|---|\n");
    const char *names[3] = {"all", "attention", "FFN"};
    for (int g = 0; g < 3; g++) {
        double *kl = malloc(sizeof(double) * n), *mm[3];
        for (int k = 0; k < 3; k++) mm[k] = malloc(sizeof(double) * n);
        int c = 0;
        for (int b = 0; b < n; b++) {
            if (g == 1 && rows[b].sub != PZ_SUB_ATTN) continue;
            if (g == 2 && rows[b].sub != PZ_SUB_FFN) continue;
            kl[c] = rows[b].kl;
            for (int k = 0; k < 3; k++) mm[k][c] = rows[b].m[k];
            c++;
        }
        printf("| %s | %d | %.3f | %.3f | %.3f |\n", names[g], c, spearman(mm[0], kl, c), spearman(mm[1], kl, c),
               spearman(mm[2], kl, c));
        free(kl);
        for (int k = 0; k < 3; k++) free(mm[k]);
    }
    printf("\n| block | KL | global NMSE | per-token NMSE | NMSE without pos 0 |\n|---|---|---|---|---|\n");
    for (int b = 0; b < n; b++)
        printf("| %s | %.4f | %.4f | %.4f | %.4f |\n", rows[b].id, rows[b].kl, rows[b].m[0], rows[b].m[1], rows[b].m[2]);
    return 0;
}
