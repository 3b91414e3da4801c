#!/usr/bin/env bash
# serve_vs_llama.sh — `puzzle serve` (the reference parent and a realized child) next to
# llama.cpp's llama-server on the same weights in bf16, measured by the project's C load
# generator (build/serve_load: streaming chat requests, temperature 0, fixed max_tokens) at
# 1/4/16/64 concurrent streams, side by side in one run.
#
# The three servers are started together, each with the same CPU threads and as many
# sequences as the largest level (llama-server: -np N with 1024 tokens of context per slot,
# puzzle: --max-seqs N --ctx 1024), and measured interleaved: for each level every server
# in turn (the order rotates from level to level), so a change in the machine's load lands on
# all of them alike. Idle servers wait without spinning (OMP_WAIT_POLICY=passive).
#
# Every server generates until max_tokens or its end-of-turn token, so a child that ends
# its answers earlier sends fewer tokens; tokens/s counts the tokens actually generated.
# The table gives, per level and server: aggregate generated tokens/s, the ratio to the same
# server at 1 stream, the ratio to llama-server at the same level, TTFT and inter-token
# latency percentiles, errors. It is printed and appended to the output file with the
# command line, the CPU and a note (--note, e.g. "shared 2-core machine").
#
# usage: bash bench/serve_vs_llama.sh [--levels 1,4,16,64] [--requests R] [--max-tokens N]
#          [--threads T] [--build DIR] [--parent MODEL] [--child DIR|none] [--llama none]
#          [--out FILE] [--note TEXT]
#   defaults: levels 1,4,16,64; 2 requests per client per level; 64 tokens; 2 threads;
#   build dir build; parent: scripts/fetch_model.sh's GGUF (loaded in bf16); child
#   $PUZZLE_CACHE/run/child; llama-server $PUZZLE_CACHE/llama.cpp/build/bin/llama-server
#   ($LLAMA_SERVER) on $PUZZLE_CACHE/bench/SmolLM2-135M-Instruct.Q4_1.BF16.gguf ($LLAMA_GGUF;
#   bench/vs_llama_cpp.sh makes it); out results/serve_vs_llama.md.
# Exit 1 when any request failed, 2 when a server or tool is missing or did not start.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${PUZZLE_CACHE:-$HOME/.cache/puzzle}"
levels=1,4,16,64 requests=2 max_tokens=64 threads=2 build=build parent= child="$CACHE/run/child"
llama="${LLAMA_SERVER:-$CACHE/llama.cpp/build/bin/llama-server}"
gguf="${LLAMA_GGUF:-$CACHE/bench/SmolLM2-135M-Instruct.Q4_1.BF16.gguf}"
out=results/serve_vs_llama.md note=""
args=""  # the command line for the table, without --note (it titles the table)
prev=
for a in "$@"; do
    [ "$a" = --note ] || [ "$prev" = --note ] || { case "$a" in *' '*) args+="\"$a\" " ;; *) args+="$a " ;; esac; }
    prev="$a"
done
while [ $# -gt 0 ]; do
    case "$1" in
    --levels) levels="$2" ;; --requests) requests="$2" ;; --max-tokens) max_tokens="$2" ;;
    --threads) threads="$2" ;; --build) build="$2" ;; --parent) parent="$2" ;; --child) child="$2" ;;
    --llama) llama="$2" ;; --out) out="$2" ;; --note) note="$2" ;;
    *) echo "serve_vs_llama: unknown option $1 (see the top of $0)" >&2; exit 2 ;;
    esac
    shift 2
done
[ -n "$parent" ] || parent=$(bash scripts/fetch_model.sh)
for f in "$build/puzzle" "$build/serve_load"; do
    [ -x "$f" ] || { echo "serve_vs_llama: $f not built" >&2; exit 2; }
done
[ -e "$parent" ] || { echo "serve_vs_llama: no parent model at $parent" >&2; exit 2; }
[ "$child" = none ] || [ -d "$child" ] || { echo "serve_vs_llama: no child at $child (--child none to skip)" >&2; exit 2; }
if [ "$llama" != none ]; then
    [ -x "$llama" ] || { echo "serve_vs_llama: no llama-server at $llama (--llama none to skip)" >&2; exit 2; }
    [ -f "$gguf" ] || { echo "serve_vs_llama: no bf16 GGUF at $gguf (bench/vs_llama_cpp.sh makes it)" >&2; exit 2; }
fi
maxc=$(echo "$levels" | tr ',' '\n' | sort -n | tail -1)
export OMP_WAIT_POLICY=passive
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

names=() urls=()
start_puzzle() {  # NAME MODEL
    local log="$tmp/$1.log" port=
    "$build/puzzle" serve "$2" --port 0 --threads "$threads" --max-seqs "$maxc" --ctx 1024 2>"$log" &
    pids+=($!)
    for _ in $(seq 1200); do  # up to 120 s to load
        grep -q "ready in" "$log" && port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$log")
        [ -n "$port" ] && break
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "serve_vs_llama: $1 did not start:" >&2; cat "$log" >&2; exit 2; }
    names+=("$1") urls+=("http://127.0.0.1:$port")
    grep "ready in" "$log" >&2
}
start_llama() {  # NAME
    local log="$tmp/$1.log" port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$llama" -m "$gguf" --host 127.0.0.1 --port "$port" -t "$threads" -np "$maxc" -c $((1024 * maxc)) -cb \
        >"$log" 2>&1 &
    pids+=($!)
    local up=
    for _ in $(seq 1200); do
        curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && { up=1; break; }
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$up" ] || { echo "serve_vs_llama: llama-server did not start:" >&2; tail -20 "$log" >&2; exit 2; }
    names+=("$1") urls+=("http://127.0.0.1:$port")
}

start_puzzle "puzzle parent" "$parent"
[ "$child" = none ] || start_puzzle "puzzle child" "$child"
[ "$llama" = none ] || start_llama "llama-server"

# measure: per level, every server in turn, the order rotating
ns=${#names[@]}
errors=0 li=0
: >"$tmp/rows"
for c in $(echo "$levels" | tr ',' ' '); do
    for k in $(seq 0 $((ns - 1))); do
        i=$(((k + li) % ns))
        rc=0
        "$build/serve_load" --url "${urls[$i]}" --levels "$c" --requests "$requests" --max-tokens "$max_tokens" \
            --label "${names[$i]}" --timeout 600 >"$tmp/one.md" 2>>"$tmp/serve_load.err" || rc=$?
        [ $rc -le 1 ] || { cat "$tmp/serve_load.err" >&2; exit 2; }
        grep "^| ${names[$i]} | $c |" "$tmp/one.md" >>"$tmp/rows" || { cat "$tmp/serve_load.err" >&2; exit 2; }
        tail -1 "$tmp/serve_load.err" >&2
    done
    li=$((li + 1))
done

# | name | streams | requests | errors | tokens | wall | tok/s | x | ttft50 | 90 | 99 | itl50 | 90 | 99 |
table=$(awk -F'|' -v levels="$levels" '
    function t(s) { gsub(/^ +| +$/, "", s); return s }
    { n = t($2); c = t($3) + 0; key[n, c] = $0; tps[n, c] = t($8) + 0; err[n, c] = t($5) + 0
      if (!(n in seen)) { seen[n] = 1; order[++nn] = n } }
    END {
        nl = split(levels, L, ",")
        print "| server | streams | tok/s | × own 1 stream | × llama-server | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms | requests | errors |"
        print "|---|---|---|---|---|---|---|---|---|---|---|"
        for (l = 1; l <= nl; l++) for (s = 1; s <= nn; s++) {
            n = order[s]; c = L[l] + 0
            if (!((n, c) in key)) continue
            split(key[n, c], f, "|")
            own = tps[n, L[1] + 0] > 0 ? sprintf("%.2f", tps[n, c] / tps[n, L[1] + 0]) : "-"
            vs = (("llama-server", c) in tps) && tps["llama-server", c] > 0 ? sprintf("%.2f", tps[n, c] / tps["llama-server", c]) : "-"
            printf "| %s | %d | %.1f | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, c, tps[n, c], own, vs,
                   t(f[10]), t(f[12]), t(f[13]), t(f[15]), t(f[4]), t(f[5])
        }
    }' "$tmp/rows")
errors=$(awk -F'|' '{s += $5} END {print s + 0}' "$tmp/rows")
cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
{
    echo
    echo "### serve vs llama-server, $(date -u +%Y-%m-%d\ %H:%M) UTC${note:+ — $note}"
    echo
    echo "\`bash bench/serve_vs_llama.sh ${args% }\` — $threads threads, $requests requests per client per level," \
         "$max_tokens tokens each, streaming chat at temperature 0, servers measured interleaved level by level;" \
         "$cpu, $(nproc) cores. Parent: $(basename "$parent") (bf16 in memory);" \
         "child: $([ "$child" = none ] && echo none || echo "$child"); llama-server: $([ "$llama" = none ] && echo none || basename "$gguf")."
    echo
    echo "$table"
} | tee -a "$out"
[ "$errors" -eq 0 ] || { echo "serve_vs_llama: $errors requests failed (see the table)" >&2; exit 1; }
