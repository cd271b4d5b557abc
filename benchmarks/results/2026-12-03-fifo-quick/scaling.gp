set terminal pngcairo size 1100,560 font ',10'
set output 'scaling.png'
set title 'wl_servermix: pairs/s at 2 threads / at 1 (higher scales better)'
set ylabel 'scaling ratio'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key outside right top
set yrange [0:*]
set xtics rotate by -20
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5
plot 'scaling.dat' using 2:xtic(1) title columnheader(2) lc rgb '#d62728', 'scaling.dat' using 3:xtic(1) title columnheader(3) lc rgb '#7f7f7f', 'scaling.dat' using 4:xtic(1) title columnheader(4) lc rgb '#1f77b4', 'scaling.dat' using 5:xtic(1) title columnheader(5) lc rgb '#ff7f0e', 'scaling.dat' using 6:xtic(1) title columnheader(6) lc rgb '#2ca02c'
