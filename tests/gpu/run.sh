#!/usr/bin/env bash
# run.sh — the CUDA backend's checks in one command, for a machine with one or
# more NVIDIA GPUs (H100/H200 class: sm_90). It
#   1. prints what the machine has (GPUs, driver, nvcc),
#   2. builds puzzle with the CUDA backend into build-gpu/ (Release, all cores),
#   3. runs the host-side tests (test_cuda_host, test_bootstrap, test_engine_graph),
#   4. runs tests/gpu/check_ops: every CUDA op against the CPU backend on
#      random inputs, whole test models through the engine on both
#      backends, the training ops against the CPU's and by finite
#      differences, then a timing table (cuBLASLt bf16 / FP8 TFLOP/s at
#      8192^3, prefill tokens/s and the decode step time with and without
#      the engine's CUDA graphs, of a SmolLM2-135M-shaped model),
#   5. with --sanitize, runs check_ops --quick under compute-sanitizer memcheck.
# Everything it prints also goes to results/gpu/run-<UTC time>.log. It is
# sized to finish within 8 minutes (build ~2 min on 16 cores, checks ~1 min,
# timing ~1 min); each stage has its own timeout.
#
# Exit status: 0 all passed; 1 a check failed; 2 no GPU here (after building
# and running the host-side tests) or the build failed (the message says
# which and why).
#
# Build dependencies are the project's Debian packages (scripts/install_deps.sh).
# On a machine that has CUDA but not those packages and cannot reach a
# package registry, run tests/gpu/fetch_deps.sh on a machine that can (same
# distribution family), carry tests/gpu/deps/ along, and this script unpacks
# the .deb files into a private prefix (nothing is installed system-wide).
#
#   tests/gpu/run.sh [--quick] [--sanitize] [--seed S]
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
quick="" sanitize=0 seed=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick="--quick" ;;
    --sanitize) sanitize=1 ;;
    --seed) seed=(--seed "$2"); shift ;;
    *) echo "usage: tests/gpu/run.sh [--quick] [--sanitize] [--seed S]"; exit 2 ;;
  esac
  shift
done
mkdir -p results/gpu
log="results/gpu/run-$(date -u +%Y%m%dT%H%M%SZ).log"
exec > >(tee "$log") 2>&1
t_start=$(date +%s)
stage() { echo; echo "== $* ($(( $(date +%s) - t_start )) s)"; }

stage "machine"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --porcelain 2>/dev/null | grep -q . && echo '(with local changes)')"
export PATH="$PATH:/usr/local/cuda/bin"
ngpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q GPU; then
  nvidia-smi --query-gpu=index,name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  ngpu=$(nvidia-smi -L | grep -c GPU)
else
  echo "nvidia-smi finds no GPU: the build and host-side tests still run, the GPU checks cannot"
fi
if ! command -v nvcc >/dev/null; then
  echo "no nvcc: the CUDA toolkit is needed to build (looked on PATH and in /usr/local/cuda/bin)"
  exit 2
fi
nvcc --version | tail -2
echo "CPU cores: $(nproc)"

# Private prefix of carried .deb files, if the packages are missing here.
if [ -d tests/gpu/deps ] && ls tests/gpu/deps/*.deb >/dev/null 2>&1 && ! pkg-config --exists libcjson 2>/dev/null; then
  stage "unpacking tests/gpu/deps into /tmp/pz-deps"
  for f in tests/gpu/deps/*.deb; do dpkg -x "$f" /tmp/pz-deps || exit 2; done
  multi=/tmp/pz-deps/usr/lib/x86_64-linux-gnu
  # pkg-config reads only the carried .pc files and prefixes their paths with the sysroot.
  export PKG_CONFIG_LIBDIR="$multi/pkgconfig:/tmp/pz-deps/usr/share/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR=/tmp/pz-deps
  sed -i '/^Requires.private/d' "$multi"/pkgconfig/*.pc  # shared linking needs none of them
  export CMAKE_PREFIX_PATH="/tmp/pz-deps/usr:${CMAKE_PREFIX_PATH:-}"
  export LD_LIBRARY_PATH="$multi:${LD_LIBRARY_PATH:-}"
  export CPATH="/tmp/pz-deps/usr/include:${CPATH:-}"
  export LIBRARY_PATH="$multi:${LIBRARY_PATH:-}"
  export PATH="$PATH:/tmp/pz-deps/usr/bin"  # pkg-config, if the machine has none
fi

stage "build (build-gpu/, CUDA on)"
# sm_90 machine code only: the H100/H200 this script is for (saves build time).
if ! timeout 300 cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DPZ_CUDA=ON -DPZ_PYTHON= \
      -DPZ_CUDA_ARCHS=90 >build-gpu.cmake.log 2>&1; then
  tail -30 build-gpu.cmake.log
  echo "build failed at configure (full log: build-gpu.cmake.log). Missing packages? See scripts/install_deps.sh or tests/gpu/fetch_deps.sh."
  exit 2
fi
if ! timeout 360 cmake --build build-gpu -j"$(nproc)" --target check_ops test_cuda_host test_bootstrap test_engine_graph >build-gpu.make.log 2>&1; then
  grep -E "error|Error" build-gpu.make.log | head -30
  echo "build failed (full log: build-gpu.make.log)"
  exit 2
fi
echo "built in $(( $(date +%s) - t_start )) s"

fails=0
stage "host-side tests"
for t in test_cuda_host test_bootstrap test_engine_graph; do
  (cd build-gpu/tests && OMP_WAIT_POLICY=passive timeout 60 ./$t) || fails=$((fails + 1))
done

if [ "$ngpu" -eq 0 ]; then
  stage "no GPU: built and ran the host-side tests ($fails failing); the CUDA ops need a GPU to check"
  exit 2
fi

stage "check_ops: CUDA ops vs the CPU backend, engine, timing ($ngpu GPU(s); checks use device 0)"
(cd build-gpu/tests && OMP_WAIT_POLICY=passive PUZZLE_CUDA_DEVICE=0 timeout 300 ./check_ops $quick "${seed[@]}")
rc=$?
case $rc in
  0) ;;
  77) echo "check_ops found no usable GPU (see its message above)"; exit 2 ;;
  124) echo "check_ops timed out after 300 s"; fails=$((fails + 1)) ;;
  *) fails=$((fails + 1)) ;;
esac

if [ "$sanitize" = 1 ]; then
  stage "compute-sanitizer memcheck (check_ops --quick)"
  if command -v compute-sanitizer >/dev/null; then
    (cd build-gpu/tests && timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 ./check_ops --quick "${seed[@]}" | tail -15) || fails=$((fails + 1))
  else
    echo "compute-sanitizer not found: skipped"
  fi
fi

if [ "$ngpu" -ge 3 ]; then
  echo "(TP 1 vs TP 3: the engine has no tensor-parallel mode yet; nothing to compare)"
fi
stage "done: $fails failing stage(s); log in $log"
[ "$fails" -eq 0 ] && exit 0 || exit 1
