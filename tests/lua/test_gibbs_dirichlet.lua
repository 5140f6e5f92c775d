-- test_gibbs_dirichlet.lua -- dirichlet latent sites in static models: the Gibbs update with categorical
-- children (counts added to the concentrations), NUTS on the same site through the simplex transform, a
-- mixture whose weights are unknown, and the refusal when a child is not categorical.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

local alpha, ys = { 1, 2, 3 }, { 1, 1, 1, 2, 3, 1, 2, 1 }
local model = plume.model(function(m, ys)
  local w = m:sample("w", D.dirichlet(alpha))
  for i, y in ipairs(ys) do m:observe("y" .. i, D.categorical(w), y) end
end)
-- the posterior is dirichlet(alpha + counts) = dirichlet(6, 4, 4): mean a_k / 14, variance a_k (14 - a_k) / (14^2 15)
local post_a, A = { 6, 4, 4 }, 14

local function check_means(post, what)
  local s = post:summary()
  for k = 1, 3 do
    local r = s["w[" .. k .. "]"]
    -- 4 MCSE of the chains' own estimate of the mean
    T.near(r.mean, post_a[k] / A, 4 * r.mcse_mean, what .. " mean of w[" .. k .. "]")
    local sd = math.sqrt(post_a[k] * (A - post_a[k]) / (A * A * (A + 1)))
    -- the sd of 4000 draws: within 10% (its relative error is about 1 / sqrt(2 ESS) < 3%)
    T.near(r.sd, sd, 0.1 * sd, what .. " sd of w[" .. k .. "]")
  end
end

T.test("dirichlet_categorical_gibbs_equals_the_closed_form", function()
  local post = plume.infer(model, ys, { method = "gibbs", samples = 2000, warmup = 100, chains = 2, seed = 1 })
  check_means(post, "gibbs")
  local auto = plume.infer(model, ys, { samples = 10, warmup = 10, chains = 1, seed = 1, quiet = true })
  T.ok(auto.kernel:find("w (dirichlet-categorical)", 1, true), "auto picks the conjugate update: " .. auto.kernel)
end)

T.test("dirichlet_site_by_nuts_equals_the_closed_form", function()
  -- NUTS moves the softmax coordinates: right only if the Jacobian and the normal on their mean are right
  local post = plume.infer(model, ys, { method = "nuts", samples = 2000, warmup = 500, chains = 2, seed = 2 })
  check_means(post, "nuts")
end)

T.test("mixture_with_unknown_weights_recovers_them", function()
  -- 3 components 8 sd apart, so every label is certain and w's posterior is dirichlet(1 + n_k) for the
  -- simulated counts n_k
  local mu, truth, N = { -8, 0, 8 }, { 0.2, 0.3, 0.5 }, 300
  plume.seed(5)
  local y, n = {}, { 0, 0, 0 }
  for i = 1, N do
    local z = D.categorical(truth):sample()
    n[z] = n[z] + 1
    y[i] = D.normal(mu[z], 1):sample()
  end
  local mix = plume.model(function(m, y)
    local w = m:sample("w", D.dirichlet({ 1, 1, 1 }))
    local means = plume.vector(mu)
    for i = 1, #y do
      local z = m:sample("z[" .. i .. "]", D.categorical(w))
      m:observe("y[" .. i .. "]", D.normal(means[z], 1), y[i])
    end
  end)
  local post = plume.infer(mix, y, { method = "gibbs", samples = 1000, warmup = 100, chains = 2, seed = 3 })
  local s = post:summary()
  for k = 1, 3 do
    local r = s["w[" .. k .. "]"]
    T.near(r.mean, (1 + n[k]) / (3 + N), 4 * r.mcse_mean, "w[" .. k .. "] against dirichlet(1 + n)")
    T.near(r.mean, truth[k], 0.1, "w[" .. k .. "] near the truth")
  end
end)

T.test("dirichlet_with_a_normal_child_is_refused_naming_the_site", function()
  local bad = plume.model(function(m)
    local w = m:sample("w", D.dirichlet({ 1, 1 }))
    m:observe("y", D.normal(w[1], 1), 0.3)
  end)
  T.raises(function() plume.infer(bad, nil, { method = "gibbs", samples = 10 }) end,
    "site 'w' has no exact conditional: child y of 'w' is normal, not categorical")
  T.raises(function() plume.infer(bad, nil, { method = "nuts", samples = 10, init = { w = { 0.5, 0.6 } } }) end,
    "init value of 'w' must be a probability vector")
end)
