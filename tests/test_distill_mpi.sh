#!/usr/bin/env bash
# labels: cpu
# Data-parallel global distillation: `mpirun -np 2` (Open MPI, through
# kernels/comm_mpi.c) against one process with the same global batch (4
# micro-batches per step, dealt 2 + 2 to the ranks), 6 steps on a small
# random heterogeneous child (tests/tools/distill_dp.c). fp32 products, so
# the only difference is the order of the fp32 gradient sums. Tolerances
# (distill_dp.c): per-step losses within 1e-5 relative; the weight updates
# max |ΔA − ΔB| / max |ΔA| <= 1e-3. Skipped (exit 77) only when mpirun is
# not installed (scripts/install_deps.sh installs openmpi-bin).
set -u
. "$(dirname "$0")/lib.sh"
DP="${PUZZLE_DISTILL_DP:?the distill_dp test tool}"
command -v mpirun >/dev/null || { echo "skip: mpirun not installed (openmpi-bin; scripts/install_deps.sh)"; exit 77; }
cd "$tmp" || exit 1
MPIARGS=(-np 2 --oversubscribe)
[ "$(id -u)" -eq 0 ] && MPIARGS+=(--allow-run-as-root)
mkdir one two
"$DP" one.bin one >log1 2>&1; rc=$?
check "one process trains" '[ $rc -eq 0 ] && grep -q "1 rank(s), 6 steps" log1'
# Under AddressSanitizer, Open MPI's runtime (its dlopen'ed components) leaves
# allocations at exit that LeakSanitizer reports without a module to suppress
# by; the ranks skip leak detection, the one-process runs still have it.
OMP_NUM_THREADS=1 ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    mpirun "${MPIARGS[@]}" -x ASAN_OPTIONS "$DP" two.bin two >log2 2>&1; rc=$?
check "two ranks under mpirun train" '[ $rc -eq 0 ] && grep -q "2 rank(s), 6 steps" log2'
[ $rc -eq 0 ] || cat log2 >&2
"$DP" --compare one.bin two.bin >cmp 2>&1; rc=$?
cat cmp
check "two ranks == one process within the tolerances" '[ $rc -eq 0 ]'
# The comparison can fail: one process with another global batch (2
# micro-batches per step) differs beyond the tolerances.
mkdir other
"$DP" other.bin other 2 >log3 2>&1
"$DP" --compare one.bin other.bin >cmp3 2>&1; rc=$?
check "another global batch is told apart" '[ $rc -eq 1 ]'
check "only rank 0 wrote a checkpoint" '[ -f two/gkd_checkpoint.bin ]'
finish
