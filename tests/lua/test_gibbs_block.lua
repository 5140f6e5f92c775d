-- test_gibbs_block.lua -- Gaussian blocks: normal-normal sites whose terms are jointly affine in them are drawn
-- jointly by "auto" (and plume.kernel.gaussian_block). A regression on an uncentred predictor (kidiq-like, known
-- sigma) against its closed-form posterior, with the effective sample size far above single-site Gibbs on the
-- same model; a bilinear pair is not a block (negative control); rats keeps Gibbs on every site.
local T = dofile("tests/lua/check.lua")
package.path = "tests/lua/?.lua;" .. package.path
local D = plume.dist

-- a fixed design: hs in {0, 1}, iq around 100 (uncentred: beta[1] and beta[3] have posterior correlation ~ -0.99)
local N, SIGMA, PRIOR = 60, 10, 100
local X, y = {}, {}
do
  local s = 12345
  local function u01() s = (1103515245 * s + 12345) % 2147483648; return s / 2147483648 end
  for i = 1, N do
    local hs = u01() < 0.7 and 1 or 0
    local iq = 70 + 60 * u01()
    X[i] = { 1, hs, iq, hs * iq }
    y[i] = 20 + 10 * hs + 0.6 * iq - 0.1 * hs * iq + SIGMA * (u01() + u01() + u01() - 1.5) * 2
  end
end

local reg = plume.model(function(m, d)
  local b = {}
  for k = 1, 4 do b[k] = m:sample("beta[" .. k .. "]", D.normal(0, PRIOR)) end
  for i = 1, #d.y do
    local x = d.X[i]
    m:observe("y[" .. i .. "]", D.normal(b[1] + b[2] * x[2] + b[3] * x[3] + b[4] * x[4], SIGMA), d.y[i])
  end
end)

-- the posterior mean: (I / PRIOR^2 + X'X / SIGMA^2)^-1 X'y / SIGMA^2, by Gaussian elimination
local function exact_mean()
  local P, h = {}, {}
  for j = 1, 4 do
    P[j], h[j] = {}, 0
    for k = 1, 4 do P[j][k] = j == k and 1 / PRIOR ^ 2 or 0 end
    for i = 1, N do
      h[j] = h[j] + X[i][j] * y[i] / SIGMA ^ 2
      for k = 1, 4 do P[j][k] = P[j][k] + X[i][j] * X[i][k] / SIGMA ^ 2 end
    end
  end
  for c = 1, 4 do
    for r = c + 1, 4 do
      local f = P[r][c] / P[c][c]
      for k = c, 4 do P[r][k] = P[r][k] - f * P[c][k] end
      h[r] = h[r] - f * h[c]
    end
  end
  local x = {}
  for r = 4, 1, -1 do
    local v = h[r]
    for k = r + 1, 4 do v = v - P[r][k] * x[k] end
    x[r] = v / P[r][r]
  end
  return x
end

local function min_ess(post)
  local s, mn = post:summary(), math.huge
  for k = 1, 4 do mn = math.min(mn, s["beta[" .. k .. "]"].ess_bulk) end
  return mn, s
end

T.test("correlated_regression_block_matches_the_closed_form_and_mixes", function()
  local data, draws = { X = X, y = y }, 2 * 1000
  local post = plume.infer(reg, data, { samples = 1000, warmup = 200, chains = 2, seed = 7, threads = 1, quiet = true })
  T.ok(post.kernel:find("gibbs-block on beta[1..4] (gaussian block)", 1, true), "auto blocks beta: " .. post.kernel)
  local ess, s = min_ess(post)
  local mean = exact_mean()
  for k = 1, 4 do
    local r = s["beta[" .. k .. "]"]
    T.near(r.mean, mean[k], 4 * r.mcse_mean, "posterior mean of beta[" .. k .. "]")
  end
  -- exact independent joint draws: ESS near the number of draws
  T.ok(ess >= 0.5 * draws, "block: min ESS " .. ess .. " of " .. draws .. " draws")
  -- single-site Gibbs on the same model and seed fails that bound by far (it crawls along the correlation)
  local single = plume.infer(reg, data, { method = "gibbs", samples = 1000, warmup = 200, chains = 2, seed = 7, threads = 1 })
  local ess1 = min_ess(single)
  T.ok(ess1 < 0.05 * draws, "single-site: min ESS " .. ess1 .. " (the bound above would fail)")
  print(string.format("  min ESS of beta in %d draws: gaussian block %.0f, single-site gibbs %.0f", draws, ess, ess1))
  T.ok(ess >= 20 * ess1, "block ESS " .. ess .. " >= 20 x single-site " .. ess1)
  -- the kernel value draws the same way
  local k = plume.infer(reg, data, { kernel = plume.kernel.gaussian_block{ sites = { "beta" } }, samples = 1000,
                                     warmup = 200, chains = 2, seed = 7, threads = 1, quiet = true })
  T.ok(min_ess(k) >= 0.5 * draws, "plume.kernel.gaussian_block: min ESS " .. min_ess(k))
end)

T.test("eight_schools_nuts_also_moves_the_block_that_tau_scales", function()
  local sch = plume.model(function(m, d)
    local mu = m:sample("mu", D.normal(0, 5))
    local tau = m:sample("tau", D.halfcauchy(5))
    for j = 1, 8 do
      local tt = m:sample("theta_tilde[" .. j .. "]", D.normal(0, 1))
      m:observe("y[" .. j .. "]", D.normal(mu + tau * tt, d.sigma[j]), d.y[j])
    end
  end)
  local data = { y = { 28, 8, -3, 7, -1, 1, 18, 12 }, sigma = { 15, 10, 16, 11, 9, 11, 10, 18 } }
  local post = plume.infer(sch, data, { samples = 200, warmup = 200, chains = 1, seed = 3, quiet = true })
  T.eq(post.kernel, "gibbs-block on mu, theta_tilde[1..8] (gaussian block); nuts on tau (continuous, no conjugate " ..
       "pair) with mu, theta_tilde[1..8] (their block's means read it)", "auto on 8 schools")
  -- kidiq's sigma is only an sd: NUTS stays on sigma alone
  local k = plume.infer(plume.model(function(m, d)
    local b1, b2 = m:sample("b1", D.normal(0, 10)), m:sample("b2", D.normal(0, 10))
    local s = m:sample("s", D.halfcauchy(2))
    for i = 1, 3 do m:observe("y" .. i, D.normal(b1 + b2 * (100 + i), s), i) end
  end), nil, { samples = 20, warmup = 20, chains = 1, seed = 3, quiet = true })
  T.eq(k.kernel, "gibbs-block on b1, b2 (gaussian block); nuts on s (continuous, no conjugate pair)", "auto on a regression")
end)

T.test("bilinear_pair_is_not_a_block", function()
  local bil = plume.model(function(m, yv)
    local a = m:sample("a", D.normal(0, 1))
    local b = m:sample("b", D.normal(0, 1))
    m:observe("y", D.normal(a * b, 1), yv)
  end)
  local post = plume.infer(bil, 1.3, { samples = 200, warmup = 50, chains = 1, seed = 2, quiet = true })
  T.ok(not post.kernel:find("gibbs-block", 1, true), "no block: " .. post.kernel)
  T.ok(post.kernel:find("not a gaussian block", 1, true) and post.kernel:find("not affine", 1, true),
       "says why: " .. post.kernel)
  T.raises(function()
    plume.infer(bil, 1.3, { kernel = plume.kernel.gaussian_block{ sites = { "a", "b" } }, samples = 10, chains = 1, seed = 1 })
  end, "the mean of y is not affine in the block's sites jointly")
end)

T.test("rats_keeps_gibbs_on_every_site", function()
  local R = require "rats_model"
  local data, rats = R.data, R.model
  local post = plume.infer(rats, data, { samples = 300, warmup = 100, chains = 4, seed = 1, quiet = true })
  T.ok(not post.kernel:find("nuts", 1, true), "no nuts: " .. post.kernel)
  T.ok(post.kernel:find("gibbs on tau.c, alpha.tau, beta.tau (gamma)", 1, true), "precisions by gibbs: " .. post.kernel)
  T.ok(post.kernel:find("gibbs-block on alpha.c, beta.c, alpha[1..30], beta[1..30] (gaussian block)", 1, true),
       "coefficients as one block: " .. post.kernel)
  -- graph:gibbs_plan() numbers the block of each blocked site
  local inblock = {}
  for _, e in ipairs(plume.graph(rats, data):gibbs_plan()) do inblock[e.site] = e.block end
  T.eq(inblock["alpha[7]"], 1, "alpha[7] in block 1")
  T.eq(inblock["beta.c"], 1, "beta.c in block 1")
  T.eq(inblock["tau.c"], nil, "tau.c single-site")
  local s = post:summary().alpha0
  -- 4 MCSE, plus 0.3 for the reference's own error (JAGS runs here give 106.4-106.5), as test_gibbs_init does
  T.near(s.mean, 106.6, 4 * s.mcse_mean + 0.3, "alpha0")
  T.ok(s.rhat < 1.05, "chains agree: rhat " .. s.rhat)
end)
