# bench/open/plot.gp - open + get of one key against the store's size.
# gnuplot -e "data='open-plot.dat'; out='open.png'" plot.gp
# data: lines "N SYSTEM MILLISECONDS".
set terminal pngcairo size 800,500
set output out
set logscale x
set xlabel "keys in the store"
set ylabel "open + get of one key, median (ms)"
set yrange [0:*]
set key top left
set grid
plot for [s in "kyro lmdb before"] \
	sprintf("< awk '$2 == \"%s\"' %s", s, data) using 1:3 with linespoints title s
