#!/usr/bin/env bash
# labels: cpu model
# `puzzle profile` end to end on a tiny library of a random model: every
# variant x scenario has a row with median > 0 and p10 <= median <= p90
# (noop variants are stored as exactly 0, nothing timed); more KV heads are
# not faster in decode at long context (loose bound: timings are noisy on a
# shared machine); the block_profiles view covers every block; a rerun
# measures nothing; `--calibrate --db` writes a hardware file (and the
# hardware row's json) that `puzzle plan --hardware FILE` accepts;
# `--report` prints predictions; a default profile serves a default cpu
# search; `--device cuda` without a GPU fails with one clear line.
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
need_model
command -v sqlite3 >/dev/null || { echo "skip: sqlite3 CLI not installed"; exit 77; }
cd "$tmp" || exit 1
q() { sqlite3 run.db "$1"; }

"$MAKE" m --variant 0 --seed 1 --tokenizer "$MODEL" >/dev/null || { echo "make_test_model failed"; exit 1; }
python3 - >text.txt <<'EOF'
import random
r = random.Random(7)
w = "the of and to in is was model layer block attention river blue seven".split()
print("\n".join(" ".join(r.choice(w) for _ in range(10)) for _ in range(80)))
EOF
cat >space.json <<'EOF'
{"version": 1, "round_to": 16, "layers": "all",
 "attention": [{"kind": "gqa", "n_kv": 4}, {"kind": "gqa", "n_kv": 1}, {"kind": "linear"}, {"kind": "noop"}],
 "ffn": [{"kind": "swiglu", "n_ff": 96}, {"kind": "swiglu", "n_ff": 16}, {"kind": "linear"}, {"kind": "noop"}]}
EOF
"$BIN" build-library m --db run.db --data text.txt --space space.json --seq-len 32 --tokens 256 --steps 1 \
    --batch 2 --threads 2 --seed 5 >/dev/null 2>&1 || { echo "build-library failed"; exit 1; }

SC=prefill:1x64,decode:1x64,decode:2x2048
PROF=("$BIN" profile --db run.db --scenario "$SC" --repeats 7 --threads 2 --cold-mib 8)
"${PROF[@]}" >out1.txt 2>err1.txt; rc=$?
check "profile exit 0 (rc $rc: $(tail -1 err1.txt))" "[ $rc -eq 0 ]"
check "progress lines" "grep -q '^\[1/' err1.txt"

# the library's variants and the parent's own (which a space may leave out)
n_var=$(q "SELECT (SELECT COUNT(*) FROM (SELECT DISTINCT attn_kind, IFNULL(attn_size, 0) FROM blocks
             WHERE attn_kind IS NOT NULL UNION SELECT attn, CASE attn WHEN 'gqa' THEN n_kv ELSE 0 END FROM layers))
         + (SELECT COUNT(*) FROM (SELECT DISTINCT ffn_kind, IFNULL(ffn_size, 0) FROM blocks
             WHERE ffn_kind IS NOT NULL UNION SELECT ffn, CASE ffn WHEN 'swiglu' THEN n_ff ELSE 0 END FROM layers))")
n_rows=$(q "SELECT COUNT(*) FROM profiles")
check "one row per variant x scenario (+ embed, head): $n_rows vs ($n_var+2)*3" "[ '$n_rows' -eq $(((n_var + 2) * 3)) ]"
check "hardware row" "[ \"\$(q 'SELECT COUNT(*) FROM hardware WHERE measured = 1')\" -eq 1 ]"
badrows=$(q "SELECT part, kind, size, scenario FROM profiles WHERE kind != 'noop' AND
             NOT (median_s > 0 AND p10_s <= median_s AND median_s <= p90_s AND repeats = 7 AND measured = 1)")
check "every timed row: median > 0, p10 <= median <= p90 ($badrows)" "[ -z '$badrows' ]"
badnoop=$(q "SELECT part, scenario FROM profiles WHERE kind = 'noop' AND
             NOT (median_s = 0 AND p10_s = 0 AND p90_s = 0 AND repeats = 0 AND param_bytes = 0)")
check "noop rows exactly 0 ($badnoop)" "[ -z '$badnoop' ]"
kv=$(q "SELECT (SELECT median_s FROM profiles WHERE kind = 'gqa' AND size = 4 AND scenario = 'decode:2x2048') >=
               0.7 * (SELECT median_s FROM profiles WHERE kind = 'gqa' AND size = 1 AND scenario = 'decode:2x2048')")
check "gqa kv4 not faster than kv1 in decode:2x2048 (beyond noise)" "[ '$kv' = 1 ]"
kvb=$(q "SELECT (SELECT kv_bytes_per_token FROM profiles WHERE kind = 'gqa' AND size = 4 LIMIT 1) =
                4 * (SELECT kv_bytes_per_token FROM profiles WHERE kind = 'gqa' AND size = 1 LIMIT 1)")
check "KV bytes per token scale with KV heads" "[ '$kvb' = 1 ]"
pb=$(q "SELECT (SELECT param_bytes FROM profiles WHERE kind = 'swiglu' AND size = 96 LIMIT 1) >
               (SELECT param_bytes FROM profiles WHERE kind = 'swiglu' AND size = 16 LIMIT 1)")
check "wider FFN has more parameter bytes" "[ '$pb' = 1 ]"
unjoined=$(q "SELECT COUNT(*) FROM blocks b WHERE sub != 'pair' AND NOT EXISTS
              (SELECT 1 FROM block_profiles p WHERE p.block_id = b.block_id AND p.scenario = 'decode:1x64')")
check "block_profiles covers every block ($unjoined missing)" "[ '$unjoined' -eq 0 ]"

# A rerun measures nothing.
before=$(q "SELECT group_concat(created_at || median_s) FROM profiles")
"${PROF[@]}" >out2.txt 2>err2.txt; rc=$?
check "rerun exit 0" "[ $rc -eq 0 ]"
check "rerun profiled 0 rows" "grep -q '^profiled 0 rows' out2.txt"
check "rerun changed nothing" "[ \"\$(q 'SELECT group_concat(created_at || median_s) FROM profiles')\" = '$before' ]"

# FP8 weights: the same variants measured as fp8 rows, a quarter of the fp32
# parameter bytes for the matrices (embedding and head stay bf16).
"$BIN" profile --db run.db --scenario decode:1x64 --dtype fp8 --repeats 3 --threads 2 --cold-mib 8 >f8.txt 2>f8e.txt
rc=$?
check "fp8 profile exit 0 (rc $rc: $(tail -1 f8e.txt))" "[ $rc -eq 0 ]"
f8=$(q "SELECT COUNT(*) FROM profiles WHERE dtype = 'fp8' AND scenario = 'decode:1x64' AND median_s > 0")
f8pb=$(q "SELECT (SELECT param_bytes FROM profiles WHERE dtype = 'fp8' AND kind = 'swiglu' AND size = 96) /
                 (SELECT param_bytes FROM profiles WHERE dtype = 'f32' AND kind = 'swiglu' AND size = 96
                  AND scenario = 'decode:1x64') BETWEEN 0.25 AND 0.27")  # + the fp32 norm
check "fp8 rows measured ($f8) with a quarter of the parameter bytes" "[ '$f8' -gt 0 ] && [ '$f8pb' = 1 ]"

# Calibration: a hardware file that plan accepts, and a report against it.
"$BIN" profile --calibrate --db run.db --out hw/cpu.json --threads 2 --repeats 3 >cal.txt 2>&1; rc=$?
check "calibrate exit 0 ($(tail -1 cal.txt))" "[ $rc -eq 0 ] && [ -f hw/cpu.json ]"
check "calibration stored in the hardware row" "[ \"\$(q 'SELECT COUNT(*) FROM hardware WHERE json LIKE \"%flops_bf16%\"')\" -eq 1 ]"
check "calibrated file says measured" "grep -q '\"measured\":[[:space:]]*true' hw/cpu.json"
"$BIN" plan m --hardware "$tmp/hw/cpu.json" --gpus 1 --input 64 --output 64 >plan.txt 2>&1; rc=$?
check "plan --hardware FILE accepts it (rc $rc: $(tail -1 plan.txt))" "[ $rc -eq 0 ]"
# The file's cost_params (if any) become plan's efficiency factors; --eff-* on the command line wins.
"$BIN" plan m --hardware "$tmp/hw/cpu.json" --gpus 1 --input 64 --output 64 --json >plan1.json 2>/dev/null
"$BIN" plan m --hardware "$tmp/hw/cpu.json" --gpus 1 --input 64 --output 64 --eff-gemm 0.3 --json >plan2.json 2>/dev/null
check "plan uses the calibrated factors, flags override" "python3 - hw/cpu.json plan1.json plan2.json <<'PY'
import json, sys
hw, p1, p2 = (json.load(open(f)) for f in sys.argv[1:4])
cp = hw.get('cost_params', {})
for k in ('gemm', 'attn', 'mem', 'link'):
    if 'eff_' + k in cp:
        assert abs(p1['efficiency'][k] - cp['eff_' + k]) < 1e-12, (k, p1['efficiency'], cp)
assert p2['efficiency']['gemm'] == 0.3, p2['efficiency']
PY"
"$BIN" profile --db run.db --threads 2 --report hw/cpu.json >rep.txt 2>&1; rc=$?
check "report exit 0 ($(tail -1 rep.txt))" "[ $rc -eq 0 ] && grep -q '^| ffn swiglu 96 | decode:1x64 |' rep.txt"

# merge-db carries the profiles and the hardware rows.
"$BIN" merge-db --db merged.db run.db >/dev/null 2>&1
check "merge-db carries profiles and hardware" \
    "[ \"\$(sqlite3 merged.db 'SELECT COUNT(*) FROM profiles')\" = \"\$(q 'SELECT COUNT(*) FROM profiles')\" ] &&
     [ \"\$(sqlite3 merged.db 'SELECT COUNT(*) FROM hardware')\" = \"\$(q 'SELECT COUNT(*) FROM hardware')\" ]"

# The defaults agree: `puzzle profile` with no scenario measures what `puzzle
# search --budget cpu` with no scenario prices (a new user's first search).
"$BIN" build-library m --db def.db --data text.txt --space space.json --seq-len 32 --tokens 256 --steps 1 \
    --batch 2 --threads 2 --seed 5 >/dev/null 2>&1 || { echo "build-library (def.db) failed"; exit 1; }
"$BIN" profile --db def.db --repeats 3 --threads 2 --cold-mib 8 >dp.txt 2>&1; rc=$?
check "default profile exit 0 (rc $rc)" "[ $rc -eq 0 ]"
check "default profile = the passes of input=128,output=1024 at batch 1" \
    "[ \"\$(sqlite3 def.db 'SELECT group_concat(s, \" \") FROM (SELECT DISTINCT scenario s FROM profiles ORDER BY 1)')\" = 'decode:1x640 prefill:1x128' ]"
"$BIN" score --db def.db --data text.txt --tokens 128 --seq-len 32 --threads 2 >ds.txt 2>&1 ||
    { echo "score (def.db) failed: $(tail -1 ds.txt)"; exit 1; }
"$BIN" search --db def.db --budget cpu --time-limit 5 >dsearch.txt 2>dsearch.err; rc=$?
check "default cpu search runs on the default profile (rc $rc: $(tail -1 dsearch.err))" \
    "[ $rc -eq 0 ] && ! grep -q 'profile' dsearch.err && grep -q 'input=128,output=1024' dsearch.txt"

# Bad input: one line, usage exit code.
"$BIN" profile --db run.db --scenario warmup:1x2 >o.txt 2>e.txt; rc=$?
check "bad scenario: rc 2, one line" "[ $rc -eq 2 ] && [ \$(wc -l <e.txt) -eq 1 ]"
"$BIN" profile --db run.db --device tpu >o.txt 2>e.txt; rc=$?
check "unknown device: rc 2" "[ $rc -eq 2 ] && grep -q 'cpu or cuda' e.txt"
# --device cuda: without a GPU (or a CUDA build) one clear line, not a crash.
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L 2>/dev/null | grep -q GPU; then
  "$BIN" profile --db run.db --device cuda >o.txt 2>e.txt; rc=$?
  check "--device cuda without a GPU: rc 1, says why ($(cat e.txt))" \
      "[ $rc -eq 1 ] && grep -Eq 'no CUDA device|not built into' e.txt && [ \$(wc -l <e.txt) -eq 1 ]"
fi

finish
