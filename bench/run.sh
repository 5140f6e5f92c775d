#!/bin/sh
# Run the benchmarks (built by `make bench` into $BUILD/bench). Each prints its own table of times and ratios.
BUILD=${BUILD:-build}
set -e
echo "== kalman: square-root Kalman filter vs a textbook C loop =="
"$BUILD/bench/kalman"
