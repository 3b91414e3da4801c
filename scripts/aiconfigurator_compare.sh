#!/usr/bin/env bash
# Compares `puzzle plan` with NVIDIA's aiconfigurator 0.12.0 (TensorRT-LLM
# backend, "agg" = in-flight batching) for Llama-3.1-70B and the DeciLM
# Llama-3.3-Nemotron-Super-49B-v1 in FP8 (weights, activations, KV cache) on
# H100 SXM and H200 SXM, over batch sizes up to the memory limit, beside the
# published TensorRT-LLM rows (results/costmodel_validation.md, source A).
# Writes results/costmodel_vs_aiconfigurator.tsv; the table and its reading are
# in results/costmodel_vs_aiconfigurator.md.
#
# aiconfigurator is reference data only: it is installed into its own virtual
# environment (~850 MB, from the Python package index) and runs offline on the
# CPU from the model configs and operation tables its wheel ships.
#
# usage: scripts/aiconfigurator_compare.sh [BUILD_DIR]   (default build)
#        AIC_JSONL=FILE keeps the aiconfigurator rows there, and reuses them when FILE exists.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
puzzle="$build/puzzle"
venv="${AIC_VENV:-$HOME/.cache/puzzle/aic-venv}"
out="$root/results/costmodel_vs_aiconfigurator.tsv"
[ -x "$puzzle" ] || { echo "no $puzzle: build first (scripts/build.sh)" >&2; exit 1; }
if [ ! -x "$venv/bin/aiconfigurator" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'aiconfigurator==0.12.0'
fi
export HF_HUB_OFFLINE=1
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# The same config.json files for both tools: those shipped with aiconfigurator.
cfgdir="$("$venv/bin/python" -c 'import aiconfigurator_core, os; print(os.path.join(os.path.dirname(aiconfigurator_core.__file__), "model_configs"))')"
mkdir -p "$tmp/l70" "$tmp/n49"
cp "$cfgdir/nvidia--Llama-3.1-70B-Instruct-FP8_config.json" "$tmp/l70/config.json"
cp "$cfgdir/nvidia--Llama-3_3-Nemotron-Super-49B-v1_config.json" "$tmp/n49/config.json"

# model dir | aiconfigurator model | system | puzzle hardware | tp
grid="l70 nvidia/Llama-3.1-70B-Instruct-FP8 h100_sxm h100_sxm 2
l70 nvidia/Llama-3.1-70B-Instruct-FP8 h200_sxm h200_sxm 1
n49 nvidia/Llama-3_3-Nemotron-Super-49B-v1 h100_sxm h100_sxm 1
n49 nvidia/Llama-3_3-Nemotron-Super-49B-v1 h200_sxm h200_sxm 1"
lens="128 2048
2048 128
2048 2048"
batches="1 4 16 64 128 256 512 1024 2048"

jsonl="${AIC_JSONL:-$tmp/aic.jsonl}"
if [ ! -s "$jsonl" ]; then
    while read -r dir model sys hw tp; do
        while read -r isl osl; do
            bl=""
            for b in $batches; do
                "$puzzle" plan "$tmp/$dir" --hardware "$hw" --gpus "$tp" --tp "$tp" --input "$isl" --output "$osl" \
                    --batch "$b" --dtype fp8 --kv-dtype fp8 --json >/dev/null 2>&1 && bl="$bl$b,"
            done
            max=$("$puzzle" plan "$tmp/$dir" --hardware "$hw" --gpus "$tp" --tp "$tp" --input "$isl" --output "$osl" \
                  --dtype fp8 --kv-dtype fp8 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["max_batch"])')
            "$venv/bin/python" "$root/tests/ref/aiconfigurator_compare.py" "$model" "$sys" "$tp" "$isl" "$osl" \
                "$bl$max" >>"$jsonl"
        done <<<"$lens"
    done <<<"$grid"
fi

# One row per aiconfigurator estimate, with puzzle plan's prediction beside it.
printf 'model\tsystem\ttp\tisl\tosl\tbatch\taic_tok_s\tplan_tok_s\taic_tpot_ms\tplan_tpot_ms\taic_ttft_ms\tplan_ttft_ms\taic_mem_gb\tplan_mem_gb\n' >"$out"
python3 - "$jsonl" "$puzzle" "$tmp" >>"$out" <<'PY'
import json, subprocess, sys
jsonl, puzzle, tmp = sys.argv[1:]
dirs = {"nvidia/Llama-3.1-70B-Instruct-FP8": "l70", "nvidia/Llama-3_3-Nemotron-Super-49B-v1": "n49"}
for line in open(jsonl):
    r = json.loads(line)
    if "error" in r:
        continue
    p = subprocess.run([puzzle, "plan", f"{tmp}/{dirs[r['model']]}", "--hardware", r["system"], "--gpus", str(r["tp"]),
                        "--tp", str(r["tp"]), "--input", str(r["isl"]), "--output", str(r["osl"]), "--batch",
                        str(r["batch"]), "--dtype", "fp8", "--kv-dtype", "fp8", "--json"], capture_output=True, text=True)
    if p.returncode:
        continue
    d = json.loads(p.stdout)
    print("\t".join(str(x) for x in [dirs[r["model"]], r["system"], r["tp"], r["isl"], r["osl"], r["batch"],
                                     round(r["tokens_s"], 1), round(d["tokens_per_s_total"], 1), round(r["tpot_ms"], 3),
                                     round(d["tpot_ms"], 3), round(r["ttft_ms"], 2), round(d["ttft_ms"], 2),
                                     round(r["memory_gb"], 2), round(d["memory_per_gpu_bytes"]["total"] / 1e9, 2)]))
PY
echo "wrote $out" >&2
