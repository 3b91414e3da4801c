#!/usr/bin/env bash
# labels: cpu model
# `puzzle search`, `solutions`, `solution` and `realize` end to end on a tiny
# scored and profiled library of a random model (with the real tokenizer,
# hence the label model). The test trusts none of the numbers it checks:
#   * every stored solution, of every search, is recomputed with the test's
#     own SQL from the block, score and profile rows and the parent's row
#     (see "independent recomputation" below for what is recomputed and what,
#     for GPU budgets, is taken from stored rows): objective, params, time,
#     throughput, speed-up (the parent's time recomputed too), latency, TTFT
#     and memory equal the stored ones, and each meets every limit its search
#     was given (--speedup, --throughput, --max-memory, --max-latency,
#     --max-ttft, --max-params);
#   * a latency limit between the fastest feasible step and the unconstrained
#     child's binds (the child changes and meets it; a limit under the fastest
#     is infeasible with latency the binding row), and so do params and memory
#     limits between the least possible and the unconstrained child's;
#   * an infeasible budget exits 0 with the binding row and the closest
#     feasible value (recomputed), recorded in search_constraints;
#   * the MIP's score is no worse than any baseline's on the same problem,
#     and no worse than any of its own diverse solutions; the diverse
#     solutions differ pairwise in at least the asked fraction of choices;
#   * the pareto_front view holds exactly the solutions its definition
#     (puzzle/rundb.c) selects, computed here from the tables;
#   * GPU budgets (roofline) sweep batch sizes and keep the best, and agree
#     with `puzzle plan` of the realized child;
#   * realize writes a DeciLM directory whose layers are the solution's, that
#     `puzzle eval --ref` runs against the parent; the GGUF export evaluates
#     identically to the directory; a tampered block file is refused;
#   * search in context (--in-context): round 0's measured KL equals eval --ref
#     of its child, rounds and rescored candidates are stored, a rerun adds nothing;
#   * bad input: one line, non-zero exit.
# A failed check prints what it expected and what it found.
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
need_model
# The recomputation needs the sqlite3 CLI (scripts/install_deps.sh installs it): fail, never skip, without it.
command -v sqlite3 >/dev/null || { echo "FAIL: sqlite3 CLI not installed (scripts/install_deps.sh)"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 not installed (scripts/install_deps.sh)"; exit 1; }
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
# Float comparisons (relative tolerance 1e-9: the same doubles summed in another order).
close() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; m = (a < 0 ? -a : a); if ((b < 0 ? -b : b) > m) m = (b < 0 ? -b : b);
                                          exit !(a != "" && b != "" && d <= 1e-9 * (m > 1e-300 ? m : 1e-300)) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && b != "" && a <= b + 1e-9 * (b < 0 ? -b : b)) }'; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a != "" && b != "" && a > b) }'; }
calc() { awk "BEGIN { printf \"%.17g\n\", $1 }"; }
# expect NAME FOUND OP EXPECTED: a check that says, when it fails, what it expected and what it found.
expect() {
    local name=$1 found=$2 op=$3 want=$4 ok=1
    case $op in
        "=") close "$found" "$want" || ok=0 ;;
        "<=") le "$found" "$want" || ok=0 ;;
        ">=") le "$want" "$found" || ok=0 ;;
        ">") gt "$found" "$want" || ok=0 ;;
        "eq") [ "$found" = "$want" ] || ok=0 ;;
    esac
    if [ $ok = 1 ]; then ok; else bad "$name: expected $op $want, found ${found:-<nothing>}"; fi
}

# ---- independent recomputation from the run database's rows -------------------------------------------
# Everything below is recomputed with the test's own SQL from the rows that
# build-library (blocks), score (scores) and profile (profiles) wrote and the
# parent's row (models, layers); the search's own stored numbers are only
# compared against. What search.c prices and how (puzzle/search.c):
#   cpu budget: every variant, the embedding and the LM head by the measured
#     median of its profile row (device and dtype of the search, measured = 1);
#       decode:BxC   time = latency = Σ median(decode:BxC); context C+1; throughput B/time
#       prefill:BxS  time = latency = ttft = Σ median(prefill:BxS); context S; throughput B·S/time
#       input=I,output=O at batch B: time = Σ median(prefill:BxI) + O · step,
#                    step = latency = Σ median(decode:Bx(I+O/2)), ttft = Σ median(prefill:1xI) + step;
#                    context I+O; throughput B·O/time
#     memory = Σ param_bytes + B · context · Σ kv_bytes_per_token (of the first pass's rows);
#     speed-up = throughput / the parent's, the parent priced the same way from its own layers.
#   N x GPU budgets: the roofline cost model; its per-variant prices are not
#     stored, so time, throughput, latency, TTFT and memory are TAKEN FROM THE
#     STORED solution rows there (and cross-checked against `puzzle plan` of
#     the realized child below); speed-up is recomputed from the stored
#     throughputs, params and the objective are recomputed as for cpu.
#   Both: params = the parent's n_params − its layers' + the child's, each
#     half from its block's n_params (the parent's own halves outside the
#     library from the formula, itself checked against every block); the
#     objective = Σ of the chosen blocks' scores (kl or loss_delta) on the
#     search's data.
PARENT_ID="(SELECT id FROM models WHERE role = 'parent')"
HP="(SELECT hidden FROM models WHERE role = 'parent')"
# Parameters of a half from its kind and size (the DeciLM shapes: q, k, v, o and the norm; gate, up, down and the norm).
P_ATTN="CASE KIND WHEN 'gqa' THEN $HP + 2 * $HP * (SELECT n_head * head_dim FROM models WHERE role = 'parent')
    + 2 * $HP * SIZE * (SELECT head_dim FROM models WHERE role = 'parent') WHEN 'linear' THEN $HP + $HP * $HP ELSE 0 END"
P_FFN="CASE KIND WHEN 'swiglu' THEN $HP + 3 * $HP * SIZE WHEN 'linear' THEN $HP + $HP * $HP ELSE 0 END"
p_attn() { local s=${P_ATTN//KIND/$1}; echo "${s//SIZE/$2}"; }
p_ffn() { local s=${P_FFN//KIND/$1}; echo "${s//SIZE/$2}"; }
# The halves of a solution, from its block ids (a NULL block: the parent's own half):
# part, kind, size, params, block.
child_parts() {
    echo "SELECT 'attn' AS part, IFNULL(b.attn_kind, y.attn) AS kind,
              IFNULL(b.attn_size, CASE y.attn WHEN 'gqa' THEN y.n_kv ELSE 0 END) AS size,
              IFNULL(b.n_params, $(p_attn y.attn y.n_kv)) AS params, l.attn_block AS block
          FROM solution_layers l JOIN layers y ON y.model_id = $PARENT_ID AND y.layer = l.layer
          LEFT JOIN blocks b ON b.block_id = l.attn_block WHERE l.solution_id = $1
        UNION ALL
        SELECT 'ffn', IFNULL(b.ffn_kind, y.ffn), IFNULL(b.ffn_size, CASE y.ffn WHEN 'swiglu' THEN y.n_ff ELSE 0 END),
              IFNULL(b.n_params, $(p_ffn y.ffn y.n_ff)), l.ffn_block
          FROM solution_layers l JOIN layers y ON y.model_id = $PARENT_ID AND y.layer = l.layer
          LEFT JOIN blocks b ON b.block_id = l.ffn_block WHERE l.solution_id = $1"
}
parent_parts() {
    echo "SELECT 'attn' AS part, attn AS kind, CASE attn WHEN 'gqa' THEN n_kv ELSE 0 END AS size,
              $(p_attn attn n_kv) AS params, NULL AS block FROM layers WHERE model_id = $PARENT_ID
        UNION ALL
        SELECT 'ffn', ffn, CASE ffn WHEN 'swiglu' THEN n_ff ELSE 0 END, $(p_ffn ffn n_ff), NULL
          FROM layers WHERE model_id = $PARENT_ID"
}
# price PARTS_SQL SCENARIO SEARCH_ID -> "Σ median|Σ param_bytes|Σ kv bytes per token|rows found|rows wanted"
# over the halves plus the embedding and the LM head.
price() {
    q "WITH x AS ($1 UNION ALL SELECT 'embed', 'embed', 0, 0, NULL UNION ALL SELECT 'head', 'head', 0, 0, NULL),
            s AS (SELECT device, dtype FROM searches WHERE id = $3)
       SELECT printf('%.17g|%.17g|%.17g', IFNULL(sum(p.median_s), 0), IFNULL(sum(p.param_bytes), 0),
                     IFNULL(sum(p.kv_bytes_per_token), 0)), count(p.median_s), (SELECT count(*) FROM x)
       FROM x LEFT JOIN profiles p ON p.part = x.part AND p.kind = x.kind AND p.size = x.size
            AND p.scenario = '$2' AND p.device = (SELECT device FROM s) AND p.dtype = (SELECT dtype FROM s)
            AND p.measured = 1"
}
# recompute PARTS_SQL SCENARIO BATCH SEARCH_ID -> "time|throughput|latency|ttft|memory|missing rows"
recompute() {
    local parts=$1 sc=$2 B=$3 id=$4 pass step="" n=0 pre1="" ctx tok
    case $sc in
        decode:*x*) local c=${sc##*x}; pass="decode:${B}x$c"; ctx=$((c + 1)); tok=$B ;;
        prefill:*x*) local l=${sc##*x}; pass="prefill:${B}x$l"; ctx=$l; tok=$((B * l)) ;;
        input=*,output=*)
            local i=${sc#input=}; i=${i%%,*}; local o=${sc##*output=}
            pass="prefill:${B}x$i"; step="decode:${B}x$((i + o / 2))"; n=$o; pre1="prefill:1x$i"; ctx=$((i + o)); tok=$((B * o)) ;;
        *) echo "|||||unknown scenario $sc"; return ;;
    esac
    local r t w kv got want miss=0 st=0 pt=0
    IFS='|' read -r t w kv got want <<<"$(price "$parts" "$pass" "$id")"; miss=$((miss + want - got))
    if [ -n "$step" ]; then
        IFS='|' read -r st r r got want <<<"$(price "$parts" "$step" "$id")"; miss=$((miss + want - got))
        IFS='|' read -r pt r r got want <<<"$(price "$parts" "$pre1" "$id")"; miss=$((miss + want - got))
        local time; time=$(calc "$t + $n * $st")
        echo "$time|$(calc "$tok / $time")|$st|$(calc "$pt + $st")|$(calc "$w + $B * $ctx * $kv")|$miss"
    else
        echo "$t|$(calc "$tok / $t")|$t|$t|$(calc "$w + $B * $ctx * $kv")|$miss"
    fi
}
# verify SOLUTION_ID: every number and every limit of a stored solution, recomputed.
verify() {
    local id=$1 sid budget sc batch obj dh pb
    IFS='|' read -r sid budget sc batch obj dh pb <<<"$(q "SELECT s.search_id, q.budget, q.scenario, s.batch,
        q.objective, q.data_hash, q.parent_batch FROM solutions s JOIN searches q ON q.id = s.search_id WHERE s.id = $id")"
    local S_obj S_tput S_sp S_lat S_ttft S_mem S_par S_time
    IFS='|' read -r S_obj S_tput S_sp S_lat S_ttft S_mem S_par S_time <<<"$(q "SELECT objective, throughput, speedup,
        latency_s, ttft_s, memory_bytes, params, time_s FROM solutions WHERE id = $id")"
    local L_tput L_sp L_mem L_lat L_ttft L_par P_tput P_time
    IFS='|' read -r L_tput L_sp L_mem L_lat L_ttft L_par P_tput P_time <<<"$(q "SELECT target_throughput, target_speedup,
        max_memory, max_latency_s, max_ttft_s, max_params, parent_throughput, parent_time_s FROM searches WHERE id = $sid")"
    local w="solution $id (search $sid, $budget, $sc)"
    # the layers as stored agree with the blocks they name (or the parent's layer when none)
    local mism; mism=$(q "SELECT count(*) FROM solution_layers l JOIN layers y ON y.model_id = $PARENT_ID AND y.layer = l.layer
        LEFT JOIN blocks a ON a.block_id = l.attn_block LEFT JOIN blocks f ON f.block_id = l.ffn_block
        WHERE l.solution_id = $id AND NOT (l.attn_kind = IFNULL(a.attn_kind, y.attn)
          AND l.attn_size = IFNULL(a.attn_size, CASE y.attn WHEN 'gqa' THEN y.n_kv ELSE 0 END)
          AND l.ffn_kind = IFNULL(f.ffn_kind, y.ffn)
          AND l.ffn_size = IFNULL(f.ffn_size, CASE y.ffn WHEN 'swiglu' THEN y.n_ff ELSE 0 END))")
    expect "$w: layers whose stored kind differs from their block's" "$mism" eq 0
    expect "$w: layers" "$(q "SELECT count(*) FROM solution_layers WHERE solution_id = $id")" eq \
        "$(q "SELECT count(*) FROM layers WHERE model_id = $PARENT_ID")"
    # objective: Σ of the chosen blocks' scores on the search's data (a parent half outside the library scores 0)
    local col=kl; [ "$obj" = loss ] && col=loss_delta
    local R_obj nsc nbl
    IFS='|' read -r R_obj nsc nbl <<<"$(q "SELECT printf('%.17g', IFNULL(sum(c.$col), 0)), count(c.block_id),
        (SELECT count(*) FROM ($(child_parts "$id")) WHERE block IS NOT NULL)
        FROM ($(child_parts "$id")) x JOIN scores c ON c.block_id = x.block AND c.data_hash = '$dh'")"
    expect "$w: blocks with exactly one score" "$nsc" eq "$nbl"
    expect "$w: objective (Σ block scores)" "$S_obj" = "$R_obj"
    # params: the parent's, with its layers swapped for the child's
    local R_par; R_par=$(q "SELECT printf('%.17g', (SELECT n_params FROM models WHERE role = 'parent')
        - (SELECT sum(params) FROM ($(parent_parts))) + (SELECT sum(params) FROM ($(child_parts "$id"))))")
    expect "$w: params" "$S_par" = "$R_par"
    [ -n "$L_par" ] && expect "$w: params within --max-params" "$R_par" "<=" "$L_par"
    if [ "$budget" = cpu ]; then
        local R_time R_tput R_lat R_ttft R_mem miss P
        IFS='|' read -r R_time R_tput R_lat R_ttft R_mem miss <<<"$(recompute "$(child_parts "$id")" "$sc" "$batch" "$sid")"
        expect "$w: profile rows missing" "$miss" eq 0
        local RP_time RP_tput r pmiss
        IFS='|' read -r RP_time RP_tput r r r pmiss <<<"$(recompute "$(parent_parts)" "$sc" "$pb" "$sid")"
        expect "$w: parent profile rows missing" "$pmiss" eq 0
        expect "$w: parent time" "$P_time" = "$RP_time"
        expect "$w: parent throughput" "$P_tput" = "$RP_tput"
        expect "$w: time" "$S_time" = "$R_time"
        expect "$w: throughput" "$S_tput" = "$R_tput"
        local R_sp; R_sp=$(calc "$R_tput / $RP_tput")
        expect "$w: speed-up (recomputed child / recomputed parent)" "$S_sp" = "$R_sp"
        expect "$w: latency" "$S_lat" = "$R_lat"
        [ -n "$S_ttft" ] && expect "$w: ttft" "$S_ttft" = "$R_ttft"
        expect "$w: memory" "$S_mem" = "$R_mem"
        [ -n "$L_sp" ] && expect "$w: speed-up meets --speedup" "$R_sp" ">=" "$L_sp"
        [ -n "$L_tput" ] && expect "$w: throughput meets --throughput" "$R_tput" ">=" "$L_tput"
        [ -n "$L_mem" ] && expect "$w: memory within --max-memory" "$R_mem" "<=" "$L_mem"
        [ -n "$L_lat" ] && expect "$w: latency within --max-latency" "$R_lat" "<=" "$L_lat"
        [ -n "$L_ttft" ] && expect "$w: ttft within --max-ttft" "$R_ttft" "<=" "$L_ttft"
    else  # GPU: roofline numbers as stored (see above); speed-up from the stored throughputs
        expect "$w: speed-up = throughput / the parent's" "$S_sp" = "$(calc "$S_tput / $P_tput")"
        [ -n "$L_sp" ] && expect "$w: speed-up meets --speedup" "$S_sp" ">=" "$L_sp"
        [ -n "$L_tput" ] && expect "$w: throughput meets --throughput" "$S_tput" ">=" "$L_tput"
        [ -n "$L_mem" ] && expect "$w: memory within --max-memory (stored)" "$S_mem" "<=" "$L_mem"
        [ -n "$L_lat" ] && expect "$w: latency within --max-latency (stored)" "$S_lat" "<=" "$L_lat"
        [ -n "$L_ttft" ] && expect "$w: ttft within --max-ttft (stored)" "$S_ttft" "<=" "$L_ttft"
    fi
}
# The test's own parameter formula against every block's stored n_params (so the parent's halves outside the
# library, priced by the formula, are priced right).
badp=$(q "SELECT count(*) FROM blocks WHERE n_params IS NOT NULL AND n_params <> CASE sub
            WHEN 'attn' THEN $(p_attn attn_kind attn_size) WHEN 'ffn' THEN $(p_ffn ffn_kind ffn_size) END")
expect "blocks whose n_params differs from the parameter formula" "$badp" eq 0
expect "the parent's n_params = embedding + LM head + final norm + its layers (formula)" \
    "$(q "SELECT n_params FROM models WHERE role = 'parent'")" eq \
    "$(q "SELECT vocab * hidden * 2 + hidden + (SELECT sum(params) FROM ($(parent_parts))) FROM models WHERE role = 'parent'")"

# ---- infeasible budgets ---------------------------------------------------------------------------------
"${S[@]}" --speedup 1000 >i.txt 2>i.err; rc=$?
check "infeasible speed-up exits 0" '[ $rc -eq 0 ]'
check "infeasible: binding throughput and the fastest child named" \
    'grep -q "no child meets the budget: throughput: the fastest child .* reaches .*x the parent.*binding" i.txt'
IS=$(q "SELECT max(id) FROM searches")
check "search recorded as infeasible" '[ "$(q "SELECT status FROM searches WHERE id = $IS")" = infeasible ]'
check "binding row stored" '[ "$(q "SELECT name FROM search_constraints WHERE search_id = $IS AND binding")" = throughput ]'
# The binding row's closest feasible value: with only the (loose) memory row
# beside it, the fastest child takes each half's fastest variant in the
# library (or the parent's own, outside it): Σ over halves of the least
# median, without the embedding and the LM head (the fixed part is on the
# right-hand side). Recomputed here from the blocks and profile rows.
minv=$(q "SELECT min_value FROM search_constraints WHERE search_id = $IS AND name = 'throughput'")
fast=$(q "WITH v AS (SELECT layer, 'attn' AS part, attn_kind AS kind, attn_size AS size FROM blocks WHERE sub = 'attn'
            UNION SELECT layer, 'ffn', ffn_kind, ffn_size FROM blocks WHERE sub = 'ffn'
            UNION SELECT layer, 'attn', attn, CASE attn WHEN 'gqa' THEN n_kv ELSE 0 END FROM layers WHERE model_id = $PARENT_ID
            UNION SELECT layer, 'ffn', ffn, CASE ffn WHEN 'swiglu' THEN n_ff ELSE 0 END FROM layers WHERE model_id = $PARENT_ID)
          SELECT printf('%.17g', sum(m)) FROM (SELECT min(p.median_s) AS m FROM v JOIN profiles p ON p.part = v.part
            AND p.kind = v.kind AND p.size = v.size AND p.scenario = 'decode:1x64' AND p.measured = 1 GROUP BY v.layer, v.part)")
expect "closest feasible value of the binding throughput row (fastest child, Σ least medians)" "$minv" = "$fast"
fixed=$(q "SELECT printf('%.17g', sum(median_s)) FROM profiles WHERE scenario = 'decode:1x64' AND part IN ('embed', 'head')
           AND measured = 1")
ptime=$(q "SELECT parent_time_s FROM searches WHERE id = $IS")
"${S[@]}" --max-memory 0.00001 >mm.txt 2>mm.err; rc=$?
check "tiny memory: binding memory, needs >= X GiB" '[ $rc -eq 0 ] && grep -q "memory: needs >= .* GiB per device, .*x the budget" mm.txt'

# Targets relative to what this machine's profiles allow (they differ under
# sanitizers): the fastest child's speed-up, recomputed (the parent's time is
# checked against its profile rows with every solution below).
MAXSP=$(calc "$ptime / ($fast + $fixed)")
expect "fastest feasible speed-up" "$MAXSP" ">" 1
check "the same speed-up printed" 'grep -q "reaches $(printf "%.3g" "$MAXSP")x the parent" i.txt'
T1=$(calc "1 + 0.5 * ($MAXSP - 1)")
T2=$(calc "1 + 0.25 * ($MAXSP - 1)")
T3=$(calc "1 + 0.1 * ($MAXSP - 1)")
echo "fastest child ${MAXSP}x; targets $T1 $T2 $T3"

# ---- MIP at T1 -----------------------------------------------------------------------------------
"${S[@]}" --speedup "$T1" >s1.txt 2>s1.err; rc=$?
check "search exits 0 (rc $rc)" '[ $rc -eq 0 ]' || cat s1.err >&2
check "a table is printed" 'grep -q "^   1 " s1.txt && grep -q "changed:" s1.txt'
M=$(last)
expect "status of the MIP at ${T1}x" "$(q "SELECT status FROM solutions WHERE id = $M")" eq optimal
obj=$(q "SELECT objective FROM solutions WHERE id = $M")
expect "objective = sum of the layers' stored scores" "$(q "SELECT sum(score) FROM solution_layers WHERE solution_id = $M")" = "$obj"
expect "the MIP changes the parent at ${T1}x" "$(q "SELECT n_changed FROM solutions WHERE id = $M")" ">" 0

# ---- baselines: feasible (checked with every solution below), never better than the MIP ---------------
nbi=$(q "SELECT count(*) FROM layer_influence")
expect "block influence stored by puzzle score, one row per layer" "$nbi" = 6
for m in greedy uniform-ffn drop-layers shortgpt; do
    "${S[@]}" --speedup "$T1" --method $m >b.txt 2>b.err; rc=$?
    check "$m exits 0" '[ $rc -eq 0 ]' || cat b.err >&2
    st=$(q "SELECT status FROM searches ORDER BY id DESC LIMIT 1")
    if [ "$st" = solved ]; then
        B=$(last)
        expect "$m score vs the MIP's" "$(q "SELECT objective FROM solutions WHERE id = $B")" ">=" "$obj"
        expect "$m status" "$(q "SELECT status FROM solutions WHERE id = $B")" eq baseline
        if [ $m = shortgpt ]; then
            # the layers it drops are the least influential of those it could drop (both halves have a noop)
            worst_dropped=$(q "SELECT IFNULL(max(i.bi), -1) FROM solution_layers l JOIN layer_influence i ON i.layer = l.layer
                               WHERE l.solution_id = $B AND l.attn_variant = 'noop' AND l.ffn_variant = 'noop'")
            best_kept=$(q "SELECT IFNULL(min(i.bi), 9) FROM solution_layers l JOIN layer_influence i ON i.layer = l.layer
                           WHERE l.solution_id = $B AND NOT (l.attn_variant = 'noop' AND l.ffn_variant = 'noop')
                             AND EXISTS (SELECT 1 FROM blocks b WHERE b.layer = l.layer AND b.attn_kind = 'noop')
                             AND EXISTS (SELECT 1 FROM blocks b WHERE b.layer = l.layer AND b.ffn_kind = 'noop')")
            expect "shortgpt drops the least influential layers (most influential dropped <= least kept)" \
                "$worst_dropped" "<=" "$best_kept"
        fi
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
expect "fewest differing choices (of 12) between two diverse solutions" "${mind:-0}" ">=" 3
worse=$(q "SELECT count(*) FROM solutions WHERE search_id = $SID AND objective < (SELECT objective FROM solutions
           WHERE search_id = $SID AND rank = 1) - 1e-12")
expect "diverse solutions better than rank 1" "$worse" eq 0

# ---- a latency limit that binds (a request scenario: latency = the decode step, not the request time) -----
R=("$BIN" search --db run.db --budget cpu --scenario input=32,output=32)
"${R[@]}" --speedup "$T3" >u.txt 2>u.err; rc=$?
check "request search without a latency limit exits 0" '[ $rc -eq 0 ]' || cat u.err >&2
U=$(last)
LU=$(q "SELECT latency_s FROM solutions WHERE id = $U")  # checked against the profiles with every solution below
"${R[@]}" --speedup "$T3" --max-latency 0.000001 >lp.txt 2>lp.err; rc=$?
LS=$(q "SELECT max(id) FROM searches")
expect "latency probe (1 ns): search status" "$(q "SELECT status FROM searches WHERE id = $LS")" eq infeasible
expect "latency probe: the binding row" "$(q "SELECT name FROM search_constraints WHERE search_id = $LS AND binding")" eq latency
# rhs and min_value are the solver's side: the limit less the fixed part (embedding + LM head decode step)
fstep=$(q "SELECT printf('%.17g', sum(median_s)) FROM profiles WHERE scenario = 'decode:1x48' AND part IN ('embed', 'head')
           AND measured = 1")
expect "latency probe: stored limit = 1 ns - fixed step" "$(q "SELECT rhs FROM search_constraints
    WHERE search_id = $LS AND name = 'latency'")" = "$(calc "1e-9 - $fstep")"
LMIN=$(calc "$(q "SELECT min_value FROM search_constraints WHERE search_id = $LS AND name = 'latency'") + $fstep")
expect "the fastest feasible step, under the unconstrained child's (ms)" "$LMIN" "<=" "$LU"
if gt "$LU" "$(calc "$LMIN * 1.0001")"; then
    LL=$(calc "$LMIN + 0.5 * ($LU - $LMIN)")
    "${R[@]}" --speedup "$T3" --max-latency "$(calc "$LL * 1e3")" >l.txt 2>l.err; rc=$?
    check "latency-limited search exits 0" '[ $rc -eq 0 ]' || cat l.err >&2
    LC=$(last)
    expect "latency-limited search: status" "$(q "SELECT status FROM searches ORDER BY id DESC LIMIT 1")" eq solved
    expect "latency-limited solution's step (recomputed below) vs the limit" "$(q "SELECT latency_s FROM solutions
        WHERE id = $LC")" "<=" "$LL"
    expect "the limit binds: the unconstrained child's step exceeds it" "$LU" ">" "$LL"
    expect "the limit binds: score with it vs without" "$(q "SELECT objective FROM solutions WHERE id = $LC")" ">=" \
        "$(q "SELECT objective FROM solutions WHERE id = $U")"
    expect "latency probe: the fastest step (under the others) vs the limited child's" "$LMIN" "<=" \
        "$(q "SELECT latency_s FROM solutions WHERE id = $LC")"
else
    bad "a latency limit cannot bind: the unconstrained child's step $LU is already the fastest feasible $LMIN"
fi

# ---- memory, parameters and TTFT limits between the least possible and the parent's: they bind too -----------
PM=$(q "SELECT params FROM solutions WHERE id = $U")
FP=$(q "SELECT n_params FROM models WHERE role = 'parent'")
PMIN=$(q "SELECT printf('%.17g', $FP - (SELECT sum(params) FROM ($(parent_parts))))")  # every half a no-op
PL=$(calc "$PMIN + 0.6 * ($FP - $PMIN)")
MEMP=$(q "SELECT memory_bytes FROM solutions WHERE id = $U")
"${R[@]}" --max-params "$(printf '%.0f' "$PL")" --max-memory "$(calc "$MEMP * 0.9999 / 1073741824")" \
    --max-ttft 100000 >pm.txt 2>pm.err; rc=$?
check "params- and memory-limited search exits 0" '[ $rc -eq 0 ]' || cat pm.err >&2
expect "params- and memory-limited search: status" "$(q "SELECT status FROM searches ORDER BY id DESC LIMIT 1")" eq solved
expect "the params limit binds: the unconstrained child's params exceed it" "$PM" ">" "$PL"

# ---- GPU budget: roofline prices, batch sweep ------------------------------------------------------------
"$BIN" search --db run.db --budget 2xH100 --scenario input=64,output=128 --speedup 1.2 >g.txt 2>g.err; rc=$?
check "GPU budget search exits 0" '[ $rc -eq 0 ]' || cat g.err >&2
check "GPU budget: several batch sizes tried" '[ "$(grep -c "^  batch" g.err)" -ge 3 ]'
GS=$(q "SELECT max(id) FROM searches")
check "GPU search stored with tp and device" '[ "$(q "SELECT device FROM searches WHERE id = $GS")" = h100_sxm ]'
"$BIN" search --db run.db --budget 2xH100 --scenario input=64,output=128 --max-ttft 1000 --max-latency 1000 \
    --batch 8 >g2.txt 2>&1
check "GPU: fixed batch, latency rows" '[ "$(q "SELECT batch FROM solutions ORDER BY id DESC LIMIT 1")" = 8 ]'

# ---- GPU budget with measured GPU profiles (--device): measured rows where they exist, at tp 1 only ---------
# A pretend GPU device whose rows time every parent FFN at 5 ms (far above the roofline's microseconds):
# the parent's predicted time must include them at tp 1, not at tp 2; other variants keep roofline prices.
q "INSERT INTO hardware (device, kind, threads, json, measured) VALUES ('cuda: TEST GPU', 'gpu', 1, NULL, 1);
   INSERT INTO profiles (part, kind, size, scenario, phase, batch, len, device, dtype, median_s, p10_s, p90_s,
                         repeats, param_bytes, kv_bytes_per_token, measured)
   SELECT DISTINCT 'ffn', 'swiglu', n_ff, 'decode:1x64', 'decode', 1, 64, 'cuda: TEST GPU', 'bf16', 0.005, 0.005,
          0.005, 5, 0, 0, 1 FROM layers WHERE model_id = $PARENT_ID AND ffn = 'swiglu'"
NFFN=$(q "SELECT count(*) FROM layers WHERE model_id = $PARENT_ID AND ffn = 'swiglu'")
"$BIN" search --db run.db --budget 1xH100 --scenario decode:1x64 --speedup 1.1 >gm0.txt 2>gm0.err; rc0=$?
GT0=$(q "SELECT parent_time_s FROM searches ORDER BY id DESC LIMIT 1")
"$BIN" search --db run.db --budget 1xH100 --scenario decode:1x64 --speedup 1.1 --device 'cuda: TEST GPU' \
    >gm1.txt 2>gm1.err; rc1=$?
GT1=$(q "SELECT parent_time_s FROM searches ORDER BY id DESC LIMIT 1")
check "GPU measured rows: both searches exit 0" '[ $rc0 -eq 0 ] && [ $rc1 -eq 0 ]' || cat gm0.err gm1.err >&2
check "GPU measured rows: the search says where its prices come from" 'grep -q "measured rows of .cuda: TEST GPU" gm1.err'
expect "GPU measured rows: the parent's time includes the measured FFNs" "$GT1" ">" "$(calc "$GT0 + $NFFN * 0.005 * 0.99")"
expect "GPU measured rows: the roofline parent is far faster" "$GT0" "<=" "$(calc "$NFFN * 0.005 / 10")"
"$BIN" search --db run.db --budget 2xH100 --tp 2 --scenario decode:1x64 --speedup 1.1 >gm2.txt 2>&1
GT2=$(q "SELECT parent_time_s FROM searches ORDER BY id DESC LIMIT 1")
"$BIN" search --db run.db --budget 2xH100 --tp 2 --scenario decode:1x64 --speedup 1.1 --device 'cuda: TEST GPU' \
    >gm3.txt 2>&1
GT3=$(q "SELECT parent_time_s FROM searches ORDER BY id DESC LIMIT 1")
expect "GPU measured rows: not used at tp 2 (one GPU's layer times)" "$GT3" "=" "$GT2"
"$BIN" search --db run.db --budget 1xH100 --scenario decode:1x64 --speedup 1.1 --device 'cuda: NOPE' \
    >gm4.txt 2>gm4.err; rc4=$?
check "GPU --device with no measured rows: rc 1 and says so" \
    '[ $rc4 -eq 1 ] && grep -q "no measured profiles of device .cuda: NOPE" gm4.err' || cat gm4.err >&2

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
# The Pareto front by the pareto_front view's own definition (puzzle/rundb.c):
# a solution is on it when no other solution of the same budget, scenario and
# objective has a score <= and a speed-up >= with one of them strict. Computed
# here from the solutions and searches tables, and compared both ways.
front=$(q "SELECT s.id FROM solutions s JOIN searches q ON q.id = s.search_id WHERE NOT EXISTS (
             SELECT 1 FROM solutions t JOIN searches r ON r.id = t.search_id
             WHERE r.budget = q.budget AND r.scenario = q.scenario AND r.objective = q.objective AND t.id <> s.id
               AND t.objective <= s.objective AND t.speedup >= s.speedup
               AND (t.objective < s.objective OR t.speedup > s.speedup)) ORDER BY 1" | tr '\n' ' ')
view=$(q "SELECT solution_id FROM pareto_front ORDER BY 1" | tr '\n' ' ')
expect "the Pareto front (solution ids)" "$view" eq "$front"
expect "Pareto front members" "$(q "SELECT count(*) FROM pareto_front")" ">=" 1

# ---- every stored solution: every number and every limit recomputed -------------------------------------------
nsol=0
for id in $(q "SELECT id FROM solutions ORDER BY id"); do verify "$id"; nsol=$((nsol + 1)); done
echo "verified $nsol solutions"
expect "solutions verified" "$nsol" ">=" 10

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
# the child as an FP8 checkpoint (docs/FP8.md): loads back close to the f32 child
"$BIN" realize --db run.db --solution "$M" --out child8 --dtype fp8 >/dev/null 2>r8.err; rc=$?
check "realize --dtype fp8 writes an FP8 checkpoint" '[ $rc -eq 0 ] && python3 -c "
import json; assert json.load(open(\"child8/config.json\"))[\"quantization_config\"][\"quant_method\"] == \"fp8\""' || cat r8.err >&2
"$BIN" eval child8 --dtype fp8 --ref child --ref-dtype f32 --text held.txt --ctx 64 --max-tokens 256 --threads 2 --json >e8.json 2>/dev/null
kl8=$(python3 -c "import json; print(json.load(open('e8.json'))['kl'])" 2>/dev/null)
check "fp8 child vs f32 child: 0 < KL ($kl8) < 0.05" 'python3 -c "import sys; k=float(sys.argv[1]); sys.exit(not 0 < k < 0.05)" "$kl8"'

# per-channel weight scales (--scales channel): the independent reader checks the file against the f32
# child, and it is byte for byte what `puzzle quantize --scales channel` writes of the f32 child
"$BIN" realize --db run.db --solution "$M" --out child8c --dtype fp8 --scales channel >/dev/null 2>r8c.err; rc=$?
check "realize --dtype fp8 --scales channel exits 0" '[ $rc -eq 0 ]' || cat r8c.err >&2
"$BIN" quantize child --out q8c --dtype fp8 --scales channel --threads 2 >/dev/null 2>q8c.err
check "realized per-channel child = quantize --scales channel of the f32 child" \
  '[ -s q8c/model.safetensors ] && cmp -s child8c/model.safetensors q8c/model.safetensors'
check "realized per-channel child: per-channel scales in a different file than per-tensor" \
  '! cmp -s child8c/model.safetensors child8/model.safetensors'
PYR="${PUZZLE_PYTHON-python3}"
if [ -n "$PYR" ]; then
  "$PYR" "$(dirname "$0")/ref/check_fp8_checkpoint.py" child8c child >py8c.txt 2>&1
  check "independent reader: realized per-channel child" \
    '[ $? -eq 0 ] && grep -q "per-channel scales" py8c.txt' || cat py8c.txt >&2
fi
"$BIN" eval child8c --dtype fp8 --ref child --ref-dtype f32 --text held.txt --ctx 64 --max-tokens 256 --threads 2 \
  --json >e8c.json 2>/dev/null
kl8c=$(python3 -c "import json; print(json.load(open('e8c.json'))['kl'])" 2>/dev/null)
check "per-channel fp8 child vs f32 child: 0 < KL ($kl8c) < 0.05" \
  'python3 -c "import sys; k=float(sys.argv[1]); sys.exit(not 0 < k < 0.05)" "$kl8c"'
"$BIN" realize --db run.db --solution "$M" --out child8x --scales channel >/dev/null 2>&1
check "--scales without --dtype fp8: usage error" '[ $? -eq 2 ]'

# a tampered block file is refused
F=$(q "SELECT attn_file FROM solution_choices WHERE solution_id = $M AND attn_file IS NOT NULL
       UNION SELECT ffn_file FROM solution_choices WHERE solution_id = $M AND ffn_file IS NOT NULL LIMIT 1")
if [ -n "$F" ]; then
    cp "$F" saved.st && printf 'x' | dd of="$F" bs=1 seek=100 conv=notrunc 2>/dev/null
    "$BIN" realize --db run.db --solution "$M" --out child2 >t.txt 2>t.err; rc=$?
    check "tampered block: exit 1 naming sha256" '[ $rc -eq 1 ] && grep -q "sha256" t.err'
    cp saved.st "$F"
fi

# ---- search in context ------------------------------------------------------------------------------------
# (after the recomputation above: in-context solutions are scored by KL differences in their base child, not
# by the replace-1-block scores it recomputes.) Round 0 is the one-shot child, and its KL measured on the
# context windows (the scores' own: held.txt, 512 tokens in windows of 64) equals `puzzle eval --ref` of that
# child realized; a later round is stored only as 'improved' with a lower KL, or as 'worse' / 'same' with
# the base's; every rescored candidate is stored with its base; a rerun continues and adds nothing.
IC=("${S[@]}" --speedup "$T1" --in-context --rounds 2 --tries 2 --threads 2)
"${IC[@]}" >ic.txt 2>ic.err; rc=$?
check "search --in-context exits 0 (rc $rc: $(tail -n 1 ic.err))" '[ $rc -eq 0 ]'
expect "one round 0, the one-shot child" "$(q "SELECT count(*) FROM context_rounds WHERE round = 0 AND status = 'base'")" eq 1
R0=$(q "SELECT solution_id FROM context_rounds WHERE round = 0")
K0=$(q "SELECT kl FROM context_rounds WHERE round = 0")
"$BIN" realize --db run.db --solution "$R0" --out ctx0 --dtype f32 >/dev/null 2>&1
"$BIN" eval ctx0 --ref m --text held.txt --ctx 64 --max-tokens 512 --threads 2 --json >c0.json 2>/dev/null
KE=$(python3 -c 'import json; print(json.load(open("c0.json"))["kl"])' 2>/dev/null)
check "round 0 KL $K0 = eval --ref of its child ${KE:-?} (1e-3 relative)" \
    'awk -v a="$K0" -v b="$KE" "BEGIN { d = a - b; if (d < 0) d = -d; exit !(b != \"\" && a > 0 && d <= 1e-3 * b) }"'
expect "rounds after 0 ordered: improved rows lower the KL, others keep the base's" \
    "$(q "SELECT count(*) FROM context_rounds r JOIN context_rounds p ON p.run_key = r.run_key AND p.round = r.round - 1
          WHERE NOT ((r.status = 'improved' AND r.kl < p.kl) OR (r.status IN ('worse', 'same') AND r.kl = p.kl))")" eq 0
expect "candidates rescored in round 1 stored with their base" \
    "$(q "SELECT count(*) FROM context_scores WHERE base_solution_id = $R0")" eq \
    "$(q "SELECT n_rescored FROM context_rounds WHERE round = 1")"
expect "context scores keep the base's KL" "$(q "SELECT count(DISTINCT base_kl) FROM context_scores WHERE base_solution_id = $R0")" eq 1
check "the best child is printed" 'grep -q "^best child: solution" ic.txt'
nr=$(q "SELECT count(*) FROM context_rounds"); ns=$(q "SELECT count(*) FROM context_scores")
"${IC[@]}" >ic2.txt 2>ic2.err; rc=$?
check "a rerun exits 0 and adds no round or score (rc $rc)" \
    '[ $rc -eq 0 ] && [ "$(q "SELECT count(*) FROM context_rounds")" = "$nr" ] && [ "$(q "SELECT count(*) FROM context_scores")" = "$ns" ]'
one_err_ctx=$("$BIN" search --db run.db --budget cpu --scenario decode:1x64 --method greedy --in-context 2>&1 >/dev/null)
check "--in-context with a baseline is refused" '[[ "$one_err_ctx" == *"applies to --method mip"* ]]'

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
