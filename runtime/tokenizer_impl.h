// tokenizer_impl.h — private to tokenizer*.c (and the read-only accessors at
// the end, for writers elsewhere in runtime/): the tokenizer's layout and the
// builder that both loaders (GGUF metadata in tokenizer.c, tokenizer.json in
// tokenizer_json.c) fill in the same order:
//   tok_new(n_vocab) -> tok_set_token() for every id -> tok_index_vocab()
//   -> tok_reserve_merges() + tok_add_merge() in rank order
//   -> tok_add_pre_step() ... -> tok_finish().
#ifndef PZ_TOKENIZER_IMPL_H
#define PZ_TOKENIZER_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdint.h>
#include <string.h>

#include "tokenizer.h"

// Token attributes (one per id).
enum {
    TOK_NORMAL = 0,   // an ordinary vocabulary entry, stored in the byte alphabet
    TOK_CONTROL = 1,  // special added token (GGUF type 3/2, tokenizer.json special=true)
    TOK_USER = 2,     // non-special added token (GGUF type 4): always matched as a whole
    TOK_HOLE = 3,     // an id that no entry defines
};

// Pre-tokenizer steps, applied in order; each splits its input into pieces
// (both matches and the gaps between them are kept) and hands every piece to
// the next step; the last step's pieces go to BPE.
typedef enum {
    PRE_DIGITS,      // HF Digits: \p{N} runs, or single \p{N} when individual
    PRE_BYTELEVEL,   // HF ByteLevel: GPT-2 regex when use_regex, optional prefix space
    PRE_SPLIT,       // HF Split(Regex, Isolated): any pattern
} tok_pre_kind;

#define TOK_MAX_STEPS 8
#define TOK_MAX_PIECE_BYTES 4096   // longest token string accepted from a file

typedef struct {
    tok_pre_kind kind;
    int individual;      // PRE_DIGITS
    int use_regex;       // PRE_BYTELEVEL
    int prefix_space;    // PRE_BYTELEVEL add_prefix_space
    char *pattern;       // PRE_SPLIT: the pattern as written (HF/Oniguruma syntax)
    pcre2_code *re;      // compiled by tok_finish (NULL for ByteLevel without regex)
} tok_pre_step;

struct pz_tokenizer {
    int32_t n_vocab;
    // Token strings: piece = as stored in the vocabulary, bytes = the raw bytes
    // it stands for. Both live in one arena each, NUL-terminated.
    char *piece_arena, *bytes_arena;
    size_t piece_used, piece_cap, bytes_used, bytes_cap;
    uint32_t *piece_off, *piece_len, *bytes_off, *bytes_len;
    uint8_t *attr;
    int max_token_len;                 // longest bytes_len

    // piece -> id: open addressing, slots hold id+1 (0 = empty).
    uint32_t *vocab_tab;
    size_t vocab_mask;

    // (left id, right id) -> (rank, merged id): open addressing on the packed key.
    uint64_t *merge_key;               // UINT64_MAX = empty
    int32_t *merge_rank, *merge_res;
    size_t merge_mask;
    int32_t (*merges)[2];              // in rank order (for writing back)
    int32_t n_merges, merges_cap;

    int32_t byte_id[256];              // id of each single-byte symbol, -1 if absent
    // What a byte without a token becomes (HF BPE): the model's unk token
    // when tokenizer.json names one (consecutive ones fused with fuse_unk),
    // otherwise nothing: the byte is dropped. SmolLM2 lacks 21 bytes
    // (0x04 0x06 0x13 0x14 0x16 0x1D 0xC0 0xC1 0xF1 0xF2 0xF5-0xFF).
    int32_t bpe_unk;
    int fuse_unk;

    // Added tokens (TOK_CONTROL / TOK_USER), grouped by first byte, longest
    // first within a group: added[added_start[b] .. added_start[b+1]).
    int32_t *added;
    int32_t n_added;
    int32_t added_start[257];
    int has_user_added;                // some TOK_USER: scan even without parse_special

    tok_pre_step steps[TOK_MAX_STEPS];
    int n_steps;
    pcre2_code *re_digit, *re_digits;  // \p{N} and \p{N}+ for PRE_DIGITS
    char pre_name[32];                 // tokenizer.ggml.pre value ("" if unknown)
    int ignore_merges;                 // Llama 3: a piece found whole in the vocab is one token

    int32_t bos, eos, unk, pad;
    int add_bos, add_eos;
    char *chat_template;               // NULL if none
    struct pz_chat_format *chat_fmt;   // the template's family renderer; NULL when unrecognized
};

pz_tokenizer *tok_new(int32_t n_vocab, char *err);
// Defines id (its piece as stored, attr TOK_*). Added tokens' bytes are the
// piece itself; normal tokens' bytes undo the byte alphabet.
int tok_set_token(pz_tokenizer *t, int32_t id, const char *piece, size_t len, int attr, char *err);
// After every token is set: builds the piece index, the byte map and the
// added-token table. Fails on duplicate pieces.
int tok_index_vocab(pz_tokenizer *t, char *err);
int tok_reserve_merges(pz_tokenizer *t, size_t n, char *err);
// Appends the next merge (rank = number added so far). Fails (with the rank
// in the message) when a side or the merged piece is not in the vocabulary.
int tok_add_merge(pz_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen, char *err);
int tok_add_pre_step(pz_tokenizer *t, tok_pre_step step, char *err);
// Sets steps from a tokenizer.ggml.pre name (smollm, gpt2/default, llama-bpe).
int tok_set_pre_name(pz_tokenizer *t, const char *name, char *err);
// Takes a copy of the chat template.
int tok_set_chat_template(pz_tokenizer *t, const char *tmpl, size_t len, char *err);
// Compiles the regexes and derives the default system message.
int tok_finish(pz_tokenizer *t, char *err);

// The GPT-2 and Llama 3 pre-tokenizer regexes, as written in tokenizer.json.
extern const char *const tok_gpt2_pattern;
extern const char *const tok_llama3_pattern;

// ---- helpers shared by tokenizer*.c --------------------------------------------

// The byte alphabet: bytes 0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF stand for
// themselves; the other 68, in increasing order, become U+0100 + n
// (space -> U+0120, newline -> U+010A).
static inline uint32_t byte_to_cp(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    if (b <= 0x20) return 0x100u + b;
    if (b <= 0xA0) return 0x100u + 33 + (b - 0x7Fu);
    return 0x100u + 67;  // 0xAD
}

static inline int cp_to_byte(uint32_t cp) {
    if (cp < 0x100) {
        if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || cp >= 0xAE) return (int)cp;
        return -1;
    }
    if (cp >= 0x144) return -1;
    uint32_t n = cp - 0x100;
    if (n < 33) return (int)n;
    if (n < 67) return (int)(0x7F + n - 33);
    return 0xAD;
}

static inline size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Decodes one well-formed code point at s (n bytes left); returns its length,
// or 0 for an ill-formed or truncated sequence.
static inline size_t utf8_get(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    size_t k;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) { k = 2; v = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { k = 3; v = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { k = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return k;
}

static inline uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static inline uint64_t hash_pair(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return key ^ (key >> 31);
}

static inline int32_t vocab_lookup(const pz_tokenizer *t, const char *s, size_t n) {
    if (!t->vocab_tab) return -1;
    size_t i = hash_bytes(s, n) & t->vocab_mask;
    for (;;) {
        uint32_t v = t->vocab_tab[i];
        if (!v) return -1;
        int32_t id = (int32_t)(v - 1);
        if (t->piece_len[id] == n && memcmp(t->piece_arena + t->piece_off[id], s, n) == 0) return id;
        i = (i + 1) & t->vocab_mask;
    }
}

// Slot of the pair (a, b): either the entry or the empty slot where it goes.
static inline size_t merge_slot(const pz_tokenizer *t, uint64_t key) {
    size_t i = hash_pair(key) & t->merge_mask;
    while (t->merge_key[i] != UINT64_MAX && t->merge_key[i] != key) i = (i + 1) & t->merge_mask;
    return i;
}

static inline int merge_find(const pz_tokenizer *t, int32_t a, int32_t b, int32_t *rank, int32_t *res) {
    if (!t->merge_key) return 0;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = merge_slot(t, key);
    if (t->merge_key[i] == UINT64_MAX) return 0;
    *rank = t->merge_rank[i];
    *res = t->merge_res[i];
    return 1;
}

// (Re)makes t->chat_fmt from t->chat_template (chatml when there is none;
// NULL when the template is of no known family). 0, or -1 when out of memory.
int tok_chat_init(pz_tokenizer *t);

// ---- read access for writers outside tokenizer*.c (runtime/gguf_write.c) -------

// The piece of id as stored (len bytes, NUL-terminated), or NULL for a hole.
static inline const char *tok_piece_n(const pz_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab || t->attr[id] == TOK_HOLE) return NULL;
    *len = t->piece_len[id];
    return t->piece_arena + t->piece_off[id];
}

// GGUF token type of id (llama.cpp llama_token_type): 1 normal, 3 control,
// 4 user-defined, 5 unused (a hole).
static inline int tok_gguf_token_type(const pz_tokenizer *t, int32_t id) {
    switch (t->attr[id]) {
    case TOK_CONTROL: return 3;
    case TOK_USER: return 4;
    case TOK_HOLE: return 5;
    default: return 1;
    }
}

static inline int32_t tok_n_merges(const pz_tokenizer *t) { return t->n_merges; }
// The merge of the given rank as (left id, right id); -1 when out of range.
static inline int tok_merge_at(const pz_tokenizer *t, int32_t rank, int32_t *left, int32_t *right) {
    if (rank < 0 || rank >= t->n_merges) return -1;
    *left = t->merges[rank][0];
    *right = t->merges[rank][1];
    return 0;
}

// The tokenizer.ggml.pre name that makes tok_set_pre_name rebuild exactly
// this pre-tokenizer: the name it was loaded with, or (tokenizer.json) the
// name whose steps equal these; NULL when no supported name does.
static inline const char *tok_gguf_pre_name(const pz_tokenizer *t) {
    if (t->pre_name[0]) return t->pre_name;
    const tok_pre_step *s = t->steps;
    int bl_last = t->n_steps > 0 && s[t->n_steps - 1].kind == PRE_BYTELEVEL && !s[t->n_steps - 1].prefix_space;
    if (!bl_last) return NULL;
    int rx = s[t->n_steps - 1].use_regex;
    if (t->n_steps == 1 && rx && !t->ignore_merges) return "gpt2";
    if (t->n_steps == 2 && rx && !t->ignore_merges && s[0].kind == PRE_DIGITS && s[0].individual)
        return "smollm";
    if (t->n_steps == 2 && !rx && t->ignore_merges && s[0].kind == PRE_SPLIT && s[0].pattern &&
        strcmp(s[0].pattern, tok_llama3_pattern) == 0)
        return "llama-bpe";
    return NULL;
}

static inline int32_t tok_unk_id(const pz_tokenizer *t) { return t->unk; }
static inline int32_t tok_pad_id(const pz_tokenizer *t) { return t->pad; }
static inline int tok_add_eos(const pz_tokenizer *t) { return t->add_eos; }

#endif
