#!/usr/bin/env bash
# Recomputes `puzzle plan`'s predictions for the published TensorRT-LLM rows
# of results/costmodel_validation.md: source A (trtllm-bench throughput, FP8,
# at --batch auto), sources B and C (static batching at the published batch;
# rows 36 and 43 at our largest batch, where the published one does not fit)
# and source D (first-token latency of one prompt). Prints a TSV: row,
# model, gpu, tp, isl, osl, published, predicted, error %.
# Extra arguments go to every `puzzle plan` (e.g. --eff-gemm 0.6 for the
# calibration sweep on the A* rows 1-8).
#
# usage: scripts/costmodel_validation.sh [BUILD_DIR] [plan options...]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
shift || true
puzzle="$build/puzzle"
[ -x "$puzzle" ] || { echo "no $puzzle: build first (scripts/build.sh)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cfg() {  # dir hidden layers heads kv ffn vocab
    mkdir -p "$tmp/$1"
    printf '{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":%d,"intermediate_size":%d,
 "num_hidden_layers":%d,"num_attention_heads":%d,"num_key_value_heads":%d,"vocab_size":%d,
 "max_position_embeddings":131072,"rms_norm_eps":1e-5,"rope_theta":500000.0,"tie_word_embeddings":false}\n' \
        "$2" "$6" "$3" "$4" "$5" "$7" >"$tmp/$1/config.json"
}
cfg l8 4096 32 32 8 14336 128256
cfg l70 8192 80 64 8 28672 128256
cfg l405 16384 126 128 8 53248 128256
cfg l2_7 4096 32 32 32 11008 32000
cfg l2_70 8192 80 64 8 28672 32000
# row model gpu tp isl osl published metric dtype batch
#   metric: tok = output tok/s in total, tokgpu = per GPU, ttft = first-token ms (prefill of one prompt)
rows="1 l8 H100 1 128 128 28312 tok fp8 auto
2 l8 H100 1 128 2048 22714 tok fp8 auto
3 l8 H100 1 500 2000 17660 tok fp8 auto
4 l8 H100 1 1000 1000 15220 tok fp8 auto
5 l8 H100 1 2048 128 3450 tok fp8 auto
6 l8 H100 1 2048 2048 9305 tok fp8 auto
7 l8 H100 1 5000 500 3459 tok fp8 auto
8 l8 H100 1 20000 2000 1351 tok fp8 auto
9 l8 H200 1 128 128 27911 tok fp8 auto
10 l8 H200 1 128 2048 26221 tok fp8 auto
11 l8 H200 1 2048 128 3538 tok fp8 auto
12 l8 H200 1 2048 2048 12194 tok fp8 auto
13 l8 H200 1 20000 2000 1804 tok fp8 auto
14 l70 H100 2 128 128 6378 tok fp8 auto
15 l70 H100 2 128 2048 6651 tok fp8 auto
16 l70 H100 2 1000 1000 4205 tok fp8 auto
17 l70 H100 2 2048 128 762 tok fp8 auto
18 l70 H100 2 2048 2048 3082 tok fp8 auto
19 l70 H200 1 128 2048 4336 tok fp8 auto
20 l70 H200 1 2048 128 442 tok fp8 auto
21 l70 H200 1 2048 2048 2003 tok fp8 auto
22 l405 H100 8 128 2048 4340 tok fp8 auto
23 l405 H100 8 2048 128 453 tok fp8 auto
24 l405 H100 8 2048 2048 2296 tok fp8 auto
25 l405 H200 8 128 2048 5348 tok fp8 auto
26 l405 H200 8 2048 2048 2948 tok fp8 auto
27 l2_7 H100 1 128 128 19694 tokgpu fp8 768
28 l2_7 H100 1 128 2048 6818 tokgpu fp8 112
29 l2_7 H100 1 2048 128 2244 tokgpu fp8 80
30 l2_7 H100 1 2048 2048 2740 tokgpu fp8 48
31 l2_70 H100 2 128 128 2657 tokgpu fp8 1024
32 l2_70 H100 4 128 2048 1486 tokgpu fp8 480
33 l2_70 H100 2 2048 128 306 tokgpu fp8 96
34 l2_70 H100 2 2048 2048 547 tokgpu fp8 64
35 l2_7 A100 1 128 128 5586 tok bf16 384
36 l2_7 A100 1 128 2048 1928 tok bf16 57
37 l2_7 A100 1 2048 128 591 tok bf16 52
38 l2_7 A100 2 2048 2048 782 tokgpu bf16 64
39 l2_70 A100 4 128 128 670 tokgpu bf16 1280
40 l2_70 A100 4 128 2048 525 tokgpu bf16 240
41 l2_70 A100 4 2048 128 79 tokgpu bf16 120
42 l2_7 L40S 1 128 128 3240 tok fp8 64
43 l2_7 L40S 1 128 2048 1622 tok fp8 62
44 l2_7 L40S 1 2048 128 581 tok fp8 32
45 l2_7 L40S 1 2048 2048 531 tok fp8 16
46 l2_7 H100 1 128 1 7 ttft fp8 1
47 l2_7 H100 1 2048 1 36 ttft fp8 1
48 l2_70 H100 4 128 1 26 ttft fp8 1
49 l2_70 H100 4 2048 1 109 ttft fp8 1
50 l2_7 L40S 1 128 1 14 ttft fp8 1
51 l2_7 L40S 1 2048 1 73 ttft fp8 1
52 l2_7 A100 1 128 1 16 ttft bf16 1
53 l2_7 A100 1 2048 1 133 ttft bf16 1
54 l2_70 A100 4 128 1 47 ttft bf16 1
55 l2_70 A100 4 2048 1 377 ttft bf16 1"
printf 'row\tmodel\tgpu\ttp\tisl\tosl\tpublished\tpredicted\terror_pct\n'
while read -r row m gpu tp isl osl pub metric dt batch; do
    j=$("$puzzle" plan "$tmp/$m" --hardware "$gpu" --gpus "$tp" --tp "$tp" --input "$isl" --output "$osl" \
        --batch "$batch" --dtype "$dt" --kv-dtype "$dt" --json "$@")
    python3 -c '
import json, sys
d = json.loads(sys.argv[1]); pub = float(sys.argv[3])
v = {"tok": d["tokens_per_s_total"], "tokgpu": d["tokens_per_s_per_gpu"], "ttft": d["prefill_ms"]}[sys.argv[2]]
print("%s\t%.1f\t%+.1f" % (sys.argv[4], v, 100 * (v - pub) / pub))' "$j" "$metric" "$pub" \
        "$row	$m	$gpu	$tp	$isl	$osl	$pub"
done <<<"$rows"
