#!/bin/sh
# mpi_errors.sh -- under `mpirun -np 2` an error on one rank ends the whole job within seconds (exit non-zero,
# never a hang), with that rank's number and message on stderr, also while the other rank waits for it in a
# collective (a barrier, plume.infer's exchange of chains); a chain's error reaches every rank; SIGINT to mpirun
# (Ctrl-C) ends the job; os.exit with a failure ends the job, with success only its rank. A plain plume's error
# message has no rank.
. tests/mpi.sh
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
printf 'error("boom")\n' >"$dir/plain.lua"
out=$("$P" "$dir/plain.lua" 2>&1); rc=$?
[ $rc != 0 ] && [ "$out" = "plume: $dir/plain.lua:1: boom" ] && echo "PASS plain_plume_error_has_no_rank" \
    || echo "FAIL plain_plume_error_has_no_rank: exit $rc: $out"
mpi_ready mpi_errors || exit 0
MPI_TIMEOUT=10
export MPI_TIMEOUT
cat >"$dir/barrier.lua" <<'EOF2'
local bad = tonumber(arg[1])
if plume.mpi.rank == bad then error("boom on rank " .. bad) end
plume.mpi.barrier()
print("not reached")
EOF2
cat >"$dir/infer.lua" <<'EOF2'
local D = plume.dist
if plume.mpi.rank == 1 then error("rank 1 fails before sampling") end
local m = plume.model(function(m) m:sample("x", D.normal(0, 1)) end)
plume.infer(m, nil, { method = "nuts", samples = 100, chains = 4, seed = 1 })
print("not reached")
EOF2
# the error of chain 3 (of 3), which runs on rank 1, reaches rank 0 too: both raise it from plume.infer
cat >"$dir/chain.lua" <<'EOF2'
local D = plume.dist
local m = plume.model(function(m)
  local mu = m:sample("mu", D.normal(0, 1))
  if mu > 100 then error("mu too big") end
  if m:sample("k", D.bernoulli(0.5)) == 1 then m:sample("extra", D.normal(0, 1)) end
end)
local ok, err = pcall(plume.infer, m, nil, { method = "mh", samples = 50, chains = 3, seed = 1,
  init = function(c) return { mu = c == 3 and 1000 or 0 } end })
print(plume.mpi.rank, ok, err)
EOF2
out=$(PLUME_MPI_PRINT=all mpi_run 2 "$dir/chain.lua" 2>&1 | sort | tr '\n' '|')
want="0	false	$dir/chain.lua:4: mu too big|1	false	$dir/chain.lua:4: mu too big|"
[ "$out" = "$want" ] && echo "PASS mpi_chain_error_on_rank_1_raised_on_every_rank" \
    || echo "FAIL mpi_chain_error_on_rank_1_raised_on_every_rank: $out"
check() {  # name, expected stderr text, script args...
    name=$1 want=$2; shift 2
    mpi_run 2 "$@" >"$dir/out" 2>&1; rc=$?
    if [ $rc = 124 ]; then echo "FAIL $name: the job hung ($MPI_TIMEOUT s)"
    elif [ $rc = 0 ]; then echo "FAIL $name: exit 0: $(cat "$dir/out")"
    elif ! grep -qF "$want" "$dir/out"; then echo "FAIL $name: no '$want' in: $(head -5 "$dir/out")"
    elif grep -q "not reached" "$dir/out"; then echo "FAIL $name: the other rank went on"
    else echo "PASS $name"; fi
}
check mpi_error_on_rank_1_while_rank_0_waits_in_barrier "plume: rank 1: $dir/barrier.lua:2: boom on rank 1" \
    "$dir/barrier.lua" 1
check mpi_error_on_rank_0_while_rank_1_waits_in_barrier "plume: rank 0: $dir/barrier.lua:2: boom on rank 0" \
    "$dir/barrier.lua" 0
check mpi_error_on_rank_1_while_rank_0_samples_chains "plume: rank 1: $dir/infer.lua:2: rank 1 fails before sampling" \
    "$dir/infer.lua"
# Ctrl-C: mpirun passes SIGINT on as the end of the job
: >"$dir/int"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
    mpirun --oversubscribe -np 2 "$P" -e 'print("started") io.stdout:flush() local x = 0 while true do x = x + 1 end' \
    >"$dir/int" 2>&1 &
pid=$!
i=0; while ! grep -q started "$dir/int" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -INT $pid
i=0; while kill -0 $pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 $pid 2>/dev/null; then
    echo "FAIL mpi_sigint_ends_the_job: still running 10 s after SIGINT"
    kill -KILL $pid
else
    wait $pid; rc=$?
    [ $rc != 0 ] && echo "PASS mpi_sigint_ends_the_job" || echo "FAIL mpi_sigint_ends_the_job: exit 0"
fi
# os.exit: a failure on rank 1 ends the job while rank 0 waits; success on rank 0 lets rank 1 finish its script
mpi_run 2 -e 'if plume.mpi.rank == 1 then os.exit(3) end plume.mpi.barrier() print("not reached")' >"$dir/out" 2>&1
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] && ! grep -q "not reached" "$dir/out" && echo "PASS mpi_os_exit_failure_on_rank_1_ends_the_job" \
    || echo "FAIL mpi_os_exit_failure_on_rank_1_ends_the_job: exit $rc: $(head -3 "$dir/out")"
mpi_run 2 -e 'if plume.mpi.rank == 0 then os.exit(true) end io.stderr:write("rank 1 finished\n")' >"$dir/out" 2>&1
rc=$?
[ $rc = 0 ] && grep -q "rank 1 finished" "$dir/out" && echo "PASS mpi_os_exit_success_on_rank_0_lets_rank_1_finish" \
    || echo "FAIL mpi_os_exit_success_on_rank_0_lets_rank_1_finish: exit $rc: $(head -3 "$dir/out")"
# ranks that run different chains (options computed from the rank) all fail alike, before any exchange: a static
# program ("auto": the compiled chain driver) and a dynamic one (MH). Each rank writes its line in one call: the
# pieces of a print can interleave with the other rank's.
for method in auto mh; do
    out=$(PLUME_MPI_PRINT=all mpi_run 2 -e 'local m = plume.model(function(m)
          if m:sample("k", plume.dist.bernoulli(0.5)) == 1 and "'$method'" == "mh" then
            m:sample("x", plume.dist.normal(0, 1)) end end)
        local ok, e = pcall(plume.infer, m, nil, { method = "'$method'" == "mh" and "mh" or "auto", samples = 10,
          seed = 1, chains = 2 + plume.mpi.rank })
        io.write(string.format("%d\t%s\t%s\n", plume.mpi.rank, tostring(ok), tostring(e))) io.flush()' 2>&1 |
        sort | tr '\n' '|')
    case "$out" in
    "0	false	"*"the ranks disagree on chains (from 2"*"to 3"*"|1	false	"*"the ranks disagree on chains"*) 
        echo "PASS mpi_ranks_disagreeing_on_chains_fail_alike_$method" ;;
    *) echo "FAIL mpi_ranks_disagreeing_on_chains_fail_alike_$method: $out" ;;
    esac
done
