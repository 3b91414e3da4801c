#!/usr/bin/env bash
# perplexity.sh — the realized child as llama.cpp reads it: the parent and
# children with every block kind, exported by `puzzle realize --gguf`, scored
# by llama.cpp's llama-perplexity and by `puzzle eval --protocol
# llama-perplexity` on the same held-out text and context; the two
# perplexities must agree within 1 %. Every realized child's config.json is
# also read by tests/ref/check_decilm_config.py (the DeciLM rule of
# transformers and vLLM). Not part of the default test run (it builds
# llama.cpp and trains a small block library: 15-30 minutes on 2 cores).
#
#   bash tests/interop/perplexity.sh [OUT.md]    # default results/interop_perplexity.md
#   env: BUILD (build), WORK ($PUZZLE_CACHE/interop), CTX (512), CHUNKS (8),
#        THREADS (2), LIB_TOKENS (4096), LIB_STEPS (20),
#        LLAMA_BIN (llama.cpp's bin/; default: built by build_llama_cpp.sh)
#
# The children come from a small library (BLD on layers 4 and 12 only) with
# layer choices picked by hand, written into the run database as solutions
# of a search named "interop" so that `puzzle realize` assembles them:
#   P: the parent (every layer its own), exported as f32 GGUF
#   A: L4 gqa(kv 1) + swiglu 768,     L12 linear attention + linear FFN
#   B: L4 noop attention + parent FFN, L12 parent attention + noop FFN
#   C: L4 noop + noop,                 L12 linear attention + noop FFN
# which covers every attention kind (gqa with fewer KV heads, linear, noop)
# and every FFN kind (narrower swiglu, linear, noop after gqa, after linear
# and after noop attention: the three layouts the GGUF writer uses).
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${PUZZLE_CACHE:-$HOME/.cache/puzzle}
OUT=${1:-results/interop_perplexity.md}
BUILD=${BUILD:-build}
WORK=${WORK:-$CACHE/interop}
CTX=${CTX:-512}
CHUNKS=${CHUNKS:-8}
THREADS=${THREADS:-2}
LIB_TOKENS=${LIB_TOKENS:-4096}
LIB_STEPS=${LIB_STEPS:-20}
P=$BUILD/puzzle
PY=python3
[ -x "$CACHE/venv/bin/python3" ] && PY=$CACHE/venv/bin/python3

LLAMA=${LLAMA_BIN:-$(bash tests/interop/build_llama_cpp.sh)}
PARENT=$(bash scripts/fetch_model.sh | tail -1)
bash scripts/fetch_text.sh >/dev/null
TEXT=$CACHE/text/eval.txt
mkdir -p "$WORK"
DB=$WORK/run.db

echo "== block library: layers 4 and 12 ($LIB_TOKENS tokens, $LIB_STEPS steps per block)" >&2
cat >"$WORK/space.json" <<'EOF'
{"version": 1, "round_to": 256, "layers": [4, 12],
 "attention": [{"kind": "gqa", "n_kv": 3}, {"kind": "gqa", "n_kv": 1}, {"kind": "linear"}, {"kind": "noop"}],
 "ffn": [{"kind": "swiglu", "n_ff": 1536}, {"kind": "swiglu", "n_ff": 768}, {"kind": "linear"}, {"kind": "noop"}]}
EOF
"$P" build-library "$PARENT" --db "$DB" --data "$CACHE/text/calib.txt" --space "$WORK/space.json" \
    --tokens "$LIB_TOKENS" --steps "$LIB_STEPS" --threads "$THREADS" >&2
rm -rf "$WORK/run.cache"

# One solution per child: NAME then "layer:attn_kind:attn_size:ffn_kind:ffn_size" for each changed layer.
sql() { sqlite3 "$DB" "$@"; }
add_child() {
    local name=$1; shift
    local sid
    sid=$(sql "SELECT s.id FROM solutions s JOIN searches q ON q.id = s.search_id
               WHERE q.method = 'interop' AND q.budget = '$name'")
    if [ -n "$sid" ]; then echo "$sid"; return; fi
    sid=$(sql "INSERT INTO searches (command, method, budget, device, n_devices, tp, scenario, batch_mode,
                 objective, data_hash, n_wanted, status, n_solutions, wall_s)
               VALUES ('tests/interop/perplexity.sh', 'interop', '$name', 'cpu', 1, 1, 'none', 'none', 'none', '',
                       1, 'solved', 1, 0);
               INSERT INTO solutions (search_id, rank, status, objective, batch, time_s, throughput, memory_bytes,
                                      params, n_changed)
               VALUES (last_insert_rowid(), 1, 'hand-picked', 0, 1, 0, 0, 0, 0, 0);
               SELECT last_insert_rowid();")
    local l
    for l in $(seq 0 29); do
        local ak=gqa as=3 fk=swiglu fs=1536 spec
        for spec in "$@"; do
            IFS=: read -r sl sak sas sfk sfs <<<"$spec"
            [ "$sl" = "$l" ] && ak=$sak as=$sas fk=$sfk fs=$sfs
        done
        local L; L=$(printf 'L%02d' "$l")
        local av=$ak fv=$fk ap=0 fp=0 ab=NULL fb=NULL
        [ "$ak" = gqa ] && av=gqa_kv$as
        [ "$fk" = swiglu ] && fv=swiglu_$fs
        [ "$av" = gqa_kv3 ] && ap=1
        [ "$fv" = swiglu_1536 ] && fp=1
        [ $ap = 0 ] && [ "$ak" != noop ] && ab="'$L.attn.$av'"
        [ $fp = 0 ] && [ "$fk" != noop ] && fb="'$L.ffn.$fv'"
        sql "INSERT INTO solution_layers VALUES ($sid, $l, '$ak', $as, '$fk', $fs, '$av', '$fv', $ab, $fb,
             $ap, $fp, 0)"
    done
    echo "$sid"
}

declare -A SOL
SOL[P]=$(add_child P)
SOL[A]=$(add_child A 4:gqa:1:swiglu:768 12:linear:0:linear:0)
SOL[B]=$(add_child B 4:noop:0:swiglu:1536 12:gqa:3:noop:0)
SOL[C]=$(add_child C 4:noop:0:noop:0 12:linear:0:noop:0)

ppl_llama() {  # GGUF -> perplexity
    "$LLAMA/llama-perplexity" -m "$1" -f "$TEXT" -c "$CTX" --chunks "$CHUNKS" -t "$THREADS" >"$2" 2>&1 ||
        { tail -5 "$2" >&2; echo "llama-perplexity failed on $1 (log $2)" >&2; return 1; }
    sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$2"
}
ppl_puzzle() {
    "$P" eval "$1" --text "$TEXT" --ctx "$CTX" --protocol llama-perplexity --chunks "$CHUNKS" \
        --threads "$THREADS" --json 2>/dev/null | sed -n 's/.*"perplexity":\([0-9.e+-]*\).*/\1/p' |
        xargs printf '%.4f\n'
}

rows=()
fail=0
row() {  # label, gguf[, "info": not counted]
    local lp pp rel ok
    lp=$(ppl_llama "$2" "$WORK/$(basename "$2").llama.log")
    pp=$(ppl_puzzle "$2")
    read -r rel ok < <("$PY" -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); r = abs(a - b) / b
print('%.3f' % (100 * r), 'yes' if r < 0.01 else 'NO')" "$pp" "$lp")
    if [ "${3:-}" = info ]; then ok="($ok: not counted)"; elif [ "$ok" != yes ]; then fail=1; fi
    rows+=("| $1 | $lp | $pp | $rel % | $ok |")
    echo "$1: llama.cpp $lp, puzzle $pp ($rel %)" >&2
}

for c in P A B C; do
    echo "== realize $c (solution ${SOL[$c]})" >&2
    "$P" realize --db "$DB" --solution "${SOL[$c]}" --out "$WORK/$c" --gguf "$WORK/$c.gguf" --dtype f32 >&2
    "$PY" tests/ref/check_decilm_config.py "$WORK/$c" >&2 || { echo "DeciLM readers disagree on $c" >&2; fail=1; }
done
# llama.cpp multiplies Q4_1 weights by Q8-quantized activations; puzzle
# dequantizes them to f32: a reference row, not part of the check.
row "parent, original Q4_1 file" "$PARENT" info
row "P: parent, realized f32 GGUF (llama)" "$WORK/P.gguf"
row "A: L4 gqa kv1 + swiglu 768; L12 linear + linear" "$WORK/A.gguf"
row "B: L4 noop + parent FFN; L12 parent attention + noop" "$WORK/B.gguf"
row "C: L4 noop + noop; L12 linear + noop" "$WORK/C.gguf"

{
    echo "# llama.cpp and puzzle on the same GGUF files: perplexity"
    echo
    echo "Produced by \`bash tests/interop/perplexity.sh\` ($(date -u +%Y-%m-%d), llama.cpp from"
    echo "llama-cpp-python ${LLAMA_CPP_PYTHON_VERSION:-0.3.36}). Text: \`$(basename "$TEXT")\` from scripts/fetch_text.sh;"
    echo "context $CTX, $CHUNKS chunks, each chunk's second half scored ($((CHUNKS * (CTX - CTX / 2 - 1))) tokens):"
    echo "\`llama-perplexity -c $CTX --chunks $CHUNKS\` against"
    echo "\`puzzle eval --protocol llama-perplexity --ctx $CTX --chunks $CHUNKS\`, $THREADS threads."
    echo
    echo "| model | llama-perplexity | puzzle eval | difference | within 1 % |"
    echo "|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Children: a library of BLD blocks for layers 4 and 12 only ($LIB_TOKENS calibration tokens,"
    echo "$LIB_STEPS steps per block), layer choices picked by hand (solutions of a search named"
    echo "\"interop\" in the run database), realized with \`puzzle realize --gguf --dtype f32\`."
    echo "Every realized child's config.json read back by tests/ref/check_decilm_config.py (transformers'"
    echo "and vLLM's DeciLM rule): $([ $fail = 0 ] && echo "identical shapes" || echo "see the log")."
} >"$OUT"
cat "$OUT"
exit $fail
