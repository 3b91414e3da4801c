#!/usr/bin/env python3
"""An independent NumPy implementation of the reference parent's forward pass
(SmolLM2-135M-Instruct, Q4_1 GGUF), used to make test vectors for the C engine
and the reference perplexity figure. Test-data tooling only; not part of the
product.

Weights come from the GGUF file through the `gguf` package (GGUFReader +
gguf.quants.dequantize); nothing is shared with the C loader. Q/K are used as
stored in the GGUF, i.e. rows permuted by the llama converter, so RoPE here
rotates ADJACENT pairs (2i, 2i+1) (llama.cpp "norm" RoPE). The C engine
un-permutes at load and rotates (i, i + d/2); agreement between the two is the
check that the conversion is right.

    # test vectors -> tests/data/smollm2_ref/
    python3 tests/ref/smollm2_numpy.py vectors [--model M] [--tokenizer T] [--out DIR]
    # perplexity (protocol of `puzzle eval`) -> prints a Markdown table row
    python3 tests/ref/smollm2_numpy.py ppl --text EVAL.txt [--ctx 512] [--max-tokens N]
    # greedy continuation of a prompt, as a sanity check
    python3 tests/ref/smollm2_numpy.py generate "The capital of France is"

--tokenizer is a tokenizer.json made from the GGUF by
tests/ref/gguf_tokenizer_json.py (made on the fly into a temp folder when
omitted).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import gguf
from gguf.quants import dequantize

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_MODEL = os.path.join(os.environ.get("PUZZLE_CACHE", os.path.expanduser("~/.cache/puzzle")),
                             "SmolLM2-135M-Instruct.Q4_1.gguf")


def _field(reader, key):
    f = reader.fields[key]
    return f.contents() if hasattr(f, "contents") else f.parts[f.data[0]].tolist()[0]


class Model:
    """Llama weights, dequantized to float32 arrays in [out, in] orientation."""

    def __init__(self, path):
        r = gguf.GGUFReader(path)
        arch = _field(r, "general.architecture")
        if arch != "llama":
            raise ValueError(f"{path}: architecture {arch!r}, expected llama")
        self.n_layer = int(_field(r, "llama.block_count"))
        self.hidden = int(_field(r, "llama.embedding_length"))
        self.n_head = int(_field(r, "llama.attention.head_count"))
        self.n_kv = int(_field(r, "llama.attention.head_count_kv"))
        self.n_ff = int(_field(r, "llama.feed_forward_length"))
        self.eps = float(_field(r, "llama.attention.layer_norm_rms_epsilon"))
        self.theta = float(_field(r, "llama.rope.freq_base"))
        self.head_dim = self.hidden // self.n_head
        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type)
            # GGUF dims are innermost first; dequantize gives outermost first.
            shape = tuple(int(x) for x in reversed(t.shape.tolist()))
            self.w[t.name] = np.ascontiguousarray(a.reshape(shape), dtype=np.float32)
        self.vocab = self.w["token_embd.weight"].shape[0]
        self.lm_head = self.w.get("output.weight", self.w["token_embd.weight"])  # tied
        assert self.w["blk.0.attn_q.weight"].shape == (self.n_head * self.head_dim, self.hidden)
        assert self.w["blk.0.attn_k.weight"].shape == (self.n_kv * self.head_dim, self.hidden)
        assert self.w["blk.0.ffn_gate.weight"].shape == (self.n_ff, self.hidden)
        assert self.w["blk.0.ffn_down.weight"].shape == (self.hidden, self.n_ff)
        self._raw = r  # kept for the dequantization self-check

    def check_q4_1(self):
        """Decodes one Q4_1 block by hand (fp16 d, fp16 m, 16 bytes: low
        nibbles are elements 0-15, high nibbles 16-31, x = q*d + m) and
        compares it with gguf's dequantize."""
        t = next(t for t in self._raw.tensors if t.name == "blk.0.attn_q.weight")
        raw = np.asarray(t.data).reshape(-1).view(np.uint8)[:20]
        d = float(raw[0:2].view(np.float16)[0])
        m = float(raw[2:4].view(np.float16)[0])
        qs = raw[4:20]
        mine = np.concatenate([(qs & 0xF) * d + m, (qs >> 4) * d + m])
        theirs = self.w["blk.0.attn_q.weight"][0, :32]
        assert np.allclose(mine, theirs, rtol=0, atol=1e-7), (mine, theirs)

    def forward(self, ids, dtype=np.float64, positions_out=None):
        """Causal forward over the whole sequence (no cache). Returns logits
        [len(positions_out) or len(ids), vocab] in dtype."""
        ids = np.asarray(ids, dtype=np.int64)
        n, d, H, KV, hd = len(ids), self.hidden, self.n_head, self.n_kv, self.head_dim
        W = self.w
        cast = (lambda a: a.astype(dtype, copy=False))
        x = cast(W["token_embd.weight"][ids])                       # [n, d]
        # adjacent-pair RoPE tables: pair i = dims (2i, 2i+1), freq theta^(-2i/hd)
        inv = self.theta ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
        ang = np.arange(n, dtype=np.float64)[:, None] * inv[None, :]  # [n, hd/2]
        cos, sin = cast(np.cos(ang))[:, None, :], cast(np.sin(ang))[:, None, :]
        mask = np.triu(np.full((n, n), -np.inf, dtype=dtype), k=1)
        scale = 1.0 / math.sqrt(hd)
        group = H // KV

        def rms(v, wname):
            ms = np.mean(v * v, axis=-1, keepdims=True)
            return v / np.sqrt(ms + self.eps) * cast(W[wname])

        def rope(v, heads):
            v = v.reshape(n, heads, hd // 2, 2)
            a, b = v[..., 0], v[..., 1]
            return np.stack([a * cos - b * sin, a * sin + b * cos], axis=-1).reshape(n, heads, hd)

        def lin(v, wname):
            return v @ cast(W[wname]).T

        for L in range(self.n_layer):
            p = f"blk.{L}."
            h = rms(x, p + "attn_norm.weight")
            q = rope(lin(h, p + "attn_q.weight"), H)                # [n, H, hd]
            k = rope(lin(h, p + "attn_k.weight"), KV)               # [n, KV, hd]
            v = lin(h, p + "attn_v.weight").reshape(n, KV, hd)
            att = np.empty((n, H, hd), dtype=dtype)
            for hh in range(H):
                kv = hh // group                                    # GQA: contiguous groups
                s = (q[:, hh, :] @ k[:, kv, :].T) * scale + mask
                s = s - s.max(axis=1, keepdims=True)
                e = np.exp(s)
                att[:, hh, :] = (e / e.sum(axis=1, keepdims=True)) @ v[:, kv, :]
            x = x + lin(att.reshape(n, H * hd), p + "attn_output.weight")
            h = rms(x, p + "ffn_norm.weight")
            g = lin(h, p + "ffn_gate.weight")
            u = lin(h, p + "ffn_up.weight")
            x = x + lin(g / (1.0 + np.exp(-g)) * u, p + "ffn_down.weight")
        x = rms(x, "output_norm.weight")
        if positions_out is not None:
            x = x[np.asarray(positions_out)]
        return x @ cast(self.lm_head).T

    def greedy(self, ids, n_new, dtype=np.float64, margins=None):
        """Greedy continuation (full recompute per step). margins, if a list,
        receives top-1 minus top-2 logit at each step."""
        ids = list(ids)
        out = []
        for _ in range(n_new):
            logits = self.forward(ids, dtype, positions_out=[len(ids) - 1])[0]
            t = int(np.argmax(logits))
            if margins is not None:
                top2 = np.partition(logits, -2)[-2:]
                margins.append(float(top2[1] - top2[0]))
            out.append(t)
            ids.append(t)
        return out


def load_tokenizer(model_path, tok_path):
    from tokenizers import Tokenizer
    if not tok_path:
        d = tempfile.mkdtemp(prefix="pz_tok_")
        subprocess.run([sys.executable, os.path.join(HERE, "gguf_tokenizer_json.py"), model_path, d],
                       check=True, stdout=subprocess.DEVNULL)
        tok_path = os.path.join(d, "tokenizer.json")
    return Tokenizer.from_file(tok_path)


PROMPTS = [
    ("english_short", "The capital of France is"),
    ("english", "Once upon a time, in a small village at the edge of a great forest, there lived"),
    ("code", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n"
             "        return n\n    return"),
    ("numbers", "1, 2, 3, 5, 8, 13, 21, 34, 55,"),
    ("chatml", "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
               "<|im_start|>user\nWhat is the capital of Germany?<|im_end|>\n<|im_start|>assistant\n"),
]
N_GREEDY = 16


def cmd_vectors(a):
    t0 = time.time()
    m = Model(a.model)
    m.check_q4_1()
    tok = load_tokenizer(a.model, a.tokenizer)
    os.makedirs(a.out, exist_ok=True)
    index = {"model": os.path.basename(a.model),
             "model_sha256": a.model_sha256,
             "vocab": m.vocab,
             "implementation": "tests/ref/smollm2_numpy.py: NumPy float64 forward over "
                               "gguf-dequantized weights, adjacent-pair RoPE on GGUF-permuted Q/K",
             "tokenizer": "Hugging Face tokenizers on tokenizer.json from tests/ref/gguf_tokenizer_json.py; "
                          "special tokens parsed, no BOS added",
             "logits_layout": "<name>.f32: little-endian float32, row-major [len(positions)][vocab]",
             "prompts": []}
    txt = ["# smollm2_ref v1: see index.json / README.md", f"vocab {m.vocab}"]
    for name, text in PROMPTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert 5 <= len(ids) <= 40, (name, len(ids))
        n = len(ids)
        pos = [0, n // 2, n - 1]
        logits = m.forward(ids, np.float64, positions_out=pos)
        top1 = [int(np.argmax(r)) for r in logits]
        gmargins = []
        greedy = m.greedy(ids, N_GREEDY, margins=gmargins)
        fname = f"{name}.f32"
        logits.astype("<f4").tofile(os.path.join(a.out, fname))
        # margin between top-1 and top-2 at each stored position (how safe top-1 equality is)
        srt = np.sort(logits, axis=1)
        margins = [float(srt[i, -1] - srt[i, -2]) for i in range(len(pos))]
        index["prompts"].append({"name": name, "text": text, "ids": ids, "positions": pos,
                                 "logits_file": fname, "top1": top1, "top1_margin": margins,
                                 "max_abs_logit": [float(np.abs(r).max()) for r in logits],
                                 "greedy": greedy,
                                 "greedy_min_margin": min(gmargins),
                                 "greedy_text": tok.decode(greedy, skip_special_tokens=False)})
        txt.append(f"prompt {name} {fname} {n} {len(pos)} {len(greedy)}")
        txt.append("ids " + " ".join(map(str, ids)))
        txt.append("positions " + " ".join(map(str, pos)))
        txt.append("top1 " + " ".join(map(str, top1)))
        txt.append("greedy " + " ".join(map(str, greedy)))
        print(f"{name}: {n} tokens, top1 {top1}, margins {[round(x, 3) for x in margins]}, "
              f"greedy {tok.decode(greedy)!r} (min margin {min(gmargins):.3f})", flush=True)
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    with open(os.path.join(a.out, "index.txt"), "w") as f:
        f.write("\n".join(txt) + "\n")
    print(f"wrote {a.out} in {time.time() - t0:.1f} s")


def ppl_windows(m, ids, ctx, dtype=np.float32, log=None):
    """The `puzzle eval` protocol: windows of ctx tokens at offsets 0, ctx, ...;
    a last partial window counts when it has >= 2 tokens; each window from an
    empty cache; NLL over positions 1..len-1 of each window."""
    total, count = 0.0, 0
    for off in range(0, len(ids), ctx):
        w = ids[off:off + ctx]
        if len(w) < 2:
            break
        logits = m.forward(w, dtype).astype(np.float64)     # [len, vocab]
        lg = logits[:-1]
        mx = lg.max(axis=1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(lg - mx).sum(axis=1))
        nll = lse - lg[np.arange(len(w) - 1), np.asarray(w[1:])]
        total += float(nll.sum())
        count += len(w) - 1
        if log:
            log(off, len(w), total, count)
    return total, count


def cmd_ppl(a):
    m = Model(a.model)
    tok = load_tokenizer(a.model, a.tokenizer)
    tok.encode_special_tokens = True           # special tokens are not parsed
    with open(a.text, encoding="utf-8") as f:
        text = f.read()
    ids = tok.encode(text, add_special_tokens=False).ids
    print(f"eval file: {a.text}, {len(text.encode('utf-8'))} bytes, {len(ids)} tokens", flush=True)
    use = ids if a.max_tokens <= 0 else ids[:a.max_tokens]
    dtype = np.float64 if a.float64 else np.float32
    t0 = time.time()

    def log(off, n, total, count):
        print(f"  window @{off} ({n} tokens): running ppl {math.exp(total / count):.4f} "
              f"({time.time() - t0:.0f} s)", flush=True)

    total, count = ppl_windows(m, use, a.ctx, dtype, log if a.verbose else None)
    dt = time.time() - t0
    ppl = math.exp(total / count)
    print(f"RESULT tokens_total={len(ids)} tokens_used={len(use)} ctx={a.ctx} "
          f"predicted={count} nll={total:.6f} ppl={ppl:.6f} seconds={dt:.1f} "
          f"dtype={np.dtype(dtype).name} omp={os.environ.get('OMP_NUM_THREADS', '')}", flush=True)


def cmd_generate(a):
    m = Model(a.model)
    tok = load_tokenizer(a.model, a.tokenizer)
    ids = tok.encode(a.prompt, add_special_tokens=False).ids
    out = m.greedy(ids, a.n)
    print(ids, "->", out)
    print(repr(a.prompt + tok.decode(out)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--tokenizer", default=None, help="tokenizer.json (default: made from the GGUF)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vectors")
    v.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "smollm2_ref"))
    v.add_argument("--model-sha256",
                   default="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
    p = sub.add_parser("ppl")
    p.add_argument("--text", required=True)
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--max-tokens", type=int, default=16384, help="0: the whole file")
    p.add_argument("--float64", action="store_true")
    p.add_argument("--verbose", action="store_true")
    g = sub.add_parser("generate")
    g.add_argument("prompt")
    g.add_argument("-n", type=int, default=24)
    a = ap.parse_args()
    {"vectors": cmd_vectors, "ppl": cmd_ppl, "generate": cmd_generate}[a.cmd](a)


if __name__ == "__main__":
    main()
