#!/usr/bin/env bash
# pipeline.sh — the whole Puzzle chain on a parent through `puzzle run`, with
# default budgets sized for a 2-core CPU (scripts/demo.sh sets smaller ones for
# its ~15-minute first run; scripts/reference_run.sh uses these, with more
# distillation; results/pipeline_mix_run.md measures both): block library
# (BLD), replace-1-block scores, CPU profiles, the MIP search at a decode speed-up on the local CPU, the
# realized child, its global distillation against the parent, the
# evaluation of parent, child, distilled child and baselines (held-out
# perplexity, KL, top-1, measured decode speed-up, chat prompts scored by the
# parent; perplexity, KL and top-1 also on the unseen domain of
# text/eval_unseen.txt when scripts/fetch_text.sh made it) stored in the run database, and the report (RUN_DIR/report/
# report.md with pictures). Every stage resumes what is already done, so an
# interrupted run continues where it stopped when run again.
#
# usage: scripts/pipeline.sh PARENT [RUN_DIR]
#   RUN_DIR default $PUZZLE_CACHE/run (~/.cache/puzzle/run)
#   env: SPEEDUP (1.5), LIB_TOKENS (8192), LIB_STEPS (30), SCORE_TOKENS (512),
#        EVAL_TOKENS (4096), DISTILL_TOKENS (16384; 0 skips distillation), DISTILL_LR (2e-4),
#        BASELINES (uniform-ffn,shortgpt), THREADS (2), BUILD (build), SPACE (scripts/demo_space.json)
#        EVAL_UNSEEN ($PUZZLE_CACHE/text/eval_unseen.txt when it exists, else none)
#   Further `puzzle run` options may follow RUN_DIR (see build/puzzle run --help).
set -euo pipefail
cd "$(dirname "$0")/.."
PARENT=${1:?usage: pipeline.sh PARENT [RUN_DIR] [puzzle run options]}
CACHE=${PUZZLE_CACHE:-$HOME/.cache/puzzle}
RUN=${2:-$CACHE/run}
shift $(($# >= 2 ? 2 : 1))
BUILD=${BUILD:-build}
mkdir -p "$RUN"
UNSEEN=${EVAL_UNSEEN:-$CACHE/text/eval_unseen.txt}
[ "$UNSEEN" = none ] || [ -e "$UNSEEN" ] || UNSEEN=none
exec "$BUILD/puzzle" run "$PARENT" --db "$RUN/run.db" --out "$RUN" \
    --space "${SPACE:-scripts/demo_space.json}" --budget cpu --speedup "${SPEEDUP:-1.5}" \
    --calib "$CACHE/text/calib.txt" --train "$CACHE/text/train.txt" --eval "$CACHE/text/eval.txt" \
    --eval-unseen "$UNSEEN" \
    --chat scripts/chat_prompts.txt --lib-tokens "${LIB_TOKENS:-8192}" --lib-steps "${LIB_STEPS:-30}" \
    --score-tokens "${SCORE_TOKENS:-512}" --eval-tokens "${EVAL_TOKENS:-4096}" \
    --distill-tokens "${DISTILL_TOKENS:-16384}" --distill-lr "${DISTILL_LR:-2e-4}" \
    --baselines "${BASELINES:-uniform-ffn,shortgpt}" --threads "${THREADS:-2}" "$@"
