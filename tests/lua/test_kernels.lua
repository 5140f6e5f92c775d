-- test_kernels.lua -- plume.kernel values run by plume.infer on static graphs: exact conjugate posteriors under
-- slice, elliptical slice, restricted MH and composites (4 Monte Carlo standard errors on means, 10% on sds,
-- fixed seeds), per-kernel diagnostics, mixture weights, thread-count invariance, and errors that name the site.
-- SBC of the kernels with negative controls is in tests/test_kernels.c.
local T = dofile("tests/lua/check.lua")
local D, K = plume.dist, plume.kernel

local ys = { 1.2, 0.3, 2.5, 1.9, 0.7, -0.4, 1.1 }
local prec, sum = 1 / 100 + #ys / 4, 0
for _, y in ipairs(ys) do sum = sum + y end
local exact_mean, exact_sd = (sum / 4) / prec, math.sqrt(1 / prec)

-- mu ~ N(0, 10), y_i ~ N(mu, 2): mu | y is normal with precision 1/100 + n/4; s is a free extra site
local nn = plume.model(function(m, y)
  local mu = m:sample("mu", D.normal(0, 10))
  m:sample("s", D.gamma(2, 1))
  for i = 1, #y do m:observe("y" .. i, D.normal(mu, 2), y[i]) end
end)

local function exact_ok(post, what)
  local s = post:summary().mu
  T.ok(math.abs(s.mean - exact_mean) < 4 * s.mcse_mean,
    string.format("%s: mean %.4f vs exact %.4f, mcse %.4f", what, s.mean, exact_mean, s.mcse_mean))
  T.near(s.sd, exact_sd, 0.1 * exact_sd, what .. ": sd within 10%")
  local g = post:summary().s
  T.ok(math.abs(g.mean - 2) < 4 * g.mcse_mean, string.format("%s: s mean %.3f vs 2 (gamma prior)", what, g.mean))
end

T.test("kernel_values_print_what_they_are", function()
  T.eq(tostring(K.nuts{ sites = { "mu" }, max_depth = 8 }), "plume.kernel nuts{mu; max_depth = 8}", "nuts")
  T.eq(tostring(K.cycle{ K.slice{ sites = "mu" }, K.mh{ sites = { "s" }, proposal = 0.5 } }),
    "plume.kernel cycle{slice{mu}, mh{s; proposal = 0.5}}", "cycle")
  T.eq(tostring(K.rep(K.hmc{ steps = 5 }, 3)), "plume.kernel rep{hmc{all continuous sites; steps = 5} x 3}", "rep")
  T.ok(tostring(K.mixture{ { K.elliptical_slice{ sites = "mu" }, 1 }, { K.slice{}, 3 } }):find("elliptical_slice{mu}: 1", 1, true),
    "mixture")
end)

T.test("cycle_of_slice_and_restricted_mh_matches_exact_posterior", function()
  local post = plume.infer(nn, ys, { kernel = K.cycle{ K.slice{ sites = "mu" }, K.mh{ sites = "s" } },
    samples = 2000, chains = 4, seed = 1 })
  T.eq(post.method, "kernel", "method")
  exact_ok(post, "cycle")
  T.eq(#post["k1.accept_rate"], 4, "per-kernel acceptance per chain")
  T.ok(post["k2.accept_rate"][1] > 0.2 and post["k2.accept_rate"][1] < 0.8, "mh acceptance adapted")
  T.ok(tostring(post):find("k2: accept", 1, true), "the posterior prints per-kernel acceptance")
end)

T.test("elliptical_slice_and_nuts_blocks_match_exact_posterior", function()
  local post = plume.infer(nn, ys, { kernel = K.cycle{ K.elliptical_slice{ sites = "mu" }, K.nuts{ sites = "s" } },
    samples = 2000, chains = 4, seed = 2 })
  exact_ok(post, "ess + nuts")
  T.eq(post.divergences, 0, "divergences")
  T.ok(#post.sampler:column("k2.stepsize__") == 8000, "the nuts block's step size column")
end)

T.test("method_slice_matches_exact_posterior", function()
  local post = plume.infer(nn, ys, { method = "slice", samples = 2000, chains = 4, seed = 3 })
  T.eq(post.method, "slice", "method")
  exact_ok(post, "slice")
end)

T.test("mixture_weights_are_respected_and_rep_runs", function()
  local k = K.mixture{ { K.rep(K.mh{ sites = "mu" }, 2), 1 }, { K.slice{}, 3 } }
  local post = plume.infer(nn, ys, { kernel = k, samples = 2000, chains = 2, seed = 4 })
  local ran = 0
  for _, v in ipairs(post.sampler:column("k1.accept_stat__")) do if v == v then ran = ran + 1 end end
  -- binomial(4000, 1/4): sd 0.0068, 4 sd = 0.027
  T.near(ran / 4000, 0.25, 0.027, "share of iterations of kernel 1")
  exact_ok(post, "mixture")
end)

T.test("kernel_draws_are_identical_for_one_and_two_threads", function()
  local k = K.cycle{ K.nuts{ sites = "mu" }, K.slice{ sites = "s" } }
  local a = plume.infer(nn, ys, { kernel = k, samples = 300, chains = 3, seed = 5, threads = 1 })
  local b = plume.infer(nn, ys, { kernel = k, samples = 300, chains = 3, seed = 5, threads = 2 })
  local da, db = a:draws("mu"), b:draws("mu")
  T.eq(#da, #db, "lengths")
  for i = 1, #da do if da[i] ~= db[i] then error("draw " .. i .. " differs") end end
end)

T.test("auto_on_a_static_graph_says_what_it_picked", function()
  local post = plume.infer(nn, ys, { method = "auto", samples = 500, chains = 2, seed = 6, quiet = true })
  -- mu is conjugate (normal-normal) given s: exact Gibbs for it, NUTS for the rest, cycled
  T.eq(post.method, "auto", "auto cycles gibbs and nuts")
  T.ok(post.kernel:find("gibbs on ", 1, true) and post.kernel:find("; nuts on ", 1, true), "what auto picked: " .. post.kernel)
end)

T.test("invalid_parameters_at_a_proposal_are_a_rejection", function()
  -- sigma = s can be negative: those proposals are rejected, the run goes on
  local model = plume.model(function(m, y)
    local s = m:sample("s", D.normal(1, 1))
    for i = 1, #y do m:observe("y" .. i, D.normal(0, s), y[i]) end
  end)
  for _, k in ipairs{ K.mh{}, K.slice{} } do
    local post = plume.infer(model, ys, { kernel = k, samples = 500, chains = 2, seed = 7, init = { s = 1 } })
    T.ok(post:summary().s.q5 > 0, tostring(k) .. ": s stays positive")
  end
end)

T.test("bad_kernels_are_errors_that_name_the_site", function()
  local function run(k, extra)
    local o = { kernel = k, samples = 10, chains = 1, seed = 1 }
    for key, v in pairs(extra or {}) do o[key] = v end
    return function() plume.infer(nn, ys, o) end
  end
  T.raises(run(K.nuts{ sites = { "nope" } }), "kernel nuts names site 'nope', which the model does not have")
  T.raises(run(K.slice{ sites = { "y1" } }), "site 'y1', which is observed, not latent")
  T.raises(run(K.elliptical_slice{ sites = { "s" } }), "site 's' has a gamma prior")
  T.raises(run(K.cycle{ K.slice{ sites = "mu" }, K.mh{ sites = { "mu", "mu" } } }), "names site 'mu' twice")
  T.raises(run(K.slice{}, { init = { mu = 0, s = 0 } }), "'s'")
  T.raises(function() plume.infer(nn, ys, { kernel = K.slice{}, method = "nuts" }) end, "either option 'method' or option 'kernel'")
  T.raises(function() plume.infer(nn, ys, { kernel = 3 }) end, "must be a plume.kernel value")
  T.raises(function() K.nuts{ metric = "full" } end, "'metric' must be \"diag\" or \"dense\"")
  T.raises(function() K.mh{ proposal = -1 } end, "'proposal' must be a scale > 0")
  T.raises(function() K.nuts{ site = "mu" } end, "unknown option 'site'")
  T.raises(function() K.rep(K.slice{}, 0) end, "count must be in 1..1e6")
  T.raises(function() K.mixture{ { K.slice{}, -1 } } end, "weight must be a number >= 0")
  local dynamic = plume.model(function(m)
    local x = m:sample("x", D.normal(0, 1))
    if x > 0 then m:sample("y", D.normal(0, 1)) end
  end)
  T.raises(function() plume.infer(dynamic, nil, { kernel = K.slice{} }) end, "needs a static model")
end)

T.test("elliptical_slice_on_an_mvnormal_site_whose_mean_is_another_site_matches_exact", function()
  -- mu ~ N(0, 1), theta ~ mvnormal((mu, 0), S), y_i ~ N(theta_1 + theta_2, 1): a Gaussian posterior. With
  -- h = (0, 1, 1) and the prior covariance C of (mu, theta): mean = C h ybar / (h'Ch + 1/n),
  -- var = diag(C) - (C h)^2 / (h'Ch + 1/n); C h = (1, 2.6, 2.6), h'Ch = 5.2.
  local model = plume.model(function(m, y)
    local mu = m:sample("mu", D.normal(0, 1))
    local th = m:sample("theta", D.mvnormal({ mu, 0 }, { { 1, 0.6 }, { 0.6, 2 } }))
    for i = 1, #y do m:observe("y" .. i, D.normal(th[1] + th[2], 1), y[i]) end
  end)
  local post = plume.infer(model, { 0.5, 2.0, 1.1 }, { kernel = K.cycle{ K.elliptical_slice{ sites = "theta" },
    K.slice{ sites = "mu" } }, samples = 4000, seed = 9 })
  local s, v = post:summary(), 5.2 + 1 / 3
  local exact = { mu = { 1.2 / v, 1 - 1 / v }, ["theta[1]"] = { 2.6 * 1.2 / v, 2 - 2.6 ^ 2 / v },
                  ["theta[2]"] = { 2.6 * 1.2 / v, 2 - 2.6 ^ 2 / v } }
  for name, e in pairs(exact) do
    T.ok(math.abs(s[name].mean - e[1]) < 4 * s[name].mcse_mean,
      string.format("%s: mean %.4f vs exact %.4f (mcse %.4f)", name, s[name].mean, e[1], s[name].mcse_mean))
    T.near(s[name].sd, math.sqrt(e[2]), 0.1 * math.sqrt(e[2]), name .. " sd within 10%")
  end
end)
