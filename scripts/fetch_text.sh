#!/usr/bin/env bash
# Fetches real English prose for calibration, training and evaluation: the
# reStructuredText sources of the Python 3.11 documentation (tutorial, HOWTOs,
# language and library reference, FAQ, "What's New"), shipped in the Debian
# package python3.11-doc (PSF license). It downloads the package with
# `apt-get download` (nothing is installed), unpacks it with dpkg-deb into a
# temporary folder, turns each document into plain text (markup stripped,
# code listings, doctests, tables and index entries dropped, one paragraph per
# line, paragraphs separated by a blank line), and splits the documents
# deterministically into three sets that share no document and no paragraph:
#
#   ${PUZZLE_CACHE:-$HOME/.cache/puzzle}/text/train.txt   (the rest, ~6 MB)
#   ${PUZZLE_CACHE:-$HOME/.cache/puzzle}/text/calib.txt   (~0.5 MB)
#   ${PUZZLE_CACHE:-$HOME/.cache/puzzle}/text/eval.txt    (~150 KB)
#
# Split rule (see docs/DATA.md): documents are ordered by the sha256 of their
# path relative to html/_sources (e.g. "tutorial/classes.rst.txt"); walking
# that order, a document goes to eval while eval holds < 150,000 bytes and the
# document keeps it <= 200,000; otherwise to calib while calib holds < 500,000
# bytes and the document keeps it <= 600,000; otherwise to train. Each set is
# then written in path order (LC_ALL=C). Finally any paragraph of >= 40 bytes
# that also occurs in train is removed from calib and eval, and any that also
# occurs in calib is removed from eval, so no passage is shared.
#
# Idempotent: when the three files exist and match the sizes and sha256 in
# text/MANIFEST, nothing is done. Needs: apt-get (with network access to the
# Debian archive), dpkg-deb, perl (perl-base), coreutils. Run as root (apt-get
# update is run when the package is unknown). Prints the paths and sizes.
set -euo pipefail

CACHE="${PUZZLE_CACHE:-$HOME/.cache/puzzle}"
OUT="$CACHE/text"
PKG=python3.11-doc
PIN_VERSION="3.11.2-6+deb12u9"     # the version docs/DATA.md describes
SETS="train calib eval"

die() { echo "fetch_text: error: $*" >&2; exit 1; }
trap 'echo "fetch_text: error: command failed (line $LINENO): $BASH_COMMAND" >&2' ERR

print_outputs() {
  for s in $SETS; do
    printf '%s\t%s bytes\n' "$OUT/$s.txt" "$(stat -c %s "$OUT/$s.txt")"
  done
}

# --- idempotency: outputs present and matching the manifest -> done ---------
if [ -f "$OUT/MANIFEST" ]; then
  ok=1
  for s in $SETS; do
    f="$OUT/$s.txt"
    line=$(grep "^$s " "$OUT/MANIFEST" || true)
    want_size=$(echo "$line" | awk '{print $2}')
    want_sha=$(echo "$line" | awk '{print $3}')
    if [ ! -f "$f" ] || [ -z "$want_size" ] || [ "$(stat -c %s "$f")" != "$want_size" ]; then
      ok=0; break
    fi
    if [ "$(sha256sum "$f" | awk '{print $1}')" != "$want_sha" ]; then ok=0; break; fi
  done
  if [ "$ok" = 1 ]; then
    echo "fetch_text: up to date ($(grep '^package ' "$OUT/MANIFEST" | cut -d' ' -f2-))" >&2
    print_outputs
    exit 0
  fi
fi

mkdir -p "$OUT" 2>/dev/null && [ -w "$OUT" ] || die "cannot create or write $OUT (set PUZZLE_CACHE)"
for tool in apt-get apt-cache dpkg-deb perl sha256sum find sort awk; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (a Debian system with apt is required)"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

# --- download the package (pinned version first, else the candidate) --------
if ! apt-cache show "$PKG" >/dev/null 2>&1; then
  echo "fetch_text: $PKG unknown to apt; running apt-get update" >&2
  apt-get update -qq >&2 || die "apt-get update failed (are you root, is the Debian archive reachable?)"
fi
apt-cache show "$PKG" >/dev/null 2>&1 || die "package $PKG not found in the apt sources (Debian 12 'bookworm' ships it)"
mkdir -p "$tmp/deb"
chown _apt "$tmp/deb" 2>/dev/null || true
cd "$tmp/deb"
if apt-get download -qq "$PKG=$PIN_VERSION" >&2 2>/dev/null; then
  :
elif apt-get update -qq >&2 && apt-get download -qq "$PKG=$PIN_VERSION" >&2 2>/dev/null; then
  :   # the package lists were stale
else
  echo "fetch_text: warning: $PKG=$PIN_VERSION not available; using the candidate version" \
       "(the files will differ from the sha256 recorded in docs/DATA.md)" >&2
  apt-get download -qq "$PKG" >&2 || die "apt-get download $PKG failed"
fi
cd - >/dev/null
deb=$(ls "$tmp"/deb/*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || die "no .deb downloaded"
version=$(dpkg-deb -f "$deb" Version)
deb_sha=$(sha256sum "$deb" | awk '{print $1}')
echo "fetch_text: extracting $PKG $version" >&2
dpkg-deb -x "$deb" "$tmp/x" || die "dpkg-deb -x failed on $deb"
SRC=$(ls -d "$tmp"/x/usr/share/doc/python3.*/html/_sources 2>/dev/null | head -n1)
[ -n "$SRC" ] && [ -d "$SRC" ] || die "no html/_sources folder in $deb"

# --- reStructuredText -> plain text, one output file per document ----------
mkdir -p "$tmp/docs"
cat > "$tmp/rst2txt.pl" <<'PERL'
# Light reST stripping: reads one .rst.txt on stdin, writes paragraphs (one per
# line, separated by blank lines) on stdout. Byte-oriented; UTF-8 passes through.
use strict; use warnings;
my %keep = map { $_ => 1 } qw(
  note warning seealso important tip caution attention danger admonition hint
  impl-detail topic sidebar deprecated deprecated-removed versionadded versionchanged
  function method attribute data class exception decorator decoratormethod
  classmethod staticmethod abstractmethod coroutinefunction coroutinemethod
  describe opcode cmdoption option envvar pdbcommand program object module
  c:function c:member c:type c:macro c:var c:data c:struct c:union c:enum);
my @lines = <STDIN>;
for (@lines) { s/\r?\n\z//; 1 while s/\t/' ' x (8 - (length($`) % 8))/e; s/\s+\z//; }
push @lines, '';
my (@para, $para_indent, @out);
my $skip_above = -1;        # skip lines indented more than this (and blanks)
my $skip_until_blank = 0;   # skip up to the next blank line
my $in_table = 0;           # inside a simple (=== ===) table
my $literal_pending = -1;   # a paragraph ended with "::" at this indent
sub indent_of { $_[0] =~ /^( *)/; return length $1; }
my %label;                  # cross-reference label -> section title
if (@ARGV && $ARGV[0] eq '--labels') {     # mode 1: print "label<TAB>title"
  shift @ARGV;
  for my $f (@ARGV) {
    open my $fh, '<', $f or die "$f: $!";
    my @L = map { s/\r?\n\z//r =~ s/\s+\z//r } <$fh>;
    for my $i (0 .. $#L) {
      next unless $L[$i] =~ /^\s*\.\. _([^:`]+):$/;
      my $lab = lc $1; my $j = $i + 1;
      $j++ while $j < @L && ($L[$j] eq '' || $L[$j] =~ /^\s*\.\. _[^:]+:$/ || $L[$j] =~ /^([=\-~^"'`#*+<>_:.!])\1{2,}$/);
      next unless $j + 1 < @L && $L[$j + 1] =~ /^([=\-~^"'`#*+<>_:.!])\1{2,}$/ && $L[$j] =~ /\S/;
      (my $t = $L[$j]) =~ s/^\s+//;
      print "$lab\t$t\n";
    }
  }
  exit 0;
}
if (@ARGV && $ARGV[0] eq '--label-file') {
  open my $fh, '<', $ARGV[1] or die "$ARGV[1]: $!";
  while (<$fh>) { chomp; my ($k, $v) = split /\t/, $_, 2; $label{$k} //= $v; }
  splice @ARGV, 0, 2;
}
sub role_text {
  my ($role, $t) = @_;
  return $1 if $t =~ /^(.*?)\s*<[^<>]*>$/s && $1 ne '';
  my $tilde = ($t =~ /^[!]?~/);
  $t =~ s/^[!~]+//;
  return "PEP $t" if $role eq 'pep';
  return "RFC $t" if $role eq 'rfc';
  if ($role eq 'ref') {
    my $title = $label{lc $t};
    return defined $title ? inline($title) : ($t =~ tr/-_/  /r);
  }
  return ($t =~ s{^.*/}{}r) if $role eq 'doc';
  $t =~ s/^.*\.(?=[^.]+$)// if $tilde;
  return $t;
}
sub inline {
  my $t = shift;
  $t =~ s/\\ //g;
  $t =~ s/:(?:[\w.+-]+:)*([\w.+-]+):`([^`]+)`/role_text($1, $2)/ge;
  $t =~ s/``(.+?)``/$1/g;
  $t =~ s/`([^`]+?)\s*<[^<>`]+>`__?/$1/g;
  $t =~ s/`([^`]+)`__?/$1/g;
  $t =~ s/`([^`]+)`/$1/g;
  $t =~ s/\s*\[(?:#\w*|\d+)\]_//g;
  $t =~ s/\*\*(\S(?:.*?\S)?)\*\*/$1/g;
  $t =~ s/(?<![\w*\\])\*(\S(?:[^*]*?\S)?)\*(?![\w*])/$1/g;
  $t =~ s/\\([*`_|\\])/$1/g;
  $t =~ s/ {2,}/ /g;
  $t =~ s/^\s+|\s+$//g;
  return $t;
}
sub flush {
  return unless @para;
  my @p = @para; @para = ();
  if ($p[0] =~ /^\s*>>>/) { return; }                  # doctest block
  my $last = $p[-1];
  if ($last =~ /::$/) {                                 # literal block follows
    $literal_pending = $para_indent;
    if ($last =~ /^\s*::$/) { pop @p; }
    elsif ($last =~ /\s::$/) { $p[-1] =~ s/\s*::$//; }
    else { $p[-1] =~ s/::$/:/; }
    return unless @p;
  }
  my $t = inline(join ' ', map { my $x = $_; $x =~ s/^\s+//; $x } @p);
  return if $t eq '';
  my $letters = () = $t =~ /[A-Za-z]/g;
  return if $letters < 0.5 * length($t);               # code or symbols, not prose
  push @out, $t;
}
for (my $i = 0; $i < @lines; $i++) {
  my $l = $lines[$i];
  my $blank = ($l eq '');
  if ($skip_until_blank) { if ($blank) { $skip_until_blank = 0; } next; }
  if ($skip_above >= 0) {
    next if $blank || indent_of($l) > $skip_above;
    $skip_above = -1;
  }
  if ($in_table) {
    if ($l =~ /^\s*=+( +=+)*$/ && ($i + 1 >= @lines || $lines[$i + 1] eq '')) { $in_table = 0; }
    next;
  }
  if ($blank) { flush(); next; }
  my $ind = indent_of($l);
  if ($literal_pending >= 0) {
    my $lp = $literal_pending; $literal_pending = -1;
    if ($ind > $lp) { $skip_above = $lp; next; }
  }
  if ($l =~ /^\s*\.\.(\s|$)/) {                         # explicit markup
    flush();
    if ($l =~ /^\s*\.\.\s+([\w:-]+)::/ && $keep{$1}) {
      $skip_until_blank = 1;                            # signature + options
    } else {
      $skip_above = $ind;                               # drop the whole block
    }
    next;
  }
  if ($l =~ /^\s*=+( +=+)+$/) {
    flush(); $in_table = 1; next;                       # simple table
  }
  if ($l =~ /^\s*\+[-=+]+\+$/) { flush(); $skip_until_blank = 1; next; }  # grid table
  if ($l =~ /^([=\-~^"'`#*+<>_:.!])\1{2,}$/) { flush(); next; }          # adornment
  if ($l =~ /^\s*:[\w -]+:(\s|$)/ && !@para) { flush(); }                  # field list item
  if ($l =~ /^(\s*)(?:[-*+]|\d+\.|#\.|\(?[a-z0-9]\))\s+\S/ && @para) { flush(); }  # list item
  if (!@para) { $para_indent = $ind; }
  my $x = $l;
  $x =~ s/^(\s*)(?:[-*+]|\d+\.|#\.)\s+(?=\S)/$1/ if !@para;            # drop list markers
  push @para, $x;
}
flush();
print join("\n\n", @out), "\n" if @out;
PERL

cd "$SRC"
find . -type f -name '*.rst.txt' | sed 's|^\./||' | LC_ALL=C sort > "$tmp/files"
cd - >/dev/null
n=$(wc -l < "$tmp/files")
[ "$n" -gt 100 ] || die "only $n documents found under $SRC"
(cd "$SRC" && xargs -d '\n' perl "$tmp/rst2txt.pl" --labels < "$tmp/files") > "$tmp/labels" \
  || die "label extraction failed"
while IFS= read -r rel; do
  mkdir -p "$tmp/docs/$(dirname "$rel")"
  perl "$tmp/rst2txt.pl" --label-file "$tmp/labels" < "$SRC/$rel" > "$tmp/docs/$rel" || die "text extraction failed on $rel"
  size=$(stat -c %s "$tmp/docs/$rel")
  [ "$size" -gt 0 ] || continue
  h=$(printf '%s' "$rel" | sha256sum | awk '{print $1}')
  printf '%s %s %s\n' "$h" "$size" "$rel"
done < "$tmp/files" | LC_ALL=C sort > "$tmp/order"

# --- deterministic split by whole documents ---------------------------------
awk -v dir="$tmp" '
  { h=$1; sz=$2; rel=$3
    if (ev < 150000 && ev + sz <= 200000) { ev += sz; print rel > (dir "/list.eval") }
    else if (ca < 500000 && ca + sz <= 600000) { ca += sz; print rel > (dir "/list.calib") }
    else { print rel > (dir "/list.train") } }' "$tmp/order"
for s in $SETS; do
  [ -s "$tmp/list.$s" ] || die "split produced no documents for $s"
  LC_ALL=C sort "$tmp/list.$s" | while IFS= read -r rel; do
    cat "$tmp/docs/$rel"; printf '\n'
  done > "$tmp/raw.$s"
done

# --- remove shared paragraphs (>= 40 bytes) ---------------------------------
perl -e '
  use strict; use warnings;
  my ($dir) = @ARGV; my %seen; my @dropped;
  for my $s (qw(train calib eval)) {
    open my $in, "<", "$dir/raw.$s" or die; local $/ = ""; my @keep; my $d = 0;
    while (my $p = <$in>) {
      $p =~ s/\n+\z//;
      next if $p eq "";
      if (length($p) >= 40) {
        if ($seen{$p} && $seen{$p} ne $s) { $d++; next; }
        $seen{$p} //= $s;
      }
      push @keep, $p;
    }
    open my $o, ">", "$dir/$s.txt" or die; print $o join("\n\n", @keep), "\n"; close $o or die;
    push @dropped, "$s $d";
  }
  open my $o, ">", "$dir/dropped" or die; print $o "shared paragraphs removed: @dropped\n";' "$tmp" \
  || die "de-duplication failed"

{
  echo "package $PKG $version deb-sha256 $deb_sha"
  cat "$tmp/dropped"
  echo "documents $(wc -l < "$tmp/order") eval $(wc -l < "$tmp/list.eval") calib $(wc -l < "$tmp/list.calib") train $(wc -l < "$tmp/list.train")"
  for s in $SETS; do
    echo "$s $(stat -c %s "$tmp/$s.txt") $(sha256sum "$tmp/$s.txt" | awk '{print $1}')"
  done
} > "$tmp/MANIFEST"
for s in $SETS; do cp "$tmp/list.$s" "$OUT/$s.documents"; mv "$tmp/$s.txt" "$OUT/$s.txt.part"; mv "$OUT/$s.txt.part" "$OUT/$s.txt"; done
mv "$tmp/MANIFEST" "$OUT/MANIFEST"
echo "fetch_text: $PKG $version -> $OUT" >&2
print_outputs
