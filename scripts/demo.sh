#!/usr/bin/env bash
# The main job on the built-in default, the reference parent SmolLM2-135M-
# Instruct: installs dependencies, fetches the model and the text data, builds,
# then describes the model, measures its perplexity on the evaluation text and
# generates from a chat prompt. Idempotent; rerunning skips finished set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
MODEL=$(bash scripts/fetch_model.sh)
bash scripts/fetch_text.sh >/dev/null
TEXT="${PUZZLE_CACHE:-$HOME/.cache/puzzle}/text/eval.txt"
bash scripts/build.sh build
set -x
build/puzzle info "$MODEL"
build/puzzle eval "$MODEL" --text "$TEXT" --ctx 512 --max-tokens 8192
build/puzzle generate "$MODEL" --chat -p "What is the capital of France? Answer in one sentence." -n 64
