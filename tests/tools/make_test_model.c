// make_test_model — writes a small random heterogeneous model (every
// sub-block kind: gqa with several KV-head counts, linear, noop; swiglu of
// several widths, linear, noop) as a Hugging Face DeciLM directory, for tests
// and for trying the pipeline without the real parent. With --tokenizer, the
// vocabulary is that tokenizer's and its files are copied in, so every
// `puzzle` command runs on the result.
//
//   make_test_model DIR [--variant 0|1|2] [--seed S] [--bf16] [--tokenizer MODEL]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "testmodel.h"
#include "tokenizer.h"

int main(int argc, char **argv) {
    const char *dir = NULL, *tok_path = NULL;
    int variant = 0;
    unsigned long long seed = 1;
    pz_dt wt = PZ_DT_F32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--variant") && i + 1 < argc) variant = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--bf16")) wt = PZ_DT_BF16;
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_path = argv[++i];
        else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else {
            fprintf(stderr, "usage: make_test_model DIR [--variant 0|1|2] [--seed S] [--bf16] [--tokenizer MODEL]\n");
            return 2;
        }
    }
    if (!dir || variant < 0 || variant >= PZ_TESTMODEL_VARIANTS) {
        fprintf(stderr, "usage: make_test_model DIR [--variant 0..%d] [--seed S] [--bf16] [--tokenizer MODEL]\n",
                PZ_TESTMODEL_VARIANTS - 1);
        return 2;
    }
    char err[PZ_ERRLEN];
    static pz_config c;
    pz_testmodel_config(&c, variant);
    pz_tokenizer *tok = NULL;
    if (tok_path) {
        if (!(tok = pz_tokenizer_load(tok_path, err))) {
            fprintf(stderr, "make_test_model: %s\n", err);
            return 1;
        }
        c.vocab = pz_tokenizer_vocab_size(tok);
        c.bos_id = pz_tokenizer_bos(tok);
        c.eos_id = pz_tokenizer_eos(tok);
    }
    mkdir(dir, 0755);
    if (pz_testmodel_write_hf(&c, wt, seed, dir, err) != 0 || (tok && pz_tokenizer_write_hf(tok, dir, err) != 0)) {
        fprintf(stderr, "make_test_model: %s\n", err);
        pz_tokenizer_free(tok);
        return 1;
    }
    pz_tokenizer_free(tok);
    printf("%s\n", dir);
    return 0;
}
