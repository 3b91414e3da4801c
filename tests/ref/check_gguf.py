#!/usr/bin/env python3
"""check_gguf.py — an independent reader (gguf-py, llama.cpp's own Python
package) for GGUF files written by pz_model_save_gguf (tests/test_gguf_write.c).

  check_gguf.py OURS.gguf --hf DIR      tensors equal, byte for byte, to a
      Hugging Face directory (model.safetensors) of the same model, after the
      Q/K row permutation of convert_hf_to_gguf.py (LlamaModel.permute)
  check_gguf.py OURS.gguf --orig ORIG   names, shapes, tokenizer arrays equal
      to an original GGUF, and a few tensors equal to its dequantized values

Exits 0 when every check passes, 1 otherwise (one line per failure)."""
import json
import struct
import sys

import numpy as np
import gguf

failures = []


def fail(msg):
    failures.append(msg)
    print("check_gguf.py: FAIL:", msg, file=sys.stderr)


def val(reader, key):
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def common_checks(r):
    if val(r, "general.alignment") != 32:
        fail("general.alignment is %r" % val(r, "general.alignment"))
    for t in r.tensors:
        if (t.data_offset - r.data_offset) % 32:
            fail("%s at unaligned offset %d" % (t.name, t.data_offset))
        if t.tensor_type not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.BF16):
            fail("%s has type %s" % (t.name, t.tensor_type.name))
    arch = val(r, "general.architecture")
    if arch not in ("llama", "deci"):
        fail("general.architecture is %r" % arch)
    return arch


def hf_to_gguf_name(n):
    fixed = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if n in fixed:
        return fixed[n]
    parts = n.split(".")  # model.layers.N.<rest>
    rest = ".".join(parts[3:])
    m = {"input_layernorm.weight": "attn_norm", "post_attention_layernorm.weight": "ffn_norm",
         "self_attn.q_proj.weight": "attn_q", "self_attn.k_proj.weight": "attn_k",
         "self_attn.v_proj.weight": "attn_v", "self_attn.o_proj.weight": "attn_output",
         "self_attn.linear_attn.weight": "attn_output", "mlp.gate_proj.weight": "ffn_gate",
         "mlp.up_proj.weight": "ffn_up", "mlp.down_proj.weight": "ffn_down",
         "mlp.linear_mlp.weight": "ffn_down"}  # W of the linear-FFN stand-in
    return "blk.%s.%s.weight" % (parts[2], m[rest])


def permute(w, n_head):
    # convert_hf_to_gguf.py LlamaModel.permute, on any element type
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
             .swapaxes(1, 2).reshape(w.shape))


def check_hf(r, arch, hf_dir):
    cfg = json.load(open(hf_dir + "/config.json"))
    raw = open(hf_dir + "/model.safetensors", "rb").read()
    hl = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + hl])
    header.pop("__metadata__", None)
    body = raw[8 + hl:]
    n_head = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    ours = {t.name: t for t in r.tensors}
    expect = set()
    for name, e in header.items():
        gname = hf_to_gguf_name(name)
        expect.add(gname)
        t = ours.get(gname)
        if t is None:
            fail("missing tensor %s" % gname)
            continue
        dt = {"F32": np.float32, "BF16": np.uint16}[e["dtype"]]
        want_type = {"F32": gguf.GGMLQuantizationType.F32, "BF16": gguf.GGMLQuantizationType.BF16}[e["dtype"]]
        a, b = e["data_offsets"]
        w = np.frombuffer(body[a:b], dtype=dt).reshape(e["shape"])
        if t.tensor_type != want_type:
            fail("%s: type %s, expected %s" % (gname, t.tensor_type.name, e["dtype"]))
        if list(t.shape) != list(reversed(e["shape"])):
            fail("%s: shape %s, expected %s (innermost first)" % (gname, list(t.shape), list(reversed(e["shape"]))))
            continue
        if gname.endswith("attn_q.weight") or gname.endswith("attn_k.weight"):
            w = permute(w, w.shape[0] // head_dim)  # n_head for Q, n_head_kv for K
        if np.ascontiguousarray(w).tobytes() != t.data.tobytes():
            fail("%s: values differ" % gname)
    check_standins(r, arch, cfg, ours, expect)
    extra = set(ours) - expect
    if extra:
        fail("unexpected tensors %s" % sorted(extra))
    if val(r, arch + ".block_count") != cfg["num_hidden_layers"]:
        fail("block_count %r" % val(r, arch + ".block_count"))
    if val(r, arch + ".embedding_length") != cfg["hidden_size"]:
        fail("embedding_length %r" % val(r, arch + ".embedding_length"))
    print("check_gguf.py: %d tensors match %s (arch %s)" % (len(expect), hf_dir, arch))


def check_standins(r, arch, cfg, ours, expect):
    """llama.cpp's deci graph has no linear FFN and skips a layer whose FFN
    width is 0: a linear FFN must be a SwiGLU of width hidden with a zero gate,
    gate bias 32 and up = I/32 (down = W), a noop FFN after attention a zero
    SwiGLU of width 32, and the deci width array must say so."""
    blocks = cfg.get("block_configs")
    if arch != "deci" or not blocks:
        return
    h = cfg["hidden_size"]
    widths = list(val(r, "deci.feed_forward_length") or [])
    kinds = list(val(r, "puzzle.ffn_kind") or [])
    for i, b in enumerate(blocks):
        f, a = b["ffn"], b["attention"]
        p = "blk.%d." % i
        want = {}
        if f.get("replace_with_linear"):
            kind, width = "linear", h
            want = {p + "ffn_gate.weight": ("zero", [h, h]), p + "ffn_gate.bias": ("const32", [h]),
                    p + "ffn_up.weight": ("eye/32", [h, h])}
        elif f.get("no_op"):
            kind, width = "noop", 0 if a.get("no_op") else 32
            if width:
                want = {p + "ffn_norm.weight": ("any", [h]), p + "ffn_gate.weight": ("zero", [h, 32]),
                        p + "ffn_up.weight": ("zero", [h, 32]), p + "ffn_down.weight": ("zero", [32, h])}
        else:
            kind, width = "swiglu", None
        if i < len(kinds) and kinds[i] != kind:
            fail("puzzle.ffn_kind[%d] is %r, expected %r" % (i, kinds[i], kind))
        if width is not None and (i >= len(widths) or widths[i] != width):
            fail("deci.feed_forward_length[%d] is %r, expected %d" % (i, widths[i] if i < len(widths) else None, width))
        for name, (what, shape) in want.items():
            expect.add(name)
            t = ours.get(name)
            if t is None:
                fail("missing stand-in %s" % name)
                continue
            if list(t.shape) != shape:
                fail("%s: shape %s, expected %s" % (name, list(t.shape), shape))
                continue
            if t.tensor_type == gguf.GGMLQuantizationType.BF16:
                x = (np.frombuffer(t.data.tobytes(), dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                x = np.frombuffer(t.data.tobytes(), dtype=np.float32)
            x = x.reshape(list(reversed(shape)))
            ref = {"zero": lambda: np.zeros_like(x), "const32": lambda: np.full_like(x, 32.0),
                   "eye/32": lambda: np.eye(h, dtype=np.float32) / 32, "any": lambda: x}[what]()
            if not np.array_equal(x, ref):
                fail("%s does not hold %s" % (name, what))
    if len(kinds) != len(blocks):
        fail("puzzle.ffn_kind has %d entries for %d layers" % (len(kinds), len(blocks)))


def check_orig(r, o):
    ours = {t.name: t for t in r.tensors}
    theirs = {t.name: t for t in o.tensors}
    if set(ours) != set(theirs):
        fail("tensor names differ: %s" % sorted(set(ours) ^ set(theirs)))
    for name, t in ours.items():
        if name in theirs and list(t.shape) != list(theirs[name].shape):
            fail("%s: shape %s vs %s" % (name, list(t.shape), list(theirs[name].shape)))
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
                "tokenizer.ggml.eos_token_id", "tokenizer.chat_template", "llama.block_count",
                "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
                "llama.attention.head_count", "llama.attention.head_count_kv",
                "llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon"):
        a, b = val(r, key), val(o, key)
        if a != b:
            fail("%s differs: %.80r vs %.80r" % (key, a, b))
    worst = 0.0
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.29.attn_v.weight",
                 "blk.7.ffn_down.weight", "output_norm.weight"):
        if name not in ours or name not in theirs:
            continue
        a = np.asarray(ours[name].data, dtype=np.float32).reshape(-1)
        b = gguf.quants.dequantize(theirs[name].data, theirs[name].tensor_type).reshape(-1).astype(np.float32)
        err = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))
        worst = max(worst, err)
        if err > 1e-6:
            fail("%s: rel err %g against the original" % (name, err))
    print("check_gguf.py: %d tensors and the tokenizer match the original (worst rel err %g)" % (len(ours), worst))


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in ("--hf", "--orig"):
        print(__doc__, file=sys.stderr)
        return 2
    r = gguf.GGUFReader(sys.argv[1])
    arch = common_checks(r)
    if sys.argv[2] == "--hf":
        check_hf(r, arch, sys.argv[3])
    else:
        check_orig(r, gguf.GGUFReader(sys.argv[3]))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
