#!/usr/bin/env python3
"""Renders conversations with real chat templates through Python jinja2, set up
as Hugging Face transformers does (apply_chat_template: a sandboxed environment
with trim_blocks and lstrip_blocks, raise_exception, tojson, strftime_now), and
writes the expected prompts as JSON for tests/test_chat_template.c, which
renders the same conversations with runtime/chat_template.c and compares byte
for byte.

    python3 tests/ref/chat_template_ref.py TEMPLATE_DIR OUT.json

TEMPLATE_DIR is tests/ref/chat_templates (sources in its SOURCES.md).
"""
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

# file -> (family puzzle must detect, bos_token, eos_token, folds a leading system message)
TEMPLATES = {
    "HuggingFaceTB-SmolLM2-135M-Instruct.jinja": ("chatml", "<|im_start|>", "<|im_end|>", False),
    "teknium-OpenHermes-2.5-Mistral-7B.jinja": ("chatml", "<s>", "<|im_end|>", False),
    "Qwen-Qwen2.5-7B-Instruct.jinja": ("chatml", "", "<|im_end|>", False),
    "meta-llama-Meta-Llama-3-8B-Instruct.jinja": ("llama3", "<|begin_of_text|>", "<|eot_id|>", False),
    "meta-llama-Llama-3.1-8B-Instruct.jinja": ("llama3", "<|begin_of_text|>", "<|eot_id|>", False),
    "meta-llama-Llama-3.2-3B-Instruct.jinja": ("llama3", "<|begin_of_text|>", "<|eot_id|>", False),
    "meta-llama-Llama-2-7b-chat-hf.jinja": ("llama2", "<s>", "</s>", False),
    "mistralai-Mistral-7B-Instruct-v0.2.jinja": ("mistral", "<s>", "</s>", True),
    "google-gemma-7b-it.jinja": ("gemma", "<bos>", "<eos>", True),
    "google-gemma-2-2b-it.jinja": ("gemma", "<bos>", "<eos>", True),
    "google-gemma-3-it.jinja": ("gemma", "<bos>", "<eos>", False),
    "microsoft-Phi-3.5-mini-instruct.jinja": ("phi3", "<s>", "<|endoftext|>", False),
    "HuggingFaceH4-zephyr-7b-beta.jinja": ("zephyr", "<s>", "</s>", False),
    # templates of other layouts: puzzle must not claim them
    "microsoft-phi-4.jinja": ("unknown", "", "", False),
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": ("unknown", "<s>", "</s>", False),
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": ("deepseek-r1", "<｜begin▁of▁sentence｜>",
                                                       "<｜end▁of▁sentence｜>", False),
    "Qwen-Qwen3-0.6B.jinja": ("unknown", "", "<|im_end|>", False),
    "meetkai-functionary-medium-v3.2.jinja": ("unknown", "<|begin_of_text|>", "<|eot_id|>", False),
}

S, U, A = "system", "user", "assistant"
CONVERSATIONS = [
    [(U, "Hello")],
    [(S, "You are a helpful assistant"), (U, "Hello")],
    [(S, "You are terse."), (U, "Hi"), (A, "Hello."), (U, "Who are you?")],
    [(U, "What is 2+2?"), (A, "4"), (U, "And 3+3?"), (A, "6")],
    [(S, "Be brief."), (U, "Name a color."), (A, "Blue")],
    [(U, "  Hello  \n"), (A, "\n Sure. \t"), (U, "\tmore \r\n")],
    [(S, "\u3000Grüße\u00a0"), (U, "日本語 {{ x }} 'q' \"dq\"\u2028"), (A, "\u0085ok\u3000")],
    [(S, ""), (U, "empty system")],
    [(U, "one"), (U, "two")],
    [(S, "only a system message")],
    [(U, "a"), (S, "late system"), (U, "b")],
    [(U, "")],
    [(S, "first system"), (U, "q"), (A, "<think>\nhmm\n</think>\n\nAnswer"), (S, "second system"), (U, "next")],
]


class TemplateError(Exception):
    pass


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    # fixed, so that the expected text does not change with the day
    return datetime.datetime(2024, 7, 26).strftime(fmt)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                       extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def fold(msgs):
    """A leading system message folded into the first user message (puzzle's
    rendering where the template refuses a system role)."""
    if not msgs or msgs[0]["role"] != "system":
        return msgs
    if len(msgs) > 1 and msgs[1]["role"] == "user":
        return [{"role": "user", "content": msgs[0]["content"] + "\n\n" + msgs[1]["content"]}] + msgs[2:]
    return [{"role": "user", "content": msgs[0]["content"]}] + msgs[1:]


def main():
    tdir, out = sys.argv[1], sys.argv[2]
    env = environment()
    cases = []
    for name, (family, bos, eos, folds) in sorted(TEMPLATES.items()):
        with open(os.path.join(tdir, name), encoding="utf-8") as f:
            src = f.read()
        entry = {"template": name, "family": family, "bos": bos, "eos": eos, "renders": []}
        cases.append(entry)
        if family == "unknown":
            continue
        tmpl = env.from_string(src)
        for ci, conv in enumerate(CONVERSATIONS):
            msgs = [{"role": r, "content": c} for r, c in conv]
            for gen in (False, True):
                use = fold(msgs) if folds else msgs
                r = {"conversation": ci, "messages": [[m["role"], m["content"]] for m in msgs],
                     "add_generation_prompt": gen}
                try:
                    r["text"] = tmpl.render(messages=use, add_generation_prompt=gen, bos_token=bos,
                                            eos_token=eos, tools=None)
                except jinja2.exceptions.TemplateError as e:
                    r["error"] = str(e)
                entry["renders"].append(r)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
    print(f"{sum(len(c['renders']) for c in cases)} renders of {len(cases)} templates written to {out}")


if __name__ == "__main__":
    main()
