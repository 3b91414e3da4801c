#!/usr/bin/env python3
"""Make tests/data/tokenizer_vectors.json: strings and the ids the Hugging
Face `tokenizers` library gives for them, plus chat prompts rendered by the
model's Jinja chat template. tests/test_tokenizer.c checks the C tokenizer
against this file.

    python3 tests/ref/make_tokenizer_vectors.py TOKENIZER_DIR OUT.json

TOKENIZER_DIR holds tokenizer.json and tokenizer_config.json, e.g. written by
tests/ref/gguf_tokenizer_json.py from the reference GGUF.
"""
import argparse
import json
import os
import random
import sys

from tokenizers import Tokenizer

ENGLISH = [
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "the THE The tHe",
    "a",
    "A",
    " ",
    "I",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism",
    "It's a beautiful day, isn't it? Yes -- it is.",
    "What's up? We've been waiting; they'd said you'll come, I'm sure.",
    "don't",
    "DON'T",
    "I'LL",
    "you're",
    "YOU'RE we'VE he'D she'S",
    "'s 't 're 've 'm 'll 'd",
    "rock 'n' roll",
    "O'Brien's dog",
    "\"Quoted\" text and 'single quotes'",
    "email: someone@example.com, url: https://huggingface.co/HuggingFaceTB/SmolLM2-135M",
    "C:\\Users\\name\\file.txt",
    "hello...world!!! ??? ;-) :) <3",
    "(parentheses) [brackets] {braces} <angles>",
    "#hashtag @mention $dollar %percent ^caret &amp *star",
    "under_score snake_case CamelCase kebab-case",
    "Mr. Smith went to Washington D.C. in the U.S.A.",
    "e.g., i.e., etc.",
    "The end.",
]

NUMBERS = [
    " 12", "12", "3.14", "1,000,000", "1000000", "0", "007", "-42", "+1 (555) 123-4567",
    "2024-01-15T12:34:56Z", "v1.2.3", "0x1F 0b1010 0o777", "1e-5 6.02e23",
    "$19.99", "50%", "3/4", "1st 2nd 3rd 4th", "room 101", "a1b2c3", "x86_64",
    "123456789012345678901234567890", " 1 2 3 ", "  42  ", "version 2.0.1-beta",
    "٣٤٥ (Arabic-Indic)", "१२३ (Devanagari)", "１２３ (fullwidth)", "x² + y² = z³",
    "½ ¼ ¾", "Ⅻ Ⅳ ⅻ", "①②③", "𝟙𝟚𝟛",
]

WHITESPACE = [
    "  ", "   ", "    ", "        ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", " \n ", "\r\n",
    "a\r\nb\r\n", "trailing spaces   ", "   leading spaces", "  both  ", "a  b   c    d",
    "tab\tseparated\tvalues", "\t\tindented with tabs", "line one\nline two\n",
    "paragraph one.\n\nparagraph two.\n\n\nparagraph three.", " \t \n \t ", "\n \n \n",
    "word\n", "\nword", "x \n y", "x  \n  y", "   \n", "\u00a0non-breaking\u00a0space",
    "ideographic\u3000space", "en\u2002em\u2003thin\u2009spaces", "line\u2028separator",
    "para\u2029separator", "vertical\x0btab form\x0cfeed", "next\x85line",
    "mongolian\u180evowel separator", "zero\u200bwidth space", "ends with newline\n",
    " " * 40, "\n" * 20, "\t" * 9, " \n" * 7, "x" + " " * 100 + "y",
]

CODE = [
    "int main(void) {\n    printf(\"hello\\n\");\n    return 0;\n}\n",
    "#include <stdio.h>\n#include <stdlib.h>\n\nstatic int add(int a, int b) { return a + b; }\n",
    "for (size_t i = 0; i < n; i++) {\n\tsum += x[i] * y[i];\n}\n",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "class Foo:\n    def __init__(self, x: int) -> None:\n        self.x = x  # store it\n\n    def __repr__(self):\n        return f\"Foo({self.x!r})\"\n",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nprint(x.shape)\n",
    "    if (a != b && c >= d || !e) { *p++ = ~q >> 2; }",
    "const f = (a, b) => a ?? b; // nullish\nlet s = `template ${f(1, 2)}`;",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "<html>\n  <body>\n    <p class=\"x\">Hi &amp; bye</p>\n  </body>\n</html>",
    "{\"key\": [1, 2.5, true, null], \"nested\": {\"a\": \"b\"}}",
    "$ ls -la | grep '\\.c$' && echo done >> log.txt 2>&1",
    "x += 1; y -= 2; z *= 3; w /= 4; v %= 5; u **= 6;",
    "fn main() -> Result<(), Box<dyn Error>> {\n    let v: Vec<u8> = vec![];\n    Ok(())\n}",
    "# Title\n\n- item one\n- item two\n\n```python\nprint('hi')\n```\n",
    "====================\n--------------------\n####################",
    "////////// ********** ++++++++++ .......... __________",
]

INTERNATIONAL = [
    "café naïve résumé façade jalapeño Ångström",
    "Ça va? Très bien, merci! Où est la bibliothèque?",
    "Größe, Straße, Übermäßig, schön",
    "¿Qué tal? ¡Muy bien! El niño comió piña.",
    "Zażółć gęślą jaźń",
    "Příliš žluťoučký kůň úpěl ďábelské ódy",
    "Привет, мир! Как дела?",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Γειά σου Κόσμε! Αλφάβητο: αβγδεζηθικλμνξοπρστυφχψω",
    "日本語のテキスト、東京は晴れです。",
    "中文文本：你好，世界！我爱自然语言处理。",
    "한국어 텍스트: 안녕하세요 세계",
    "مرحبا بالعالم! كيف حالك؟",
    "שלום עולם",
    "नमस्ते दुनिया",
    "สวัสดีชาวโลก",
    "Tiếng Việt có dấu: Xin chào thế giới",
    "ქართული ენა",
    "Հայերեն լեզու",
    "Türkçe: İstanbul, ığdır, şöyle",
    "e\u0301 combining acute vs é precomposed",
    "a\u0308\u0304 stacked marks",
    "Ω ≈ ç √ ∫ ˜ µ ≤ ≥ ÷ ∑ ∏ π ∞ ≠",
    "→ ← ↑ ↓ ⇒ ⇔ ∀ ∃ ∈ ∉ ∩ ∪",
    "Mixed: English, Русский, 中文, العربية, 日本語 in one line.",
    "ﬁ ligature and ﬀ and Ǆ digraph",
    "𝐁𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 𝔉𝔯𝔞𝔨𝔱𝔲𝔯",
    "ℌ𝔢𝔩𝔩𝔬 ℕ ℝ ℤ ℚ",
]

EMOJI = [
    "😀", "😀😃😄", "I love it ❤️!", "👍🏽 thumbs up with skin tone", "👋🏻👋🏼👋🏽👋🏾👋🏿",
    "👨‍👩‍👧‍👦 family (ZWJ)", "🏳️‍🌈 rainbow flag", "👩🏽‍💻 technologist", "🇺🇸🇫🇷🇯🇵 flags",
    "🙂 smile 🙃 upside down", "#️⃣ 1️⃣ keycaps", "☕️ ✈️ ☀️", "text😀text", "🤖🚀✨🔥💯",
    "©️ ®️ ™️", "🧑‍🤝‍🧑",
]

SPECIAL = [
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>",
    "text before<|endoftext|>text after",
    "<|im_end|><|im_end|><|im_start|>",
    "<|im_start|> spaced <|im_end|>",
    "<|im_start",
    "<|im_start|",
    "im_start|>",
    "<|im_start|><|im_start|",
    "<repo_name>puzzle<file_sep>main.c<filename>x.py<gh_stars>100",
    "<reponame>a<issue_start>b<issue_comment>c<issue_closed>",
    "<jupyter_start><jupyter_text>text<jupyter_code>x=1<jupyter_output>1<jupyter_script><empty_output>",
    "<|unknown|> is not special",
    "<<|im_start|>>",
    "a<|endoftext|>b<|endoftext|>",
    " <|im_start|>",
    "\n<|im_end|>\n",
]

LONG = [
    "The history of computing is a story of abstraction. Early machines were programmed by "
    "rewiring plugboards; later, stored programs let the same hardware run different tasks. "
    "Assembly language gave names to instructions, and compilers translated higher-level "
    "languages into machine code. Each layer hid the complexity below it, letting programmers "
    "think in terms closer to their problems. Today, a single line of Python may invoke "
    "millions of machine instructions, spread across CPUs, GPUs and networks, yet the author "
    "rarely needs to think about any of them. Of course, abstractions leak: when performance "
    "matters, or when something breaks, the layers underneath come back into view.",
    "In 1969, Apollo 11 landed on the Moon. Neil Armstrong and Buzz Aldrin spent about 21 hours "
    "on the lunar surface, while Michael Collins orbited above in the command module Columbia. "
    "The mission returned 21.5 kg (47.5 lb) of lunar material to Earth. Over 600 million people "
    "watched the first steps on television -- roughly one fifth of the world's population at "
    "the time. \"That's one small step for [a] man, one giant leap for mankind.\"\n\n"
    "The Apollo Guidance Computer had 2,048 words of RAM and 36,864 words of ROM; its clock ran "
    "at 2.048 MHz. By comparison, a modern smartphone is millions of times faster.",
    "Recipe: Pancakes\n\nIngredients:\n  - 1 1/2 cups (190 g) all-purpose flour\n  - 3 1/2 tsp "
    "baking powder\n  - 1 tbsp sugar\n  - 1/4 tsp salt\n  - 1 1/4 cups (300 ml) milk\n  - 1 egg\n"
    "  - 3 tbsp butter, melted\n\nSteps:\n  1. Sift the dry ingredients together.\n  2. Make a "
    "well in the center and pour in the milk, egg and melted butter; mix until smooth.\n  3. "
    "Heat a lightly oiled griddle over medium-high heat (about 190°C / 375°F).\n  4. Pour "
    "about 1/4 cup of batter per pancake. Brown on both sides and serve hot!\n",
    "Machine learning models are trained by minimizing a loss function over a dataset. For a "
    "language model, the loss is usually the cross-entropy between the predicted distribution "
    "over the next token and the token that actually follows. Given a vocabulary of V = 49152 "
    "tokens, a uniform guess would cost ln(49152) ≈ 10.8 nats per token; a good small model "
    "gets below 3. Perplexity is exp(loss): a perplexity of 20 means the model is, on average, "
    "as uncertain as if it were choosing uniformly among 20 tokens. Tokenizers matter here: "
    "the same text split into fewer tokens gives a different per-token loss, so perplexities "
    "are only comparable between models that share a tokenizer.",
    "Война и мир — роман-эпопея Льва Николаевича Толстого, описывающий русское общество в эпоху "
    "войн против Наполеона в 1805—1812 годах. Эпилог романа доводит повествование до 1820 года. "
    "日本の首都は東京です。東京は世界で最も人口の多い都市圏の一つであり、約3700万人が住んでいます。"
    "Η Ελλάδα είναι χώρα της νοτιοανατολικής Ευρώπης με πρωτεύουσα την Αθήνα.",
]


# Edge cases of the byte alphabet and of Unicode tables: control bytes that
# SmolLM2 has no token for (HF drops them), code points whose UTF-8 starts
# with a byte that has no token (planes 4-11 start with F1/F2), a noncharacter,
# private use, U+180E (PCRE2 \\s differs), and letters/digits from recent
# Unicode versions (Kawi U+11F00.., CJK Ext. H U+31350.., Ext. I U+2EBF0..,
# Unicode 16 Garay U+10D40.. and Tulu-Tigalari U+11380..) where the regex
# engines' Unicode tables may differ.
UNUSUAL = [
    "a\x04b\x06c\x13d\x14e\x16f\x1dg", "\x01\x02\x03 (no NUL: cJSON strings end there)", "\x7f\x80\x9f",
    "\U00050000 plane five", "x\U000abcdez", "\U0010fffd private", "\ue000\uf8ff pua", "\ufffe\uffff",
    "\ufeffBOM at start", "soft\u00adhyphen", "mongolian \u180e sep", "\u2066isolate\u2069",
    "\U00011f04\U00011f05\U00011f50\U00011f51 kawi", "\U00031350\U00031351 ext H",
    "\U0002ebf0\U0002ebf1 ext I", "\U00010d4a\U00010d4b\U00010d40 garay", "\U00011380\U00011381 tulu",
    "\U0001fae8 \U0001faf8 new emoji", "\U0001d7ce\U0001d7cf math digits", "\u3007\u3021 ideographic numbers",
    "\u0660\u06f0\u07c0\u0966\u09e6 digits", "\u2460\u2776\u24ea circled",
]


# One code point from each range that PCRE2 10.42's Unicode 14 tables lack but
# HF (Unicode 15.1/16) counts as a letter or number (runtime/tokenizer_unicode.h),
# in a probe that tells letters, numbers and other symbols apart.
NEW_UNICODE = [0x1C89, 0xA7CB, 0xA7DA, 0x105C0, 0x10D4A, 0x10D6F, 0x10EC2, 0x1123F, 0x11380, 0x1138B,
               0x11390, 0x113D1, 0x11BC0, 0x11F02, 0x11F12, 0x1342F, 0x13460, 0x16100, 0x16D40, 0x18CFF,
               0x1B132, 0x1DF25, 0x1E030, 0x1E4D0, 0x1E5D0, 0x2B739, 0x2EBF0, 0x31350, 0x10D40, 0x116D0,
               0x11BF0, 0x11DE0, 0x11F50, 0x16130, 0x16D70, 0x16FF4, 0x1CCF0, 0x1D2C0, 0x1E4F0, 0x1E5F1]


def unicode_probes():
    return [f" {c}a{c}1{c} {c}{c}'s{c}\t" for c in map(chr, NEW_UNICODE)]


def extra_strings(rng):
    """Programmatic coverage: numbers, whitespace mixes, random Unicode mixes."""
    out = []
    for _ in range(20):
        n = rng.choice([rng.randint(0, 99), rng.randint(100, 99999), rng.randint(10**6, 10**12)])
        sep = rng.choice(["", " ", "  ", "\n", "$", "-", "."])
        out.append(f"{sep}{n:,}" if rng.random() < 0.5 else f"{sep}{n}{rng.choice(['', ' ', 'px', '%', '.5'])}")
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3
            + list(" " * 30) + list("\n\t\r") + list(".,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`")
            + list("éèêëàâäôöûüçñßÆØÅæøåœ") + list("абвгдежзийклмнопрстуфхцчшщъыьэюяЁё")
            + list("αβγδεζηθλμξπσφψωΔΣΩ") + list("中文字漢日本語東京한국어ひらがなカタカナ")
            + list("مرحباשלוםनमस्तेสวัสดี") + ["😀", "👍", "👍🏽", "❤️", "🇯🇵", "👨‍👩‍👧", "\u200d", "\u0301"]
            + list("٣१１²½Ⅻ①") + ["\u00a0", "\u3000", "\u2009", "\u2028", "\x0b", "\x0c", "\x85"]
            + ["'s", "'t", "'re", "'ll", "'D", "'M"])
    for _ in range(70):
        k = rng.randint(1, 40)
        out.append("".join(rng.choice(pool) for _ in range(k)))
    return out


def render_chat(template, messages, add_generation_prompt):
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        return None
    # the settings transformers' apply_chat_template uses
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    return env.from_string(template).render(messages=messages,
                                            add_generation_prompt=add_generation_prompt)


CHATS = [
    ([("user", "Hello!"), ("assistant", "Hi there! How can I help you today?")], False),
    ([("user", "What is the capital of France?"), ("assistant", "Paris."),
      ("user", "And of Italy?")], True),
    ([("system", "You are a terse assistant."), ("user", "What is 2+2?")], True),
    ([("user", "Write a haiku.\nAbout rain.")], True),
    ([], True),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tokenizer_dir")
    ap.add_argument("out")
    args = ap.parse_args()
    tok = Tokenizer.from_file(os.path.join(args.tokenizer_dir, "tokenizer.json"))
    raw = Tokenizer.from_file(os.path.join(args.tokenizer_dir, "tokenizer.json"))
    raw.encode_special_tokens = True  # special-token strings encoded as plain text
    cfg_path = os.path.join(args.tokenizer_dir, "tokenizer_config.json")
    template = None
    if os.path.exists(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            template = json.load(f).get("chat_template")

    chats = []
    if template:
        for msgs, gen in CHATS:
            m = [{"role": r, "content": c} for r, c in msgs]
            text = render_chat(template, m, gen)
            if text is None:
                print("jinja2 missing: no chat vectors", file=sys.stderr)
                break
            chats.append({"roles": [r for r, _ in msgs], "contents": [c for _, c in msgs],
                          "add_generation_prompt": gen, "expected": text})

    rng = random.Random(1234)
    groups = [("english", ENGLISH), ("numbers", NUMBERS), ("whitespace", WHITESPACE),
              ("code", CODE), ("international", INTERNATIONAL), ("emoji", EMOJI),
              ("special", SPECIAL), ("long", LONG), ("unusual", UNUSUAL), ("new_unicode", unicode_probes()), ("random", extra_strings(rng)),
              ("chat", [c["expected"] for c in chats])]
    vectors = []
    seen = set()
    for group, strings in groups:
        for s in strings:
            if s in seen:
                continue
            seen.add(s)
            v = {"group": group, "text": s, "ids": tok.encode(s, add_special_tokens=False).ids}
            ids_raw = raw.encode(s, add_special_tokens=False).ids
            if ids_raw != v["ids"]:
                v["ids_raw"] = ids_raw  # with parse_special off
            vectors.append(v)

    out = {"tokenizer": "SmolLM2-135M-Instruct (from the GGUF via tests/ref/gguf_tokenizer_json.py)",
           "generator": "tests/ref/make_tokenizer_vectors.py",
           "vectors": vectors, "chats": chats}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {len(vectors)} vectors and {len(chats)} chats to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
