#!/usr/bin/env bash
# serve_ab.sh — two `puzzle serve` binaries (say main's build and a branch's) measured
# alternately by the C load generator in one run, so a shared machine's load falls on both:
# A, B, A, B, ... each a fresh server on the same model and options, one load-generator table
# row per level as it comes (the label says which binary and which round), and the server's
# CPU seconds (all threads) per level: on a machine shared with other work, CPU time per
# generated token is the steadier measure of work done (with OMP_WAIT_POLICY=passive waiting
# threads sleep instead of spinning).
#
# usage: bench/serve_ab.sh A_PUZZLE B_PUZZLE MODEL [ROUNDS] [LEVELS] [REQUESTS] [MAX_TOKENS]
#        (rounds 2, levels 1,16, 2 requests per client, 64 tokens; 2 threads, --ctx 1024,
#        --max-seqs = the largest level; the load generator is build/serve_load, or $LOADGEN)
#        $A_ARGS / $B_ARGS: extra `puzzle serve` options for A / B (one binary against itself,
#        e.g. B_ARGS=--separate-steps); $LOAD_ARGS: extra load-generator options (--vary-tokens)
set -euo pipefail
cd "$(dirname "$0")/.."
a=$1 b=$2 model=$3 rounds=${4:-2} levels=${5:-1,16} requests=${6:-2} max_tokens=${7:-64}
loadgen=${LOADGEN:-build/serve_load}
seqs=$(tr , '\n' <<<"$levels" | sort -n | tail -1)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
port=$((20000 + RANDOM % 20000))
# user + system CPU seconds of a process so far (all its threads)
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / t}' "/proc/$1/stat"; }
for r in $(seq "$rounds"); do
    for which in A B; do
        bin=$a extra=${A_ARGS:-}
        [ "$which" = B ] && bin=$b extra=${B_ARGS:-}
        # shellcheck disable=SC2086  # the extra options are words
        "$bin" serve "$model" --port "$port" --threads 2 --max-seqs "$seqs" --ctx 1024 $extra 2>/dev/null &
        pid=$!
        for _ in $(seq 300); do
            curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
            sleep 0.2
        done
        echo "# $which ($bin) round $r, load average $(cut -d' ' -f1-3 /proc/loadavg)"
        for lv in ${levels//,/ }; do
            c0=$(cpu_s "$pid")
            "$loadgen" --url "http://127.0.0.1:$port" --levels "$lv" --requests "$requests" \
                --max-tokens "$max_tokens" ${LOAD_ARGS:-} --label "$which r$r" 2>/dev/null | grep "^| $which" || true
            echo "#   $which r$r streams $lv: server CPU $(awk -v a="$(cpu_s "$pid")" -v b="$c0" 'BEGIN {printf "%.2f", a - b}') s"
        done
        kill "$pid"
        wait "$pid" 2>/dev/null || true
        port=$((port + 1))
    done
done
