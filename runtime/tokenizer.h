// tokenizer.h — byte-level BPE (GPT-2 family, as used by SmolLM2 and Llama 3)
// loaded from GGUF metadata or a Hugging Face tokenizer.json. Encoding splits
// out special tokens first, then applies the pre-tokenizer (optional
// individual-digit split, then the GPT-2 regex via PCRE2), maps bytes to the
// printable byte alphabet and merges by rank.
#ifndef PZ_TOKENIZER_H
#define PZ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

struct pz_gguf;
typedef struct pz_tokenizer pz_tokenizer;

pz_tokenizer *pz_tokenizer_from_gguf(const struct pz_gguf *g, char *err);
// tokenizer.json; config_path (tokenizer_config.json) may be NULL. Reads
// bos/eos/chat template from the config when present.
pz_tokenizer *pz_tokenizer_from_json(const char *tokenizer_json_path,
                                     const char *config_path, char *err);
// Loads from a model path: a GGUF file or a Hugging Face directory.
pz_tokenizer *pz_tokenizer_load(const char *model_path, char *err);
void pz_tokenizer_free(pz_tokenizer *t);

int pz_tokenizer_vocab_size(const pz_tokenizer *t);
int pz_tokenizer_bos(const pz_tokenizer *t);  // -1 if none
int pz_tokenizer_eos(const pz_tokenizer *t);  // -1 if none
int pz_tokenizer_is_special(const pz_tokenizer *t, int32_t id);
int32_t pz_tokenizer_find(const pz_tokenizer *t, const char *piece); // -1 if absent

// Encodes len bytes of UTF-8 text. With parse_special, special-token strings
// in the text become their ids; otherwise they are encoded as plain text.
// Returns the number of ids written to *ids (malloc'ed, caller frees), or -1
// with err filled.
int pz_tokenizer_encode(const pz_tokenizer *t, const char *text, size_t len,
                        int parse_special, int32_t **ids, char *err);

// The raw bytes that token id stands for (the byte alphabet undone); may be a
// partial UTF-8 character. Pointer owned by t. Returns NULL for a bad id.
const char *pz_tokenizer_token_bytes(const pz_tokenizer *t, int32_t id, size_t *len);
// The piece as stored in the vocabulary (e.g. "Ġthe").
const char *pz_tokenizer_piece(const pz_tokenizer *t, int32_t id);

// Decodes ids into a NUL-terminated malloc'ed string (caller frees). With
// skip_special, control tokens are dropped.
char *pz_tokenizer_decode(const pz_tokenizer *t, const int32_t *ids, size_t n, int skip_special);

// Streaming decode: feed one id at a time; emits only complete UTF-8
// characters, holding back a partial one until its remaining bytes arrive.
typedef struct { char pending[8]; int n_pending; } pz_utf8_stream;
// Writes the printable bytes for id into out (cap >= 64 recommended);
// returns the number of bytes written.
size_t pz_tokenizer_stream(const pz_tokenizer *t, pz_utf8_stream *s, int32_t id,
                           int skip_special, char *out, size_t cap);

// ChatML: renders messages (roles[i], contents[i]) as the model's chat
// prompt, with the assistant turn opened when add_generation_prompt. The
// SmolLM2 default system message is inserted when the first message is not
// a system message and the model's template does so. Caller frees.
char *pz_tokenizer_chat(const pz_tokenizer *t, const char *const *roles,
                        const char *const *contents, int n, int add_generation_prompt);

// Writes tokenizer.json and tokenizer_config.json into dir (for realized
// children and test models).
int pz_tokenizer_write_hf(const pz_tokenizer *t, const char *dir, char *err);

#endif
