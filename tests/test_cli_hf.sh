#!/usr/bin/env bash
# labels: cpu model
# GGUF and Hugging Face directories are interchangeable: the reference parent
# converted to a DeciLM directory evaluates to the same distributions as the
# GGUF, and a random heterogeneous test model (every sub-block kind) runs
# through every command.
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
need_model

printf 'The quick brown fox jumps over the lazy dog. In 1905, Einstein published four papers.\n' >"$tmp/t.txt"
for i in 1 2 3; do cat "$tmp/t.txt"; done >"$tmp/text.txt"

# The parent as an f32 DeciLM directory: same logits as the GGUF (KL ~ 0).
"$BIN" convert "$MODEL" --out "$tmp/parent_hf" --dtype f32 2>"$tmp/e"
check "convert exit" '[ $? -eq 0 ] && [ -f "$tmp/parent_hf/config.json" ] && [ -f "$tmp/parent_hf/tokenizer.json" ]'
check "config is DeciLM" 'grep -q block_configs "$tmp/parent_hf/config.json"'
"$BIN" info "$tmp/parent_hf" >"$tmp/info" 2>&1
check "info on HF dir" 'grep -q "30 layers, hidden 576, 9 query heads x 64, vocab 49152" "$tmp/info"'
"$BIN" eval "$tmp/parent_hf" --ref "$MODEL" --text "$tmp/text.txt" --ctx 32 --json >"$tmp/ev.json" 2>"$tmp/e"
check "HF dir equals GGUF" 'python3 -c "
import json,sys; d=json.load(open(sys.argv[1]))
assert d[\"kl\"] < 1e-6 and d[\"top1_agreement\"] == 1.0, d
assert abs(d[\"perplexity\"] - d[\"ref_perplexity\"]) < 1e-4 * d[\"perplexity\"], d
" "$tmp/ev.json"'
printf 'Hello world 123' | "$BIN" tokenize "$tmp/parent_hf" --ids >"$tmp/ids" 2>/dev/null
check "tokenizer.json tokenizes like GGUF" '[ "$(tr "\n" " " <"$tmp/ids")" = "19556 905 216 33 34 35 " ]'

# A heterogeneous random model with the real tokenizer runs through every command.
"$MAKE" "$tmp/hetero" --variant 0 --seed 3 --tokenizer "$MODEL" >/dev/null
check "make_test_model" '[ -f "$tmp/hetero/config.json" ]'
"$BIN" info "$tmp/hetero" >"$tmp/hinfo" 2>&1
check "info shows linear and noop blocks" 'grep -q linear "$tmp/hinfo" && grep -q noop "$tmp/hinfo" && grep -q "gqa(kv=1)" "$tmp/hinfo"'
"$BIN" generate "$tmp/hetero" -p "Hello" -n 8 >"$tmp/g" 2>"$tmp/ge"
check "generate on hetero" '[ $? -eq 0 ] && grep -q "generated 8 tokens" "$tmp/ge"'
"$BIN" eval "$tmp/hetero" --ref "$tmp/hetero" --text "$tmp/text.txt" --ctx 16 --json >"$tmp/hev.json" 2>/dev/null
check "eval hetero vs itself" 'python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); assert d[\"kl\"] < 1e-9 and d[\"top1_agreement\"] == 1.0, d
" "$tmp/hev.json"'
"$BIN" eval "$tmp/hetero" --ref "$MODEL" --text "$tmp/text.txt" --ctx 16 --json >"$tmp/x.json" 2>/dev/null
check "random model is far from the parent" 'python3 -c "
import json,sys; d=json.load(open(sys.argv[1])); assert d[\"kl\"] > 0.5, d
" "$tmp/x.json"'

# A broken config.json is one clear error.
cp -r "$tmp/hetero" "$tmp/broken"
printf '{"hidden_size": 64, "num_hidden_layers": 2' >"$tmp/broken/config.json"
"$BIN" info "$tmp/broken" >"$tmp/o" 2>"$tmp/e"; rc=$?
check "broken config fails cleanly" '[ $rc -ne 0 ] && [ $(wc -l <"$tmp/e") -eq 1 ] && grep -q config.json "$tmp/e"'

finish
