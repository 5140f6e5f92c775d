#!/bin/sh
# Run the benchmarks (built by `make bench` into $BUILD/bench). Each prints its own figures; ratios are measured
# side by side in one run. Add a line per benchmark.
BUILD=${BUILD:-build}
"$BUILD/bench/lm_decode" 1
