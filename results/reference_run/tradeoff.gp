# gnuplot tradeoff.gp (in this folder): written by puzzle report
set terminal pngcairo size 1000,600 font ",11" noenhanced
set output "tradeoff.png"
set datafile separator "\t"
set datafile missing "NaN"
set title "Decode speed-up against KL to the parent\n(circles and squares: searches, predicted; triangles: evaluated models, measured)"
set xlabel "decode speed-up over the parent (x)"
set ylabel "KL(parent || model) (nats/token)"
set grid
set key below
set offsets 0.05, 0.05, 0.05, 0.05
plot "tradeoff.tsv" index 0 skip 1 using 1:2 with points pt 7 ps 1.6 lw 2 title "mip, 1xH100 (predicted: summed block KL)", \
     "tradeoff.tsv" index 1 skip 1 using 1:2 with points pt 7 ps 1.6 lw 2 title "mip, cpu (predicted: summed block KL)", \
     "tradeoff.tsv" index 2 skip 1 using 1:2 with points pt 8 ps 1.6 lw 2 title "shortgpt, cpu (predicted: summed block KL)", \
     "tradeoff.tsv" index 3 skip 1 using 1:2 with points pt 10 ps 1.6 lw 2 title "uniform-ffn, cpu (predicted: summed block KL)", \
     "tradeoff.tsv" index 4 skip 1 using 1:2 with points pt 9 ps 2 lc rgb "black" title "evaluated (measured speed-up and KL)", \
     "" index 4 skip 1 using 1:2:3 with labels offset 1,0.8 left notitle
set terminal svg size 1000,600 font "Sans,11" noenhanced background "white"
set output "tradeoff.svg"
replot
