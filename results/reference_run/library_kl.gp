# gnuplot library_kl.gp (in this folder): written by puzzle report
set terminal pngcairo size 1100,460 font ",11" noenhanced
set output "library_kl.png"
set datafile separator "\t"
set datafile missing "NaN"
set title "Replace-1-block KL(parent || child) of every library block\n(nats/token, log colour scale; the parent's own variants drawn at 1e-4; blank: not in the library)"
set xlabel "layer"
set xrange [-0.5:29.5]
set yrange [-0.5:9.5] reverse
set xtics 1 out
set ytics ("attn gqa_kv3" 0, "attn gqa_kv1" 1, "attn linear" 2, "attn noop" 3, "ffn swiglu_1536" 4, "ffn swiglu_1280" 5, "ffn swiglu_768" 6, "ffn swiglu_256" 7, "ffn noop" 8, "ffn linear" 9) out
set logscale cb
set cblabel "KL (nats/token)"
set format cb "%.0e"
set palette defined (0 "#f7fbff", 1 "#6baed6", 2 "#fd8d3c", 3 "#7f0000")
set key off
set lmargin 22
plot "library_kl.tsv" skip 1 using 1:2:(0.5):(0.5):4 with boxxyerror fill solid 1.0 noborder lc palette notitle
set terminal svg size 1100,460 font "Sans,11" noenhanced background "white"
set output "library_kl.svg"
replot
