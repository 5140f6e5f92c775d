#!/bin/sh
# mpi_pf.sh -- particle filters for plume.ssm spread over MPI ranks give, for a seed, bitwise the logz, ESS,
# filtering means, variances and moments of one process, on every rank: bootstrap and guided (the derived
# optimal proposal), N not a multiple of the 512-particle chunks, 2 and 3 ranks (with 3 ranks and 700
# particles one rank holds none). A different seed differs (negative control: the comparison can fail).
. tests/mpi.sh
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
cat >"$D/f.lua" <<'LUA'
local N, method, seed, dir = tonumber(arg[1]), arg[2], tonumber(arg[3]), arg[4]
plume.mpi.write_all(true)   -- every rank writes its own output file (rank 0 alone would by default)
local m = plume.ssm{
  params = { a = 0.9, q = 0.5, r = 0.8 },
  init  = function(p) return plume.dist.normal(0, 1) end,
  trans = function(p, x, t) return plume.dist.normal(p.a * x, p.q) end,
  obs   = function(p, x, t) return plume.dist.normal(x, p.r) end,
}
local xs, ys = m:simulate(50, { seed = 42 })
ys[20] = 0 / 0   -- a missing observation
local f = plume.smc(m, ys, { particles = N, method = method, seed = seed, ess_threshold = 0.7,
                             moments = { sq = function(x) return x * x end } })
local out = { string.format("logz %.17g resamples %d", f.logz, f.resamples) }
for t = 1, #ys do
  out[#out + 1] = string.format("%.17g %.17g %.17g %.17g", f.means[t], f.vars[t], f.ess[t], f.moments.sq[t])
end
local fh = assert(io.open(string.format("%s/%s_%d_%d_%d_of_%d", dir, method, N, seed, plume.mpi.rank, plume.mpi.size), "w"))
fh:write(table.concat(out, "\n"), "\n")
fh:close()
LUA
for method in bootstrap guided; do
    for N in 20000 700; do
        "$P" "$D/f.lua" $N $method 7 "$D" || echo "FAIL ${method}_${N}_one_process_runs"
    done
done
mpi_ready mpi_pf_filters_match_one_process || exit 0
for method in bootstrap guided; do
    for N in 20000 700; do
        name=${method}_filter_N${N}_np2_np3_equal_one_process_on_every_rank
        mpi_run 2 "$D/f.lua" $N $method 7 "$D" >"$D/log" 2>&1 && mpi_run 3 "$D/f.lua" $N $method 7 "$D" >>"$D/log" 2>&1 \
            || { echo "FAIL $name: mpirun failed"; cat "$D/log"; continue; }
        ref="$D/${method}_${N}_7_0_of_1" bad=0 n=0
        for f in "$D/${method}_${N}_7_"*; do
            n=$((n + 1))
            cmp -s "$ref" "$f" || { bad=1; echo "  $f differs:"; diff "$ref" "$f" | head -4; }
        done
        [ $bad = 0 ] && [ $n = 6 ] && echo "PASS $name" || echo "FAIL $name ($n outputs)"
    done
done
# negative control: another seed changes the output
"$P" "$D/f.lua" 20000 bootstrap 8 "$D"
cmp -s "$D/bootstrap_20000_7_0_of_1" "$D/bootstrap_20000_8_0_of_1" \
    && echo "FAIL another_seed_gives_another_filter" || echo "PASS another_seed_gives_another_filter"
# a filter that loses every particle fails on every rank with the step and the observation, and the job exits
# non-zero (no rank waits for another in a collective)
cat >"$D/dead.lua" <<'LUA'
local m = plume.ssm{
  params = { r = 0.1 },
  init  = function(p) return plume.dist.uniform(0, 1) end,
  trans = function(p, x, t) return plume.dist.uniform(0, 1) end,
  obs   = function(p, x, t) return plume.dist.uniform(x - p.r, x + p.r) end,
}
plume.smc(m, { 0.5, 0.5, 5, 0.5 }, { particles = 3000, seed = 1 })
LUA
mpi_run 2 "$D/dead.lua" >"$D/dead" 2>&1
rc=$?
if [ $rc != 0 ] && [ $rc != 124 ] && grep -q "every particle has weight zero at t = 3 (y = 5)" "$D/dead"; then
    echo "PASS np2_filter_losing_every_particle_fails_with_its_message"
else
    echo "FAIL np2_filter_losing_every_particle_fails_with_its_message (exit $rc)"; cat "$D/dead"
fi
