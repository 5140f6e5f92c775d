#!/bin/sh
# mpi_sv_filter.sh -- examples/mpi_sv_filter.lua (ten million particles) prints the same under `mpirun -np 2`
# as in one process: the filter's logz, means, sds, moment and ESS digit for digit.
. tests/mpi.sh
mpi_ready mpi_sv_filter_np2_equals_one_process || exit 0
P=$(cd "$(dirname "$P")" && pwd)/$(basename "$P")   # the example runs in examples/
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
(cd examples && "$P" mpi_sv_filter.lua 3 >"$D/one" 2>"$D/err") || { echo "FAIL mpi_sv_filter_one_process_runs"; cat "$D/err"; }
(cd examples && mpi_run 2 mpi_sv_filter.lua 3 >"$D/two" 2>"$D/err") || { echo "FAIL mpi_sv_filter_np2_runs"; cat "$D/err"; }
grep -q "on 1 rank(s)" "$D/one" && grep -q "on 2 rank(s)" "$D/two" || echo "FAIL mpi_sv_filter_ran_on_1_and_2_ranks"
sed 's/on [12] rank(s)/on K rank(s)/' "$D/one" >"$D/one.k"
sed 's/on [12] rank(s)/on K rank(s)/' "$D/two" >"$D/two.k"
if cmp -s "$D/one.k" "$D/two.k" && [ "$(wc -l <"$D/one")" = 4 ]; then
    echo "PASS mpi_sv_filter_np2_equals_one_process"
else
    echo "FAIL mpi_sv_filter_np2_equals_one_process"; diff "$D/one" "$D/two"
fi
