# gnuplot distill_loss.gp (in this folder): written by puzzle report
set terminal pngcairo size 1000,560 font ",11" noenhanced
set output "distill_loss.png"
set datafile separator "\t"
set datafile missing "NaN"
set title "Global distillation: loss per training token seen"
set xlabel "training tokens"
set ylabel "loss per token (nats for KL; sum over layers of 1 - cos)"
set grid
set key below
plot "distill_loss.tsv" index 0 skip 1 using 2:3 with lines lw 2 title "child_distilled: total", \
     "" index 0 skip 1 using 2:4 with lines dt 2 title "child_distilled: sum over layers (1 - cos)", \
     "" index 0 skip 1 using 2:5 with lines dt 3 title "child_distilled: KL(parent || child)", \
     "distill_loss.tsv" index 1 skip 1 using 2:3 with lines lw 2 title "child_distilled: total", \
     "" index 1 skip 1 using 2:4 with lines dt 2 title "child_distilled: sum over layers (1 - cos)", \
     "" index 1 skip 1 using 2:5 with lines dt 3 title "child_distilled: KL(parent || child)", \
     "distill_loss.tsv" index 2 skip 1 using 2:3 with lines lw 2 title "child_distilled: total", \
     "" index 2 skip 1 using 2:4 with lines dt 2 title "child_distilled: sum over layers (1 - cos)", \
     "" index 2 skip 1 using 2:5 with lines dt 3 title "child_distilled: KL(parent || child)"
set terminal svg size 1000,560 font "Sans,11" noenhanced background "white"
set output "distill_loss.svg"
replot
