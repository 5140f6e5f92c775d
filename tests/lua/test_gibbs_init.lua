-- test_gibbs_init.lua -- starting points of MCMC on static graphs: sites without `init` start from ancestral
-- draws of their priors (each given the sites drawn before it), not uniform(-2, 2) on the unconstrained scale;
-- sites given in `init` are kept and the rest drawn given them; the same starts for any thread count.
local T = dofile("tests/lua/check.lua")
package.path = "tests/lua/?.lua;" .. package.path
local D = plume.dist

-- b sits within 0.001 of a, so one Gibbs sweep (a given b, then b given a) leaves a where b started: the first
-- draw of a shows b's starting point. Uniform(-2, 2) starts put it in (-2, 2); prior draws near 100.
local tight = plume.model(function(m)
  local a = m:sample("a", D.normal(100, 1))
  local b = m:sample("b", D.normal(a, 0.001))
  m:observe("y", D.normal(b, 1000), 0)   -- a child, so that b has a conjugate update; it barely informs b
end)

T.test("sites_start_from_prior_draws", function()
  local post = plume.infer(tight, nil, { method = "gibbs", samples = 1, warmup = 0, chains = 4, seed = 7 })
  local a = post:draws("a")
  -- b's start is a draw from normal(a0, 0.001) with a0 the median of 5 normal(100, 1) draws: within 4 sd of 100
  for c = 1, 4 do T.near(a[c], 100, 4, "chain " .. c .. " starts near the prior mean") end
  T.ok(a[1] ~= a[2] and a[2] ~= a[3], "chains start at different draws")
end)

T.test("init_values_are_kept_and_later_sites_drawn_given_them", function()
  local post = plume.infer(tight, nil, { method = "gibbs", samples = 1, warmup = 0, chains = 2, seed = 7,
    init = { a = 50 } })
  -- b starts within 0.001 of a = 50, so the first sweep leaves a near 50 (a | b is normal(b, 0.001))
  for c = 1, 2 do T.near(post:draws("a")[c], 50, 0.01, "chain " .. c) end
end)

T.test("starts_do_not_depend_on_threads", function()
  local a = plume.infer(tight, nil, { method = "gibbs", samples = 5, warmup = 0, chains = 3, seed = 11, threads = 1 })
  local b = plume.infer(tight, nil, { method = "gibbs", samples = 5, warmup = 0, chains = 3, seed = 11, threads = 3 })
  T.eq(table.concat(a:draws("b"), ","), table.concat(b:draws("b"), ","), "same draws for 1 and 3 threads")
end)

-- BUGS rats (examples/data/rats.json) with its vague priors: gamma(0.001, 0.001) precisions and normal(0, 1000)
-- means. From uniform(-2, 2) starts the alpha[i] begin near 0 with a precision near 1, and 100 Gibbs sweeps
-- leave alpha0 near 70; from prior draws the chains reach the posterior (JAGS book: alpha0 = 106.6) in 100.
T.test("rats_reaches_the_posterior_after_a_short_warmup", function()
  local R = require "rats_model"
  local data, rats = R.data, R.model
  local post = plume.infer(rats, data, { method = "gibbs", samples = 300, warmup = 100, chains = 4, seed = 1, quiet = true })
  local s = post:summary().alpha0
  -- 4 MCSE, plus 0.3 for the reference's own error (JAGS runs here give 106.4-106.5)
  T.near(s.mean, 106.6, 4 * s.mcse_mean + 0.3, "alpha0")
  T.ok(s.rhat < 1.05, "chains agree: rhat " .. s.rhat)
  -- "auto" (one gaussian block for the means, gamma updates for the precisions) from the BUGS example's own
  -- starting values: the alpha[i] are drawn around alpha.c = 150, far below the data (about 240). Precisions
  -- updated before the block see those residuals (tau.c about 1e-4), the block then shrinks every alpha[i] onto
  -- alpha.c, and alpha.tau stays near 2 (the posterior's is 0.005) for thousands of sweeps; the block first
  -- moves the means to the data, and 200 sweeps reach the posterior.
  local init = { ["alpha.c"] = 150, ["beta.c"] = 10, ["tau.c"] = 1, ["alpha.tau"] = 1, ["beta.tau"] = 1 }
  local a = plume.infer(rats, data, { samples = 300, warmup = 200, chains = 4, seed = 1, init = init, quiet = true })
  local at = a:summary()["alpha.tau"]
  T.ok(at.rhat < 1.05, "auto from the BUGS inits: chains agree on alpha.tau: rhat " .. at.rhat)
  T.near(at.mean, 0.005, 0.002, "auto from the BUGS inits: alpha.tau")
  T.near(a:summary().alpha0.mean, 106.6, 4 * a:summary().alpha0.mcse_mean + 0.3, "auto from the BUGS inits: alpha0")
end)
