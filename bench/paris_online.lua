-- paris_online.lua -- on-line PaRIS (plume.smooth method = "paris", the default online = true): the smoothed
-- additive functional S = (sum x_t, sum x_{t-1} x_t) on the stochastic-volatility model, T = 200, N~ = 2
-- backward draws by accept-reject against the derived Gaussian bound, for N = 1e3, 1e4, 1e5 particles. Time
-- should grow linearly in N: the transition-density evaluations per particle-step stay constant (accept-reject
-- rounds, then a few Metropolis-Hastings steps from the particle's ancestor, never the O(N) exact draw), and
-- memory stays O(N), not O(N T). The time per evaluation rises once the random backward draws no longer fit in
-- the L2 cache (N = 1e5: a few MB of particles, weights and alias table).
-- Usage: plume bench/paris_online.lua [reps] [T]
local reps = tonumber(arg and arg[1]) or 3
local T = tonumber(arg and arg[2]) or 200
local sv = plume.ssm{
  params = { mu = -1, rho = 0.95, sigma = 0.3 },
  init  = function(p) return plume.dist.normal(p.mu, p.sigma / plume.math.sqrt(1 - p.rho ^ 2)) end,
  trans = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,
  obs   = function(p, x, t) return plume.dist.normal(0, plume.math.exp(x / 2)) end,
}
local _, ys = sv:simulate(T, { seed = 1 })
local function rss_mb()
  local f = io.open("/proc/self/status")
  if not f then return 0 / 0 end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)")) / 1024
end
local h = function(t, xprev, x) return { x, xprev * x } end
print(string.format("on-line PaRIS, sv model, T = %d, N~ = 2, one thread (best of %d)", T, reps))
print("       N    seconds   ns/particle-step   ratio to N=1e3 per particle   kernel evaluations/particle-step" ..
      "   peak RSS MB   E[sum x_t | y]")
local base
for _, N in ipairs{ 1000, 10000, 100000 } do
  local best, v, evals = math.huge, nil, nil
  for r = 1, reps do
    local t0 = os.clock()
    local res = plume.smooth(sv, ys, { method = "paris", particles = N, seed = r, functional = h, threads = 1 })
    best = math.min(best, os.clock() - t0)
    v = res.value[1]
    evals = (res.backward.proposals + 6 * res.backward.mh + N * res.backward.exact) / (N * T)
  end
  local ns = best / (N * T) * 1e9
  base = base or ns
  print(string.format("%8d  %9.3f   %16.1f   %27.2f   %32.2f   %11.0f   %.3f", N, best, ns, ns / base, evals, rss_mb(),
                      v))
end
