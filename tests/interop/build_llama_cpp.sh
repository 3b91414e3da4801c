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
  # pip prepares the sdist's metadata in an isolated environment (it needs
  # scikit-build-core, which it fetches itself); nothing is built or installed.
  if [ -f "${LLAMA_CPP_PYTHON_SDIST:-}" ]; then cp "$LLAMA_CPP_PYTHON_SDIST" "$tmp/"; else
    python3 -m pip download --no-deps --no-binary :all: -d "$tmp" \
      "llama-cpp-python==$VERSION" >&2
  fi
  tar -xzf "$tmp"/llama_cpp_python-*.tar.gz -C "$tmp"
  mv "$tmp"/llama_cpp_python-*/vendor/llama.cpp "$dir/src"
  rm -rf "$tmp"
fi
cmake -S "$dir/src" -B "$dir/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF >&2
cmake --build "$dir/build" -j"$(nproc)" --target llama-bench llama-perplexity llama-server llama-cli llama-quantize >&2
echo "$bin"
