#!/usr/bin/env bash
# serve_soak.sh — a bounded soak of `puzzle serve`: 16 clients (build/serve_load --soak) send
# streaming chat requests back to back for 10 minutes (default) while the server's resident
# memory (VmRSS) is sampled every few seconds. Passes when no request failed and the RSS at
# the end is within a tolerance of the RSS after warm-up (memory flat: no growth per request).
#
# Warm-up is the first --warmup seconds (default 60, at most a fifth of the run): the KV pool,
# the prefix cache and the allocator's arenas fill during it. Reported: requests, tokens,
# errors, RSS after warm-up, at the end, the largest after warm-up, and the growth
# (end - warm-up) in MiB and per 1000 requests; the samples go to a CSV beside the table.
#
# usage: bash bench/serve_soak.sh [--seconds S] [--clients C] [--max-tokens N] [--threads T]
#          [--model MODEL] [--build DIR] [--warmup S] [--interval S] [--tolerance MIB]
#          [--vary-tokens 0|1] [--out FILE] [--note TEXT]
#   --vary-tokens 1: each request's max_tokens spread over [N/2, 3N/2] (serve_load
#   --vary-tokens), so prompts arrive while other streams decode (mixed engine calls)
#   defaults: 600 s, 16 clients, 64 tokens, vary 0, 2 threads, the reference parent
#   (scripts/fetch_model.sh), build dir build, warm-up 60 s, a sample every 5 s, tolerance
#   8 MiB, out results/serve_soak.md (the CSV: the same name with .csv).
# Exit 0: no errors and RSS flat; 1: errors or growth beyond the tolerance; 2: setup failed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=600 clients=16 max_tokens=64 threads=2 model= build=build warmup=60 interval=5 tol=8 vary=0
out=results/serve_soak.md note=""
args=""  # the command line for the table, without --note (it titles the table)
prev=
for a in "$@"; do
    [ "$a" = --note ] || [ "$prev" = --note ] || { case "$a" in *' '*) args+="\"$a\" " ;; *) args+="$a " ;; esac; }
    prev="$a"
done
while [ $# -gt 0 ]; do
    case "$1" in
    --seconds) seconds="$2" ;; --clients) clients="$2" ;; --max-tokens) max_tokens="$2" ;;
    --threads) threads="$2" ;; --model) model="$2" ;; --build) build="$2" ;; --warmup) warmup="$2" ;;
    --interval) interval="$2" ;; --tolerance) tol="$2" ;; --out) out="$2" ;; --note) note="$2" ;;
    --vary-tokens) vary="$2" ;;
    *) echo "serve_soak: unknown option $1 (see the top of $0)" >&2; exit 2 ;;
    esac
    shift 2
done
[ -n "$model" ] || model=$(bash scripts/fetch_model.sh)
for f in "$build/puzzle" "$build/serve_load"; do
    [ -x "$f" ] || { echo "serve_soak: $f not built" >&2; exit 2; }
done
[ "$warmup" -le $((seconds / 5)) ] || warmup=$((seconds / 5))
export OMP_WAIT_POLICY=passive
tmp=$(mktemp -d)
srv= sampler=
cleanup() {
    [ -z "$sampler" ] || kill "$sampler" 2>/dev/null || true
    if [ -n "$srv" ]; then
        kill -TERM "$srv" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$srv" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$srv" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

"$build/puzzle" serve "$model" --port 0 --threads "$threads" --max-seqs "$clients" --ctx 1024 2>"$tmp/server.log" &
srv=$!
port=
for _ in $(seq 1200); do
    grep -q "ready in" "$tmp/server.log" && port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$tmp/server.log")
    [ -n "$port" ] && break
    kill -0 "$srv" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || { echo "serve_soak: the server did not start:" >&2; cat "$tmp/server.log" >&2; exit 2; }
grep "ready in" "$tmp/server.log" >&2

# the sampler: elapsed seconds, RSS MiB
csv="${out%.md}.csv"
t0=$(date +%s.%N)
(
    echo "seconds,rss_mib"
    while kill -0 "$srv" 2>/dev/null; do
        rss=$(awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$srv/status" 2>/dev/null) || break
        [ -n "$rss" ] && awk -v a="$t0" -v b="$(date +%s.%N)" -v r="$rss" 'BEGIN {printf "%.1f,%s\n", b - a, r}'
        sleep "$interval"
    done
) >"$tmp/rss.csv" &
sampler=$!

rc=0
vary_arg=()
[ "$vary" = 1 ] && vary_arg=(--vary-tokens)
"$build/serve_load" --url "http://127.0.0.1:$port" --levels "$clients" --soak "$seconds" --max-tokens "$max_tokens" \
    "${vary_arg[@]}" --label "puzzle serve $(basename "${model%/}")" --timeout 600 --pid "$srv" >"$tmp/soak.md" 2>"$tmp/soak.err" || rc=$?
kill "$sampler" 2>/dev/null || true
wait "$sampler" 2>/dev/null || true
sampler=
cat "$tmp/soak.err" >&2
[ $rc -le 1 ] || exit 2
# the last row of the C tool's table: | | elapsed | requests | tokens | errors | rss |
read -r requests tokens errors < <(tail -1 "$tmp/soak.md" | awk -F'|' '{print $4 + 0, $5 + 0, $6 + 0}')
read -r rss_w rss_end rss_max n_samples < <(awk -F, -v w="$warmup" '
    NR > 1 && $1 >= w { if (!have) { first = $2; have = 1 } last = $2; if ($2 > max) max = $2; n++ }
    END { printf "%.1f %.1f %.1f %d\n", first, last, max, n }' "$tmp/rss.csv")
read -r growth per_k flat < <(awk -v a="$rss_w" -v b="$rss_end" -v n="$requests" -v t="$tol" \
    'BEGIN {g = b - a; printf "%.1f %.2f %d\n", g, (n > 0 ? g * 1000 / n : 0), (g <= t)}')
verdict=$([ "$errors" -eq 0 ] && [ "$flat" -eq 1 ] && echo pass || echo FAIL)
cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)
cp "$tmp/rss.csv" "$csv"
{
    echo
    echo "### serve soak, $(date -u +%Y-%m-%d\ %H:%M) UTC${note:+ — $note}: $verdict"
    echo
    echo "\`bash bench/serve_soak.sh ${args% }\` — $(basename "${model%/}"), $clients clients," \
         "$max_tokens tokens per request, $threads threads, ${seconds} s; $cpu, $(nproc) cores." \
         "RSS sampled every ${interval} s ($n_samples samples after a ${warmup} s warm-up; $(basename "$csv"))."
    echo
    echo "| requests | tokens | errors | RSS after warm-up MiB | RSS at end MiB | max after warm-up MiB | growth MiB | MiB per 1000 requests |"
    echo "|---|---|---|---|---|---|---|---|"
    echo "| $requests | $tokens | $errors | $rss_w | $rss_end | $rss_max | $growth | $per_k |"
} | tee -a "$out"
[ "$verdict" = pass ] || { echo "serve_soak: $errors errors, RSS growth $growth MiB (tolerance $tol)" >&2; exit 1; }
