#!/usr/bin/env bash
# The main job on the built-in default, the reference parent SmolLM2-135M-
# Instruct: installs dependencies, fetches the model and the text data, builds,
# then runs the whole Puzzle chain with small budgets sized for a 2-core CPU
# (scripts/pipeline.sh: block library, scores, profiles, the search at a 1.5x
# decode speed-up on this CPU, the realized child, parent-vs-child evaluation)
# and chats with the child. Idempotent: rerunning resumes the chain where it
# stopped and skips finished set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
MODEL=$(bash scripts/fetch_model.sh)
bash scripts/fetch_text.sh >/dev/null
bash scripts/build.sh build
RUN="${PUZZLE_CACHE:-$HOME/.cache/puzzle}/run"
build/puzzle info "$MODEL" | head -6
bash scripts/pipeline.sh "$MODEL" "$RUN"
echo
build/puzzle generate "$RUN/child" --chat -p "What is the capital of France? Answer in one sentence." -n 48
