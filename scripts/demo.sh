#!/usr/bin/env bash
# The main job on the built-in default, the reference parent SmolLM2-135M-
# Instruct: installs dependencies, fetches the model and the text data, builds,
# adds the parent's chat answers to the text mix (scripts/make_chat_text.sh),
# then runs the whole Puzzle chain with small budgets sized for a 2-core CPU
# (scripts/pipeline.sh = `puzzle run`: block library, scores, profiles, the
# search at a 1.5x decode speed-up on this CPU, the realized child, its
# distillation, the evaluation of parent, children and baselines with chat
# prompts, and the report). Idempotent: rerunning resumes the chain where it
# stopped and skips finished set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
MODEL=$(bash scripts/fetch_model.sh)
bash scripts/fetch_text.sh >/dev/null
PY=$(bash scripts/setup_venv.sh)  # the test suite's reference Python, so that build/ tests as scripts/test.sh does
bash scripts/build.sh build -DPZ_PYTHON="$PY"
# The parent's own answers to scripts/chat_gen_prompts.txt join the text mix (a few minutes
# once; docs/DATA.md). CI (scripts/test.sh) does not run this: the mix works without it.
bash scripts/make_chat_text.sh "$MODEL" >/dev/null
RUN="${PUZZLE_CACHE:-$HOME/.cache/puzzle}/run"
build/puzzle info "$MODEL" | sed -n 1,6p
bash scripts/pipeline.sh "$MODEL" "$RUN"
