# rst2txt.pl — one reStructuredText document of the Python documentation -> plain
# prose (part of scripts/fetch_text.sh; perl-base only; the rules are in docs/DATA.md).
# usage: perl rst2txt.pl --labels FILE...   (prints "label<TAB>section title" lines)
#        perl rst2txt.pl --label-file LABELS < DOC.rst.txt > DOC.txt
# Reads one .rst.txt on stdin and writes its paragraphs (one per line, separated by blank
# lines) on stdout. Byte-oriented; UTF-8 passes through.
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
