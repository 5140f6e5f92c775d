-- test_optimal.lua -- the locally optimal proposal plume derives for method = "guided" when the model gives
-- none (Gaussian transition, observation log density quadratic in the state): on linear-Gaussian models its
-- logz is unbiased against the Kalman value (40 seeds, 3 standard errors on the natural scale) and its
-- variance is far below the bootstrap filter's; a model outside that form gets a clear error.
package.path = "tests/lua/?.lua;" .. package.path
local T = require "check"
local D = plume.dist

local rho, s, r = 0.9, 0.5, 0.3
local lin = plume.ssm{
  params = { rho = rho, s = s, r = r },
  init  = function(p) return D.normal(0, math.sqrt(rho ^ 2 + s ^ 2)) end,   -- lgssm's x_0 ~ N(0, 1), one step on
  trans = function(p, x, t) return D.normal(p.rho * x, p.s) end,
  obs   = function(p, x, t) return D.normal(2 * x - 0.5, p.r) end,
}
local kf = plume.lgssm{ A = rho, Q = s * s, C = 2, d = -0.5, R = r * r, m0 = 0, P0 = 1 }
local Tn = 40
local _, ys = lin:simulate(Tn, { seed = 11 })
ys[9] = 0 / 0   -- a missing observation
local _, _, kll = kf:filter(ys)

-- mean and sd of exp(logz - kll) and the variance of logz over n seeds
local function stats(model, method, n, N, truth)
  local w, w2, l, l2 = 0, 0, 0, 0
  for seed = 1, n do
    local lz = plume.smc(model, ys, { particles = N, seed = seed, method = method }).logz
    local v = math.exp(lz - truth)
    w, w2, l, l2 = w + v, w2 + v * v, l + lz, l2 + lz * lz
  end
  local mean = w / n
  return mean, math.sqrt((w2 / n - mean * mean) / (n - 1)), (l2 - l * l / n) / (n - 1)
end

T.test("optimal_proposal_logz_unbiased_and_far_less_variable_than_bootstrap", function()
  local mo, seo, vo = stats(lin, "guided", 40, 50, kll)
  local _, _, vb = stats(lin, "bootstrap", 40, 50, kll)
  T.ok(math.abs(mo - 1) < 3 * seo, string.format("optimal: mean %.4f, se %.4f", mo, seo))
  -- exact predictive weights: var logz well below a tenth of the bootstrap's (measured: see the message)
  T.ok(vo < 0.1 * vb, string.format("var logz: optimal %.4g, bootstrap %.4g", vo, vb))
  print(string.format("  var logz (50 particles, 40 seeds): optimal %.4g, bootstrap %.4g", vo, vb))
  -- negative control: the same check against a wrong Kalman value (another noise) fails
  local _, _, wll = plume.lgssm{ A = rho, Q = s * s, C = 2, d = -0.5, R = 0.25, m0 = 0, P0 = 1 }:filter(ys)
  local mw, sew = stats(lin, "guided", 40, 50, wll)
  T.ok(math.abs(mw - 1) > 3 * sew, string.format("wrong truth detected: mean %.4f, se %.4f", mw, sew))
end)

T.test("optimal_proposal_two_dimensional_state_one_observed_component", function()
  -- x = (level, slope): level' = level + slope + noise, slope' = 0.8 slope + noise, y = level + noise; the
  -- observation's Hessian is singular in the state, the sum with the transition's is not
  local m2 = plume.ssm{
    dim = 2, params = { q = 0.3, r = 0.5 },
    init  = function(p) return D.mvnormal({ 0, 0 }, { { 2.3, 0.9 }, { 0.9, 0.94 } }) end,   -- A A' + Q
    trans = function(p, x, t) return D.mvnormal({ x[1] + x[2], 0.8 * x[2] }, { { p.q, 0.1 }, { 0.1, p.q } }) end,
    obs   = function(p, x, t) return D.normal(x[1], p.r) end,
  }
  local k2 = plume.lgssm{ A = { { 1, 1 }, { 0, 0.8 } }, Q = { { 0.3, 0.1 }, { 0.1, 0.3 } }, C = { 1, 0 }, R = 0.25,
                          m0 = { 0, 0 }, P0 = { { 1, 0 }, { 0, 1 } } }
  local _, y2 = m2:simulate(30, { seed = 5 })
  local _, _, ll2 = k2:filter(y2)
  local w, w2, l, l2, b, b2, n = 0, 0, 0, 0, 0, 0, 40
  for seed = 1, n do
    local lz = plume.smc(m2, y2, { particles = 50, seed = seed, method = "guided" }).logz
    local lb = plume.smc(m2, y2, { particles = 50, seed = seed }).logz
    local v = math.exp(lz - ll2)
    w, w2, l, l2, b, b2 = w + v, w2 + v * v, l + lz, l2 + lz * lz, b + lb, b2 + lb * lb
  end
  local mean = w / n
  local se = math.sqrt((w2 / n - mean * mean) / (n - 1))
  T.ok(math.abs(mean - 1) < 3 * se, string.format("2-d optimal: mean %.4f, se %.4f", mean, se))
  local vo, vb = (l2 - l * l / n) / (n - 1), (b2 - b * b / n) / (n - 1)
  T.ok(vo < 0.5 * vb, string.format("2-d var logz: optimal %.4g, bootstrap %.4g", vo, vb))
end)

T.test("optimal_proposal_needs_the_linear_gaussian_form", function()
  local sv = plume.ssm{
    params = { rho = 0.9 },
    init  = function(p) return D.normal(0, 1) end,
    trans = function(p, x, t) return D.normal(p.rho * x, 0.3) end,
    obs   = function(p, x, t) return D.normal(0, plume.math.exp(x / 2)) end,
  }
  T.raises(function() plume.smc(sv, { 0.1, 0.2 }, { method = "guided" }) end, "not quadratic in the state")
end)


