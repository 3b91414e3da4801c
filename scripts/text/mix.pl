# mix.pl — splits the document stream of every source into the text sets of
# scripts/fetch_text.sh, interleaves the sources, and proves that the
# evaluation sets share no 64-byte string with the sets a stage trains on
# (part of fetch_text.sh; perl-base only; docs/DATA.md describes the rule).
#
# usage: perl mix.pl OUTDIR UNSEEN_SOURCE < STREAM
# STREAM: lines "@@doc SOURCE ID" each starting a document, then its
# paragraphs, one per line. Writes OUTDIR/{train,calib,eval,eval_unseen}.txt
# (paragraphs separated by a blank line), OUTDIR/<set>.documents ("SOURCE ID"
# per line, in file order of first appearance) and OUTDIR/stats (one line per
# source and set: "source SRC SET DOCS BYTES", then "dropped ..." lines).
#
# Rule, per source (documents ordered by FNV-1a-32 of "SOURCE/ID", ties by
# ID): the UNSEEN source fills only eval_unseen (up to 150,000 bytes; the rest
# of it is not used); every other source gives its first documents to eval
# while eval holds less than min(20,000, 10 % of the source) bytes, then to
# calib while calib holds less than min(60,000, 25 %), then to train while
# train holds less than 1,500,000 bytes (a document that would overshoot a
# quota by more than half of the quota goes on to the next set). Then any
# paragraph of >= 40 bytes that occurs in an earlier set (order train, calib,
# eval, eval_unseen) is dropped, and any eval / eval_unseen paragraph sharing
# a 64-byte string with train or calib is dropped. Each set is written as
# chunks of whole paragraphs (>= 2,000 bytes) of one source, the chunks of
# all sources interleaved by their relative position in their source (chunk
# i of n sorts at (i + 0.5) / n, ties by source name), so that the first
# N tokens of every file hold every source in proportion. Finally the
# files as they will be written are checked as whole byte strings: when a
# 64-byte string of eval.txt or eval_unseen.txt occurs in train.txt or
# calib.txt (e.g. across a paragraph boundary), the eval paragraphs that
# overlap it are dropped and the sets rebuilt, up to 20 rounds (then: fail).
use strict; use warnings;
my ($outdir, $unseen) = @ARGV;
die "usage: mix.pl OUTDIR UNSEEN_SOURCE < STREAM\n" unless defined $unseen;
my @SETS = qw(train calib eval eval_unseen);
my $W = 64;                 # the disjointness window, bytes
my $CHUNK = 2000;

my (%docs, $cur);           # source -> [ {id, paras => [...], bytes} ]
while (my $l = <STDIN>) {
    chomp $l;
    if ($l =~ /^\@\@doc (\S+) (.+)$/) { $cur = { id => $2, paras => [], bytes => 0 }; push @{$docs{$1}}, $cur; next; }
    next if $l eq '';
    die "mix: paragraph before the first \@\@doc line\n" unless $cur;
    push @{$cur->{paras}}, $l; $cur->{bytes} += length($l) + 2;
}
die "mix: unseen source '$unseen' has no documents\n" unless $docs{$unseen};
sub fnv { my $h = 0x811c9dc5; for my $c (unpack 'C*', $_[0]) { $h ^= $c; $h = ($h * 0x01000193) & 0xffffffff; } return $h; }

my %set;                    # set -> source -> [docs]
for my $src (sort keys %docs) {
    my @d = grep { $_->{bytes} > 0 } @{$docs{$src}};
    @d = map { $_->[1] } sort { $a->[0] <=> $b->[0] || $a->[1]{id} cmp $b->[1]{id} }
         map { [fnv("$src/$_->{id}"), $_] } @d;
    my $total = 0; $total += $_->{bytes} for @d;
    my @quota = $src eq $unseen ? (['eval_unseen', 150000])
              : (['eval', $total * 0.10 < 20000 ? $total * 0.10 : 20000],
                 ['calib', $total * 0.25 < 60000 ? $total * 0.25 : 60000],
                 ['train', 1500000]);
    my %fill;
    DOC: for my $doc (@d) {
        for my $q (@quota) {
            my ($s, $max) = @$q; my $f = $fill{$s} // 0;
            next if $f >= $max || $f + $doc->{bytes} > 1.5 * $max;
            $fill{$s} = $f + $doc->{bytes}; push @{$set{$s}{$src}}, $doc; next DOC;
        }
    }
}

# --- drop shared paragraphs, then paragraphs of eval sets sharing a window ----
my (%seen, %dropped);
for my $s (@SETS) {
    for my $src (sort keys %{$set{$s} // {}}) {
        for my $doc (@{$set{$s}{$src}}) {
            my @keep;
            for my $p (@{$doc->{paras}}) {
                if (length($p) >= 40) {
                    if (defined $seen{$p} && $seen{$p} ne $s) { $dropped{"$s shared-paragraph"}++; next; }
                    $seen{$p} //= $s;
                }
                push @keep, $p;
            }
            $doc->{paras} = \@keep;
        }
    }
}
%seen = ();
sub windows_of { my ($t, $h, $v) = @_; for (my $i = 0; $i + $W <= length $t; $i++) { $h->{substr($t, $i, $W)} = $v; } }
my %ewin;                    # every 64-byte string of the eval sets' paragraphs
for my $s (qw(eval eval_unseen)) {
    for my $src (keys %{$set{$s} // {}}) { for my $doc (@{$set{$s}{$src}}) { windows_of($_, \%ewin, 1) for @{$doc->{paras}}; } }
}
my %hit;                     # eval windows found in train / calib
for my $s (qw(train calib)) {
    for my $src (keys %{$set{$s} // {}}) {
        for my $doc (@{$set{$s}{$src}}) {
            for my $p (@{$doc->{paras}}) {
                for (my $i = 0; $i + $W <= length $p; $i++) { my $w = substr($p, $i, $W); $hit{$w} = 1 if $ewin{$w}; }
            }
        }
    }
}
%ewin = ();
if (%hit) {
    for my $s (qw(eval eval_unseen)) {
        for my $src (keys %{$set{$s} // {}}) {
            for my $doc (@{$set{$s}{$src}}) {
                $doc->{paras} = [ grep {
                    my $p = $_; my $bad = 0;
                    for (my $i = 0; $i + $W <= length $p; $i++) { if ($hit{substr($p, $i, $W)}) { $bad = 1; last; } }
                    $dropped{"$s shared-64-byte-window"} += $bad; !$bad } @{$doc->{paras}} ];
            }
        }
    }
}

# --- chunk, interleave, write; check the written bytes, drop and redo on a hit ---
sub build {                 # -> (text, [[start, end, doc, para index]...], chunk stats)
    my ($s) = @_;
    my (@chunks, @stats);   # chunk: [key, source, [[doc, k]...]]
    for my $src (sort keys %{$set{$s} // {}}) {
        my @c; my ($cur, $len, $nd, $nb) = ([], 0, 0, 0);
        for my $doc (@{$set{$s}{$src}}) {
            next unless @{$doc->{paras}};
            $nd++;
            for my $k (0 .. $#{$doc->{paras}}) {
                push @$cur, [$doc, $k]; $len += length($doc->{paras}[$k]) + 2; $nb += length($doc->{paras}[$k]) + 2;
                if ($len >= $CHUNK) { push @c, $cur; $cur = []; $len = 0; }
            }
        }
        push @c, $cur if @$cur;
        push @stats, "source $src $s $nd $nb";
        for my $i (0 .. $#c) { push @chunks, [($i + 0.5) / @c, $src, $c[$i]]; }
    }
    @chunks = sort { $a->[0] <=> $b->[0] || $a->[1] cmp $b->[1] } @chunks;
    die "mix: set $s is empty\n" unless @chunks;
    my ($t, @map) = ('');
    for my $ch (@chunks) {
        for my $pk (@{$ch->[2]}) {
            $t .= "\n\n" if $t ne '';
            my $p = $pk->[0]{paras}[$pk->[1]];
            push @map, [length $t, length($t) + length $p, @$pk];
            $t .= $p;
        }
    }
    return ($t . "\n", \@map, \@stats);
}
my (%text, %map, %stats);
for my $round (1 .. 20) {
    for my $s (@SETS) { my ($t, $m, $st) = build($s); $text{$s} = $t; $map{$s} = $m; $stats{$s} = $st; }
    my %w;
    windows_of($text{$_}, \%w, $_) for qw(eval eval_unseen);
    my %bad;                # eval window -> 1
    for my $s (qw(train calib)) {
        my $t = $text{$s};
        for (my $i = 0; $i + $W <= length $t; $i++) { my $x = substr($t, $i, $W); $bad{$x} = 1 if $w{$x}; }
    }
    last unless %bad;
    die "mix: eval sets still share $W-byte strings with train/calib after 20 rounds\n" if $round == 20;
    for my $s (qw(eval eval_unseen)) {
        my ($t, %drop) = ($text{$s});
        for (my $i = 0; $i + $W <= length $t; $i++) {
            next unless $bad{substr($t, $i, $W)};
            for my $m (@{$map{$s}}) {   # paragraphs overlapping [i, i + W)
                next if $m->[1] <= $i || $m->[0] >= $i + $W;
                $drop{"$m->[2]"}{$m->[3]} = 1;
            }
        }
        for my $m (@{$map{$s}}) {
            my ($doc, $k) = @$m[2, 3];
            next unless $drop{"$doc"} && $drop{"$doc"}{$k};
            $doc->{paras}[$k] = undef;
        }
        for my $src (keys %{$set{$s}}) {
            for my $doc (@{$set{$s}{$src}}) {
                my $n = @{$doc->{paras}};
                $doc->{paras} = [ grep { defined } @{$doc->{paras}} ];
                $dropped{"$s shared-64-byte-window"} += $n - @{$doc->{paras}};
            }
        }
    }
}
open my $st, '>', "$outdir/stats" or die "mix: $outdir/stats: $!\n";
for my $s (@SETS) {
    open my $o, '>:raw', "$outdir/$s.txt" or die "mix: $!\n"; print $o $text{$s}; close $o or die "mix: $!\n";
    open my $dl, '>', "$outdir/$s.documents" or die "mix: $!\n";
    for my $src (sort keys %{$set{$s}}) { print $dl "$src $_->{id}\n" for grep { @{$_->{paras}} } @{$set{$s}{$src}}; }
    close $dl;
    print $st "$_\n" for @{$stats{$s}};
}
print $st "dropped $_ $dropped{$_}\n" for sort keys %dropped;
print $st "check: no $W-byte string of eval.txt or eval_unseen.txt occurs in train.txt or calib.txt\n";
