#!/usr/bin/env bash
# labels: cpu model
# FP8 checkpoints: `puzzle quantize` writes a random heterogeneous DeciLM
# model (gqa, linear and noop blocks; the real tokenizer) in the FP8 layout
# vLLM and TensorRT-LLM read; an independent reader (tests/ref/
# check_fp8_checkpoint.py: the safetensors format and e4m3 by their
# definitions, numpy) checks it against the f32 model; reading it back gives
# exactly the model that --dtype fp8 quantizes at load; the calibrated
# activation scales change the result (e4m3 activations) but only a little,
# and so does an FP8 KV cache with the calibrated k_scale / v_scale; and
# the same with per-channel weight scales (--scales channel). The reference
# parent, a plain Llama, is written as LlamaForCausalLM and reads back the same.
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
need_model
PY="${PUZZLE_PYTHON-python3}"

printf 'The quick brown fox jumps over the lazy dog. In 1905, Einstein published four papers.\n' >"$tmp/t.txt"
for i in 1 2 3 4 5 6; do cat "$tmp/t.txt"; done >"$tmp/text.txt"
"$MAKE" "$tmp/h" --variant 0 --seed 3 --tokenizer "$MODEL" >/dev/null
"$BIN" quantize "$tmp/h" --out "$tmp/q" --dtype fp8 --kv-dtype fp8 --data "$tmp/text.txt" --ctx 32 --threads 2 2>"$tmp/e"
check "quantize exit" '[ $? -eq 0 ] && [ -f "$tmp/q/model.safetensors" ] && [ -f "$tmp/q/tokenizer.json" ]'
"$BIN" quantize "$tmp/h" --out "$tmp/q2" --dtype fp8 --kv-dtype fp8 2>/dev/null
check "--kv-dtype needs --data" '[ $? -eq 2 ]'
if [ -n "$PY" ]; then
  "$PY" "$(dirname "$0")/ref/check_fp8_checkpoint.py" "$tmp/q" "$tmp/h" >"$tmp/py" 2>&1
  check "independent reader" '[ $? -eq 0 ] && grep -q "activation scheme static" "$tmp/py"' || cat "$tmp/py" >&2
else
  echo "note: PUZZLE_PYTHON is empty, the independent reader is skipped" >&2
fi

ev() { "$BIN" eval "$@" --ref "$tmp/h" --ref-dtype f32 --text "$tmp/text.txt" --ctx 16 --threads 2 --json 2>/dev/null; }
ev "$tmp/h" --dtype fp8 >"$tmp/a.json"
ev "$tmp/q" --dtype fp8 >"$tmp/b.json"
ev "$tmp/q" --dtype fp8 --act-fp8 >"$tmp/c.json"
check "read back = quantized at load" 'python3 -c "
import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2]))
assert a[\"perplexity\"] == b[\"perplexity\"] and a[\"kl\"] == b[\"kl\"] and a[\"kl\"] > 0, (a, b)
" "$tmp/a.json" "$tmp/b.json"'
check "e4m3 activations differ, a little" 'python3 -c "
import json,sys; b=json.load(open(sys.argv[1])); c=json.load(open(sys.argv[2]))
assert c[\"kl\"] != b[\"kl\"] and c[\"kl\"] < 0.2 and c[\"top1_agreement\"] > 0.6, (b, c)
" "$tmp/b.json" "$tmp/c.json"'
ev "$tmp/q" --dtype fp8 --kv-dtype fp8 >"$tmp/k.json"
check "FP8 KV cache with the calibrated scales: close, not equal" 'python3 -c "
import json,sys; b=json.load(open(sys.argv[1])); k=json.load(open(sys.argv[2]))
assert k[\"kl\"] != b[\"kl\"] and abs(k[\"kl\"] - b[\"kl\"]) < 0.05, (b, k)
" "$tmp/b.json" "$tmp/k.json"'
ev "$tmp/h" --dtype fp8 --fp8-head >"$tmp/hd.json"
check "e4m3 lm_head (row scales): close, not equal" 'python3 -c "
import json,sys; a=json.load(open(sys.argv[1])); h=json.load(open(sys.argv[2]))
assert h[\"kl\"] != a[\"kl\"] and abs(h[\"kl\"] - a[\"kl\"]) < 0.05, (a, h)
" "$tmp/a.json" "$tmp/hd.json"'
"$BIN" eval "$tmp/q" --dtype bf16 --text "$tmp/text.txt" --ctx 16 --threads 2 --json >"$tmp/d.json" 2>/dev/null
check "an FP8 checkpoint loads dequantized too" '[ $? -eq 0 ]'

# Per-channel weight scales (compressed-tensors layout, weight_scale [out, 1])
"$BIN" quantize "$tmp/h" --out "$tmp/qc" --dtype fp8 --kv-dtype fp8 --scales channel --data "$tmp/text.txt" \
  --ctx 32 --threads 2 2>/dev/null
check "quantize --scales channel exit" '[ $? -eq 0 ] && [ -f "$tmp/qc/model.safetensors" ]'
"$BIN" quantize "$tmp/h" --out "$tmp/qx" --dtype fp8 --scales row 2>/dev/null
check "--scales must be tensor or channel" '[ $? -eq 2 ]'
if [ -n "$PY" ]; then
  "$PY" "$(dirname "$0")/ref/check_fp8_checkpoint.py" "$tmp/qc" "$tmp/h" >"$tmp/pyc" 2>&1
  check "independent reader, per-channel" \
    '[ $? -eq 0 ] && grep -q "per-channel scales, activation scheme static" "$tmp/pyc"' || cat "$tmp/pyc" >&2
fi
ev "$tmp/qc" --dtype fp8 >"$tmp/pc.json"
"$BIN" eval "$tmp/qc" --dtype bf16 --ref "$tmp/h" --ref-dtype f32 --text "$tmp/text.txt" --ctx 16 --threads 2 \
  --json >"$tmp/pcb.json" 2>/dev/null
check "per-channel: closer to f32 than per-tensor here, and the same dequantized" 'python3 -c "
import json,sys; b=json.load(open(sys.argv[1])); c=json.load(open(sys.argv[2])); d=json.load(open(sys.argv[3]))
assert 0 < c[\"kl\"] < b[\"kl\"] and abs(d[\"kl\"] - c[\"kl\"]) < 0.1 * c[\"kl\"], (b, c, d)
" "$tmp/b.json" "$tmp/pc.json" "$tmp/pcb.json"'
check "a heterogeneous model's FP8 checkpoint stays DeciLM" \
  'grep -q "\"DeciLMForCausalLM\"" "$tmp/q/config.json" && grep -q block_configs "$tmp/q/config.json"'

# A plain Llama (the reference parent) is written as LlamaForCausalLM, which serving engines
# read without NVIDIA's remote code (results/fp8_loaders.md), and reads back as the same model.
"$BIN" quantize "$MODEL" --out "$tmp/qp" --dtype fp8 --threads 2 2>/dev/null
check "the parent's FP8 checkpoint is LlamaForCausalLM" '[ $? -eq 0 ] &&
  grep -q "\"LlamaForCausalLM\"" "$tmp/qp/config.json" && grep -q "\"model_type\":[[:space:]]*\"llama\"" "$tmp/qp/config.json" &&
  grep -q "\"num_key_value_heads\":[[:space:]]*3" "$tmp/qp/config.json" && ! grep -q block_configs "$tmp/qp/config.json"'
pe() { "$BIN" eval "$1" --dtype fp8 --text "$tmp/text.txt" --ctx 32 --threads 2 --json 2>/dev/null |
  python3 -c "import json,sys; print(repr(json.load(sys.stdin)[\"perplexity\"]))"; }
check "the parent's Llama-form checkpoint reads back = quantized at load" \
  '[ -n "$(pe "$tmp/qp")" ] && [ "$(pe "$tmp/qp")" = "$(pe "$MODEL")" ]'
finish
