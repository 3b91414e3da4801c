// tokenizer.c — byte-level BPE (GPT-2 family): building the tokenizer's
// tables (vocabulary index, merge map, added tokens, pre-tokenizer regexes
// compiled with PCRE2), ChatML rendering and the accessors. The other parts:
// tokenizer_encode.c (encode, decode, streaming), tokenizer_gguf.c (GGUF
// loader, pz_tokenizer_load), tokenizer_json.c (tokenizer.json in and out).
#include "tokenizer_impl.h"
#include "common.h"
#include "tokenizer_unicode.h"
#include "chat_template.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const tok_gpt2_pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char *const tok_llama3_pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// ---- building ----------------------------------------------------------------

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

pz_tokenizer *tok_new(int32_t n_vocab, char *err) {
    if (n_vocab <= 0 || n_vocab > (1 << 24)) {
        pz_err(err, "tokenizer: vocabulary size %d out of range", (int)n_vocab);
        return NULL;
    }
    pz_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        pz_err(err, "tokenizer: out of memory");
        return NULL;
    }
    size_t n = (size_t)n_vocab;
    t->n_vocab = n_vocab;
    t->piece_off = calloc(n, sizeof *t->piece_off);
    t->piece_len = calloc(n, sizeof *t->piece_len);
    t->bytes_off = calloc(n, sizeof *t->bytes_off);
    t->bytes_len = calloc(n, sizeof *t->bytes_len);
    t->attr = malloc(n);
    t->piece_cap = t->bytes_cap = n * 8 + 64;
    t->piece_arena = malloc(t->piece_cap);
    t->bytes_arena = malloc(t->bytes_cap);
    if (!t->piece_off || !t->piece_len || !t->bytes_off || !t->bytes_len || !t->attr ||
        !t->piece_arena || !t->bytes_arena) {
        pz_tokenizer_free(t);
        pz_err(err, "tokenizer: out of memory");
        return NULL;
    }
    memset(t->attr, TOK_HOLE, n);
    // offset 0 of each arena is the empty string that holes point at
    t->piece_arena[0] = t->bytes_arena[0] = 0;
    t->piece_used = t->bytes_used = 1;
    t->bos = t->eos = t->unk = t->pad = t->bpe_unk = -1;
    for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
    return t;
}

static int arena_put(char **arena, size_t *used, size_t *cap, const char *s, size_t n, uint32_t *off) {
    if (*used + n + 1 > UINT32_MAX) return -1;
    if (*used + n + 1 > *cap) {
        size_t nc = *cap * 2;
        while (nc < *used + n + 1) nc *= 2;
        char *p = realloc(*arena, nc);
        if (!p) return -1;
        *arena = p;
        *cap = nc;
    }
    if (n) memcpy(*arena + *used, s, n);
    (*arena)[*used + n] = 0;
    *off = (uint32_t)*used;
    *used += n + 1;
    return 0;
}

int tok_set_token(pz_tokenizer *t, int32_t id, const char *piece, size_t len, int attr, char *err) {
    if (id < 0 || id >= t->n_vocab) return pz_err(err, "tokenizer: token id %d out of range", (int)id);
    if (t->attr[id] != TOK_HOLE) return pz_err(err, "tokenizer: token id %d defined twice", (int)id);
    if (len == 0) return pz_err(err, "tokenizer: token %d is empty", (int)id);
    if (len > TOK_MAX_PIECE_BYTES) return pz_err(err, "tokenizer: token %d is %zu bytes long", (int)id, len);
    if (arena_put(&t->piece_arena, &t->piece_used, &t->piece_cap, piece, len, &t->piece_off[id]))
        return pz_err(err, "tokenizer: out of memory");
    t->piece_len[id] = (uint32_t)len;
    t->attr[id] = (uint8_t)attr;

    // Bytes: added tokens are raw text; a normal token undoes the byte
    // alphabet, unless some character is outside it, in which case (as the HF
    // ByteLevel decoder does) the piece is taken as raw UTF-8.
    char buf[TOK_MAX_PIECE_BYTES];
    size_t nb = 0;
    const uint8_t *s = (const uint8_t *)piece;
    int raw = attr != TOK_NORMAL;
    for (size_t i = 0; i < len && !raw;) {
        uint32_t cp;
        size_t k = utf8_get(s + i, len - i, &cp);
        int b = k ? cp_to_byte(cp) : -1;
        if (b < 0) raw = 1;
        else buf[nb++] = (char)b;
        i += k ? k : 1;
    }
    const char *src = raw ? piece : buf;
    size_t sn = raw ? len : nb;
    if (arena_put(&t->bytes_arena, &t->bytes_used, &t->bytes_cap, src, sn, &t->bytes_off[id]))
        return pz_err(err, "tokenizer: out of memory");
    t->bytes_len[id] = (uint32_t)sn;
    if ((int)sn > t->max_token_len) t->max_token_len = (int)sn;
    return 0;
}


typedef struct { uint8_t first; uint32_t len; int32_t id; } added_key;

static int cmp_added(const void *a, const void *b) {
    const added_key *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;  // longest first
    return x->id < y->id ? -1 : (x->id > y->id);
}

int tok_index_vocab(pz_tokenizer *t, char *err) {
    size_t cap = pow2_at_least((size_t)t->n_vocab * 2);
    t->vocab_tab = calloc(cap, sizeof *t->vocab_tab);
    if (!t->vocab_tab) return pz_err(err, "tokenizer: out of memory");
    t->vocab_mask = cap - 1;
    int32_t n_added = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->attr[id] == TOK_HOLE) continue;
        if (t->attr[id] == TOK_CONTROL || t->attr[id] == TOK_USER) n_added++;
        const char *p = t->piece_arena + t->piece_off[id];
        size_t n = t->piece_len[id];
        size_t i = hash_bytes(p, n) & t->vocab_mask;
        while (t->vocab_tab[i]) {
            int32_t o = (int32_t)(t->vocab_tab[i] - 1);
            if (t->piece_len[o] == n && memcmp(t->piece_arena + t->piece_off[o], p, n) == 0)
                return pz_err(err, "tokenizer: tokens %d and %d are both '%.64s'", (int)o, (int)id, p);
            i = (i + 1) & t->vocab_mask;
        }
        t->vocab_tab[i] = (uint32_t)id + 1;
    }
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t k = utf8_put(byte_to_cp((uint8_t)b), u);
        t->byte_id[b] = vocab_lookup(t, u, k);
    }

    added_key *keys = malloc(sizeof *keys * (size_t)(n_added ? n_added : 1));
    t->added = malloc(sizeof *t->added * (size_t)(n_added ? n_added : 1));
    if (!keys || !t->added) {
        free(keys);
        return pz_err(err, "tokenizer: out of memory");
    }
    int32_t k = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->attr[id] != TOK_CONTROL && t->attr[id] != TOK_USER) continue;
        keys[k].first = (uint8_t)t->piece_arena[t->piece_off[id]];
        keys[k].len = t->piece_len[id];
        keys[k].id = id;
        k++;
        if (t->attr[id] == TOK_USER) t->has_user_added = 1;
    }
    qsort(keys, (size_t)n_added, sizeof *keys, cmp_added);
    memset(t->added_start, 0, sizeof t->added_start);
    for (int32_t i = 0; i < n_added; i++) {
        t->added[i] = keys[i].id;
        t->added_start[keys[i].first + 1]++;
    }
    for (int b = 0; b < 256; b++) t->added_start[b + 1] += t->added_start[b];
    t->n_added = n_added;
    free(keys);
    return 0;
}

int tok_reserve_merges(pz_tokenizer *t, size_t n, char *err) {
    if (n > (size_t)INT32_MAX / 4) return pz_err(err, "tokenizer: %zu merges is too many", n);
    size_t cap = pow2_at_least(n * 2 + 1);
    t->merge_key = malloc(cap * sizeof *t->merge_key);
    t->merge_rank = malloc(cap * sizeof *t->merge_rank);
    t->merge_res = malloc(cap * sizeof *t->merge_res);
    t->merges = malloc((n ? n : 1) * sizeof *t->merges);
    if (!t->merge_key || !t->merge_rank || !t->merge_res || !t->merges)
        return pz_err(err, "tokenizer: out of memory");
    memset(t->merge_key, 0xFF, cap * sizeof *t->merge_key);
    t->merge_mask = cap - 1;
    t->merges_cap = (int32_t)n;
    t->n_merges = 0;
    return 0;
}



int tok_add_merge(pz_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, char *err) {
    int32_t rank = t->n_merges;
    if (rank >= t->merges_cap) return pz_err(err, "tokenizer: more merges than reserved");
    int32_t ia = vocab_lookup(t, a, alen), ib = vocab_lookup(t, b, blen);
    if (ia < 0 || ib < 0)
        return pz_err(err, "merge %d ('%.*s' '%.*s'): '%.*s' is not in the vocabulary", (int)rank,
                      (int)(alen > 64 ? 64 : alen), a, (int)(blen > 64 ? 64 : blen), b,
                      ia < 0 ? (int)(alen > 64 ? 64 : alen) : (int)(blen > 64 ? 64 : blen), ia < 0 ? a : b);
    char buf[2 * TOK_MAX_PIECE_BYTES];
    if (alen + blen > sizeof buf) return pz_err(err, "merge %d: pieces too long", (int)rank);
    memcpy(buf, a, alen);
    memcpy(buf + alen, b, blen);
    int32_t ir = vocab_lookup(t, buf, alen + blen);
    if (ir < 0)
        return pz_err(err, "merge %d ('%.*s' '%.*s'): the merged piece is not in the vocabulary", (int)rank,
                      (int)(alen > 64 ? 64 : alen), a, (int)(blen > 64 ? 64 : blen), b);
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    size_t i = merge_slot(t, key);
    // A repeated pair takes the later rank, as HF's merge map does.
    t->merge_key[i] = key;
    t->merge_rank[i] = rank;
    t->merge_res[i] = ir;
    t->merges[rank][0] = ia;
    t->merges[rank][1] = ib;
    t->n_merges++;
    return 0;
}

int tok_add_pre_step(pz_tokenizer *t, tok_pre_step step, char *err) {
    if (t->n_steps >= TOK_MAX_STEPS) return pz_err(err, "tokenizer: more than %d pre-tokenizer steps", TOK_MAX_STEPS);
    step.re = NULL;
    if (step.pattern && !(step.pattern = strdup(step.pattern))) return pz_err(err, "tokenizer: out of memory");
    t->steps[t->n_steps++] = step;
    return 0;
}

int tok_set_pre_name(pz_tokenizer *t, const char *name, char *err) {
    tok_pre_step digits = {.kind = PRE_DIGITS, .individual = 1};
    tok_pre_step bl = {.kind = PRE_BYTELEVEL, .use_regex = 1};
    if (!strcmp(name, "smollm")) {
        if (tok_add_pre_step(t, digits, err) || tok_add_pre_step(t, bl, err)) return -1;
    } else if (!*name || !strcmp(name, "gpt2") || !strcmp(name, "gpt-2") || !strcmp(name, "default")) {
        if (tok_add_pre_step(t, bl, err)) return -1;
    } else if (!strcmp(name, "llama-bpe") || !strcmp(name, "llama3") || !strcmp(name, "llama-v3")) {
        tok_pre_step split = {.kind = PRE_SPLIT, .pattern = (char *)tok_llama3_pattern};
        bl.use_regex = 0;
        if (tok_add_pre_step(t, split, err) || tok_add_pre_step(t, bl, err)) return -1;
        t->ignore_merges = 1;
    } else {
        return pz_err(err, "tokenizer: pre-tokenizer type '%s' is not supported "
                           "(supported: smollm, gpt2, default, llama-bpe)", name);
    }
    snprintf(t->pre_name, sizeof t->pre_name, "%s", name);
    return 0;
}

int tok_set_chat_template(pz_tokenizer *t, const char *tmpl, size_t len, char *err) {
    free(t->chat_template);
    t->chat_template = malloc(len + 1);
    if (!t->chat_template) return pz_err(err, "tokenizer: out of memory");
    memcpy(t->chat_template, tmpl, len);
    t->chat_template[len] = 0;
    return 0;
}

typedef struct { char *p; size_t n, cap; int oom; } strbuf;

static void sb_putn(strbuf *b, const char *s, size_t k) {
    if (b->oom) return;
    if (b->n + k + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + k + 1) nc *= 2;
        char *p = realloc(b->p, nc);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, k);
    b->n += k;
    b->p[b->n] = 0;
}

static void sb_put(strbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

// Puts a character-class body, bracketed unless already inside a class.
static void sb_class(strbuf *b, int in_class, const char *neg, const char *body1, const char *body2) {
    if (!in_class) sb_put(b, "[");
    if (!in_class) sb_put(b, neg);
    sb_put(b, body1);
    sb_put(b, body2);
    if (!in_class) sb_put(b, "]");
}

// HF patterns are Oniguruma syntax, run by PCRE2 here. Two differences are
// patched: \s (Oniguruma: Unicode White_Space = \t-\r, U+0085, Zs, Zl, Zp;
// PCRE2 with UCP adds U+180E) is spelled out, and \p{L} / \p{N} gain the
// code points that PCRE2's older Unicode tables lack (tokenizer_unicode.h).
static char *onig_to_pcre2(const char *p) {
    static const char ws[] = "\\t-\\r\\x{85}\\p{Z}";
    strbuf b = {0};
    sb_put(&b, "");
    int in_class = 0;
    size_t n = strlen(p);
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's') sb_class(&b, in_class, "", ws, "");
            else if (d == 'S' && !in_class) sb_class(&b, 0, "^", ws, "");
            else if (!strncmp(p + i, "\\p{L}", 5)) sb_class(&b, in_class, "", "\\p{L}", tok_extra_letter);
            else if (!strncmp(p + i, "\\p{N}", 5)) sb_class(&b, in_class, "", "\\p{N}", tok_extra_number);
            else sb_putn(&b, p + i, 2);
            i += (d == 'p' && (!strncmp(p + i, "\\p{L}", 5) || !strncmp(p + i, "\\p{N}", 5))) ? 4 : 1;
            continue;
        }
        if (c == '[' && !in_class) {
            in_class = 1;
            sb_putn(&b, "[", 1);
            if (p[i + 1] == '^') sb_putn(&b, p + ++i, 1);
            if (p[i + 1] == ']') sb_putn(&b, p + ++i, 1);  // a leading ] is literal
            continue;
        }
        if (c == ']' && in_class) in_class = 0;
        sb_putn(&b, &c, 1);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

static pcre2_code *compile_pcre2(const char *pat, const char *shown, char *err) {
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        pz_err(err, "tokenizer: bad pre-tokenizer regex '%.200s': %s", shown, (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is absent
    return re;
}

static pcre2_code *compile_re(const char *pattern, char *err) {
    char *pat = onig_to_pcre2(pattern);
    if (!pat) {
        pz_err(err, "tokenizer: out of memory");
        return NULL;
    }
    pcre2_code *re = compile_pcre2(pat, pattern, err);
    free(pat);
    return re;
}

// HF's Digits splits on Rust char::is_numeric: \p{N} plus what PCRE2 lacks.
static pcre2_code *compile_numeric(int run, char *err) {
    strbuf b = {0};
    sb_put(&b, "[\\p{N}");
    sb_put(&b, tok_extra_numeric);
    sb_put(&b, run ? "]+" : "]");
    if (b.oom) {
        free(b.p);
        pz_err(err, "tokenizer: out of memory");
        return NULL;
    }
    pcre2_code *re = compile_pcre2(b.p, run ? "\\p{N}+" : "\\p{N}", err);
    free(b.p);
    return re;
}

int tok_chat_init(pz_tokenizer *t) {
    const char *bos = t->bos >= 0 ? pz_tokenizer_piece(t, t->bos) : NULL;
    const char *eos = t->eos >= 0 ? pz_tokenizer_piece(t, t->eos) : NULL;
    pz_chat_format_free(t->chat_fmt);
    t->chat_fmt = NULL;
    if (t->chat_template && pz_chat_detect(t->chat_template) == PZ_CHAT_UNKNOWN) return 0;
    return (t->chat_fmt = pz_chat_format_new(t->chat_template, NULL, bos, eos, NULL)) ? 0 : -1;
}

int tok_finish(pz_tokenizer *t, char *err) {
    int have_bytelevel = 0;
    for (int i = 0; i < t->n_steps; i++) {
        tok_pre_step *s = &t->steps[i];
        const char *pat = s->kind == PRE_SPLIT ? s->pattern
                        : (s->kind == PRE_BYTELEVEL && s->use_regex) ? tok_gpt2_pattern : NULL;
        if (s->kind == PRE_BYTELEVEL) have_bytelevel = 1;
        if (pat && !(s->re = compile_re(pat, err))) return -1;
        if (s->kind == PRE_DIGITS && !t->re_digit) {
            if (!(t->re_digit = compile_numeric(0, err))) return -1;
            if (!(t->re_digits = compile_numeric(1, err))) return -1;
        }
    }
    if (!have_bytelevel) return pz_err(err, "tokenizer: the pre-tokenizer has no ByteLevel step (only byte-level BPE is supported)");
    int n_bytes = 0;
    for (int b = 0; b < 256; b++) n_bytes += t->byte_id[b] >= 0;
    if (n_bytes < 128)  // SmolLM2 has 235
        return pz_err(err, "tokenizer: only %d of the 256 byte symbols are tokens (not a byte-level BPE vocabulary)", n_bytes);
    if (tok_chat_init(t)) return pz_err(err, "tokenizer: out of memory");
    return 0;
}

// ---- chat and prompts ---------------------------------------------------------

int pz_tokenizer_set_chat_format(pz_tokenizer *t, const char *name, char *err) {
    if (!name) return tok_chat_init(t) ? pz_err(err, "tokenizer: out of memory") : 0;
    const char *bos = t->bos >= 0 ? pz_tokenizer_piece(t, t->bos) : NULL;
    const char *eos = t->eos >= 0 ? pz_tokenizer_piece(t, t->eos) : NULL;
    pz_chat_format *f = pz_chat_format_new(t->chat_template, name, bos, eos, err);
    if (!f) return -1;
    pz_chat_format_free(t->chat_fmt);
    t->chat_fmt = f;
    return 0;
}

const pz_chat_format *pz_tokenizer_chat_format(const pz_tokenizer *t) { return t->chat_fmt; }

char *pz_tokenizer_chat_render(const pz_tokenizer *t, const char *const *roles, const char *const *contents,
                               int n, int add_generation_prompt, char *err) {
    if (!t->chat_fmt) {
        pz_err(err, "the model's chat template is of no family puzzle renders (%s)", pz_chat_family_list());
        return NULL;
    }
    pz_chat_msg stack[16] = {{0}}, *m = n <= 16 ? stack : malloc((size_t)n * sizeof *m);
    if (!m) {
        pz_err(err, "tokenizer: out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) m[i] = (pz_chat_msg){roles[i], contents[i]};
    char *s = pz_chat_render(t->chat_fmt, m, n, add_generation_prompt, err);
    if (m != stack) free(m);
    return s;
}

int pz_tokenizer_chat_stop_ids(const pz_tokenizer *t, int32_t *ids, int cap) {
    int n = 0;
    if (t->eos >= 0 && n < cap) ids[n++] = t->eos;
    for (const char *const *p = t->chat_fmt ? pz_chat_end_pieces(t->chat_fmt) : NULL; p && *p && n < cap; p++) {
        int32_t id = pz_tokenizer_find(t, *p);
        if (id >= 0 && id != t->eos) ids[n++] = id;
    }
    return n;
}

int pz_tokenizer_encode_prompt(const pz_tokenizer *t, const char *text, size_t len, int32_t **ids, char *err) {
    int n = pz_tokenizer_encode(t, text, len, 1, ids, err);
    if (n < 0 || !pz_tokenizer_add_bos(t) || (n > 0 && (*ids)[0] == t->bos)) return n;
    int32_t *b = realloc(*ids, (size_t)(n + 1) * sizeof *b);
    if (!b) {
        free(*ids);
        *ids = NULL;
        return pz_err(err, "tokenizer: out of memory");
    }
    memmove(b + 1, b, (size_t)n * sizeof *b);
    b[0] = t->bos;
    *ids = b;
    return n + 1;
}

void pz_tokenizer_free(pz_tokenizer *t) {
    if (!t) return;
    free(t->piece_arena);
    free(t->bytes_arena);
    free(t->piece_off);
    free(t->piece_len);
    free(t->bytes_off);
    free(t->bytes_len);
    free(t->attr);
    free(t->vocab_tab);
    free(t->merge_key);
    free(t->merge_rank);
    free(t->merge_res);
    free(t->merges);
    free(t->added);
    for (int i = 0; i < t->n_steps; i++) {
        free(t->steps[i].pattern);
        pcre2_code_free(t->steps[i].re);
    }
    pcre2_code_free(t->re_digit);
    pcre2_code_free(t->re_digits);
    free(t->chat_template);
    pz_chat_format_free(t->chat_fmt);
    free(t);
}

int pz_tokenizer_vocab_size(const pz_tokenizer *t) { return t->n_vocab; }
int pz_tokenizer_bos(const pz_tokenizer *t) { return t->bos; }
int pz_tokenizer_eos(const pz_tokenizer *t) { return t->eos; }
int pz_tokenizer_add_bos(const pz_tokenizer *t) { return t->add_bos && t->bos >= 0; }
int pz_tokenizer_max_token_len(const pz_tokenizer *t) { return t->max_token_len; }
const char *pz_tokenizer_chat_template(const pz_tokenizer *t) { return t->chat_template; }

int pz_tokenizer_is_special(const pz_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->attr[id] == TOK_CONTROL;
}

int32_t pz_tokenizer_find(const pz_tokenizer *t, const char *piece) {
    return vocab_lookup(t, piece, strlen(piece));
}
