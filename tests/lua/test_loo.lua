-- test_loo.lua -- plume.loo (PSIS-LOO, WAIC), post:log_lik and post:predict against closed forms on the
-- conjugate normal model y_i ~ N(mu, 1), mu ~ N(m0, s0), whose leave-one-out predictive densities, WAIC terms
-- and posterior predictive are known exactly. Draws come from plume.laplace (exact here: the posterior is
-- Gaussian) with fixed seeds. Tolerances: the PSIS-LOO elpd estimate from 4000 draws has a Monte Carlo sd of
-- 0.019 on this data (measured over 20 seeds), so 0.08 is 4 sd; WAIC's sd is smaller still.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

local y = { 1.2, 0.3, 2.1, 1.7, 0.9, -0.4, 1.1, 0.6 }
local m0, s0 = 0.5, 2
local function post_of(ys)
  local sy = 0
  for _, v in ipairs(ys) do sy = sy + v end
  local prec = 1 / s0 ^ 2 + #ys
  return (m0 / s0 ^ 2 + sy) / prec, math.sqrt(1 / prec)
end
local function model_with(sigma)
  return plume.model(function(m, d)
    local mu = m:sample("mu", D.normal(m0, s0))
    for i = 1, #d do m:observe("y" .. i, D.normal(mu, sigma), d[i]) end
    m:deterministic("twice", 2 * mu)
  end)
end
local conj = model_with(1)

-- exact LOO: the posterior without point i, then the predictive N(mn_-i, 1 + sn_-i^2) at y_i
local function exact_loo(ys)
  local total, pts = 0, {}
  for i = 1, #ys do
    local rest = {}
    for j = 1, #ys do if j ~= i then rest[#rest + 1] = ys[j] end end
    local mn, sn = post_of(rest)
    pts[i] = D.normal(mn, math.sqrt(1 + sn ^ 2)):logpdf(ys[i])
    total = total + pts[i]
  end
  return total, pts
end

T.test("psis_loo_matches_exact_loo", function()
  local exact = exact_loo(y)
  local l = plume.loo(plume.laplace(conj, y, { draws = 4000, seed = 11 }))
  T.near(l.elpd_loo, exact, 0.08, "elpd_loo")
  T.near(l.looic, -2 * l.elpd_loo, 1e-12, "looic")
  T.eq(l.n_data_points, #y)
  for i, k in ipairs(l.pareto_k) do T.ok(k < 0.5, "k-hat of point " .. i .. " is " .. k) end
  T.eq(l.k_good, #y, "all good")
  T.ok(not l.warning, "no warning")
  T.ok(tostring(l):find("elpd_loo", 1, true), "prints")
end)

-- the brute-force reference: refit without each point (plume.laplace on the smaller data set, exact here) and
-- average the left-out point's likelihood over the refit's draws
T.test("psis_loo_matches_brute_force_refits", function()
  local l = plume.loo(plume.laplace(conj, y, { draws = 4000, seed = 12 }))
  local bf = 0
  for i = 1, #y do
    local rest = {}
    for j = 1, #y do if j ~= i then rest[#rest + 1] = y[j] end end
    local mu = plume.laplace(conj, rest, { draws = 4000, seed = 100 + i }):draws("mu")
    local s = 0
    for _, v in ipairs(mu) do s = s + math.exp(D.normal(v, 1):logpdf(y[i])) end
    bf = bf + math.log(s / #mu)
    T.near(l.elpd_loo_i[i], math.log(s / #mu), 0.05, "point " .. i)
  end
  T.near(l.elpd_loo, bf, 0.1, "sum")
end)

-- WAIC: lpd_i = log N(y_i; mn, 1 + sn^2); p_waic_i = Var(-(y_i - mu)^2 / 2) = (2 sn^4 + 4 (y_i - mn)^2 sn^2) / 4
T.test("waic_matches_closed_form", function()
  local mn, sn = post_of(y)
  local elpd, pw = 0, 0
  for _, v in ipairs(y) do
    local p = (2 * sn ^ 4 + 4 * (v - mn) ^ 2 * sn ^ 2) / 4
    elpd = elpd + D.normal(mn, math.sqrt(1 + sn ^ 2)):logpdf(v) - p
    pw = pw + p
  end
  local w = plume.loo(plume.laplace(conj, y, { draws = 4000, seed = 13 })).waic
  T.near(w.p_waic, pw, 0.03, "p_waic")
  T.near(w.elpd_waic, elpd, 0.05, "elpd_waic")
  T.near(w.waic, -2 * w.elpd_waic, 1e-12, "waic")
end)

-- negative control: draws from the wrong posterior (a model with sigma = 3) scored under the right model give
-- an elpd far outside the tolerance of the first test
T.test("negative_control_wrong_posterior_is_detected", function()
  local wrong = plume.laplace(model_with(3), y, { draws = 4000, seed = 11 })
  local l = plume.loo(wrong, conj, y)
  T.ok(math.abs(l.elpd_loo - exact_loo(y)) > 0.08, "wrong posterior not detected: " .. l.elpd_loo)
end)

T.test("outlier_has_large_k_hat", function()
  local yo = { 1.2, 0.3, 2.1, 1.7, 0.9, -0.4, 1.1, 12 }
  local l = plume.loo(plume.laplace(conj, yo, { draws = 4000, seed = 14 }))
  T.ok(l.pareto_k[8] > 0.7, "outlier k-hat " .. l.pareto_k[8])
  for i = 1, 7 do T.ok(l.pareto_k[i] < 0.7, "k-hat of point " .. i .. " is " .. l.pareto_k[i]) end
  T.ok(l.warning, "warning set")
  T.ok(tostring(l):find("warning: some Pareto k > 0.7", 1, true), "warning printed")
end)

T.test("log_lik_is_pointwise_density", function()
  local p = plume.laplace(conj, y, { draws = 50, seed = 15 })
  local ll, mu = p:log_lik(), p:draws("mu")
  T.eq(#ll:sites(), #y, "one column per observation")
  local col = ll:draws("y3")
  for s = 1, #mu do T.near(col[s], D.normal(mu[s], 1):logpdf(y[3]), 1e-12, "draw " .. s) end
end)

T.test("predict_static_matches_posterior_predictive", function()
  local mn, sn = post_of(y)
  local N = 4000
  local p = plume.laplace(conj, y, { draws = N, seed = 16 })
  local pr = p:predict(conj, { 0, 0 }, { seed = 1 })
  local s = pr:summary()
  T.eq(#pr:sites(), 3, "two observations and one deterministic")
  local sd = math.sqrt(1 + sn ^ 2)
  T.near(s.y1.mean, mn, 4 * sd / math.sqrt(N), "predictive mean")
  T.near(s.y2.sd, sd, 4 * sd / math.sqrt(2 * N), "predictive sd")
  local tw, mu = pr:draws("twice"), p:draws("mu")
  for k = 1, 20 do T.near(tw[k], 2 * mu[k], 1e-12, "deterministic under draw " .. k) end
  -- same seed, same draws
  T.eq(p:predict(conj, { 0, 0 }, { seed = 1 }):draws("y1")[7], pr:draws("y1")[7], "reproducible")
end)

-- the same predictive from a dynamic program (its structure depends on a discrete choice), run per draw
T.test("predict_dynamic_runs_per_draw", function()
  local dyn = plume.model(function(m, d)
    local z = m:sample("z", D.bernoulli(0.5))
    local mu = m:sample("mu", D.normal(m0, s0))
    if z == 1 then m:sample("w", D.normal(0, 1)) end   -- a site only some runs make: not static
    for i = 1, #d do m:observe("y" .. i, D.normal(mu, 1), d[i]) end
  end)
  local post = plume.infer(dyn, y, { method = "mh", samples = 1000, chains = 2, seed = 3 })
  local pr = post:predict(nil, { 0 }, { seed = 2 })
  T.eq(pr.evaluation, "per draw (dynamic program)")
  local mn, sn = post_of(y)
  local s = pr:summary()
  T.near(s.y1.mean, mn, 4 * s.y1.mcse_mean + 0.02, "predictive mean")
  local l = plume.loo(post)
  T.near(l.elpd_loo, exact_loo(y), 0.15, "loo of the dynamic program (MH draws, fewer effective)")
end)

T.test("loo_errors", function()
  local p = plume.laplace(conj, y, { draws = 20, seed = 1 })
  local path = os.tmpname()
  p:write_csv(path)
  local back = plume.read_posterior(path)
  os.remove(path)
  T.raises(function() plume.loo(back) end, "does not know its model")
  T.near(plume.loo(back, conj, y).elpd_loo, plume.loo(p).elpd_loo, 1e-9, "model passed explicitly")
  local noobs = plume.model(function(m) m:sample("mu", D.normal(0, 1)) end)
  T.raises(function() plume.loo(p, noobs, nil) end, "no observed site")
  local other = plume.model(function(m) m:sample("nu", D.normal(0, 1)); m:observe("y", D.normal(0, 1), 1) end)
  T.raises(function() plume.loo(p, other, nil) end, "latent site 'nu' is not in the posterior's draws")
  T.raises(function() plume.loo(42) end, "expected a posterior")
  T.raises(function() p:predict(conj, y, { bogus = 1 }) end, "unknown option 'bogus'")
end)
