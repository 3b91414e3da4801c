#!/usr/bin/env bash
# make_chat_text.sh — the parent's own chat answers as one more source of the text mix.
# A chat model's child should be distilled on what a chat model says, not only on
# documentation: this serves PARENT with `puzzle serve`, sends every prompt of
# scripts/chat_gen_prompts.txt as a ChatML user turn (/v1/chat/completions; SAMPLES answers
# per prompt, sampled at TEMP / TOP_P with seeds 1..SAMPLES, at most MAX_TOKENS tokens
# each, JOBS requests in flight), writes the answers as the document stream that
# scripts/text/mix.pl reads to $PUZZLE_CACHE/text/chat.stream (one document per prompt:
# the prompt, then the answers' paragraphs), and reruns scripts/fetch_text.sh, which
# then mixes it into train/calib/eval (the prompts of eval are not in train or calib).
# Not part of CI (scripts/test.sh): the pipeline and the demo run it; the mix works
# without it. Output is bitwise reproducible for the same parent, prompts, settings and
# ISA level of the CPU kernels (the serving engine's logits are batch-invariant).
#
# usage: scripts/make_chat_text.sh PARENT
#   env: SAMPLES (1), TEMP (0.7), TOP_P (0.9), MAX_TOKENS (128), JOBS (16), THREADS (2),
#        BUILD (build), PROMPTS (scripts/chat_gen_prompts.txt), FORCE (1: regenerate anyway)
# Needs curl and jq (scripts/install_deps.sh). Idempotent: when chat.stream exists and its
# header names the same parent, prompts and settings, only fetch_text.sh runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PARENT=${1:?usage: make_chat_text.sh PARENT}
CACHE=${PUZZLE_CACHE:-$HOME/.cache/puzzle}
SAMPLES=${SAMPLES:-1}
TEMP=${TEMP:-0.7}
TOP_P=${TOP_P:-0.9}
MAX_TOKENS=${MAX_TOKENS:-128}
JOBS=${JOBS:-16}
THREADS=${THREADS:-2}
BUILD=${BUILD:-build}
PROMPTS=${PROMPTS:-scripts/chat_gen_prompts.txt}
OUTF=$CACHE/text/chat.stream
die() { echo "make_chat_text: error: $*" >&2; exit 1; }
for t in curl jq; do command -v $t >/dev/null || die "'$t' not found (scripts/install_deps.sh)"; done
[ -x "$BUILD/puzzle" ] || die "$BUILD/puzzle not built"
[ -f "$PARENT" ] || [ -d "$PARENT" ] || die "no parent model at $PARENT"
mkdir -p "$CACHE/text"

psha=$(if [ -d "$PARENT" ]; then cat "$PARENT"/*; else cat "$PARENT"; fi | sha256sum | cut -c1-16)
key="parent $psha prompts $(sha256sum "$PROMPTS" | cut -c1-16) samples $SAMPLES temp $TEMP top_p $TOP_P max_tokens $MAX_TOKENS"
if [ "${FORCE:-0}" != 1 ] && [ -f "$OUTF" ] && [ "$(head -n1 "$OUTF")" = "# $key" ]; then
    echo "make_chat_text: $OUTF is up to date" >&2
    exec bash scripts/fetch_text.sh
fi

tmp=$(mktemp -d)
srv=
cleanup() { [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
OMP_WAIT_POLICY=passive "$BUILD/puzzle" serve "$PARENT" --port 0 --threads "$THREADS" \
    --max-seqs "$JOBS" --timeout 600 2>"$tmp/serve.log" &
srv=$!
port=
for _ in $(seq 600); do
    port=$(sed -n 's/.*listening on http:\/\/[^ ]*:\([0-9]*\) .*/\1/p' "$tmp/serve.log")
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$srv" 2>/dev/null || { cat "$tmp/serve.log" >&2; die "puzzle serve exited"; }
    sleep 0.5
done
[ -n "$port" ] || die "puzzle serve did not start"

grep -v -e '^#' -e '^[[:space:]]*$' "$PROMPTS" > "$tmp/prompts"
n=$(wc -l < "$tmp/prompts")
[ "$n" -ge 100 ] || echo "make_chat_text: warning: only $n prompts" >&2
echo "make_chat_text: $n prompts x $SAMPLES samples, temperature $TEMP, top-p $TOP_P," \
     "<= $MAX_TOKENS tokens, on port $port" >&2
ask() {   # ask INDEX SEED: one answer into $tmp/a.INDEX.SEED
    local i=$1 s=$2 p
    p=$(sed -n "${i}p" "$tmp/prompts")
    jq -n --arg p "$p" --argjson t "$TEMP" --argjson tp "$TOP_P" --argjson m "$MAX_TOKENS" --argjson s "$s" \
        '{model: "parent", messages: [{role: "user", content: $p}], temperature: $t, top_p: $tp,
          max_tokens: $m, seed: $s}' |
    curl -sf --max-time 900 -H 'Content-Type: application/json' --data-binary @- \
        "http://127.0.0.1:$port/v1/chat/completions" | jq -r '.choices[0].message.content' > "$tmp/a.$i.$s.part" &&
    mv "$tmp/a.$i.$s.part" "$tmp/a.$i.$s"
}
export -f ask; export tmp port TEMP TOP_P MAX_TOKENS
t0=$(date +%s)
for i in $(seq "$n"); do for s in $(seq "$SAMPLES"); do echo "$i $s"; done; done |
    xargs -P "$JOBS" -n 2 bash -c 'ask "$0" "$1"' || die "some requests failed (see above)"
{
    echo "# $key"
    for i in $(seq "$n"); do
        printf '@@doc chat prompt-%03d\n' "$i"
        sed -n "${i}p" "$tmp/prompts"
        for s in $(seq "$SAMPLES"); do
            [ -f "$tmp/a.$i.$s" ] || die "no answer for prompt $i sample $s"
            # one paragraph per line; the stream reserves lines starting with "@@doc "
            grep -v -e '^[[:space:]]*$' -e '^@@doc ' "$tmp/a.$i.$s" | sed 's/[[:space:]]*$//' || true
        done
    done
} > "$OUTF.part"
mv "$OUTF.part" "$OUTF"
echo "make_chat_text: $(grep -vc -e '^@@doc' -e '^#' "$OUTF") paragraphs, $(stat -c %s "$OUTF") bytes" \
     "in $(( $(date +%s) - t0 )) s -> $OUTF" >&2
bash scripts/fetch_text.sh
