// chat_template.h — chat prompts in the model's own format, without a Jinja
// interpreter. Hugging Face models carry a Jinja `chat_template`
// (tokenizer_config.json, chat_template.jinja; GGUF tokenizer.chat_template).
// As llama.cpp does (llm_chat_detect_template), the family of a template is
// recognized by distinctive substrings, and the family is rendered natively.
// Each family reproduces, byte for byte, the real templates named in
// tests/ref/chat_templates/SOURCES.md (tests/test_chat_template.c compares
// with Python jinja2 rendering them). A template that matches no family is
// refused (pz_chat_format_new fails) rather than guessed: the caller may
// name a family instead (`puzzle serve --chat-template NAME`).
//
// Families (NAME for pz_chat_format_new's name):
//   chatml   <|im_start|>ROLE\n...<|im_end|>\n (SmolLM2, Qwen, OpenHermes); a default
//            system turn when the template inserts one before a non-system first message
//   llama3   <|start_header_id|>ROLE<|end_header_id|>\n\n...<|eot_id|>, contents trimmed;
//            Llama 3.1-3.3: the system turn always, with "Cutting Knowledge Date" and
//            "Today Date" lines
//   llama2   Llama-2-chat: <s>[INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ANSWER </s>
//   mistral  Mistral-7B-Instruct v0.1/v0.2: <s>[INST] USER [/INST]ANSWER</s>
//   gemma    Gemma 1/2/3: <start_of_turn>user\n...<end_of_turn>\n, assistant as "model"
//   phi3     Phi-3/3.5: <|user|>\n...<|end|>\n
//   zephyr   Zephyr/TinyLlama: <|user|>\n...</s>\n
//   deepseek-r1  DeepSeek-R1-Distill (Llama, Qwen): <｜begin▁of▁sentence｜>SYSTEM<｜User｜>...
//            <｜Assistant｜>ANSWER<｜end▁of▁sentence｜>, the reasoning before </think> dropped
//            from earlier answers, the generation prompt opening <think>
// Where the real template refuses a conversation by raising an exception,
// the renderer fails with the template's message (roles not alternating
// user/assistant), except for a leading system message, which mistral and
// gemma 1/2 fold into the first user message's content ("SYSTEM\n\nUSER", as
// Gemma 3's template and llama.cpp do) instead of refusing.
//
// Errors: err (PZ_ERRLEN bytes, may be NULL) gets one line.
#ifndef PZ_CHAT_TEMPLATE_H
#define PZ_CHAT_TEMPLATE_H

typedef enum {
    PZ_CHAT_UNKNOWN = 0,
    PZ_CHAT_CHATML,
    PZ_CHAT_LLAMA3,
    PZ_CHAT_LLAMA2,
    PZ_CHAT_MISTRAL,
    PZ_CHAT_GEMMA,
    PZ_CHAT_PHI3,
    PZ_CHAT_ZEPHYR,
    PZ_CHAT_DEEPSEEK_R1,
} pz_chat_family;

// The family a Jinja template belongs to, PZ_CHAT_UNKNOWN when none fits.
pz_chat_family pz_chat_detect(const char *tmpl);
const char *pz_chat_family_name(pz_chat_family f);   // "chatml", ...; "unknown"
// 0 and *f set for a known NAME, -1 otherwise.
int pz_chat_family_parse(const char *name, pz_chat_family *f);
// "chatml, llama3, ..." (static).
const char *pz_chat_family_list(void);

typedef struct {
    const char *role;     // "system", "user", "assistant", ...
    const char *content;  // UTF-8
} pz_chat_msg;

typedef struct pz_chat_format pz_chat_format;

// A renderer for tmpl (the model's template; NULL when it has none) or, when
// name is given, for that family (with tmpl's details — default system turn,
// date line — when tmpl is of the same family). bos and eos are the texts of
// the model's BOS and EOS tokens as templates write them (NULL: ""). Without
// name: a NULL tmpl gives chatml (the default llama.cpp and Hugging Face's
// older releases use); a template of no known family fails, naming the
// families and --chat-template. A family named without its own template is
// its plain form (chatml without a default system turn; llama3 in the 3.1+
// layout dated 26 Jul 2024; gemma with BOS). All strings are copied. Free
// with pz_chat_format_free.
pz_chat_format *pz_chat_format_new(const char *tmpl, const char *name, const char *bos, const char *eos,
                                   char *err);
void pz_chat_format_free(pz_chat_format *f);
pz_chat_family pz_chat_format_family(const pz_chat_format *f);
// Llama 3.2/3.3 templates write today's date ("%d %b %Y", UTC); this fixes
// it instead (tests). date is copied; NULL goes back to today.
int pz_chat_format_set_date(pz_chat_format *f, const char *date);

// Renders n messages; with add_generation_prompt, the opening of the
// assistant's turn follows (for families whose template has one). Returns a
// malloc'ed string (caller frees), or NULL with err (roles that the template
// refuses, out of memory).
char *pz_chat_render(const pz_chat_format *f, const pz_chat_msg *msgs, int n, int add_generation_prompt,
                     char *err);

// The texts of the tokens that end an assistant turn in this format, in
// addition to EOS (e.g. "<|im_end|>", "<|eot_id|>"), NULL-terminated, owned
// by f. Generation from a rendered chat stops at any of them.
const char *const *pz_chat_end_pieces(const pz_chat_format *f);

#endif
