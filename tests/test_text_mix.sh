#!/usr/bin/env bash
# labels: cpu
# scripts/text/mix.pl, the split and the disjointness rule of scripts/fetch_text.sh, on a
# synthetic document stream (no download, no model): three sources, A and B mixed into
# train/calib/eval and U held out whole as eval_unseen. Every document of A carries a
# 90-byte sentence inside an otherwise unique paragraph, and every document of B one
# identical 60-byte paragraph, so whichever documents land in eval share text with train.
# Checked, with the test's own code: the sets are non-empty and hold the sources they
# should; no 64-byte string of eval.txt or eval_unseen.txt occurs in train.txt or
# calib.txt (recomputed over the files as written); the planted sentence and paragraph
# are still in train (only the evaluation side gives way); the first tenth of train.txt
# already holds both A and B (interleaved, not concatenated); the .documents lists
# partition the documents (no document in two sets); a second run is byte-identical;
# a paragraph before any "@@doc" line is refused.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MIX=$ROOT/scripts/text/mix.pl
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

perl -e '
  my $seed = 12345;
  sub rnd { $seed = ($seed * 1103515245 + 12345) % 2147483648; return $seed; }
  sub word { my $p = shift; my $w = $p; $w .= chr(97 + rnd() % 26) for 1 .. 3 + rnd() % 6; return $w; }
  sub para { my ($p, $n) = @_; return join(" ", map { word($p) } 1 .. $n) . "."; }
  my $shared = "the planted sentence that every document of source A repeats word for word in one of its paragraphs";
  my $sharedpara = "an identical paragraph that every document of source B holds";
  for my $d (1 .. 120) {
    print "\@\@doc A doc$d\n";
    print para("al", 20 + rnd() % 30), "\n" for 1 .. 3 + rnd() % 5;
    print para("al", 8), " $shared ", para("al", 8), "\n";
  }
  for my $d (1 .. 80) {
    print "\@\@doc B part/doc$d.html#0\n";
    print para("be", 20 + rnd() % 40), "\n" for 1 .. 2 + rnd() % 6;
    print "$sharedpara\n";
  }
  for my $d (1 .. 300) { print "\@\@doc U cookie#$d\n", para("un", 10 + rnd() % 30), "\n"; }
' > "$W/stream"

mkdir -p "$W/a" "$W/b"
perl "$MIX" "$W/a" U < "$W/stream" || fail "mix.pl failed"
perl "$MIX" "$W/b" U < "$W/stream" || fail "mix.pl failed on the second run"
for f in train.txt calib.txt eval.txt eval_unseen.txt train.documents calib.documents eval.documents \
         eval_unseen.documents stats; do
  cmp -s "$W/a/$f" "$W/b/$f" || fail "$f differs between two runs"
done
cd "$W/a"
for s in train calib eval eval_unseen; do [ -s $s.txt ] || fail "$s.txt is empty"; done
grep -q '\bun[a-z]' train.txt calib.txt eval.txt && fail "the unseen source leaked into a mixed set"
grep -q '\b\(al\|be\)[a-z]' eval_unseen.txt && fail "a mixed source is in eval_unseen"
for s in train calib eval; do
  grep -q '\bal[a-z]' $s.txt && grep -q '\bbe[a-z]' $s.txt || fail "$s.txt does not hold both A and B"
done
grep -q 'the planted sentence that every document' train.txt || fail "the planted sentence left train"
grep -q '^an identical paragraph that every document of source B holds$' train.txt \
  || fail "the planted paragraph left train"
grep -q 'the planted sentence that every document' eval.txt && fail "eval shares the planted sentence"
grep -q '^an identical paragraph that every document' eval.txt calib.txt && fail "the planted paragraph is in eval/calib"
grep -q '^dropped eval shared-64-byte-window [1-9]' stats || fail "stats record no dropped eval paragraph: $(cat stats)"

# interleaving: both mixed sources within the first tenth of train.txt
n=$(stat -c %s train.txt)
head -c $((n / 10)) train.txt > head
grep -q '\bal[a-z]' head && grep -q '\bbe[a-z]' head || fail "the first tenth of train.txt lacks a source"

# the document lists partition the documents
cat train.documents calib.documents eval.documents eval_unseen.documents | sort > all
[ -z "$(uniq -d all)" ] || fail "a document is in two sets: $(uniq -d all | head -n3)"
[ "$(grep -c '^U ' eval_unseen.documents)" -gt 0 ] || fail "eval_unseen.documents lists no U document"

# independent recomputation of the disjointness over the files as written
perl -e '
  my %w; local $/;
  for my $f ("eval.txt", "eval_unseen.txt") { open my $h, "<", $f or die; my $t = <$h>;
    $w{substr($t, $_, 64)} = $f for 0 .. length($t) - 64; }
  for my $f ("train.txt", "calib.txt") { open my $h, "<", $f or die; my $t = <$h>;
    for (0 .. length($t) - 64) { my $v = $w{substr($t, $_, 64)};
      if ($v) { print "$v shares a 64-byte string with $f\n"; exit 1; } } }' || fail "disjointness"

# bad input: one line, non-zero exit
printf 'a paragraph without a document\n' > bad
if perl "$MIX" "$W/b" U < bad 2> err; then fail "a stream without @@doc was accepted"; fi
[ "$(wc -l < err)" = 1 ] || fail "bad input gave $(wc -l < err) lines"
echo "test_text_mix: ok"
