-- sv_pmmh.lua -- stochastic volatility: filter, smooth, and learn the parameters by particle marginal
-- Metropolis-Hastings (plume.pmmh), every piece native over the compiled plume.ssm.
--   x_1 ~ N(mu, sigma^2 / (1 - rho^2)),  x_t = mu + rho (x_{t-1} - mu) + sigma e_t,  y_t ~ N(0, exp(x_t))
-- Quick settings run in the test suite; `plume sv_pmmh.lua full` runs the settings quoted in doc/manual.md.
local full = arg and arg[1] == "full"
local T = full and 500 or 150
local N = full and 400 or 100
local samples, warmup, chains = full and 2000 or 300, full and 1000 or 300, full and 4 or 2

-- the truth we simulate from, then the same model with priors on what we learn
local truth = { mu = -1, rho = 0.95, sigma = 0.3 }
local function sv_model(params)
  return plume.ssm{
    params = params,
    init  = function(p) return plume.dist.normal(p.mu, p.sigma / plume.math.sqrt(1 - p.rho ^ 2)) end,
    trans = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,
    obs   = function(p, x, t) return plume.dist.normal(0, plume.math.exp(x / 2)) end,
  }
end
local sv = sv_model(truth)
local xs, ys = sv:simulate(T, { seed = 42 })

-- filter and smooth at the true parameters
local f = plume.smc(sv, ys, { particles = 10 * N, seed = 1 })
local s = plume.smooth(sv, ys, { particles = 10 * N, seed = 2, trajectories = 100 })
local err_f, err_s = 0, 0
for t = 1, T do
  err_f = err_f + (f.means[t] - xs[t]) ^ 2
  err_s = err_s + (s.means[t] - xs[t]) ^ 2
end
print(string.format("T = %d: logz %.2f; RMSE of the state: filter %.3f, FFBS smoother %.3f", T, f.logz,
                    math.sqrt(err_f / T), math.sqrt(err_s / T)))

-- PMMH on rho and sigma (mu known), random-walk proposals on the unconstrained scale (logit of rho, log of
-- sigma) adapted during warm-up, the bootstrap filter's logz as the likelihood
local learn = sv_model{ mu = -1, rho = plume.dist.uniform(0, 1), sigma = plume.dist.halfnormal(1) }
local t0 = os.clock()
local post = plume.pmmh(learn, ys, { particles = N, samples = samples, warmup = warmup, chains = chains, seed = 3,
                                     threads = 2 })
local secs = os.clock() - t0
print(post)
local rates = {}
for c, a in ipairs(post.accept_rate) do rates[c] = string.format("%.2f", a) end
print(string.format("acceptance per chain: %s; %.1f s CPU", table.concat(rates, " "), secs))
local sm = post:summary()
for _, name in ipairs{ "rho", "sigma" } do
  local r = sm[name]
  print(string.format("%-5s truth %.3f, posterior %.3f (90%% interval %.3f .. %.3f)", name, truth[name], r.mean,
                      r.q5, r.q95))
end
