-- stochastic_volatility.lua -- a stochastic-volatility state-space model written in plain Lua, traced once
-- and compiled: the log-volatility x_t is an AR(1) process and the returns y_t have standard deviation
-- exp(x_t / 2). Simulates a path and many particles, and summarises them.
local normal, exp, sqrt = plume.dist.normal, plume.math.exp, plume.math.sqrt

local sv = plume.ssm{
  params = { mu = -1, rho = 0.95, sigma = 0.3 },
  init   = function(p)       return normal(p.mu, p.sigma / sqrt(1 - p.rho^2)) end,
  trans  = function(p, x, t) return normal(p.mu + p.rho * (x - p.mu), p.sigma) end,
  obs    = function(p, x, t) return normal(0, exp(x / 2)) end,
}
print(sv)

local function summary(name, v, n)
  local s, s2, lo, hi = 0, 0, math.huge, -math.huge
  for i = 1, n do
    s, s2 = s + v[i], s2 + v[i] * v[i]
    lo, hi = math.min(lo, v[i]), math.max(hi, v[i])
  end
  local m = s / n
  print(("  %-22s mean %8.4f   sd %7.4f   min %8.4f   max %8.4f"):format(name, m, math.sqrt(s2 / n - m * m), lo, hi))
end

-- one path of 1000 steps
local T = 1000
local xs, ys = sv:simulate(T, { seed = 1 })
print(("one path of %d steps:"):format(T))
summary("log-volatility x_t", xs, T)
summary("returns y_t", ys, T)
local big = 0
for t = 1, T do if math.abs(ys[t]) > 2 * math.exp(xs[t] / 2) then big = big + 1 end end
print(("  returns beyond 2 standard deviations: %d (expected about %.0f)"):format(big, 0.0455 * T))
print(("  complete-data log density: %.3f"):format(sv:logjoint(xs, ys)))

-- many particles at once: the marginal of x_t is N(mu, sigma^2 / (1 - rho^2)) at every t
local n, steps = 20000, 100
local X = sv:simulate(steps, { seed = 2, particles = n })
local last = {}
for i = 1, n do last[i] = X[(steps - 1) * n + i] end
print(("%d particles x %d steps, x_%d across particles:"):format(n, steps, steps))
summary("x_T", last, n)
print(("  theory: mean %.4f, sd %.4f"):format(-1, 0.3 / math.sqrt(1 - 0.95^2)))

-- the same model at other parameters, without recompiling
print(("log density of the path at rho = 0.8: %.3f"):format(sv:logjoint(xs, ys, { rho = 0.8 })))
