-- smc_sampler.lua -- SMC samplers (plume.smc_sampler: adaptive tempering with random-walk or HMC moves, standard
-- and waste-free)
-- against NUTS (plume.infer method "nuts") on the same compiled static model, in one run: a Bayesian linear
-- regression with d coefficients, known noise and n observations, whose posterior and evidence are exact.
-- For each SMC variant, R independent runs (seeds 1..R): the evidence (mean and sd of logz across runs, exact
-- value beside it), and the effective sample size of a run taken as posterior variance / variance across
-- runs of its mean estimate (the smallest over the coefficients), per second of one run. For NUTS: the
-- smallest bulk ESS over the coefficients per second (4 chains x (1000 + 1000), one thread). Seconds are CPU
-- seconds of this process (os.clock), all on one thread, so that a machine shared with other jobs does not
-- distort the ratios.
-- usage: build/plume bench/smc_sampler.lua [R] [particles]
local R = tonumber(arg and arg[1]) or 10
local Np = tonumber(arg and arg[2]) or 2000
local D = plume.dist
local d, n, s0, sig = 5, 100, 2, 1

-- data from a fixed generator (no seed dependence): x_ij = sin(i * j), y_i = x_i . beta* + noise
local X, y, bstar = {}, {}, { 1, -0.5, 0.25, 2, -1 }
for i = 1, n do
  X[i] = {}
  local mu = 0
  for j = 1, d do X[i][j] = math.sin(i * j + 0.5 * j); mu = mu + X[i][j] * bstar[j] end
  y[i] = mu + sig * math.sin(7.3 * i) * 1.2
end

local model = plume.model(function(m, dat)
  local b = {}
  for j = 1, d do b[j] = m:sample("b" .. j, D.normal(0, s0)) end
  for i = 1, n do
    local mu = 0
    for j = 1, d do mu = mu + dat.X[i][j] * b[j] end
    m:observe("y" .. i, D.normal(mu, sig), dat.y[i])
  end
end)
local data = { X = X, y = y }

-- exact posterior: precision A = I / s0^2 + X'X / sig^2, mean A^-1 X'y / sig^2; evidence by the matrix
-- determinant lemma and Woodbury: log N(y; 0, sig^2 I + s0^2 X X')
local function chol(A)
  local L = {}
  for i = 1, #A do
    L[i] = {}
    for j = 1, i do
      local s = A[i][j]
      for k = 1, j - 1 do s = s - L[i][k] * L[j][k] end
      L[i][j] = i == j and math.sqrt(s) or s / L[j][j]
    end
  end
  return L
end
local function solve(L, b)   -- (L L') x = b
  local m, z, x = #L, {}, {}
  for i = 1, m do local s = b[i]; for k = 1, i - 1 do s = s - L[i][k] * z[k] end; z[i] = s / L[i][i] end
  for i = m, 1, -1 do local s = z[i]; for k = i + 1, m do s = s - L[k][i] * x[k] end; x[i] = s / L[i][i] end
  return x
end
local A, Xty, yy = {}, {}, 0
for j = 1, d do
  A[j], Xty[j] = {}, 0
  for k = 1, d do
    local s = 0
    for i = 1, n do s = s + X[i][j] * X[i][k] end
    A[j][k] = s / sig ^ 2 + (j == k and 1 / s0 ^ 2 or 0)
  end
  for i = 1, n do Xty[j] = Xty[j] + X[i][j] * y[i] end
end
for i = 1, n do yy = yy + y[i] ^ 2 end
local LA = chol(A)
local b = {}
for j = 1, d do b[j] = Xty[j] / sig ^ 2 end
local pmean = solve(LA, b)
local pvar = {}
for j = 1, d do
  local e = {}
  for k = 1, d do e[k] = j == k and 1 or 0 end
  pvar[j] = solve(LA, e)[j]
end
local logdetA = 0
for j = 1, d do logdetA = logdetA + 2 * math.log(LA[j][j]) end
-- det(sig^2 I + s0^2 XX') = sig^(2n) s0^(2d) det(A);  y'(.)^-1 y = (y'y - (X'y)' A^-1 (X'y) / sig^2) / sig^2
local quad = yy
for j = 1, d do quad = quad - Xty[j] * pmean[j] end
quad = quad / sig ^ 2
local exact_logz = -0.5 * n * math.log(2 * math.pi) - 0.5 * (2 * n * math.log(sig) + 2 * d * math.log(s0) + logdetA)
  - 0.5 * quad

local wall = os.clock

print(string.format("Bayesian linear regression, d = %d, n = %d; exact logz %.4f; %d runs per SMC variant", d, n,
  exact_logz, R))
print(string.format("%-44s %9s %18s %8s %9s %10s", "method", "s/run", "logz (mean, sd)", "steps", "min ESS", "ESS/s"))

local function smc_row(label, opts)
  local means, logzs, t0, steps = {}, {}, wall(), 0
  for r = 1, R do
    opts.seed = r
    local post = plume.smc_sampler(model, data, opts)
    logzs[r], steps = post.logz, steps + post.steps
    local sm = post:summary()
    means[r] = {}
    for j = 1, d do means[r][j] = sm["b" .. j].mean end
  end
  local per = (wall() - t0) / R
  local ess = math.huge
  for j = 1, d do
    local m, v = 0, 0
    for r = 1, R do m = m + means[r][j] end
    m = m / R
    for r = 1, R do v = v + (means[r][j] - m) ^ 2 end
    v = v / (R - 1)
    ess = math.min(ess, pvar[j] / v)
  end
  local lm, lv = 0, 0
  for r = 1, R do lm = lm + logzs[r] end
  lm = lm / R
  for r = 1, R do lv = lv + (logzs[r] - lm) ^ 2 end
  print(string.format("%-44s %9.3f %9.4f (%6.4f) %8.1f %9.0f %10.0f", label, per, lm, math.sqrt(lv / (R - 1)),
    steps / R, ess, ess / per))
end

smc_row(string.format("smc_sampler, tempering, N = %d, 5 RW moves", Np), { particles = Np, threads = 1 })
smc_row(string.format("smc_sampler, waste-free, N = %d, P = 20", Np),
  { particles = Np, waste_free = true, chain_length = 20, threads = 1 })
smc_row(string.format("smc_sampler, waste-free, N = %d, P = 5", Np),
  { particles = Np, waste_free = true, chain_length = 5, threads = 1 })
smc_row(string.format("smc_sampler, tempering, N = %d, 2 HMC moves", Np),
  { particles = Np, kernel = "hmc", moves = 2, threads = 1 })
smc_row(string.format("smc_sampler, waste-free HMC, N = %d, P = 10", Np),
  { particles = Np, kernel = "hmc", waste_free = true, chain_length = 10, threads = 1 })

local t0 = wall()
local post = plume.infer(model, data, { method = "nuts", chains = 4, samples = 1000, warmup = 1000, seed = 1,
                                         quiet = true, threads = 1 })
local tn = wall() - t0
local sm, ess, err = post:summary(), math.huge, 0
for j = 1, d do
  ess = math.min(ess, sm["b" .. j].ess_bulk)
  err = math.max(err, math.abs(sm["b" .. j].mean - pmean[j]) / sm["b" .. j].mcse_mean)
end
print(string.format("%-44s %9.3f %18s %8s %9.0f %10.0f", "NUTS, 4 x (1000 + 1000), compilation included", tn,
  "-", "-", ess, ess / tn))
print(string.format("NUTS max |mean - exact| / mcse over coefficients: %.2f", err))
