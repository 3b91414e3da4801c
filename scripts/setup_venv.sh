#!/usr/bin/env bash
# Creates the Python virtual environment that the test suite's independent
# cross-checks run in (gguf-py reads our GGUF files, Hugging Face `tokenizers`
# loads our tokenizer.json; tests/ref/): $PUZZLE_CACHE/venv (default
# ~/.cache/puzzle/venv) with the pinned packages of tests/ref/requirements.txt
# from the Python package index. Idempotent: does nothing when the environment
# already holds exactly those pins. Prints the interpreter's path on stdout
# (CMake's PZ_PYTHON). Needs Debian's python3-venv (scripts/install_deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${PUZZLE_CACHE:-$HOME/.cache/puzzle}"
VENV="$CACHE/venv"
REQ=tests/ref/requirements.txt
PY="$VENV/bin/python"
want=$(sha256sum "$REQ" | cut -d' ' -f1)
stamp="$VENV/.requirements.sha256"
if [ -x "$PY" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
    "$PY" -c "import gguf, tokenizers, safetensors, numpy, jinja2, openai" 2>/dev/null; then
  echo "$PY"
  exit 0
fi
mkdir -p "$CACHE"
if [ ! -x "$PY" ]; then
  echo "setup_venv: creating $VENV" >&2
  if ! python3 -m venv "$VENV" >&2; then
    rm -rf "$VENV"
    echo "setup_venv: python3 -m venv failed (Debian: apt-get install python3-venv, see scripts/install_deps.sh)" >&2
    exit 1
  fi
fi
echo "setup_venv: installing $(grep -v '^#' "$REQ" | tr '\n' ' ')" >&2
"$PY" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQ" >&2
"$PY" -c "import gguf, tokenizers, safetensors, numpy, jinja2, openai"
echo "$want" >"$stamp"
echo "$PY"
