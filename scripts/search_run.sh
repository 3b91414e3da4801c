#!/usr/bin/env bash
# search_run.sh — the issue-5 reference run: on a run database whose library
# is scored and profiled (puzzle build-library, score, profile), search the
# CPU budget at several decode speed-ups with the MIP and each baseline,
# realize every child, and measure it: KL to the parent and perplexity on
# held-out evaluation tokens (`puzzle eval --ref`), and the decode speed-up
# on this CPU (bench_speedup, interleaved rounds). Writes a TSV, a markdown
# table and a plot (speed-up against KL).
#
# usage: scripts/search_run.sh RUN.db OUTDIR [SPEEDUPS] [METHODS]
#   SPEEDUPS default "1.25 1.5 2", METHODS default "mip greedy uniform-ffn drop-layers"; also shortgpt
#   (needs the block influence of `puzzle score`) and mip-ctx (search in context, `puzzle search
#   --in-context` with CTX_OPTS; rerunning resumes its stored rounds)
#   env: SCENARIO (default decode:1x512), EVAL_TEXT (default ~/.cache/puzzle/text/eval.txt),
#        EVAL_SKIP (tokens skipped first: the scoring windows; default 2048), EVAL_TOKENS (default 8192),
#        THREADS (default 2), BUILD (default build)
set -eu
DB=${1:?usage: search_run.sh RUN.db OUTDIR [SPEEDUPS] [METHODS]}
OUT=${2:?usage: search_run.sh RUN.db OUTDIR [SPEEDUPS] [METHODS]}
SPEEDUPS=${3:-1.25 1.5 2}
METHODS=${4:-mip greedy uniform-ffn drop-layers}
SCENARIO=${SCENARIO:-decode:1x512}
EVAL_TEXT=${EVAL_TEXT:-$HOME/.cache/puzzle/text/eval.txt}
EVAL_SKIP=${EVAL_SKIP:-2048}
EVAL_TOKENS=${EVAL_TOKENS:-8192}
THREADS=${THREADS:-2}
BUILD=${BUILD:-build}
P=$BUILD/puzzle
mkdir -p "$OUT"
q() { sqlite3 "$DB" "$1"; }
PARENT=$(q "SELECT path FROM models WHERE role = 'parent'")
TSV=$OUT/search_run.tsv

echo "== searches and children"
: >"$OUT/children.tsv"
for X in $SPEEDUPS; do
  for M in $METHODS; do
    if [ "$M" = mip-ctx ]; then  # search in context: the best child its rounds measured
      # shellcheck disable=SC2086
      "$P" search --db "$DB" --budget cpu --scenario "$SCENARIO" --speedup "$X" --method mip --in-context \
          ${CTX_OPTS:-} >"$OUT/search_${M}_$X.txt" 2>&1 || true
      ID=$(sed -n 's/^best child: solution \([0-9]*\).*/\1/p' "$OUT/search_${M}_$X.txt" | tail -n 1)
      if [ -z "$ID" ]; then
        echo "$M at ${X}x: failed ($(tail -n 1 "$OUT/search_${M}_$X.txt"))"
        printf '%s\t%s\t%s\t\t\t\t\t\n' "$M" "$X" failed >>"$OUT/children.tsv"
        continue
      fi
    else
      "$P" search --db "$DB" --budget cpu --scenario "$SCENARIO" --speedup "$X" --method "$M" \
          >"$OUT/search_${M}_$X.txt" 2>&1
      S=$(q "SELECT max(id) FROM searches")
      ST=$(q "SELECT status FROM searches WHERE id = $S")
      if [ "$ST" != solved ]; then
        echo "$M at ${X}x: $ST ($(q "SELECT explanation FROM searches WHERE id = $S"))"
        printf '%s\t%s\t%s\t\t\t\t\t\n' "$M" "$X" "$ST" >>"$OUT/children.tsv"
        continue
      fi
      ID=$(q "SELECT id FROM solutions WHERE search_id = $S AND rank = 1")
    fi
    DIR=$OUT/child_${M}_$X
    [ -f "$DIR/config.json" ] || "$P" realize --db "$DB" --solution "$ID" --out "$DIR" --dtype f32 2>>"$OUT/realize.log"
    row=$(q "SELECT objective, speedup, params, n_changed FROM solutions WHERE id = $ID" | tr '|' '\t')
    printf '%s\t%s\tsolved\t%s\t%s\t%s\n' "$M" "$X" "$ID" "$DIR" "$row" >>"$OUT/children.tsv"
    echo "$M at ${X}x: solution $ID, predicted $(q "SELECT printf('%.3f', speedup) FROM solutions WHERE id = $ID")x, score $(q "SELECT printf('%.4f', objective) FROM solutions WHERE id = $ID")"
  done
done

echo "== evaluation: $EVAL_TOKENS tokens of $EVAL_TEXT after the first $EVAL_SKIP"
EV=(--text "$EVAL_TEXT" --skip-tokens "$EVAL_SKIP" --max-tokens "$EVAL_TOKENS" --threads "$THREADS" --json)
[ -f "$OUT/eval_parent.json" ] || "$P" eval "$PARENT" "${EV[@]}" >"$OUT/eval_parent.json" 2>/dev/null
while IFS=$'\t' read -r M X ST ID DIR _; do
  [ "$ST" = solved ] || continue
  [ -f "$OUT/eval_${M}_$X.json" ] || "$P" eval "$DIR" --ref "$PARENT" "${EV[@]}" >"$OUT/eval_${M}_$X.json" 2>/dev/null
done <"$OUT/children.tsv"

echo "== decode speed (bench_speedup)"
dirs=()
while IFS=$'\t' read -r M X ST ID DIR _; do [ "$ST" = solved ] && dirs+=("$DIR"); done <"$OUT/children.tsv"
"$BUILD/bench_speedup" --threads "$THREADS" --rounds "${ROUNDS:-5}" --tsv "$OUT/speed.tsv" "$PARENT" "${dirs[@]}" \
    >"$OUT/speed.md" 2>"$OUT/speed.log"

python3 - "$OUT" >"$TSV" <<'EOF'
import csv, json, sys
out = sys.argv[1]
speed = {r["model"]: r for r in csv.DictReader(open(out + "/speed.tsv"), delimiter="\t")}
par = json.load(open(out + "/eval_parent.json"))
print("method\ttarget\tstatus\tsolution\tpredicted_kl_sum\tpredicted_speedup\tparams_m\tchanged\tkl\ttop1\tppl\tmeasured_speedup\tdecode_tok_s")
print("parent\t1\t-\t-\t0\t1\t%.2f\t0\t0\t1\t%.4f\t1\t%s" % (float(list(speed.values())[0]["params"]) / 1e6,
      par["perplexity"], list(speed.values())[0]["decode_tok_s"]))
for line in open(out + "/children.tsv"):
    f = line.rstrip("\n").split("\t")
    m, x, st = f[0], f[1], f[2]
    if st != "solved":
        print("%s\t%s\t%s\t\t\t\t\t\t\t\t\t\t" % (m, x, st)); continue
    sid, d, obj, sp, params, ch = f[3], f[4], float(f[5]), float(f[6]), float(f[7]), f[8]
    e = json.load(open("%s/eval_%s_%s.json" % (out, m, x)))
    s = speed.get(d) or speed.get(d.rstrip("/"))
    print("%s\t%s\t%s\t%s\t%.4f\t%.3f\t%.2f\t%s\t%.4f\t%.4f\t%.4f\t%s\t%s" % (m, x, st, sid, obj, sp, params / 1e6, ch,
          e["kl"], e["top1_agreement"], e["perplexity"], s["decode_speedup"] if s else "", s["decode_tok_s"] if s else ""))
EOF
column -t -s $'\t' "$TSV"

# Plot: measured decode speed-up against measured KL, one series per method.
if command -v gnuplot >/dev/null; then
  for M in $METHODS; do awk -F'\t' -v m="$M" '$1 == m && $3 == "solved" {print $12, $9, $2}' "$TSV" >"$OUT/plot_$M.dat"; done
  {
    echo "set terminal pngcairo size 900,600 noenhanced; set output '$OUT/search_run.png'"
    echo "set title 'SmolLM2-135M children on this CPU: decode speed-up vs KL to the parent'"
    echo "set xlabel 'measured decode speed-up (bench_speedup, f32, 2 threads, ctx 512)'; set ylabel 'KL(parent || child), nats/token'"
    echo "set logscale y; set key top left; set grid"
    printf "plot "
    sep=""
    for M in $METHODS; do printf "%s'%s' using 1:2 with linespoints pt 7 title '%s'" "$sep" "$OUT/plot_$M.dat" "$M"; sep=", "; done
    echo
  } >"$OUT/search_run.gp"
  gnuplot "$OUT/search_run.gp" && echo "plot: $OUT/search_run.png"
fi
