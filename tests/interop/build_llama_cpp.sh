#!/usr/bin/env bash
# Builds llama.cpp's llama-bench, llama-perplexity, llama-server and
# llama-cli from the source vendored in the llama-cpp-python sdist (the one
# way to reach llama.cpp here: the Python package index), for side-by-side
# benchmarks and interop checks. Not part of the default test run.
#   bash tests/interop/build_llama_cpp.sh [DIR]   # default $PUZZLE_CACHE/llama.cpp
# Prints the bin/ directory. Idempotent: an existing build is reused.
set -euo pipefail
CACHE="${PUZZLE_CACHE:-$HOME/.cache/puzzle}"
dir="${1:-$CACHE/llama.cpp}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
bin="$dir/build/bin"
if [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-perplexity" ] && [ -x "$bin/llama-server" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$dir"
if [ ! -d "$dir/src" ]; then
  tmp=$(mktemp -d)
  # The sdist's URL from the index's JSON API (pip download would try to
  # build the package's metadata, which needs its build backend).
  url=$(python3 - "$VERSION" <<'PY'
import json, sys, urllib.request
v = sys.argv[1]
with urllib.request.urlopen(f"https://pypi.org/pypi/llama-cpp-python/{v}/json") as r:
    meta = json.load(r)
print(next(u["url"] for u in meta["urls"] if u["packagetype"] == "sdist"))
PY
)
  python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
    "$url" "$tmp/sdist.tar.gz"
  tar -xzf "$tmp/sdist.tar.gz" -C "$tmp"
  mv "$tmp"/llama_cpp_python-*/vendor/llama.cpp "$dir/src"
  rm -rf "$tmp"
fi
cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$dir/build" -j"$(nproc)" --target llama-bench llama-perplexity llama-server llama-cli llama-quantize >&2
echo "$bin"
