# bench/vector/plot.gp - recall@10 against queries per second, one line
# per system, for one data set.
# gnuplot -e "data='vector-fashion.dat'; out='vector-fashion.png'; name='...'" plot.gp
# data: lines "SYSTEM RECALL QPS".
set terminal pngcairo size 900,560 noenhanced
set output out
set title name
set logscale y
set xlabel "recall@10"
set ylabel "queries per second, one thread (log)"
set key bottom left
set grid
plot for [s in "kyro-mmap kyro-mmap-reread kyro-pinned hnswlib faiss-hnsw"] \
	sprintf("< awk '$1 == \"%s\"' %s", s, data) using 2:3 with linespoints title s
