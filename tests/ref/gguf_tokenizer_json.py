#!/usr/bin/env python3
"""Write a Hugging Face tokenizer.json + tokenizer_config.json equivalent to
the byte-level BPE tokenizer stored in a GGUF file's metadata.

    python3 tests/ref/gguf_tokenizer_json.py MODEL.gguf OUTDIR

The result loads with the `tokenizers` library (Tokenizer.from_file) and with
transformers (AutoTokenizer.from_pretrained(OUTDIR)), and gives the ids that
llama.cpp gives for the same GGUF. It is the ground truth for the C tokenizer
tests (tests/ref/make_tokenizer_vectors.py) and can be reused to tokenize
evaluation text:

    from tokenizers import Tokenizer
    tok = Tokenizer.from_file("OUTDIR/tokenizer.json")
    ids = tok.encode(text).ids

Supported tokenizer.ggml.pre values: smollm, gpt2/default (and missing),
llama-bpe/llama3. tokenizer.ggml.model must be gpt2 (byte-level BPE).
"""
import argparse
import json
import os
import sys

import gguf

# tokenizer.ggml.token_type values (llama.cpp llama_token_type)
TT_NORMAL, TT_UNKNOWN, TT_CONTROL, TT_USER_DEFINED, TT_UNUSED, TT_BYTE = 1, 2, 3, 4, 5, 6

LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    if hasattr(f, "contents"):
        return f.contents()
    # older gguf-py: decode by hand
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]].tolist()[0]


def byte_level(use_regex):
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
            "use_regex": use_regex}


def pre_tokenizer_for(pre):
    """(pre_tokenizer, ignore_merges) for a tokenizer.ggml.pre value."""
    if pre == "smollm":
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, byte_level(True)]}, False
    if pre in (None, "default", "gpt2", "gpt-2"):
        return byte_level(True), False
    if pre in ("llama-bpe", "llama3", "llama-v3"):
        return {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX},
             "behavior": "Isolated", "invert": False},
            byte_level(False)]}, True
    raise SystemExit(f"unsupported tokenizer.ggml.pre {pre!r}")


def convert(path):
    reader = gguf.GGUFReader(path)
    model = field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise SystemExit(f"{path}: tokenizer.ggml.model is {model!r}, only 'gpt2' (byte-level BPE) is supported")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type") or [TT_NORMAL] * len(tokens)
    merges = field(reader, "tokenizer.ggml.merges") or []
    pre = field(reader, "tokenizer.ggml.pre")
    pre_tok, ignore_merges = pre_tokenizer_for(pre)

    added = []
    for i, (tok, ty) in enumerate(zip(tokens, types)):
        if ty in (TT_CONTROL, TT_USER_DEFINED, TT_UNKNOWN):
            added.append({"id": i, "content": tok, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": ty == TT_USER_DEFINED,
                          "special": ty != TT_USER_DEFINED})

    def merge_pair(m):
        a, sep, b = m.partition(" ")
        if not sep:
            raise SystemExit(f"{path}: merge {m!r} has no space")
        return [a, b]

    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": pre_tok,
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True,
                           "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True,
                    "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": False, "byte_fallback": False, "ignore_merges": ignore_merges,
            "vocab": {tok: i for i, tok in enumerate(tokens)},
            "merges": [merge_pair(m) for m in merges],
        },
    }

    def tok_of(key):
        i = field(reader, key)
        return tokens[i] if i is not None and 0 <= i < len(tokens) else None

    arch = field(reader, "general.architecture", "llama")
    config = {
        "add_bos_token": bool(field(reader, "tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": bool(field(reader, "tokenizer.ggml.add_eos_token", False)),
        "add_prefix_space": False,
        "added_tokens_decoder": {str(a["id"]): {k: v for k, v in a.items() if k != "id"}
                                 for a in added},
        "bos_token": tok_of("tokenizer.ggml.bos_token_id"),
        "eos_token": tok_of("tokenizer.ggml.eos_token_id"),
        "unk_token": tok_of("tokenizer.ggml.unknown_token_id"),
        "pad_token": tok_of("tokenizer.ggml.padding_token_id"),
        "clean_up_tokenization_spaces": False,
        "model_max_length": field(reader, f"{arch}.context_length", 8192),
        "tokenizer_class": "GPT2Tokenizer",
    }
    template = field(reader, "tokenizer.chat_template")
    if template is not None:
        config["chat_template"] = template
    return tokenizer, {k: v for k, v in config.items() if v is not None}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf", help="model .gguf file")
    ap.add_argument("outdir", help="directory for tokenizer.json and tokenizer_config.json")
    args = ap.parse_args()
    tokenizer, config = convert(args.gguf)
    os.makedirs(args.outdir, exist_ok=True)
    for name, obj in (("tokenizer.json", tokenizer), ("tokenizer_config.json", config)):
        with open(os.path.join(args.outdir, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1 if name != "tokenizer.json" else None)
            f.write("\n")
    n_vocab = len(tokenizer["model"]["vocab"])
    print(f"wrote {args.outdir}/tokenizer.json ({n_vocab} tokens, "
          f"{len(tokenizer['model']['merges'])} merges, {len(tokenizer['added_tokens'])} added) "
          f"and tokenizer_config.json", file=sys.stderr)


if __name__ == "__main__":
    main()
