-- test_bffg_gamma.lua -- markov_kernel.gamma_process: a gamma bridge (increments of a gamma process conditioned on
-- their total). Exact references: the marginal likelihood is the Gamma(a T, b) density of the total, every guided
-- weight equals it, and X(t) / total ~ Beta(a t, a (T - t)) (the Dirichlet law of the increments). Monte Carlo checks
-- use fixed seeds and 4.5 standard errors.
local T = dofile("tests/lua/check.lua")
local MK = plume.markov_kernel

local a, b, n, total = 2, 1.5, 10, 1.7
local inc = MK.gamma_process{ shape = a, rate = b, t = 1 / n }
local function bridge(observed)
  local g = plume.dag():root("x0", 0)
  for i = 1, n - 1 do g:kernel("x" .. i, "x" .. (i - 1), inc) end
  if observed then g:observe("y", "x" .. (n - 1), inc, total) else g:kernel("y", "x" .. (n - 1), inc) end
  return g
end
local exact = a * math.log(b) - plume.math.lgamma(a) + (a - 1) * math.log(total) - b * total

T.test("gamma bridge: exact likelihood, constant weights, Dirichlet marginals", function()
  local g = bridge(true)
  T.near(g:loglik(), exact, 1e-12, "filter")
  local N = 4000
  local post = plume.bffg(g, nil, { samples = N, seed = 1 })
  for i, lw in ipairs(post.log_weights_raw) do T.near(lw, exact, 1e-9, "weight " .. i) end
  T.near(post.loglik, exact, 1e-9, "estimate")
  local s = post:summary()
  local function worst(summ)
    local z = 0
    for i = 1, n - 1 do
      local al, be = a * i / n, a * (n - i) / n
      local m, v = total * al / (al + be), total ^ 2 * al * be / ((al + be) ^ 2 * (al + be + 1))
      z = math.max(z, math.abs(summ["x" .. i].mean - m) / math.sqrt(v / N))
    end
    return z
  end
  T.ok(worst(s) < 4.5, "bridge means")
  local x5 = s.x5
  local v = total ^ 2 * 0.25 / (a + 1)
  T.near(x5.sd ^ 2, v, 4.5 * v * math.sqrt(2 / N), "variance of x5")
  -- negative control: the unconditioned process (total not observed) has other means
  T.ok(worst(plume.bffg(bridge(false), nil, { samples = N, seed = 1 }):summary()) > 4.5, "free process must miss")
  -- SMC and pCN: exact messages keep every weight equal and accept every move
  local smc = plume.bffg(g, nil, { samples = 200, seed = 2, method = "smc" })
  T.near(smc.loglik, exact, 1e-9, "smc estimate")
  local mc = plume.bffg(g, nil, { method = "mcmc", samples = 300, warmup = 20, chains = 1, seed = 3 })
  T.near(mc.accept[1], 1, 1e-12, "pcn acceptance")
end)

T.test("gamma_process refuses what its messages cannot carry", function()
  T.raises(function() MK.gamma_process{ shape = 0, rate = 1, t = 1 } end, "shape must be finite and > 0")
  T.raises(function() MK.gamma_process{ shape = 1, rate = 1 } end, "missing field 't'")
  local g = plume.dag():root("x0", 0):kernel("x1", "x0", inc):observe("y", "x1", MK.linear_gaussian{ B = 1, Q = 1 }, 1)
  T.raises(function() g:loglik() end, "only exact observations")
  local h = plume.dag():root("x0", 0):kernel("x1", "x0", MK.gamma_process{ shape = 1, rate = 2, t = 1 })
  h:observe("y", "x1", inc, 1)
  T.raises(function() h:loglik() end, "rates differ")
  local r = plume.dag():root("x0", plume.dist.normal(0, 1)):observe("y", "x0", inc, 1)
  T.raises(function() r:loglik() end, "fixed value")
  local tw = plume.dag():root("x0", 0):kernel("x1", "x0", inc)
  tw:observe("y1", "x1", inc, 1):observe("y2", "x1", inc, 2)
  T.raises(function() tw:loglik() end, "cannot be combined")
end)
