# gnuplot architecture.gp (in this folder): written by puzzle report
set terminal pngcairo size 1280,340 font ",11" noenhanced
set output "architecture.png"
set datafile separator "\t"
set datafile missing "NaN"
set title "Solution 1, layer by layer\n(attention: kvN = N KV heads, lin = linear, - = removed; FFN: width; colour: size / the parent's)"
set xlabel "layer"
set xrange [-0.5:29.5]
set yrange [-0.5:1.5]
set ytics ("FFN" 0, "attention" 1)
set xtics 1 out
set cbrange [0:1]
set cblabel "size / parent's"
set palette defined (0 "#d9d9d9", 0.1 "#fdd0a2", 0.5 "#fd8d3c", 1 "#2171b5")
set key off
plot "architecture.tsv" skip 1 using 1:2:(0.46):(0.42):3 with boxxyerror fill solid 1.0 lc palette notitle, \
     "" skip 1 using 1:2:4 with labels font ",8" notitle
set terminal svg size 1280,340 font "Sans,11" noenhanced background "white"
set output "architecture.svg"
replot
