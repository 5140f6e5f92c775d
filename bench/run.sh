#!/bin/sh
# Run the benchmarks (built by `make bench` into $BUILD/bench). Each prints its measurements and the ratios
# measured side by side in one run. Timings on a shared machine vary: each benchmark reports the best of
# several repetitions.
BUILD=${BUILD:-build}
run() {
    if [ -x "$BUILD/bench/$1" ]; then
        echo "== $1"
        "$BUILD/bench/$1" ${2:-}
    fi
}
# the model compiler (issue 3): SV ssm vs hand-written C+GSL, 50-node compile time; FitzHugh-Nagumo EM
run ssm_sv 5
run sde_fhn 5
