#!/bin/sh
# mpi_ranks.sh -- `mpirun -np 2 plume` runs the script on two ranks that know their rank and the job's size;
# a plain `plume` is rank 0 of 1. Only rank 0's standard output shows, unless PLUME_MPI_PRINT=all or
# plume.mpi.print_all(true).
. tests/mpi.sh
out=$("$P" -e 'io.write(plume.mpi.rank, " ", plume.mpi.size, " ", tostring(plume.mpi.is_root))')
[ "$out" = "0 1 true" ] && echo "PASS plain_plume_is_rank_0_of_1" || echo "FAIL plain_plume_is_rank_0_of_1: $out"
if mpi_ready mpirun_np2_gives_ranks_0_and_1_of_2; then
    out=$(PLUME_MPI_PRINT=all mpi_run 2 -e 'io.write(plume.mpi.rank, "/", plume.mpi.size, "\n")' 2>&1 | sort | tr '\n' ' ')
    [ "$out" = "0/2 1/2 " ] && echo "PASS mpirun_np2_gives_ranks_0_and_1_of_2" \
        || echo "FAIL mpirun_np2_gives_ranks_0_and_1_of_2: $out"
    # print, io.write and os.execute's child (C stdout): rank 0 only
    out=$(mpi_run 2 -e 'print("p", plume.mpi.rank) io.write("w ", plume.mpi.rank, "\n") os.execute("echo c")' 2>&1 \
        | sort | tr '\n' ' ')
    [ "$out" = "c p	0 w 0 " ] && echo "PASS mpirun_np2_only_rank_0_prints" \
        || echo "FAIL mpirun_np2_only_rank_0_prints: $out"
    out=$(mpi_run 2 -e 'local was = plume.mpi.print_all(true) print(plume.mpi.rank, was) plume.mpi.print_all(false)
                         print("after", plume.mpi.rank)' 2>&1 | sort | tr '\n' ' ')
    [ "$out" = "0	true 1	false after	0 " ] && echo "PASS mpirun_np2_print_all_on_and_off" \
        || echo "FAIL mpirun_np2_print_all_on_and_off: $out"
fi
if mpi_ready mpirun_np2_one_default_stream; then
    # without plume.seed every rank draws the same numbers, and plume.infer without `seed` takes the same seed
    # on every rank (its chains, spread over the ranks, come from one seed)
    out=$(PLUME_MPI_PRINT=all mpi_run 2 -e 'local x = plume.dist.normal(0, 1):sample()
        local m = plume.model(function(m) m:sample("x", plume.dist.normal(0, 1)) end)
        local post = plume.infer(m, nil, { method = "nuts", samples = 10, chains = 2 })
        print(x, post.seed)' 2>&1 | sort | uniq -c | wc -l)
    [ "$out" = 1 ] && echo "PASS mpirun_np2_one_default_stream" || echo "FAIL mpirun_np2_one_default_stream: $out distinct lines"
fi
