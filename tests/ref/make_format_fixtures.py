#!/usr/bin/env python3
"""Writes the format fixtures under tests/data/formats/ with independent
producers (the `gguf` package for GGUF and its numpy quantizers, the
`safetensors` Rust serializer for safetensors), together with what a correct
reader must find in them. The C tests (tests/test_{tensor,gguf,safetensors}.c)
compare against these files bit for bit.

    pip install gguf numpy safetensors
    python3 tests/ref/make_format_fixtures.py [outdir]

Outputs (all small, deterministic for a given package version):
  small.gguf, small.manifest, small.expected.f32   every metadata type, F32/F16/
                                                    BF16/Q8_0/Q4_0/Q4_1 tensors
  align64.gguf, align64.manifest, align64.expected.f32   general.alignment = 64
  conv_cases.bin   n (u32), n f32 inputs, n bf16 (gguf's fp32->bf16), n f16 (numpy)
  st_single.safetensors, st_sharded/ (2 shards + index), st.manifest, st.expected.bin

Manifest lines (space separated; strings as hex bytes, "-" when empty):
  kv <key> <type> <value>        ints decimal; f32/f64 as hex bits; bool 0/1
  arr <key> <elem_type> <n> <v0> <v1> ...
  tensor <name> <ggml_type> <n_dims> <ne0> <ne1> <ne2> <ne3> <first float in .expected.f32>
  st <file> <name> <dtype> <n_dims> <dims...> <byte offset in st.expected.bin> <nbytes>
"""
import json
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGUFWriter, GGUFValueType as VT, GGMLQuantizationType as QT
from safetensors import TensorSpec, serialize_file

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "data", "formats")
rng = np.random.default_rng(20240611)


def hexs(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return b.hex() if b else "-"


def fbits32(x):
    return "%08x" % struct.unpack("<I", struct.pack("<f", x))[0]


def fbits64(x):
    return "%016x" % struct.unpack("<Q", struct.pack("<d", x))[0]


def fmt_val(t, v):
    if t == VT.STRING:
        return hexs(v)
    if t == VT.FLOAT32:
        return fbits32(v)
    if t == VT.FLOAT64:
        return fbits64(v)
    if t == VT.BOOL:
        return "1" if v else "0"
    return str(int(v))


def random_weights(shape, scale=1.0):
    x = (rng.standard_normal(shape) * scale).astype(np.float32)
    return x


class GGUFFixture:
    def __init__(self, name, alignment=None):
        self.name = name
        self.path = os.path.join(OUT, name + ".gguf")
        self.w = GGUFWriter(self.path, "llama")
        if alignment:
            self.w.add_custom_alignment(alignment)
        self.lines = []
        self.expected = []
        self.n_expected = 0

    def kv(self, key, val, vtype):
        self.w.add_key_value(key, val, vtype)
        self.lines.append("kv %s %d %s" % (key, int(vtype), fmt_val(vtype, val)))

    def arr(self, key, vals, sub):
        self.w.add_key_value(key, vals, VT.ARRAY, sub_type=sub)
        line = "arr %s %d %d %s" % (key, int(sub), len(vals), " ".join(fmt_val(sub, v) for v in vals))
        self.lines.append(line.rstrip())

    def tensor(self, name, x, qtype):
        """x: float32 array in numpy (outermost-first) shape."""
        shape = x.shape
        if qtype == QT.F32:
            raw = x.astype(np.float32)
            self.w.add_tensor(name, raw)
            deq = raw
        elif qtype == QT.F16:
            raw = x.astype(np.float16)
            self.w.add_tensor(name, raw)
            deq = raw.astype(np.float32)
        else:
            raw = gguf.quants.quantize(x, qtype)
            self.w.add_tensor(name, raw, raw_dtype=qtype)
            deq = gguf.quants.dequantize(raw, qtype).reshape(shape).astype(np.float32)
        ne = list(reversed(shape)) + [1] * (4 - len(shape))
        self.lines.append("tensor %s %d %d %s %d" % (name, int(qtype), len(shape),
                                                     " ".join(str(n) for n in ne), self.n_expected))
        self.expected.append(deq.reshape(-1))
        self.n_expected += deq.size

    def finish(self):
        w = self.w
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        with open(os.path.join(OUT, self.name + ".manifest"), "w") as f:
            f.write("\n".join(self.lines) + "\n")
        np.concatenate(self.expected).astype("<f4").tofile(
            os.path.join(OUT, self.name + ".expected.f32"))


def quant_friendly(shape):
    """Random weights with a few blocks that exercise edge cases."""
    x = random_weights(shape, 0.5)
    flat = x.reshape(-1)
    flat[0:32] = 0.0                      # all-zero block: d = 0
    if flat.size >= 96:
        flat[32:64] = 1.25                # constant block
        flat[64:96] = np.linspace(-3, 7, 32, dtype=np.float32)  # lopsided range
    return x


def make_small():
    g = GGUFFixture("small")
    # Every scalar type.
    g.kv("test.u8", 200, VT.UINT8)
    g.kv("test.i8", -100, VT.INT8)
    g.kv("test.u16", 60000, VT.UINT16)
    g.kv("test.i16", -30000, VT.INT16)
    g.kv("test.u32", 4000000000, VT.UINT32)
    g.kv("test.i32", -2000000000, VT.INT32)
    g.kv("test.f32", float(np.float32(3.14159)), VT.FLOAT32)
    g.kv("test.bool_t", True, VT.BOOL)
    g.kv("test.bool_f", False, VT.BOOL)
    g.kv("test.string", "h\u00e9llo, w\u00f6rld \u2603", VT.STRING)
    g.kv("test.empty_string", "", VT.STRING)
    g.kv("test.u64", 2**40 + 3, VT.UINT64)
    g.kv("test.u64_big", 2**63 + 5, VT.UINT64)   # does not fit an int64
    g.kv("test.i64", -(2**40) - 7, VT.INT64)
    g.kv("test.f64", 1.0 / 3.0, VT.FLOAT64)
    # Every array element type (no nested arrays: readers must reject them).
    g.arr("test.arr_u8", [0, 1, 255], VT.UINT8)
    g.arr("test.arr_i8", [-128, 0, 127], VT.INT8)
    g.arr("test.arr_u16", [0, 65535], VT.UINT16)
    g.arr("test.arr_i16", [-32768, 32767], VT.INT16)
    g.arr("test.arr_u32", [7, 4294967295], VT.UINT32)
    g.arr("test.arr_i32", [int(v) for v in rng.integers(-2**31, 2**31, 9)], VT.INT32)
    g.arr("test.arr_u64", [0, 2**64 - 1], VT.UINT64)
    g.arr("test.arr_i64", [-(2**63), 2**63 - 1], VT.INT64)
    g.arr("test.arr_f32", [float(v) for v in random_weights(5)], VT.FLOAT32)
    g.arr("test.arr_f64", [0.1, -2.5e300], VT.FLOAT64)
    g.arr("test.arr_bool", [True, False, True], VT.BOOL)
    g.arr("test.arr_str", ["a", "", "bc", "\u00fcn\u00efc\u00f6d\u00e9", "<|im_start|>"], VT.STRING)
    # Tensors: numpy shapes are outermost first; GGUF stores them reversed.
    g.tensor("t.f32", random_weights((3, 8)), QT.F32)
    g.tensor("t.f32_4d", random_weights((2, 1, 3, 4)), QT.F32)
    g.tensor("t.f16", random_weights((2, 3, 4), 10.0), QT.F16)
    g.tensor("t.bf16", random_weights((2, 32), 100.0), QT.BF16)
    g.tensor("t.q8_0", quant_friendly((4, 64)), QT.Q8_0)
    g.tensor("t.q4_0", quant_friendly((2, 96)), QT.Q4_0)
    g.tensor("t.q4_1", quant_friendly((3, 64)), QT.Q4_1)
    g.tensor("t.q4_1_big", random_weights((2, 128), 0.02), QT.Q4_1)
    g.finish()


def make_align64():
    g = GGUFFixture("align64", alignment=64)
    g.kv("test.note", "alignment 64", VT.STRING)
    g.tensor("a", random_weights((5,)), QT.F32)       # 20 bytes: padded to 64
    g.tensor("b", random_weights((3, 7)), QT.F16)     # 42 bytes
    g.tensor("c", quant_friendly((1, 96)), QT.Q8_0)
    g.finish()


def make_conv_cases():
    specials = [0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, 65504.0, 65519.996, 65520.0, 65536.0, 1e10,
                -1e10, 2.0**-14, 2.0**-24, 2.0**-25, 2.0**-25 * 1.0001, 2.0**-26, 1.5 * 2.0**-24,
                2.5 * 2.0**-24, 6.1e-5, 3.4e38, 1e-45, 1e-40, -1e-40,
                float("inf"), float("-inf")]
    x = np.array(specials, dtype=np.float32)
    bits = np.concatenate([
        np.array([0x7fc00000, 0x7f800001, 0xffbfffff, 0x7fffffff, 0x3f808000, 0x3f818000,
                  0x3f80ffff, 0x3f817fff, 0x7f7fffff, 0x00000001, 0x007fffff, 0x387fe000,
                  0x38800000, 0x33800000, 0x477fefff, 0x477ff000], dtype=np.uint32),
        rng.integers(0, 2**32, 3000, dtype=np.uint64).astype(np.uint32),
        # f32 values on and beside the halfway points of f16 and bf16.
        (random_weights(500).view(np.uint32) & np.uint32(0xffffe000)) | np.uint32(0x1000),
        (random_weights(500).view(np.uint32) & np.uint32(0xffff0000)) | np.uint32(0x8000),
    ])
    x = np.concatenate([x, bits.view(np.float32), random_weights(500, 1000.0)]).astype(np.float32)
    bf = gguf.quants.quantize(x, QT.BF16).view(np.uint16)
    with np.errstate(all="ignore"):
        hf = x.astype(np.float16).view(np.uint16)
    with open(os.path.join(OUT, "conv_cases.bin"), "wb") as f:
        f.write(struct.pack("<I", x.size))
        f.write(x.astype("<f4").tobytes())
        f.write(bf.astype("<u2").tobytes())
        f.write(hf.astype("<u2").tobytes())


ST_DTYPES = {  # safetensors name: (TensorSpec dtype, numpy dtype for the bytes)
    "F64": ("float64", np.float64), "F32": ("float32", np.float32), "F16": ("float16", np.float16),
    "BF16": ("bfloat16", np.uint16), "I64": ("int64", np.int64), "I32": ("int32", np.int32),
    "I16": ("int16", np.int16), "I8": ("int8", np.int8), "U8": ("uint8", np.uint8),
    "U16": ("uint16", np.uint16), "U32": ("uint32", np.uint32), "U64": ("uint64", np.uint64),
    "BOOL": ("bool", np.uint8), "F8_E4M3": ("float8_e4m3fn", np.uint8),
    "F8_E5M2": ("float8_e5m2", np.uint8),
}


def st_array(dtype, shape):
    nd = ST_DTYPES[dtype][1]
    n = int(np.prod(shape)) if shape else 1
    if dtype == "BOOL":
        a = rng.integers(0, 2, n).astype(np.uint8)
    elif dtype in ("F64", "F32", "F16"):
        a = random_weights(n).astype(nd)
    elif dtype == "BF16":
        a = (random_weights(n).view(np.uint32) >> 16).astype(np.uint16)
    else:
        info = np.iinfo(nd)
        a = rng.integers(info.min, info.max, n, dtype=nd, endpoint=True)
    return np.ascontiguousarray(a)


class STExpect:
    def __init__(self):
        self.lines = []
        self.blob = bytearray()

    def add(self, fname, name, dtype, shape, arr):
        b = arr.tobytes()
        self.lines.append("st %s %s %s %d %s %d %d" % (
            fname, name, dtype, len(shape), " ".join(str(s) for s in shape), len(self.blob), len(b)))
        self.lines[-1] = " ".join(self.lines[-1].split())  # rank 0: no double space
        self.blob += b


def st_write(path, tensors, meta, exp, tag):
    keep, specs = [], {}
    for name, dtype, shape in tensors:
        a = st_array(dtype, shape)
        keep.append(a)
        specs[name] = TensorSpec(dtype=ST_DTYPES[dtype][0], shape=list(shape),
                                 data_ptr=a.ctypes.data, data_len=a.nbytes)
        exp.add(tag, name, dtype, shape, a)
    serialize_file(specs, path, metadata=meta)


def make_safetensors():
    exp = STExpect()
    single = [("w.f64", "F64", (3,)), ("w.f32", "F32", (4, 5)), ("w.f16", "F16", (2, 3, 2)),
              ("w.bf16", "BF16", (7,)), ("w.i64", "I64", (2,)), ("w.i32", "I32", (3,)),
              ("w.i16", "I16", (5,)), ("w.i8", "I8", (9,)), ("w.u8", "U8", (1, 3)),
              ("w.u16", "U16", (2,)), ("w.u32", "U32", (2,)), ("w.u64", "U64", (2,)),
              ("w.bool", "BOOL", (4,)), ("w.f8e4m3", "F8_E4M3", (6,)), ("w.f8e5m2", "F8_E5M2", (3,)),
              ("w.scalar", "F32", ()), ("w.empty", "F32", (0, 3)),
              ("model.layers.0.mlp.down_proj.weight", "BF16", (4, 6))]
    st_write(os.path.join(OUT, "st_single.safetensors"), single,
             {"format": "pt", "note": "fixture \u00e9"}, exp, "st_single.safetensors")

    d = os.path.join(OUT, "st_sharded")
    os.makedirs(d, exist_ok=True)
    shards = [[("model.embed_tokens.weight", "BF16", (16, 8)), ("model.norm.weight", "F32", (8,))],
              [("model.layers.0.self_attn.q_proj.weight", "BF16", (8, 8)),
               ("model.layers.0.input_layernorm.weight", "F32", (8,)),
               ("lm_head.weight", "F16", (16, 8))]]
    weight_map, total = {}, 0
    for i, sh in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        st_write(os.path.join(d, fname), sh, {"format": "pt"}, exp, "st_sharded/" + fname)
        for name, dtype, shape in sh:
            weight_map[name] = fname
            total += int(np.prod(shape)) * np.dtype(ST_DTYPES[dtype][1]).itemsize
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(OUT, "st.manifest"), "w") as f:
        f.write("\n".join(exp.lines) + "\n")
    with open(os.path.join(OUT, "st.expected.bin"), "wb") as f:
        f.write(bytes(exp.blob))


def make_model_spots():
    """Spot values of the reference parent, dequantized by gguf-py, for
    test_gguf's $PUZZLE_MODEL check: the first and last 64 values of a few
    tensors of each type, as f32 bit patterns."""
    path = os.environ.get("PUZZLE_MODEL",
                          os.path.expanduser("~/.cache/puzzle/SmolLM2-135M-Instruct.Q4_1.gguf"))
    if not os.path.exists(path):
        print("no reference model at", path, "- keeping the old model_spots.txt")
        return
    r = gguf.GGUFReader(path)
    names = ["token_embd.weight", "blk.0.ffn_down.weight", "blk.29.attn_v.weight", "output_norm.weight"]
    lines = []
    for t in r.tensors:
        if t.name not in names:
            continue
        x = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1).astype(np.float32)
        for start in (0, x.size - 64):
            lines.append("%s %d %s" % (t.name, start, " ".join(
                "%08x" % v for v in x[start:start + 64].view(np.uint32))))
    with open(os.path.join(OUT, "model_spots.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    make_small()
    make_align64()
    make_conv_cases()
    make_safetensors()
    make_model_spots()
    print("wrote fixtures to", os.path.abspath(OUT))
