-- test_bffg_conj.lua -- plume.bffg method = "mcmc" with conjugate blocks (blocks = {{..., conjugate = true}}): the
-- parameters that enter a diffusion's drift linearly drawn from their Gaussian conditional given the path and
-- accepted with the exact ratio, against exact posteriors by quadrature: the Ornstein-Uhlenbeck rate and mean (the
-- Kalman likelihood) and the intercept of a hypoelliptic linear oscillator whose noise drives one coordinate (the
-- backward filter's likelihood, exact for a linear drift). Tolerances are 4.5 Monte Carlo standard errors from the
-- chains' effective sample sizes; fixed seeds; each check has a negative control.
local T = dofile("tests/lua/check.lua")
package.path = "tests/lua/?.lua;" .. package.path
local OU = require "ou_theta"
local MK = plume.markov_kernel
local oys, ou, ou_chain = OU.ys, OU.sde, OU.chain

-- the posterior mean within 4.5 MCSE, and the sd within 4.5 of its standard error sd sqrt((kurtosis - 1) / (4 ESS))
-- (the delta method; 1 / sqrt(2 ESS) for a normal): the OU mean's posterior has heavy tails where the rate is small
local function near_posterior(post, name, mean, sd, what)
  local s, d, m2, m4 = post:summary()[name], post:draws(name), 0, 0
  for i = 1, #d do
    local e = d[i] - s.mean
    m2, m4 = m2 + e * e, m4 + e ^ 4
  end
  local kurt = m4 * #d / (m2 * m2)
  T.near(s.mean, mean, 4.5 * s.mcse_mean, what .. " mean " .. s.mean .. " vs " .. mean)
  T.near(s.sd, sd, 4.5 * sd * math.sqrt((kurt - 1) / (4 * s.ess_bulk)), what .. " sd " .. s.sd .. " vs " .. sd)
end

T.test("OU rate by conjugate updates (a uniform prior: the path's Gaussian proposes) matches quadrature", function()
  local mean, sd = OU.exact_theta(oys)
  local opts = { method = "mcmc", samples = 2000, warmup = 500, chains = 4, seed = 7, sde = ou,
    params = { theta = plume.dist.uniform(0, 10) }, init = { theta = 1 }, blocks = { { "theta", conjugate = true } } }
  -- with native code (the kept path and its inverse generated), and with the interpreter (the walks in C)
  for _, native in ipairs { true, false } do
    opts.native = native
    local post = plume.bffg(ou_chain(0.01), nil, opts)
    near_posterior(post, "theta", mean, sd, "theta (native " .. tostring(native) .. ")")
    T.ok(post:summary().theta.rhat < 1.05, "rhat")
    for c = 1, 4 do
      -- the proposal is the Euler likelihood's conditional, the target's up to the guiding's discretisation
      T.ok(post.accept_conjugate[c] > 0.8, "conjugate acceptance " .. post.accept_conjugate[c])
      T.eq(post.accept_params[c], post.accept_conjugate[c])
    end
    T.eq(post.step, nil, "no random-walk step to report")
  end
  opts.native = nil
  -- negative control: other data move the posterior far outside the tolerance
  local other = {}
  for i, y in ipairs(oys) do other["y" .. i] = y * 0.2 + OU.mu * 0.8 end
  opts.samples = 500
  local s2 = plume.bffg(ou_chain(0.01), other, opts):summary().theta
  T.ok(math.abs(s2.mean - mean) > 4.5 * s2.mcse_mean, "other data must miss")
end)

T.test("OU rate and mean: conjugate and random-walk blocks in turn match 2-d quadrature", function()
  local prior_t, prior_m = plume.dist.uniform(0, 10), plume.dist.normal(0, 2)
  local et, em, sdt, sdm = OU.exact_theta_mu(oys, prior_t, prior_m)
  local function run(blocks, pm, seed)
    return plume.bffg(ou_chain(0.05), nil, { method = "mcmc", samples = 2000, warmup = 500, chains = 4, seed = seed,
      sde = ou, params = { theta = prior_t, mu = pm or prior_m }, init = { theta = 1, mu = 0 }, blocks = blocks })
  end
  -- mu's normal prior is conjugate: its block's proposal is the exact conditional of the Euler likelihood
  local both = run({ { "theta", conjugate = true }, { "mu", conjugate = true } }, nil, 9)
  near_posterior(both, "theta", et, sdt, "theta (both conjugate)")
  near_posterior(both, "mu", em, sdm, "mu (both conjugate)")
  for c = 1, 4 do T.ok(both.accept_conjugate[c] > 0.8, "acceptance " .. both.accept_conjugate[c]) end
  local mixed = run({ { "theta" }, { "mu", conjugate = true } }, nil, 10)
  near_posterior(mixed, "theta", et, sdt, "theta (random walk)")
  near_posterior(mixed, "mu", em, sdm, "mu (conjugate)")
  T.ok(mixed.step[1] > 0, "the random-walk block reports its step")
  -- walk = true: a conjugate move, then the block's random walk (the path kept, then moved with the parameters)
  local both_ways = run({ { "theta", conjugate = true, walk = true }, { "mu", conjugate = true } }, nil, 11)
  near_posterior(both_ways, "theta", et, sdt, "theta (conjugate and random walk)")
  near_posterior(both_ways, "mu", em, sdm, "mu (conjugate)")
  T.ok(both_ways.step[1] > 0, "the block's random walk reports its step")
  for c = 1, 4 do
    -- three moves an iteration, two of them conjugate (accepted nearly always): the rate over all lies between
    T.ok(both_ways.accept_params[c] < both_ways.accept_conjugate[c], "a random walk accepts less")
  end
  -- negative control: a wrong prior on mu (normal(2, 0.3)) moves its posterior out of the tolerance
  local s2 = run({ { "theta" }, { "mu", conjugate = true } }, plume.dist.normal(2, 0.3), 10):summary().mu
  T.ok(math.abs(s2.mean - em) > 4.5 * s2.mcse_mean, "a wrong prior must miss (" .. s2.mean .. ")")
end)

-- dX1 = (X2 + c) dt, dX2 = (-kappa X1 - gamma X2 + beta) dt + sigma dW: noise on the second coordinate only (as in
-- FitzHugh-Nagumo), X1 observed with noise at t = 1..6. The drift is linear, so with the auxiliary equal to it the
-- backward filter's likelihood (g:loglik()) is the exact likelihood for every beta.
local osc_params = { c = 0, kappa = 1, gamma = 0.5, beta = 0.3, sigma = 0.6 }
local function osc_drift(p, x) return { x[2] + p.c, -p.kappa * x[1] - p.gamma * x[2] + p.beta } end
local osc = plume.sde{ dim = 2, params = osc_params, drift = osc_drift,
  diffusion = function(p) return { { 0 }, { p.sigma } } end }
-- the same process with its noise given as a diagonal {0, sigma}: two normals a step, one of which moves nothing (the
-- conjugate update keeps it as it was)
local osc_diag = plume.sde{ dim = 2, params = osc_params, drift = osc_drift,
  diffusion = function(p) return { 0, p.sigma } end }
local vys = { 0.9, 0.2, -0.4, 0.1, 0.8, 0.5 }
local function osc_chain(dt, sde)
  local g = plume.dag()
  g:root("x0", plume.dist.mvnormal({ 0, 0 }, { { 0.5, 0 }, { 0, 0.5 } }))
  local O = MK.linear_gaussian{ B = { { 1, 0 } }, Q = 0.05 }
  for t = 1, #vys do
    g:kernel("x" .. t, "x" .. (t - 1), MK.sde{ sde = sde or osc, t0 = t - 1, t1 = t, dt = dt, at = { 0, 0 } })
     :observe("y" .. t, "x" .. t, O, vys[t])
  end
  return g
end

T.test("hypoelliptic oscillator: the intercept by conjugate updates matches quadrature of the exact likelihood", function()
  local prior = plume.dist.normal(0, 1)
  local lw, lmax, h = {}, -math.huge, 0.01
  for i = 1, 601 do
    local b = -3 + (i - 1) * h
    osc:set_params{ beta = b }
    lw[i] = osc_chain(0.05):loglik() + prior:logpdf(b)
    lmax = math.max(lmax, lw[i])
  end
  osc:set_params{ beta = 0.3 }
  local w0, m1, m2 = 0, 0, 0
  for i = 1, #lw do
    local w, b = math.exp(lw[i] - lmax), -3 + (i - 1) * h
    w0, m1, m2 = w0 + w, m1 + w * b, m2 + w * b * b
  end
  local mean, sd = m1 / w0, math.sqrt(m2 / w0 - (m1 / w0) ^ 2)
  local opts = { method = "mcmc", samples = 2000, warmup = 500, chains = 4, seed = 5, sde = osc,
    params = { beta = prior }, init = { beta = 0 }, blocks = { { "beta", conjugate = true } } }
  for _, sde in ipairs { osc, osc_diag } do
    opts.sde = sde
    local post = plume.bffg(osc_chain(0.05, sde), nil, opts)
    near_posterior(post, "beta", mean, sd, "beta (" .. (sde == osc and "2 x 1 noise" or "diagonal noise") .. ")")
    for c = 1, 4 do T.ok(post.accept_conjugate[c] > 0.8, "acceptance " .. post.accept_conjugate[c]) end
  end
  opts.sde = osc
  -- negative control: a prior far from the data's answer (normal(3, 0.2)) must miss
  opts.params.beta, opts.samples = plume.dist.normal(3, 0.2), 500
  local s2 = plume.bffg(osc_chain(0.05), nil, opts):summary().beta
  T.ok(math.abs(s2.mean - mean) > 4.5 * s2.mcse_mean, "a wrong prior must miss (" .. s2.mean .. ")")
end)

T.test("a diffusion coefficient that moves with the state: conjugate and random-walk chains agree", function()
  -- dX = (beta - X) dt + sigma sqrt(1 + X^2) dW: no closed form, but both samplers target the same posterior (the
  -- guided paths' weights make either exact), so their means agree within their joint Monte Carlo error
  local sv = plume.sde{ dim = 1, params = { beta = 0.5, sigma = 0.4 },
    drift = function(p, x) return p.beta - x end,
    diffusion = function(p, x) return p.sigma * plume.math.sqrt(1 + x * x) end }
  local ys = { 0.8, 0.3, 1.1, 0.6, -0.2 }
  local function chain(data)
    local g = plume.dag()
    g:root("x0", plume.dist.normal(0, 0.7))
    local O = MK.linear_gaussian{ B = 1, Q = 0.05 }
    for t = 1, #ys do
      g:kernel("x" .. t, "x" .. (t - 1), MK.sde{ sde = sv, t0 = t - 1, t1 = t, dt = 0.02, at = 0 })
       :observe("y" .. t, "x" .. t, O, data[t])
    end
    return g
  end
  local function run(data, conj, seed)
    local p = plume.bffg(chain(data), nil, { method = "mcmc", samples = 3000, warmup = 500, chains = 4, seed = seed,
      sde = sv, params = { beta = plume.dist.normal(0, 2) }, init = { beta = 0 },
      blocks = { { "beta", conjugate = conj } } })
    return p:summary().beta, p
  end
  local a, pa = run(ys, true, 1)
  local b = run(ys, false, 2)
  T.near(a.mean, b.mean, 4.5 * math.sqrt(a.mcse_mean ^ 2 + b.mcse_mean ^ 2), "conjugate " .. a.mean .. " vs random walk " .. b.mean)
  for c = 1, 4 do T.ok(pa.accept_conjugate[c] > 0.8, "acceptance " .. pa.accept_conjugate[c]) end
  -- negative control: the random walk on other data gives another posterior, which the same check rejects
  local shifted = {}
  for i, y in ipairs(ys) do shifted[i] = y + 0.6 end
  local c2 = run(shifted, false, 2)
  T.ok(math.abs(a.mean - c2.mean) > 4.5 * math.sqrt(a.mcse_mean ^ 2 + c2.mcse_mean ^ 2), "other data must differ")
end)

T.test("conjugate blocks: the same draws for any thread count", function()
  local function run(threads)
    return plume.bffg(ou_chain(0.1), nil, { method = "mcmc", samples = 60, warmup = 20, chains = 3, seed = 11,
      threads = threads, sde = ou, params = { theta = plume.dist.uniform(0, 10), mu = plume.dist.normal(0, 2) },
      blocks = { { "theta" }, { "mu", conjugate = true } } })
  end
  local a, b = run(1), run(3)
  local da, db = a:draws("mu"), b:draws("mu")
  T.eq(#da, 180)
  for i = 1, #da do T.eq(da[i], db[i], "mu " .. i) end
end)

T.test("conjugate blocks refuse parameters they cannot update, by name of the parameter", function()
  local function run(sde, g, params, blocks)
    return plume.bffg(g, nil, { method = "mcmc", samples = 5, chains = 1, seed = 1, sde = sde, params = params,
      blocks = blocks })
  end
  local U, N, G = plume.dist.uniform(0, 10), plume.dist.normal(0, 2), plume.dist.gamma(2, 1)
  -- theta (mu - x) is not linear in (theta, mu) together
  T.raises(function() run(ou, ou_chain(0.1), { theta = U, mu = N }, { { "theta", "mu", conjugate = true } }) end,
    "the drift is not linear in parameter")
  T.raises(function() run(ou, ou_chain(0.1), { theta = U, sigma = G }, { { "theta" }, { "sigma", conjugate = true } }) end,
    "parameter 'sigma' enters the diffusion coefficient")
  -- c moves the first coordinate, which no noise drives: the path fixes it
  T.raises(function() run(osc, osc_chain(0.1), { c = N }, { { "c", conjugate = true } }) end,
    "parameter 'c' enters the drift of coordinate 1, which the noise does not drive")
  T.raises(function() run(ou, ou_chain(0.1), { theta = U }, { { "theta", conjugate = "yes" } }) end,
    "'conjugate' must be a boolean")
  T.raises(function() run(ou, ou_chain(0.1), { theta = U }, { { "theta", walk = true } }) end,
    "'walk' adds a random walk to a conjugate block")
end)
