// tokenizer.h — byte-level BPE (GPT-2 family, as used by SmolLM2 and Llama 3)
// loaded from GGUF metadata or a Hugging Face tokenizer.json. Encoding splits
// out special tokens first, then applies the pre-tokenizer (optional
// individual-digit split, then the GPT-2 regex via PCRE2), maps bytes to the
// printable byte alphabet and merges by rank. Ids equal those of the Hugging
// Face `tokenizers` library (tests/test_tokenizer*.c). A tokenizer is
// immutable once loaded; every function here may be called from several
// threads at once.
//
// Supported: GGUF tokenizer.ggml.model "gpt2" with tokenizer.ggml.pre
// smollm, gpt2/default or llama-bpe; tokenizer.json BPE (no byte fallback)
// with pre-tokenizers Sequence/Digits/ByteLevel/Split(Isolated) and no
// normalizer. Anything else fails to load with a message naming it. Errors:
// err (PZ_ERRLEN bytes, may be NULL) gets one line.
#ifndef PZ_TOKENIZER_H
#define PZ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct pz_gguf;
typedef struct pz_tokenizer pz_tokenizer;

// Copies what it needs: g may be closed afterwards.
pz_tokenizer *pz_tokenizer_from_gguf(const struct pz_gguf *g, char *err);
// tokenizer.json; config_path (tokenizer_config.json) may be NULL. Reads
// bos/eos/pad/add_bos/chat template from the config when present (without
// it bos and eos are -1). Merges may be "a b" strings or ["a", "b"] pairs.
pz_tokenizer *pz_tokenizer_from_json(const char *tokenizer_json_path,
                                     const char *config_path, char *err);
// Loads from a model path: a GGUF file, a Hugging Face directory
// (tokenizer.json, tokenizer_config.json, chat_template.jinja if the config
// has no template) or a path ending in .json (config taken from beside it).
pz_tokenizer *pz_tokenizer_load(const char *model_path, char *err);
void pz_tokenizer_free(pz_tokenizer *t);

int pz_tokenizer_vocab_size(const pz_tokenizer *t);
int pz_tokenizer_bos(const pz_tokenizer *t);  // -1 if none
int pz_tokenizer_eos(const pz_tokenizer *t);  // -1 if none
// Whether the model expects BOS before a prompt (GGUF add_bos_token,
// tokenizer_config add_bos_token); encode never adds it by itself.
int pz_tokenizer_add_bos(const pz_tokenizer *t);
// Control tokens (GGUF type control, tokenizer.json added tokens with
// special=true): split out of text only with parse_special, dropped by
// skip_special.
int pz_tokenizer_is_special(const pz_tokenizer *t, int32_t id);
// Length in bytes of the longest token (81 for SmolLM2).
int pz_tokenizer_max_token_len(const pz_tokenizer *t);
// The Jinja chat template from the model (owned by t), or NULL.
const char *pz_tokenizer_chat_template(const pz_tokenizer *t);
int32_t pz_tokenizer_find(const pz_tokenizer *t, const char *piece); // -1 if absent

// Encodes len bytes of UTF-8 text. With parse_special, special-token strings
// in the text become their ids (longest match first); otherwise they are
// encoded as plain text. Non-special added tokens are always matched, as in
// HF. Bytes that are not valid UTF-8 match no regex class: each run of them
// becomes its own piece and is still encoded through the byte alphabet.
// A byte the vocabulary has no token for is dropped, as HF does (SmolLM2
// lacks 0x04 0x06 0x13 0x14 0x16 0x1D 0xC0 0xC1 0xF1 0xF2 0xF5-0xFF), or
// becomes the unk token when a tokenizer.json names one; otherwise
// decode(encode(x)) == x for any bytes. Never adds BOS. Returns the number of
// ids written to *ids (malloc'ed, non-NULL on success even for 0 ids; caller
// frees), or -1 with err filled. Thread-safe: t is only read.
int pz_tokenizer_encode(const pz_tokenizer *t, const char *text, size_t len,
                        int parse_special, int32_t **ids, char *err);

// The raw bytes that token id stands for (the byte alphabet undone); may be a
// partial UTF-8 character. Pointer owned by t. Returns NULL for a bad id.
const char *pz_tokenizer_token_bytes(const pz_tokenizer *t, int32_t id, size_t *len);
// The piece as stored in the vocabulary (e.g. "Ġthe").
const char *pz_tokenizer_piece(const pz_tokenizer *t, int32_t id);

// Decodes ids into a NUL-terminated malloc'ed string (caller frees; NULL when
// out of memory): the tokens' raw bytes concatenated, which need not be valid
// UTF-8 for arbitrary ids. With skip_special, control tokens are dropped; bad
// ids are skipped.
char *pz_tokenizer_decode(const pz_tokenizer *t, const int32_t *ids, size_t n, int skip_special);

// Streaming decode: feed one id at a time; emits only complete UTF-8
// characters, holding back (at most 3 bytes of) a partial one until its
// remaining bytes arrive. Ill-formed bytes are passed through, so the
// concatenated output plus a final flush equals pz_tokenizer_decode.
// Initialise with `pz_utf8_stream s = {0};`.
typedef struct { char pending[8]; int n_pending; } pz_utf8_stream;
// Writes the bytes for id (plus any held back before) into out; returns the
// number written. cap >= pz_tokenizer_max_token_len(t) + 3 always suffices
// (256 does for SmolLM2). If cap is too small nothing is written, the state
// is left unchanged and 0 is returned. Bad ids (and control tokens with
// skip_special) contribute no bytes.
size_t pz_tokenizer_stream(const pz_tokenizer *t, pz_utf8_stream *s, int32_t id,
                           int skip_special, char *out, size_t cap);
// At the end of a stream: writes the bytes still held back (at most 3, an
// incomplete character) and resets s. Returns the number written.
size_t pz_tokenizer_stream_flush(pz_utf8_stream *s, char *out, size_t cap);

// Chat prompts in the model's format (runtime/chat_template.h): the family
// of the model's Jinja template is recognized at load; a model without a
// template gets chatml; a template of no known family leaves no format
// (pz_tokenizer_chat_format is NULL) until one is named.
struct pz_chat_format;
// Names the family (chatml, llama3, ...; NULL: back to the model's own).
// Call before t is shared between threads. 0, or -1 with err (unknown name).
int pz_tokenizer_set_chat_format(pz_tokenizer *t, const char *name, char *err);
// The format in use (owned by t), or NULL.
const struct pz_chat_format *pz_tokenizer_chat_format(const pz_tokenizer *t);
// Renders messages (roles[i], contents[i]) as the chat prompt, ending with the
// assistant's opening when add_generation_prompt. The text holds the special
// tokens' strings (BOS included when the template writes it): encode it with
// pz_tokenizer_encode_prompt. Returns a malloc'ed string (caller frees), or
// NULL with err (no format, roles the template refuses, out of memory).
char *pz_tokenizer_chat_render(const pz_tokenizer *t, const char *const *roles, const char *const *contents,
                               int n, int add_generation_prompt, char *err);
// The tokens that end an assistant turn: EOS and the format's end-of-turn
// tokens that are in the vocabulary (<|im_end|>, <|eot_id|>, ...). Writes at
// most cap ids; returns the count.
int pz_tokenizer_chat_stop_ids(const pz_tokenizer *t, int32_t *ids, int cap);
// A text prompt's tokens as a model expects them: special-token strings
// parsed, then BOS prepended when pz_tokenizer_add_bos and the text does not
// already start with it (a rendered chat whose template writes bos_token), so
// never twice. (A prompt given as token ids is used verbatim instead.) Same
// contract as pz_tokenizer_encode.
int pz_tokenizer_encode_prompt(const pz_tokenizer *t, const char *text, size_t len, int32_t **ids, char *err);

// Writes tokenizer.json and tokenizer_config.json into dir (which must exist),
// for realized children and test models. The Hugging Face `tokenizers`
// library loads the result and gives the same ids. Returns 0, or -1 with err.
int pz_tokenizer_write_hf(const pz_tokenizer *t, const char *dir, char *err);

#endif
