#!/usr/bin/env bash
# distill_ab.sh — two builds of `puzzle distill` on the same command, alternating, for a
# before/after comparison on a shared machine (results/distill_speed.md). Each build runs
# at 1 and at 4 steps under `perf stat`: CPU seconds per step = (task-clock(4 steps) −
# task-clock(1 step)) / 3, which leaves out start-up (model loading, first touch of memory)
# and depends less on the other processes than wall time does; the wall tokens/s the
# 4-step run prints (its steps only) is shown beside it.
#
#   bench/distill_ab.sh A_PUZZLE B_PUZZLE [ROUNDS]
#   (CHILD, PARENT, DATA, THREADS from the environment; defaults: the reference 1.25x
#   child, the SmolLM2 parent and train.txt in ~/.cache/puzzle, 2 threads)
set -u
A=${1:?usage: distill_ab.sh A_PUZZLE B_PUZZLE [ROUNDS]}
B=${2:?usage: distill_ab.sh A_PUZZLE B_PUZZLE [ROUNDS]}
N=${3:-3}
C=~/.cache/puzzle
CHILD=${CHILD:-$C/ref/x1.25/child}
PARENT=${PARENT:-$C/SmolLM2-135M-Instruct.Q4_1.gguf}
DATA=${DATA:-$C/text/train.txt}
THREADS=${THREADS:-2}
command -v perf >/dev/null || { echo "distill_ab.sh: perf is not installed" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in $(seq 1 "$N"); do
    for who in A B; do
        if [ $who = A ]; then bin=$A; else bin=$B; fi
        for t in 1024 4096; do
            rm -rf "$work/out"
            OMP_WAIT_POLICY=passive nice -n 10 perf stat -e task-clock -x, -o "$work/st_$t" "$bin" distill "$CHILD" \
                --teacher "$PARENT" --data "$DATA" --out "$work/out" --tokens $t --seq 256 --batch 4 \
                --threads "$THREADS" --checkpoint-every 0 >"$work/log_$t" 2>&1 ||
                { echo "distill_ab.sh: $bin failed:" >&2; tail -2 "$work/log_$t" >&2; exit 1; }
        done
        a=$(grep task-clock "$work/st_1024" | cut -d, -f1)
        b=$(grep task-clock "$work/st_4096" | cut -d, -f1)
        printf "round %d %s  CPU s/step %s  %s  load %s\n" "$i" "$who" \
            "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", (b - a) / 3000}')" \
            "$(grep '^step 4/4' "$work/log_4096" | grep -o '[0-9]* tok/s')" "$(cut -d' ' -f1 /proc/loadavg)"
    done
done
