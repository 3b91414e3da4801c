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
#   5. runs test_devmem on the GPU: a BLD block, replace-1-block scoring and
#      distillation steps on the CUDA backend against the CPU's, within
#      tolerances, and the distillation's stop-and-resume bit-identical,
#      then with --sanitize, check_ops --quick under compute-sanitizer memcheck,
#   6. with the reference parent ($PUZZLE_MODEL, default ~/.cache/puzzle's
#      SmolLM2-135M-Instruct Q4_1; skipped without it): TP 1 against TP 3
#      over NCCL (greedy `puzzle generate`, three processes, where there are
#      3 GPUs), and server throughput at 1/16/64 streams (bench/serve_load)
#      on one GPU, and at TP 3 where there are 3 GPUs.
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
if ! timeout 360 cmake --build build-gpu -j"$(nproc)" --target check_ops test_cuda_host test_bootstrap test_engine_graph test_devmem puzzle serve_load >build-gpu.make.log 2>&1; then
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

stage "BLD, scoring and distillation on the GPU against the CPU (test_devmem)"
(cd build-gpu/tests && OMP_WAIT_POLICY=passive PUZZLE_CUDA_DEVICE=0 PUZZLE_DEVMEM_DEVICE=cuda timeout 120 ./test_devmem)
case $? in
  0) ;;
  77) echo "test_devmem: CUDA did not start (see above)"; fails=$((fails + 1)) ;;
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

model="${PUZZLE_MODEL:-$HOME/.cache/puzzle/SmolLM2-135M-Instruct.Q4_1.gguf}"
P="The capital of France is"
# tp_run N OUT ARGS...: puzzle with --tp N as N processes (one per GPU, NCCL id by a
# fresh file), rank 0's stdout to OUT, each rank's stderr to OUT.RANK.err.
tp_run() {
  local n=$1 out=$2 id r
  shift 2
  id="file:$(mktemp -u /tmp/pz-nccl-XXXXXX)"
  local pids=()
  for r in $(seq 0 $((n - 1))); do
    if [ "$r" -eq 0 ]; then
      RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r build-gpu/puzzle "$@" --tp "$n" --tp-init "$id" >"$out" 2>"$out.$r.err" &
    else
      RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r build-gpu/puzzle "$@" --tp "$n" --tp-init "$id" >/dev/null 2>"$out.$r.err" &
    fi
    pids+=($!)
  done
  echo "${pids[@]}" >"$out.pids"
}
tp_wait() {  # tp_wait OUT: waits for the ranks tp_run started; 0 when all exited 0
  local p rc=0
  for p in $(cat "$1.pids"); do wait "$p" || rc=1; done
  return $rc
}
# serve_bench LABEL PORTFILE: waits for the server logging to PORTFILE, runs serve_load.
serve_bench() {
  local port="" i
  for i in $(seq 1 240); do
    port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$2" 2>/dev/null | head -1)
    [ -n "$port" ] && grep -q "ready in" "$2" && break
    sleep 0.5
  done
  if [ -z "$port" ] || ! grep -q "ready in" "$2"; then
    echo "$1: the server did not come up"; tail -5 "$2"; return 1
  fi
  timeout 150 build-gpu/serve_load --url "http://127.0.0.1:$port" --levels 1,16,64 --requests 2 --max-tokens 64 \
      --label "$1" --timeout 60
}
if [ ! -f "$model" ]; then
  stage "tensor parallel and serving: skipped (no reference parent at $model: scripts/fetch_model.sh, or PUZZLE_MODEL)"
else
  mkdir -p /tmp/pz-gpu-tp && tdir=$(mktemp -d /tmp/pz-gpu-tp/run-XXXXXX)
  if [ "$ngpu" -ge 3 ]; then
    stage "TP 1 vs TP 3 over NCCL (puzzle generate --device cuda, greedy, 32 tokens)"
    timeout 120 build-gpu/puzzle generate "$model" --device cuda -p "$P" -n 32 >"$tdir/tp1.txt" 2>"$tdir/tp1.err"
    rc1=$?
    tp_run 3 "$tdir/tp3.txt" generate "$model" --device cuda -p "$P" -n 32
    ( sleep 180; kill $(cat "$tdir/tp3.txt.pids") 2>/dev/null ) & watchdog=$!
    tp_wait "$tdir/tp3.txt"; rc3=$?
    kill $watchdog 2>/dev/null
    tail -1 "$tdir/tp1.err"; tail -1 "$tdir/tp3.txt.0.err"
    echo "TP 1: $(head -c 200 "$tdir/tp1.txt" | tr '\n' ' ')"
    echo "TP 3: $(head -c 200 "$tdir/tp3.txt" | tr '\n' ' ')"
    if [ $rc1 -eq 0 ] && [ $rc3 -eq 0 ] && [ -s "$tdir/tp1.txt" ] && cmp -s "$tdir/tp1.txt" "$tdir/tp3.txt"; then
      echo "TP 3 == TP 1: the same greedy text"
    else
      echo "FAIL: TP 3 differs from TP 1 or failed (rc $rc1 / $rc3; stderr in $tdir)"
      for f in "$tdir"/tp3.txt.*.err; do tail -3 "$f"; done
      fails=$((fails + 1))
    fi
  else
    stage "TP 1 vs TP 3: $ngpu GPU(s) here, 3 needed: skipped"
  fi
  stage "serve throughput, one GPU (bf16, 1/16/64 streams, 2 requests each, 64 tokens)"
  PUZZLE_CUDA_DEVICE=0 build-gpu/puzzle serve "$model" --device cuda --port 0 --max-seqs 64 --ctx 512 \
      2>"$tdir/serve1.log" & spid=$!
  serve_bench "cuda tp1" "$tdir/serve1.log" || fails=$((fails + 1))
  kill -TERM $spid 2>/dev/null; wait $spid 2>/dev/null
  if [ "$ngpu" -ge 3 ]; then
    stage "serve throughput, TP 3 over NCCL (same load)"
    tp_run 3 "$tdir/serve3.out" serve "$model" --device cuda --port 0 --max-seqs 64 --ctx 512
    serve_bench "cuda tp3" "$tdir/serve3.out.0.err" || fails=$((fails + 1))
    read -r rank0 _ <"$tdir/serve3.out.pids"
    kill -TERM "$rank0" 2>/dev/null  # rank 0 drains and releases the others
    ( sleep 60; kill -9 $(cat "$tdir/serve3.out.pids") 2>/dev/null ) & watchdog=$!
    tp_wait "$tdir/serve3.out"
    kill $watchdog 2>/dev/null
  fi
fi
stage "done: $fails failing stage(s); log in $log"
[ "$fails" -eq 0 ] && exit 0 || exit 1
