-- test_nuts.lua -- static model programs under NUTS (plume.infer method "nuts"/"hmc"/"auto") and plume.graph,
-- against exact conjugate posteriors. Tolerance: 4 Monte Carlo standard errors of the mean (from the run's own
-- ESS) and 5-10% on standard deviations, fixed seeds. Simulation-based calibration with a negative control.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

local function mean_within(s, exact, what)
  T.ok(math.abs(s.mean - exact) < 4 * s.mcse_mean,
    string.format("%s: mean %.4f vs exact %.4f, mcse %.4f", what, s.mean, exact, s.mcse_mean))
end

-- normal-normal: mu ~ N(0, 10), y_i ~ N(mu, 2): posterior precision 1/100 + n/4
local ys = { 1.2, 0.3, 2.5, 1.9, 0.7, -0.4, 1.1 }
local nn = plume.model(function(m, y)
  local mu = m:sample("mu", D.normal(0, 10))
  for i = 1, #y do m:observe("y" .. i, D.normal(mu, 2), y[i]) end
  m:deterministic("mu2", 2 * mu)
end)

T.test("nuts_normal_normal_matches_exact_posterior", function()
  local prec, sum = 1 / 100 + #ys / 4, 0
  for _, y in ipairs(ys) do sum = sum + y end
  local post = plume.infer(nn, ys, { method = "nuts", samples = 2000, chains = 4, seed = 1 })
  local s = post:summary()
  T.eq(post.method, "nuts", "method")
  T.ok(s.mu.rhat < 1.01, "rhat " .. s.mu.rhat)
  mean_within(s.mu, (sum / 4) / prec, "mu")
  T.near(s.mu.sd, math.sqrt(1 / prec), 0.05 * math.sqrt(1 / prec), "sd within 5%")
  T.near(s.mu2.mean, 2 * s.mu.mean, 1e-9, "deterministic mu2 = 2 mu")
  T.eq(post.divergences, 0, "divergences")
  T.eq(#post.step_size, 4, "a step size per chain")
  T.ok(post.compile_time >= 0 and post.compile_time < 1, "compile time reported")
  T.eq(#post.sampler:column("divergent__"), 8000, "the sampler's own columns are kept")
end)

T.test("nuts_negative_control_wrong_exact_mean_is_rejected", function()
  -- the same check against a mean off by half a posterior sd must fail: the tolerance is tight enough to matter
  local post = plume.infer(nn, ys, { method = "nuts", samples = 2000, chains = 4, seed = 1 })
  local prec, sum = 1 / 100 + #ys / 4, 0
  for _, y in ipairs(ys) do sum = sum + y end
  local ok = pcall(mean_within, post:summary().mu, (sum / 4) / prec + 0.5 * math.sqrt(1 / prec), "mu")
  T.ok(not ok, "a wrong mean passed")
end)

T.test("nuts_unknown_scale_on_positive_site_matches_inverse_gamma", function()
  -- y_i ~ N(0, sqrt(v)), v ~ inverse_gamma(a, b): v | y ~ inverse_gamma(a + n/2, b + sum y^2 / 2)
  local y, a, b, ss = { 0.8, -1.9, 2.4, 0.1, -0.7, 1.5, -2.2, 0.9, 1.1, -0.3 }, 3, 2, 0
  for _, v in ipairs(y) do ss = ss + v * v end
  local model = plume.model(function(m, y)
    local v = m:sample("v", D.inverse_gamma(a, b))
    for i = 1, #y do m:observe("y" .. i, D.normal(0, plume.math.sqrt(v)), y[i]) end
  end)
  local a1, b1 = a + #y / 2, b + ss / 2
  local post = plume.infer(model, y, { method = "nuts", samples = 2000, chains = 4, seed = 2 })
  local s = post:summary().v
  mean_within(s, b1 / (a1 - 1), "v")
  local sd = b1 / ((a1 - 1) * math.sqrt(a1 - 2))
  T.near(s.sd, sd, 0.1 * sd, "sd within 10%")
  T.ok(s.q5 > 0, "draws stay positive")
end)

T.test("nuts_beta_bernoulli_on_unit_interval_matches_beta", function()
  local flips = { 1, 0, 1, 1, 1, 0, 1, 1, 0, 1 }   -- 7 of 10: Beta(2 + 7, 2 + 3)
  local coin = plume.model(function(m, data)
    local p = m:sample("p", D.beta(2, 2))
    for i, y in ipairs(data) do m:observe("y" .. i, D.bernoulli(p), y) end
  end)
  local post = plume.infer(coin, flips, { method = "nuts", samples = 2000, chains = 4, seed = 3 })
  T.eq(post.method, "nuts", "method")
  -- auto draws p from its conjugate beta conditional instead, and says so
  local ga = plume.infer(coin, flips, { method = "auto", samples = 2000, chains = 2, seed = 3, quiet = true })
  T.eq(ga.method, "gibbs", "auto picks exact Gibbs for a conjugate beta-bernoulli model")
  mean_within(ga:summary().p, 9 / 14, "p (auto)")
  local s = post:summary().p
  mean_within(s, 9 / 14, "p")
  local sd = math.sqrt(9 * 5 / (14 ^ 2 * 15))
  T.near(s.sd, sd, 0.05 * sd, "sd within 5%")
end)

T.test("hmc_normal_normal_matches_exact_posterior", function()
  local prec, sum = 1 / 100 + #ys / 4, 0
  for _, y in ipairs(ys) do sum = sum + y end
  local post = plume.infer(nn, ys, { method = "hmc", samples = 2000, chains = 4, seed = 4 })
  mean_within(post:summary().mu, (sum / 4) / prec, "mu")
end)

T.test("nuts_100_dimensional_correlated_gaussian_recovers_covariance", function()
  -- an AR(1) chain in stationarity: x ~ N(0, S) with S_ij = rho^|i-j|, written site by site
  local n, rho = 100, 0.9
  local ar = plume.model(function(m)
    local prev = m:sample("x1", D.normal(0, 1))
    for i = 2, n do prev = m:sample("x" .. i, D.normal(rho * prev, math.sqrt(1 - rho * rho))) end
  end)
  local post = plume.infer(ar, nil, { method = "nuts", samples = 1000, warmup = 500, chains = 2, seed = 5 })
  T.eq(post.dim, 100, "100 coordinates")
  local function cov(a, b)
    local x, y, mx, my, c = post:draws(a), post:draws(b), 0, 0, 0
    for k = 1, #x do mx, my = mx + x[k], my + y[k] end
    mx, my = mx / #x, my / #y
    for k = 1, #x do c = c + (x[k] - mx) * (y[k] - my) end
    return c / (#x - 1)
  end
  -- loosely: a (co)variance estimated from ESS effective draws has standard error about sqrt(2 / ESS)
  local s = post:summary()
  local function tol(...)
    local e = math.huge
    for _, nm in ipairs { ... } do e = math.min(e, s[nm].ess_bulk) end
    return 4 * math.sqrt(2 / e)
  end
  for _, i in ipairs { 1, 37, 100 } do T.near(cov("x" .. i, "x" .. i), 1, tol("x" .. i), "var x" .. i) end
  T.near(cov("x50", "x51"), rho, tol("x50", "x51"), "cov x50 x51")
  T.near(cov("x20", "x30"), rho ^ 10, tol("x20", "x30"), "cov x20 x30")
  T.near(cov("x10", "x90"), 0, tol("x10", "x90"), "cov x10 x90")
  T.ok(tol("x1") < 0.35, "enough effective draws for the check to mean something")
end)

T.test("nuts_draws_do_not_depend_on_threads", function()
  local a = plume.infer(nn, ys, { method = "nuts", samples = 200, chains = 4, seed = 7, threads = 1 })
  local b = plume.infer(nn, ys, { method = "nuts", samples = 200, chains = 4, seed = 7, threads = 2 })
  local da, db = a:draws("mu"), b:draws("mu")
  T.eq(#da, 800, "draws")
  for k = 1, #da do T.eq(da[k], db[k], "draw " .. k) end
end)

T.test("nuts_init_values_and_thin", function()
  local post = plume.infer(nn, ys, { method = "nuts", samples = 100, warmup = 0, chains = 2, seed = 8, thin = 2,
    init = { mu = 1.5 } })
  T.eq(#post:draws("mu"), 100, "2 chains x ceil(100 / 2)")
  T.raises(function() plume.infer(nn, ys, { method = "nuts", init = { nu = 1 } }) end,
    "init names 'nu', which is not a latent site")
end)

T.test("nuts_non_finite_initial_density_names_the_site", function()
  local bad = plume.model(function(m)
    local rate = m:sample("rate", D.gamma(2, 1))
    m:observe("y", D.exponential(rate), -1)
  end)
  T.raises(function() plume.infer(bad, nil, { method = "nuts", init = { rate = 1 }, seed = 1 }) end,
    "chain 1's initial point is not finite: site 'y' (observed, exponential) has log density -inf")
  T.raises(function() plume.infer(bad, nil, { method = "nuts", seed = 1 }) end, "site 'y' (observed")
  local pole = plume.model(function(m)
    local s = m:sample("s", D.halfnormal(1))
    m:factor(plume.math.log(s - s))
  end)
  T.raises(function() plume.infer(pole, nil, { method = "nuts", init = { s = 1 }, seed = 1 }) end,
    "site 'factor#1' (factor) has log density -inf")
end)

local branchy = plume.model(function(m)
  local x = m:sample("x", D.normal(0, 1))
  if x > 0 then m:observe("y", D.normal(x, 1), 1) end
end)
local discrete = plume.model(function(m)
  local k = m:sample("k", D.poisson(3))
  m:observe("y", D.normal(k, 1), 2.5)
end)

T.test("dynamic_program_under_nuts_says_why", function()
  T.raises(function() plume.infer(branchy, nil, { method = "nuts", seed = 1 }) end, "needs a static model")
  T.raises(function() plume.infer(branchy, nil, { method = "nuts", seed = 1 }) end, "cannot compare symbolic values")
  T.raises(function() plume.infer(discrete, nil, { method = "nuts", seed = 1 }) end,
    "site 'k' is discrete (poisson)")
end)

T.test("auto_falls_back_to_mh_for_dynamic_programs", function()
  local post = plume.infer(discrete, nil, { method = "auto", samples = 2000, chains = 2, seed = 1 })
  T.eq(post.method, "mh", "method")
  T.ok(post.why:find("discrete", 1, true), "why: " .. tostring(post.why))
  -- p(k | y) by enumeration: poisson(3) prior times N(2.5 | k, 1)
  local w, z, mean = {}, 0, 0
  for k = 0, 40 do
    w[k] = math.exp(D.poisson(3):logpdf(k) + D.normal(k, 1):logpdf(2.5))
    z = z + w[k]
  end
  for k = 0, 40 do mean = mean + k * w[k] / z end
  mean_within(post:summary().k, mean, "k")
end)

T.test("static_options_are_refused_by_other_methods", function()
  T.raises(function() plume.infer(nn, ys, { method = "mh", delta = 0.9 }) end,
    "option 'delta' applies to methods \"nuts\" and \"hmc\" only")
  T.raises(function() plume.infer(nn, ys, { method = "nuts", steps = 5 }) end, "option 'steps' applies to method \"hmc\"")
  T.raises(function() plume.infer(nn, ys, { method = "nuts", delta = 1.5 }) end, "option 'delta' must be in (0, 1)")
end)

T.test("graph_nodes_blanket_dot", function()
  local hier = plume.model(function(m, d)
    local mu = m:sample("mu", D.normal(0, 5))
    local tau = m:sample("tau", D.halfcauchy(1))
    for j = 1, #d do
      local th = m:sample("theta" .. j, D.normal(mu, tau))
      m:observe("y" .. j, D.normal(th, 1), d[j])
    end
    m:deterministic("spread", tau * 2)
  end)
  local g = plume.graph(hier, { 1, 2, 3 })
  T.eq(g.mode, "static", "mode")
  local nodes = g:nodes()
  T.eq(#nodes, 9, "2 + 3 + 3 + 1 sites")
  T.eq(nodes[3].name, "theta1", "program order")
  T.eq(nodes[3].kind, "latent", "kind")
  T.eq(nodes[3].distribution, "normal", "distribution")
  T.eq(table.concat(nodes[3].parents, ","), "mu,tau", "parents")
  T.eq(nodes[4].kind, "observed", "observed kind")
  T.eq(nodes[9].kind, "deterministic", "deterministic kind")
  T.eq(table.concat(g:markov_blanket("theta2"), ","), "mu,tau,y2", "blanket of theta2")
  T.eq(table.concat(g:markov_blanket("mu"), ","), "tau,theta1,theta2,theta3", "blanket of mu")
  local dot = g:dot()
  T.ok(dot:find('"mu" -> "theta1";', 1, true), "an edge")
  T.ok(dot:find("digraph", 1, true), "graphviz")
  local dyn = plume.graph(branchy)
  T.eq(dyn.mode, "dynamic", "dynamic mode")
  T.ok(dyn.why:find("cannot compare symbolic values", 1, true), "why: " .. dyn.why)
  T.raises(function() dyn:nodes() end, "the program is dynamic")
end)

-- Simulation-based calibration (Talts et al. 2018): draw mu* from the prior and y from the model, run NUTS,
-- and take the rank of mu* among L = 99 thinned draws; with a correct sampler the ranks are uniform on 0..99.
-- Ten bins, chi-square with 9 degrees of freedom: reject at 27.9 (p = 0.001). The negative control infers
-- with a prior too narrow (sd 0.5 instead of 1): its posteriors are overconfident and the ranks pile up at both
-- ends, which the same test must reject.
local function sbc(prior_sd, reps, seed)
  local rng_post = plume.model(function(m, y)
    local mu = m:sample("mu", D.normal(0, prior_sd))
    for i = 1, #y do m:observe("y" .. i, D.normal(mu, 1), y[i]) end
  end)
  plume.seed(seed)
  local bins = {}
  for b = 1, 10 do bins[b] = 0 end
  for r = 1, reps do
    local mu = D.normal(0, 1):sample()
    local y = {}
    for i = 1, 3 do y[i] = D.normal(mu, 1):sample() end
    local post = plume.infer(rng_post, y, { method = "nuts", samples = 198, thin = 2, warmup = 150, chains = 1,
      threads = 1, seed = seed * 1000 + r })
    local rank = 0
    for _, v in ipairs(post:draws("mu")) do if v < mu then rank = rank + 1 end end
    local b = rank // 10 + 1
    bins[b] = bins[b] + 1
  end
  local chi2, e = 0, reps / 10
  for b = 1, 10 do chi2 = chi2 + (bins[b] - e) ^ 2 / e end
  return chi2, bins
end

T.test("sbc_nuts_ranks_uniform", function()
  local chi2, bins = sbc(1, 300, 11)
  T.ok(chi2 < 27.9, string.format("chi-square %.1f (bins %s)", chi2, table.concat(bins, " ")))
end)

T.test("sbc_negative_control_wrong_prior_is_rejected", function()
  local chi2, bins = sbc(0.5, 300, 12)
  T.ok(chi2 > 27.9, string.format("chi-square %.1f (bins %s)", chi2, table.concat(bins, " ")))
end)
