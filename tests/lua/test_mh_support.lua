-- test_mh_support.lua -- MH stays reversible when a site's support depends on another site. Prior-only models
-- (no observations), so the exact answer is the prior's: a move that pushes a reused value out of its new
-- support re-draws it, and the reverse move must be able to restore it or the chain drifts (before the fix:
-- mean(a) 0.71 for 0.5, P(K = 1) 0.49 for 0.25). Tolerance: 4.5 MCSE per seed (MCSE from the run's own
-- bulk ESS, runtime/diag), three seeds each; the errors before the fix were 30-50 MCSE.
local T = dofile("tests/lua/check.lua")
local D = plume.dist
local SEEDS = { 11, 12, 13 }

local function check_means(model, exact, opts)
  for _, seed in ipairs(SEEDS) do
    local o = { method = "mh", samples = 8000, warmup = 500, chains = 2, seed = seed }
    for k, v in pairs(opts or {}) do o[k] = v end
    local s = plume.infer(model, nil, o):summary()
    for site, mean in pairs(exact) do
      local r = s[site]
      T.ok(math.abs(r.mean - mean) < 4.5 * r.mcse_mean,
        string.format("seed %d: mean(%s) = %.4f, exact %.4f, mcse %.4f (%.1f mcse off)", seed, site, r.mean, mean,
          r.mcse_mean, math.abs(r.mean - mean) / r.mcse_mean))
    end
  end
end

T.test("uniform_b_below_one_minus_a_has_the_prior_means", function()
  local model = plume.model(function(m)
    local a = m:sample("a", D.uniform(0, 1))
    m:sample("b", D.uniform(0, 1 - a))
  end)
  check_means(model, { a = 0.5, b = 0.25 })
end)

T.test("categorical_z_over_1_to_K_has_the_prior_probabilities", function()
  local model = plume.model(function(m)
    local K = m:sample("K", D.categorical { 0.25, 0.25, 0.25, 0.25 })
    local p = {}
    for i = 1, K do p[i] = 1 / K end
    m:sample("z", D.categorical(p))
    m:deterministic("K_is_1", K == 1)
  end)
  -- E[z] = sum_K 0.25 (K + 1) / 2 = 1.75
  check_means(model, { K_is_1 = 0.25, K = 2.5, z = 1.75 })
end)

T.test("discrete_switch_of_a_continuous_support_has_the_prior_means", function()
  local model = plume.model(function(m)
    local z = m:sample("z", D.bernoulli(0.5))
    m:sample("x", D.uniform(0, z == 1 and 1 or 2))
  end)
  check_means(model, { z = 0.5, x = 0.75 })
end)

T.test("garch_style_beta1_below_one_minus_alpha1_prior", function()
  local model = plume.model(function(m)
    m:sample("omega", D.gamma(2, 1))
    local alpha1 = m:sample("alpha1", D.uniform(0, 1))
    m:sample("beta1", D.uniform(0, 1 - alpha1))
  end)
  check_means(model, { omega = 2, alpha1 = 0.5, beta1 = 0.25 })
end)

-- Negative control: the same check against a wrong exact value (mean(a) = 0.55) fails, so the tolerance can
-- tell a 10% error apart.
T.test("support_check_rejects_a_wrong_mean", function()
  local model = plume.model(function(m)
    local a = m:sample("a", D.uniform(0, 1))
    m:sample("b", D.uniform(0, 1 - a))
  end)
  local ok = pcall(check_means, model, { a = 0.55 })
  T.ok(not ok, "a mean of 0.55 is rejected")
end)
