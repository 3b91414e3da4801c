#!/usr/bin/env bash
# labels: cpu model
# `puzzle plan` from config.json alone: Llama-3.1-8B and -70B shapes, a DeciLM
# child with no-op attention, a random heterogeneous test model; JSON fields
# and sane ranges, the table, SLO sizing, and bad inputs.
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:-}"
# py FILE EXPR: evaluates a Python boolean over the JSON object d.
py() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1"; }

mkdir -p "$tmp/l8" "$tmp/l70" "$tmp/deci"
cat >"$tmp/l8/config.json" <<'JSON'
{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":4096,"intermediate_size":14336,
 "num_hidden_layers":32,"num_attention_heads":32,"num_key_value_heads":8,"vocab_size":128256,
 "max_position_embeddings":131072,"rms_norm_eps":1e-5,"rope_theta":500000.0,"tie_word_embeddings":false,
 "bos_token_id":128000,"eos_token_id":128001}
JSON
cat >"$tmp/l70/config.json" <<'JSON'
{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":8192,"intermediate_size":28672,
 "num_hidden_layers":80,"num_attention_heads":64,"num_key_value_heads":8,"vocab_size":128256,
 "max_position_embeddings":131072,"rms_norm_eps":1e-5,"rope_theta":500000.0,"tie_word_embeddings":false,
 "bos_token_id":128000,"eos_token_id":128001}
JSON
# The 8B shape as DeciLM with attention removed from every other layer.
python3 - "$tmp/deci/config.json" <<'PY'
import json, sys
blocks = []
for i in range(32):
    att = {"no_op": True, "replace_with_linear": False, "n_heads_in_group": None} if i % 2 else \
          {"no_op": False, "replace_with_linear": False, "n_heads_in_group": 4}
    blocks.append({"attention": att, "ffn": {"no_op": False, "replace_with_linear": False, "ffn_mult": 5.25}})
json.dump({"architectures": ["DeciLMForCausalLM"], "model_type": "nemotron-nas", "hidden_size": 4096,
           "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 128256,
           "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
           "tie_word_embeddings": False, "bos_token_id": 128000, "eos_token_id": 128001,
           "block_configs": blocks}, open(sys.argv[1], "w"))
PY

# Llama-3.1-8B on 8 H100s, fp8, as JSON.
"$BIN" plan "$tmp/l8" --hardware H100 --gpus 8 --input 128 --output 1024 --dtype fp8 --kv-dtype fp8 --json >"$tmp/p8.json" 2>"$tmp/e"
check "8B plan exit" '[ $? -eq 0 ]'
check "8B fields" 'py "$tmp/p8.json" "all(k in d for k in [\"tp\",\"replicas\",\"gpus\",\"batch\",\"max_batch\",\"memory_per_gpu_bytes\",\"ttft_ms\",\"tpot_ms\",\"tokens_per_s_per_gpu\",\"tokens_per_s_total\",\"requests_per_s\",\"hardware\"])"'
check "8B hardware resolved" 'py "$tmp/p8.json" "d[\"hardware\"][\"id\"]==\"h100_sxm\" and d[\"dtype\"]==\"fp8\" and d[\"kv_dtype\"]==\"fp8\""'
check "8B replicas x tp = gpus" 'py "$tmp/p8.json" "d[\"replicas\"]*d[\"tp\"]==8 and d[\"gpus\"]==8"'
check "8B batch is the largest that fits" 'py "$tmp/p8.json" "0<d[\"batch\"]==d[\"max_batch\"]"'
check "8B memory within usable" 'py "$tmp/p8.json" "(m:=d[\"memory_per_gpu_bytes\"]) and m[\"total\"]<=m[\"usable\"]<=86e9 and abs(m[\"total\"]-m[\"weights\"]-m[\"kv_cache\"]-m[\"workspace\"]-m[\"reserve\"])<1e3"'
check "8B fp8 weights ~8-9.5 GB at tp 1" 'py "$tmp/p8.json" "d[\"tp\"]!=1 or 7.5e9<d[\"memory_per_gpu_bytes\"][\"weights\"]<9.5e9"'
check "8B throughput sane" 'py "$tmp/p8.json" "3e3<d[\"tokens_per_s_per_gpu\"]<2e5 and abs(d[\"tokens_per_s_total\"]-8*d[\"tokens_per_s_per_gpu\"])<1e-6*d[\"tokens_per_s_total\"]"'
check "8B latencies sane" 'py "$tmp/p8.json" "0<d[\"ttft_ms\"]<5e3 and 0<d[\"tpot_ms\"]<500 and d[\"decode_step_ms\"]<=d[\"tpot_ms\"]"'
check "8B KV per sequence = 1152 tokens x 64 KiB fp8" 'py "$tmp/p8.json" "d[\"tp\"]!=1 or d[\"memory_per_gpu_bytes\"][\"kv_per_sequence\"]==1152*32*2*8*128"'

# bf16 weights are twice fp8's (to within the bf16 norms); bf16 KV is twice fp8 KV.
"$BIN" plan "$tmp/l8" --hardware h100 --gpus 1 --tp 1 --input 128 --output 1024 --json >"$tmp/b8.json" 2>"$tmp/e"
"$BIN" plan "$tmp/l8" --hardware h100 --gpus 1 --tp 1 --input 128 --output 1024 --dtype fp8 --kv-dtype fp8 --json >"$tmp/f8.json" 2>"$tmp/e"
check "bf16 weights ~16 GB" 'py "$tmp/b8.json" "15.5e9<d[\"memory_per_gpu_bytes\"][\"weights\"]<16.8e9"'
check "fp8 halves matrices, fp8 KV halves KV" 'python3 -c "
import json,sys; b=json.load(open(sys.argv[1]))[\"memory_per_gpu_bytes\"]; f=json.load(open(sys.argv[2]))[\"memory_per_gpu_bytes\"]
assert b[\"kv_per_sequence\"]==2*f[\"kv_per_sequence\"]
assert f[\"weights\"]<0.6*b[\"weights\"]" "$tmp/b8.json" "$tmp/f8.json"'
check "fp8 fits more sequences" 'python3 -c "
import json,sys; assert json.load(open(sys.argv[2]))[\"max_batch\"]>json.load(open(sys.argv[1]))[\"max_batch\"]" "$tmp/b8.json" "$tmp/f8.json"'
check "fixed batch honoured" '"$BIN" plan "$tmp/l8" --hardware h100 --gpus 2 --tp 1 --input 128 --output 128 --batch 16 --json | py /dev/stdin "d[\"batch\"]==16 and d[\"replicas\"]==2"'

# DeciLM child with half the attention removed: half the KV cache.
"$BIN" plan "$tmp/deci" --hardware h100 --gpus 1 --tp 1 --input 128 --output 1024 --json >"$tmp/d.json" 2>"$tmp/e"
check "DeciLM plan exit" '[ $? -eq 0 ]'
check "DeciLM half the KV" 'python3 -c "
import json,sys; a=json.load(open(sys.argv[1]))[\"memory_per_gpu_bytes\"]; b=json.load(open(sys.argv[2]))[\"memory_per_gpu_bytes\"]
assert b[\"kv_per_sequence\"]*2==a[\"kv_per_sequence\"] and b[\"weights\"]<a[\"weights\"]" "$tmp/b8.json" "$tmp/d.json"'
check "DeciLM faster decode" 'python3 -c "
import json,sys; assert json.load(open(sys.argv[2]))[\"tokens_per_s_per_gpu\"]>json.load(open(sys.argv[1]))[\"tokens_per_s_per_gpu\"]" "$tmp/b8.json" "$tmp/d.json"'

# Llama-3.1-70B: does not fit one GPU in bf16; 8 GPUs at tp 8 hold ~1/8 of the weights each.
"$BIN" plan "$tmp/l70" --hardware H100 --gpus 1 --input 128 --output 1024 >"$tmp/o" 2>"$tmp/e"
check "70B on one GPU fails" '[ $? -eq 1 ] && grep -q "does not fit" "$tmp/e" && [ $(wc -l <"$tmp/e") -eq 1 ]'
"$BIN" plan "$tmp/l70" --hardware H100 --gpus 8 --tp 8 --input 2048 --output 128 --json >"$tmp/p70.json" 2>"$tmp/e"
check "70B tp 8 exit" '[ $? -eq 0 ]'
check "70B tp 8 weights ~17.6 GB/GPU" 'py "$tmp/p70.json" "d[\"tp\"]==8 and d[\"replicas\"]==1 and 16.5e9<d[\"memory_per_gpu_bytes\"][\"weights\"]<18.5e9"'
check "70B tp 8 sane" 'py "$tmp/p70.json" "100<d[\"tokens_per_s_per_gpu\"]<5e4 and 0<d[\"ttft_ms\"]<1e4 and 0<d[\"tpot_ms\"]<1e3"'
check "70B on B200 and H200" '"$BIN" plan "$tmp/l70" --hardware b200 --gpus 1 --input 128 --output 128 --dtype fp8 >/dev/null && "$BIN" plan "$tmp/l70" --hardware H200 --gpus 1 --input 128 --output 128 --dtype fp8 >/dev/null'
"$BIN" plan "$tmp/l70" --hardware l40s --gpus 8 --input 128 --output 128 --dtype fp8 >"$tmp/t" 2>"$tmp/e"
check "table output" '[ $? -eq 0 ] && grep -q "^throughput" "$tmp/t" && grep -q "^memory/GPU" "$tmp/t" && grep -q "TTFT" "$tmp/t" && grep -q "L40S" "$tmp/t"'

# SLO sizing.
"$BIN" plan "$tmp/l70" --hardware h100 --input 128 --output 1024 --qps 20 --ttft-slo 1000 --tpot-slo 60 --json >"$tmp/s.json" 2>"$tmp/e"
check "SLO exit" '[ $? -eq 0 ]'
check "SLO met" 'py "$tmp/s.json" "(s:=d[\"slo\"]) and s[\"found\"] and s[\"gpus_needed\"]==s[\"tp\"]*s[\"replicas\"] and s[\"ttft_ms\"]<=1000 and s[\"tpot_ms\"]<=60 and s[\"requests_per_s\"]>=20"'
check "SLO more QPS, more GPUs" '"$BIN" plan "$tmp/l70" --hardware h100 --input 128 --output 1024 --qps 200 --ttft-slo 1000 --tpot-slo 60 --json | python3 -c "
import json,sys; a=json.load(open(sys.argv[1]))[\"slo\"]; b=json.load(sys.stdin)[\"slo\"]; assert b[\"gpus_needed\"]>a[\"gpus_needed\"]" "$tmp/s.json"'
"$BIN" plan "$tmp/l70" --hardware h100 --gpus 8 --input 128 --output 1024 --qps 5 --ttft-slo 1000 --tpot-slo 0.5 >"$tmp/t" 2>"$tmp/e"
check "SLO impossible names the bound" '[ $? -eq 0 ] && grep -q "no configuration meets them: tpot bound binds" "$tmp/t"'
"$BIN" plan "$tmp/l70" --hardware h100 --input 128 --output 1024 --qps 5 --ttft-slo 1000 --tpot-slo 0.5 --json | py /dev/stdin "not d[\"slo\"][\"found\"] and d[\"slo\"][\"binding\"]==\"tpot\""
check "SLO impossible JSON" '[ $? -eq 0 ]'

# A random heterogeneous model (gqa, linear, noop of every kind) plans too.
if [ -n "$MAKE" ] && "$MAKE" "$tmp/tm" >/dev/null 2>&1; then
    "$BIN" plan "$tmp/tm" --hardware a100 --gpus 1 --input 16 --output 16 --json >"$tmp/tm.json" 2>"$tmp/e"
    check "heterogeneous test model" '[ $? -eq 0 ] && py "$tmp/tm.json" "d[\"batch\"]>0 and d[\"tokens_per_s_total\"]>0"'
fi
# The reference GGUF's metadata, when fetched.
if [ -f "${PUZZLE_MODEL:-}" ]; then
    "$BIN" plan "$PUZZLE_MODEL" --hardware l40s --gpus 3 --input 64 --output 64 --json >"$tmp/g.json" 2>"$tmp/e"
    check "GGUF metadata" '[ $? -eq 0 ] && py "$tmp/g.json" "d[\"tp\"] in (1,3) and d[\"n_layer\"]==30"'
fi

# Bad inputs: one line each, exit 2.
"$BIN" plan "$tmp/l8" --hardware tpu-v9 --gpus 8 --input 128 --output 128 >"$tmp/o" 2>"$tmp/e"
check "unknown hardware" '[ $? -eq 2 ] && [ $(wc -l <"$tmp/e") -eq 1 ] && grep -q "unknown hardware .tpu-v9." "$tmp/e" && grep -q "h100_sxm" "$tmp/e" && grep -q "a100_80gb_sxm" "$tmp/e" && grep -q "l40s" "$tmp/e"'
"$BIN" plan "$tmp/l8" --hardware h100 --gpus 3 --tp 3 --input 128 --output 128 >"$tmp/o" 2>"$tmp/e"
check "tp not dividing heads" '[ $? -eq 2 ] && [ $(wc -l <"$tmp/e") -eq 1 ] && grep -q "tp 3 does not divide the 32 attention heads" "$tmp/e"'
"$BIN" plan "$tmp/l8" --hardware h100 --gpus 8 --tp 3 --input 128 --output 128 >"$tmp/o" 2>"$tmp/e"
check "gpus not a multiple of tp" '[ $? -eq 2 ] && grep -q "not a multiple" "$tmp/e"'
"$BIN" plan "$tmp/l8" --hardware a100 --gpus 1 --input 128 --output 128 --dtype fp8 >"$tmp/o" 2>"$tmp/e"
check "fp8 on A100" '[ $? -eq 2 ] && grep -q "no fp8" "$tmp/e"'
"$BIN" plan "$tmp/l8" --hardware h100 --input 128 --output 128 >"$tmp/o" 2>"$tmp/e"
check "missing --gpus" '[ $? -eq 2 ] && grep -q -- "--gpus" "$tmp/e"'
"$BIN" plan "$tmp/l8" --hardware h100 --gpus 1 --input 128 --output 128 --batch 100000 >"$tmp/o" 2>"$tmp/e"
check "batch too big" '[ $? -eq 1 ] && grep -q "does not fit" "$tmp/e"'
"$BIN" plan "$tmp/l8" --hardware h100 --gpus 1 --input 128 --output 128 --kv-dtype int4 >"$tmp/o" 2>"$tmp/e"
check "bad kv dtype" '[ $? -eq 2 ] && grep -q "bf16 or fp8" "$tmp/e"'
"$BIN" plan "$tmp/l8" --hardware h100 --gpus 1 --input 128 --output 128 --qps 5 >"$tmp/o" 2>"$tmp/e"
check "qps without SLOs" '[ $? -eq 2 ] && grep -q "go together" "$tmp/e"'
"$BIN" plan "$tmp/nope" --hardware h100 --gpus 1 --input 128 --output 128 >"$tmp/o" 2>"$tmp/e"
check "missing model" '[ $? -ne 0 ] && [ $(wc -l <"$tmp/e") -eq 1 ]'
# A broken hardware file: negative bandwidth, clean message.
sed 's/"mem_bandwidth_bytes_per_s": 3.35e12/"mem_bandwidth_bytes_per_s": -1/' \
    "$(dirname "$0")/../scoring/hardware/h100_sxm.json" >"$tmp/neg.json"
"$BIN" plan "$tmp/l8" --hardware "$tmp/neg.json" --gpus 1 --input 128 --output 128 >"$tmp/o" 2>"$tmp/e"
check "negative bandwidth file" '[ $? -eq 2 ] && [ $(wc -l <"$tmp/e") -eq 1 ] && grep -q "mem_bandwidth_bytes_per_s. must be a positive number" "$tmp/e"'
mkdir -p "$tmp/hw" && cp "$tmp/neg.json" "$tmp/hw/h100_sxm.json"
PUZZLE_HARDWARE_DIR="$tmp/hw" "$BIN" plan "$tmp/l8" --hardware H100 --gpus 1 --input 128 --output 128 >"$tmp/o" 2>"$tmp/e"
check "PUZZLE_HARDWARE_DIR honoured" '[ $? -eq 2 ] && grep -q "positive number" "$tmp/e"'
"$BIN" plan --help | grep -q -- "--ttft-slo"
check "help" '[ $? -eq 0 ]'

finish
