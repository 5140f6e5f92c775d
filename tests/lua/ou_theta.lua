-- ou_theta.lua -- the Ornstein-Uhlenbeck fixture that the plume.bffg MCMC tests share (test_bffg_mcmc.lua,
-- test_bffg_mcmc_fixed.lua): dX = -theta (X - mu) dt + sigma dW, mu = 0.5, sigma = 0.7, observed at t = 1..4 with
-- noise variance R = 0.05; theta unknown, prior uniform(0, 10). (Euler paths are unstable for theta dt > 2, where
-- the weights are meaningless: the prior keeps theta dt <= 0.1.) chain(dt, aux) is the plume.dag of the observed
-- process; exact_theta(data) the posterior mean and sd of theta by quadrature of the exact (Kalman) likelihood,
-- exact_theta_mu(data, prior_t, prior_m) those of (theta, mu) together.
local MK = plume.markov_kernel
local M = { mu = 0.5, sigma = 0.7, R = 0.05, ys = { 1.1, 0.4, -0.2, 0.9 } }

M.sde = plume.sde{ dim = 1, params = { theta = 1, mu = M.mu, sigma = M.sigma },
  drift = function(p, x) return -p.theta * (x - p.mu) end,
  diffusion = function(p) return p.sigma end }

-- aux: nil (the linearisation at 0, which follows theta unless fixed_aux) or a fixed auxiliary {B=, beta=, sigma=}
function M.chain(dt, aux)
  local g = plume.dag()
  g:root("x0", plume.dist.normal(0, math.sqrt(0.5)))
  local O = MK.linear_gaussian{ B = 1, Q = M.R }
  for t = 1, #M.ys do
    g:kernel("x" .. t, "x" .. (t - 1), MK.sde{ sde = M.sde, t0 = t - 1, t1 = t, dt = dt, at = not aux and 0 or nil,
      aux = aux })
     :observe("y" .. t, "x" .. t, O, M.ys[t])
  end
  return g
end

-- the exact posterior of theta: the Kalman likelihood of the OU transitions times the prior, by quadrature
function M.exact_theta(data)
  local mu, sigma = M.mu, M.sigma
  local prior = plume.dist.uniform(0, 10)
  local h, m0, m1, m2, lmax, lw = 1e-3, 0, 0, 0, -math.huge, {}
  for i = 1, 9999 do
    local th = i * h
    local e = math.exp(-th)
    local k = plume.lgssm{ A = e, b = mu * (1 - e), Q = sigma ^ 2 * (1 - e * e) / (2 * th), C = 1, R = M.R, m0 = 0,
      P0 = 0.5 }
    lw[i] = k:loglik(data) + prior:logpdf(th)
    lmax = math.max(lmax, lw[i])
  end
  for i = 1, #lw do
    local w, th = math.exp(lw[i] - lmax), i * h
    m0, m1, m2 = m0 + w, m1 + w * th, m2 + w * th * th
  end
  return m1 / m0, math.sqrt(m2 / m0 - (m1 / m0) ^ 2)
end

-- the exact posterior means and sds of (theta, mu) under the priors prior_t (on (0, 10)) and prior_m: 2-d quadrature
-- of the Kalman likelihood, by the midpoint rule. Near theta = 0 mu is barely identified (the process forgets mu
-- slowly), so the posterior keeps heavy tails in mu there: theta's grid is ten times finer on (0, 0.5), without which
-- mu's sd comes out 5% low (halving the steps again changes it by less than 1e-5).
function M.exact_theta_mu(data, prior_t, prior_m)
  local L, lmax, hm = {}, -math.huge, 0.1
  local function at(th, wt)
    local e = math.exp(-th)
    for j = 1, 241 do
      local m = -12 + (j - 1) * hm
      local k = plume.lgssm{ A = e, b = m * (1 - e), Q = M.sigma ^ 2 * (1 - e * e) / (2 * th), C = 1, R = M.R, m0 = 0,
        P0 = 0.5 }
      local l = k:loglik(data) + prior_t:logpdf(th) + prior_m:logpdf(m) + math.log(wt)
      L[#L + 1] = { l, th, m }
      lmax = math.max(lmax, l)
    end
  end
  for i = 1, 100 do at((i - 0.5) * 0.005, 0.005) end
  for i = 1, 190 do at(0.5 + (i - 0.5) * 0.05, 0.05) end
  local w0, et, em, et2, em2 = 0, 0, 0, 0, 0
  for _, r in ipairs(L) do
    local w, th, m = math.exp(r[1] - lmax), r[2], r[3]
    w0, et, em, et2, em2 = w0 + w, et + w * th, em + w * m, et2 + w * th * th, em2 + w * m * m
  end
  et, em = et / w0, em / w0
  return et, em, math.sqrt(et2 / w0 - et * et), math.sqrt(em2 / w0 - em * em)
end

return M
