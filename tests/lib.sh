# lib.sh — sourced by the shell tests: the binary under test, the reference
# parent, a temporary folder removed on exit (with any background job), and
# pass/fail counting that ends in the "N passed, N failed" line.
BIN="${PUZZLE_BIN:?run the shell tests through ctest, which sets PUZZLE_BIN}"
MODEL="${PUZZLE_MODEL:-}"
tmp=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
# check NAME 'shell condition' — the condition is evaluated in the caller's scope.
check() { if eval "$2"; then ok; else bad "$1"; fi; }
# Exit 77 (ctest: skipped) when the reference parent has not been fetched.
need_model() {
  [ -f "$MODEL" ] || { echo "skip: reference parent not fetched (scripts/fetch_model.sh)"; exit 77; }
}
finish() {
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]
}
