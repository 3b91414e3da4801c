#!/usr/bin/env bash
# labels: cpu
# bench/serve_load (the C load generator) against the real `puzzle serve` on a small random
# test model on a free loopback port: levels 1,2 with 2 requests each must give a table with
# both rows, zero errors and nonzero tokens/s; a server that is not there must be reported
# as an error (exit 2), not hang; a fake server's bad streams must be counted as errors.
# The servers are stopped (and killed on exit by lib.sh).
set -u
. "$(dirname "$0")/lib.sh"
MAKE="${PUZZLE_MAKE_TEST_MODEL:?}"
LOAD="${PUZZLE_SERVE_LOAD:-$(dirname "$BIN")/serve_load}"
here="$(cd "$(dirname "$0")" && pwd)"
[ -x "$LOAD" ] || { echo "FAIL: no serve_load binary at $LOAD" >&2; exit 1; }
"$MAKE" "$tmp/tm" --variant 0 --seed 3 --tokenizer "$here/data/smollm2_tokenizer/tokenizer.json" >/dev/null
check "make_test_model" '[ -f "$tmp/tm/config.json" ]'

"$BIN" serve "$tmp/tm" --port 0 --threads 2 --max-seqs 4 --ctx 256 2>"$tmp/server.err" &
srv=$!
port=
for _ in $(seq 300); do  # up to 30 s for the "listening on" line
    port=$(sed -n 's|.*listening on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$tmp/server.err")
    [ -n "$port" ] && break
    kill -0 $srv 2>/dev/null || break
    sleep 0.1
done
check "server listening" '[ -n "$port" ]'
if [ -n "$port" ]; then
    timeout 120 "$LOAD" --url "http://127.0.0.1:$port" --levels 1,2 --requests 2 --max-tokens 16 \
        --label tm --timeout 30 >"$tmp/table.md" 2>"$tmp/load.err"
    rc=$?
    cat "$tmp/table.md" "$tmp/load.err"
    check "serve_load exit 0" '[ $rc -eq 0 ]'
    # | tm | streams | requests | errors | tokens | wall s | tok/s | ...
    for c in 1 2; do
        row=$(grep "^| tm | $c |" "$tmp/table.md")
        check "row for $c streams" '[ -n "$row" ]'
        check "$c streams: 2x$c requests, 0 errors, tokens > 0, tok/s > 0" \
            'echo "$row" | awk -F"|" -v c=$c '"'"'{exit !($4+0 == 2*c && $5+0 == 0 && $6+0 > 0 && $8+0 > 0)}'"'"''
    done
    kill -TERM $srv
    for _ in $(seq 100); do kill -0 $srv 2>/dev/null || break; sleep 0.1; done
    kill -0 $srv 2>/dev/null && kill -9 $srv
    wait $srv 2>/dev/null
    # nothing listens on that port now: an error, reported, bounded by --timeout
    timeout 30 "$LOAD" --url "http://127.0.0.1:$port" --levels 1 --requests 1 --timeout 1 \
        >/dev/null 2>"$tmp/dead.err"
    rc=$?
    check "dead server: exit 2 with a message" '[ $rc -eq 2 ] && grep -q "warm-up" "$tmp/dead.err"'
fi
# a fake server (tests/serve_load_fake.py): a good stream is counted; a non-JSON event, a stream
# without [DONE], a stalled stream (bounded by --timeout 3: a good request, the warm-up
# included, must finish within it even on a loaded machine) and HTTP 500 are errors (exit 1)
for mode in good garbage trunc stall status; do
    # one port file per mode: the background job truncates its file only once it runs, so a
    # shared file could still hold the previous fake server's port when it is first read
    python3 "$here/serve_load_fake.py" $mode >"$tmp/fake.$mode.port" &
    fake=$!
    fport=
    # python may take seconds to start on a loaded machine
    for _ in $(seq 300); do fport=$(head -1 "$tmp/fake.$mode.port"); [ -n "$fport" ] && break; sleep 0.1; done
    timeout 30 "$LOAD" --url "http://127.0.0.1:$fport" --levels 1 --requests 2 --max-tokens 16 \
        --label fake --timeout 3 >"$tmp/fake.md" 2>"$tmp/fake.err"
    rc=$?
    [ $rc -eq 2 ] && cat "$tmp/fake.err" >&2
    row=$(grep "^| fake | 1 |" "$tmp/fake.md")
    if [ $mode = good ]; then
        check "fake good: 2 requests, 6 tokens, 0 errors" \
            '[ $rc -eq 0 ] && echo "$row" | awk -F"|" '"'"'{exit !($4+0 == 2 && $5+0 == 0 && $6+0 == 6)}'"'"''
    else
        check "fake $mode: 0 requests, 2 errors, exit 1" \
            '[ $rc -eq 1 ] && echo "$row" | awk -F"|" '"'"'{exit !($4+0 == 0 && $5+0 == 2)}'"'"''
    fi
    kill $fake
    wait $fake 2>/dev/null
done
finish
