#!/usr/bin/env bash
# pipeline.sh — the whole Puzzle chain on a parent, with small default
# budgets sized for a 2-core CPU (about 10-15 minutes on the reference
# parent): block library (BLD), replace-1-block scores, CPU profiles, the
# MIP search at a decode speed-up on the local CPU, the realized child, its
# global distillation against the parent (DISTILL_TOKENS of train.txt;
# resumable from its checkpoint), and an evaluation of parent against the
# child before and after distillation (KL, top-1, perplexity on held-out
# text, measured decode speed-up). Every step resumes what is already done,
# so an interrupted run continues where it stopped when run again.
#
# usage: scripts/pipeline.sh PARENT [RUN_DIR]
#   RUN_DIR default $PUZZLE_CACHE/run (~/.cache/puzzle/run)
#   env: SPEEDUP (1.5), LIB_TOKENS (8192), LIB_STEPS (30), SCORE_TOKENS (512),
#        EVAL_TOKENS (4096), DISTILL_TOKENS (16384; 0 skips distillation), DISTILL_LR (2e-4),
#        THREADS (2), BUILD (build), SPACE (scripts/demo_space.json)
set -euo pipefail
cd "$(dirname "$0")/.."
PARENT=${1:?usage: pipeline.sh PARENT [RUN_DIR]}
CACHE=${PUZZLE_CACHE:-$HOME/.cache/puzzle}
RUN=${2:-$CACHE/run}
SPEEDUP=${SPEEDUP:-1.5}
LIB_TOKENS=${LIB_TOKENS:-8192}
LIB_STEPS=${LIB_STEPS:-30}
SCORE_TOKENS=${SCORE_TOKENS:-512}
EVAL_TOKENS=${EVAL_TOKENS:-4096}
DISTILL_TOKENS=${DISTILL_TOKENS:-16384}
DISTILL_LR=${DISTILL_LR:-2e-4}
THREADS=${THREADS:-2}
BUILD=${BUILD:-build}
SPACE=${SPACE:-scripts/demo_space.json}
P=$BUILD/puzzle
DB=$RUN/run.db
CHILD=$RUN/child
DCHILD=$RUN/child_distilled
SCEN=decode:1x512
mkdir -p "$RUN"
t0=$(date +%s)
step() { echo; echo "== [$(($(date +%s) - t0)) s] $*"; }

step "1/8 block library: BLD of every variant of $SPACE ($LIB_TOKENS calibration tokens, $LIB_STEPS steps per block)"
"$P" build-library "$PARENT" --db "$DB" --data "$CACHE/text/calib.txt" --space "$SPACE" \
    --tokens "$LIB_TOKENS" --steps "$LIB_STEPS" --threads "$THREADS"
rm -rf "$RUN/run.cache"  # the activation captures (GBs); a rerun with more blocks recaptures

step "2/8 replace-1-block scores: KL to the parent on the first $SCORE_TOKENS tokens of calib.txt"
# calib.txt, not eval.txt: eval.txt is held out from every stage (docs/DATA.md).
"$P" score --db "$DB" --data "$CACHE/text/calib.txt" --tokens "$SCORE_TOKENS" --threads "$THREADS"

step "3/8 profiles: every variant timed on this CPU ($SCEN)"
# 60 repeats: a decode step of one sub-block takes 0.05-0.4 ms, and with 10 the
# medians moved by up to 2x between runs on these shared cores (5 % with 60).
"$P" profile --db "$DB" --scenario "$SCEN" --threads "$THREADS" --repeats 60

step "4/8 search: budget cpu, ${SPEEDUP}x decode speed-up, minimal KL"
"$P" search --db "$DB" --budget cpu --scenario "$SCEN" --speedup "$SPEEDUP" | tee "$RUN/search.txt"
SOL=$(sqlite3 "$DB" "SELECT s.id FROM solutions s JOIN searches q ON q.id = s.search_id
                     WHERE q.id = (SELECT max(id) FROM searches) AND s.rank = 1")
[ -n "$SOL" ] || { echo "no child meets the budget (see above)"; exit 1; }

step "5/8 realize solution $SOL as a DeciLM directory: $CHILD"
"$P" realize --db "$DB" --solution "$SOL" --out "$CHILD" --dtype f32

step "6/8 global distillation of the child: $DISTILL_TOKENS tokens of train.txt (resumes its checkpoint)"
if [ "$DISTILL_TOKENS" -gt 0 ]; then
    # A child realized anew (another solution) is refused by the old checkpoint: start over then.
    if ! "$P" distill "$CHILD" --teacher "$PARENT" --data "$CACHE/text/train.txt" --out "$DCHILD" \
            --tokens "$DISTILL_TOKENS" --lr "$DISTILL_LR" --seq 256 --batch 4 --threads "$THREADS" \
            --checkpoint-every 4 --resume 2>"$RUN/distill.err"; then
        if grep -q "another run" "$RUN/distill.err"; then
            rm -rf "$DCHILD"
            "$P" distill "$CHILD" --teacher "$PARENT" --data "$CACHE/text/train.txt" --out "$DCHILD" \
                --tokens "$DISTILL_TOKENS" --lr "$DISTILL_LR" --seq 256 --batch 4 --threads "$THREADS" \
                --checkpoint-every 4 --resume
        else
            cat "$RUN/distill.err" >&2
            exit 1
        fi
    fi
fi

step "7/8 evaluate parent vs child: $EVAL_TOKENS held-out tokens of eval.txt, decode speed on this CPU"
"$P" eval "$CHILD" --ref "$PARENT" --text "$CACHE/text/eval.txt" \
    --max-tokens "$EVAL_TOKENS" --threads "$THREADS" --json >"$RUN/eval_child.json"
"$P" eval "$PARENT" --text "$CACHE/text/eval.txt" --max-tokens "$EVAL_TOKENS" \
    --threads "$THREADS" --json >"$RUN/eval_parent.json"
if [ "$DISTILL_TOKENS" -gt 0 ]; then
    "$P" eval "$DCHILD" --ref "$PARENT" --text "$CACHE/text/eval.txt" \
        --max-tokens "$EVAL_TOKENS" --threads "$THREADS" --json >"$RUN/eval_distilled.json"
fi
"$BUILD/bench_speedup" --threads "$THREADS" --rounds 3 --tsv "$RUN/speed.tsv" "$PARENT" "$CHILD" \
    >"$RUN/speed.md" 2>"$RUN/speed.log"

step "8/8 one chat turn from each (greedy)"
WHO="parent child"
[ "$DISTILL_TOKENS" -gt 0 ] && WHO="$WHO distill"
for who in $WHO; do
    m=$PARENT; [ $who = child ] && m=$CHILD; [ $who = distill ] && m=$DCHILD
    printf '%s: ' "$who"
    "$P" generate "$m" --chat -p "What is the capital of France? Answer in one sentence." -n 32 --temp 0 \
        --threads "$THREADS" 2>/dev/null | tr '\n' ' ' || true
    echo
done

# ---- the result ----
field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; }
col() { awk -F'\t' -v r="$1" -v c="$2" 'NR == r + 1 {print $c}' "$RUN/speed.tsv"; }
read -r PRED PARAMS NCH < <(sqlite3 -separator ' ' "$DB" "SELECT printf('%.3f', speedup), printf('%.1f', params / 1e6),
                                                           n_changed FROM solutions WHERE id = $SOL")
echo
echo "Result ($(($(date +%s) - t0)) s; run database $DB, child $CHILD):"
printf '  %-8s %9s %9s %8s %11s %10s %12s %10s\n' "" "params M" "KL" "top-1" "perplexity" "predicted" "decode tok/s" "measured"
printf '  %-8s %9.1f %9s %8s %11.3f %10s %12.1f %10s\n' parent "$(awk "BEGIN{print $(col 1 2) / 1e6}")" 0 1 \
    "$(field "$RUN/eval_parent.json" perplexity)" 1.000x "$(col 1 4)" 1.000x
printf '  %-8s %9s %9.4f %8.4f %11.3f %10s %12.1f %10s\n' child "$PARAMS" "$(field "$RUN/eval_child.json" kl)" \
    "$(field "$RUN/eval_child.json" top1_agreement)" "$(field "$RUN/eval_child.json" perplexity)" "${PRED}x" \
    "$(col 2 4)" "$(printf '%.3fx' "$(col 2 5)")"
if [ "$DISTILL_TOKENS" -gt 0 ]; then
    printf '  %-8s %9s %9.4f %8.4f %11.3f %10s %12s %10s\n' distill "$PARAMS" \
        "$(field "$RUN/eval_distilled.json" kl)" "$(field "$RUN/eval_distilled.json" top1_agreement)" \
        "$(field "$RUN/eval_distilled.json" perplexity)" "${PRED}x" "(as child)" "(as child)"
fi
echo "  ($NCH of 60 sub-blocks replaced; KL and top-1 against the parent on $EVAL_TOKENS tokens of eval.txt, used by no stage;"
echo "   decode speed: bench_speedup, f32, $THREADS threads, context 512, median of 3 interleaved rounds)"
echo "Inspect: sqlite3 $DB 'SELECT * FROM solution_summary'; $P solution --db $DB $SOL"
