#!/usr/bin/env bash
# Installs what the tests need (Debian packages, the reference parent, the
# Python virtual environment of the reference scripts), builds
# and runs the CPU test suite. Idempotent.
#   bash scripts/test.sh              # Release build in build/, ctest -L cpu
#   bash scripts/test.sh --sanitize   # ASan+UBSan build in build-asan/, same tests
#   bash scripts/test.sh --openblas   # the OpenBLAS fallback in build-openblas/: the numeric tests
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/fetch_model.sh >/dev/null
# The reference scripts' Python (gguf-py, tokenizers, ...): the cross-checks run, never skip.
PY=$(bash scripts/setup_venv.sh)
if [ "${1:-}" = "--sanitize" ]; then
  bash scripts/build.sh build-asan -DPZ_PYTHON="$PY" -DPZ_SANITIZE=ON -DPZ_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  cd build-asan && ctest -L cpu --output-on-failure -j2
elif [ "${1:-}" = "--openblas" ]; then
  bash scripts/build.sh build-openblas -DPZ_PYTHON="$PY" -DPZ_BLAS=openblas -DPZ_CUDA=OFF
  cd build-openblas && ctest -L cpu --output-on-failure -j2 -R 'test_(kernels|backward|engine|smollm2_ref|blocklib)$'
else
  bash scripts/build.sh build -DPZ_PYTHON="$PY"
  cd build && ctest -L cpu --output-on-failure -j2
fi
