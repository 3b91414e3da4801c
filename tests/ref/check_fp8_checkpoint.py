#!/usr/bin/env python3
"""Independent check of an FP8 checkpoint written by `puzzle quantize`.

usage: check_fp8_checkpoint.py FP8_DIR REF_DIR

FP8_DIR is the quantized Hugging Face directory, REF_DIR the same model in
f32 (both model.safetensors). The safetensors files are read by their
specification (u64 header length, JSON header, raw little-endian data) with
numpy, since numpy has no float8 type for the safetensors package to hand
out; e4m3fn codes are decoded by the format's definition: sign, 4 exponent
bits with bias 7, 3 mantissa bits, subnormals m * 2^-9, S.1111.111 NaN.
Checks: quantization_config; every layer projection is F8_E4M3 with a 0-dim
F32 weight_scale equal to amax/448 of its fused group (q/k/v, gate/up) --
or, with per-channel scales (quant_method "compressed-tensors", weights
strategy "channel", as llm-compressor writes and vLLM's
CompressedTensorsW8A8Fp8 reads), an F32 weight_scale of shape [out, 1]
equal to each row's amax/448 -- and dequantizes to the f32 weights within
e4m3 rounding; input_scale and
k_scale / v_scale present and positive when declared; everything else
matches the f32 model (bf16 rounding at most).
"""
import json
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "BF16": np.uint16, "F8_E4M3": np.uint8, "F16": np.float16}


def read_st(path):
    with open(path, "rb") as f:
        buf = f.read()
    n = struct.unpack("<Q", buf[:8])[0]
    hdr = json.loads(buf[8:8 + n])
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        arr = np.frombuffer(buf[8 + n + a:8 + n + b], dtype=DT[t["dtype"]]).reshape(t["shape"])
        out[name] = (t["dtype"], arr)
    return out


def e4m3(codes):
    c = codes.astype(np.int32)
    s = np.where(c & 0x80, -1.0, 1.0)
    e = (c >> 3) & 15
    m = c & 7
    v = np.where(e == 0, m * 2.0 ** -9, (1 + m / 8.0) * 2.0 ** (e - 7.0))
    v = np.where((e == 15) & (m == 7), np.nan, v)
    return s * v


def f32(dt, a):
    if dt == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def main():
    qdir, rdir = sys.argv[1], sys.argv[2]
    cfg = json.load(open(qdir + "/config.json"))
    qc = cfg["quantization_config"]
    assert qc["quant_method"] in ("fp8", "compressed-tensors"), qc
    channel = qc["quant_method"] == "compressed-tensors"
    if channel:
        assert qc["format"] == "float-quantized" and qc["ignore"] == ["lm_head"], qc
        (g,) = qc["config_groups"].values()
        wq, ia = g["weights"], g["input_activations"]
        assert (wq["type"], wq["num_bits"], wq["strategy"], wq["symmetric"], wq["dynamic"]) == \
            ("float", 8, "channel", True, False), wq
        assert (ia["type"], ia["num_bits"]) == ("float", 8), ia
        assert (ia["strategy"], ia["dynamic"]) in (("tensor", False), ("token", True)), ia
        static = not ia["dynamic"]
        scheme = "static" if static else "dynamic"
    else:
        assert qc["activation_scheme"] in ("static", "dynamic"), qc
        static = qc["activation_scheme"] == "static"
        scheme = qc["activation_scheme"]
    kv = qc.get("kv_cache_scheme") is not None
    q = read_st(qdir + "/model.safetensors")
    r = read_st(rdir + "/model.safetensors")
    projs = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "linear_attn", "linear_mlp")
    n_fp8 = 0
    groups = {}
    for name, (rdt, ra) in r.items():
        assert name in q, "missing " + name
        qdt, qa = q[name]
        w = f32(rdt, ra).astype(np.float64)
        if name.startswith("model.layers.") and name.endswith(".weight") and any(p in name for p in projs):
            assert qdt == "F8_E4M3", (name, qdt)
            base = name[: -len(".weight")]
            sdt, sc = q[base + ".weight_scale"]
            if channel:
                assert sdt == "F32" and sc.shape == (qa.shape[0], 1), (name, sdt, sc.shape)
                s = sc.astype(np.float64)  # [out, 1]: broadcasts over each row
                amax = np.abs(w).max(axis=1, keepdims=True)
                want = np.where(amax > 0, amax / 448.0, 1.0)
                assert np.all(np.abs(s - want) <= 1e-6 * want), name
            else:
                assert sdt == "F32" and sc.shape == (), (name, sdt, sc.shape)
                s = float(sc)
            dq = e4m3(qa) * s
            assert not np.isnan(dq).any(), name
            # round to nearest: within half a step of e4m3 (relative 2^-4 for
            # normals, 2^-10 * scale absolute in the subnormal range)
            tol = np.maximum(np.abs(w) * 2.0 ** -4, 2.0 ** -10 * s) * (1 + 1e-6)
            bad = np.abs(dq - w) > tol
            assert not bad.any(), (name, int(bad.sum()))
            layer = base.rsplit(".", 2)[0]
            key = layer + (":qkv" if any(p in base for p in ("q_proj", "k_proj", "v_proj")) else
                           ":gu" if any(p in base for p in ("gate_proj", "up_proj")) else ":" + base)
            if not channel:
                groups.setdefault(key, []).append((s, float(np.abs(w).max())))
            if static:
                xdt, xs = q[base + ".input_scale"]
                assert xdt == "F32" and xs.shape == () and float(xs) > 0, (name, xdt, xs)
            n_fp8 += 1
        else:
            assert qdt in ("F32", "BF16"), (name, qdt)
            dq = f32(qdt, qa).astype(np.float64)
            assert np.all(np.abs(dq - w) <= np.abs(w) * 2.0 ** -8 + 1e-30), name
    for key, members in groups.items():
        scales = {s for s, _ in members}
        assert len(scales) == 1, (key, scales)  # one scale per fused group
        s = scales.pop()
        amax = max(a for _, a in members)
        assert abs(s - amax / 448.0) <= 1e-6 * s, (key, s, amax / 448.0)
    n_kv = 0
    for i in range(cfg["num_hidden_layers"]):
        k = "model.layers.%d.self_attn.k_scale" % i
        if "model.layers.%d.self_attn.q_proj.weight" % i in r:
            assert (k in q) == kv, (k, kv)
            if kv:
                v = "model.layers.%d.self_attn.v_scale" % i
                assert float(q[k][1]) > 0 and float(q[v][1]) > 0
                n_kv += 1
    assert n_fp8 > 0
    print("ok: %d fp8 matrices, %s, activation scheme %s, %d layers with KV scales"
          % (n_fp8, "per-channel scales" if channel else "%d scale groups" % len(groups), scheme, n_kv))


if __name__ == "__main__":
    main()
