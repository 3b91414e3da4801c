# html2txt.pl — HTML documentation pages -> plain prose, split into sections.
# Part of scripts/fetch_text.sh (perl-base only). usage:
#   perl html2txt.pl SOURCE ROOT FILE...
# Reads each FILE (a path under ROOT), and writes on stdout the "document
# stream" that scripts/text/mix.pl reads: a line "@@doc SOURCE ID" starts a
# document, then one paragraph per line. A document is one section of a page:
# pages are cut before every <h1>, <h2> and <h3>, and ID is "PATH#N" (PATH
# relative to ROOT, N the section's number in the page, from 0).
# Kept: text of paragraphs, list items, definition terms and bodies, headings,
# block quotes; dropped: head, script, style, preformatted blocks (code
# listings, examples), tables, navigation bars, paragraphs that are nothing
# but a link (tables of contents, menus), texinfo's "Next: / Previous: / Up:"
# lines, paragraphs with letters fewer than half of their characters, and
# paragraphs of fewer than 3 words (headings: fewer than 2). Entities are
# decoded to UTF-8. Byte-oriented otherwise.
use strict; use warnings;
my ($source, $root, @files) = @ARGV;
die "usage: html2txt.pl SOURCE ROOT FILE...\n" unless defined $root && @files;
my %ent = (amp => '&', lt => '<', gt => '>', quot => '"', apos => "'", nbsp => ' ',
           mdash => "\x{2014}", ndash => "\x{2013}", hellip => "\x{2026}", lsquo => "\x{2018}",
           rsquo => "\x{2019}", ldquo => "\x{201c}", rdquo => "\x{201d}", copy => "\x{a9}",
           reg => "\x{ae}", trade => "\x{2122}", laquo => "\x{ab}", raquo => "\x{bb}",
           times => "\x{d7}", minus => "\x{2212}", rarr => "\x{2192}", larr => "\x{2190}",
           bull => "\x{2022}", middot => "\x{b7}", shy => '', zwsp => '', thinsp => ' ',
           ensp => ' ', emsp => ' ');
sub chr8 { my $c = chr(shift); utf8::encode($c); return $c; }
sub entity {
    my $e = shift;
    return chr8(hex $1) if $e =~ /^#[xX]([0-9a-fA-F]+)$/;
    return chr8($1) if $e =~ /^#(\d+)$/;
    return '' unless exists $ent{$e};
    my $c = $ent{$e}; utf8::encode($c); return $c;
}
for my $f (@files) {
    open my $fh, '<:raw', $f or die "html2txt: $f: $!\n";
    local $/; my $h = <$fh>; close $fh;
    (my $rel = $f) =~ s{^\Q$root\E/*}{};
    $h =~ s/<!--.*?-->//gs;
    $h =~ s{<(head|script|style|pre|table|svg|math)\b[^>]*>.*?</\1\s*>}{\n\n}gis;
    $h =~ s{<(ul|div)\b[^>]*class="[^"]*\b(?:docnav|navheader|navfooter|navigation|nav-panel)\b[^"]*"[^>]*>.*?</\1>}{}gis;
    $h =~ s{<h[123]\b[^>]*>}{\n\n\x01H}gi;                      # section break + heading mark
    $h =~ s{<h[456]\b[^>]*>}{\n\n\x04}gi;                       # heading mark, no break
    $h =~ s{</?(?:p|div|li|ul|ol|dl|dd|dt|h\d|br|hr|blockquote|tr|td|th|title|body|html|section|article|header|footer|nav|aside|figure|figcaption|caption|center|form|fieldset|legend|address)\b[^>]*>}{\n\n}gi;
    $h =~ s{<a\b[^>]*>}{\x02}gi;
    $h =~ s{</a\s*>}{\x03}gi;
    $h =~ s{<[^>]*>}{}gs;
    my @sections = ([]);
    for my $p (split /\n\s*\n/, $h) {
        my $heading = 0;
        if ($p =~ s/\x01H//) { push @sections, [] if @{$sections[-1]}; $heading = 1; }
        $heading = 1 if $p =~ s/\x04//g;
        $p =~ s/\s+/ /g; $p =~ s/^ | $//g;
        (my $nolink = $p) =~ s/\x02[^\x03]*\x03//g;
        next unless $nolink =~ /[A-Za-z]/;                       # only links: a menu entry
        $p =~ tr/\x02\x03//d;
        $p =~ s/&(#?[A-Za-z0-9]+);/entity($1)/ge;
        $p =~ s/[\x00-\x08\x0b-\x1f]//g;
        $p =~ s/\s+/ /g; $p =~ s/^ | $//g;
        next if $p eq '' || $p =~ /^\@\@doc /;
        next if $p =~ /^(?:Next|Previous|Up): /;                 # texinfo navigation line
        my $words = () = $p =~ /\S+/g;
        next if $words < ($heading ? 2 : 3);
        my $letters = () = $p =~ /[A-Za-z]/g;
        next if $letters < 0.5 * length($p);
        push @{$sections[-1]}, $p;
    }
    my $n = 0;
    for my $s (@sections) {
        next unless @$s;
        print "\@\@doc $source $rel#$n\n", map { "$_\n" } @$s;
        $n++;
    }
}
