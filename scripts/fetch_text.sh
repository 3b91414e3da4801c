#!/usr/bin/env bash
# Fetches the English text that every stage trains, calibrates and evaluates
# on: a broad mix of documentation of different kinds, each from a Debian
# package fetched with `apt-get download` (nothing is installed) and unpacked
# with dpkg-deb into a temporary folder, turned into plain prose (markup,
# code listings, tables and navigation dropped; one paragraph per line,
# paragraphs separated by a blank line), and split by whole sections into
# sets that share no 64-byte string with the evaluation sets:
#
#   ${PUZZLE_CACHE:-$HOME/.cache/puzzle}/text/train.txt        distillation (~6 MB)
#   .../text/calib.txt        BLD (build-library) and replace-1-block scoring (~0.5 MB)
#   .../text/eval.txt         held-out text of the same mix, used by no stage (~0.2 MB)
#   .../text/eval_unseen.txt  a whole package no stage sees: fortune cookies (quotations,
#                             literature, humour; ~150 KB)
#
# Sources (kind): python3.11-doc (reference and tutorial, reST), debian-reference-en
# (user guide), debian-handbook (administrator's handbook), debian-faq (FAQ),
# bash-doc / autoconf-doc / gnu-standards (GNU manuals), git-doc (manual pages),
# postgresql-doc-15 (database manual); fortunes only for eval_unseen. When
# text/chat.stream exists (made by scripts/make_chat_text.sh: the parent's own
# answers to the chat prompts of scripts/chat_gen_prompts.txt), it is one more source
# of the mix. Rules, versions, licenses and hashes: docs/DATA.md.
#
# Each set interleaves its sources evenly from the first byte (stages read the
# first N tokens of a file). Idempotent: when text/MANIFEST is of this mix
# version, names the same chat.stream, and the four files match its sizes and
# sha256, nothing is done. Needs apt-get (network access to the Debian
# archive), dpkg-deb, perl (perl-base), coreutils; run as root (apt-get update
# is run when a package is unknown). Prints the paths and sizes.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE="${PUZZLE_CACHE:-$HOME/.cache/puzzle}"
OUT="$CACHE/text"
MIX_VERSION=2                      # bump when the sources or the rules change
SETS="train calib eval eval_unseen"
UNSEEN=fortunes
# source name, Debian package, pinned version (what docs/DATA.md describes)
PACKAGES="
python            python3.11-doc       3.11.2-6+deb12u9
debian-reference  debian-reference-en  2.100
debian-handbook   debian-handbook      11.20220922
debian-faq        debian-faq           11.1
bash-manual       bash-doc             5.2.15-2
autoconf-manual   autoconf-doc         2.71-3
gnu-standards     gnu-standards        2022.03.23-0.1
git-manpages      git-doc              1:2.39.5-0+deb12u3
postgresql-manual postgresql-doc-15    15.20-0+deb12u1
fortunes          fortunes             1:1.99.1-7.3
"

die() { echo "fetch_text: error: $*" >&2; exit 1; }
trap 'echo "fetch_text: error: command failed (line $LINENO): $BASH_COMMAND" >&2' ERR

print_outputs() {
  for s in $SETS; do
    printf '%s\t%s bytes\n' "$OUT/$s.txt" "$(stat -c %s "$OUT/$s.txt")"
  done
}
chat_id() { if [ -f "$OUT/chat.stream" ]; then sha256sum "$OUT/chat.stream" | awk '{print $1}'; else echo none; fi; }

# --- idempotency: outputs present and matching the manifest -> done ---------
if [ -f "$OUT/MANIFEST" ] && grep -qx "mix-version $MIX_VERSION" "$OUT/MANIFEST" \
   && grep -qx "chat $(chat_id)" "$OUT/MANIFEST"; then
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
    echo "fetch_text: up to date (mix-version $MIX_VERSION, chat $(chat_id | cut -c1-12))" >&2
    print_outputs
    exit 0
  fi
fi

mkdir -p "$OUT" 2>/dev/null && [ -w "$OUT" ] || die "cannot create or write $OUT (set PUZZLE_CACHE)"
for tool in apt-get apt-cache dpkg-deb perl sha256sum find sort awk; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (a Debian system with apt is required)"
done
for f in rst2txt.pl html2txt.pl fortune2txt.pl mix.pl; do
  [ -f "$HERE/text/$f" ] || die "missing $HERE/text/$f"
done

tmp=$(mktemp -d)
[ -n "${FETCH_TEXT_KEEP:-}" ] || trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

# --- download the packages (pinned versions first, else the candidates) ------
mkdir -p "$tmp/deb" "$tmp/x"
chown _apt "$tmp/deb" 2>/dev/null || true
pinned=$(awk 'NF == 3 {print $2 "=" $3}' <<< "$PACKAGES")
cd "$tmp/deb"
if ! apt-get download -qq $pinned >&2 2>/dev/null; then
  echo "fetch_text: the pinned versions are not all available; running apt-get update" >&2
  apt-get update -qq >&2 || die "apt-get update failed (are you root, is the Debian archive reachable?)"
  rm -f ./*.deb
  for pv in $pinned; do
    pkg=${pv%%=*}
    apt-cache show "$pkg" >/dev/null 2>&1 || die "package $pkg not found in the apt sources (Debian 12 'bookworm' ships it)"
    if ! apt-get download -qq "$pv" >&2 2>/dev/null; then
      echo "fetch_text: warning: $pv not available; using the candidate version" \
           "(the files will differ from the sha256 recorded in docs/DATA.md)" >&2
      apt-get download -qq "$pkg" >&2 || die "apt-get download $pkg failed"
    fi
  done
fi
cd - >/dev/null
while read -r name pkg ver; do
  [ -n "$name" ] || continue
  deb=$(ls "$tmp/deb/${pkg}_"*.deb 2>/dev/null | head -n1)
  [ -n "$deb" ] || die "no .deb downloaded for $pkg"
  echo "package $name $pkg $(dpkg-deb -f "$deb" Version) deb-sha256 $(sha256sum "$deb" | awk '{print $1}')" \
    >> "$tmp/packages"
  dpkg-deb -x "$deb" "$tmp/x/$name" || die "dpkg-deb -x failed on $deb"
done <<< "$PACKAGES"
[ "$(wc -l < "$tmp/packages")" = "$(echo "$PACKAGES" | grep -c .)" ] || die "not every package was fetched"
echo "fetch_text: extracting $(echo "$PACKAGES" | grep -c .) packages" >&2

# --- every source -> the document stream ("@@doc SOURCE ID", paragraph lines) -
S="$tmp/stream"; : > "$S"
X="$tmp/x"
html() {   # html SOURCE ROOT FILE...: regular files only (the FAQ has symlinked duplicates)
  local src=$1 root=$2; shift 2
  local files=()
  for f in "$@"; do [ -f "$f" ] && [ ! -L "$f" ] && files+=("$f"); done
  [ ${#files[@]} -gt 0 ] || die "no HTML pages for $src under $root"
  perl "$HERE/text/html2txt.pl" "$src" "$root" "${files[@]}" >> "$S" || die "HTML extraction failed for $src"
}
# python: the reST sources, one document per file (rules unchanged from mix-version 1)
SRC=$(ls -d "$X"/python/usr/share/doc/python3.*/html/_sources 2>/dev/null | head -n1)
[ -n "$SRC" ] && [ -d "$SRC" ] || die "no html/_sources folder in python3.11-doc"
(cd "$SRC" && find . -type f -name '*.rst.txt' | sed 's|^\./||' | LC_ALL=C sort) > "$tmp/files"
[ "$(wc -l < "$tmp/files")" -gt 100 ] || die "too few Python documents under $SRC"
(cd "$SRC" && xargs -d '\n' perl "$HERE/text/rst2txt.pl" --labels < "$tmp/files") > "$tmp/labels" \
  || die "label extraction failed"
while IFS= read -r rel; do
  printf '@@doc python %s\n' "$rel" >> "$S"
  perl "$HERE/text/rst2txt.pl" --label-file "$tmp/labels" < "$SRC/$rel" | grep -v '^$' >> "$S" || true
done < "$tmp/files"
sorted() { LC_ALL=C ls -d "$@" 2>/dev/null; }
D=$X/debian-reference/usr/share/debian-reference
html debian-reference "$D" $(sorted "$D"/*.en.html)
D=$X/debian-handbook/usr/share/doc/debian-handbook/html/en-US
html debian-handbook "$D" $(sorted "$D"/*.html)
D=$X/debian-faq/usr/share/doc/debian/FAQ
html debian-faq "$D" $(sorted "$D"/*.html)
D=$X/bash-manual/usr/share/doc/bash
html bash-manual "$D" "$D/bashref.html"
D=$X/autoconf-manual/usr/share/doc/autoconf
html autoconf-manual "$D" "$D/autoconf.html"
D=$X/gnu-standards/usr/share/doc/gnu-standards
html gnu-standards "$D" "$D/standards.html" "$D/maintain.html"
D=$X/git-manpages/usr/share/doc/git-doc
html git-manpages "$D" $(sorted "$D"/*.html)
D=$X/postgresql-manual/usr/share/doc/postgresql-doc-15/html
html postgresql-manual "$D" $(sorted "$D"/*.html)
D=$X/fortunes/usr/share/games/fortunes
perl "$HERE/text/fortune2txt.pl" fortunes $(sorted "$D"/* | grep -v -e '/[^/]*\.[^/]*$' -e '/ascii-art$') >> "$S" \
  || die "fortune extraction failed"
CHAT=$(chat_id)
if [ "$CHAT" != none ]; then
  grep -q '^@@doc chat ' "$OUT/chat.stream" || die "$OUT/chat.stream is not a chat document stream"
  sed '1{/^# /d}' "$OUT/chat.stream" >> "$S"
fi

# --- split, interleave, check ------------------------------------------------
mkdir -p "$tmp/out"
perl "$HERE/text/mix.pl" "$tmp/out" "$UNSEEN" < "$S" || die "mixing failed"

{
  echo "mix-version $MIX_VERSION"
  echo "chat $CHAT"
  cat "$tmp/packages" "$tmp/out/stats"
  for s in $SETS; do
    echo "$s $(stat -c %s "$tmp/out/$s.txt") $(sha256sum "$tmp/out/$s.txt" | awk '{print $1}')"
  done
} > "$tmp/MANIFEST"
for s in $SETS; do
  cp "$tmp/out/$s.documents" "$OUT/$s.documents"
  mv "$tmp/out/$s.txt" "$OUT/$s.txt.part"; mv "$OUT/$s.txt.part" "$OUT/$s.txt"
done
mv "$tmp/MANIFEST" "$OUT/MANIFEST"
echo "fetch_text: mix-version $MIX_VERSION (chat $(echo "$CHAT" | cut -c1-12)) -> $OUT" >&2
print_outputs
