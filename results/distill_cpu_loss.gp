# gnuplot -c results/distill_cpu_loss.gp  (from the repository root): the loss curve of results/distill_cpu.md
set terminal pngcairo size 900,500 font ",11" noenhanced
set output "results/distill_cpu_loss.png"
set title "Global distillation of the demo child (SmolLM2-135M parent, 1.5x decode child), 48 steps x 1024 tokens"
set xlabel "optimizer step (1024 training tokens each)"
set ylabel "loss (per token, mean over the step's batch)"
set key top right
set grid
set datafile separator "\t"
plot "results/distill_cpu_losses.tsv" skip 1 using 1:3 with linespoints lw 2 title "sum over 30 layers of (1 - cos(h_child, h_parent))", \
     "" skip 1 using 1:4 with linespoints lw 2 title "KL(parent || child) on the logits", \
     "" skip 1 using 1:($3+$4) with lines lw 1 dt 2 title "total"
