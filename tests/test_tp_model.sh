#!/usr/bin/env bash
# labels: cpu model
# `--tp` on the reference parent (SmolLM2-135M: 9 query heads, 3 KV heads,
# so tp 3 holds 3 query heads and 1 KV head per rank): `mpirun -np 3` of
# `puzzle generate` at temperature 0 prints the same text as one process,
# `puzzle eval` the same perplexity within 1e-5 (fp32 weights: only the
# order of the sums differs), and `puzzle serve --tp 3` answers a greedy
# completion with that text. Bad setups fail with clear messages: tp not
# dividing the heads, mpirun's process count != --tp, --tp without mpirun,
# several processes without --tp. 3 ranks on 2 cores: one thread each.
set -u
. "$(dirname "$0")/lib.sh"
need_model
command -v mpirun >/dev/null || { echo "skip: mpirun not installed (openmpi-bin; scripts/install_deps.sh)"; exit 77; }
cd "$tmp" || exit 1
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
MPI=(mpirun --oversubscribe)
[ "$(id -u)" -eq 0 ] && MPI+=(--allow-run-as-root)
MPI+=(-x ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0)
P="The capital of France is"
"$BIN" generate "$MODEL" -p "$P" -n 6 --threads 1 >one.txt 2>/dev/null
"${MPI[@]}" -np 3 "$BIN" generate "$MODEL" -p "$P" -n 6 --threads 1 --tp 3 >three.txt 2>err3; rc=$?
check "generate --tp 3 under mpirun -np 3 runs" '[ $rc -eq 0 ]'
[ $rc -eq 0 ] || cat err3 >&2
check "generate --tp 3 prints the one-process text" '[ -s one.txt ] && cmp -s one.txt three.txt'
echo "one: $(head -c 80 one.txt | tr '\n' ' ')| tp3: $(head -c 80 three.txt | tr '\n' ' ')"

for i in $(seq 1 12); do printf 'Line %d: the quick brown fox jumps over the lazy dog.\n' "$i"; done >text.txt
"$BIN" eval "$MODEL" --text text.txt --ctx 32 --max-tokens 64 --threads 1 --json >e1.json 2>/dev/null
"${MPI[@]}" -np 3 "$BIN" eval "$MODEL" --text text.txt --ctx 32 --max-tokens 64 --threads 1 --json --tp 3 \
    >e3.json 2>/dev/null; rc=$?
nll() { sed -n 's/.*"nll":\([-0-9.e]*\).*/\1/p' "$1"; }
a=$(nll e1.json) b=$(nll e3.json)
echo "eval nll: one $a, tp3 $b"
check "eval --tp 3: the same NLL within 1e-5" \
    '[ $rc -eq 0 ] && [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" "BEGIN{d=a-b; if(d<0)d=-d; exit !(d<=1e-5*a)}"'

# serve: rank 0 answers on HTTP, the other ranks follow; SIGTERM to mpirun drains.
"${MPI[@]}" -np 3 "$BIN" serve "$MODEL" --tp 3 --port 0 --threads 1 --max-seqs 2 --ctx 128 >slog 2>&1 &
spid=$!
port=""
for i in $(seq 1 120); do
  port=$(sed -n 's/.*listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' slog | head -1)
  [ -n "$port" ] && grep -q "ready in" slog && break
  sleep 0.5
done
resp=$(curl -s --max-time 60 "http://127.0.0.1:${port:-1}/v1/completions" \
    -d "{\"prompt\":\"$P\",\"max_tokens\":6,\"temperature\":0}")
kill -TERM $spid 2>/dev/null
wait $spid 2>/dev/null
want=$(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read().rstrip("\n")))' one.txt)
check "serve --tp 3 answers with the one-process text" 'echo "$resp" | grep -qF "\"text\":$want"'
check "serve --tp 3 says it is tensor parallel and drains" \
    'grep -q "tensor parallel over 3 ranks (mpi)" slog && grep -q "drained" slog'
[ -n "$resp" ] || cat slog >&2

"$BIN" generate "$MODEL" -p "$P" -n 2 --tp 3 >/dev/null 2>e1
check "--tp without mpirun is refused" '[ $? -ne 0 ] && grep -q "start it with mpirun -np 3" e1'
"${MPI[@]}" -np 2 "$BIN" generate "$MODEL" -p "$P" -n 2 --threads 1 --tp 2 >/dev/null 2>e2
check "--tp 2 on 9 query heads is refused" '[ $? -ne 0 ] && grep -q "9 query heads do not split evenly over 2" e2'
"${MPI[@]}" -np 2 "$BIN" generate "$MODEL" -p "$P" -n 2 --threads 1 --tp 3 >/dev/null 2>e3
check "--tp 3 under mpirun -np 2 is refused" '[ $? -ne 0 ] && grep -q "launcher started 2 processes" e3'
"${MPI[@]}" -np 2 "$BIN" generate "$MODEL" -p "$P" -n 2 --threads 1 >/dev/null 2>e4
check "two processes without --tp are refused" '[ $? -ne 0 ] && grep -q "without --tp" e4'
finish
