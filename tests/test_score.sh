#!/usr/bin/env bash
# labels: cpu model
# `puzzle score` end to end on a tiny library of a small random model with
# the real tokenizer: every finished block is scored exactly once; parent
# copies score KL 0, noop blocks KL > 0, KL >= 0 and top-1 in [0, 1]
# everywhere; a rerun does nothing; SIGKILL mid-run and a rerun end complete,
# with the same numbers and an intact database; two shards merged with
# merge-db equal the unsharded run, and so does a sparser residual cache
# (--cache-stride); and one trained block's KL equals that
# of `puzzle eval --ref` on the child realized as a DeciLM directory (the
# block's tensors spliced into the parent's), within 1e-4 relative.
set -u
BIN="${PUZZLE_BIN:?}"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
MODEL="${PUZZLE_MODEL:-}"
if [ ! -f "$MODEL" ]; then echo "skip: reference parent (its tokenizer) not fetched (scripts/fetch_model.sh)"; exit 77; fi
command -v sqlite3 >/dev/null || { echo "skip: sqlite3 CLI not installed"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
check() { if eval "$2"; then ok; else bad "$1"; fi; }
q() { sqlite3 "$1" "$2"; }

"$MAKE" m --variant 0 --seed 1 --tokenizer "$MODEL" >/dev/null || { echo "make_test_model failed"; exit 1; }
# Calibration text and a different held-out text.
python3 - <<'EOF'
import random
words = ("the of and to in is was for on that with as by at from it an be this which or are were "
         "model layer block attention train value 1905 2024 Paris river quickly blue seven").split()
for name, seed, n in (("calib.txt", 7, 200), ("held.txt", 11, 700)):
    r = random.Random(seed)
    with open(name, "w") as f:
        f.write("\n".join(" ".join(r.choice(words) for _ in range(r.randint(5, 15))).capitalize() + "."
                          for _ in range(n)))
EOF
cat >space.json <<'EOF'
{"version": 1, "round_to": 16, "layers": "all",
 "attention": [{"kind": "gqa", "n_kv": 4}, {"kind": "gqa", "n_kv": 2}, {"kind": "gqa", "n_kv": 1},
               {"kind": "linear"}, {"kind": "noop"}],
 "ffn": [{"kind": "swiglu", "n_ff": 96}, {"kind": "swiglu", "n_ff": 48}, {"kind": "linear"}, {"kind": "noop"}]}
EOF
"$BIN" build-library m --db a.db --data calib.txt --space space.json --seq-len 64 --tokens 1024 --steps 10 \
    --batch 4 --threads 2 >build.log 2>&1 || { cat build.log >&2; echo "build-library failed"; exit 1; }
q a.db "VACUUM INTO 'snap.db'"
SARGS=(--data held.txt --tokens 512 --seq-len 64 --threads 2)

# ---- bad inputs: one line, non-zero exit ------------------------------------------------
one_err() { # name, expected rc, grep pattern, command...
    local name=$1 want=$2 pat=$3; shift 3
    "$@" >out.txt 2>err.txt; local rc=$?
    [ $rc -eq "$want" ] || { bad "$name: rc $rc, want $want"; cat err.txt >&2; return; }
    [ "$(wc -l <err.txt)" -eq 1 ] || { bad "$name: $(wc -l <err.txt) lines"; cat err.txt >&2; return; }
    grep -q -- "$pat" err.txt && grep -q "^puzzle score: " err.txt || { bad "$name: message: $(cat err.txt)"; return; }
    ok
}
one_err "missing --db" 2 "\-\-db" "$BIN" score --data held.txt
one_err "bad --metric" 2 "\-\-metric" "$BIN" score --db a.db --data held.txt --metric ppl
one_err "no such database" 1 "nope.db" "$BIN" score --db nope.db --data held.txt
one_err "missing data" 1 "nope.txt" "$BIN" score --db a.db --data nope.txt
one_err "too little text" 1 "window" "$BIN" score --db a.db --data space.json --seq-len 512

# ---- a full run --------------------------------------------------------------------------
t0=$(date +%s.%N)
"$BIN" score --db a.db "${SARGS[@]}" 2>a.log; rc=$?
check "score exits 0" '[ $rc -eq 0 ]' || cat a.log >&2
N=$(q a.db "SELECT count(*) FROM blocks WHERE status = 'done'")
check "library has blocks ($N)" '[ "$N" -ge 30 ]'
check "every block scored once" '[ "$(q a.db "SELECT count(*) FROM scores")" = "$N" ] &&
    [ "$(q a.db "SELECT count(DISTINCT block_id) FROM block_scores")" = "$N" ]'
check "tokens recorded (8 windows x 63)" '[ "$(q a.db "SELECT min(tokens) || max(tokens) FROM scores")" = "504504" ]'
NP=$(q a.db "SELECT count(*) FROM block_scores WHERE is_parent")
check "parent copies KL < 1e-6, top-1 1 ($NP)" '[ "$NP" -ge 6 ] &&
    [ "$(q a.db "SELECT count(*) FROM block_scores WHERE is_parent AND (kl >= 1e-6 OR top1 < 1 OR abs(loss_delta) > 1e-6)")" = 0 ]'
NN=$(q a.db "SELECT count(*) FROM block_scores WHERE init_method = 'noop' AND NOT is_parent")
NZ=$(q a.db "SELECT count(*) FROM block_scores WHERE init_method = 'noop' AND NOT is_parent AND kl <= 0")
check "noop blocks KL > 0 ($NN)" '[ "$NN" -ge 4 ] && [ "$NZ" = 0 ]'
check "KL >= 0, top-1 in [0,1], finite" '[ "$(q a.db "SELECT count(*) FROM scores WHERE NOT (kl >= 0 AND top1 >= 0 AND top1 <= 1
    AND kl < 1e6 AND abs(loss_delta) < 1e6)")" = 0 ]'
TZ=$(q a.db "SELECT count(*) FROM block_scores WHERE init_method NOT IN ('parent', 'noop') AND kl <= 0")
check "trained blocks: KL > 0" '[ "$TZ" = 0 ]'
check "progress lines with a rate and an ETA" 'grep -q "blocks/s.*ETA" a.log'
EV=$(q a.db "SELECT count(*) FROM events WHERE stage = 'score' AND kind = 'finish'")
check "events logged" '[ "$EV" = 1 ]'

# ---- a rerun does nothing -----------------------------------------------------------------
rows() { q a.db "SELECT group_concat(block_id || created_at || kl, ' ') FROM scores"; }
before=$(rows)
"$BIN" score --db a.db "${SARGS[@]}" 2>re.log; rc=$?
check "rerun exits 0 and does nothing" '[ $rc -eq 0 ] && grep -q "nothing to do" re.log'
check "rerun leaves the rows alone" '[ "$(rows)" = "$before" ]'
# Other data (a different token budget) is scored apart.
"$BIN" score --db a.db --data held.txt --tokens 256 --seq-len 64 --threads 2 2>/dev/null
check "other windows give their own rows" '[ "$(q a.db "SELECT count(*) FROM scores")" = "$((2 * N))" ]'

# ---- SIGKILL mid-run, then resume ----------------------------------------------------------------
cp snap.db b.db
"$BIN" score --db b.db "${SARGS[@]}" --tokens 512 2>b1.log &
pid=$!
for _ in $(seq 3000); do
    n=$(q b.db "SELECT count(*) FROM scores" 2>/dev/null || echo 0)
    [ "${n:-0}" -ge 3 ] && break
    sleep 0.01
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
killed=$(q b.db "SELECT count(*) FROM scores")
echo "SIGKILL after $killed of $N blocks scored"
check "killed run left a partial table ($killed of $N)" '[ "$killed" -ge 1 ]'
check "integrity after SIGKILL" '[ "$(q b.db "PRAGMA integrity_check")" = ok ]'
"$BIN" score --db b.db "${SARGS[@]}" 2>b2.log; rc=$?
check "resume exits 0" '[ $rc -eq 0 ]' || cat b2.log >&2
check "resume completes the table" '[ "$(q b.db "SELECT count(*) FROM scores")" = "$N" ]'
check "integrity after resume" '[ "$(q b.db "PRAGMA integrity_check")" = ok ]'
same() { # db: its scores equal a.db's on the SARGS windows (to 1e-9)
    q "$1" "ATTACH 'a.db' AS a; SELECT count(*) FROM scores s JOIN a.scores t USING (block_id, data_hash, seq_len)
            WHERE abs(s.kl - t.kl) <= 1e-9 AND abs(s.top1 - t.top1) <= 1e-9 AND abs(s.loss_delta - t.loss_delta) <= 1e-9"
}
check "resumed scores equal the uninterrupted run's" '[ "$(same b.db)" = "$N" ]'

# ---- shards + merge-db ----------------------------------------------------------------------------
cp snap.db c0.db && cp snap.db c1.db
"$BIN" score --db c0.db "${SARGS[@]}" --shard 0/2 2>/dev/null && "$BIN" score --db c1.db "${SARGS[@]}" --shard 1/2 2>/dev/null
n0=$(q c0.db "SELECT count(*) FROM scores") n1=$(q c1.db "SELECT count(*) FROM scores")
check "shards split the blocks ($n0 + $n1)" '[ $((n0 + n1)) -eq "$N" ] && [ "$n0" -ge 1 ] && [ "$n1" -ge 1 ]'
"$BIN" merge-db --db mm.db c0.db c1.db 2>merge.log; rc=$?
check "merge-db exits 0" '[ $rc -eq 0 ]' || cat merge.log >&2
check "merged scores equal the unsharded run's" '[ "$(same mm.db)" = "$N" ]'

# ---- a sparser residual cache (recompute from the nearest kept layer) gives the same numbers ----
cp snap.db d.db
"$BIN" score --db d.db "${SARGS[@]}" --cache-stride 4 2>d.log
check "--cache-stride 4 equals stride 1" '[ "$(same d.db)" = "$N" ]'

# ---- cross-check one trained block against puzzle eval --ref ---------------------------------------
B=$(q a.db "SELECT block_id FROM blocks WHERE sub = 'ffn' AND ffn_kind = 'swiglu' AND NOT is_parent AND weight_file IS NOT NULL ORDER BY layer LIMIT 1")
F=$(q a.db "SELECT weight_file FROM blocks WHERE block_id = '$B'")
python3 - "$F" <<'EOF'
# child = parent m with the block's tensors in place of its layer's FFN.
import json, os, shutil, struct, sys
def read(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n)); data = f.read()
    meta = h.pop("__metadata__", {})
    return meta, {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in h.items()}
meta, blk = read(sys.argv[1])
L, n_ff = int(meta["layer"]), int(meta["ffn"].split("_")[1])
_, par = read("m/model.safetensors")
pre = "model.layers.%d." % L
t = {k: v for k, v in par.items() if not (k.startswith(pre + "mlp.") or k == pre + "post_attention_layernorm.weight")}
t.update(blk)
os.makedirs("child", exist_ok=True)
for f in os.listdir("m"):
    if f != "model.safetensors": shutil.copy(os.path.join("m", f), "child")
hdr, off, blobs = {}, 0, []
for k in sorted(t):
    dt, shape, b = t[k]
    hdr[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
    off += len(b); blobs.append(b)
hj = json.dumps(hdr).encode(); hj += b" " * (-len(hj) % 8)
with open("child/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(hj))); f.write(hj); [f.write(b) for b in blobs]
c = json.load(open("child/config.json"))
c["block_configs"][L]["ffn"] = {"no_op": False, "replace_with_linear": False, "ffn_mult": None, "intermediate_size": n_ff}
json.dump(c, open("child/config.json", "w"))
EOF
check "child realized for $B" '[ -f child/model.safetensors ]'
"$BIN" eval child --ref m --text held.txt --ctx 64 --max-tokens 512 --threads 2 --json >eval.json 2>eval.err
ekl=$(python3 -c "import json; print(json.load(open('eval.json'))['kl'])" 2>/dev/null)
skl=$(q a.db "SELECT kl FROM scores WHERE block_id = '$B' AND tokens = 504")
echo "$B: KL $skl (score) vs $ekl (eval --ref on the realized child)"
check "KL of $B: score $skl vs eval --ref $ekl (1e-4 relative)" \
    'python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); sys.exit(not (b > 0 and abs(a - b) <= 1e-4 * b))" "$skl" "$ekl"'

echo "test_score.sh: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
