#!/usr/bin/env python3
"""Reads a DeciLM ("nemotron-nas") directory the way transformers and vLLM do,
independently of the toolkit's C reader, and checks that the shapes it implies
are the shapes stored in the safetensors files.

The width rule is transformers' modeling_decilm / vLLM's
`_ffn_mult_to_intermediate_size`: int(2 * ffn_mult * hidden / 3) rounded up
to a multiple of 256. KV heads are num_attention_heads // n_heads_in_group.
Our per-block "intermediate_size" extension is ignored here, as other readers
ignore it; a block whose width only that extension gives is reported.

  check_decilm_config.py DIR [DIR ...]    exit 0: every block reads back exactly
"""
import json
import os
import struct
import sys


def _find_multiple(n, k):
    if n % k == 0:
        return n
    return n + k - (n % k)


def _ffn_mult_to_intermediate_size(ffn_mult, n_embd):
    intermediate_size = int(2 * ffn_mult * n_embd / 3)
    return _find_multiple(intermediate_size, 256)


def safetensors_shapes(d):
    files = [f for f in os.listdir(d) if f.endswith(".safetensors")]
    shapes = {}
    for f in files:
        with open(os.path.join(d, f), "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name != "__metadata__":
                shapes[name] = list(info["shape"])
    return shapes


def check(d):
    cfg = json.load(open(os.path.join(d, "config.json")))
    shapes = safetensors_shapes(d)
    hidden = cfg["hidden_size"]
    n_head = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or hidden // n_head
    problems = []
    blocks = cfg["block_configs"]
    if len(blocks) != cfg["num_hidden_layers"]:
        problems.append("block_configs has %d entries for %d layers" % (len(blocks), cfg["num_hidden_layers"]))
    widths = []
    for i, b in enumerate(blocks):
        p = "model.layers.%d." % i
        a, f = b["attention"], b["ffn"]
        want = {}
        if a.get("no_op"):
            pass
        elif a.get("replace_with_linear"):
            want[p + "self_attn.linear_attn.weight"] = [hidden, hidden]
        else:
            n_kv = n_head // a["n_heads_in_group"]
            want[p + "self_attn.q_proj.weight"] = [n_head * head_dim, hidden]
            want[p + "self_attn.k_proj.weight"] = [n_kv * head_dim, hidden]
            want[p + "self_attn.v_proj.weight"] = [n_kv * head_dim, hidden]
            want[p + "self_attn.o_proj.weight"] = [hidden, n_head * head_dim]
        if f.get("no_op"):
            widths.append("noop")
        elif f.get("replace_with_linear"):
            want[p + "mlp.linear_mlp.weight"] = [hidden, hidden]
            widths.append("linear")
        else:
            n_ff = _ffn_mult_to_intermediate_size(f["ffn_mult"], hidden)
            widths.append(n_ff)
            want[p + "mlp.gate_proj.weight"] = [n_ff, hidden]
            want[p + "mlp.up_proj.weight"] = [n_ff, hidden]
            want[p + "mlp.down_proj.weight"] = [hidden, n_ff]
            ext = f.get("intermediate_size")
            if ext is not None and ext != n_ff:
                problems.append("layer %d: ffn_mult %r reads as width %d elsewhere; only puzzle's "
                                "intermediate_size says %d" % (i, f["ffn_mult"], n_ff, ext))
        for name, shape in want.items():
            if name not in shapes:
                problems.append("%s: missing (config.json implies %s)" % (name, shape))
            elif shapes[name] != shape:
                problems.append("%s: stored %s, config.json read as DeciLM implies %s" % (name, shapes[name], shape))
    return problems, widths


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    bad = 0
    for d in sys.argv[1:]:
        problems, widths = check(d)
        print("%s: %d layers, FFN widths as DeciLM readers see them: %s" % (d, len(widths), widths))
        for p in problems:
            print("  MISMATCH " + p)
        bad += bool(problems)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
