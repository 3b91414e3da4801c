#!/usr/bin/env python3
"""Check that a tokenizer directory written by pz_tokenizer_write_hf loads in
the Hugging Face `tokenizers` library and gives the ids in a vectors file.

    python3 tests/ref/check_tokenizer_hf.py TOKENIZER_DIR tests/data/tokenizer_vectors.json

Exit 0 when every vector matches and every chat renders the same from the
written tokenizer_config.json (with jinja2, as transformers renders it), 1
otherwise, 2 when `tokenizers` or `jinja2` is missing (scripts/setup_venv.sh
installs both).
"""
import json
import os
import sys

try:
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from tokenizers import Tokenizer
except ImportError as e:
    print(f"{e}: run scripts/setup_venv.sh and use its python", file=sys.stderr)
    sys.exit(2)


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    d, vec_path = sys.argv[1], sys.argv[2]
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    with open(vec_path, encoding="utf-8") as f:
        data = json.load(f)
    bad = 0
    for v in data["vectors"]:
        ids = tok.encode(v["text"], add_special_tokens=False).ids
        if ids != v["ids"]:
            bad += 1
            print(f"ids differ for {v['text'][:60]!r}: {ids[:20]} vs {v['ids'][:20]}", file=sys.stderr)
    with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    n_chat = 0
    if cfg.get("chat_template"):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        tmpl = env.from_string(cfg["chat_template"])
        for c in data.get("chats", []):
            msgs = [{"role": r, "content": m} for r, m in zip(c["roles"], c["contents"])]
            if tmpl.render(messages=msgs, add_generation_prompt=c["add_generation_prompt"]) != c["expected"]:
                bad += 1
                print("chat rendering differs", file=sys.stderr)
            n_chat += 1
    print(f"{d}: {len(data['vectors'])} vectors, {n_chat} chats, {bad} mismatches", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
