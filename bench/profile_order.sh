#!/usr/bin/env bash
# profile_order.sh — spread of the profiles' parent-FFN / narrow-FFN ratio, one ordering of the
# timed runs against another, on a copy of a run database (the original is never written).
# Each pass deletes the copy's profile rows and runs `puzzle profile` as `puzzle run`'s profiles
# stage does (decode:1x512, 60 repeats, 2 threads), alternating A and B so that machine load
# hits both alike; prints one TSV row per profile. A = $OLD (a puzzle binary, e.g. one built
# before interleaved rounds) or, without it, this build's `--sequential`; B = this build.
#   usage: bench/profile_order.sh RUN.db [PASSES]   (env: BUILD, OLD, WIDE=1536, NARROW=256)
set -euo pipefail
src="${1:?usage: bench/profile_order.sh RUN.db [PASSES]}"
passes="${2:-4}"
here="$(cd "$(dirname "$0")/.." && pwd)"
new="${BUILD:-$here/build}/puzzle"
wide="${WIDE:-1536}" narrow="${NARROW:-256}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$src" "$tmp/base.db"
sqlite3 "$tmp/base.db" "delete from profiles;"
printf "pass\torder\tffn%s_ms\tffn%s_ms\thead_ms\tratio\tp10_ratio\twall_s\n" "$wide" "$narrow"
for i in $(seq 1 "$passes"); do
    for mode in A B; do
        cp "$tmp/base.db" "$tmp/run.db"
        if [ "$mode" = A ]; then cmd=("${OLD:-$new}" profile); [ -n "${OLD:-}" ] || extra=(--sequential)
        else cmd=("$new" profile); extra=(); fi
        t0=$(date +%s.%N)
        OMP_WAIT_POLICY=passive "${cmd[@]}" --db "$tmp/run.db" --scenario decode:1x512 --repeats 60 \
            --threads 2 ${extra[@]+"${extra[@]}"} >/dev/null 2>"$tmp/err.txt" || { cat "$tmp/err.txt"; exit 1; }
        t1=$(date +%s.%N)
        q() { sqlite3 "$tmp/run.db" "select ${3:-median_s}*1e3 from profiles where part='$1' and size=$2"; }
        awk -v i="$i" -v m="$mode" -v a="$(q ffn "$wide")" -v b="$(q ffn "$narrow")" -v h="$(q head 0)" \
            -v pa="$(q ffn "$wide" p10_s)" -v pb="$(q ffn "$narrow" p10_s)" -v w="$(echo "$t1 - $t0" | bc)" \
            'BEGIN{printf "%d\t%s\t%.3f\t%.3f\t%.2f\t%.3f\t%.3f\t%.1f\n", i, m, a, b, h, a/b, pa/pb, w}'
        extra=()
    done
done
