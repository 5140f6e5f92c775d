-- test_optim.lua -- plume.optimize and plume.laplace against closed forms: the conjugate normal model (whose
-- posterior is Gaussian, so the mode is the posterior mean, the Laplace approximation is exact and its logz is
-- the marginal likelihood), and a gamma whose mode moves by exactly one unit of shape with the Jacobian.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

-- y_i ~ N(mu, 1), mu ~ N(m0, s0): posterior N(mn, sn^2) with 1/sn^2 = 1/s0^2 + n, mn = sn^2 (m0/s0^2 + sum y)
local y = { 1.2, 0.3, 2.1, 1.7, 0.9, -0.4, 1.1 }
local m0, s0 = 0.5, 2
local conj = plume.model(function(m, d)
  local mu = m:sample("mu", D.normal(m0, s0))
  for i = 1, #d do m:observe("y" .. i, D.normal(mu, 1), d[i]) end
  m:deterministic("twice", 2 * mu)
end)
local n, sy, syy = #y, 0, 0
for _, v in ipairs(y) do sy, syy = sy + v, syy + v * v end
local prec = 1 / s0 ^ 2 + n
local sn, mn = math.sqrt(1 / prec), (m0 / s0 ^ 2 + sy) / prec
-- log marginal likelihood: y ~ N(m0 1, I + s0^2 1 1^T); det = 1 + n s0^2, inverse by Sherman-Morrison
local r, rr = {}, 0
for i, v in ipairs(y) do r[i] = v - m0; rr = rr + r[i] ^ 2 end
local sr = 0
for _, v in ipairs(r) do sr = sr + v end
local quad = rr - s0 ^ 2 * sr ^ 2 / (1 + n * s0 ^ 2)
local logml = -0.5 * n * math.log(2 * math.pi) - 0.5 * math.log(1 + n * s0 ^ 2) - 0.5 * quad

T.test("optimize_conjugate_normal_mode_is_posterior_mean", function()
  local f = plume.optimize(conj, y)
  T.ok(f.converged, "converged")
  T.near(f.values.mu, mn, 1e-7, "mode")
  T.near(f.values.twice, 2 * mn, 2e-7, "deterministic at the mode")
  -- lp at the mode: log prior + log lik, unnormalised as the model writes it
  local lp = D.normal(m0, s0):logpdf(mn)
  for _, v in ipairs(y) do lp = lp + D.normal(mn, 1):logpdf(v) end
  T.near(f.lp, lp, 1e-9, "lp")
end)

T.test("laplace_exact_on_gaussian_posterior", function()
  local N = 4000
  local p = plume.laplace(conj, y, { draws = N, seed = 3 })
  local s = p:summary()
  -- independent draws: MCSE of the mean is sn / sqrt(N); 4 MCSE
  T.near(s.mu.mean, mn, 4 * sn / math.sqrt(N), "mean")
  T.near(s.mu.sd, sn, 4 * sn / math.sqrt(2 * N), "sd")
  T.near(p.logz, logml, 1e-6, "logz equals the marginal likelihood")
  T.eq(p.method, "laplace")
  T.eq(#p:draws("twice"), N, "deterministic sites are in the draws")
end)

-- x ~ gamma(a, b) alone: the density of x has its mode at (a - 1) / b; the density of log x (with the
-- Jacobian x) at a / b.
T.test("optimize_jacobian_moves_the_mode", function()
  local a, b = 3.5, 2
  local g = plume.model(function(m) m:sample("x", D.gamma(a, b)) end)
  T.near(plume.optimize(g, nil).values.x, a / b, 1e-6, "with Jacobian")
  T.near(plume.optimize(g, nil, { jacobian = false }).values.x, (a - 1) / b, 1e-6, "without Jacobian")
  -- a bounded site: beta(a, b) on (0, 1): mode (a-1)/(a+b-2) without, a/(a+b) with the logit Jacobian
  local bm = plume.model(function(m) m:sample("p", D.beta(3, 5)) end)
  T.near(plume.optimize(bm, nil, { jacobian = false }).values.p, 2 / 6, 1e-6, "beta without")
  T.near(plume.optimize(bm, nil).values.p, 3 / 8, 1e-6, "beta with")
end)

T.test("optimize_init_and_errors", function()
  local f = plume.optimize(conj, y, { init = { mu = 40 } })
  T.near(f.values.mu, mn, 1e-6, "from a far start")
  T.raises(function() plume.optimize(conj, y, { init = { nu = 1 } }) end, "'nu', which is not a latent site")
  T.raises(function() plume.optimize(conj, y, { method = "newton" }) end, "option 'method' must be")
  T.raises(function() plume.optimize(conj, y, { bogus = 1 }) end, "unknown option 'bogus'")
  local dyn = plume.model(function(m)
    local z = m:sample("z", D.bernoulli(0.5))
    if z == 1 then m:sample("w", D.normal(0, 1)) end
  end)
  T.raises(function() plume.optimize(dyn, nil) end, "needs a static model")
  -- a stationary point that is a minimum: the gradient vanishes at the start, -H is not positive definite
  local saddle = plume.model(function(m)
    local x = m:sample("x", D.normal(0, 1))
    m:factor(x * x)
  end)
  T.ok(plume.optimize(saddle, nil).converged, "gradient zero at the start")
  T.raises(function() plume.laplace(saddle, nil) end, "not negative definite")
  -- one iteration from far away on a non-quadratic density cannot converge: laplace refuses
  local g = plume.model(function(m) m:sample("x", D.gamma(3, 2)) end)
  T.ok(not plume.optimize(g, nil, { init = { x = 1e3 }, max_iter = 1 }).converged, "not converged")
  T.raises(function() plume.laplace(g, nil, { init = { x = 1e3 }, max_iter = 1 }) end, "did not converge")
end)
