# plot_rmi.gp - ns per lookup against key count, one panel per distribution.
# Usage: gnuplot -e "csv='bench/results/rmi.csv'; out='bench/results/rmi.png'; dists='uniform normal'" bench/plot_rmi.gp
# CSV columns: dist,n,method,query,hugepages,runs,lookups,median_ns,...
if (!exists("csv")) csv = 'bench/results/rmi.csv'
if (!exists("out")) out = 'bench/results/rmi.png'
if (!exists("dists")) dists = 'uniform normal lognormal clustered'
set terminal pngcairo size 1400,1000 font ",10"
set output out
set datafile separator ","
set logscale xy
set xrange [5e5:2e8]
set xlabel "keys"
set ylabel "median ns per lookup (present keys)"
set format x "10^{%L}"
set grid
set key top left
sel(d, m) = sprintf("< awk -F, '$1==\"%s\" && $3==\"%s\" && $4==\"present\" && $5==1 {print $2 \",\" $8}' %s", d, m, csv)
set multiplot layout 2,2 title "KyroDB learned index vs binary search, Eytzinger and LMDB (lower is better)"
do for [d in dists] {
	set title d
	plot sel(d, "rmi")       using 1:2 with linespoints lw 2 pt 7 title "rmi", \
	     sel(d, "rmi-windows") using 1:2 with linespoints lw 1 pt 6 dt 2 title "rmi-windows (daemon)", \
	     sel(d, "rmi-batch") using 1:2 with linespoints lw 2 pt 5 title "rmi-batch", \
	     sel(d, "eytzinger") using 1:2 with linespoints lw 2 pt 9 title "eytzinger", \
	     sel(d, "binary")    using 1:2 with linespoints lw 2 pt 11 title "binary", \
	     sel(d, "lmdb")      using 1:2 with linespoints lw 2 pt 13 title "lmdb"
}
unset multiplot
