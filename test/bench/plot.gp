# Draws results/throughput.png from the data files bench.py writes:
#   sustained.dat  "system rate" per line (the highest rate that held)
#   steps.dat      one block per system: offered published p99_ms held
# Usage: gnuplot -e "dir='test/bench/results'; title='...'" test/bench/plot.gp
if (!exists("dir")) dir = "test/bench/results"
if (!exists("title")) title = "mqtt2kafka"
set terminal pngcairo size 1200,500 font "sans,10"
set output dir."/throughput.png"
set multiplot layout 1,2 title title

set title "Sustained rate, nothing lost (msgs/s)"
set style fill solid 0.6 border -1
set boxwidth 0.6
set yrange [0:*]
set grid ytics
unset key
plot dir."/sustained.dat" using 0:2:xtic(1) with boxes lc rgb "#4477aa", \
     "" using 0:2:(sprintf("%.0f", $2)) with labels offset 0,0.7

set title "p99 publish -> Kafka append vs rate (ms)"
set xlabel "published msgs/s"
set logscale y
set yrange [1:*]
set key top left
set xtics autofreq
plot for [i=0:3] dir."/steps.dat" index i using 2:3 with linespoints \
     pt 7 title columnheader(1)
unset multiplot
