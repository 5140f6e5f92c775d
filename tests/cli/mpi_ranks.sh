#!/bin/sh
# mpi_ranks.sh -- `mpirun -np 2 plume` runs the script on two ranks that know their rank and the job's size;
# a plain `plume` is rank 0 of 1.
. tests/mpi.sh
out=$("$P" -e 'io.write(plume.mpi.rank, " ", plume.mpi.size, " ", tostring(plume.mpi.is_root))')
[ "$out" = "0 1 true" ] && echo "PASS plain_plume_is_rank_0_of_1" || echo "FAIL plain_plume_is_rank_0_of_1: $out"
if mpi_ready mpirun_np2_gives_ranks_0_and_1_of_2; then
    out=$(mpi_run 2 -e 'io.write(plume.mpi.rank, "/", plume.mpi.size, "\n")' 2>&1 | sort | tr '\n' ' ')
    [ "$out" = "0/2 1/2 " ] && echo "PASS mpirun_np2_gives_ranks_0_and_1_of_2" \
        || echo "FAIL mpirun_np2_gives_ranks_0_and_1_of_2: $out"
fi
