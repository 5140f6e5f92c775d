-- test_bffg_mcmc.lua -- plume.bffg with method = "mcmc" (pCN over the innovations of the guided process, random-walk
-- updates of diffusion parameters that recompute the backward filter), against exact answers: the Kalman smoother
-- of a linear-Gaussian chain guided through a wrong auxiliary (so that the weights vary and pCN must correct), and
-- the posterior of an Ornstein-Uhlenbeck rate computed by quadrature of the exact (Kalman) likelihood. Tolerances
-- are 4.5 Monte Carlo standard errors from the chains' effective sample sizes; fixed seeds.
local T = dofile("tests/lua/check.lua")
package.path = "tests/lua/?.lua;" .. package.path
local OU = require "ou_theta"
local MK = plume.markov_kernel

-- the linear-Gaussian chain of test_bffg.lua
local Phi, beta, Q = { { .8, .5 }, { -.1, .8 } }, { .1, .2 }, { { .2, 0 }, { 0, 1 } }
local ys = { 0.31, -0.52, 1.24, 0.87, 0.05, -0.66, 0.42, 1.58, 0.93, -0.11 }
local aux = MK.linear_gaussian{ B = { { .56, .35 }, { -.07, .56 } }, Q = { { .4, 0 }, { 0, 2 } } }

local function lg_chain()
  local g = plume.dag()
  g:root("x0", plume.dist.mvnormal({ 1, 0 }, { { 1, 0 }, { 0, 1 } }))
  local K = MK.linear_gaussian{ B = Phi, beta = beta, Q = Q, aux = aux }
  local O = MK.linear_gaussian{ B = { { 1, 0 } }, Q = 1 }
  local prev = "x0"
  for t = 1, #ys do
    g:kernel("x" .. t, prev, K):observe("y" .. t, "x" .. t, O, ys[t])
    prev = "x" .. t
  end
  return g
end
local kalman = plume.lgssm{ A = Phi, b = beta, Q = Q, C = { 1, 0 }, R = 1, m0 = { 1, 0 }, P0 = { { 1, 0 }, { 0, 1 } } }

T.test("pCN on a linear-Gaussian chain with a wrong auxiliary: path marginals match the Kalman smoother", function()
  local sm = kalman:smooth(ys)
  local function worst(post)
    local s, z = post:summary(), 0
    for t = 1, #ys do
      for j = 1, 2 do
        local c = s["x" .. t .. "[" .. j .. "]"]
        z = math.max(z, math.abs(c.mean - sm[t][j]) / c.mcse_mean)
      end
    end
    return z, s
  end
  local post = plume.bffg(lg_chain(), nil, { method = "mcmc", samples = 3000, warmup = 500, chains = 4, seed = 3,
    rho = 0.5 })
  local z, s = worst(post)
  T.ok(z < 4.5, "largest |error| / MCSE " .. z)
  T.eq(post.method, "bffg-mcmc")
  for c = 1, 4 do
    -- the weights vary (a wrong auxiliary), so pCN must reject some moves
    T.ok(post.accept[c] > 0.05 and post.accept[c] < 0.95, "acceptance " .. post.accept[c])
    T.ok(post.rho[c] >= 0 and post.rho[c] < 1, "rho")
  end
  T.ok(s["x5[1]"].rhat < 1.05, "rhat")
  -- negative control: data shifted by 0.5 give another posterior, which the same check must reject
  local shifted = {}
  for i, y in ipairs(ys) do shifted["y" .. i] = y + 0.5 end
  local z2 = worst(plume.bffg(lg_chain(), shifted, { method = "mcmc", samples = 3000, warmup = 500, chains = 4,
    seed = 3, rho = 0.5 }))
  T.ok(z2 > 4.5, "shifted data must miss (" .. z2 .. ")")
end)

-- the Ornstein-Uhlenbeck rate of ou_theta.lua: the linearisation of its drift at 0 as auxiliary
local mu, oys, ou, ou_chain, exact_theta = OU.mu, OU.ys, OU.sde, OU.chain, OU.exact_theta

T.test("OU rate: the parameter posterior of pCN + random-walk updates matches quadrature of the exact likelihood", function()
  -- the auxiliary is the linearisation of a linear drift, remade at every theta: the weights are then the exact
  -- likelihood whatever dt (while the Euler path is stable), so a coarse grid tests the parameter moves and the recomputed backward filter exactly
  local mean, sd = exact_theta(oys)
  local opts = { method = "mcmc", samples = 2000, warmup = 500, chains = 4, seed = 7, sde = ou,
    params = { theta = plume.dist.uniform(0, 10) }, init = { theta = 1 } }
  local post = plume.bffg(ou_chain(0.01), nil, opts)
  local s = post:summary().theta
  T.near(s.mean, mean, 4.5 * s.mcse_mean, "posterior mean " .. s.mean .. " vs " .. mean)
  T.near(s.sd, sd, 4.5 * sd / math.sqrt(2 * s.ess_bulk), "posterior sd " .. s.sd .. " vs " .. sd)
  for c = 1, 4 do T.ok(post.accept_params[c] > 0.1 and post.accept_params[c] < 0.7, "acceptance") end
  T.ok(s.rhat < 1.05, "rhat")
  -- negative control: other data move the posterior far outside the tolerance
  local other = {}
  for i, y in ipairs(oys) do other["y" .. i] = y * 0.2 + mu * 0.8 end
  opts.samples = 500
  local s2 = plume.bffg(ou_chain(0.01), other, opts):summary().theta
  T.ok(math.abs(s2.mean - mean) > 4.5 * s2.mcse_mean, "other data must miss")
end)

T.test("blocks: theta and mu moved in turn match 2-d quadrature of the exact likelihood; bad blocks are refused", function()
  -- the exact posterior of (theta, mu) with priors uniform(0, 10) and normal(0, 2): the Kalman likelihood on a grid
  local prior_t, prior_m = plume.dist.uniform(0, 10), plume.dist.normal(0, 2)
  local et, em, sdt, sdm = OU.exact_theta_mu(oys, prior_t, prior_m)
  local opts = { method = "mcmc", samples = 2000, warmup = 500, chains = 4, seed = 9, sde = ou,
    params = { theta = prior_t, mu = prior_m }, init = { theta = 1, mu = 0 }, blocks = { { "theta" }, { "mu" } } }
  local post = plume.bffg(ou_chain(0.05), nil, opts)
  local s = post:summary()
  T.near(s.theta.mean, et, 4.5 * s.theta.mcse_mean, "theta mean " .. s.theta.mean .. " vs " .. et)
  T.near(s.mu.mean, em, 4.5 * s.mu.mcse_mean, "mu mean " .. s.mu.mean .. " vs " .. em)
  T.near(s.theta.sd, sdt, 4.5 * sdt / math.sqrt(2 * s.theta.ess_bulk), "theta sd " .. s.theta.sd .. " vs " .. sdt)
  T.near(s.mu.sd, sdm, 4.5 * sdm / math.sqrt(2 * s.mu.ess_bulk), "mu sd " .. s.mu.sd .. " vs " .. sdm)
  for c = 1, 4 do T.ok(post.accept_params[c] > 0.1 and post.accept_params[c] < 0.7, "acceptance " .. post.accept_params[c]) end
  -- negative control: a wrong prior on mu (normal(2, 0.3)) moves its posterior out of the tolerance
  opts.params.mu, opts.samples = plume.dist.normal(2, 0.3), 500
  local s2 = plume.bffg(ou_chain(0.05), nil, opts):summary().mu
  T.ok(math.abs(s2.mean - em) > 4.5 * s2.mcse_mean, "a wrong prior must miss (" .. s2.mean .. ")")
  local g = ou_chain(0.05)
  local function run(blocks)
    return plume.bffg(g, nil, { method = "mcmc", samples = 30, chains = 1, seed = 3, sde = ou,
      params = { theta = prior_t, mu = prior_m }, blocks = blocks })
  end
  T.raises(function() run({ { "theta" } }) end, "parameter 'mu' is in no block")
  T.raises(function() run({ { "theta", "mu" }, { "mu" } }) end, "parameter 'mu' is in two blocks")
  T.raises(function() run({ { "theta" }, { "sigma" } }) end, "names 'sigma', which is not one of the parameters")
  T.raises(function() run({ { "theta" }, {} }) end, "block 2 must be a non-empty list")
  T.raises(function() run("theta") end, "option 'blocks' must be a list of lists")
  -- one block holding every parameter is the default, draw for draw; two blocks are another chain
  local a, b, c = run({ { "theta", "mu" } }):draws("mu"), run(nil):draws("mu"), run({ { "mu" }, { "theta" } }):draws("mu")
  local same, other = #a == 30, false
  for i = 1, #a do same, other = same and a[i] == b[i], other or a[i] ~= c[i] end
  T.ok(same, "one block = the default")
  T.ok(other, "two blocks move differently")
end)

T.test("a ridge (the data fix only a + b): the adapted random walk matches the exact posterior and mixes 4x better", function()
  -- dX = (a + b - X) dt + sigma dW observed 12 times: the likelihood depends on s = a + b alone (Gaussian in s, by
  -- quadrature of the Kalman likelihood), and with a, b ~ N(0, 1) a priori, d = a - b ~ N(0, 2) is independent of s,
  -- so a and b are N(m_s / 2, (v_s + 2) / 4) exactly: a ridge along d that an isotropic walk crawls along. The drift is
  -- linear, so the weights are the exact likelihood whatever dt.
  local ys = { 1.602, 1.112, 1.374, 1.396, 1.367, 1.435, 1.351, 1.100, 0.773, 0.630, 1.020, 1.246 }
  local R, sigma = 0.05, 0.5
  local sde = plume.sde{ dim = 1, params = { a = 0, b = 0, sigma = sigma },
    drift = function(p, x) return p.a + p.b - x end, diffusion = function(p) return p.sigma end }
  local g = plume.dag()
  g:root("x0", 0)
  local O = MK.linear_gaussian{ B = 1, Q = R }
  for t = 1, #ys do
    g:kernel("x" .. t, "x" .. (t - 1), MK.sde{ sde = sde, t0 = t - 1, t1 = t, dt = 0.05, at = 0 })
     :observe("y" .. t, "x" .. t, O, ys[t])
  end
  local e, m0, m1, m2, lw, lmax = math.exp(-1), 0, 0, 0, {}, -math.huge
  for i = -3000, 5000 do
    local s = i * 1e-3
    local k = plume.lgssm{ A = e, b = s * (1 - e), Q = sigma ^ 2 * (1 - e * e) / 2, C = 1, R = R, m0 = 0, P0 = 0 }
    lw[#lw + 1] = { s, k:loglik(ys) + plume.dist.normal(0, math.sqrt(2)):logpdf(s) }
    lmax = math.max(lmax, lw[#lw][2])
  end
  for _, p in ipairs(lw) do
    local w = math.exp(p[2] - lmax)
    m0, m1, m2 = m0 + w, m1 + w * p[1], m2 + w * p[1] ^ 2
  end
  local mean, sd = m1 / m0 / 2, math.sqrt((m2 / m0 - (m1 / m0) ^ 2 + 2) / 4)
  local function run(adapt)
    return plume.bffg(g, nil, { method = "mcmc", samples = 2000, warmup = 1000, chains = 4, seed = 7, sde = sde,
      params = { a = plume.dist.normal(0, 1), b = plume.dist.normal(0, 1) }, init = { a = 0, b = 0 }, adapt_cov = adapt })
  end
  local s = run(nil):summary()
  for _, k in ipairs { "a", "b" } do
    T.near(s[k].mean, mean, 4.5 * s[k].mcse_mean, k .. " mean " .. s[k].mean .. " vs " .. mean)
    T.near(s[k].sd, sd, 4.5 * sd / math.sqrt(2 * s[k].ess_bulk), k .. " sd " .. s[k].sd .. " vs " .. sd)
  end
  -- the isotropic walk of adapt_cov = false (the same seed): the same target, a quarter of the effective samples or
  -- fewer (measured: 1044 against 105)
  local s0 = run(false):summary()
  T.ok(s.a.ess_bulk > 4 * s0.a.ess_bulk, "ess " .. s.a.ess_bulk .. " vs isotropic " .. s0.a.ess_bulk)
  T.near(s0.a.mean, mean, 4.5 * s0.a.mcse_mean, "isotropic: a mean " .. s0.a.mean)
end)

T.test("discrete chain: innovations through Phi give forward-backward marginals; exact messages accept every move", function()
  local init = { 0.5, 0.3, 0.2 }
  local trans = { { 0.8, 0.15, 0.05 }, { 0.1, 0.7, 0.2 }, { 0.25, 0.25, 0.5 } }
  local emit = { { 0.6, 0.2, 0.1, 0.1 }, { 0.1, 0.6, 0.2, 0.1 }, { 0.05, 0.05, 0.3, 0.6 } }
  local obs = { 1, 1, 2, 4, 4, 3, 2, 1 }
  local h = plume.hmm{ init = init, trans = trans, emit = emit }
  local g = plume.dag():root("x1", plume.dist.categorical(init))
  local A, E = MK.discrete(trans), MK.discrete(emit)
  for t = 1, #obs do
    if t > 1 then g:kernel("x" .. t, "x" .. (t - 1), A) end
    g:observe("y" .. t, "x" .. t, E, obs[t])
  end
  local post_fb = h:posterior(obs)
  -- rho = 0 held fixed: every proposal is a fresh draw and (exact messages, constant weight) accepted, so the draws
  -- are independent and binomial errors apply
  local n = 4000
  local post = plume.bffg(g, nil, { method = "mcmc", samples = n, warmup = 10, chains = 1, seed = 4, rho = 0,
    target_accept = 0 })
  T.eq(post.accept[1], 1, "every move accepted")
  for t = 1, #obs do
    local d, cnt = post:draws("x" .. t), { 0, 0, 0 }
    for i = 1, n do cnt[d[i]] = cnt[d[i]] + 1 end
    for k = 1, 3 do
      local p = post_fb[t][k]
      T.near(cnt[k] / n, p, 4.5 * math.sqrt(p * (1 - p) / n) + 1e-12, "x" .. t .. " = " .. k)
    end
  end
  local moved = plume.bffg(g, nil, { method = "mcmc", samples = 200, warmup = 10, chains = 1, seed = 4, rho = 0.8,
    target_accept = 0 })
  T.eq(moved.accept[1], 1, "pCN moves accepted")
end)

T.test("the same draws for any thread count", function()
  local function run(threads)
    return plume.bffg(ou_chain(0.1), nil, { method = "mcmc", samples = 50, warmup = 20, chains = 3, seed = 11,
      threads = threads, sde = ou, params = { theta = plume.dist.uniform(0, 10) } })
  end
  local a, b = run(1), run(3)
  local da, db = a:draws("theta"), b:draws("theta")
  T.eq(#da, 150)
  for i = 1, #da do T.eq(da[i], db[i], "theta " .. i) end
  local xa, xb = a:draws("x2"), b:draws("x2")
  for i = 1, #xa do T.eq(xa[i], xb[i], "x2 " .. i) end
end)

T.test("method mcmc refuses bad options with clear messages", function()
  local g = ou_chain(0.1)
  local G = plume.dist.gamma(2, 1)
  T.raises(function() plume.bffg(g, nil, { method = "mcmc", params = { theta = G } }) end, "needs option 'sde'")
  T.raises(function() plume.bffg(g, nil, { method = "mcmc", sde = ou, params = { rate = G } }) end,
    "'rate', which is not a parameter")
  T.raises(function() plume.bffg(g, nil, { method = "mcmc", sde = ou, params = { theta = plume.dist.poisson(2) } }) end,
    "scalar continuous")
  T.raises(function() plume.bffg(g, nil, { method = "mcmc", rho = 1 }) end, "'rho' must be in")
  T.raises(function() plume.bffg(g, nil, { method = "mcmc", sde = ou, params = { theta = G }, init = { theta = -1 } }) end,
    "outside its prior's support")
end)
