#!/usr/bin/env bash
# labels: cpu
# Tensor parallelism in the engine: `mpirun -np 2` of tests/tools/tp_engine.c
# on random heterogeneous models (GQA with 4, 2 and 1 KV heads — sharded,
# one per rank, replicated per rank — and 3 KV heads over 6 query heads,
# which splits neither way and runs whole on each rank; linear and noop
# sub-blocks; SwiGLU widths 40 and 8 that leave ranks unequal or empty
# shares). Rank 0 compares every call's logits (prefill, batched decode of
# 2 and 3 slots, a fork, a prefix hit, a batched prefill of 3 slots) with a one-rank engine: fp32
# weights, tolerance 2e-5 of the largest logit (only the order of fp32 sums
# differs). The models are built in memory (the engine slices them) and
# read back from Hugging Face and GGUF files as per-rank shards
# (pz_model_load_shard). A perturbed rank must be caught. Skipped (exit 77) only when
# mpirun is not installed (scripts/install_deps.sh installs openmpi-bin).
set -u
. "$(dirname "$0")/lib.sh"
TP="${PUZZLE_TP_ENGINE:?the tp_engine test tool}"
command -v mpirun >/dev/null || { echo "skip: mpirun not installed (openmpi-bin; scripts/install_deps.sh)"; exit 77; }
cd "$tmp" || exit 1
MPIARGS=(-np 2 --oversubscribe)
[ "$(id -u)" -eq 0 ] && MPIARGS+=(--allow-run-as-root)
# Ranks skip leak detection under AddressSanitizer (Open MPI's runtime
# leaves allocations at exit; see test_distill_mpi.sh).
run() {
  OMP_NUM_THREADS=1 ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
      mpirun "${MPIARGS[@]}" -x ASAN_OPTIONS "$TP" "$@"
}
mkdir models
run models >log 2>&1; rc=$?
cat log
check "two ranks match one within the tolerance" '[ $rc -eq 0 ] && grep -q "2 rank(s)" log && grep -q "ok$" log'
check "seven cases, eleven calls each, compared" '[ "$(grep -c "max|diff|" log)" -eq 77 ]'
check "shards loaded from HF and GGUF files" '[ "$(grep -c "shard of rank 0" log)" -eq 4 ]'
run --perturb >log2 2>&1; rc=$?
check "a wrong shard on rank 1 is caught" '[ $rc -ne 0 ] && grep -q "BEYOND TOLERANCE" log2'
"$TP" >log3 2>&1; rc=$?
check "one process runs the same script" '[ $rc -eq 0 ] && grep -q "1 rank(s)" log3'
finish
