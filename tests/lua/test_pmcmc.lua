-- test_pmcmc.lua -- particle MCMC on plume.ssm against exact answers from the Kalman filter (plume.lgssm):
-- particle Gibbs path marginals against the RTS smoother, the posterior of a conditionally conjugate parameter
-- (an observation offset) and PMMH's posterior of rho against quadrature of the exact posterior on a fine grid,
-- PMMH against a random-walk MH on the exact Kalman likelihood. Tolerances are z < 4 (z < 4.5 for the maximum
-- over all times) in units of the reported Monte Carlo standard errors, with fixed seeds; each check has a
-- negative control that the same tolerance rejects.
package.path = "tests/lua/?.lua;" .. package.path
local T = require "check"

local rho, s, r = 0.8, 0.6, 0.7
local lin = plume.ssm{
  params = { rho = rho, s = s, r = r, b = 0 },
  init  = function(p) return plume.dist.normal(0, p.s) end,
  trans = function(p, x, t) return plume.dist.normal(p.rho * x, p.s) end,
  obs   = function(p, x, t) return plume.dist.normal(x + p.b, p.r) end,
}
-- the same model: plume.lgssm starts from x_0 ~ N(m0, P0) and moves to x_1 = A x_0 + noise, so x_0 = 0 known
-- (P0 = 0) gives x_1 ~ N(0, s^2) as init above
local function kalman(rh, b, rr)
  return plume.lgssm{ A = rh, Q = s * s, C = 1, R = (rr or r) ^ 2, m0 = 0, P0 = 0, d = b or 0 }
end
local Tn = 50
local _, ys = lin:simulate(Tn, { seed = 11 })
ys[20] = 0 / 0   -- a missing observation

-- posterior mean and sd of a scalar by quadrature on G midpoints of [lo, hi] under a flat or given log prior
local function quadrature(lo, hi, loglik, logprior, G)
  G = G or 2000
  local ll, mx = {}, -math.huge
  for i = 1, G do
    local v = lo + (i - 0.5) * (hi - lo) / G
    ll[i] = loglik(v) + (logprior and logprior(v) or 0)
    mx = math.max(mx, ll[i])
  end
  local z, m1, m2 = 0, 0, 0
  for i = 1, G do
    local v, w = lo + (i - 0.5) * (hi - lo) / G, math.exp(ll[i] - mx)
    z, m1, m2 = z + w, m1 + w * v, m2 + w * v * v
  end
  return m1 / z, math.sqrt(m2 / z - (m1 / z) ^ 2)
end

local function z_of(summary, exact) return math.abs(summary.mean - exact) / summary.mcse_mean end

T.test("pgibbs_path_marginals_match_the_rts_smoother", function()
  local smeans = kalman(rho):smooth(ys)
  local fmeans = kalman(rho):filter(ys)
  local post = plume.pgibbs(lin, ys, { particles = 20, samples = 1000, warmup = 200, chains = 2, seed = 1 })
  local sm = post:summary()
  local zmax, zfilt = 0, 0
  for t = 1, Tn do
    local st = sm["x[" .. t .. "]"]
    zmax = math.max(zmax, z_of(st, smeans[t]))
    zfilt = math.max(zfilt, z_of(st, fmeans[t]))
  end
  T.ok(zmax < 4.5, "max z over 50 times against RTS: " .. zmax)
  -- negative control: the filtering means (what a path from a plain filter would match at t = T only)
  T.ok(zfilt > 8, "the filtering means are rejected: max z " .. zfilt)
  -- ancestor sampling keeps the path moving at every time, not only near T
  local lo = 1
  for t = 1, Tn do lo = math.min(lo, post.update_rate[t]) end
  T.ok(lo > 0.5, "update rate at every time above 0.5 (lowest " .. lo .. ")")
end)

T.test("pgibbs_posterior_of_rho_matches_quadrature", function()
  -- rho is conditionally conjugate given the path (a normal prior gives a normal full conditional); its exact
  -- posterior given y comes from Kalman likelihoods on a grid
  local prior = plume.dist.normal(0.5, 0.5)
  local m, sd = quadrature(-1.5, 2, function(v) return kalman(v):loglik(ys) end,
                           function(v) return prior:logpdf(v) end)
  -- the random-walk moves (conjugate = false); the conjugate draws are checked in the next test
  local post = plume.pgibbs(lin, ys, { particles = 20, samples = 1000, warmup = 200, chains = 2, seed = 2,
                                        params = { rho = prior }, times = { 1, Tn }, param_moves = 3,
                                        conjugate = false })
  T.eq(post.conjugate.rho, false, "rho moved by the random walk")
  local sr = post:summary().rho
  T.ok(z_of(sr, m) < 4, string.format("mean %.4f vs exact %.4f (mcse %.4f)", sr.mean, m, sr.mcse_mean))
  T.ok(math.abs(sr.sd - sd) < 4 * sd / math.sqrt(2 * sr.ess_bulk), string.format("sd %.4f vs %.4f", sr.sd, sd))
  -- negative control: the exact posterior mean of rho under another transition noise is rejected
  local mw = quadrature(-1.5, 2, function(v)
    return plume.lgssm{ A = v, Q = 0.45 ^ 2, C = 1, R = r * r, m0 = 0, P0 = 0 }:loglik(ys)
  end, function(v) return prior:logpdf(v) end)
  T.ok(z_of(sr, mw) > 4, string.format("wrong-model mean %.4f rejected (z %.1f)", mw, z_of(sr, mw)))
  T.eq(#post:sites(), 5, "rho, x[1], x[50], lp__, accept_stat__")
  T.ok(post.accept_rate[1] > 0.1 and post.accept_rate[1] < 0.9, "parameter moves accepted at a sane rate")
end)

T.test("pgibbs_conjugate_updates_match_quadrature", function()
  -- rho (normal prior, linear in the transition mean), a transition variance q (inverse-gamma prior) and an
  -- observation precision tau (gamma prior) are each drawn exactly from their conditionals given the path;
  -- the posterior of each, the others fixed, matches quadrature of the exact posterior from Kalman likelihoods
  local vm = plume.ssm{
    params = { rho = rho, q = s * s, tau = 1 / (r * r) },
    init  = function(p) return plume.dist.normal(0, plume.math.sqrt(p.q)) end,
    trans = function(p, x, t) return plume.dist.normal(p.rho * x, plume.math.sqrt(p.q)) end,
    obs   = function(p, x, t) return plume.dist.normal(x, 1 / plume.math.sqrt(p.tau)) end,
  }
  local cases = {
    { name = "rho", prior = plume.dist.normal(0.5, 0.5), lo = -1.5, hi = 2,
      kf = function(v) return kalman(v) end, wrong = function(v) return kalman(v, 0, 0.35) end },
    { name = "q", prior = plume.dist.inverse_gamma(2, 0.5), lo = 1e-3, hi = 3,
      kf = function(v) return plume.lgssm{ A = rho, Q = v, C = 1, R = r * r, m0 = 0, P0 = 0 } end,
      wrong = function(v) return plume.lgssm{ A = 0.5, Q = v, C = 1, R = r * r, m0 = 0, P0 = 0 } end },
    { name = "tau", prior = plume.dist.gamma(2, 1), lo = 1e-3, hi = 15,
      kf = function(v) return plume.lgssm{ A = rho, Q = s * s, C = 1, R = 1 / v, m0 = 0, P0 = 0 } end,
      wrong = function(v) return plume.lgssm{ A = rho, Q = 0.3, C = 1, R = 1 / v, m0 = 0, P0 = 0 } end },
  }
  for k, c in ipairs(cases) do
    local m, sd = quadrature(c.lo, c.hi, function(v) return c.kf(v):loglik(ys) end,
                             function(v) return c.prior:logpdf(v) end, 4000)
    local post = plume.pgibbs(vm, ys, { particles = 20, samples = 1000, warmup = 100, chains = 2, seed = 20 + k,
                                         params = { [c.name] = c.prior }, times = { 1 } })
    T.eq(post.conjugate[c.name], true, c.name .. " recognised as conjugate")
    T.eq(post.accept_rate[1], 1, c.name .. ": exact draws are always accepted")
    local sr = post:summary()[c.name]
    T.ok(z_of(sr, m) < 4, string.format("%s: mean %.4f vs exact %.4f (mcse %.4f)", c.name, sr.mean, m, sr.mcse_mean))
    T.ok(math.abs(sr.sd - sd) < 4 * sd / math.sqrt(2 * sr.ess_bulk),
         string.format("%s: sd %.4f vs %.4f", c.name, sr.sd, sd))
    local mw = quadrature(c.lo, c.hi, function(v) return c.wrong(v):loglik(ys) end,
                          function(v) return c.prior:logpdf(v) end, 4000)
    T.ok(z_of(sr, mw) > 4, string.format("%s: wrong-model mean %.4f rejected (z %.1f)", c.name, mw, z_of(sr, mw)))
  end
  -- a prior outside the families, or a parameter entering non-linearly, keeps the random walk
  local post = plume.pgibbs(vm, ys, { particles = 20, samples = 20, warmup = 20, chains = 1, seed = 9, times = { 1 },
                                       params = { rho = plume.dist.cauchy(0, 1), q = plume.dist.normal(1, 1) } })
  T.eq(post.conjugate.rho, false, "cauchy prior: random walk")
  T.eq(post.conjugate.q, false, "normal prior on a variance: random walk")
end)

T.test("pmmh_matches_quadrature_and_mh_on_the_exact_kalman_likelihood", function()
  local prior = plume.dist.uniform(-1, 1)
  local m, sd = quadrature(-1, 1, function(v) return kalman(v):loglik(ys) end)
  local post = plume.pmmh(lin, ys, { particles = 100, samples = 1000, warmup = 500, chains = 2, seed = 3,
                                      params = { rho = prior } })
  local sr = post:summary().rho
  T.ok(z_of(sr, m) < 4, string.format("mean %.4f vs exact %.4f (mcse %.4f)", sr.mean, m, sr.mcse_mean))
  T.ok(math.abs(sr.sd - sd) < 4 * sd / math.sqrt(2 * sr.ess_bulk), string.format("sd %.4f vs %.4f", sr.sd, sd))
  T.ok(sr.rhat < 1.05, "chains agree: rhat " .. sr.rhat)
  -- the same posterior by trace MH with the exact likelihood as a factor
  local exact = plume.model(function(mm, y)
    local v = mm:sample("rho", prior)
    mm:factor(kalman(v):loglik(y))
  end)
  local mh = plume.infer(exact, ys, { samples = 2000, chains = 2, seed = 4, quiet = true }):summary().rho
  local zmh = math.abs(sr.mean - mh.mean) / math.sqrt(sr.mcse_mean ^ 2 + mh.mcse_mean ^ 2)
  T.ok(zmh < 4, string.format("PMMH %.4f vs exact-likelihood MH %.4f: z %.2f", sr.mean, mh.mean, zmh))
  -- negative control: the posterior mean under a wrong observation noise is rejected
  local mw = quadrature(-1, 1, function(v) return kalman(v, 0, 0.35):loglik(ys) end)
  T.ok(z_of(sr, mw) > 4, string.format("wrong-model mean %.4f rejected (z %.1f)", mw, z_of(sr, mw)))
  T.eq(post.method, "pmmh", "method")
  T.eq(#post.accept_rate, 2, "an acceptance rate per chain")
end)

T.test("same_draws_on_one_and_two_threads_and_the_model_keeps_its_values", function()
  local opts = { particles = 30, samples = 30, warmup = 30, chains = 2, seed = 5,
                 params = { rho = plume.dist.uniform(-1, 1), s = plume.dist.halfnormal(1) } }
  for _, f in ipairs{ plume.pgibbs, plume.pmmh } do
    opts.threads = 1
    local a = f(lin, ys, opts)
    opts.threads = 2
    local b = f(lin, ys, opts)
    for _, site in ipairs(a:sites()) do
      local da, db = a:draws(site), b:draws(site)
      for i = 1, #da do
        if da[i] ~= db[i] and da[i] == da[i] then error(site .. " differs at draw " .. i) end
      end
    end
  end
  T.eq(lin.params.rho, rho, "rho keeps its value")
  T.eq(lin.params.s, s, "s keeps its value")
end)

T.test("priors_given_to_plume_ssm_are_sampled_and_results_write_csv", function()
  local sv = plume.ssm{
    params = { rho = plume.dist.uniform(0, 1), sigma = plume.dist.halfnormal(1), mu = -1 },
    init  = function(p) return plume.dist.normal(p.mu, 1) end,
    trans = function(p, x, t) return plume.dist.normal(p.mu + p.rho * (x - p.mu), p.sigma) end,
    obs   = function(p, x, t) return plume.dist.normal(0, plume.math.exp(x / 2)) end,
  }
  local post = plume.pgibbs(sv, { 0.1, -0.5, 1.2, 0.3, -0.2 }, { particles = 10, samples = 20, warmup = 10,
                                                                 chains = 1, seed = 6, times = { 5 } })
  local sites = table.concat(post:sites(), ",")
  T.eq(sites, "rho,sigma,x[5],lp__,accept_stat__", "columns")
  for _, v in ipairs(post:draws("rho")) do T.ok(v > 0 and v < 1, "rho inside its prior's support") end
  local path = os.tmpname()
  post:write_csv(path)
  local f = io.open(path)
  T.eq(f:read("l"), "chain,draw,rho,sigma,x[5],lp__,accept_stat__", "CSV header")
  f:close()
  os.remove(path)
  -- init gives every chain the same start
  local p2 = plume.pmmh(sv, { 0.1, -0.5, 1.2 }, { particles = 10, samples = 5, warmup = 0, chains = 2, seed = 7,
                                                 init = { rho = 0.5, sigma = 0.3 } })
  T.eq(#p2:draws("rho"), 10, "2 chains x 5")
end)

T.test("bad_input_names_the_option_and_the_parameter", function()
  T.raises(function() plume.pgibbs(lin, ys, { particle = 10 }) end, "unknown option 'particle'")
  T.raises(function() plume.pgibbs(lin, ys, { particles = 1 }) end, "'particles' must be in 2..1e8")
  T.raises(function() plume.pgibbs(lin, ys, { params = { nope = 1 } }) end, "params.nope is not a parameter")
  T.raises(function() plume.pgibbs(lin, ys, { params = { rho = plume.dist.poisson(1) } }) end,
           "the prior of 'rho' must be a scalar continuous distribution (got poisson)")
  T.raises(function() plume.pgibbs(lin, ys, { params = { rho = "x" } }) end, "params.rho must be a distribution")
  T.raises(function() plume.pgibbs(lin, ys, { times = { 0 } }) end, "times[1] = 0 is outside 1..50")
  T.raises(function() plume.pmmh(lin, ys, {}) end, "nothing to sample")
  T.raises(function() plume.pmmh(lin, ys, { params = { rho = plume.dist.uniform(-1, 1) }, init = { rho = 2 } }) end,
           "init.rho = 2.0 is outside the support of its prior")
  T.raises(function() plume.pmmh(lin, ys, { params = { rho = plume.dist.uniform(-1, 1) }, method = "x" }) end,
           "unknown method 'x'")
  local nov = plume.ssm{
    params = { q = plume.dist.normal(0, 1), w = plume.dist.normal(0, 1) },
    init  = function(p) return plume.dist.normal(p.q, 1) end,
    trans = function(p, x, t) return plume.dist.normal(x, 1) end,
    obs   = function(p, x, t) return plume.dist.normal(x, 1) end,
  }
  T.raises(function() plume.pgibbs(nov, { 1, 2 }, { params = { q = 0, w = 1 / 0 } }) end,
           "parameter 'w' must have a finite value")
  local e = T.raises(function() plume.pgibbs(lin, { 1, "a" }) end, "ys[2] must be a number")
  T.ok(e:find("test_pmcmc.lua", 1, true), "blames the caller's line: " .. e)
end)
