#!/bin/sh
# mpi_chains.sh -- plume.infer's chains on 1 rank and on 2 ranks of `mpirun` (one thread each), side by side
# in one run: wall time of plume.infer, speed-up, bytes rank 0 sent, and whether the draws agree (they must).
# usage: sh bench/mpi_chains.sh [chains] [samples]
BUILD=${BUILD:-build}
C=${1:-4} N=${2:-1000}
if ! command -v mpirun >/dev/null 2>&1 || [ "$("$BUILD/plume" -e 'io.write(tostring(plume.mpi.compiled))')" != true ]; then
    echo "skipped: no mpirun, or plume built without MPI"; exit 0
fi
one=$("$BUILD/plume" bench/mpi_chains.lua "$C" "$N") || exit 1
two=$(OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 "$BUILD/plume" bench/mpi_chains.lua "$C" "$N") || exit 1
echo "$one"; echo "$two"
t1=$(echo "$one" | sed 's/.*infer \([0-9.]*\) s.*/\1/'); t2=$(echo "$two" | sed 's/.*infer \([0-9.]*\) s.*/\1/')
echo "speed-up of 2 ranks over 1: $(echo "scale=2; $t1 / $t2" | bc)"
[ "${one##*sum}" = "${two##*sum}" ] && echo "draws: identical checksums" || { echo "draws: DIFFER"; exit 1; }
