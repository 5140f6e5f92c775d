-- regression.lua -- Bayesian linear regression, y = alpha + beta * x + noise, fitted with trace MH.
-- The data are simulated from known values, and least squares is printed next to the posterior.
plume.seed(2024)
local alpha_true, beta_true, sigma_true = 1.5, -0.8, 0.5
local xs, ys = {}, {}
for i = 1, 30 do
  xs[i] = (i - 15) / 5
  ys[i] = alpha_true + beta_true * xs[i] + plume.dist.normal(0, sigma_true):sample()
end

local regression = plume.model(function(m, data)
  local alpha = m:sample("alpha", plume.dist.normal(0, 10))
  local beta = m:sample("beta", plume.dist.normal(0, 10))
  local sigma = m:sample("sigma", plume.dist.exponential(1))
  for i, x in ipairs(data.x) do
    m:observe("y" .. i, plume.dist.normal(alpha + beta * x, sigma), data.y[i])
  end
end)

local post = plume.infer(regression, { x = xs, y = ys }, { method = "mh", samples = 2000, chains = 4, seed = 7 })
print(post:summary())

-- ordinary least squares for comparison
local n, sx, sy, sxx, sxy = #xs, 0, 0, 0, 0
for i = 1, n do sx, sy = sx + xs[i], sy + ys[i]; sxx, sxy = sxx + xs[i] ^ 2, sxy + xs[i] * ys[i] end
local b = (sxy - sx * sy / n) / (sxx - sx * sx / n)
local a = (sy - b * sx) / n
print(string.format("\nleast squares: alpha %.4f, beta %.4f   (true values %.2f, %.2f, sigma %.2f)", a, b, alpha_true, beta_true, sigma_true))
