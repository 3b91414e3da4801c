#!/usr/bin/env bash
# bld_lr_sweep.sh — the recorded learning-rate sweep behind BLD's default --lr (issue 11,
# item 3; results/bld_lr_sweep.md). For each LR, builds a small block library (layers
# LAYERS; attention GQA with 1 KV head, FFN SwiGLU 768 and 256) with `puzzle build-library --lr LR` on calib.txt
# (its first TOKENS tokens, STEPS optimizer steps of 4 windows of 256 tokens; the parent's
# activations are captured once and shared by the LRs), scores every block by
# replace-1-block KL on SCORE_TOKENS tokens of calib.txt from byte SKIP_BYTES on (text the
# BLD runs did not see, and not eval.txt, which no stage or tuning uses), and prints one
# TSV row per (lr, block): lr, block, kl, init and final per-token validation NMSE, kept_init.
#
# usage: scripts/bld_lr_sweep.sh PARENT OUTDIR
#   env: LRS ("1e-4 3e-4 1e-3 3e-3 1e-2"), LAYERS ("3, 11, 20, 28"), TOKENS (16384), STEPS (30),
#        SCORE_TOKENS (2048), SKIP_BYTES (300000), THREADS (2), BUILD (build),
#        KEEP_CACHE (1: keep the captures for another call with other LRS or LAYERS)
# Rows append to OUTDIR/sweep.tsv; a rerun resumes (build-library and score skip what is done).
set -euo pipefail
cd "$(dirname "$0")/.."
PARENT=${1:?usage: bld_lr_sweep.sh PARENT OUTDIR}
OUT=${2:?usage: bld_lr_sweep.sh PARENT OUTDIR}
CACHE=${PUZZLE_CACHE:-$HOME/.cache/puzzle}
LRS=${LRS:-"1e-4 3e-4 1e-3 3e-3 1e-2"}
LAYERS=${LAYERS:-"3, 11, 20, 28"}
TOKENS=${TOKENS:-16384}
STEPS=${STEPS:-30}
SCORE_TOKENS=${SCORE_TOKENS:-2048}
SKIP_BYTES=${SKIP_BYTES:-300000}
THREADS=${THREADS:-2}
BUILD=${BUILD:-build}
P=$BUILD/puzzle
mkdir -p "$OUT"
cat > "$OUT/space.json" <<EOF
{"version": 1, "round_to": 256, "layers": [$LAYERS],
 "attention": [{"kind": "gqa", "n_kv": 1}],
 "ffn": [{"kind": "swiglu", "n_ff": 768}, {"kind": "swiglu", "n_ff": 256}]}
EOF
tail -c +"$((SKIP_BYTES + 1))" "$CACHE/text/calib.txt" > "$OUT/score.txt"
[ -f "$OUT/sweep.tsv" ] || printf 'lr\tblock\tkl\tinit_val_nmse\tfinal_val_nmse\tkept_init\n' > "$OUT/sweep.tsv"
for lr in $LRS; do
    db=$OUT/lr_$lr.db
    mkdir -p "$OUT/shared.cache"; ln -sfn shared.cache "$OUT/lr_$lr.cache"
    OMP_WAIT_POLICY=passive "$P" build-library "$PARENT" --db "$db" --data "$CACHE/text/calib.txt" \
        --space "$OUT/space.json" --tokens "$TOKENS" --steps "$STEPS" --lr "$lr" --threads "$THREADS" >&2
    OMP_WAIT_POLICY=passive "$P" score --db "$db" --data "$OUT/score.txt" --tokens "$SCORE_TOKENS" \
        --threads "$THREADS" >&2
    sqlite3 -separator $'\t' "$db" "SELECT '$lr', s.block_id, printf('%.5f', s.kl),
        printf('%.5f', r.init_val_nmse), printf('%.5f', r.final_val_nmse), r.kept_init
        FROM block_scores s JOIN blocks b USING (block_id) JOIN bld_runs r ON r.id = b.run_id
        WHERE b.is_parent = 0 ORDER BY s.block_id" | tee -a "$OUT/sweep.tsv"
done
[ "${KEEP_CACHE:-0}" = 1 ] || rm -rf "$OUT/shared.cache" "$OUT"/lr_*.cache
