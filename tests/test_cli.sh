#!/usr/bin/env bash
# labels: cpu model
# Black-box test of the `puzzle` binary on the reference parent: every
# command runs, output is sane, and bad input gives one clear error line and a
# non-zero exit.
set -u
. "$(dirname "$0")/lib.sh"
need_model

# info
"$BIN" info "$MODEL" >"$tmp/info" 2>&1
check "info exit" '[ $? -eq 0 ]'
check "info layers" 'grep -q "30 layers, hidden 576, 9 query heads x 64, vocab 49152" "$tmp/info"'
check "info per-layer" '[ $(grep -c "gqa(kv=3)    swiglu(1536)" "$tmp/info") -eq 30 ]'
"$BIN" info "$MODEL" --json >"$tmp/info.json"
check "info json" 'python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert d[\"n_layer\"]==30 and len(d[\"layers\"])==30" "$tmp/info.json"'

# tokenize: ids and pieces
printf 'Hello world 123' | "$BIN" tokenize "$MODEL" --ids >"$tmp/ids" 2>/dev/null
check "tokenize ids" '[ "$(tr "\n" " " <"$tmp/ids")" = "19556 905 216 33 34 35 " ]'
printf 'Hello world' | "$BIN" tokenize "$MODEL" --pieces >"$tmp/pieces" 2>/dev/null
check "tokenize pieces" '[ "$(tr "\n" " " <"$tmp/pieces")" = "Hello Ġworld " ]'

# generate: greedy is deterministic, and the answer is plausible
"$BIN" generate "$MODEL" --chat -p "What is the capital of France?" -n 24 >"$tmp/g1" 2>"$tmp/g1.err"
check "generate exit" '[ $? -eq 0 ]'
check "generate content" 'grep -qi "paris" "$tmp/g1"'
"$BIN" generate "$MODEL" --chat -p "What is the capital of France?" -n 24 >"$tmp/g2" 2>/dev/null
check "greedy deterministic" 'cmp -s "$tmp/g1" "$tmp/g2"'
"$BIN" generate "$MODEL" -p "Once upon a time" -n 16 --temp 0.8 --top-p 0.9 --seed 7 >"$tmp/s1" 2>/dev/null
"$BIN" generate "$MODEL" -p "Once upon a time" -n 16 --temp 0.8 --top-p 0.9 --seed 7 >"$tmp/s2" 2>/dev/null
check "seeded sampling reproducible" 'cmp -s "$tmp/s1" "$tmp/s2"'

# eval: a sensible perplexity on English text, KL of a model against itself is 0
python3 - "$tmp/text.txt" <<'PY'
import sys
p = ("The history of the city begins with a small settlement on the river. Over the centuries, "
     "merchants and craftsmen built houses, markets and churches, and the town grew into a centre of trade. ")
open(sys.argv[1], "w").write(p * 6)
PY
"$BIN" eval "$MODEL" --text "$tmp/text.txt" --ctx 64 --ref "$MODEL" --json >"$tmp/eval.json" 2>/dev/null
check "eval exit" '[ $? -eq 0 ]'
check "eval numbers" 'python3 -c "
import json,sys; d=json.load(open(sys.argv[1]))
assert 1.0 < d[\"perplexity\"] < 60, d
assert d[\"kl\"] < 1e-9 and d[\"top1_agreement\"] == 1.0, d
" "$tmp/eval.json"'

# bad input: one clear line, non-zero exit
head -c 100000 "$MODEL" >"$tmp/trunc.gguf"
"$BIN" info "$tmp/trunc.gguf" >"$tmp/o" 2>"$tmp/e"; rc=$?
check "truncated gguf fails" '[ $rc -ne 0 ] && [ $(wc -l <"$tmp/e") -eq 1 ] && grep -q "trunc.gguf" "$tmp/e"'
"$BIN" generate "$tmp/trunc.gguf" -p hi >"$tmp/o" 2>"$tmp/e"; rc=$?
check "generate on truncated gguf fails" '[ $rc -ne 0 ] && [ $(wc -l <"$tmp/e") -eq 1 ]'
"$BIN" info /nonexistent/model.gguf >"$tmp/o" 2>"$tmp/e"; rc=$?
check "missing file fails" '[ $rc -ne 0 ] && grep -q "/nonexistent/model.gguf" "$tmp/e"'
"$BIN" generate "$MODEL" -p hi -n -3 >"$tmp/o" 2>"$tmp/e"; rc=$?
check "bad -n is a usage error" '[ $rc -eq 2 ]'
"$BIN" frobnicate >"$tmp/o" 2>"$tmp/e"; rc=$?
check "unknown command" '[ $rc -eq 2 ] && grep -q "unknown command" "$tmp/e"'
for c in info generate eval tokenize; do
  "$BIN" $c --help >"$tmp/h" 2>&1
  check "$c --help" '[ $? -eq 0 ] && grep -q "usage: puzzle $c" "$tmp/h"'
done

finish
