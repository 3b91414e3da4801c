// test_tokenizer.c — the tokenizer from tokenizer.json (no model needed):
// exact ids against Hugging Face `tokenizers` for every string in
// tests/data/tokenizer_vectors.json, decode and streaming round trips, chat
// rendering against jinja2, the pz_tokenizer_write_hf round trip, hostile
// text (invalid UTF-8, NUL, long runs) and broken tokenizer.json files.
// The same vectors through the GGUF loader: test_tokenizer_gguf.c.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "testutil.h"
#include "tokenizer.h"
#include "tokenizer_vectors.h"

static int utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i], k = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                             : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (unsigned j = 1; j < k; j++)
            if ((p[i + j] & 0xC0) != 0x80) return 0;
        i += k;
    }
    return 1;
}

// encode -> decode and encode -> stream must give the bytes back, whatever they are.
static void check_roundtrip(const pz_tokenizer *t, const char *s, size_t n, const char *what) {
    char err[PZ_ERRLEN];
    int32_t *ids = NULL;
    int k = pz_tokenizer_encode(t, s, n, 1, &ids, err);
    CHECKF(k >= 0 && ids, "%s: encode failed: %s", what, err);
    if (k < 0) return;
    int in_range = 1;
    for (int i = 0; i < k; i++) in_range &= ids[i] >= 0 && ids[i] < pz_tokenizer_vocab_size(t);
    CHECKF(in_range, "%s: id out of range", what);
    char *exp = malloc(n + 1);
    size_t en = tv_expected(t, s, n, exp);
    char *d = pz_tokenizer_decode(t, ids, (size_t)k, 0);
    CHECKF(d && memcmp(d, exp, en) == 0 && d[en] == 0, "%s: decode(encode(s)) != s", what);
    size_t sl;
    char *st = tv_stream_all(t, ids, k, &sl);
    CHECKF(sl == en && memcmp(st, exp, en) == 0, "%s: streamed decode != s", what);
    free(st);
    free(d);
    free(exp);
    free(ids);
}

static int32_t *enc(const pz_tokenizer *t, const char *s, size_t n, int *k) {
    char err[PZ_ERRLEN];
    int32_t *ids = NULL;
    *k = pz_tokenizer_encode(t, s, n, 1, &ids, err);
    return ids;
}

static void test_api(const pz_tokenizer *t) {
    CHECK(pz_tokenizer_vocab_size(t) == 49152);
    CHECK(pz_tokenizer_bos(t) == 1);
    CHECK(pz_tokenizer_eos(t) == 2);
    CHECK(pz_tokenizer_add_bos(t) == 0);
    CHECK(pz_tokenizer_find(t, "<|im_end|>") == 2);
    CHECK(pz_tokenizer_find(t, "Ġ") == 216);
    CHECK(pz_tokenizer_find(t, "no such piece") == -1);
    for (int i = 0; i <= 16; i++) CHECK(pz_tokenizer_is_special(t, i));
    CHECK(!pz_tokenizer_is_special(t, 17));
    CHECK(!pz_tokenizer_is_special(t, -1) && !pz_tokenizer_is_special(t, 49152));
    CHECK(strcmp(pz_tokenizer_piece(t, 216), "Ġ") == 0);
    size_t n;
    const char *b = pz_tokenizer_token_bytes(t, 216, &n);
    CHECK(b && n == 1 && b[0] == ' ');
    b = pz_tokenizer_token_bytes(t, 1, &n);
    CHECK(b && n == 12 && memcmp(b, "<|im_start|>", 12) == 0);
    CHECK(pz_tokenizer_token_bytes(t, -1, &n) == NULL && pz_tokenizer_token_bytes(t, 49152, &n) == NULL);
    CHECK(pz_tokenizer_piece(t, 49152) == NULL);
    CHECK(pz_tokenizer_max_token_len(t) == 81);
    CHECK(pz_tokenizer_chat_template(t) && strstr(pz_tokenizer_chat_template(t), "<|im_start|>"));

    // decode: skip_special drops control tokens; bad ids contribute nothing
    int32_t ids[] = {1, 4093, 198, 6004, 2, -5, 1 << 30};
    char *d = pz_tokenizer_decode(t, ids, 7, 0);
    CHECK(d && strcmp(d, "<|im_start|>user\nhi<|im_end|>") == 0);
    free(d);
    d = pz_tokenizer_decode(t, ids, 7, 1);
    CHECK(d && strcmp(d, "user\nhi") == 0);
    free(d);
    d = pz_tokenizer_decode(t, NULL, 0, 0);
    CHECK(d && d[0] == 0);
    free(d);
}

static void test_hostile_text(const pz_tokenizer *t) {
    char err[PZ_ERRLEN];
    int32_t *ids = NULL;
    int k = pz_tokenizer_encode(t, "", 0, 1, &ids, err);
    CHECK(k == 0 && ids != NULL);
    free(ids);
    ids = NULL;
    k = pz_tokenizer_encode(t, NULL, 0, 0, &ids, err);
    CHECK(k == 0);
    free(ids);

    // invalid UTF-8: each run of bad bytes is a piece of its own, encoded
    // through the byte alphabet; the rest tokenizes as if the run were a cut.
    // Bytes without a token (0xFF, 0xC0, ... in SmolLM2) are dropped, as HF does.
    static const char *bad[] = {
        "\xff", "\xfe\xff", "a\xff" "b", "\xe4\xb8", "\xe4\xb8\xad\xe4", "\xc0\xaf", "\xed\xa0\x80",
        "\xf4\x90\x80\x80", "\x80\x80\x80", "caf\xe9", "\xf0\x9f\x98", "x\xf0\x9f\x98 y", " \xff 12\xfe\n",
        "<|im_start|>\xff<|im_end|>",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) check_roundtrip(t, bad[i], strlen(bad[i]), bad[i]);
    int na, nb, nc;
    int32_t *a = enc(t, "a", 1, &na), *bb = enc(t, "b", 1, &nb), *c = enc(t, "a\xe9" "b", 3, &nc);
    CHECK(na == 1 && nb == 1 && nc == 3 && c[0] == a[0] && c[1] == pz_tokenizer_find(t, "é") && c[2] == bb[0]);
    free(c);
    c = enc(t, "a\xff" "b", 3, &nc);
    CHECK(pz_tokenizer_find(t, "ÿ") < 0 && nc == 2 && c[0] == a[0] && c[1] == bb[0]);
    free(c);
    c = enc(t, "\xff\xfe", 2, &nc);
    CHECK(nc == 0);
    free(a), free(bb), free(c);
    int32_t *z = enc(t, "\0", 1, &na);
    CHECK(na == 1 && z[0] == pz_tokenizer_find(t, "Ā"));
    free(z);
    check_roundtrip(t, "a\0b\0\0", 5, "NULs");

    // random bytes, and random splices of valid text and bad bytes
    uint64_t rng = 42;
    static const char *frag[] = {"hello", " ", "  ", "\n", "12", "é", "日本", "😀", "👍🏽", "'s", "<|im_end|>",
                                 "\xff", "\xe4", "\x80", "\t", "Ω", "١٢"};
    char buf[256], what[64];
    for (int it = 0; it < 400; it++) {
        size_t n = 0;
        int len = (int)(pz_test_rand_u64(&rng) % 40);
        for (int j = 0; j < len && n < 200; j++) {
            if (it % 2) {
                buf[n++] = (char)(pz_test_rand_u64(&rng) & 0xFF);
            } else {
                const char *f = frag[pz_test_rand_u64(&rng) % (sizeof frag / sizeof *frag)];
                memcpy(buf + n, f, strlen(f));
                n += strlen(f);
            }
        }
        snprintf(what, sizeof what, "random string %d", it);
        check_roundtrip(t, buf, n, what);
    }

    // long runs: one huge whitespace piece, one huge letter piece, many digits
    size_t big = 300000;
    char *s = malloc(big + 1);
    memset(s, ' ', big);
    s[big - 1] = 'x';
    check_roundtrip(t, s, big, "300k spaces then x");
    memset(s, 'a', big);
    check_roundtrip(t, s, big, "300k letters");
    for (size_t i = 0; i < big; i++) s[i] = (char)('0' + i % 10);
    check_roundtrip(t, s, big, "300k digits");
    for (size_t i = 0; i < big; i++) s[i] = "\n \t"[i % 3];
    check_roundtrip(t, s, big, "300k mixed whitespace");
    free(s);
}

static void test_stream(const pz_tokenizer *t) {
    // a 4-byte emoji arrives over two tokens: nothing until it is whole
    int n;
    int32_t *ids = enc(t, "😀!", strlen("😀!"), &n);
    CHECK(n >= 2);
    pz_utf8_stream s = {0};
    char out[256];
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t k = pz_tokenizer_stream(t, &s, ids[i], 0, out + total, sizeof out - total);
        CHECKF(utf8_valid(out + total, k), "stream chunk %d is not whole UTF-8", i);
        total += k;
    }
    CHECK(total == strlen("😀!") && memcmp(out, "😀!", total) == 0);
    CHECK(s.n_pending == 0);
    free(ids);

    // too small a buffer: nothing written, state kept, retry works
    int32_t big = -1;
    for (int32_t id = 0; id < pz_tokenizer_vocab_size(t); id++) {
        size_t len;
        pz_tokenizer_token_bytes(t, id, &len);
        if ((int)len == pz_tokenizer_max_token_len(t)) big = id;
    }
    CHECK(big >= 0);
    pz_utf8_stream s2 = {0};
    char small[16];
    CHECK(pz_tokenizer_stream(t, &s2, big, 0, small, sizeof small) == 0 && s2.n_pending == 0);
    CHECK(pz_tokenizer_stream(t, &s2, big, 0, out, sizeof out) == (size_t)pz_tokenizer_max_token_len(t));

    // a dangling partial character comes out at flush
    ids = enc(t, "\xe4\xb8", 2, &n);
    pz_utf8_stream s3 = {0};
    total = 0;
    for (int i = 0; i < n; i++) total += pz_tokenizer_stream(t, &s3, ids[i], 0, out + total, sizeof out - total);
    CHECK(total == 0 && s3.n_pending == 2);
    CHECK(pz_tokenizer_stream_flush(&s3, out, sizeof out) == 2 && memcmp(out, "\xe4\xb8", 2) == 0);
    CHECK(s3.n_pending == 0);
    free(ids);

    // skip_special drops control tokens in the stream too
    pz_utf8_stream s4 = {0};
    CHECK(pz_tokenizer_stream(t, &s4, 2, 1, out, sizeof out) == 0);
    CHECK(pz_tokenizer_stream(t, &s4, 2, 0, out, sizeof out) == 10);
}

static void check_same_tables(const pz_tokenizer *a, const pz_tokenizer *b) {
    CHECK(pz_tokenizer_vocab_size(a) == pz_tokenizer_vocab_size(b));
    CHECK(pz_tokenizer_bos(a) == pz_tokenizer_bos(b) && pz_tokenizer_eos(a) == pz_tokenizer_eos(b));
    CHECK(pz_tokenizer_add_bos(a) == pz_tokenizer_add_bos(b));
    int same = 1;
    for (int32_t id = 0; id < pz_tokenizer_vocab_size(a) && id < pz_tokenizer_vocab_size(b); id++)
        same &= strcmp(pz_tokenizer_piece(a, id), pz_tokenizer_piece(b, id)) == 0 &&
                pz_tokenizer_is_special(a, id) == pz_tokenizer_is_special(b, id);
    CHECK(same);
    const char *ta = pz_tokenizer_chat_template(a), *tb = pz_tokenizer_chat_template(b);
    CHECK(ta && tb && strcmp(ta, tb) == 0);
}

// pz_tokenizer_write_hf -> load back: same tables, same ids; and, where
// Python has `tokenizers`, the HF library agrees on the written files.
static void test_write_hf(const pz_tokenizer *t, const cJSON *vectors, const char *label) {
    char err[PZ_ERRLEN], cmd[4096];
    char *dir = pz_test_tmpdir("tokhf");
    CHECK(dir != NULL);
    if (!dir) return;
    CHECKF(pz_tokenizer_write_hf(t, dir, err) == 0, "write_hf: %s", err);
    pz_tokenizer *back = pz_tokenizer_load(dir, err);
    CHECKF(back != NULL, "load of written tokenizer: %s", err);
    if (back) {
        check_same_tables(t, back);
        char lab[64];
        snprintf(lab, sizeof lab, "%s written+reloaded", label);
        CHECK(tv_check(back, vectors, lab) > 0);
        pz_tokenizer_free(back);
    }
    const char *py = pz_test_python("tokenizers, jinja2", "the Hugging Face tokenizers check of write_hf");
    if (py) {
        snprintf(cmd, sizeof cmd, "'%s' %s/../ref/check_tokenizer_hf.py %s %s/tokenizer_vectors.json", py,
                 pz_test_data_dir(), dir, pz_test_data_dir());
        int rc = system(cmd);
        CHECKF(rc == 0, "HF tokenizers disagrees with the written tokenizer.json (%s)", cmd);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
}

// ---- small synthetic tokenizers -------------------------------------------

// 256 byte tokens (id = byte), then Ġt, he, Ġthe, 123, and added <|eot|> (special).
static cJSON *tiny_json(int pair_merges, int skip_byte) {
    cJSON *root = cJSON_CreateObject();
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", 261);
    cJSON_AddStringToObject(a, "content", "<|eot|>");
    cJSON_AddBoolToObject(a, "special", 1);
    cJSON_AddItemToArray(added, a);
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", 0);
    cJSON_AddBoolToObject(pre, "use_regex", 1);
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON *v = cJSON_AddObjectToObject(m, "vocab");
    for (unsigned b = 0; b < 256; b++) {
        char u[4];
        tv_cp_utf8(tv_byte_cp(b), u);
        // skip_byte -2: drop 0x00-0x1F and 0x80-0xFF, too few bytes left
        if ((int)b != skip_byte && !(skip_byte == -2 && (b < 0x20 || b >= 0x80))) cJSON_AddNumberToObject(v, u, b);
    }
    cJSON_AddNumberToObject(v, "Ġt", 256);
    cJSON_AddNumberToObject(v, "he", 257);
    cJSON_AddNumberToObject(v, "Ġthe", 258);
    cJSON_AddNumberToObject(v, "123", 259);
    cJSON_AddNumberToObject(v, "12", 260);
    cJSON_AddNumberToObject(v, "<|eot|>", 261);
    cJSON *ml = cJSON_AddArrayToObject(m, "merges");
    const char *mg[][2] = {{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}};
    for (int i = 0; i < 3; i++) {
        if (pair_merges) {
            cJSON *p = cJSON_CreateArray();
            cJSON_AddItemToArray(p, cJSON_CreateString(mg[i][0]));
            cJSON_AddItemToArray(p, cJSON_CreateString(mg[i][1]));
            cJSON_AddItemToArray(ml, p);
        } else {
            char s[32];
            snprintf(s, sizeof s, "%s %s", mg[i][0], mg[i][1]);
            cJSON_AddItemToArray(ml, cJSON_CreateString(s));
        }
    }
    return root;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static pz_tokenizer *load_json_obj(const char *dir, cJSON *root, char *err) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    char *text = cJSON_PrintUnformatted(root);
    write_text(path, text);
    free(text);
    cJSON_Delete(root);
    return pz_tokenizer_from_json(path, NULL, err);
}

static void expect_ids(const pz_tokenizer *t, const char *s, const int32_t *want, int nw, int special) {
    char err[PZ_ERRLEN];
    int32_t *ids = NULL;
    int n = pz_tokenizer_encode(t, s, strlen(s), special, &ids, err);
    int ok = n == nw;
    for (int i = 0; ok && i < n; i++) ok = ids[i] == want[i];
    CHECKF(ok, "tiny tokenizer: wrong ids for '%s'", s);
    if (!ok && n >= 0) tv_print_ids("got", ids, n);
    free(ids);
}

static void test_tiny_and_broken(void) {
    char err[PZ_ERRLEN];
    char *dir = pz_test_tmpdir("tokbad");
    CHECK(dir != NULL);
    if (!dir) return;
    for (int pairs = 0; pairs < 2; pairs++) {
        pz_tokenizer *t = load_json_obj(dir, tiny_json(pairs, -1), err);
        CHECKF(t != NULL, "tiny tokenizer (%s merges): %s", pairs ? "pair" : "string", err);
        if (!t) continue;
        expect_ids(t, " the", (int32_t[]){258}, 1, 1);
        expect_ids(t, " then", (int32_t[]){258, 'n'}, 2, 1);
        expect_ids(t, "the", (int32_t[]){'t', 257}, 2, 1);
        expect_ids(t, "x<|eot|>", (int32_t[]){'x', 261}, 2, 1);
        expect_ids(t, "<|eot|>", (int32_t[]){'<', '|', 'e', 'o', 't', '|', '>'}, 7, 0);
        expect_ids(t, "123", (int32_t[]){'1', '2', '3'}, 3, 1);  // no merges make 123
        CHECK(pz_tokenizer_is_special(t, 261) && pz_tokenizer_bos(t) == -1);
        pz_tokenizer_free(t);
    }
    // a byte without a token is dropped (HF BPE without unk_token) ...
    pz_tokenizer *t = load_json_obj(dir, tiny_json(0, 'A'), err);
    CHECKF(t != NULL, "tiny tokenizer without 'A': %s", err);
    if (t) {
        expect_ids(t, "xAy", (int32_t[]){'x', 'y'}, 2, 1);
        expect_ids(t, "A", NULL, 0, 1);
        pz_tokenizer_free(t);
    }
    // ... or becomes unk_token, fused when fuse_unk
    for (int fuse = 0; fuse < 2; fuse++) {
        cJSON *r = tiny_json(0, 'A');
        cJSON *m = cJSON_GetObjectItem(r, "model");
        cJSON_AddStringToObject(m, "unk_token", "<|eot|>");
        cJSON_AddBoolToObject(m, "fuse_unk", fuse);
        t = load_json_obj(dir, r, err);
        CHECKF(t != NULL, "tiny tokenizer with unk: %s", err);
        if (!t) continue;
        if (fuse) expect_ids(t, "xAAy", (int32_t[]){'x', 261, 'y'}, 3, 1);
        else expect_ids(t, "xAAy", (int32_t[]){'x', 261, 261, 'y'}, 4, 1);
        pz_tokenizer_free(t);
    }

    // Llama 3 style: Split(regex) + ByteLevel(use_regex=false) + ignore_merges;
    // "12345" splits as 123|45 and 123 is taken whole from the vocabulary
    cJSON *root = tiny_json(0, -1);
    cJSON_DeleteItemFromObject(root, "pre_tokenizer");
    cJSON *seq = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON *list = cJSON_AddArrayToObject(seq, "pretokenizers");
    cJSON *split = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex",
                            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddBoolToObject(split, "invert", 0);
    cJSON_AddItemToArray(list, split);
    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "use_regex", 0);
    cJSON_AddItemToArray(list, bl);
    cJSON_AddBoolToObject(cJSON_GetObjectItem(root, "model"), "ignore_merges", 1);
    t = load_json_obj(dir, root, err);
    CHECKF(t != NULL, "llama3-style tiny tokenizer: %s", err);
    if (t) {
        expect_ids(t, "12345", (int32_t[]){259, '4', '5'}, 3, 1);
        expect_ids(t, " the", (int32_t[]){258}, 1, 1);
        pz_tokenizer_free(t);
    }

    // broken files: each must fail cleanly with a message
    struct { const char *what; const char *merge; const char *key; const char *json; int skip_byte; } cases[] = {
        {"merge side not in vocab", "q zz", NULL, NULL, -1},
        {"merged piece not in vocab", "Ġ x", NULL, NULL, -1},
        {"merge without a space", "nospace", NULL, NULL, -1},
        {"merge with two spaces", "a b c", NULL, NULL, -1},
        {"merge as a number", "#", NULL, NULL, -1},
        {"merge pair of three", "[3]", NULL, NULL, -1},
        {"merges not an array", NULL, "merges", NULL, -1},
        {"model type WordPiece", NULL, "type", NULL, -1},
        {"NFC normalizer", NULL, "normalizer", NULL, -1},
        {"Metaspace pre-tokenizer", NULL, "pre_tokenizer", NULL, -1},
        {"bad regex", NULL, "regex", NULL, -1},
        {"vocab id not a number", NULL, "vocab", NULL, -1},
        {"duplicate id", NULL, "dup", NULL, -1},
        {"160 of 256 bytes missing", NULL, NULL, NULL, -2},
        {"truncated JSON", NULL, NULL, "{\"model\": {\"vocab\": {\"a\": 0", -1},
        {"not an object", NULL, NULL, "[1, 2, 3]", -1},
        {"empty file", NULL, NULL, "", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err[0] = 0;
        pz_tokenizer *b;
        if (cases[i].json) {
            char path[1024];
            snprintf(path, sizeof path, "%s/tokenizer.json", dir);
            write_text(path, cases[i].json);
            b = pz_tokenizer_from_json(path, NULL, err);
        } else {
            cJSON *r = tiny_json(0, cases[i].skip_byte);
            cJSON *m = cJSON_GetObjectItem(r, "model");
            const char *mg = cases[i].merge, *key = cases[i].key;
            if (mg && !strcmp(mg, "#")) cJSON_AddItemToArray(cJSON_GetObjectItem(m, "merges"), cJSON_CreateNumber(42));
            else if (mg && !strcmp(mg, "[3]")) {
                const char *three[] = {"a", "b", "c"};
                cJSON_AddItemToArray(cJSON_GetObjectItem(m, "merges"), cJSON_CreateStringArray(three, 3));
            } else if (mg) cJSON_AddItemToArray(cJSON_GetObjectItem(m, "merges"), cJSON_CreateString(mg));
            if (key && !strcmp(key, "merges")) cJSON_ReplaceItemInObject(m, "merges", cJSON_CreateObject());
            if (key && !strcmp(key, "type")) cJSON_ReplaceItemInObject(m, "type", cJSON_CreateString("WordPiece"));
            if (key && !strcmp(key, "normalizer")) {
                cJSON *n = cJSON_CreateObject();
                cJSON_AddStringToObject(n, "type", "NFC");
                cJSON_ReplaceItemInObject(r, "normalizer", n);
            }
            if (key && !strcmp(key, "pre_tokenizer"))
                cJSON_ReplaceItemInObject(cJSON_GetObjectItem(r, "pre_tokenizer"), "type", cJSON_CreateString("Metaspace"));
            if (key && !strcmp(key, "regex")) {
                cJSON *p = cJSON_GetObjectItem(r, "pre_tokenizer");
                cJSON_ReplaceItemInObject(p, "type", cJSON_CreateString("Split"));
                cJSON_AddStringToObject(cJSON_AddObjectToObject(p, "pattern"), "Regex", "(unclosed");
                cJSON_AddStringToObject(p, "behavior", "Isolated");
            }
            if (key && !strcmp(key, "vocab")) cJSON_AddStringToObject(cJSON_GetObjectItem(m, "vocab"), "zz", "7");
            if (key && !strcmp(key, "dup")) cJSON_AddNumberToObject(cJSON_GetObjectItem(m, "vocab"), "zz", 7);
            b = load_json_obj(dir, r, err);
        }
        CHECKF(b == NULL && err[0], "%s: expected a clean error", cases[i].what);
        fprintf(stderr, "  %-28s -> %s\n", cases[i].what, err);
        pz_tokenizer_free(b);
    }
    CHECK(pz_tokenizer_from_json("/nonexistent/tokenizer.json", NULL, err) == NULL && err[0]);
    CHECK(pz_tokenizer_load("/nonexistent/dir/model.gguf", err) == NULL && err[0]);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    free(dir);
}

int main(void) {
    char err[PZ_ERRLEN], path[1024];
    cJSON *vectors = tv_load();
    CHECK(vectors != NULL);
    snprintf(path, sizeof path, "%s/smollm2_tokenizer", pz_test_data_dir());
    pz_tokenizer *t = pz_tokenizer_load(path, err);
    CHECKF(t != NULL, "load %s: %s", path, err);
    if (t && vectors) {
        int n = cJSON_GetArraySize(cJSON_GetObjectItem(vectors, "vectors"));
        CHECK(n >= 200);
        CHECK(tv_check(t, vectors, "tokenizer.json") == n);
        test_api(t);
        test_hostile_text(t);
        test_stream(t);
        test_write_hf(t, vectors, "tokenizer.json");
    }
    test_tiny_and_broken();
    pz_tokenizer_free(t);
    cJSON_Delete(vectors);
    return pz_test_finish("test_tokenizer");
}
