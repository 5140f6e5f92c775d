-- lingauss.lua -- the linear-Gaussian state-space model that the particle MCMC and MLE tests share, with its
-- exact twin: x_1 ~ N(0, s^2), x_t = rho x_{t-1} + N(0, s^2), y_t = x_t + N(0, r^2), rho = 0.8, s = 0.6,
-- r = 0.7. kalman(rho, r) is the plume.lgssm of the same model at other rho and r (x_0 = 0 known, P0 = 0,
-- moves to x_1 ~ N(0, s^2) as init does); simulate(T, missing) draws y_1:T (seed 11) with y_missing NaN.
local M = { rho = 0.8, s = 0.6, r = 0.7 }

M.model = plume.ssm{
  params = { rho = M.rho, s = M.s, r = M.r },
  init  = function(p) return plume.dist.normal(0, p.s) end,
  trans = function(p, x, t) return plume.dist.normal(p.rho * x, p.s) end,
  obs   = function(p, x, t) return plume.dist.normal(x, p.r) end,
}

function M.kalman(v, rr)
  return plume.lgssm{ A = v, Q = M.s * M.s, C = 1, R = rr ^ 2, m0 = 0, P0 = 0 }
end

function M.simulate(T, missing)
  local _, ys = M.model:simulate(T, { seed = 11 })
  ys[missing] = 0 / 0
  return ys
end

return M
