#!/usr/bin/env bash
# labels: cpu model
# Black-box test of `puzzle serve` on the reference parent (SmolLM2-135M,
# ChatML): the same checks as test_serve.sh (tests/serve_check.py), where
# greedy output is real text and the chat template matters.
set -u
. "$(dirname "$0")/lib.sh"
need_model
here="$(cd "$(dirname "$0")" && pwd)"
python3 "$here/serve_check.py" "$BIN" "$MODEL" --ctx 512 --tokens 16 --flood-tokens 24 --tmp "$tmp" --openai "${PUZZLE_PYTHON:-}"
check "serve_check on the reference parent" '[ $? -eq 0 ]'
finish
