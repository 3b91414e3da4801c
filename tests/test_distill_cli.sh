#!/usr/bin/env bash
# labels: cpu model
# `puzzle distill` end to end on a small random heterogeneous child and a
# parent of the same shape (the real tokenizer, random weights): the loss
# falls and the output loads; SIGKILL after a checkpoint and a rerun with
# --resume end with model.safetensors byte-identical to an uninterrupted
# run; a rerun without --resume refuses the checkpoint; bad inputs give one
# clear error line.
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
need_model
command -v sha256sum >/dev/null || { echo "skip: sha256sum not installed"; exit 77; }
cd "$tmp" || exit 1

"$MAKE" c --variant 0 --seed 1 --tokenizer "$MODEL" >/dev/null || { echo "make_test_model failed"; exit 1; }
"$MAKE" p --variant 0 --seed 2 --tokenizer "$MODEL" >/dev/null || exit 1
python3 - >text.txt <<'PY'
import random
r = random.Random(7)
words = ("the of and to in is was for on that with as by at from it an be this which or are were "
         "model layer block attention train value 1905 2024 Paris river quickly blue seven").split()
print("\n".join(" ".join(r.choice(words) for _ in range(r.randint(5, 15))).capitalize() + "." for _ in range(260)))
PY
ARGS=(--teacher p --data text.txt --seq 64 --batch 2 --accum 2 --tokens 4096 --lr 3e-3 --threads 2
      --checkpoint-every 4)
sha() { sha256sum "$1" | cut -d' ' -f1; }

# ---- bad inputs ---------------------------------------------------------------------------
"$BIN" distill c --data text.txt --out x >out 2>errf; rc=$?
check "missing --teacher: usage error" '[ $rc -eq 2 ] && grep -q "teacher" errf'
"$BIN" distill c --teacher p --data nope.txt --out x >out 2>errf; rc=$?
check "missing data file: one error line" '[ $rc -eq 1 ] && [ $(wc -l <errf) -eq 1 ] && grep -q nope.txt errf'

# ---- uninterrupted ------------------------------------------------------------------------
"$BIN" distill c "${ARGS[@]}" --out A >logA 2>&1; rc=$?
check "uninterrupted run succeeds" '[ $rc -eq 0 ]'
check "outputs written" '[ -f A/model.safetensors ] && [ -f A/config.json ] && [ -f A/tokenizer.json ] && [ -f A/gkd_losses.tsv ] && [ -f A/distill.json ]'
check "progress lines with tokens/s and ETA" 'grep -q "^step 16/16 .*tok/s.*ETA" logA'
first=$(awk 'NR==2 {print $3 + $4}' A/gkd_losses.tsv)
last=$(awk 'END {print $3 + $4}' A/gkd_losses.tsv)
check "loss falls ($first -> $last)" 'awk -v a="$first" -v b="$last" "BEGIN {exit !(b < 0.9 * a)}"'
check "the distilled child loads and runs" '"$BIN" eval A --text text.txt --ctx 64 --max-tokens 256 --threads 2 >/dev/null 2>&1'

# ---- SIGKILL after a checkpoint, then --resume ----------------------------------------------
"$BIN" distill c "${ARGS[@]}" --out B >logB 2>&1 &
pid=$!
# Wait (on a loaded machine as long as it takes) for step 10: the checkpoint of step 8 is on disk.
while kill -0 "$pid" 2>/dev/null && ! grep -q "^step 10/" logB 2>/dev/null; do sleep 0.05; done
kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
check "killed mid-run with a checkpoint on disk" '[ -f B/gkd_checkpoint.bin ] && ! grep -q "^step 16/" logB'
"$BIN" distill c "${ARGS[@]}" --out B >logB2 2>&1; rc=$?
check "rerun without --resume refuses" '[ $rc -eq 1 ] && grep -q -- "--resume" logB2'
"$BIN" distill c "${ARGS[@]}" --out B --resume >logB3 2>&1; rc=$?
check "rerun with --resume succeeds" '[ $rc -eq 0 ] && ! grep -q "^step 1/" logB3'
check "killed + resumed == uninterrupted (model.safetensors bytes)" '[ "$(sha A/model.safetensors)" = "$(sha B/model.safetensors)" ]'
check "same loss curve" 'cmp -s A/gkd_losses.tsv B/gkd_losses.tsv'

# ---- other loss weights: recorded, shown, and a checkpoint of other weights is not resumed ----
"$BIN" distill c "${ARGS[@]}" --tokens 1024 --loss-cos 0.5 --loss-lm 0.25 --lr 2e-3 --out L --db L.db >logL 2>&1
rc=$?
check "cos + KL + LM run succeeds (rc $rc)" '[ $rc -eq 0 ] && grep -q "^step 4/4  cos [0-9.]*, KL [0-9.]*, LM [0-9.]* " logL'
check "distill.json records the weights" \
    'grep -q "\"loss_weights\": {\"cos\": 0.5, \"kl\": 1, \"lm\": 0.25, \"temperature\": 1}" L/distill.json'
if command -v sqlite3 >/dev/null; then
    v_w=$(sqlite3 L.db "SELECT loss_cos, loss_kl, loss_lm, kl_temperature, lr FROM distill_runs")
    check "distill_runs records the loss weights and lr ($v_w)" '[ "$v_w" = "0.5|1.0|0.25|1.0|0.002" ]'
fi
"$BIN" distill c "${ARGS[@]}" --tokens 1024 --kl-temperature 2 --out K --db L.db >logK 2>&1; rc=$?
check "KL at temperature 2 (rc $rc)" '[ $rc -eq 0 ]'
"$BIN" report --db L.db --out R >logR 2>&1; rc=$?
check "the report's distillation table shows each run's loss (rc $rc)" \
    '[ $rc -eq 0 ] && grep -q "| 0.5, 1, 0.25; τ 1 |" R/report.md && grep -q "| 1, 1, 0; τ 2 |" R/report.md'
"$BIN" distill c "${ARGS[@]}" --tokens 1024 --loss-lm 0.25 --out L --resume >logL2 2>&1; rc=$?
check "--resume with other loss weights refuses the checkpoint" '[ $rc -eq 1 ]'
"$BIN" distill c "${ARGS[@]}" --kl-temperature 2 --loss-lm 1 --out T >logT 2>&1; rc=$?
check "LM loss with a temperature: one error line" '[ $rc -eq 1 ] && grep -q "temperature" logT'
finish
