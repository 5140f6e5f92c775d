#!/bin/sh
# mpi_scaling.sh -- particle filters over MPI ranks (plume.smc on a plume.ssm, doc/manual.md "Particle filters
# across ranks"): strong scaling (fixed N on 1 and 2 ranks, with 1 rank x 2 threads beside it), weak scaling
# (N per rank fixed), bytes sent per step as a function of N and K (resampling at every step, and never: the
# difference is the migration), and with `memory` the peak RSS per rank of 1e8 particles on 2 ranks.
# usage: sh bench/mpi_scaling.sh [memory]      (after make; needs mpirun)
P=${PLUME:-build/plume}
MODE=$1
mpi() { np=$1; shift; OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np "$np" "$P" "$@"; }
run() {  # K N T thr threads -> "secs bytes_rank0 maxrss_kB logz resamples" (max seconds and RSS over ranks)
    K=$1; shift
    if [ "$K" = 1 ]; then "$P" bench/mpi_scaling.lua "$@" 2>&1 >/dev/null; else mpi "$K" bench/mpi_scaling.lua "$@" 2>&1 >/dev/null; fi |
        awk '/^rank/ { if ($7 > s) s = $7; if ($2 == "0") b = $8; if ($9 > m) m = $9; z = $10; r = $11 }
             END { printf "%.3f %d %d %s %d\n", s, b, m, z, r }'
}
echo "== strong scaling: N = 4e6, T = 20, ESS threshold 0.5 =="
printf "%-16s %8s %8s %16s %10s\n" "ranks x threads" seconds speed-up logz "peak RSS"

base=
for cfg in "1 1" "1 2" "2 1"; do
    set -- $cfg
    out=$(run $1 4000000 20 0.5 $2); s=${out%% *}; [ -z "$base" ] && base=$s
    printf "%-16s %8s %8.2f %16s %7.0f MB\n" "$1 x $2" "$s" "$(echo "$base / $s" | bc -l)" "$(echo "$out" | cut -d' ' -f4)" \
        "$(echo "$(echo "$out" | cut -d' ' -f3) / 1024" | bc -l)"
done
echo "== weak scaling: N = 2e6 per rank, T = 20, 1 thread per rank =="
printf "%-6s %10s %8s %10s\n" ranks N seconds efficiency
base=
for K in 1 2; do
    N=$((2000000 * K)); out=$(run $K $N 20 0.5 1); s=${out%% *}; [ -z "$base" ] && base=$s
    printf "%-6s %10s %8s %10.2f\n" $K $N "$s" "$(echo "$base / $s" | bc -l)"
done
echo "== bytes sent by rank 0 per step (T = 10): gathers (never resampling) and migration (resampling every step) =="
printf "%-4s %10s %16s %16s %16s\n" K N gathers/step migration/step migration/N
for K in 2 3; do
    for N in 100000 1000000 10000000; do
        g=$(run $K $N 10 0 1 | cut -d' ' -f2); a=$(run $K $N 10 1 1 | cut -d' ' -f2)
        printf "%-4s %10s %16.0f %16.0f %16.4f\n" $K $N "$(echo "$g / 10" | bc -l)" "$(echo "($a - $g) / 9" | bc -l)" \
            "$(echo "($a - $g) / 9 / $N" | bc -l)"
    done
done
if [ "$MODE" = memory ]; then
    echo "== memory: 1e8 particles, 2 ranks, T = 3 =="
    mpi 2 bench/mpi_scaling.lua 100000000 3 1 1 2>&1 >/dev/null | awk '/^rank/ { printf "rank %s: peak RSS %.2f GB, %.1f s, logz %s\n", $2, $9 / 1048576, $7, $10 }'
fi
