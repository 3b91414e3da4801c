# fortune2txt.pl — fortune(6) cookie files -> the document stream of
# scripts/text/mix.pl (part of scripts/fetch_text.sh; perl-base only).
# usage: perl fortune2txt.pl SOURCE FILE...
# Each cookie (text between lines holding only "%") is one document
# "FILE#N" of one paragraph: its lines joined by single spaces. Overstrike
# sequences (x BACKSPACE y) keep y. Dropped: cookies with letters fewer than
# half of their characters (ASCII art), of fewer than 5 words, or over 2000
# bytes (the few long listings).
use strict; use warnings;
my ($source, @files) = @ARGV;
die "usage: fortune2txt.pl SOURCE FILE...\n" unless @files;
for my $f (@files) {
    open my $fh, '<:raw', $f or die "fortune2txt: $f: $!\n";
    local $/; my $t = <$fh>; close $fh;
    (my $name = $f) =~ s{.*/}{};
    my $n = 0;
    for my $c (split /^%\r?\n/m, $t) {
        my $id = $n++;
        1 while $c =~ s/[^\x08]\x08//;
        $c =~ s/[\x00-\x08\x0b-\x1f]/ /g;
        $c =~ s/\s+/ /g; $c =~ s/^ | $//g;
        next if $c eq '' || length($c) > 2000 || $c =~ /^\@\@doc /;
        my $words = () = $c =~ /\S+/g;
        next if $words < 5;
        my $letters = () = $c =~ /[A-Za-z]/g;
        next if $letters < 0.5 * length($c);
        print "\@\@doc $source $name#$id\n$c\n";
    }
}
