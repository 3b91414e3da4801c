#!/usr/bin/env bash
# labels: cpu
# A failure on one tensor-parallel rank ends every rank, with one line that
# names the rank (docs/TP.md "Failures"). `mpirun -np 2` of `puzzle
# generate`, `eval` and `serve --tp 2` on a small random model with the
# SmolLM2 tokenizer; the test-only hook PZ_TP_FAULT=WHAT@RANK
# (runtime/tp_plan.h) makes one rank fail: after loading its shard (load),
# halfway through its N-th forward pass (step:N: the rank still makes the
# pass's all-reduces, and the ranks agree on the call's outcome), or with
# its collectives out of step (comm:N: MPI_Abort ends the job). Each run is
# bounded by `timeout`, so a rank left waiting fails the test instead of
# hanging it; each rank's exit status is recorded by a wrapper shell.
# Skipped (exit 77) only when mpirun is not installed.
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
here="$(cd "$(dirname "$0")" && pwd)"
command -v mpirun >/dev/null || { echo "skip: mpirun not installed (openmpi-bin; scripts/install_deps.sh)"; exit 77; }
"$MAKE" "$tmp/tm" --variant 0 --seed 3 --tokenizer "$here/data/smollm2_tokenizer/tokenizer.json" >/dev/null
check "make_test_model" '[ -f "$tmp/tm/config.json" ]'
printf 'The quick brown fox jumps over the lazy dog. %.0s' $(seq 20) >"$tmp/text.txt"
MPIARGS=(-np 2 --oversubscribe)
[ "$(id -u)" -eq 0 ] && MPIARGS+=(--allow-run-as-root)
BOUND=60  # seconds: a failed job ends in about one; this only catches a hang
# By default mpirun kills the other ranks as soon as one exits non-zero; a rank
# about to exit 1 by itself may then be killed first, so "every rank exits by
# itself" would hang on timing. The runs below turn that off (Open MPI 4's
# name; mpirun then exits 0, so a job's failure is read from its ranks'
# statuses, and a rank left waiting still fails the test through BOUND);
# MPI_Abort (comm faults) ends every rank regardless. One run keeps mpirun's
# default and checks only its exit status, what a user's script sees.
export OMPI_MCA_orte_abort_on_non_zero_status=0
# tp NAME FAULT ARGS...: runs `puzzle ARGS --tp 2` on two ranks with
# PZ_TP_FAULT=FAULT; $tmp/NAME.{out,err} hold the output, $tmp/NAME.rc
# one "rank R exit S" line per rank that exited by itself, $rc mpirun's
# status (124: still running after BOUND seconds, then killed).
tp() {
  local name=$1 fault=$2
  shift 2
  : >"$tmp/$name.rc"
  PZ_TP_FAULT="$fault" OMP_NUM_THREADS=1 ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    timeout -k 5 "$BOUND" mpirun "${MPIARGS[@]}" -x PZ_TP_FAULT -x ASAN_OPTIONS -x OMP_NUM_THREADS \
    bash -c '"$0" "$@"; s=$?; echo "rank $OMPI_COMM_WORLD_RANK exit $s" >>"'"$tmp/$name.rc"'"; exit $s' \
    "$BIN" "$@" --tp 2 --threads 1 >"$tmp/$name.out" 2>"$tmp/$name.err"
  rc=$?
  echo "$name: mpirun $rc; $(tr '\n' ';' <"$tmp/$name.rc")"  # for the log when a check fails
}
# every rank exited by itself with status 1
both_failed() { [ "$(grep -c ' exit 1$' "$tmp/$1.rc")" -eq 2 ]; }
# the job ended by itself (not killed at BOUND) and some rank failed
job_failed() { [ $rc -ne 124 ] && grep -q ' exit [1-9]' "$tmp/$1.rc"; }
# the error lines puzzle printed (mpirun's own notices left out)
plines() { grep '^puzzle ' "$tmp/$1.err"; }
GEN=(generate "$tmp/tm" -p "Hello world, this is" -n 8 --temp 0)

tp gen_ok "" "${GEN[@]}"
check "generate --tp 2 runs without a fault" '[ $rc -eq 0 ] && [ "$(grep -c " exit 0$" "$tmp/gen_ok.rc")" -eq 2 ]'

tp gen_load load@1 "${GEN[@]}"
cat "$tmp/gen_load.err"
check "load fault on rank 1: the job ends, non-zero" 'job_failed gen_load'
check "load fault: both ranks exit 1 by themselves" 'both_failed gen_load'
check "load fault: one line, naming rank 1 and why" \
  '[ "$(plines gen_load | wc -l)" -eq 1 ] && plines gen_load | grep -q "rank 1: injected fault (PZ_TP_FAULT=load@1)"'

tp gen_step step:3@1 "${GEN[@]}"
cat "$tmp/gen_step.err"
check "fault in rank 1's third pass: the job ends, non-zero" 'job_failed gen_step'
check "step fault: both ranks exit 1 by themselves" 'both_failed gen_step'
check "step fault: one line, naming rank 1 and the layer" \
  '[ "$(plines gen_step | wc -l)" -eq 1 ] && plines gen_step | grep -q "tensor parallel: rank 1: injected fault (PZ_TP_FAULT=step:3@1) in layer 3"'

OMPI_MCA_orte_abort_on_non_zero_status=1 tp gen_default step:3@1 "${GEN[@]}"
check "with mpirun's default policy the job's exit status is non-zero" '[ $rc -ne 0 ] && [ $rc -ne 124 ]'

tp gen_step0 step:1@0 "${GEN[@]}"
check "fault in rank 0's prefill: both ranks exit 1, the line names rank 0" \
  'both_failed gen_step0 && plines gen_step0 | grep -q "rank 0: injected fault (PZ_TP_FAULT=step:1@0)"'

tp gen_comm comm:2@1 "${GEN[@]}"
cat "$tmp/gen_comm.err"
check "rank 1's collectives out of step: mpirun ends the job, non-zero" '[ $rc -ne 0 ] && [ $rc -ne 124 ]'
check "comm fault: rank 1 says why and that it ends the job" \
  'plines gen_comm | grep -q "^puzzle generate: rank 1: tensor parallel: injected fault (PZ_TP_FAULT=comm:2@1).*(ending all 2 ranks)"'

tp eval_load load@1 eval "$tmp/tm" --text "$tmp/text.txt" --ctx 64
check "eval: load fault on rank 1 ends both ranks, one line naming it" \
  '[ $rc -ne 124 ] && both_failed eval_load && [ "$(plines eval_load | wc -l)" -eq 1 ] &&
   plines eval_load | grep -q "rank 1: injected fault"'
tp eval_step step:2@1 eval "$tmp/tm" --text "$tmp/text.txt" --ctx 64
check "eval: a fault in rank 1's second window ends both ranks" \
  '[ $rc -ne 124 ] && both_failed eval_step && plines eval_step | grep -q "tensor parallel: rank 1: injected fault"'

# serve: the request in flight gets an error reply naming the rank, then
# the server exits non-zero (a group missing a rank cannot go on).
(tp serve step:2@1 serve "$tmp/tm" --port 0 --ctx 256; echo "$rc" >"$tmp/serve.mpirc") &
port=""
for _ in $(seq 300); do
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/serve.err" 2>/dev/null | head -1)
  [ -n "$port" ] && grep -q "ready in" "$tmp/serve.err" 2>/dev/null && break
  sleep 0.2
done
check "serve --tp 2 gets ready" '[ -n "$port" ]'
python3 - "$port" >"$tmp/reply" 2>&1 <<'EOF'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
c.request("POST", "/v1/completions", json.dumps({"prompt": "Hello world", "max_tokens": 8, "temperature": 0}),
          {"Content-Type": "application/json"})
r = c.getresponse()
print(r.status, r.read().decode())
EOF
cat "$tmp/reply"
check "serve: the request gets an error reply naming rank 1" \
  'grep -q "^5[0-9][0-9] " "$tmp/reply" && grep -q "rank 1: injected fault" "$tmp/reply"'
wait
cat "$tmp/serve.err"
check "serve: every rank exits 1 by itself, the server says why" \
  '[ "$(cat "$tmp/serve.mpirc")" != 124 ] && both_failed serve &&
   plines serve | grep -q "tensor parallel: rank 1: injected fault.*the server stops"'
finish
