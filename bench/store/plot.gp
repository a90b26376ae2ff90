# plot.gp - the store benchmark's chart, from the medians run.sh writes.
# gnuplot -e "datafile='...'; outfile='...'; subtitle='...'" plot.gp
# datafile: block 0 "label kyro lmdb" in M/s, block 1 the same in ms.
set terminal pngcairo size 1100,480 font ",10" noenhanced
set output outfile
set multiplot layout 1,2 title "KyroDB vs LMDB (".subtitle.")"
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key top right
set grid ytics
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
set datafile missing "NaN"
set title "throughput, whole process (higher is better)"
set ylabel "M records/s"
plot datafile index 0 using 2:xtic(1) title "KyroDB" lc rgb "#1f77b4", \
     ''       index 0 using 3 title "LMDB" lc rgb "#ff7f0e", \
     ''       index 0 using 0:2:(sprintf("%.2f", $2)) with labels offset -1.6,0.7 notitle, \
     ''       index 0 using 0:($3 == $3 ? $3 : 1/0):(sprintf("%.2f", $3)) with labels offset 1.6,0.7 notitle
set title "kyro-get / lmdb_get of one key (lower is better; target < 5 ms)"
set ylabel "ms per process"
plot datafile index 1 using 2:xtic(1) title "KyroDB" lc rgb "#1f77b4", \
     ''       index 1 using 3 title "LMDB" lc rgb "#ff7f0e", \
     ''       index 1 using 0:2:(sprintf("%.2f", $2)) with labels offset -1.6,0.7 notitle, \
     ''       index 1 using 0:3:(sprintf("%.2f", $3)) with labels offset 1.6,0.7 notitle
unset multiplot
