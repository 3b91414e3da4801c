# gnuplot -c results/distill_sweep.gp  (from the repository root): the training curves of
# results/distill_sweep.md (the gkd_losses.tsv of each run, copied to results/distill_sweep/).
# Every run reads the same windows in the same order (seed 1), so step k is the same batch in each.
set terminal pngcairo size 1650,500 font ",10" noenhanced
set output "results/distill_sweep.png"
set datafile separator "\t"
# held-out perplexity / parent's against training tokens (results/distill_sweep.md, "Longer")
$PAPER << EOD
0 1.731
16384 1.487
32768 1.406
65536 1.353
EOD
$LM << EOD
0 1.731
16384 1.381
32768 1.303
EOD
set multiplot layout 1,3
set title "KL(parent || child) per training batch: peak lr (paper loss)"
set xlabel "step (1024 tokens each)"
set ylabel "KL of the step's batch"
set grid
set key top right
D = "results/distill_sweep/"
plot D."lr1e-4.tsv" skip 1 using 1:4 with linespoints title "lr 1e-4", \
     D."lr2e-4.tsv" skip 1 using 1:4 with linespoints title "lr 2e-4", \
     D."lr5e-4.tsv" skip 1 using 1:4 with linespoints title "lr 5e-4", \
     D."lr1e-3.tsv" skip 1 using 1:4 with linespoints title "lr 1e-3", \
     D."lr2e-3.tsv" skip 1 using 1:4 with linespoints title "lr 2e-3 (stopped at step 7)"
set title "KL(parent || child) per training batch: loss variants at lr 2e-4"
plot D."lr2e-4.tsv" skip 1 using 1:4 with linespoints title "cos + KL (paper)", \
     D."kl_only.tsv" skip 1 using 1:4 with linespoints title "KL only", \
     D."cos_only.tsv" skip 1 using 1:4 with linespoints title "cos only", \
     D."cos_kl_lm.tsv" skip 1 using 1:4 with linespoints title "cos + KL + LM", \
     D."cos_kl_t2.tsv" skip 1 using 1:4 with linespoints title "cos + KL at T = 2"
set title "Held-out perplexity / parent's (eval.txt) vs distillation tokens"
set xlabel "training tokens"
set ylabel "perplexity vs parent"
set datafile separator whitespace
set yrange [1:*]
plot $PAPER using 1:2 with linespoints lw 2 title "cos + KL (paper), lr 2e-4 (65,536: the reference run)", \
     $LM using 1:2 with linespoints lw 2 title "cos + KL + LM", \
     1.05 with lines dt 2 title "issue target at 1.25x: 1.05x"
unset multiplot
