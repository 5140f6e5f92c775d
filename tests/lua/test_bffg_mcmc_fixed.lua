-- test_bffg_mcmc_fixed.lua -- plume.bffg method = "mcmc" with fixed_aux = true: the backward filter is made at one
-- parameter value (moved to the chain's value at a few warm-up iterations only) and every parameter move is one
-- guided path weighted for the proposed value. The guided weights are exact for any auxiliary, so the parameter
-- posterior must still be the exact one: the posterior of an Ornstein-Uhlenbeck rate by quadrature of the exact
-- (Kalman) likelihood, as in test_bffg_mcmc.lua, with tolerances from the chains' own Monte Carlo error.
local T = dofile("tests/lua/check.lua")
local MK = plume.markov_kernel

local mu, sigma, R = 0.5, 0.7, 0.05
local oys = { 1.1, 0.4, -0.2, 0.9 }
local ou = plume.sde{ dim = 1, params = { theta = 1, mu = mu, sigma = sigma },
  drift = function(p, x) return -p.theta * (x - p.mu) end,
  diffusion = function(p) return p.sigma end }

-- aux: nil (the linearisation at 0, which follows theta unless fixed_aux) or a fixed auxiliary {B=, beta=, sigma=}
local function ou_chain(dt, aux)
  local g = plume.dag()
  g:root("x0", plume.dist.normal(0, math.sqrt(0.5)))
  local O = MK.linear_gaussian{ B = 1, Q = R }
  for t = 1, #oys do
    g:kernel("x" .. t, "x" .. (t - 1), MK.sde{ sde = ou, t0 = t - 1, t1 = t, dt = dt, at = not aux and 0 or nil, aux = aux })
     :observe("y" .. t, "x" .. t, O, oys[t])
  end
  return g
end

local function exact_theta(data)
  local prior = plume.dist.uniform(0, 10)
  local h, m0, m1, m2, lmax, lw = 1e-3, 0, 0, 0, -math.huge, {}
  for i = 1, 9999 do
    local th = i * h
    local e = math.exp(-th)
    local k = plume.lgssm{ A = e, b = mu * (1 - e), Q = sigma ^ 2 * (1 - e * e) / (2 * th), C = 1, R = R, m0 = 0, P0 = 0.5 }
    lw[i] = k:loglik(data) + prior:logpdf(th)
    lmax = math.max(lmax, lw[i])
  end
  for i = 1, #lw do
    local w, th = math.exp(lw[i] - lmax), i * h
    m0, m1, m2 = m0 + w, m1 + w * th, m2 + w * th * th
  end
  return m1 / m0, math.sqrt(m2 / m0 - (m1 / m0) ^ 2)
end

local mean, sd = exact_theta(oys)

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
