set terminal pngcairo size 1100,560 font ',10'
set output 'time_ratio.png'
set title 'Time per operation relative to glibc (lower is faster), median of 3'
set ylabel 'time ratio to glibc'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key outside right top
set yrange [0:*]
set xtics rotate by -20
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5
plot 'time_ratio.dat' using 2:xtic(1) title columnheader(2) lc rgb '#d62728', 'time_ratio.dat' using 3:xtic(1) title columnheader(3) lc rgb '#7f7f7f', 'time_ratio.dat' using 4:xtic(1) title columnheader(4) lc rgb '#1f77b4', 'time_ratio.dat' using 5:xtic(1) title columnheader(5) lc rgb '#ff7f0e', 'time_ratio.dat' using 6:xtic(1) title columnheader(6) lc rgb '#2ca02c'
