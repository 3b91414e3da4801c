// chat_template.c — recognizes a Jinja chat template's family by substrings
// and renders conversations in it natively (see chat_template.h). Each
// renderer below follows one real template statement by statement; the
// comment above it quotes what it mirrors. Python's str.strip() (Jinja's
// `trim`, `.strip()`) is reproduced with Python's whitespace set.
#include "chat_template.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

struct pz_chat_format {
    pz_chat_family family;
    char *bos, *eos;
    char *default_system;  // chatml: the system turn inserted before a non-system first message
    int chatml_bos;        // chatml: the template starts with bos_token
    int l3_dated;          // llama3: 3.1-style system turn with the knowledge and today's dates
    int l3_today;          // llama3: the template takes today's date (strftime_now)
    char *date;            // llama3: the date written ("26 Jul 2024" in 3.1), or NULL for today
    int gemma_bos;         // gemma: the template starts with bos_token
    int gemma3;            // gemma: Gemma 3's system prefix on the first turn
    const char *end[3];
};

static const char *family_names[] = {"unknown", "chatml", "llama3", "llama2",     "mistral",
                                     "gemma",   "phi3",   "zephyr", "deepseek-r1"};

const char *pz_chat_family_name(pz_chat_family f) {
    return (unsigned)f < sizeof family_names / sizeof family_names[0] ? family_names[f] : "unknown";
}

int pz_chat_family_parse(const char *name, pz_chat_family *f) {
    for (int i = 1; i < (int)(sizeof family_names / sizeof family_names[0]); i++)
        if (name && !strcmp(name, family_names[i])) {
            *f = (pz_chat_family)i;
            return 0;
        }
    return -1;
}

const char *pz_chat_family_list(void) { return "chatml, llama3, llama2, mistral, gemma, phi3, zephyr, deepseek-r1"; }

static int has(const char *t, const char *s) { return strstr(t, s) != NULL; }

pz_chat_family pz_chat_detect(const char *t) {
    if (!t) return PZ_CHAT_UNKNOWN;
    if (has(t, "<|im_start|>")) {
        // not ChatML's relatives that share <|im_start|> with another layout (Phi-4, SmolVLM), nor
        // reasoning templates, which rewrite earlier assistant turns and the generation prompt
        // around <think> (Qwen3, QwQ, SmolLM3, Nemotron 3)
        if (has(t, "<|im_sep|>") || has(t, "<end_of_utterance>") || has(t, "<think>")) return PZ_CHAT_UNKNOWN;
        return PZ_CHAT_CHATML;
    }
    if (has(t, "<|start_header_id|>") && has(t, "<|end_header_id|>")) {
        // Meta's own turn expression (not Functionary's or FireFunction's layouts)
        return has(t, "message['content'] | trim + '<|eot_id|>'") ? PZ_CHAT_LLAMA3 : PZ_CHAT_UNKNOWN;
    }
    if (has(t, "[INST]")) {
        // Llama-2-chat folds the system turn into <<SYS>>; Mistral's later templates
        // ([AVAILABLE_TOOLS], [SYSTEM_PROMPT], the system message before the last user
        // turn) are other layouts
        if (has(t, "[AVAILABLE_TOOLS]") || has(t, "[SYSTEM_PROMPT]")) return PZ_CHAT_UNKNOWN;
        if (has(t, "<<SYS>>"))
            return has(t, "bos_token + '[INST] ' + content.strip()") ? PZ_CHAT_LLAMA2 : PZ_CHAT_UNKNOWN;
        return has(t, "'[INST] ' + message['content'] + ' [/INST]'") ? PZ_CHAT_MISTRAL : PZ_CHAT_UNKNOWN;
    }
    if (has(t, "<start_of_turn>")) return PZ_CHAT_GEMMA;
    if (has(t, "<｜User｜>") && has(t, "<｜Assistant｜>")) {
        // R1-Distill's own template, not DeepSeek V3.x/V4 (thinking modes) or edited copies
        return has(t, "{{bos_token}}{{ns.system_prompt}}") && has(t, "content.split('</think>')[-1]") &&
                       has(t, "'<｜Assistant｜><think>\\n'") && !has(t, "enable_thinking")
                   ? PZ_CHAT_DEEPSEEK_R1
                   : PZ_CHAT_UNKNOWN;
    }
    if (has(t, "<|user|>") && has(t, "<|assistant|>")) {
        if (has(t, "<|end|>"))  // Phi-3.5's layout, not Phi-3-small's or Apriel's (bos_token, own system)
            return has(t, "<|system|>") && has(t, "message['content'] + '<|end|>") && !has(t, "bos_token")
                       ? PZ_CHAT_PHI3
                       : PZ_CHAT_UNKNOWN;
        return has(t, "eos_token") ? PZ_CHAT_ZEPHYR : PZ_CHAT_UNKNOWN;
    }
    return PZ_CHAT_UNKNOWN;
}

// The text of the system turn a ChatML template inserts when the first message
// is not a system one (SmolLM2: "You are a helpful AI assistant named SmolLM,
// trained by Hugging Face"; Qwen2.5: "You are Qwen, created by Alibaba Cloud.
// ..."), or NULL: the first `<|im_start|>system\n` followed by plain text up to
// `<|im_end|>`, in a template that tests for the system role.
static char *chatml_default_system(const char *tmpl) {
    if (!strstr(tmpl, "'system'") && !strstr(tmpl, "\"system\"")) return NULL;
    for (const char *p = tmpl; (p = strstr(p, "<|im_start|>system")) != NULL;) {
        p += strlen("<|im_start|>system");
        if (*p == '\n') p++;
        else if (p[0] == '\\' && p[1] == 'n') p += 2;
        else continue;
        const char *e = strstr(p, "<|im_end|>");
        if (!e) return NULL;
        size_t n = (size_t)(e - p);
        if (n > 0 && !memchr(p, '\'', n) && !memchr(p, '"', n) && !memchr(p, '{', n) && !memchr(p, '\\', n))
            return strndup(p, n);
    }
    return NULL;
}

// `set date_string = "26 Jul 2024"` in a Llama 3.1 template: the literal, or NULL.
static char *llama3_fixed_date(const char *tmpl) {
    const char *p = strstr(tmpl, "date_string = \"");
    if (!p) return NULL;
    p += strlen("date_string = \"");
    const char *e = strchr(p, '"');
    return e && e - p < 40 ? strndup(p, (size_t)(e - p)) : NULL;
}

pz_chat_format *pz_chat_format_new(const char *tmpl, const char *name, const char *bos, const char *eos,
                                   char *err) {
    pz_chat_family fam = tmpl ? pz_chat_detect(tmpl) : PZ_CHAT_CHATML;
    if (name) {
        pz_chat_family want;
        if (pz_chat_family_parse(name, &want)) {
            pz_err(err, "chat template '%s' is not one of: %s", name, pz_chat_family_list());
            return NULL;
        }
        if (want != fam) tmpl = NULL;  // the template's details belong to another family
        fam = want;
    } else if (fam == PZ_CHAT_UNKNOWN) {
        pz_err(err, "the model's chat template is of no family puzzle renders (%s); "
               "name one with --chat-template", pz_chat_family_list());
        return NULL;
    }
    pz_chat_format *f = calloc(1, sizeof *f);
    if (!f || !(f->bos = strdup(bos ? bos : "")) || !(f->eos = strdup(eos ? eos : ""))) goto oom;
    f->family = fam;
    switch (fam) {
    case PZ_CHAT_CHATML:
        f->end[0] = "<|im_end|>";
        if (tmpl) f->default_system = chatml_default_system(tmpl);
        f->chatml_bos = tmpl && has(tmpl, "bos_token");
        break;
    case PZ_CHAT_LLAMA3:
        f->end[0] = "<|eot_id|>";
        f->end[1] = "<|eom_id|>";
        f->l3_dated = !tmpl || has(tmpl, "Cutting Knowledge Date");  // named: the current (3.1+) layout
        f->l3_today = tmpl && has(tmpl, "strftime_now");
        if (f->l3_dated && !f->l3_today && !(f->date = tmpl ? llama3_fixed_date(tmpl) : NULL) &&
            !(f->date = strdup("26 Jul 2024")))
            goto oom;
        break;
    case PZ_CHAT_GEMMA:
        f->end[0] = "<end_of_turn>";
        f->gemma_bos = !tmpl || has(tmpl, "bos_token");
        f->gemma3 = tmpl && has(tmpl, "first_user_prefix");
        break;
    case PZ_CHAT_PHI3:
        f->end[0] = "<|end|>";
        break;
    case PZ_CHAT_DEEPSEEK_R1:
        f->end[0] = "<｜end▁of▁sentence｜>";  // the template writes it, not eos_token
        break;
    default:  // llama2, mistral, zephyr end their turns with EOS
        break;
    }
    return f;
oom:
    pz_chat_format_free(f);
    pz_err(err, "chat template: out of memory");
    return NULL;
}

void pz_chat_format_free(pz_chat_format *f) {
    if (!f) return;
    free(f->bos);
    free(f->eos);
    free(f->default_system);
    free(f->date);
    free(f);
}

pz_chat_family pz_chat_format_family(const pz_chat_format *f) { return f->family; }

int pz_chat_format_set_date(pz_chat_format *f, const char *date) {
    char *d = date ? strdup(date) : NULL;
    if (date && !d) return -1;
    free(f->date);
    f->date = d;
    return 0;
}

const char *const *pz_chat_end_pieces(const pz_chat_format *f) { return f->end; }

// ---- output buffer -----------------------------------------------------------

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} obuf;

static void put_n(obuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void put(obuf *b, const char *s) { put_n(b, s, strlen(s)); }

// Python's str.isspace for the code point starting at s (len bytes left);
// returns its length in bytes, 0 when it is not whitespace.
static size_t space_at(const unsigned char *s, size_t len) {
    if (len == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return ((c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20)) ? 1 : 0;
    if (c == 0xC2 && len >= 2) return (s[1] == 0x85 || s[1] == 0xA0) ? 2 : 0;
    if (len < 3) return 0;
    unsigned cp = ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    if ((c & 0xF0) != 0xE0 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
    return (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
            cp == 0x205F || cp == 0x3000)
               ? 3
               : 0;
}

// The length of the whitespace code point ending at s + len, 0 when none.
static size_t space_before(const unsigned char *s, size_t len) {
    for (size_t k = 1; k <= 3 && k <= len; k++) {
        size_t m = space_at(s + len - k, k);
        if (m == k) return k;
    }
    return 0;
}

// Appends s with leading and trailing whitespace removed (Python's strip()).
static void put_strip(obuf *b, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s), k;
    while ((k = space_at(p, len)) > 0) p += k, len -= k;
    while ((k = space_before(p, len)) > 0) len -= k;
    put_n(b, (const char *)p, len);
}

static int is_role(const pz_chat_msg *m, const char *r) { return m->role && !strcmp(m->role, r); }
static const char *content(const pz_chat_msg *m) { return m->content ? m->content : ""; }

// The alternation check of Llama-2, Mistral and Gemma templates:
// (role == 'user') != (index % 2 == 0) raises.
static int alternates(const pz_chat_msg *m, int n, char *err) {
    for (int i = 0; i < n; i++)
        if (is_role(&m[i], "user") != (i % 2 == 0))
            return pz_err(err, "Conversation roles must alternate user/assistant/user/assistant/...");
    return 0;
}

// ---- families ----------------------------------------------------------------

// SmolLM2: {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}
// {{ '<|im_start|>system\nDEFAULT<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n'
// + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}
// {{ '<|im_start|>assistant\n' }}{% endif %}   (OpenHermes: the same without the default)
static void chatml(const pz_chat_format *f, obuf *b, const pz_chat_msg *m, int n, int gen) {
    if (f->chatml_bos) put(b, f->bos);  // Bielik, LFM2, MiniCPM: {{ bos_token }} first
    for (int i = 0; i < n; i++) {
        if (i == 0 && f->default_system && !is_role(&m[0], "system")) {
            put(b, "<|im_start|>system\n");
            put(b, f->default_system);
            put(b, "<|im_end|>\n");
        }
        put(b, "<|im_start|>");
        put(b, m[i].role ? m[i].role : "");
        put(b, "\n");
        put(b, content(&m[i]));
        put(b, "<|im_end|>\n");
    }
    if (gen) put(b, "<|im_start|>assistant\n");
}

static void llama3_turn(obuf *b, const char *role, const char *text) {
    put(b, "<|start_header_id|>");
    put(b, role);
    put(b, "<|end_header_id|>\n\n");
    put_strip(b, text);
    put(b, "<|eot_id|>");
}

// Meta-Llama-3-8B-Instruct: per message '<|start_header_id|>' + role + '<|end_header_id|>\n\n' +
// content | trim + '<|eot_id|>', bos_token before the first; then the assistant header.
// Llama 3.1-3.3 (without tools): bos_token; the system turn always: "Cutting Knowledge Date:
// December 2023\nToday Date: " + date_string + "\n\n" + (messages[0].content | trim when it is
// the system message, else ""); then the other messages as in 3.0.
static void llama3(const pz_chat_format *f, obuf *b, const pz_chat_msg *m, int n, int gen) {
    if (f->l3_dated) {
        char today[32];
        const char *date = f->date;
        if (!date) {
            time_t now = time(NULL);
            struct tm tm;
            gmtime_r(&now, &tm);
            strftime(today, sizeof today, "%d %b %Y", &tm);
            date = today;
        }
        put(b, f->bos);
        put(b, "<|start_header_id|>system<|end_header_id|>\n\n");
        put(b, "Cutting Knowledge Date: December 2023\nToday Date: ");
        put(b, date);
        put(b, "\n\n");
        if (n > 0 && is_role(&m[0], "system")) {
            put_strip(b, content(&m[0]));
            m++, n--;
        }
        put(b, "<|eot_id|>");
    }
    for (int i = 0; i < n; i++) {
        if (i == 0 && !f->l3_dated) put(b, f->bos);
        llama3_turn(b, m[i].role ? m[i].role : "", content(&m[i]));
    }
    if (gen) put(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// Llama-2-chat: the first message, when a system one, becomes '<<SYS>>\n' + system + '\n<</SYS>>\n\n'
// before the first remaining message; roles must alternate; user: bos_token + '[INST] ' +
// content.strip() + ' [/INST]'; assistant: ' ' + content.strip() + ' ' + eos_token.
// add_generation_prompt is not used.
static int llama2(const pz_chat_format *f, obuf *b, const pz_chat_msg *m, int n, char *err) {
    const char *sys = NULL;
    if (n > 0 && is_role(&m[0], "system")) sys = content(&m[0]), m++, n--;
    if (alternates(m, n, err)) return -1;
    for (int i = 0; i < n; i++) {
        obuf c = {0};
        if (i == 0 && sys) {
            put(&c, "<<SYS>>\n");
            put(&c, sys);
            put(&c, "\n<</SYS>>\n\n");
        }
        put(&c, content(&m[i]));
        if (c.oom) b->oom = 1;
        if (is_role(&m[i], "user")) {
            put(b, f->bos);
            put(b, "[INST] ");
            put_strip(b, c.p ? c.p : "");
            put(b, " [/INST]");
        } else if (is_role(&m[i], "assistant")) {
            put(b, " ");
            put_strip(b, c.p ? c.p : "");
            put(b, " ");
            put(b, f->eos);
        }
        free(c.p);
    }
    return 0;
}

// Messages with a leading system message folded into the first user message's
// content as "SYSTEM\n\nUSER" (as Gemma 3's template and llama.cpp do for
// templates without a system role), which is then rendered as the template
// renders a user message; without a user message next, the system text alone
// becomes the user message. *owned is the folded content to free.
static const pz_chat_msg *fold_system(const pz_chat_msg *m, int *n, pz_chat_msg *first, char **owned) {
    *owned = NULL;
    if (*n == 0 || !is_role(&m[0], "system")) return m;
    obuf c = {0};
    put(&c, content(&m[0]));
    put(&c, "\n\n");
    if (*n > 1 && is_role(&m[1], "user")) {
        put(&c, content(&m[1]));
        m++, (*n)--;
    } else {  // no user turn to join: the system text stands as one
        c.n -= 2;
        if (c.p) c.p[c.n] = 0;
    }
    if (c.oom) {
        free(c.p);
        return NULL;
    }
    *owned = c.p;
    first->role = "user";
    first->content = c.p;
    return m;
}

// Mistral-7B-Instruct v0.1/v0.2: {{ bos_token }}; roles must alternate; user: '[INST] ' +
// content + ' [/INST]'; assistant: content + eos_token; a system message raises (folded here).
static int mistral(const pz_chat_format *f, obuf *b, const pz_chat_msg *m, int n, char *err) {
    pz_chat_msg first;
    char *owned;
    const pz_chat_msg *rest = fold_system(m, &n, &first, &owned);
    if (!rest) return pz_err(err, "chat template: out of memory");
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const pz_chat_msg *x = (i == 0 && owned) ? &first : &rest[i];
        if (is_role(x, "user") != (i % 2 == 0))
            rc = pz_err(err, "Conversation roles must alternate user/assistant/user/assistant/...");
        else if (!is_role(x, "user") && !is_role(x, "assistant"))
            rc = pz_err(err, "Only user and assistant roles are supported!");
    }
    if (!rc) {
        put(b, f->bos);
        for (int i = 0; i < n; i++) {
            const pz_chat_msg *x = (i == 0 && owned) ? &first : &rest[i];
            if (is_role(x, "user")) {
                put(b, "[INST] ");
                put(b, content(x));
                put(b, " [/INST]");
            } else {
                put(b, content(x));
                put(b, f->eos);
            }
        }
    }
    free(owned);
    return rc;
}

// gemma-7b-it / gemma-2-*-it: [bos_token]; a system message raises (folded here); roles
// must alternate; '<start_of_turn>' + ('model' for assistant, else the role) +
// '\n' + content | trim + '<end_of_turn>\n'; then '<start_of_turn>model\n'.
// gemma-3-*-it: the same, but a leading system message becomes first_user_prefix
// (its content + '\n\n', untrimmed) written before the first remaining turn's content.
static int gemma(const pz_chat_format *f, obuf *b, const pz_chat_msg *m, int n, int gen, char *err) {
    pz_chat_msg first;
    char *owned = NULL;
    const char *prefix = NULL;  // Gemma 3: first_user_prefix
    const pz_chat_msg *rest;
    if (f->gemma3) {
        rest = m;
        if (n > 0 && is_role(&m[0], "system")) prefix = content(&m[0]), rest++, n--;
    } else if (!(rest = fold_system(m, &n, &first, &owned))) {
        return pz_err(err, "chat template: out of memory");
    }
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        if (is_role((i == 0 && owned) ? &first : &rest[i], "user") != (i % 2 == 0))
            rc = pz_err(err, "Conversation roles must alternate user/assistant/user/assistant/...");
    if (!rc) {
        if (f->gemma_bos) put(b, f->bos);
        for (int i = 0; i < n; i++) {
            const pz_chat_msg *x = (i == 0 && owned) ? &first : &rest[i];
            put(b, "<start_of_turn>");
            put(b, is_role(x, "assistant") ? "model" : (x->role ? x->role : ""));
            put(b, "\n");
            if (i == 0 && prefix) {
                put(b, prefix);
                put(b, "\n\n");
            }
            put_strip(b, content(x));
            put(b, "<end_of_turn>\n");
        }
        if (gen) put(b, "<start_of_turn>model\n");
    }
    free(owned);
    return rc;
}

// Phi-3.5-mini-instruct: a system message with content: '<|system|>\n' + content + '<|end|>\n';
// user, assistant likewise with <|user|>, <|assistant|>; then '<|assistant|>\n', or
// eos_token without add_generation_prompt.
static void phi3(const pz_chat_format *f, obuf *b, const pz_chat_msg *m, int n, int gen) {
    for (int i = 0; i < n; i++) {
        const char *tag = is_role(&m[i], "system") ? (*content(&m[i]) ? "<|system|>\n" : NULL)
                        : is_role(&m[i], "user")      ? "<|user|>\n"
                        : is_role(&m[i], "assistant") ? "<|assistant|>\n"
                                                      : NULL;
        if (!tag) continue;
        put(b, tag);
        put(b, content(&m[i]));
        put(b, "<|end|>\n");
    }
    put(b, gen ? "<|assistant|>\n" : f->eos);
}

// zephyr-7b-beta / TinyLlama-Chat (trim_blocks): '<|user|>\n' + content + eos_token, then the
// newline after the expression; system and assistant likewise; after the last message,
// '<|assistant|>\n' with add_generation_prompt.
static void zephyr(const pz_chat_format *f, obuf *b, const pz_chat_msg *m, int n, int gen) {
    for (int i = 0; i < n; i++) {
        const char *tag = is_role(&m[i], "user")        ? "<|user|>\n"
                        : is_role(&m[i], "system")    ? "<|system|>\n"
                        : is_role(&m[i], "assistant") ? "<|assistant|>\n"
                                                      : NULL;
        if (tag) {
            put(b, tag);
            put(b, content(&m[i]));
            put(b, f->eos);
            put(b, "\n");
        }
        if (i == n - 1 && gen) put(b, "<|assistant|>\n");
    }
}

// DeepSeek-R1-Distill: bos_token + the last system message's content; user: '<｜User｜>' +
// content; assistant: '<｜Assistant｜>' + (content after its last '</think>') +
// '<｜end▁of▁sentence｜>'; then '<｜Assistant｜><think>\n'. (Tool turns are not rendered:
// the server takes no tools.)
static void deepseek_r1(const pz_chat_format *f, obuf *b, const pz_chat_msg *m, int n, int gen) {
    put(b, f->bos);
    const char *sys = "";
    for (int i = 0; i < n; i++)
        if (is_role(&m[i], "system")) sys = content(&m[i]);
    put(b, sys);
    for (int i = 0; i < n; i++) {
        const char *c = content(&m[i]);
        if (is_role(&m[i], "user")) {
            put(b, "<｜User｜>");
            put(b, c);
        } else if (is_role(&m[i], "assistant")) {
            for (const char *p; (p = strstr(c, "</think>")) != NULL;) c = p + strlen("</think>");
            put(b, "<｜Assistant｜>");
            put(b, c);
            put(b, "<｜end▁of▁sentence｜>");
        }
    }
    if (gen) put(b, "<｜Assistant｜><think>\n");
}

char *pz_chat_render(const pz_chat_format *f, const pz_chat_msg *msgs, int n, int add_generation_prompt,
                     char *err) {
    obuf b = {0};
    put(&b, "");
    int rc = 0;
    switch (f->family) {
    case PZ_CHAT_CHATML: chatml(f, &b, msgs, n, add_generation_prompt); break;
    case PZ_CHAT_LLAMA3: llama3(f, &b, msgs, n, add_generation_prompt); break;
    case PZ_CHAT_LLAMA2: rc = llama2(f, &b, msgs, n, err); break;
    case PZ_CHAT_MISTRAL: rc = mistral(f, &b, msgs, n, err); break;
    case PZ_CHAT_GEMMA: rc = gemma(f, &b, msgs, n, add_generation_prompt, err); break;
    case PZ_CHAT_PHI3: phi3(f, &b, msgs, n, add_generation_prompt); break;
    case PZ_CHAT_ZEPHYR: zephyr(f, &b, msgs, n, add_generation_prompt); break;
    case PZ_CHAT_DEEPSEEK_R1: deepseek_r1(f, &b, msgs, n, add_generation_prompt); break;
    default: rc = pz_err(err, "chat template: no family"); break;
    }
    if (!rc && b.oom) rc = pz_err(err, "chat template: out of memory");
    if (rc) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
