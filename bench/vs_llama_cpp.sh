#!/usr/bin/env bash
# vs_llama_cpp.sh — the engine next to llama.cpp (llama-bench, built from
# the source vendored in the llama-cpp-python sdist by
# tests/interop/build_llama_cpp.sh) on equal weight bytes: our engine loads
# the reference parent (Q4_1 GGUF) dequantized to bf16 or fp32, llama.cpp
# runs the same file converted with llama-quantize to BF16 or F32.
#
# Tests, as llama-bench names them, at `threads` threads:
#   tg64 @ d16   decode 64 tokens at batch 1 after 16 tokens of context
#   tg64 @ d512  the same after 512 tokens
#   pp512        prefill of a 512-token prompt
# Our side: bench_engine -e (prompt 16, then prompt 512 which gives both
# pp512 and tg64 @ d512), best of 2 repetitions per call; llama.cpp's side:
# llama-bench -r 2 (its mean).
#
# The machine may be shared, so the two tools run interleaved, in `rounds`
# rounds; in each round each tool runs every test under OMP_WAIT_POLICY=
# passive and =active (both are OpenMP builds) and keeps its better one. A
# round's ratio is ours / theirs within that round; the table gives the
# median of the per-round ratios, and the best rate each tool reached.
#
# usage: bash bench/vs_llama_cpp.sh [build-dir] [rounds] [out.md]
#        (build-dir default build, rounds 3, out results/engine_vs_llama_cpp.md;
#        THREADS=2 in the environment; LLAMA_BIN=dir with llama-bench and
#        llama-quantize skips tests/interop/build_llama_cpp.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
rounds="${2:-3}"
out="${3:-results/engine_vs_llama_cpp.md}"
threads="${THREADS:-2}"
CACHE="${PUZZLE_CACHE:-$HOME/.cache/puzzle}"

eng="$build/bench_engine"
[ -x "$eng" ] || { echo "vs_llama_cpp: $eng not built" >&2; exit 1; }
src=$(bash scripts/fetch_model.sh)
bin="${LLAMA_BIN:-$(bash tests/interop/build_llama_cpp.sh)}"
[ -x "$bin/llama-quantize" ] && [ -x "$bin/llama-bench" ] || { echo "vs_llama_cpp: no llama-bench/llama-quantize in $bin" >&2; exit 1; }

mkdir -p "$CACHE/bench"
declare -A gguf
for wt in bf16 f32; do
  f="$CACHE/bench/$(basename "${src%.gguf}").${wt^^}.gguf"
  if [ ! -s "$f" ]; then
    "$bin/llama-quantize" --allow-requantize "$src" "$f.part" "${wt^^}" >/dev/null 2>&1
    mv "$f.part" "$f"
  fi
  gguf[$wt]="$f"
done

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
# raw lines: round tool wt test policy tok/s

ours() {  # round wt policy
  local r=$1 wt=$2 pol=$3 line
  line=$(OMP_WAIT_POLICY=$pol "$eng" -e -w "$wt" -n 64 -r 2 "$src" "$threads" 16)
  echo "$r ours $wt tg64@d16 $pol $(sed -n 's/.*decode_tps=\([0-9.]*\).*/\1/p' <<<"$line")" >>"$raw"
  line=$(OMP_WAIT_POLICY=$pol "$eng" -e -w "$wt" -n 64 -r 2 "$src" "$threads" 512)
  echo "$r ours $wt tg64@d512 $pol $(sed -n 's/.*decode_tps=\([0-9.]*\).*/\1/p' <<<"$line")" >>"$raw"
  echo "$r ours $wt pp512 $pol $(sed -n 's/.*prefill_tps=\([0-9.]*\).*/\1/p' <<<"$line")" >>"$raw"
}

theirs() {  # round wt policy
  local r=$1 wt=$2 pol=$3
  { OMP_WAIT_POLICY=$pol "$bin/llama-bench" -m "${gguf[$wt]}" -t "$threads" -p 0 -n 64 -d 16,512 -r 2 -o csv
    OMP_WAIT_POLICY=$pol "$bin/llama-bench" -m "${gguf[$wt]}" -t "$threads" -p 512 -n 0 -r 2 -o csv | tail -n +2
  } 2>/dev/null | tr -d '"' | awk -F, -v r="$r" -v wt="$wt" -v pol="$pol" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
    { np = $col["n_prompt"]; ng = $col["n_gen"]; d = $col["n_depth"]
      t = ng > 0 ? "tg" ng "@d" d : "pp" np
      print r, "llama.cpp", wt, t, pol, $col["avg_ts"] }' >>"$raw"
}

for r in $(seq 1 "$rounds"); do
  for wt in bf16 f32; do
    for pol in passive active; do
      echo "round $r/$rounds: $wt $pol" >&2
      ours "$r" "$wt" "$pol"
      theirs "$r" "$wt" "$pol"
    done
  done
done

{
  echo "# Engine vs llama.cpp (CPU, batch 1 decode and 512-token prefill)"
  echo
  echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $threads threads ($(nproc) online); kernels at level $(grep -o 'isa=[a-z0-9]*' <<<"$(OMP_WAIT_POLICY=passive "$eng" -e -w bf16 -n 1 -r 1 "$src" "$threads" 1)" | cut -d= -f2)"
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); engine commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- kernels runtime || echo ' (+ uncommitted changes)')"
  echo "- llama.cpp: llama-bench from the source vendored in llama-cpp-python ${LLAMA_CPP_PYTHON_VERSION:-0.3.36} (GGML_NATIVE, OpenMP), models $(basename "${gguf[bf16]}") and $(basename "${gguf[f32]}") (llama-quantize --allow-requantize from $(basename "$src"))"
  echo "- engine: bench_engine -e on $(basename "$src"), dequantized at load to the same bf16 / fp32 weights"
  echo "- command: \`bash bench/vs_llama_cpp.sh $build $rounds $out\` ($rounds interleaved rounds; load average when done: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo
  echo "| weights | test | engine tok/s (best) | llama.cpp tok/s (best) | ratio, median of rounds | per-round ratios | engine policy | llama.cpp policy |"
  echo "|---|---|---|---|---|---|---|---|"
  awk '
    { k = $3 " " $4; key[k] = 1
      v = $6 + 0; rk = $1 SUBSEP $2 SUBSEP k
      if (v > rbest[rk]) rbest[rk] = v
      tk = $2 SUBSEP k
      if (v > best[tk]) { best[tk] = v; bpol[tk] = $5 }
      rounds[$1] = 1 }
    END {
      n = split("bf16 tg64@d16|bf16 tg64@d512|bf16 pp512|f32 tg64@d16|f32 tg64@d512|f32 pp512", order, "|")
      for (i = 1; i <= n; i++) {
        k = order[i]
        if (!(k in key)) continue
        m = 0; list = ""
        for (r in rounds) {
          a = rbest[r, "ours", k]; b = rbest[r, "llama.cpp", k]
          if (a > 0 && b > 0) { ratio[++m] = a / b; }
        }
        for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++) if (ratio[y] < ratio[x]) { t = ratio[x]; ratio[x] = ratio[y]; ratio[y] = t }
        for (x = 1; x <= m; x++) list = list (x > 1 ? " " : "") sprintf("%.2f", ratio[x])
        med = m == 0 ? 0 : (m % 2 ? ratio[(m + 1) / 2] : (ratio[m / 2] + ratio[m / 2 + 1]) / 2)
        split(k, kk, " ")
        printf "| %s | %s | %.1f | %.1f | **%.2f** | %s | %s | %s |\n", kk[1], kk[2], best["ours", k], best["llama.cpp", k], med, list, bpol["ours", k], bpol["llama.cpp", k]
      }
    }' "$raw"
  echo
  echo "Ratios above 1 mean the engine is faster. Each per-round ratio compares the two tools' better wait policy within one round, so a change of load from other processes between rounds cancels out; per-round ratios are listed sorted. Absolute rates depend on what else the machine was running."
  echo
  echo "Raw rates (round, tool, weights, test, OMP_WAIT_POLICY, tok/s):"
  echo
  echo '```'
  cat "$raw"
  echo '```'
} >"$out"
cat "$out"
