-- test_bffg_mcmc_fixed.lua -- plume.bffg method = "mcmc" with fixed_aux = true: the backward filter is made at one
-- parameter value (moved to the chain's value at a few warm-up iterations only) and every parameter move is one
-- guided path weighted for the proposed value. The guided weights are exact for any auxiliary, so the parameter
-- posterior must still be the exact one: the posterior of an Ornstein-Uhlenbeck rate by quadrature of the exact
-- (Kalman) likelihood, as in test_bffg_mcmc.lua, with tolerances from the chains' own Monte Carlo error.
local T = dofile("tests/lua/check.lua")
package.path = "tests/lua/?.lua;" .. package.path
local OU = require "ou_theta"

local mu, sigma, oys, ou, ou_chain = OU.mu, OU.sigma, OU.ys, OU.sde, OU.chain
local mean, sd = OU.exact_theta(oys)

-- With the auxiliary fixed at theta_a != theta the weights carry the Girsanov integral on the grid, whose error is
-- O(dt): dt = 0.005 keeps it well below the Monte Carlo error of these runs.
local function check(name, g, init)
  T.test(name, function()
    local opts = { method = "mcmc", samples = 2000, warmup = 500, chains = 4, seed = 7, sde = ou, fixed_aux = true,
      params = { theta = plume.dist.uniform(0, 10) }, init = { theta = init } }
    local post = plume.bffg(g, nil, opts)
    local s = post:summary().theta
    T.near(s.mean, mean, 4.5 * s.mcse_mean, "posterior mean " .. s.mean .. " vs " .. mean)
    T.near(s.sd, sd, 4.5 * sd / math.sqrt(2 * s.ess_bulk), "posterior sd " .. s.sd .. " vs " .. sd)
    for c = 1, 4 do T.ok(post.accept_params[c] > 0.1 and post.accept_params[c] < 0.7, "acceptance") end
    -- (the frozen B~ fits only part of this broad posterior, so the chains mix more slowly than with the default)
    T.ok(s.rhat < 1.1, "rhat " .. s.rhat .. " ess " .. s.ess_bulk)
    -- negative control: other data move the posterior far outside the same tolerance
    local other = {}
    for i, y in ipairs(oys) do other["y" .. i] = y * 0.2 + mu * 0.8 end
    opts.samples = 500
    local s2 = plume.bffg(g, other, opts):summary().theta
    T.ok(math.abs(s2.mean - mean) > 4.5 * s2.mcse_mean, "other data must miss (" .. s2.mean .. ")")
    print(string.format("  theta: exact %.4f (sd %.4f); fixed_aux %.4f (sd %.4f, mcse %.4f); other data %.4f", mean, sd,
      s.mean, s.sd, s.mcse_mean, s2.mean))
  end)
end

check("fixed auxiliary from the linearisation at a far start (theta = 4): OU rate posterior matches quadrature",
  ou_chain(0.005), 4)
check("a user's auxiliary that never depends on theta (B = -3): OU rate posterior matches quadrature",
  ou_chain(0.005, { B = -3, beta = 0, sigma = sigma }), 1)

T.test("fixed_aux is an option of method mcmc only", function()
  T.raises(function() plume.bffg(ou_chain(0.1), nil, { fixed_aux = true }) end, "for method \"mcmc\"")
end)

T.test("fixed_aux: the same draws for any thread count", function()
  local function run(threads)
    return plume.bffg(ou_chain(0.1), nil, { method = "mcmc", samples = 50, warmup = 40, chains = 3, seed = 11,
      threads = threads, sde = ou, fixed_aux = true, params = { theta = plume.dist.uniform(0, 10) } })
  end
  local a, b = run(1), run(3)
  local da, db = a:draws("theta"), b:draws("theta")
  T.eq(#da, 150)
  for i = 1, #da do T.eq(da[i], db[i], "theta " .. i) end
end)
