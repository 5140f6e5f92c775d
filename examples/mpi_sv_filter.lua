-- mpi_sv_filter.lua -- a stochastic volatility filter with ten million particles, spread over the ranks of an
-- MPI job when run as `mpirun -np K plume mpi_sv_filter.lua`, and whole in one process under plain `plume`.
--   x_1 ~ N(mu, sigma^2 / (1 - rho^2)),  x_t = mu + rho (x_{t-1} - mu) + sigma e_t,  y_t ~ N(0, exp(x_t))
-- Every rank holds a block of the particles; each step gathers per-chunk sums and every rank adds them in the
-- same order, and resampling moves particles between ranks to keep the blocks balanced. So the output below is
-- the same, digit for digit, for any number of ranks (tests/cli/mpi_sv_filter.sh checks 1 against 2), and every
-- rank gets the whole result: a script goes on identically everywhere.
-- Short settings (run by the test suite on one rank); `plume mpi_sv_filter.lua 100` filters 100 steps.
local T = tonumber(arg and arg[1]) or 5
local N = 10000000

local sv = plume.ssm{
  params = { mu = -1, rho = 0.95, sigma = 0.3 },
  init  = function(p) return plume.dist.normal(p.mu, p.sigma / plume.math.sqrt(1 - p.rho ^ 2)) end,
  trans = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,
  obs   = function(p, x, t) return plume.dist.normal(0, plume.math.exp(x / 2)) end,
}
local xs, ys = sv:simulate(T, { seed = 42 })

-- the filter: under mpirun the particles are spread over the ranks (distribute = "particles", the default)
local t0 = os.time()
local f = plume.smc(sv, ys, { particles = N, seed = 1, ess_threshold = 1,
                              moments = { vol = function(x) return plume.math.exp(x / 2) end } })
if plume.mpi.is_root then   -- every rank has f; one prints it
  print(string.format("%d particles on %d rank(s), %d steps, resampled at each: logz %.10f", N, plume.mpi.size, T,
                      f.logz))
  for t = 1, T do
    print(string.format("t = %2d: y %7.3f  x %7.3f  E[x | y_1:t] %9.6f (sd %.6f)  E[vol] %.6f  ESS %.0f", t, ys[t], xs[t],
                        f.means[t], math.sqrt(f.vars[t]), f.moments.vol[t], f.ess[t]))
  end
end
io.stderr:write(string.format("rank %d: %d s\n", plume.mpi.rank, os.time() - t0))
