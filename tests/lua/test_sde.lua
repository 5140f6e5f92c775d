-- test_sde.lua -- plume.sde: Euler-Maruyama at small dt against the exact Ornstein-Uhlenbeck transition,
-- Milstein against geometric Brownian motion moments, user grids, the drift Jacobian against finite
-- differences, plume.sde_obs, and the errors.
local T = dofile("tests/lua/check.lua")
local M = plume.math

local function moments(X, row, n)
  local m, v = 0, 0
  for i = 1, n do m = m + X[(row - 1) * n + i] end
  m = m / n
  for i = 1, n do v = v + (X[(row - 1) * n + i] - m)^2 end
  return m, v / (n - 1)
end

T.test("Euler at small dt matches the exact OU Gaussian kernel", function()
  -- dx = th (mu - x) dt + s dW, x0 = 2: x_T ~ N(mu + (x0 - mu) e^{-th T}, s^2 (1 - e^{-2 th T}) / (2 th)).
  -- n = 20000 paths; tolerance 5 standard errors (mean sqrt(v/n), variance v sqrt(2/n)) plus the O(dt) Euler
  -- bias (|bias| <= th * dt * |x0 - mu| = 1.5e-3 here).
  local th, mu, s, n = 1.2, 0.5, 0.4, 20000
  local ou = plume.sde{ params = { th = th, mu = mu, s = s },
    drift = function(p, x, t) return p.th * (p.mu - x) end,
    diffusion = function(p, x, t) return p.s end }
  local times, X = ou:simulate{ x0 = 2, t_end = 1, dt = 1e-3, paths = n, every = 500, seed = 7 }
  T.eq(#times, 3); T.near(times[3], 1, 1e-12)
  local em, ev = mu + (2 - mu) * math.exp(-th), s^2 * (1 - math.exp(-2 * th)) / (2 * th)
  local m, v = moments(X, 3, n)
  T.near(m, em, 5 * math.sqrt(ev / n) + 1.5e-3, "mean")
  T.near(v, ev, 5 * ev * math.sqrt(2 / n) + 1.5e-3, "variance")
  -- negative control: a model with th = 1.5 has a mean far outside the tolerance
  T.ok(math.abs(m - (mu + (2 - mu) * math.exp(-1.5))) > 5 * math.sqrt(ev / n) + 1.5e-3, "negative control")
  -- same draws whatever the thread count
  local _, A = ou:simulate{ x0 = 2, t_end = 0.1, dt = 1e-2, paths = 600, seed = 1, threads = 1 }
  local _, B = ou:simulate{ x0 = 2, t_end = 0.1, dt = 1e-2, paths = 600, seed = 1, threads = 2 }
  for i = 1, #A do T.ok(A[i] == B[i], "thread-count independent") end
end)

T.test("Milstein matches geometric Brownian motion moments", function()
  -- dx = a x dt + b x dW: E x_T = x0 e^{aT}, Var x_T = x0^2 e^{2aT} (e^{b^2 T} - 1); 5 standard errors
  -- (the variance's from the fourth moment of the lognormal).
  local a, b, n, x0 = 0.3, 0.5, 40000, 1
  local gbm = plume.sde{ params = { a = a, b = b },
    drift = function(p, x) return p.a * x end, diffusion = function(p, x) return p.b * x end }
  local _, X = gbm:simulate{ x0 = x0, t_end = 1, dt = 1e-2, paths = n, every = 100, seed = 3, method = "milstein" }
  local m, v = moments(X, 2, n)
  local em, ev = math.exp(a), math.exp(2 * a) * (math.exp(b^2) - 1)
  local m4 = math.exp(4 * a + 6 * b^2)                   -- E x^4
  T.near(m, em, 5 * math.sqrt(ev / n), "mean")
  T.near(v, ev, 5 * math.sqrt((m4 - (ev + em^2)^2) / n), "variance")
end)

T.test("user time grids, several dimensions and the saved states", function()
  local fhn = plume.sde{ dim = 2, params = { s = 0, eps = 0.1, gamma = 1.5, beta = 0.8, sigma = 0.3 },
    drift = function(p, x, t) return { (x[1] - x[1]^3 - x[2] + p.s) / p.eps, p.gamma * x[1] - x[2] + p.beta } end,
    diffusion = function(p, x, t) return { {0, 0}, {0, p.sigma} } end }
  local times, path = fhn:simulate{ x0 = {-0.5, -0.6}, times = {0, 0.1, 0.15, 0.4, 1}, seed = 1 }
  T.eq(#times, 5); T.eq(#path, 5); T.eq(path[1][1], -0.5); T.eq(times[4], 0.4)
  -- the first step by hand: only x2 is noisy, so x1 is deterministic
  local dt = 0.1
  T.near(path[2][1], -0.5 + dt * ((-0.5 + 0.125 + 0.6) / 0.1), 1e-12, "x1 after one Euler step")
  T.ok(fhn.diagonal, "zero off-diagonal diffusion counts as diagonal noise")
  local _, many = fhn:simulate{ x0 = {-0.5, -0.6}, t_end = 1, dt = 0.01, paths = 10, every = 50, seed = 1 }
  T.eq(#many, 2); T.eq(many[1]:shape(), 3)
end)

T.test("the drift Jacobian equals finite differences of the drift", function()
  local m = plume.sde{ dim = 2, params = { k = 0.7 },
    drift = function(p, x, t) return { M.sin(x[1]) * x[2] + p.k * t, M.exp(-x[1] * x[2]) } end,
    diffusion = function(p, x, t) return { 0.1, 0.2 } end }
  local x, t, h = {0.4, -0.3}, 0.5, 1e-6
  local J = m:jacobian(x, t)
  for j = 1, 2 do
    local xp, xm = {x[1], x[2]}, {x[1], x[2]}
    xp[j] = xp[j] + h; xm[j] = xm[j] - h
    local fp, fm = m:drift(xp, t), m:drift(xm, t)
    for i = 1, 2 do T.near(J[i][j], (fp[i] - fm[i]) / (2 * h), 1e-8, ("J[%d][%d]"):format(i, j)) end
  end
  local G = m:diffusion(x, t)
  T.eq(G[1][1], 0.1); T.eq(G[1][2], 0); T.eq(G[2][2], 0.2)
end)

T.test("sde_obs samples and scores linear Gaussian observations", function()
  local o = plume.sde_obs{ times = {0.5, 1}, L = {{1, 0}}, noise = 0.04 }
  local states = { {1, 2}, {3, 4} }
  local v = o:sample(states)
  local want = plume.dist.normal(1, 0.2):logpdf(v[1]) + plume.dist.normal(3, 0.2):logpdf(v[2])
  T.near(o:logpdf(states, v), want, 1e-12)
  local times, path = plume.sde{ params = {}, drift = function(p, x) return -x end,
    diffusion = function(p, x) return 0.1 end }:simulate{ x0 = 1, t_end = 1, dt = 0.25, seed = 1 }
  local at = plume.sde_obs{ times = {0.5, 1}, L = {1}, noise = 0.1 }:at(times, path)
  T.eq(at[1], path[3]); T.eq(at[2], path[5])
  T.raises(function() plume.sde_obs{ times = {1, 0.5}, L = {1}, noise = 1 } end, "times must increase")
  T.raises(function() plume.sde_obs{ times = {1}, L = {1}, noise = -1 } end, "must be > 0")
end)

T.test("errors name what is wrong", function()
  local full = plume.sde{ dim = 2, params = { c = 0.1 },
    drift = function(p, x) return { -x[1], -x[2] } end,
    diffusion = function(p, x) return { {1, p.c}, {0, 1} } end }
  T.raises(function() full:simulate{ x0 = {0, 0}, t_end = 1, dt = 0.1, method = "milstein" } end, "diagonal noise")
  T.raises(function() full:simulate{ x0 = {0, 0}, times = {0, 1, 0.5} } end, "times must increase")
  T.raises(function() full:simulate{ x0 = {0}, t_end = 1, dt = 0.1 } end, "x0 must have 2 values")
  T.raises(function() full:simulate{ x0 = {0, 0}, t_end = 1, dt = 0.1, method = "rk4" } end, "method must be")
  T.raises(function()
    plume.sde{ dim = 2, drift = function(p, x) return { x[1] } end, diffusion = function(p, x) return {1, 1} end }
  end, "returned 1 values, expected 2")
  T.raises(function()
    plume.sde{ drift = function(p, x) if x > 1 then return 1 end return x end, diffusion = function() return 1 end }
  end, "plume.ifelse")
  local blow = plume.sde{ params = {}, drift = function(p, x) return x * x * x end, diffusion = function() return 0 end }
  T.raises(function() blow:simulate{ x0 = 10, t_end = 10, dt = 0.1 } end, "finite")
end)

-- issue 8: the step limit is checked before any size can wrap (dt = 1e-12 used to hide behind a broken
-- format string), the blow-up names the path and the step where it left the finite numbers (it named
-- t_end), and unknown options are errors.
T.test("sizes, blow-up time and options are reported exactly", function()
  local bm = plume.sde{ drift = function() return 0 end, diffusion = function() return 1 end }
  local err = T.raises(function() bm:simulate{ x0 = 1, t_end = 1, dt = 1e-12 } end,
    "sde:simulate: (t_end - t0) / dt = 1e+12 steps is over the limit of 1e8 (t0 = 0, t_end = 1, dt = 1e-12")
  T.ok(err:find("test_sde.lua:%d+:"), "names the caller's line: " .. err)
  T.raises(function() bm:simulate{ x0 = 1, t_end = 1, dt = 0.1, paths = 1e12 } end,
    "option 'paths' must be in 1..1e8 (got 1000000000000)")
  T.raises(function() bm:simulate{ x0 = 1, t_end = 1, dt = 0.1, sed = 1 } end,
    "sde:simulate: unknown option 'sed' (options: x0, t_end, dt, times, t0, seed, paths, method, every, threads)")
  T.raises(function() plume.sde{ drift = function() return 0 end, diffusion = function() return 1 end, dimm = 2 } end,
    "sde: unknown option 'dimm' (options: drift, diffusion, params, dim)")
  T.raises(function() bm:simulate{ x0 = 0 / 0, t_end = 1, dt = 0.1 } end, "the start x0 of path 1 is not finite")
  -- dx = x^2 dt from x0 = 1 (no noise): Euler x <- x + x^2 dt leaves the doubles at a step the same
  -- recursion finds in Lua; the message names that step's time, not t_end = 10
  local sq = plume.sde{ drift = function(p, x) return x * x end, diffusion = function() return 0 end }
  local x, k = 1, 0
  while x == x and x < math.huge do x = x + x * x * 0.01; k = k + 1 end
  err = T.raises(function() sq:simulate{ x0 = 1, t_end = 10, dt = 0.01 } end, "path 1 left the finite numbers at t = ")
  local t = tonumber(err:match("at t = ([%d.e+-]+)"))
  T.near(t, k * 0.01, 1.5 * 0.01, "blow-up time (within a step of the Lua recursion)")
  T.ok(t < 2, "names the blow-up, not t_end")
  -- with noise, many paths: the same (earliest) failure whatever the thread count
  local noisy = plume.sde{ drift = function(p, x) return x * x end, diffusion = function() return 1 end }
  local e1 = T.raises(function() noisy:simulate{ x0 = 0.5, t_end = 5, dt = 0.01, paths = 300, seed = 3, threads = 1 } end,
    "left the finite numbers")
  local e2 = T.raises(function() noisy:simulate{ x0 = 0.5, t_end = 5, dt = 0.01, paths = 300, seed = 3, threads = 2 } end,
    "left the finite numbers")
  T.eq((e1:gsub("^.-:%d+: ", "")), (e2:gsub("^.-:%d+: ", "")), "thread-count independent message")
end)

T.test("sde_obs options are checked", function()
  local err = T.raises(function() plume.sde_obs{ times = {1}, L = {1}, noise = 1, nosie = 2 } end,
    "plume.sde_obs: unknown option 'nosie' (options: times, L, noise)")
  T.ok(err:find("test_sde.lua:%d+:"), "names the caller's line: " .. err)
end)
