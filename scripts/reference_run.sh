#!/usr/bin/env bash
# reference_run.sh — the committed reference run of issue 11: one run database,
# one block library and one set of replace-1-block scores, and `puzzle run`
# (scripts/pipeline.sh) once per decode speed-up, each into its own directory
# (RUN_DIR/xS/: child, child_distilled, baselines, report). Stages already
# finished in the database (library, scores, profiles) are shared, not redone;
# each speed-up adds its own search, realize, distill and evaluate rows.
# Afterwards the same library is searched for a modeled GPU budget (no
# realize: the modeled H100 cannot be measured here).
#
# usage: scripts/reference_run.sh PARENT RUN_DIR [SPEEDUPS]
#   SPEEDUPS default "1.25 1.5 2"; env as scripts/pipeline.sh (DISTILL_TOKENS default
#   here 65536), GPU_BUDGET (default 1xH100; none skips), GPU_SCENARIO (default decode:1x512)
set -euo pipefail
cd "$(dirname "$0")/.."
PARENT=${1:?usage: reference_run.sh PARENT RUN_DIR [SPEEDUPS]}
RUN=${2:?usage: reference_run.sh PARENT RUN_DIR [SPEEDUPS]}
SPEEDUPS=${3:-1.25 1.5 2}
export DISTILL_TOKENS=${DISTILL_TOKENS:-65536}
BUILD=${BUILD:-build}
mkdir -p "$RUN"
for s in $SPEEDUPS; do
    echo "== reference run: decode speed-up $s ==" >&2
    SPEEDUP=$s bash scripts/pipeline.sh "$PARENT" "$RUN" --out "$RUN/x$s"
done
GPU=${GPU_BUDGET:-1xH100}
if [ "$GPU" != none ]; then
    for s in $SPEEDUPS; do
        "$BUILD/puzzle" search --db "$RUN/run.db" --budget "$GPU" --scenario "${GPU_SCENARIO:-decode:1x512}" \
            --speedup "$s" >&2
    done
fi
