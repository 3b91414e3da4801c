# Heat map of results/library_run.md: gnuplot -c library_run_nmse.gp library_run_nmse.dat library_run_nmse.png
# library_run_nmse.dat: one row per layer, one column per variant in the xtics order below,
# log10(final_val_nmse) from the `library` view of the run database (floored at 1e-4).
set terminal pngcairo size 900,1000 font "DejaVu Sans,10" noenhanced
set output ARG2
set title "SmolLM2-135M block library: final validation NMSE (log10 colour scale)"
set xlabel "variant"
set ylabel "layer"
set xtics ("attn gqa_kv1" 0, "attn linear" 1, "attn noop" 2, "ffn swiglu_1280" 3, "ffn swiglu_768" 4, "ffn swiglu_512" 5, "ffn swiglu_256" 6, "ffn linear" 7, "ffn noop" 8) rotate by 35 right
set ytics 0,1,29
set yrange [29.5:-0.5]
set xrange [-0.5:8.5]
set cbrange [-3:0]
set cbtics ("0.001" -3, "0.01" -2, "0.1" -1, "1" 0)
set cblabel "NMSE"
set palette defined (-3 "#0b1f4d", -2 "#2a6fbb", -1 "#f2e85c", 0 "#b2182b")
unset key
plot ARG1 matrix with image, \
     ARG1 matrix using 1:2:(sprintf("%.3f", 10**$3)) with labels font ",7" tc "white"
