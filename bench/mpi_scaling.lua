-- mpi_scaling.lua -- one bootstrap filter run of a stochastic volatility model, for bench/mpi_scaling.sh.
-- usage: [mpirun -np K] plume bench/mpi_scaling.lua N T ess_threshold threads
-- Each rank writes one line to stderr: "rank R of K: N T seconds bytes_sent peak_rss_kB logz"; seconds is the
-- wall time of the filter alone, bytes_sent what the rank handed MPI for other ranks during it.
local N, T = tonumber(arg[1]), tonumber(arg[2])
local thr, threads = tonumber(arg[3]), tonumber(arg[4])
local sv = plume.ssm{
  params = { mu = -1, rho = 0.95, sigma = 0.3 },
  init  = function(p) return plume.dist.normal(p.mu, p.sigma / plume.math.sqrt(1 - p.rho ^ 2)) end,
  trans = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,
  obs   = function(p, x, t) return plume.dist.normal(0, plume.math.exp(x / 2)) end,
}
local _, ys = sv:simulate(T, { seed = 42 })
local function wall()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l")); p:close(); return t
end
local function hwm()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmHWM:%s+(%d+)")
    if v then return tonumber(v) end
  end
end
local b0, t0 = plume.mpi.bytes_sent(), wall()
local f = plume.smc(sv, ys, { particles = N, seed = 1, ess_threshold = thr, threads = threads })
local secs, bytes = wall() - t0, plume.mpi.bytes_sent() - b0
io.stderr:write(string.format("rank %d of %d: %d %d %.3f %d %d %.10f %d\n", plume.mpi.rank, plume.mpi.size, N, T, secs,
                              bytes, hwm(), f.logz, f.resamples))
