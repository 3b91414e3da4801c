#!/usr/bin/env bash
# A/B of the engine: bench_engine of two builds (e.g. the commit before a
# change and after it), interleaved round by round on the same machine, so
# load drifts hit both alike; prints each round's decode and prefill tok/s
# and the per-round ratios B/A with their median.
#   bash bench/ab_engine.sh A/bench_engine B/bench_engine [rounds] [prompt] [threads]
# The model is $PUZZLE_MODEL (default: the reference parent in the cache).
set -euo pipefail
A="$1"; B="$2"; ROUNDS="${3:-3}"; P="${4:-128}"; T="${5:-2}"
MODEL="${PUZZLE_MODEL:-${PUZZLE_CACHE:-$HOME/.cache/puzzle}/SmolLM2-135M-Instruct.Q4_1.gguf}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=passive
# bench_engine's table rows: | weights | MB | load | prefill tok/s | ... | decode tok/s | ...
row() { awk -F'|' -v w="$2" '$2 ~ "^ *"w" *$" {gsub(/ /,"",$5); gsub(/ /,"",$9); print $5, $9}' "$1"; }
printf "%-5s %-5s %12s %12s %12s %12s %8s %8s\n" round wt "A prefill" "B prefill" "A decode" "B decode" "B/A pf" "B/A dec"
for r in $(seq 1 "$ROUNDS"); do
  "$A" "$MODEL" "$T" "$P" "$tmp/a.md" > "$tmp/a.out" 2>&1
  "$B" "$MODEL" "$T" "$P" "$tmp/b.md" > "$tmp/b.out" 2>&1
  for wt in fp32 bf16; do
    read -r apf adec <<< "$(row "$tmp/a.md" $wt)"
    read -r bpf bdec <<< "$(row "$tmp/b.md" $wt)"
    awk -v r="$r" -v w="$wt" -v a="$apf" -v b="$bpf" -v c="$adec" -v d="$bdec" \
      'BEGIN { printf "%-5s %-5s %12s %12s %12s %12s %8.3f %8.3f\n", r, w, a, b, c, d, b/a, d/c }'
  done
done | tee "$tmp/rows"
for wt in fp32 bf16; do
  awk -v w="$wt" '$2 == w { pf[++n] = $7; dc[n] = $8 }
    function med(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                     return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    END { printf "median B/A %-5s prefill %.3f  decode %.3f  (%d rounds)\n", w, med(pf, n), med(dc, n), n }' "$tmp/rows"
done
