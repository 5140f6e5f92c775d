-- test_ssm.lua -- plume.ssm: :logjoint equals hand-computed densities (scalar, multivariate, discrete,
-- covariates), :simulate moments match the stationary linear-Gaussian model, errors name what is wrong.
local T = dofile("tests/lua/check.lua")
local D, M = plume.dist, plume.math

local function sv_model()
  return plume.ssm{
    params = { mu = -1, rho = 0.95, sigma = 0.3 },
    init   = function(p)       return D.normal(p.mu, p.sigma / M.sqrt(1 - p.rho^2)) end,
    trans  = function(p, x, t) return D.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,
    obs    = function(p, x, t) return D.normal(0, M.exp(x / 2)) end,
  }
end

T.test("logjoint of the stochastic-volatility model equals the hand-computed density", function()
  local sv = sv_model()
  local xs, ys = sv:simulate(50, { seed = 3 })
  local lj = D.normal(-1, 0.3 / math.sqrt(1 - 0.95^2)):logpdf(xs[1]) + D.normal(0, math.exp(xs[1] / 2)):logpdf(ys[1])
  for t = 2, 50 do
    lj = lj + D.normal(-1 + 0.95 * (xs[t - 1] + 1), 0.3):logpdf(xs[t]) + D.normal(0, math.exp(xs[t] / 2)):logpdf(ys[t])
  end
  T.near(sv:logjoint(xs, ys), lj, 1e-10 * math.abs(lj))
  -- other parameter values, without recompiling
  local lj2 = sv:logjoint(xs, ys, { rho = 0.5 })
  local h = D.normal(-1, 0.3 / math.sqrt(1 - 0.25)):logpdf(xs[1]) + D.normal(0, math.exp(xs[1] / 2)):logpdf(ys[1])
  for t = 2, 50 do
    h = h + D.normal(-1 + 0.5 * (xs[t - 1] + 1), 0.3):logpdf(xs[t]) + D.normal(0, math.exp(xs[t] / 2)):logpdf(ys[t])
  end
  T.near(lj2, h, 1e-10 * math.abs(h))
  T.eq(sv.params.rho, 0.95)
end)

T.test("multivariate states: mvnormal and independent components score exactly", function()
  local m = plume.ssm{
    dim = 2, params = { a = 0.8, s = 0.5 },
    init  = function(p) return D.mvnormal({0, 0}, {{1, 0.3}, {0.3, 1}}) end,
    trans = function(p, x, t) return { D.normal(p.a * x[1] + 0.1 * x[2], p.s), D.normal(x[2] - 0.2 * x[1], 2 * p.s) } end,
    obs   = function(p, x, t) return D.mvnormal({x[1] + x[2], x[1]}, {{p.s, 0}, {0, 1}}) end,
  }
  local xs, ys = m:simulate(20, { seed = 5 })
  T.eq(#xs[1], 2); T.eq(#ys[1], 2)
  local lj = D.mvnormal({0, 0}, {{1, 0.3}, {0.3, 1}}):logpdf(xs[1])
  for t = 1, 20 do
    local x = xs[t]
    if t > 1 then
      local q = xs[t - 1]
      lj = lj + D.normal(0.8 * q[1] + 0.1 * q[2], 0.5):logpdf(x[1]) + D.normal(q[2] - 0.2 * q[1], 1):logpdf(x[2])
    end
    lj = lj + D.mvnormal({x[1] + x[2], x[1]}, {{0.5, 0}, {0, 1}}):logpdf(ys[t])
  end
  T.near(m:logjoint(xs, ys), lj, 1e-10 * math.abs(lj))
end)

T.test("discrete states (an HMM through categorical transitions) score and move as the matrix says", function()
  local A = { {0.9, 0.1, 0.0}, {0.2, 0.7, 0.1}, {0.3, 0.3, 0.4} }
  local hmm = plume.ssm{
    params = { s = 0.5 },
    init  = function(p) return D.categorical({1/3, 1/3, 1/3}) end,
    trans = function(p, x, t) return D.categorical(plume.pick(x, A)) end,
    obs   = function(p, x, t) return D.normal(x, p.s) end,
  }
  local xs, ys = hmm:simulate(30, { seed = 2 })
  local lj = math.log(1/3) + D.normal(xs[1], 0.5):logpdf(ys[1])
  for t = 2, 30 do lj = lj + math.log(A[xs[t - 1]][xs[t]]) + D.normal(xs[t], 0.5):logpdf(ys[t]) end
  T.ok(math.type(xs[1]) == "integer", "states are integers")
  T.near(hmm:logjoint(xs, ys), lj, 1e-10 * math.abs(lj))
  -- transition frequencies from state 2 over many particles: within 5 standard errors of A[2]
  local X = hmm:simulate(2, { seed = 9, particles = 30000 })
  local from2, to = 0, {0, 0, 0}
  for i = 1, 30000 do
    if X[i] == 2 then from2 = from2 + 1; to[X[30000 + i]] = to[X[30000 + i]] + 1 end
  end
  for j = 1, 3 do
    local p = A[2][j]
    T.near(to[j] / from2, p, 5 * math.sqrt(p * (1 - p) / from2) + 1e-12, "A[2][" .. j .. "]")
  end
end)

T.test("covariates: p.<column>[t] reads the data at the current time", function()
  local u = { 0.5, -1, 2, 0.3, 1.1, -0.7 }
  local m = plume.ssm{
    params = { b = 0.7 }, data = { u = u },
    init  = function(p) return D.normal(p.u[1], 1) end,
    trans = function(p, x, t) return D.normal(0.5 * x + p.b * p.u[t] + p.u[t - 1], 1) end,
    obs   = function(p, x, t) return D.poisson(M.exp(x / 4 + p.u[t])) end,
  }
  local xs, ys = m:simulate(6, { seed = 4 })
  local lj = D.normal(0.5, 1):logpdf(xs[1]) + D.poisson(math.exp(xs[1] / 4 + u[1])):logpdf(ys[1])
  for t = 2, 6 do
    lj = lj + D.normal(0.5 * xs[t - 1] + 0.7 * u[t] + u[t - 1], 1):logpdf(xs[t])
      + D.poisson(math.exp(xs[t] / 4 + u[t])):logpdf(ys[t])
  end
  T.near(m:logjoint(xs, ys), lj, 1e-10 * math.abs(lj))
  T.raises(function() m:simulate(7, { seed = 1 }) end, "outside the data")
end)

T.test("simulate moments match the stationary linear-Gaussian model", function()
  -- x_1 ~ N(0, s^2/(1-a^2)), x_t = a x_{t-1} + s e_t, y_t = x_t + r u_t: every x_t has variance v = s^2/(1-a^2),
  -- Cov(x_t, x_{t-1}) = a v and Var(y_t) = v + r^2. n = 40000 paths: tolerances are 5 standard errors
  -- (mean: sqrt(v/n); variance: v sqrt(2/n); covariance: sqrt((1+a^2) v^2 / n)).
  local a, s, r, n = 0.9, 0.5, 0.3, 40000
  local lg = plume.ssm{
    params = { a = a, s = s, r = r },
    init  = function(p) return D.normal(0, p.s / M.sqrt(1 - p.a^2)) end,
    trans = function(p, x) return D.normal(p.a * x, p.s) end,
    obs   = function(p, x) return D.normal(x, p.r) end,
  }
  local X, Y = lg:simulate(10, { seed = 11, particles = n })
  local v = s^2 / (1 - a^2)
  local m, m2, c, yv = 0, 0, 0, 0
  for i = 1, n do
    local x, xp, y = X[9 * n + i], X[8 * n + i], Y[9 * n + i]
    m = m + x; m2 = m2 + x * x; c = c + x * xp; yv = yv + y * y
  end
  m, m2, c, yv = m / n, m2 / n, c / n, yv / n
  T.near(m, 0, 5 * math.sqrt(v / n), "mean")
  T.near(m2, v, 5 * v * math.sqrt(2 / n), "variance")
  T.near(c, a * v, 5 * math.sqrt((1 + a^2) * v^2 / n), "lag-1 covariance")
  T.near(yv, v + r^2, 5 * (v + r^2) * math.sqrt(2 / n), "observation variance")
  -- negative control: the variance of a model with a = 0.8 is far outside the same tolerance
  T.ok(math.abs(m2 - s^2 / (1 - 0.64)) > 5 * v * math.sqrt(2 / n), "negative control")
  -- the same draws whatever the thread count
  local X1 = lg:simulate(3, { seed = 1, particles = 1000, threads = 1 })
  local X2 = lg:simulate(3, { seed = 1, particles = 1000, threads = 2 })
  for i = 1, 3000 do T.ok(X1[i] == X2[i], "thread-count independent") end
end)

T.test("priors, parameter overrides and errors", function()
  local m = plume.ssm{
    params = { mu = D.normal(0, 1), s = 0.5 },
    init  = function(p) return D.normal(p.mu, 1) end,
    trans = function(p, x) return D.normal(x, p.s) end,
    obs   = function(p, x) return D.normal(x, 1) end,
  }
  T.ok(tostring(m.params.mu):find("normal"), "a prior is kept")
  local xs = m:simulate(3, { seed = 1 })               -- mu drawn from its prior
  T.eq(#xs, 3)
  local xs2, ys2 = m:simulate(3, { seed = 1, params = { mu = 2 } })
  T.near(m:logjoint(xs2, ys2, { mu = 2 }), m:logjoint(xs2, ys2, { mu = 2 }), 0)
  T.raises(function() m:logjoint(xs2, ys2) end, "has no value")
  T.raises(function() m:simulate(3, { params = { nope = 1 } }) end, "unknown parameter 'nope'")
  T.raises(function() plume.ssm{ params = { a = "x" }, init = function() end, trans = function() end, obs = function() end } end,
    "params.a must be a number")
  T.raises(function()
    plume.ssm{ dim = 2, init = function(p) return D.normal(0, 1) end, trans = function(p, x) return D.normal(0, 1) end,
               obs = function(p, x) return D.normal(0, 1) end }
  end, "but dim = 2")
  T.raises(function()
    plume.ssm{ init = function(p) return D.normal(0, 1) end, trans = function(p, x) if x > 0 then return 1 end end,
               obs = function(p, x) return D.normal(0, 1) end }
  end, "plume.ifelse")
  T.raises(function()
    plume.ssm{ params = { s = -1 }, init = function(p) return D.normal(0, 1) end,
               trans = function(p, x) return D.normal(x, p.s) end, obs = function(p, x) return D.normal(x, 1) end }
      :simulate(3, { seed = 1 })
  end, "NaN")
  local withq = plume.ssm{
    init = function(p) return D.normal(0, 1) end, trans = function(p, x) return D.normal(x, 1) end,
    obs = function(p, x) return D.normal(x, 1) end,
    proposal = function(p, x, y, t) return D.normal((x + y) / 2, M.sqrt(0.5)) end,
  }
  T.ok(withq.has_proposal, "proposal compiled")
end)

T.test("logjoint gradients equal central differences (parameters and states)", function()
  local m = plume.ssm{
    dim = 2, params = { a = 0.8, s = 0.5, r = 1.3 },
    init  = function(p) return D.mvnormal({0, 0}, {{1, 0.3}, {0.3, 1}}) end,
    trans = function(p, x, t) return { D.normal(p.a * M.tanh(x[1]) + 0.1 * x[2], p.s), D.normal(x[2] - 0.2 * x[1], 2 * p.s) } end,
    obs   = function(p, x, t) return D.normal(x[1] + x[2] * x[2], p.r) end,
  }
  local xs, ys = m:simulate(8, { seed = 5 })
  local g, h = m:logjoint_grad(xs, ys), 1e-6
  for _, k in ipairs({ "a", "s", "r" }) do
    local v = m.params[k]
    local fd = (m:logjoint(xs, ys, { [k] = v + h }) - m:logjoint(xs, ys, { [k] = v - h })) / (2 * h)
    T.near(g.params[k], fd, 1e-6 * math.max(1, math.abs(fd)), "d/d" .. k)
  end
  for _, tk in ipairs({ {1, 1}, {4, 2}, {8, 2} }) do
    local t, k = tk[1], tk[2]
    local function at(d)
      local c = {}
      for i = 1, #xs do c[i] = { xs[i][1], xs[i][2] } end
      c[t][k] = c[t][k] + d
      return m:logjoint(c, ys)
    end
    local fd = (at(h) - at(-h)) / (2 * h)
    T.near(g.x[t][k], fd, 1e-6 * math.max(1, math.abs(fd)), ("d/dx_%d[%d]"):format(t, k))
  end
end)

-- issue 8: misspelt options and fields are errors listing the valid ones; sizes are capped with the limit
-- named; a parameter with no value is named
T.test("unknown options, size limits and unnamed parameters", function()
  local m = sv_model()
  local err = T.raises(function() m:simulate(10, { sed = 1 }) end,
    "ssm:simulate: unknown option 'sed' (options: seed, particles, params, threads)")
  T.ok(err:find("test_ssm.lua:%d+:"), "names the caller's line: " .. err)
  T.raises(function() m:simulate(1e12) end, "ssm:simulate: T must be in 1..1e8 (got 1000000000000)")
  T.raises(function() m:simulate(10, { particles = 1e15 }) end, "option 'particles' must be in 1..1e8 (got 1000000000000000)")
  T.raises(function() m:simulate(1e5, { particles = 1e5 }) end, "over the limit of 4e8")
  T.raises(function()
    plume.ssm{ params = {}, init = function(p) return D.normal(0, 1) end, trans = function(p, x) return D.normal(x, 1) end,
               obs = function(p, x) return D.normal(x, 1) end, observe = 1 }
  end, "ssm: unknown option 'observe' (options: params, data, dim, init, trans, obs, proposal)")
  local u = plume.ssm{ params = { s = 0.5, mu = 0 }, init = function(p) return D.normal(p.mu, 1) end,
    trans = function(p, x) return D.normal(x, p.s) end, obs = function(p, x) return D.normal(x, 1) end }
  T.raises(function() u:simulate(3, { params = { s = 0 / 0 } }) end, "ssm:simulate: parameter 's' has no value (NaN")
end)
