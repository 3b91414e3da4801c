#!/usr/bin/env bash
# labels: cpu
# `puzzle search`, `solutions`, `solution` and `realize` end to end on a tiny
# scored and profiled library of a random model (with the real tokenizer):
#   * every solution meets every limit it was given (speed-up, memory,
#     latency, parameters), recomputed here from the profile rows in SQL,
#     independently of search.c;
#   * the MIP's score is no worse than any baseline's on the same problem,
#     and no worse than any of its own diverse solutions; the diverse
#     solutions differ pairwise in at least the asked fraction of choices;
#   * an infeasible budget exits 0 with the binding row and the closest
#     feasible value, recorded in search_constraints;
#   * GPU budgets (roofline) sweep batch sizes and keep the best;
#   * realize writes a DeciLM directory whose layers are the solution's, that
#     `puzzle eval --ref` runs against the parent; the GGUF export evaluates
#     identically to the directory; a tampered block file is refused;
#   * bad input: one line, non-zero exit.
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
need_model
command -v sqlite3 >/dev/null || { echo "skip: sqlite3 CLI not installed"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 not installed"; exit 77; }
cd "$tmp" || exit 1
q() { sqlite3 run.db "$1"; }

"$MAKE" m --variant 0 --seed 1 --tokenizer "$MODEL" >/dev/null || { echo "make_test_model failed"; exit 1; }
python3 - <<'EOF'
import random
w = ("the of and to in is was for on that with as by at from it an be this which or are were "
     "model layer block attention train value 1905 2024 Paris river quickly blue seven").split()
for name, seed, n in (("calib.txt", 7, 200), ("held.txt", 11, 400)):
    r = random.Random(seed)
    open(name, "w").write("\n".join(" ".join(r.choice(w) for _ in range(r.randint(5, 15))) + "." for _ in range(n)))
EOF
cat >space.json <<'EOF'
{"version": 1, "round_to": 16, "layers": "all",
 "attention": [{"kind": "gqa", "n_kv": 4}, {"kind": "gqa", "n_kv": 1}, {"kind": "linear"}, {"kind": "noop"}],
 "ffn": [{"kind": "swiglu", "n_ff": 96}, {"kind": "swiglu", "n_ff": 48}, {"kind": "swiglu", "n_ff": 16},
         {"kind": "linear"}, {"kind": "noop"}]}
EOF
"$BIN" build-library m --db run.db --data calib.txt --space space.json --seq-len 64 --tokens 1024 --steps 5 \
    --batch 4 --threads 2 >build.log 2>&1 || { cat build.log >&2; echo "build-library failed"; exit 1; }
"$BIN" score --db run.db --data held.txt --tokens 512 --seq-len 64 --threads 2 >score.log 2>&1 ||
    { cat score.log >&2; echo "score failed"; exit 1; }
"$BIN" profile --db run.db --scenario decode:1x64,prefill:1x32,decode:1x48 --repeats 5 --threads 2 --cold-mib 8 \
    >prof.log 2>&1 || { cat prof.log >&2; echo "profile failed"; exit 1; }

S=("$BIN" search --db run.db --budget cpu --scenario decode:1x64)
last() { q "SELECT max(id) FROM solutions"; }
# Independent recomputation of a solution's decode time (ms) and memory from the
# profile rows: Σ over layers of the chosen variants' medians + embed + head.
TIME_SQL="SELECT 1e3 * (SELECT sum(p.median_s) FROM solution_layers l JOIN profiles p ON p.scenario = 'decode:1x64'
      AND ((p.part = 'attn' AND p.kind = l.attn_kind AND p.size = l.attn_size)
        OR (p.part = 'ffn' AND p.kind = l.ffn_kind AND p.size = l.ffn_size)) WHERE l.solution_id = SOL)
    + 1e3 * (SELECT sum(median_s) FROM profiles WHERE scenario = 'decode:1x64' AND part IN ('embed', 'head'))"
sol_ms() { q "${TIME_SQL//SOL/$1}"; }
par_ms() { q "SELECT 1e3 * parent_time_s FROM searches WHERE id = (SELECT search_id FROM solutions WHERE id = $1)"; }
ge() { python3 -c "import sys; sys.exit(not (float(sys.argv[1]) >= float(sys.argv[2]) - 1e-9))" "$1" "$2"; }

# ---- infeasible budgets ---------------------------------------------------------------------------------
"${S[@]}" --speedup 1000 >i.txt 2>i.err; rc=$?
check "infeasible speed-up exits 0" '[ $rc -eq 0 ]'
check "infeasible: binding throughput and the fastest child named" \
    'grep -q "no child meets the budget: throughput: the fastest child .* reaches .*x the parent.*binding" i.txt'
IS=$(q "SELECT max(id) FROM searches")
check "search recorded as infeasible" '[ "$(q "SELECT status FROM searches WHERE id = $IS")" = infeasible ]'
check "binding row stored" '[ "$(q "SELECT name FROM search_constraints WHERE search_id = $IS AND binding")" = throughput ]'
maxsp=$(q "SELECT min_value FROM search_constraints WHERE search_id = $IS AND name = 'throughput'")
check "closest feasible value stored" '[ -n "$maxsp" ]'
"${S[@]}" --max-memory 0.00001 >mm.txt 2>mm.err; rc=$?
check "tiny memory: binding memory, needs >= X GiB" '[ $rc -eq 0 ] && grep -q "memory: needs >= .* GiB per device, .*x the budget" mm.txt'


# Targets relative to what this machine's profiles allow (they differ under
# sanitizers): the fastest child's speed-up, from the infeasible answer.
MAXSP=$(sed -n 's/.*reaches \([0-9.]*\)x the parent.*/\1/p' i.txt)
check "fastest feasible speed-up reported ($MAXSP)" 'python3 -c "import sys; sys.exit(not float(sys.argv[1]) > 1.02)" "$MAXSP"'
T1=$(python3 -c "print('%.4f' % (1 + 0.5 * ($MAXSP - 1)))")
T2=$(python3 -c "print('%.4f' % (1 + 0.25 * ($MAXSP - 1)))")
T3=$(python3 -c "print('%.4f' % (1 + 0.1 * ($MAXSP - 1)))")
echo "fastest child ${MAXSP}x; targets $T1 $T2 $T3"

# ---- MIP at T1, every row met -------------------------------------------------------------------
"${S[@]}" --speedup "$T1" >s1.txt 2>s1.err; rc=$?
check "search exits 0 (rc $rc)" '[ $rc -eq 0 ]' || cat s1.err >&2
check "a table is printed" 'grep -q "^   1 " s1.txt && grep -q "changed:" s1.txt'
M=$(last)
check "status optimal" '[ "$(q "SELECT status FROM solutions WHERE id = $M")" = optimal ]'
sp=$(python3 -c "print($(par_ms $M) / $(sol_ms $M))")
check "speed-up recomputed from profiles ($sp) >= $T1" 'ge "$sp" "$T1"'
stored=$(q "SELECT speedup FROM solutions WHERE id = $M")
check "stored speed-up ($stored) equals the recomputed ($sp)" \
    'python3 -c "import sys; sys.exit(abs(float(sys.argv[1]) - float(sys.argv[2])) > 1e-6)" "$stored" "$sp"'
obj=$(q "SELECT objective FROM solutions WHERE id = $M")
sum=$(q "SELECT sum(score) FROM solution_layers WHERE solution_id = $M")
check "objective = sum of the layers' scores" \
    'python3 -c "import sys; sys.exit(abs(float(sys.argv[1]) - float(sys.argv[2])) > 1e-9)" "$obj" "$sum"'
chosen_scores=$(q "SELECT sum(s.kl) FROM solution_choices c JOIN scores s ON s.block_id IN (c.attn_block, c.ffn_block)
                   WHERE c.solution_id = $M")
check "layer scores are the blocks' KL ($chosen_scores vs $obj)" \
    'python3 -c "import sys; sys.exit(abs(float(sys.argv[1]) - float(sys.argv[2])) > 1e-9)" "$chosen_scores" "$obj"'
check "one row per layer" '[ "$(q "SELECT count(*) FROM solution_layers WHERE solution_id = $M")" = 6 ]'

# ---- baselines: feasible, never better than the MIP ------------------------------------------------
for m in greedy uniform-ffn drop-layers; do
    "${S[@]}" --speedup "$T1" --method $m >b.txt 2>b.err; rc=$?
    check "$m exits 0" '[ $rc -eq 0 ]' || cat b.err >&2
    st=$(q "SELECT status FROM searches ORDER BY id DESC LIMIT 1")
    if [ "$st" = solved ]; then
        B=$(last)
        bs=$(python3 -c "print($(par_ms $B) / $(sol_ms $B))")
        check "$m meets ${T1}x ($bs)" 'ge "$bs" "$T1"'
        check "MIP score <= $m score" 'ge "$(q "SELECT objective FROM solutions WHERE id = $B")" "$obj"'
        check "$m status recorded as baseline" '[ "$(q "SELECT status FROM solutions WHERE id = $B")" = baseline ]'
    else
        echo "note: $m found no child at ${T1}x ($st)"
    fi
done

# ---- K diverse solutions ----------------------------------------------------------------------------
"${S[@]}" --speedup "$T2" --solutions 4 --diversity 0.25 >d.txt 2>d.err; rc=$?
check "diverse search exits 0" '[ $rc -eq 0 ]' || cat d.err >&2
SID=$(q "SELECT max(search_id) FROM solutions")
nd=$(q "SELECT count(*) FROM solutions WHERE search_id = $SID")
check "several diverse solutions ($nd)" '[ "$nd" -ge 2 ]'
# differing halves between every pair (12 groups: attention and FFN of 6 layers), at least 25 % of them
mind=$(q "SELECT min(d) FROM (SELECT a.id AS i, b.id AS j,
            sum((x.attn_variant <> y.attn_variant) + (x.ffn_variant <> y.ffn_variant)) AS d
          FROM solutions a JOIN solutions b ON a.search_id = b.search_id AND a.id < b.id
          JOIN solution_layers x ON x.solution_id = a.id JOIN solution_layers y ON y.solution_id = b.id AND y.layer = x.layer
          WHERE a.search_id = $SID GROUP BY 1, 2)")
check "every pair differs in >= 3 of 12 choices (min $mind)" '[ "${mind:-0}" -ge 3 ]'
worse=$(q "SELECT count(*) FROM solutions WHERE search_id = $SID AND objective < (SELECT objective FROM solutions
           WHERE search_id = $SID AND rank = 1) - 1e-12")
check "rank 1 has the best score" '[ "$worse" = 0 ]'
for id in $(q "SELECT id FROM solutions WHERE search_id = $SID"); do
    s=$(python3 -c "print($(par_ms $id) / $(sol_ms $id))")
    check "diverse solution $id meets ${T2}x ($s)" 'ge "$s" "$T2"'
done

# ---- more rows: memory, latency, params ---------------------------------------------------------------------
"${S[@]}" --speedup "$T3" --max-params 6.3M --max-latency 100000 >p.txt 2>p.err; rc=$?
st=$(q "SELECT status FROM searches ORDER BY id DESC LIMIT 1")
check "params-limited search answers ($st)" '[ $rc -eq 0 ]'
if [ "$st" = solved ]; then
    check "params <= 6.3M" '[ "$(q "SELECT params <= 6300000 FROM solutions WHERE id = $(last)")" = 1 ]'
fi

# ---- GPU budget: roofline prices, batch sweep ------------------------------------------------------------
"$BIN" search --db run.db --budget 2xH100 --scenario input=64,output=128 --speedup 1.2 >g.txt 2>g.err; rc=$?
check "GPU budget search exits 0" '[ $rc -eq 0 ]' || cat g.err >&2
check "GPU budget: several batch sizes tried" '[ "$(grep -c "^  batch" g.err)" -ge 3 ]'
GS=$(q "SELECT max(id) FROM searches")
check "GPU search stored with tp and device" '[ "$(q "SELECT device FROM searches WHERE id = $GS")" = h100_sxm ]'
"$BIN" search --db run.db --budget 2xH100 --scenario input=64,output=128 --max-ttft 1000 --max-latency 1000 \
    --batch 8 >g2.txt 2>&1
check "GPU: fixed batch, latency rows" '[ "$(q "SELECT batch FROM solutions ORDER BY id DESC LIMIT 1")" = 8 ]'

# The search composes per-variant roofline costs into a child's throughput;
# `puzzle plan` prices the realized child's whole config by itself: they agree.
GSOL=$(q "SELECT s.id FROM solutions s WHERE s.search_id = $GS AND s.rank = 1")
GB=$(q "SELECT batch FROM solutions WHERE id = $GSOL")
"$BIN" realize --db run.db --solution "$GSOL" --out gchild --dtype f32 >/dev/null 2>&1
"$BIN" plan gchild --hardware H100 --gpus 2 --tp 1 --input 64 --output 128 --batch "$GB" --json >plan.json 2>plan.err
pt=$(python3 -c "import json; print(json.load(open('plan.json'))['tokens_per_s_total'])" 2>/dev/null)
st=$(q "SELECT throughput FROM solutions WHERE id = $GSOL")
check "GPU solution throughput ($st) = puzzle plan of the realized child ($pt)" \
    'python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(abs(a - b) > 1e-6 * b)" "$st" "$pt"'

# ---- views and inspection ------------------------------------------------------------------------------------
check "solution_summary covers every solution" \
    '[ "$(q "SELECT count(*) FROM solution_summary")" = "$(q "SELECT count(*) FROM solutions")" ]'
check "pareto front non-empty, a subset" '[ "$(q "SELECT count(*) FROM pareto_front")" -ge 1 ]'
dom=$(q "SELECT count(*) FROM pareto_front a JOIN solution_summary b ON b.budget = a.budget AND b.scenario = a.scenario
         AND b.objective = a.objective AND b.score < a.score AND b.speedup > a.speedup")
check "no front member is dominated" '[ "$dom" = 0 ]'
"$BIN" solutions --db run.db >sl.txt 2>&1; rc=$?
check "solutions lists searches" '[ $rc -eq 0 ] && grep -q "^search 1 " sl.txt && grep -q "binding" sl.txt'
"$BIN" solution --db run.db "$M" >so.txt 2>&1; rc=$?
check "solution prints 6 layers" '[ $rc -eq 0 ] && [ "$(grep -cE "^ +[0-9] " so.txt)" = 6 ]'

# ---- realize ------------------------------------------------------------------------------------------------------
"$BIN" realize --db run.db --solution "$M" --out child --gguf child.gguf --dtype f32 >r.txt 2>r.err; rc=$?
check "realize exits 0" '[ $rc -eq 0 ]' || cat r.err >&2
python3 - "$M" >layers_cfg.txt <<'EOF'
import json, sys
c = json.load(open("child/config.json"))
for l, b in enumerate(c["block_configs"]):
    a, f = b["attention"], b["ffn"]
    at = "noop" if a.get("no_op") else "linear" if a.get("replace_with_linear") else \
         "gqa_kv%d" % (c["num_attention_heads"] // a["n_heads_in_group"])
    ft = "noop" if f.get("no_op") else "linear" if f.get("replace_with_linear") else "swiglu_%d" % f["intermediate_size"]
    print(l, at, ft)
EOF
q "SELECT layer, attn_variant, ffn_variant FROM solution_layers WHERE solution_id = $M ORDER BY layer" | tr '|' ' ' >layers_db.txt
check "config.json block_configs = the solution's layers" 'diff -q layers_cfg.txt layers_db.txt >/dev/null'
check "child recorded in models" '[ "$(q "SELECT count(*) FROM models WHERE role = '"'child'"' AND solution_id = $M")" = 1 ]'
"$BIN" eval child --ref m --text held.txt --ctx 64 --max-tokens 512 --threads 2 --json >e.json 2>e.err; rc=$?
kl=$(python3 -c "import json; print(json.load(open('e.json'))['kl'])" 2>/dev/null)
check "eval --ref of the child against the parent: KL > 0 ($kl)" '[ $rc -eq 0 ] && python3 -c "import sys; sys.exit(not float(sys.argv[1]) > 0)" "$kl"'
"$BIN" eval child.gguf --ref child --text held.txt --ctx 64 --max-tokens 512 --threads 2 --json >g.json 2>/dev/null
gkl=$(python3 -c "import json; print(json.load(open('g.json'))['kl'])" 2>/dev/null)
check "GGUF export = the directory (KL $gkl < 1e-9)" 'python3 -c "import sys; sys.exit(not abs(float(sys.argv[1])) < 1e-9)" "$gkl"'

# a tampered block file is refused
F=$(q "SELECT attn_file FROM solution_choices WHERE solution_id = $M AND attn_file IS NOT NULL
       UNION SELECT ffn_file FROM solution_choices WHERE solution_id = $M AND ffn_file IS NOT NULL LIMIT 1")
if [ -n "$F" ]; then
    cp "$F" saved.st && printf 'x' | dd of="$F" bs=1 seek=100 conv=notrunc 2>/dev/null
    "$BIN" realize --db run.db --solution "$M" --out child2 >t.txt 2>t.err; rc=$?
    check "tampered block: exit 1 naming sha256" '[ $rc -eq 1 ] && grep -q "sha256" t.err'
    cp saved.st "$F"
fi

# ---- bad input: one line, non-zero exit -------------------------------------------------------------------
one_err() { # name, expected rc, grep pattern, command...
    local name=$1 want=$2 pat=$3; shift 3
    "$@" >out.txt 2>err.txt; local rc=$?
    [ $rc -eq "$want" ] || { bad "$name: rc $rc, want $want"; cat err.txt >&2; return; }
    [ "$(wc -l <err.txt)" -eq 1 ] || { bad "$name: $(wc -l <err.txt) lines"; cat err.txt >&2; return; }
    grep -q -- "$pat" err.txt || { bad "$name: message: $(cat err.txt)"; return; }
    ok
}
one_err "unknown hardware" 2 "h100_sxm" "$BIN" search --db run.db --budget 2xNOPE
one_err "bad budget" 2 "N x NAME" "$BIN" search --db run.db --budget eight
one_err "bad scenario" 2 "scenario" "$BIN" search --db run.db --budget cpu --scenario input=5
one_err "throughput and speedup" 2 "alternatives" "$BIN" search --db run.db --budget cpu --speedup 2 --throughput 5
one_err "missing db" 1 "nope.db" "$BIN" search --db nope.db --budget cpu
one_err "unprofiled scenario" 1 "puzzle profile" "$BIN" search --db run.db --budget cpu --scenario decode:4x999
one_err "no such solution" 1 "no solution 9999" "$BIN" realize --db run.db --solution 9999 --out x
one_err "solution: no such id" 1 "no solution 9999" "$BIN" solution --db run.db 9999
one_err "eval: --skip-tokens past the text" 1 "at least 2 tokens" "$BIN" eval m --text held.txt --skip-tokens 100000000
check "integrity" '[ "$(q "PRAGMA integrity_check")" = ok ]'
finish
