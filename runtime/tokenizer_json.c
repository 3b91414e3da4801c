// tokenizer_json.c — the Hugging Face side of the tokenizer: loading
// tokenizer.json (+ tokenizer_config.json) and writing both back.
//
// Accepted: model BPE without byte fallback or subword affixes; merges as
// "a b" strings or ["a", "b"] pairs; no normalizer; pre-tokenizers Sequence,
// Digits, ByteLevel and Split(Regex|String, Isolated). That covers GPT-2,
// SmolLM2 and Llama 3 style tokenizers. Anything else is refused by name
// rather than tokenized differently.
#include "tokenizer_impl.h"
#include "common.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOK_JSON_MAX_BYTES ((size_t)512 << 20)

static int is_true(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
    return dflt;
}

static const char *str_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *parse_json_file(const char *path, char *err) {
    size_t n;
    char *text = pz_read_file(path, TOK_JSON_MAX_BYTES, &n, err);
    if (!text) return NULL;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        pz_err(err, "%s: not valid JSON (near byte %zu)", path, at);
    } else if (!cJSON_IsObject(root)) {
        pz_err(err, "%s: not a JSON object", path);
        cJSON_Delete(root);
        root = NULL;
    }
    free(text);
    return root;
}

// Reads one pre-tokenizer (recursing into Sequence) into steps.
static int parse_pre(pz_tokenizer *t, const cJSON *p, char *err) {
    const char *type = str_of(p, "type");
    if (!type) return pz_err(err, "pre_tokenizer without a type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        if (!cJSON_IsArray(list)) return pz_err(err, "pre_tokenizer Sequence without a pretokenizers list");
        const cJSON *it;
        cJSON_ArrayForEach(it, list) if (parse_pre(t, it, err)) return -1;
        return 0;
    }
    tok_pre_step st = {0};
    char *owned = NULL;
    if (!strcmp(type, "Digits")) {
        st.kind = PRE_DIGITS;
        st.individual = is_true(p, "individual_digits", 0);
    } else if (!strcmp(type, "ByteLevel")) {
        st.kind = PRE_BYTELEVEL;
        st.use_regex = is_true(p, "use_regex", 1);
        st.prefix_space = is_true(p, "add_prefix_space", 0);
    } else if (!strcmp(type, "Split")) {
        st.kind = PRE_SPLIT;
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *re = str_of(pat, "Regex"), *lit = str_of(pat, "String");
        const char *beh = str_of(p, "behavior");
        if (!beh || strcmp(beh, "Isolated") != 0)
            return pz_err(err, "pre_tokenizer Split with behavior '%s' is not supported (only Isolated)", beh ? beh : "?");
        if (is_true(p, "invert", 0)) return pz_err(err, "pre_tokenizer Split with invert=true is not supported");
        if (re) {
            st.pattern = (char *)re;
        } else if (lit && !strstr(lit, "\\E")) {
            size_t n = strlen(lit);
            if (!(owned = malloc(n + 5))) return pz_err(err, "out of memory");
            snprintf(owned, n + 5, "\\Q%s\\E", lit);
            st.pattern = owned;
        } else {
            return pz_err(err, "pre_tokenizer Split without a usable pattern");
        }
    } else {
        return pz_err(err, "pre_tokenizer type '%s' is not supported", type);
    }
    int rc = tok_add_pre_step(t, st, err);
    free(owned);
    return rc;
}

// An added/special token in tokenizer_config.json: "text" or {"content": "text"}.
static int32_t config_token(const pz_tokenizer *t, const cJSON *cfg, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
    if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
    if (!cJSON_IsString(v)) return -1;
    return pz_tokenizer_find(t, v->valuestring);
}

static int read_config(pz_tokenizer *t, const char *path, char *err) {
    cJSON *cfg = parse_json_file(path, err);
    if (!cfg) return -1;
    t->bos = config_token(t, cfg, "bos_token");
    t->eos = config_token(t, cfg, "eos_token");
    t->pad = config_token(t, cfg, "pad_token");
    int32_t unk = config_token(t, cfg, "unk_token");
    if (unk >= 0) t->unk = unk;
    t->add_bos = is_true(cfg, "add_bos_token", 0);
    t->add_eos = is_true(cfg, "add_eos_token", 0);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
    const char *tmpl = cJSON_IsString(ct) ? ct->valuestring : NULL;
    if (cJSON_IsArray(ct)) {  // [{"name": ..., "template": ...}]: take "default", else the first
        const cJSON *it;
        cJSON_ArrayForEach(it, ct) {
            const char *name = str_of(it, "name"), *tx = str_of(it, "template");
            if (tx && (!tmpl || (name && !strcmp(name, "default")))) tmpl = tx;
        }
    }
    int rc = tmpl ? tok_set_chat_template(t, tmpl, strlen(tmpl), err) : 0;
    cJSON_Delete(cfg);
    return rc;
}

static pz_tokenizer *from_json(const cJSON *root, const char *config_path, char *err) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model)) {
        pz_err(err, "no \"model\" object");
        return NULL;
    }
    const char *type = str_of(model, "type");
    if (type && strcmp(type, "BPE") != 0) {
        pz_err(err, "model type '%s' is not supported (only byte-level BPE)", type);
        return NULL;
    }
    if (is_true(model, "byte_fallback", 0)) {
        pz_err(err, "BPE with byte_fallback (SentencePiece style) is not supported");
        return NULL;
    }
    const char *affix[2] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *v = str_of(model, affix[i]);
        if (v && *v) {
            pz_err(err, "BPE with %s is not supported", affix[i]);
            return NULL;
        }
    }
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (norm && !cJSON_IsNull(norm)) {
        const char *nt = str_of(norm, "type");
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(norm, "normalizers");
        if (!(nt && !strcmp(nt, "Sequence") && cJSON_GetArraySize(list) == 0)) {
            pz_err(err, "normalizer '%s' is not supported", nt ? nt : "?");
            return NULL;
        }
    }
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) {
        pz_err(err, "model.vocab is not an object");
        return NULL;
    }
    if (merges && !cJSON_IsArray(merges)) {
        pz_err(err, "model.merges is not an array");
        return NULL;
    }
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added)) {
        pz_err(err, "added_tokens is not an array");
        return NULL;
    }

    // ids: vocabulary entries, then added tokens (which may or may not repeat them)
    double max_id = -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 24) ||
            it->valuedouble != (double)(int32_t)it->valuedouble) {
            pz_err(err, "model.vocab['%.64s'] is not a valid id", it->string);
            return NULL;
        }
        if (it->valuedouble > max_id) max_id = it->valuedouble;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const char *content = str_of(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 24) ||
            id->valuedouble != (double)(int32_t)id->valuedouble || !content) {
            pz_err(err, "added_tokens: an entry without a valid id and content");
            return NULL;
        }
        if (id->valuedouble > max_id) max_id = id->valuedouble;
    }
    if (max_id < 0) {
        pz_err(err, "empty vocabulary");
        return NULL;
    }
    pz_tokenizer *t = tok_new((int32_t)max_id + 1, err);
    if (!t) return NULL;
    uint8_t *added_attr = calloc((size_t)t->n_vocab, 1);
    if (!added_attr) {
        pz_err(err, "out of memory");
        goto fail;
    }
    cJSON_ArrayForEach(it, added) {
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        added_attr[id] = is_true(it, "special", 0) ? TOK_CONTROL : TOK_USER;
    }
    cJSON_ArrayForEach(it, vocab) {
        int32_t id = (int32_t)it->valuedouble;
        int attr = added_attr[id] ? added_attr[id] : TOK_NORMAL;
        if (tok_set_token(t, id, it->string, strlen(it->string), attr, err)) goto fail;
    }
    cJSON_ArrayForEach(it, added) {
        int32_t id = (int32_t)cJSON_GetObjectItemCaseSensitive(it, "id")->valuedouble;
        const char *content = str_of(it, "content");
        if (t->attr[id] == TOK_HOLE) {
            if (tok_set_token(t, id, content, strlen(content), added_attr[id], err)) goto fail;
        } else if (strcmp(content, t->piece_arena + t->piece_off[id]) != 0) {
            pz_err(err, "added token %d '%.64s' differs from the vocabulary's '%.64s'", (int)id, content,
                   t->piece_arena + t->piece_off[id]);
            goto fail;
        }
    }
    free(added_attr);
    added_attr = NULL;
    if (tok_index_vocab(t, err)) goto fail;

    size_t n_merges = merges ? (size_t)cJSON_GetArraySize(merges) : 0;
    if (tok_reserve_merges(t, n_merges, err)) goto fail;
    size_t i = 0;
    cJSON_ArrayForEach(it, merges) {
        const char *a = NULL, *b = NULL;
        size_t al = 0, bl = 0;
        if (cJSON_IsString(it)) {
            // "a b": exactly one space, as HF requires of this form
            const char *s = it->valuestring, *sp = strchr(s, ' ');
            if (sp && sp > s && sp[1] && !strchr(sp + 1, ' ')) {
                a = s, al = (size_t)(sp - s), b = sp + 1, bl = strlen(b);
            }
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2) {
            const cJSON *x = cJSON_GetArrayItem(it, 0), *y = cJSON_GetArrayItem(it, 1);
            if (cJSON_IsString(x) && cJSON_IsString(y)) {
                a = x->valuestring, al = strlen(a), b = y->valuestring, bl = strlen(b);
            }
        }
        if (!a || !al || !bl) {
            pz_err(err, "model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", i);
            goto fail;
        }
        if (tok_add_merge(t, a, al, b, bl, err)) goto fail;
        i++;
    }
    t->ignore_merges = is_true(model, "ignore_merges", 0);
    const char *unk = str_of(model, "unk_token");
    if (unk) t->unk = t->bpe_unk = pz_tokenizer_find(t, unk);
    t->fuse_unk = is_true(model, "fuse_unk", 0);

    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    if (pre && !cJSON_IsNull(pre) && parse_pre(t, pre, err)) goto fail;
    if (config_path && read_config(t, config_path, err)) goto fail;
    if (tok_finish(t, err)) goto fail;
    return t;
fail:
    free(added_attr);
    pz_tokenizer_free(t);
    return NULL;
}

pz_tokenizer *pz_tokenizer_from_json(const char *tokenizer_json_path, const char *config_path, char *err) {
    char e[PZ_ERRLEN] = "";
    cJSON *root = parse_json_file(tokenizer_json_path, err);
    if (!root) return NULL;
    pz_tokenizer *t = from_json(root, config_path, e);
    cJSON_Delete(root);
    if (!t) {
        // messages about the config already name its path
        if (config_path && strstr(e, config_path) == e) pz_err(err, "%s", e);
        else pz_err(err, "%s: %s", tokenizer_json_path, e);
    }
    return t;
}

// ---- writing -------------------------------------------------------------------

static cJSON *byte_level_json(int prefix_space, int trim_offsets, int use_regex) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddBoolToObject(o, "add_prefix_space", prefix_space);
    cJSON_AddBoolToObject(o, "trim_offsets", trim_offsets);
    cJSON_AddBoolToObject(o, "use_regex", use_regex);
    return o;
}

static cJSON *pre_json(const pz_tokenizer *t) {
    cJSON *list = cJSON_CreateArray();
    for (int i = 0; i < t->n_steps; i++) {
        const tok_pre_step *s = &t->steps[i];
        cJSON *o;
        if (s->kind == PRE_DIGITS) {
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "Digits");
            cJSON_AddBoolToObject(o, "individual_digits", s->individual);
        } else if (s->kind == PRE_BYTELEVEL) {
            o = byte_level_json(s->prefix_space, 1, s->use_regex);
        } else {
            o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "type", "Split");
            cJSON *pat = cJSON_AddObjectToObject(o, "pattern");
            cJSON_AddStringToObject(pat, "Regex", s->pattern);
            cJSON_AddStringToObject(o, "behavior", "Isolated");
            cJSON_AddBoolToObject(o, "invert", 0);
        }
        cJSON_AddItemToArray(list, o);
    }
    if (cJSON_GetArraySize(list) == 1) {
        cJSON *only = cJSON_DetachItemFromArray(list, 0);
        cJSON_Delete(list);
        return only;
    }
    cJSON *seq = cJSON_CreateObject();
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddItemToObject(seq, "pretokenizers", list);
    return seq;
}

static cJSON *added_json(const pz_tokenizer *t, int32_t id, int with_id) {
    cJSON *o = cJSON_CreateObject();
    if (with_id) cJSON_AddNumberToObject(o, "id", id);
    cJSON_AddStringToObject(o, "content", pz_tokenizer_piece(t, id));
    cJSON_AddBoolToObject(o, "single_word", 0);
    cJSON_AddBoolToObject(o, "lstrip", 0);
    cJSON_AddBoolToObject(o, "rstrip", 0);
    cJSON_AddBoolToObject(o, "normalized", t->attr[id] == TOK_USER);
    cJSON_AddBoolToObject(o, "special", t->attr[id] == TOK_CONTROL);
    return o;
}

static int is_added(const pz_tokenizer *t, int32_t id) {
    return t->attr[id] == TOK_CONTROL || t->attr[id] == TOK_USER;
}

static cJSON *tokenizer_json(const pz_tokenizer *t) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (is_added(t, id)) cJSON_AddItemToArray(added, added_json(t, id, 1));
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", pre_json(t));
    cJSON_AddItemToObject(root, "post_processor", byte_level_json(1, 0, 1));
    cJSON_AddItemToObject(root, "decoder", byte_level_json(1, 1, 1));

    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", 0);
    cJSON_AddBoolToObject(m, "byte_fallback", 0);
    cJSON_AddBoolToObject(m, "ignore_merges", t->ignore_merges);
    cJSON *v = cJSON_AddObjectToObject(m, "vocab");
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->attr[id] != TOK_HOLE) cJSON_AddNumberToObject(v, pz_tokenizer_piece(t, id), id);
    // "a b" strings (readable by every tokenizers version) unless a piece has
    // a space, which only the pair form can carry
    int pairs = 0;
    for (int32_t i = 0; i < t->n_merges && !pairs; i++)
        pairs = strchr(pz_tokenizer_piece(t, t->merges[i][0]), ' ') ||
                strchr(pz_tokenizer_piece(t, t->merges[i][1]), ' ');
    cJSON *ml = cJSON_AddArrayToObject(m, "merges");
    for (int32_t i = 0; i < t->n_merges; i++) {
        const char *a = pz_tokenizer_piece(t, t->merges[i][0]), *b = pz_tokenizer_piece(t, t->merges[i][1]);
        if (pairs) {
            cJSON *p = cJSON_CreateArray();
            cJSON_AddItemToArray(p, cJSON_CreateString(a));
            cJSON_AddItemToArray(p, cJSON_CreateString(b));
            cJSON_AddItemToArray(ml, p);
        } else {
            size_t n = strlen(a) + strlen(b) + 2;
            char *s = malloc(n);
            if (!s) continue;  // the oom is caught when printing
            snprintf(s, n, "%s %s", a, b);
            cJSON_AddItemToArray(ml, cJSON_CreateString(s));
            free(s);
        }
    }
    return root;
}

static void add_token_field(cJSON *cfg, const pz_tokenizer *t, const char *key, int32_t id) {
    if (id >= 0 && id < t->n_vocab && t->attr[id] != TOK_HOLE)
        cJSON_AddStringToObject(cfg, key, pz_tokenizer_piece(t, id));
}

static cJSON *config_json(const pz_tokenizer *t) {
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddBoolToObject(cfg, "add_bos_token", t->add_bos);
    cJSON_AddBoolToObject(cfg, "add_eos_token", t->add_eos);
    cJSON_AddBoolToObject(cfg, "add_prefix_space", 0);
    cJSON *dec = cJSON_AddObjectToObject(cfg, "added_tokens_decoder");
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!is_added(t, id)) continue;
        char key[16];
        snprintf(key, sizeof key, "%d", (int)id);
        cJSON_AddItemToObject(dec, key, added_json(t, id, 0));
    }
    add_token_field(cfg, t, "bos_token", t->bos);
    add_token_field(cfg, t, "eos_token", t->eos);
    add_token_field(cfg, t, "unk_token", t->unk);
    add_token_field(cfg, t, "pad_token", t->pad);
    if (t->chat_template) cJSON_AddStringToObject(cfg, "chat_template", t->chat_template);
    cJSON_AddBoolToObject(cfg, "clean_up_tokenization_spaces", 0);
    cJSON_AddStringToObject(cfg, "tokenizer_class", "GPT2Tokenizer");
    return cfg;
}

// Prints obj into dir/name through a temporary file and a rename.
static int write_json(const cJSON *obj, const char *dir, const char *name, int pretty, char *err) {
    char path[4096], tmp[4200];
    pz_path_join(path, sizeof path, dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
    char *text = pretty ? cJSON_Print(obj) : cJSON_PrintUnformatted(obj);
    if (!text) return pz_err(err, "%s: out of memory", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(text);
        return pz_err(err, "%s: cannot create", tmp);
    }
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    free(text);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return pz_err(err, "%s: write failed", path);
    }
    return 0;
}

int pz_tokenizer_write_hf(const pz_tokenizer *t, const char *dir, char *err) {
    if (!pz_is_dir(dir)) return pz_err(err, "%s: not a directory", dir);
    cJSON *tj = tokenizer_json(t);
    int rc = tj ? write_json(tj, dir, "tokenizer.json", 0, err) : pz_err(err, "out of memory");
    cJSON_Delete(tj);
    if (rc) return rc;
    cJSON *cj = config_json(t);
    rc = cj ? write_json(cj, dir, "tokenizer_config.json", 1, err) : pz_err(err, "out of memory");
    cJSON_Delete(cj);
    return rc;
}
