-- sv_filter.lua -- stochastic volatility: filter and smooth with the native particle filters of plume.ssm.
--   x_1 ~ N(mu, sigma^2 / (1 - rho^2)),  x_t = mu + rho (x_{t-1} - mu) + sigma e_t,  y_t ~ N(0, exp(x_t))
-- Quick settings (run by the test suite); raise T and particles for real use.
local T, N = 200, 1000

local sv = plume.ssm{
  params = { mu = -1, rho = 0.95, sigma = 0.3 },
  init  = function(p) return plume.dist.normal(p.mu, p.sigma / plume.math.sqrt(1 - p.rho ^ 2)) end,
  trans = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,
  obs   = function(p, x, t) return plume.dist.normal(0, plume.math.exp(x / 2)) end,
}
local xs, ys = sv:simulate(T, { seed = 42 })

-- bootstrap filter: log evidence, ESS, filtering means and variances, and a moment (the volatility)
local f = plume.smc(sv, ys, { particles = N, seed = 1, moments = { vol = function(x) return plume.math.exp(x / 2) end } })
print(f)
print(string.format("resampled %d of %d steps, smallest ESS %.0f", f.resamples, T, math.min(table.unpack(f.ess))))

-- auxiliary filter: resampling looks ahead at p(y_t | the transition mean)
local a = plume.smc(sv, ys, { particles = N, seed = 1, method = "auxiliary" })
print(string.format("auxiliary logz %.2f (bootstrap %.2f)", a.logz, f.logz))

-- the log-likelihood at other parameters, as lgssm:loglik and hmm:loglik give exact ones
for _, rho in ipairs{ 0.8, 0.95, 0.99 } do
  print(string.format("rho = %.2f: loglik %.2f", rho, sv:loglik(ys, { particles = N, seed = 2, params = { rho = rho } })))
end

-- smoothing: FFBS trajectories (rejection sampling against the Gaussian transition's bound, exact fall-back)
local s = plume.smooth(sv, ys, { particles = N, seed = 3, trajectories = 200 })
print(string.format("ffbs: %d backward proposals, %d accepted, %d exact draws", s.backward.proposals,
                    s.backward.accepted, s.backward.exact))

-- PaRIS: smoothed sum of squared innovations, an additive functional h(t, x_prev, x)
local p = plume.smooth(sv, ys, { method = "paris", particles = N, seed = 4,
  functional = function(t, xprev, x) return (x - (-1 + 0.95 * (xprev + 1))) ^ 2 end })
print(string.format("paris: E[sum of squared innovations | y] = %.2f (T sigma^2 = %.2f)", p.value, T * 0.09))

local err_f, err_s = 0, 0
for t = 1, T do
  err_f = err_f + (f.means[t] - xs[t]) ^ 2
  err_s = err_s + (s.means[t] - xs[t]) ^ 2
end
print(string.format("rms error of the state: filtering %.3f, smoothing %.3f", math.sqrt(err_f / T), math.sqrt(err_s / T)))
for t = T - 4, T do
  print(string.format("t = %d  true x %.3f  filtered %.3f +- %.3f  smoothed %.3f  volatility %.3f", t, xs[t],
                      f.means[t], math.sqrt(f.vars[t]), s.means[t], f.moments.vol[t]))
end
