// openai.h — the OpenAI HTTP API's wire format, apart from any socket or
// engine: a completion request body parsed and checked into a plain struct,
// the error object, and the JSON of responses and stream chunks. Follows the
// OpenAI API reference for /v1/chat/completions and /v1/completions (the
// subset listed in docs/SERVE.md); anything else in a body is ignored, and
// a supported field with a wrong type or value is a 400 naming the field.
#ifndef PZ_SERVE_OPENAI_H
#define PZ_SERVE_OPENAI_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "tokenizer.h"

#define PZ_OAI_MAX_STOP 4          // stop strings per request (as OpenAI)
#define PZ_OAI_MAX_STOP_LEN 256    // bytes per stop string
#define PZ_OAI_MAX_N 8             // choices per request
#define PZ_OAI_MAX_TOP_LOGPROBS 20 // chat top_logprobs (completions' logprobs: at most 5)

typedef struct {
    int status;         // HTTP status
    char type[40];      // "invalid_request_error", "authentication_error", ...
    char param[48];     // the offending field, or "" (null in JSON)
    char code[40];      // machine-readable code, or "" (null in JSON)
    char message[320];
} pz_oai_error;

// Fills e and returns -1 (for `return pz_oai_fail(...)`).
int pz_oai_fail(pz_oai_error *e, int status, const char *type, const char *param, const char *code,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));
// {"error":{"message","type","param","code"}}: malloc'ed (caller frees), NULL when out of memory.
char *pz_oai_error_json(const pz_oai_error *e);

typedef struct {
    int chat;                 // 1: /v1/chat/completions, 0: /v1/completions
    char *text;               // prompt text (chat: the rendered template); NULL when ids given
    int32_t *ids;             // completions' token-id prompt (malloc'ed), else NULL
    int n_ids;
    long max_tokens;          // -1: absent (up to the context)
    float temperature;        // default 1 (OpenAI)
    float top_p;              // default 1
    int has_seed;
    uint64_t seed;
    char *stop[PZ_OAI_MAX_STOP];
    int n_stop;
    int n;                    // choices, 1..PZ_OAI_MAX_N
    int logprobs;             // report the sampled token's log-probability
    int top_logprobs;         // and this many alternatives
    int stream, include_usage;
} pz_oai_request;

// Parses and checks a request body (len bytes, need not be NUL-terminated).
// tok renders chat messages (pz_tokenizer_chat_render: a conversation its
// format refuses is a 400 on messages) and bounds token ids.
// Returns 0, or -1 with e filled (status 400). r is zeroed first and owns
// its strings; free with pz_oai_request_free (also after a failure).
int pz_oai_parse(const char *body, size_t len, int chat, const pz_tokenizer *tok, pz_oai_request *r,
                 pz_oai_error *e);
void pz_oai_request_free(pz_oai_request *r);

// One sampled token's log-probability and its strongest alternatives.
typedef struct {
    int32_t id;
    float logprob;
} pz_oai_top;
typedef struct {
    int32_t id;
    float logprob;
    int n_top;
    pz_oai_top top[PZ_OAI_MAX_TOP_LOGPROBS];
} pz_oai_logprob;

// Fills lp from raw logits (log-softmax): the token id and the n_top most
// likely tokens (ties: lower id first).
void pz_oai_logprob_fill(pz_oai_logprob *lp, const float *logits, int vocab, int32_t id, int n_top);

// Appends len bytes to a JSON-safe copy: ill-formed UTF-8 becomes U+FFFD and
// NUL bytes are dropped. Returns a malloc'ed NUL-terminated string (NULL when
// out of memory).
char *pz_oai_utf8(const char *s, size_t len);

// Response JSON. envelope: {"id","object","created","model","choices":[]}
// with object chat.completion / chat.completion.chunk / text_completion.
cJSON *pz_oai_envelope(int chat, int chunk, const char *id, long long created, const char *model);
// Appends a choice to env's "choices". text: the (delta) text, NULL for none;
// role: chat delta carries "role":"assistant"; finish: NULL (null) or
// "stop"/"length"; logprobs: taken over (NULL: null). In a chunk, chat puts
// text under "delta", otherwise under "message"; completions under "text".
void pz_oai_add_choice(cJSON *env, int chat, int chunk, int index, const char *text, int role,
                       const char *finish, cJSON *logprobs);
// The logprobs object of n tokens: chat {"content":[{token,logprob,bytes,
// top_logprobs}]}, completions {tokens, token_logprobs, top_logprobs,
// text_offset} (text offsets start at offset0).
cJSON *pz_oai_logprobs_json(const pz_tokenizer *tok, int chat, const pz_oai_logprob *lp, int n,
                            long offset0);
cJSON *pz_oai_usage(long prompt_tokens, long completion_tokens);

#endif
