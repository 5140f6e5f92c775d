-- test_gibbs.lua -- discrete latent sites in static models, indexing by a discrete symbol, and plume.infer's
-- method "gibbs" (exact conditionals): posteriors against closed forms, simulation-based calibration with a
-- negative control, and the errors a user meets.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

-- z ~ categorical(0.3, 0.7), y ~ normal(mu[z], 1) at y = 0.8 with mu = {-1, 2}: p(z = 1 | y) in closed form
local mix1 = plume.model(function(m, y)
  local mu = plume.vector{ -1, 2 }
  local z = m:sample("z", D.categorical({ 0.3, 0.7 }))
  m:observe("y", D.normal(mu[z], 1), y)
end)

T.test("discrete_site_posterior_equals_enumeration", function()
  local l1, l2 = 0.3 * math.exp(-0.5 * 1.8 ^ 2), 0.7 * math.exp(-0.5 * 1.2 ^ 2)
  local p1 = l1 / (l1 + l2)
  local post = plume.infer(mix1, 0.8, { method = "gibbs", samples = 4000, chains = 2, seed = 3 })
  local n, ones = 0, 0
  for _, v in ipairs(post:draws("z")) do
    T.ok(v == 1 or v == 2, "categorical draws are 1-based: got " .. tostring(v))
    n = n + 1
    if v == 1 then ones = ones + 1 end
  end
  -- each draw is an exact independent draw of z's posterior (one site): 4 binomial standard errors
  T.near(ones / n, p1, 4 * math.sqrt(p1 * (1 - p1) / n), "P(z = 1 | y)")
  T.eq(post.method, "gibbs", "method")
end)

T.test("select_and_vector_index_a_list_by_a_symbol", function()
  local with_select = plume.model(function(m, y)
    local z = m:sample("z", D.categorical({ 0.3, 0.7 }))
    m:observe("y", D.normal(plume.select({ -1, 2 }, z), 1), y)
  end)
  local a = plume.infer(mix1, 0.8, { method = "gibbs", samples = 200, chains = 1, seed = 5 })
  local b = plume.infer(with_select, 0.8, { method = "gibbs", samples = 200, chains = 1, seed = 5 })
  T.eq(table.concat(a:draws("z"), ","), table.concat(b:draws("z"), ","), "same draws through mu[z] and plume.select")
  -- with plain numbers both are ordinary indexing
  T.eq(plume.vector{ 4, 5, 6 }[2], 5, "vector with a number")
  T.eq(plume.select({ 4, 5, 6 }, 3), 6, "select with a number")
  T.raises(function() plume.select(3, 1) end, "plume.select: list must be a table (got number)")
end)

-- mu ~ normal(0, prior_sd); theta_j ~ normal(mu, 1); tau ~ gamma(3, 3); y_j ~ normal(theta_j, 1/sqrt(tau));
-- b ~ bernoulli(0.5), w ~ normal(mu + 2 b - 1, 1): every site has an exact conditional
local function hier(prior_sd)
  return plume.model(function(m, d)
    local mu = m:sample("mu", D.normal(0, prior_sd))
    local tau = m:sample("tau", D.gamma(3, 3))
    for j = 1, #d.y do
      local theta = m:sample("theta" .. j, D.normal(mu, 1))
      m:observe("y" .. j, D.normal(theta, 1 / plume.math.sqrt(tau)), d.y[j])
    end
    local b = m:sample("b", D.bernoulli(0.5))
    m:observe("w", D.normal(mu + 2 * b - 1, 1), d.w)
  end)
end

T.test("gibbs_plan_names_each_update", function()
  local g = plume.graph(hier(1), { y = { 0.1, 0.2 }, w = 0 })
  local how = {}
  for _, p in ipairs(g:gibbs_plan()) do how[p.site] = p.update end
  T.eq(how.mu, "normal", "mu")
  T.eq(how.tau, "gamma", "tau")
  T.eq(how.theta1, "normal", "theta1")
  T.eq(how.b, "enumeration", "b")
end)

-- simulation-based calibration: ranks of the true mu and tau among posterior draws, inferred with a prior sd
-- of mu that is prior_sd (1 is the truth's)
local function sbc(prior_sd, reps, seed)
  local post_model = hier(prior_sd)
  plume.seed(seed)
  local bins = {}
  for b = 1, 10 do bins[b] = 0 end
  for r = 1, reps do
    local mu, tau = D.normal(0, 1):sample(), D.gamma(3, 3):sample()
    local y = {}
    for j = 1, 3 do y[j] = D.normal(D.normal(mu, 1):sample(), 1 / math.sqrt(tau)):sample() end
    local w = D.normal(mu + 2 * D.bernoulli(0.5):sample() - 1, 1):sample()
    local post = plume.infer(post_model, { y = y, w = w }, { method = "gibbs", samples = 396, thin = 4, warmup = 50,
      chains = 1, seed = seed * 1000 + r })
    local rank = 0
    for _, v in ipairs(post:draws("mu")) do if v < mu then rank = rank + 1 end end
    local bn = rank // 10 + 1
    bins[bn] = bins[bn] + 1
  end
  local chi2, e = 0, reps / 10
  for b = 1, 10 do chi2 = chi2 + (bins[b] - e) ^ 2 / e end
  return chi2, bins
end

-- chi-square with 9 degrees of freedom: 27.9 is its 0.999 quantile (fixed seeds: the check is deterministic)
T.test("sbc_gibbs_ranks_uniform", function()
  local chi2, bins = sbc(1, 300, 21)
  T.ok(chi2 < 27.9, string.format("chi-square %.1f (bins %s)", chi2, table.concat(bins, " ")))
end)

T.test("sbc_negative_control_wrong_prior_variance_is_rejected", function()
  local chi2, bins = sbc(0.5, 300, 22)
  T.ok(chi2 > 27.9, string.format("chi-square %.1f (bins %s)", chi2, table.concat(bins, " ")))
end)

T.test("errors_name_the_site", function()
  local nonconj = plume.model(function(m, y)
    local mu = m:sample("mu", D.normal(0, 1))
    m:observe("y", D.normal(plume.math.exp(mu), 1), y)
  end)
  local err = T.raises(function() plume.infer(nonconj, 1, { method = "gibbs", samples = 10 }) end,
    "site 'mu' has no exact conditional")
  T.ok(err:find("not affine", 1, true) and err:find("\"auto\"", 1, true), err)
  T.raises(function() plume.infer(mix1, 0.8, { method = "nuts", samples = 10 }) end,
    "site 'z' is discrete (categorical)")
  local unbounded = plume.model(function(m)
    local k = m:sample("k", D.poisson(3))
    m:observe("y", D.normal(k, 1), 2.5)
  end)
  T.raises(function() plume.infer(unbounded, nil, { method = "gibbs", samples = 10 }) end,
    "site 'k' has no exact conditional: 'k' is discrete (poisson) with an unbounded support")
  T.raises(function() plume.infer(mix1, 0.8, { method = "gibbs", samples = 10, init = { z = 1.5 } }) end,
    "init value of 'z' is 1.5, but the site is discrete")
end)

T.test("init_sets_a_discrete_site", function()
  local post = plume.infer(mix1, 0.8, { method = "gibbs", samples = 1, warmup = 0, chains = 1, seed = 1,
    init = { z = 2 } })
  T.eq(#post:draws("z"), 1, "one draw")
end)

T.test("same_draws_for_any_thread_count", function()
  local d = { y = { 0.3, -0.5, 1.2 }, w = 0.4 }
  local a = plume.infer(hier(1), d, { method = "gibbs", samples = 100, chains = 3, seed = 9, threads = 1 })
  local b = plume.infer(hier(1), d, { method = "gibbs", samples = 100, chains = 3, seed = 9, threads = 3 })
  T.eq(table.concat(a:draws("mu"), ","), table.concat(b:draws("mu"), ","), "mu")
  T.eq(table.concat(a:draws("b"), ","), table.concat(b:draws("b"), ","), "b")
end)
