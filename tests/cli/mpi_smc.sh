#!/bin/sh
# mpi_smc.sh -- plume.smc over programs spread over ranks: `mpirun -np 2` and `-np 3` give what one rank gives --
# the same logz and logz history, the same particles (return values) and log weights to 17 digits, the same draws
# CSV -- on every rank, for four programs (tests/lua/smc_ranks.lua: an n-gram LM with a potential, a twisted LM,
# conditional SMC, categorical/Dirichlet/deterministic sites with dead and rejected particles), while particles
# do move between ranks as records.
. tests/mpi.sh
mpi_ready mpi_smc_matches_one_rank || exit 0
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$P" --quiet tests/lua/smc_ranks.lua needed "$d/one.csv" >"$d/one.out" 2>"$d/one.err" || { echo "FAIL mpi_smc_one_rank_runs: $(cat "$d/one.err")"; exit 0; }
ref=$(cut -d' ' -f2,3 "$d/one.err")
for np in 2 3; do
    name=mpi_smc_np${np}_matches_one_rank
    if ! mpi_run "$np" --quiet tests/lua/smc_ranks.lua needed "$d/np.csv" >"$d/np.out" 2>"$d/np.err"; then
        echo "FAIL $name: mpirun failed: $(tail -5 "$d/np.err")"; continue
    fi
    why=""
    cmp -s "$d/one.out" "$d/np.out" || why="$why; rank 0's results differ: $(diff "$d/one.out" "$d/np.out" | head -3)"
    cmp -s "$d/one.csv" "$d/np.csv" || why="$why; the draws CSV differs"
    r=0
    while [ $r -lt $np ]; do
        got=$(grep "^R$r " "$d/np.err" | cut -d' ' -f2,3)
        [ "$got" = "$ref" ] || why="$why; rank $r holds '$got', one rank '$ref'"
        r=$((r + 1))
    done
    moved=$(grep '^R[0-9]* ' "$d/np.err" | awk '{s += $5} END {print s + 0}')
    [ "$moved" -gt 0 ] || why="$why; no particle moved between ranks (the test would not test migration)"
    [ -z "$why" ] && echo "PASS $name ($moved particle records moved)" || echo "FAIL $name$why"
done
