#!/bin/sh
# mpi_pf_pmcmc.sh -- PMMH and SMC^2 under mpirun: with distribute = "particles" (each filter spread over the
# ranks) and "chains" (chains or theta-particles shared out), 2 and 3 ranks give byte-identical PMMH draws
# (write_csv) and SMC^2 evidence, ESS and increments to one process, on every rank.
. tests/mpi.sh
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
cat >"$D/pm.lua" <<'LUA'
local what, mode, dir = arg[1], arg[2], arg[3]
local function sv(params) return plume.ssm{
  params = params,
  init  = function(p) return plume.dist.normal(p.mu, p.sigma / plume.math.sqrt(1 - p.rho ^ 2)) end,
  trans = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,
  obs   = function(p, x, t) return plume.dist.normal(0, plume.math.exp(x / 2)) end,
} end
local _, ys = sv{ mu = -1, rho = 0.95, sigma = 0.3 }:simulate(40, { seed = 42 })
plume.mpi.write_all(true)   -- every rank writes its own output file (rank 0 alone would by default)
local file = string.format("%s/%s_%s_%d_of_%d", dir, what, mode, plume.mpi.rank, plume.mpi.size)
if what == "pmmh" then
  local post = plume.pmmh(sv{ mu = -1, rho = plume.dist.uniform(0, 1), sigma = plume.dist.halfnormal(1) }, ys,
                          { particles = 600, samples = 15, warmup = 10, chains = 3, seed = 3, distribute = mode })
  post:write_csv(file)
else
  local r = plume.smc2(sv{ mu = -1, rho = plume.dist.uniform(0, 1), sigma = 0.3 }, ys,
                       { ntheta = 16, nx = 400, seed = 5, distribute = mode, nx_max = 800, nx_accept = 0.9 })
  local out = { string.format("%.17g %d %d", r.logz, r.rejuvenations, r.exchanges) }
  for t = 1, #ys do out[#out + 1] = string.format("%.17g %.17g", r.ess[t], r.logz_increments[t]) end
  local fh = assert(io.open(file, "w"))
  fh:write(table.concat(out, "\n"), "\n")
  fh:close()
end
LUA
for what in pmmh smc2; do
    "$P" "$D/pm.lua" $what chains "$D" || echo "FAIL ${what}_one_process_runs"
done
mpi_ready mpi_pf_pmcmc_matches_one_process || exit 0
for what in pmmh smc2; do
    for mode in particles chains; do
        name=${what}_distribute_${mode}_np2_np3_equal_one_process_on_every_rank
        mpi_run 2 "$D/pm.lua" $what $mode "$D" >"$D/log" 2>&1 && mpi_run 3 "$D/pm.lua" $what $mode "$D" >>"$D/log" 2>&1 \
            || { echo "FAIL $name: mpirun failed"; cat "$D/log"; continue; }
        bad=0 n=0
        for f in "$D/${what}_${mode}_"*; do
            n=$((n + 1))
            cmp -s "$D/${what}_chains_0_of_1" "$f" || { bad=1; echo "  $f differs"; }
        done
        [ $mode = chains ] && n=$((n - 1))   # the one-process reference
        [ $bad = 0 ] && [ $n = 5 ] && echo "PASS $name" || echo "FAIL $name ($n outputs)"
    done
done
