#!/usr/bin/env bash
# labels: cpu
# Black-box test of `puzzle serve` on a small random heterogeneous model
# (every block kind) with the SmolLM2 tokenizer: the real binary on loopback,
# checked by tests/serve_check.py (completions equal `puzzle generate`,
# streaming, batch invariance, n>1, prefix reuse, >40 hostile requests,
# disconnects, queue limit, the official OpenAI client, SIGTERM drain).
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
here="$(cd "$(dirname "$0")" && pwd)"
"$MAKE" "$tmp/tm" --variant 0 --seed 3 --tokenizer "$here/data/smollm2_tokenizer/tokenizer.json" >/dev/null
check "make_test_model" '[ -f "$tmp/tm/config.json" ]'
# the OpenAI client check runs in the reference venv (PUZZLE_PYTHON; empty: skipped)
python3 "$here/serve_check.py" "$BIN" "$tmp/tm" --ctx 256 --tokens 16 --tmp "$tmp" --preempt \
    --openai "${PUZZLE_PYTHON:-}"
check "serve_check on the test model" '[ $? -eq 0 ]'
finish
