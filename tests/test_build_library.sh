#!/usr/bin/env bash
# labels: cpu model
# `puzzle build-library` and `puzzle merge-db` end to end on a small random
# heterogeneous model with the real tokenizer: every block of the space is
# recorded once with sane numbers; a rerun does nothing; SIGKILL at several
# moments and reruns end with the same library as an uninterrupted run
# (bit-identical files), an intact database and no stray files; SIGINT stops
# cleanly; two shards merged equal the unsharded run; bad inputs give one
# clear error line.
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
need_model
command -v sqlite3 >/dev/null || { echo "skip: sqlite3 CLI not installed"; exit 77; }
command -v sha256sum >/dev/null || { echo "skip: sha256sum not installed"; exit 77; }
cd "$tmp" || exit 1
q() { sqlite3 "$1" "$2"; }
now() { date +%s.%N; }

"$MAKE" m --variant 0 --seed 1 --tokenizer "$MODEL" >/dev/null || { echo "make_test_model failed"; exit 1; }
"$MAKE" other --variant 0 --seed 2 --tokenizer "$MODEL" >/dev/null || exit 1
# ~14 KB of varied text (about 3000 tokens).
python3 - >text.txt <<'EOF'
import random
r = random.Random(7)
words = ("the of and to in is was for on that with as by at from it an be this which or are were "
         "model layer block attention train value 1905 2024 Paris river quickly blue seven").split()
print("\n".join(" ".join(r.choice(words) for _ in range(r.randint(5, 15))).capitalize() + "." for _ in range(260)))
EOF
cat >space.json <<'EOF'
{"version": 1, "round_to": 16, "layers": "all",
 "attention": [{"kind": "gqa", "n_kv": 4}, {"kind": "gqa", "n_kv": 2}, {"kind": "gqa", "n_kv": 1},
               {"kind": "linear"}, {"kind": "noop"}],
 "ffn": [{"kind": "swiglu", "n_ff": 160}, {"kind": "swiglu", "n_ff": 96}, {"kind": "swiglu", "n_ff": 48},
         {"kind": "swiglu", "n_ff": 16}, {"kind": "linear"}, {"kind": "noop"}]}
EOF
ARGS=(--data text.txt --space space.json --seq-len 64 --tokens 2048 --steps 300 --batch 8 --threads 2 --seed 5)
build() { "$BIN" build-library m "${ARGS[@]}" "$@"; }

# ---- bad inputs: one line on stderr, non-zero exit -------------------------------------
one_err() { # name, expected rc (or "nz"), grep pattern, command...
    local name=$1 want=$2 pat=$3; shift 3
    "$@" >out.txt 2>err.txt; local rc=$?
    if [ "$want" = nz ]; then [ $rc -ne 0 ] || { bad "$name: rc $rc"; return; }
    else [ $rc -eq "$want" ] || { bad "$name: rc $rc, want $want"; cat err.txt >&2; return; }; fi
    [ "$(wc -l <err.txt)" -eq 1 ] || { bad "$name: $(wc -l <err.txt) lines"; cat err.txt >&2; return; }
    grep -q -- "$pat" err.txt || { bad "$name: message: $(cat err.txt)"; return; }
    grep -q "^puzzle build-library: \|^puzzle merge-db: " err.txt || { bad "$name: prefix: $(cat err.txt)"; return; }
    ok
}
one_err "missing data file" 1 "nope.txt" "$BIN" build-library m --db bad.db --data nope.txt
one_err "missing --db" 2 "\-\-db" "$BIN" build-library m --data text.txt
one_err "bad --shard" 2 "\-\-shard" "$BIN" build-library m --db bad.db --data text.txt --shard 2/2
one_err "bad --shard form" 2 "\-\-shard" "$BIN" build-library m --db bad.db --data text.txt --shard x
one_err "bad --mode" 2 "\-\-mode" "$BIN" build-library m --db bad.db --data text.txt --mode both
printf '{"version": 1, "attention": [{"kind": "gqa", "n_kv": 3}], "ffn": [{"kind": "noop"}]}' >infeasible.json
one_err "infeasible space" 1 "n_kv\|KV\|kv" "$BIN" build-library m --db bad.db --data text.txt --space infeasible.json
printf '{"version": 1, "attention": [{"kind": "noop"}], "ffn": [{"kind": "swiglu", "n_ff": 0}]}' >zero.json
one_err "zero FFN width" 1 "n_ff\|width" "$BIN" build-library m --db bad.db --data text.txt --space zero.json
printf 'hi' >tiny.txt
one_err "too little text" 1 "windows" "$BIN" build-library m --db bad.db --data tiny.txt --seq-len 64
check "no block files from failed starts" '[ -z "$(ls bad.blocks 2>/dev/null)" ]'

# ---- a full run ----------------------------------------------------------------------------
t0=$(now)
build --db a.db 2>a.log; rc=$?
ta=$(echo "$(now) - $t0" | bc)
check "full run exits 0" '[ $rc -eq 0 ]' || cat a.log >&2
N=$(q a.db "SELECT count(*) FROM blocks")
NT=$(q a.db "SELECT count(*) FROM blocks WHERE needs_training")
check "blocks enumerated (6 layers, $N blocks, $NT trained)" '[ "$N" -ge 30 ] && [ "$NT" -ge 15 ]'
check "every block done once" '[ "$(q a.db "SELECT count(DISTINCT block_id) FROM blocks WHERE status = '"'done'"'")" = "$N" ]'
check "one run per block" '[ "$(q a.db "SELECT count(*) FROM bld_runs WHERE status = '"'done'"'")" = "$N" ]'
check "progress line with rate and ETA" 'grep -q "\[block $N/$N\].*tokens/s, ETA" a.log'
check "capture disk use printed" 'grep -q "capture: 6 layers x 2048 tokens -> .* in " a.log'
check "trained blocks: file, sha256, 300 steps" '[ "$(q a.db "SELECT count(*) FROM library WHERE weight_file IS NOT NULL
    AND length(sha256) = 64 AND steps = 300 AND tokens = 300 * 8 * 64 AND n_params > 0")" = "$NT" ]'
check "untrained blocks: parent or noop, no file" '[ "$(q a.db "SELECT count(*) FROM library
    WHERE NOT needs_training AND weight_file IS NULL AND sha256 IS NULL AND steps = 0
    AND init_method IN ('"'parent'"', '"'noop'"')")" = "$((N - NT))" ]'
check "parent copies have NMSE ~0 (bf16 capture rounding)" '[ "$(q a.db "SELECT count(*) FROM library WHERE is_parent AND final_val_nmse > 1e-3")" = 0 ]'
# (the per-token loss adds eps = 1e-6 to each token's ‖t‖²: noop is 1 less a hair)
check "noop has NMSE 1 (where the parent is not noop)" '[ "$(q a.db "SELECT count(*) FROM library
    WHERE init_method = '"'noop'"' AND NOT is_parent AND NOT final_val_nmse BETWEEN 1 - 1e-4 AND 1")" = 0 ]'
check "noop has global NMSE 1" '[ "$(q a.db "SELECT count(*) FROM library l JOIN bld_runs r ON r.block_id = l.block_id
    WHERE l.init_method = '"'noop'"' AND NOT l.is_parent AND abs(r.final_val_global - 1) > 1e-9")" = 0 ]'
check "every run recorded with the per-token loss" '[ "$(q a.db "SELECT DISTINCT loss FROM bld_runs")" = token ]'
check "NMSE numbers sane" '[ "$(q a.db "SELECT count(*) FROM library WHERE init_method <> '"'noop'"' AND NOT
    (final_val_nmse >= 0 AND final_val_nmse < 1.5 AND init_val_nmse >= 0 AND final_val_nmse <= init_val_nmse + 0.02
     AND wall_s >= 0)")" = 0 ]'
check "training lowers NMSE of gqa and swiglu blocks" '[ "$(q a.db "SELECT count(*) FROM library l JOIN blocks b USING (block_id)
    WHERE b.needs_training AND (b.attn_kind = '"'gqa'"' OR b.ffn_kind = '"'swiglu'"')
    AND NOT l.final_val_nmse < l.init_val_nmse")" = 0 ]'
check "loss curves recorded" '[ "$(q a.db "SELECT count(*) FROM (SELECT block_id FROM library_curves GROUP BY block_id
    HAVING count(*) >= 2 AND max(step) = 300)")" = "$NT" ]'
check "parent and layers recorded" '[ "$(q a.db "SELECT count(*) FROM layers")" = 6 ] &&
    q a.db "SELECT identity FROM models WHERE role = '"'parent'"'" | grep -q "^sha256:"'
check "schema version and WAL" '[ "$(q a.db "PRAGMA user_version")" -ge 1 ] && [ "$(q a.db "PRAGMA journal_mode")" = wal ]'
check "files match their rows" '[ "$(q a.db "SELECT sha256 || \"  \" || weight_file FROM blocks WHERE weight_file IS NOT NULL" |
    sha256sum -c --quiet 2>&1 | wc -l)" = 0 ]'

# ---- a rerun does nothing, quickly; a different space or parent is refused --------------------
t0=$(now)
build --db a.db 2>re.log; rc=$?
tr=$(echo "$(now) - $t0" | bc)
check "rerun exits 0 with nothing to do" '[ $rc -eq 0 ] && grep -q "nothing to do" re.log'
check "rerun is fast (${tr}s; it trains nothing)" '[ "$(echo "$tr < 10" | bc)" = 1 ]'
check "rerun adds no runs" '[ "$(q a.db "SELECT count(*) FROM bld_runs")" = "$N" ]'
sed 's/"n_ff": 16}/"n_ff": 32}/' space.json >space2.json
one_err "another space" 1 "another search space" "$BIN" build-library m --db a.db --data text.txt --space space2.json
one_err "another parent" 1 "different model" "$BIN" build-library other --db a.db --data text.txt
# The database's own space is used without --space.
"$BIN" build-library m --db a.db --data text.txt --threads 2 2>/dev/null
check "no --space uses the stored space" '[ $? -eq 0 ]'

# ---- kill -9 at several moments, then rerun to completion -------------------------------------
kills=0 mid=0 trail=""
for d in 0.05 0.3 0.6 1.0 1.5 2.2; do
    "$BIN" build-library m "${ARGS[@]}" --db k.db >/dev/null 2>>k.log &  # not the function: $! must be puzzle
    pid=$!
    sleep "$d"
    if kill -9 $pid 2>/dev/null; then kills=$((kills + 1)); fi
    wait $pid 2>/dev/null
    done_now=$(q k.db "SELECT count(*) FROM blocks WHERE status = 'done'" 2>/dev/null || echo 0)
    trail="$trail $done_now"
    [ "$done_now" -lt "$N" ] && mid=$((mid + 1))
done
echo "killed $kills times; blocks done after each kill:$trail (of $N)"
check "kills landed mid-run" '[ $kills -ge 4 ] && [ $mid -ge 3 ]'
build --db k.db 2>k2.log; rc=$?
check "resume completes" '[ $rc -eq 0 ]' || cat k2.log >&2
check "integrity_check ok" '[ "$(q k.db "PRAGMA integrity_check")" = ok ] && [ -z "$(q k.db "PRAGMA foreign_key_check")" ]'
check "every block present once and done" '[ "$(q k.db "SELECT count(DISTINCT block_id) || \" \" || count(*) || \" \" ||
    sum(status = '"'done'"') FROM blocks")" = "$N $N $N" ]'
check "resumed files match their rows" '[ "$(q k.db "SELECT sha256 || \"  \" || weight_file FROM blocks WHERE weight_file IS NOT NULL" |
    sha256sum -c --quiet 2>&1 | wc -l)" = 0 ]'
check "no stray temporary files" '[ -z "$(find k.blocks k.cache a.blocks -name "*.tmp*")" ]'
check "no orphan block files" '[ "$(ls k.blocks | wc -l)" = "$NT" ]'
check "resumed library identical to the uninterrupted one" \
    '[ "$(q k.db "SELECT block_id, sha256 FROM blocks ORDER BY 1")" = "$(q a.db "SELECT block_id, sha256 FROM blocks ORDER BY 1")" ]'

# ---- SIGINT stops cleanly, saying that a rerun resumes ------------------------------------------
"$BIN" build-library m "${ARGS[@]}" --db i.db >/dev/null 2>i.log &
pid=$!
# signal only once the handlers are in (it prints the plan after installing them): on a
# loaded machine a fixed sleep could land during start-up, where SIGINT's default applies
for _ in $(seq 300); do grep -q "to do" i.log 2>/dev/null && break; sleep 0.1; done
sleep 0.3
kill -INT $pid
wait $pid; rc=$?
check "SIGINT: non-zero exit and a resume hint" '[ $rc -ne 0 ] && grep -q "interrupted.*rerun the same command to resume" i.log'
check "SIGINT: nothing partial" '[ -z "$(find i.blocks i.cache -name "*.tmp*")" ] &&
    [ "$(q i.db "SELECT count(*) FROM blocks WHERE weight_file IS NOT NULL")" = "$(ls i.blocks | wc -l)" ]'

# ---- two shards, merged, equal the unsharded library ------------------------------------------
build --db s0.db --shard 0/2 2>s0.log && build --db s1.db --shard 1/2 2>s1.log
check "shards run" '[ $? -eq 0 ]'
n0=$(q s0.db "SELECT count(*) FROM blocks WHERE status = 'done'")
n1=$(q s1.db "SELECT count(*) FROM blocks WHERE status = 'done'")
check "shards split the blocks ($n0 + $n1)" '[ $((n0 + n1)) -eq "$N" ] && [ "$n0" -gt 0 ] && [ "$n1" -gt 0 ]'
"$BIN" merge-db --db merged.db s0.db s1.db 2>m.log
check "merge-db exits 0" '[ $? -eq 0 ]' || cat m.log >&2
check "merged library equals the unsharded one" \
    '[ "$(q merged.db "SELECT block_id, status, init_method, sha256, steps, final_val_nmse FROM library ORDER BY 1")" = \
       "$(q a.db "SELECT block_id, status, init_method, sha256, steps, final_val_nmse FROM library ORDER BY 1")" ]'
check "merged curves complete" '[ "$(q merged.db "SELECT count(*) FROM library_curves")" = "$(q a.db "SELECT count(*) FROM library_curves")" ]'
check "merged files own and valid" '[ "$(q merged.db "SELECT sha256 || \"  \" || weight_file FROM blocks WHERE weight_file IS NOT NULL" |
    sha256sum -c --quiet 2>&1 | wc -l)" = 0 ] && [ "$(ls merged.blocks | wc -l)" = "$NT" ]'
"$BIN" merge-db --db merged.db s0.db s1.db 2>m2.log
check "merging again changes nothing" '[ $? -eq 0 ] && [ "$(q merged.db "SELECT count(*) FROM bld_runs")" = "$N" ] &&
    grep -q "0 blocks copied" m2.log'
"$BIN" build-library other --db o.db "${ARGS[@]}" --steps 2 --shard 0/4 2>/dev/null
one_err "merge refuses another parent" 1 "parent" "$BIN" merge-db --db merged.db o.db
"$BIN" build-library m --db sp.db "${ARGS[@]}" --space space2.json --steps 2 --shard 0/8 2>/dev/null
one_err "merge refuses another space" 1 "another search space" "$BIN" merge-db --db merged.db sp.db
one_err "merge refuses a missing input" 1 "no such database" "$BIN" merge-db --db merged.db nope.db
one_err "merge needs inputs" 2 "no input" "$BIN" merge-db --db merged.db
check "merged database intact" '[ "$(q merged.db "PRAGMA integrity_check")" = ok ]'

# ---- coupled mode: (attention, FFN) pairs trained together -------------------------------------
cat >pairs.json <<'EOF'
{"version": 1, "round_to": 16, "layers": [0, 5],
 "attention": [{"kind": "gqa", "n_kv": 1}, {"kind": "noop"}], "ffn": [{"kind": "swiglu", "n_ff": 16}, {"kind": "noop"}]}
EOF
"$BIN" build-library m --db c.db --data text.txt --space pairs.json --mode coupled --seq-len 64 --tokens 1024 \
    --steps 20 --threads 2 2>c.log
check "coupled mode" '[ $? -eq 0 ] && [ "$(q c.db "SELECT count(*) FROM library WHERE sub = '"'pair'"' AND status = '"'done'"'
    AND mode = '"'coupled'"' AND attn_variant IS NOT NULL AND ffn_variant IS NOT NULL")" = 8 ] &&
    q c.db "SELECT block_id FROM blocks" | grep -q "^L05.pair.gqa_kv1+swiglu_16$"' || cat c.log >&2

echo "full run ${ta}s, rerun ${tr}s"
finish
