-- test_bffg_nonlinear.lua -- markov_kernel.nonlinear_gaussian: y ~ N(mu(x), Q) with a compiled mean, the backward
-- filter through its linearisation. Exact reference where there is one (a linear mean equals linear_gaussian
-- exactly: filter, constant weights), and a bootstrap particle filter (plume.smc on the same model as a plume.ssm)
-- for a nonlinear mean, within 4.5 combined standard errors.
local T = dofile("tests/lua/check.lua")
local MK = plume.markov_kernel

T.test("a linear mean: the same filter and constant weights as linear_gaussian", function()
  local Phi, beta, Q = { { .8, .5 }, { -.1, .8 } }, { .1, .2 }, { { .2, 0 }, { 0, 1 } }
  local ys = { 0.31, -0.52, 1.24, 0.87, 0.05 }
  local function chain(K)
    local g = plume.dag()
    g:root("x0", plume.dist.mvnormal({ 1, 0 }, { { 1, 0 }, { 0, 1 } }))
    local O = MK.linear_gaussian{ B = { { 1, 0 } }, Q = 1 }
    local prev = "x0"
    for t = 1, #ys do
      g:kernel("x" .. t, prev, K):observe("y" .. t, "x" .. t, O, ys[t])
      prev = "x" .. t
    end
    return g
  end
  local nl = MK.nonlinear_gaussian{ dim = 2, params = { a = .8, b = .5 }, Q = Q, at = { 3, -2 },
    mean = function(p, x) return { p.a * x[1] + p.b * x[2] + .1, -.1 * x[1] + .8 * x[2] + .2 } end }
  local exact = chain(MK.linear_gaussian{ B = Phi, beta = beta, Q = Q }):loglik()
  local g = chain(nl)
  T.near(g:loglik(), exact, 1e-10, "filter")
  local post = plume.bffg(g, nil, { samples = 300, seed = 1 })
  for i, lw in ipairs(post.log_weights_raw) do T.near(lw, exact, 1e-9, "weight " .. i) end
end)

T.test("a nonlinear mean: the guided IS estimate of log p(y) agrees with a bootstrap particle filter", function()
  local mean = function(p, x) return 0.5 * x + 2 * x / (1 + x * x) end
  local ys = { 0.4, 1.2, 2.5, 1.9, -0.3, 0.8 }
  local nl = MK.nonlinear_gaussian{ mean = mean, Q = 0.5, at = 1 }
  local O = MK.linear_gaussian{ B = 1, Q = 0.3 }
  local g = plume.dag():root("x1", plume.dist.normal(0, 1)):observe("y1", "x1", O, ys[1])
  for t = 2, #ys do g:kernel("x" .. t, "x" .. (t - 1), nl):observe("y" .. t, "x" .. t, O, ys[t]) end
  local n = 40000
  local post = plume.bffg(g, nil, { samples = n, seed = 2 })
  local se_is = math.sqrt((n / post.ess - 1) / n)
  T.ok(post.ess < 0.99 * n, "the weights vary (ess " .. post.ess .. ")")
  local ssm = plume.ssm{ params = {},
    init = function() return plume.dist.normal(0, 1) end,
    trans = function(p, x) return plume.dist.normal(mean(p, x), math.sqrt(0.5)) end,
    obs = function(p, x) return plume.dist.normal(x, math.sqrt(0.3)) end }
  local lls, m, v = {}, 0, 0
  for r = 1, 4 do lls[r] = plume.smc(ssm, ys, { particles = 50000, seed = r }).logz; m = m + lls[r] / 4 end
  for r = 1, 4 do v = v + (lls[r] - m) ^ 2 / 3 end
  local se = math.sqrt(se_is ^ 2 + v / 4 + 1e-6)
  T.near(post.loglik, m, 4.5 * se, "IS " .. post.loglik .. " vs PF " .. m)
  -- negative control: the IS estimate for other data is far from the PF's for these
  local other = plume.bffg(g, { y3 = -2.5 }, { samples = n, seed = 2 })
  T.ok(math.abs(other.loglik - m) > 4.5 * se, "other data must miss")
end)

T.test("nonlinear_gaussian refuses bad input", function()
  T.raises(function() MK.nonlinear_gaussian{ mean = 1, Q = 1, at = 0 } end, "'mean' must be a function")
  T.raises(function() MK.nonlinear_gaussian{ mean = function(p, x) return x end, Q = 1 } end, "missing field 'at'")
  T.raises(function() MK.nonlinear_gaussian{ mean = function(p, x) return x end, Q = { { 1, 0 }, { 0, 1 } }, at = 0 } end,
    "Q must be 1 x 1")
end)
