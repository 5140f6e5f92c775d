-- markov_plots.lua -- plots of Markov blocks, written to out/: a local-level Kalman filter and RTS smoother
-- with +-2 sd bands, the data (two lost observations) and the true level; the dishonest casino's state
-- posteriors as a heat strip; FitzHugh-Nagumo paths with noisy observations; a stochastic-volatility ssm.
if not os.execute("command -v gnuplot >/dev/null 2>&1") then
  print("SKIP example markov_plots: gnuplot not found (Debian package gnuplot-nox)")
  return
end
os.execute("mkdir -p out")

local level = plume.lgssm{ A = 1, Q = 0.05, C = 1, R = 1, m0 = 0, P0 = 10 }
local xs, ys = level:sample(80, 7)
ys[30], ys[31] = 0 / 0, 0 / 0
print(plume.plot.lgssm(level, ys, { truth = xs, file = "out/lgssm_level.svg", title = "local level" }))
print(plume.plot.lgssm(level, ys, { which = "smooth", height = 20 }))

local casino = plume.hmm{ init = { 0.5, 0.5 }, trans = { { 0.95, 0.05 }, { 0.1, 0.9 } },
  emit = { { 1/6, 1/6, 1/6, 1/6, 1/6, 1/6 }, { 0.1, 0.1, 0.1, 0.1, 0.1, 0.5 } } }
local states, rolls = casino:sample(300, 3)
print(plume.plot.hmm(casino, rolls, { file = "out/hmm_casino.svg", title = "fair (1) or loaded (2)?" }))

local fhn = plume.sde{ dim = 2, params = { s = 0, eps = 0.1, gamma = 1.5, beta = 0.8, sigma = 0.3 },
  drift     = function(p, x, t) return { (x[1] - x[1]^3 - x[2] + p.s) / p.eps, p.gamma * x[1] - x[2] + p.beta } end,
  diffusion = function(p, x, t) return { { 0, 0 }, { 0, p.sigma } } end }
local times, path = fhn:simulate{ x0 = { -0.5, -0.6 }, t_end = 10, dt = 1e-3, seed = 1, every = 10 }
local o = plume.sde_obs{ times = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, L = { { 1, 0 } }, noise = 0.01 }
local v = o:sample(o:at(times, path))
print(plume.plot.sde(times, path, { obs = { times = o.times, values = v }, file = "out/sde_fhn.svg" }))
local t5, many = fhn:simulate{ x0 = { -0.5, -0.6 }, t_end = 5, dt = 1e-3, seed = 2, paths = 10, every = 10 }
print(plume.plot.sde(t5, many, { file = "out/sde_fhn_paths.svg", title = "10 paths" }))

local sv = plume.ssm{ params = { mu = -1, rho = 0.95, sigma = 0.3 },
  init  = function(p) return plume.dist.normal(p.mu, p.sigma / plume.math.sqrt(1 - p.rho^2)) end,
  trans = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,
  obs   = function(p, x, t) return plume.dist.normal(0, plume.math.exp(x / 2)) end }
local lx, ly = sv:simulate(200, { seed = 1 })
print(plume.plot.ssm(lx, ly, { file = "out/ssm_sv.svg", title = "log volatility and returns" }))
