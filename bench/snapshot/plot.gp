# bench/snapshot/plot.gp - kyro-snapshot and dd, seconds per store size.
# Called by run.sh with datafile, outfile, ncols (variants + dd), subtitle.
set terminal pngcairo size 900,500
set output outfile
set title "kyro-snapshot against dd of the same bytes (lower is better)\n{/*0.8 ".subtitle."}"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel "seconds"
set logscale y
set key top left autotitle columnhead
set grid ytics
plot for [i=2:ncols+1] datafile using i:xtic(1) title columnhead(i)
