#!/usr/bin/env bash
# labels: cpu model
# `puzzle eval --protocol llama-perplexity` follows llama.cpp's
# llama-perplexity: whole chunks of --ctx tokens only, at least 2 x ctx
# tokens, the second half of each chunk scored (ctx/2 - 1 predictions per
# chunk), --chunks caps the count. Agreement with llama.cpp itself is shown by
# tests/interop/perplexity.sh (it builds llama.cpp; not run here).
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
need_model

"$MAKE" "$tmp/m" --variant 0 --seed 5 --tokenizer "$MODEL" >/dev/null
for i in $(seq 1 40); do printf 'Line %d: the quick brown fox jumps over the lazy dog.\n' "$i"; done >"$tmp/text.txt"
n_tok=$("$BIN" tokenize "$tmp/m" --ids <"$tmp/text.txt" 2>/dev/null | wc -l)
field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" "$1"; }

"$BIN" eval "$tmp/m" --text "$tmp/text.txt" --ctx 32 --protocol llama-perplexity --json >"$tmp/a.json" 2>"$tmp/e"
check "llama-perplexity exits 0" '[ $? -eq 0 ]' || cat "$tmp/e" >&2
want=$(( n_tok / 32 * 15 ))
check "whole chunks, second half scored ($n_tok tokens -> $want)" '[ "$(field "$tmp/a.json" tokens_scored)" = "$want" ]'
check "protocol recorded" 'grep -q "\"protocol\":\"llama-perplexity\"" "$tmp/a.json"'
"$BIN" eval "$tmp/m" --text "$tmp/text.txt" --ctx 32 --protocol llama-perplexity --chunks 2 --json >"$tmp/b.json" 2>/dev/null
check "--chunks 2 scores 2 x 15" '[ "$(field "$tmp/b.json" tokens_scored)" = 30 ]'
"$BIN" eval "$tmp/m" --text "$tmp/text.txt" --ctx 32 --json >"$tmp/w.json" 2>/dev/null
check "the default protocol scores every position" \
    '[ "$(field "$tmp/w.json" tokens_scored)" = "$(( n_tok - (n_tok + 31) / 32 ))" ]'
check "the protocols differ" '[ "$(field "$tmp/w.json" perplexity)" != "$(field "$tmp/a.json" perplexity)" ]'

# Each chunk starts from an empty cache and sees only its own tokens: text
# appended after the first chunk leaves a one-chunk result unchanged.
head -c 2000 "$tmp/text.txt" >"$tmp/short.txt"
"$BIN" eval "$tmp/m" --text "$tmp/short.txt" --ctx 32 --protocol llama-perplexity --chunks 1 --json >"$tmp/s1.json" 2>/dev/null
"$BIN" eval "$tmp/m" --text "$tmp/text.txt" --ctx 32 --protocol llama-perplexity --chunks 1 --json >"$tmp/s2.json" 2>/dev/null
check "a chunk's score depends on that chunk only" '[ -n "$(field "$tmp/s1.json" nll)" ] && [ "$(field "$tmp/s1.json" nll)" = "$(field "$tmp/s2.json" nll)" ]'

printf 'Too short.\n' >"$tmp/tiny.txt"
"$BIN" eval "$tmp/m" --text "$tmp/tiny.txt" --ctx 32 --protocol llama-perplexity >"$tmp/o" 2>"$tmp/e"; rc=$?
check "fewer than 2 x ctx tokens refused" '[ $rc -ne 0 ] && grep -q "at least 64 tokens" "$tmp/e"'
"$BIN" eval "$tmp/m" --text "$tmp/text.txt" --chunks 2 >"$tmp/o" 2>"$tmp/e"; rc=$?
check "--chunks without the protocol is a usage error" '[ $rc -eq 2 ] && grep -q "llama-perplexity" "$tmp/e"'
"$BIN" eval "$tmp/m" --text "$tmp/text.txt" --protocol nope >"$tmp/o" 2>"$tmp/e"; rc=$?
check "unknown protocol is a usage error" '[ $rc -eq 2 ]'
echo "tokens $n_tok; nll $(field "$tmp/s1.json" nll) / $(field "$tmp/s2.json" nll); scored $(field "$tmp/a.json" tokens_scored)"
finish
