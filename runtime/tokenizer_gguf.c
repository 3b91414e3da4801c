// tokenizer_gguf.c — the tokenizer from GGUF metadata (tokenizer.ggml.*,
// tokenizer.chat_template) and pz_tokenizer_load, which picks the loader
// from the path: a GGUF file, a Hugging Face directory or a tokenizer.json.
#include "tokenizer_impl.h"
#include "common.h"
#include "gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- GGUF ----------------------------------------------------------------------

// GGUF token types (llama.cpp llama_token_type).
enum { GGUF_TT_NORMAL = 1, GGUF_TT_UNKNOWN = 2, GGUF_TT_CONTROL = 3, GGUF_TT_USER = 4 };

static int32_t gguf_id(const pz_gguf *g, const char *key, int32_t n_vocab) {
    int64_t v;
    if (pz_gguf_get_i64(g, key, &v) != 0 || v < 0 || v >= n_vocab) return -1;
    return (int32_t)v;
}

pz_tokenizer *pz_tokenizer_from_gguf(const struct pz_gguf *g, char *err) {
    pz_gguf_str s;
    if (pz_gguf_get_str(g, "tokenizer.ggml.model", &s) != 0) {
        pz_err(err, "GGUF has no tokenizer.ggml.model");
        return NULL;
    }
    if (s.len != 4 || memcmp(s.data, "gpt2", 4) != 0) {
        pz_err(err, "GGUF tokenizer.ggml.model is '%.*s'; only 'gpt2' (byte-level BPE) is supported",
               (int)(s.len > 64 ? 64 : s.len), s.data);
        return NULL;
    }
    pz_gguf_type et;
    uint64_t n_tok, n_types = 0, n_merges = 0;
    if (pz_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n_tok) != 0 || et != PZ_GGUF_STRING) {
        pz_err(err, "GGUF has no tokenizer.ggml.tokens string array");
        return NULL;
    }
    if (pz_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n_types) == 0 && n_types != n_tok) {
        pz_err(err, "GGUF tokenizer.ggml.token_type has %llu entries for %llu tokens",
               (unsigned long long)n_types, (unsigned long long)n_tok);
        return NULL;
    }
    if (n_tok == 0 || n_tok > (1u << 24)) {
        pz_err(err, "GGUF tokenizer.ggml.tokens has %llu entries", (unsigned long long)n_tok);
        return NULL;
    }
    pz_tokenizer *t = tok_new((int32_t)n_tok, err);
    if (!t) return NULL;
    for (uint64_t i = 0; i < n_tok; i++) {
        int64_t ty = GGUF_TT_NORMAL;
        if (n_types && pz_gguf_arr_i64(g, "tokenizer.ggml.token_type", i, &ty) != 0) {
            pz_err(err, "GGUF tokenizer.ggml.token_type[%llu] unreadable", (unsigned long long)i);
            goto fail;
        }
        if (pz_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s) != 0) {
            pz_err(err, "GGUF tokenizer.ggml.tokens[%llu] unreadable", (unsigned long long)i);
            goto fail;
        }
        int attr = (ty == GGUF_TT_CONTROL || ty == GGUF_TT_UNKNOWN) ? TOK_CONTROL
                 : ty == GGUF_TT_USER ? TOK_USER : TOK_NORMAL;
        if (tok_set_token(t, (int32_t)i, s.data, s.len, attr, err)) goto fail;
    }
    if (tok_index_vocab(t, err)) goto fail;

    if (pz_gguf_get_arr(g, "tokenizer.ggml.merges", &et, &n_merges) == 0 && et != PZ_GGUF_STRING) {
        pz_err(err, "GGUF tokenizer.ggml.merges is not a string array");
        goto fail;
    }
    if (tok_reserve_merges(t, n_merges, err)) goto fail;
    for (uint64_t i = 0; i < n_merges; i++) {
        if (pz_gguf_arr_str(g, "tokenizer.ggml.merges", i, &s) != 0) {
            pz_err(err, "GGUF tokenizer.ggml.merges[%llu] unreadable", (unsigned long long)i);
            goto fail;
        }
        // "left right", split at the first space after the first byte (llama.cpp)
        const char *sp = s.len > 1 ? memchr(s.data + 1, ' ', s.len - 1) : NULL;
        if (!sp || sp + 1 == s.data + s.len) {
            pz_err(err, "GGUF tokenizer.ggml.merges[%llu] '%.*s' is not 'left right'", (unsigned long long)i,
                   (int)(s.len > 64 ? 64 : s.len), s.data);
            goto fail;
        }
        size_t al = (size_t)(sp - s.data);
        if (tok_add_merge(t, s.data, al, sp + 1, s.len - al - 1, err)) goto fail;
    }

    char pre[64] = "";
    if (pz_gguf_get_str(g, "tokenizer.ggml.pre", &s) == 0)
        snprintf(pre, sizeof pre, "%.*s", (int)(s.len > 63 ? 63 : s.len), s.data);
    if (tok_set_pre_name(t, pre, err)) goto fail;
    t->bos = gguf_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab);
    t->eos = gguf_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab);
    t->unk = gguf_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab);
    t->pad = gguf_id(g, "tokenizer.ggml.padding_token_id", t->n_vocab);
    int flag;
    if (pz_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &flag) == 0) t->add_bos = flag;
    if (pz_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &flag) == 0) t->add_eos = flag;
    if (pz_gguf_get_str(g, "tokenizer.chat_template", &s) == 0 &&
        tok_set_chat_template(t, s.data, s.len, err))
        goto fail;
    if (tok_finish(t, err)) goto fail;
    return t;
fail:
    pz_tokenizer_free(t);
    return NULL;
}

pz_tokenizer *pz_tokenizer_load(const char *model_path, char *err) {
    char a[4096], b[4096];
    if (pz_is_dir(model_path)) {
        pz_path_join(a, sizeof a, model_path, "tokenizer.json");
        pz_path_join(b, sizeof b, model_path, "tokenizer_config.json");
        if (!pz_file_exists(a)) {
            pz_err(err, "%s: no tokenizer.json in this directory", model_path);
            return NULL;
        }
        pz_tokenizer *t = pz_tokenizer_from_json(a, pz_file_exists(b) ? b : NULL, err);
        if (t && !t->chat_template) {
            // newer transformers keep the template in its own file
            pz_path_join(b, sizeof b, model_path, "chat_template.jinja");
            size_t n;
            char *tmpl = pz_file_exists(b) ? pz_read_file(b, 1 << 20, &n, NULL) : NULL;
            if (tmpl) {
                t->chat_template = tmpl;
                if (tok_chat_init(t)) {
                    pz_tokenizer_free(t);
                    pz_err(err, "tokenizer: out of memory");
                    return NULL;
                }
            }
        }
        return t;
    }
    size_t n = strlen(model_path);
    if (n >= 5 && !strcmp(model_path + n - 5, ".json")) {
        // a tokenizer.json given directly: take the config beside it
        const char *slash = strrchr(model_path, '/');
        if (slash) snprintf(b, sizeof b, "%.*s/tokenizer_config.json", (int)(slash - model_path), model_path);
        else snprintf(b, sizeof b, "tokenizer_config.json");
        return pz_tokenizer_from_json(model_path, pz_file_exists(b) ? b : NULL, err);
    }
    pz_gguf *g = pz_gguf_open(model_path, err);
    if (!g) return NULL;
    pz_tokenizer *t = pz_tokenizer_from_gguf(g, err);
    pz_gguf_close(g);
    return t;
}

