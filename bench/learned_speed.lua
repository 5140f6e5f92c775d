-- learned_speed.lua -- time per sweep of plume.kernel.learned (the shipped networks) next to single-site Gibbs on
-- the same models, one chain, one thread: a 120-point 3-component Gaussian mixture (120 mixture blocks), a 10x10
-- grid Bayesian network of binary nodes (81 2x2 blocks) and a 200-step 8-state HMM (199 chain blocks). Usage:
--   build/plume bench/learned_speed.lua [sweeps]
-- Prints per model: microseconds per sweep for each kernel, per learned proposal, and the ratio learned / gibbs.
local SWEEPS = tonumber(arg and arg[1]) or 400
local D = plume.dist
plume.seed(16)

-- the mixture of examples/learned_gmm.lua
local N, W = 120, { 0.3, 0.3, 0.4 }
local ymix = {}
for i = 1, N do ymix[i] = D.normal(({ -4, 0, 4 })[D.categorical(W):sample()], 1):sample() end
local gmm = plume.model(function(m, y)
  local mu = plume.vector{}
  for k = 1, 3 do mu[k] = m:sample("mu[" .. k .. "]", D.normal(({ -4, 0, 4 })[k], 2)) end
  for i = 1, #y do
    local z = m:sample("z[" .. i .. "]", D.categorical(W))
    m:observe("y[" .. i .. "]", D.normal(mu[z], 1), y[i])
  end
end)

-- a 10x10 grid: each node's probability a logistic function of its upper and left neighbours
local R, coef = 10, {}
for i = 1, R * R do coef[i] = { D.normal(0, 1):sample(), D.normal(0, 2.5):sample(), D.normal(0, 2.5):sample() } end
local grid = plume.model(function(m)
  local x = {}
  for r = 1, R do
    x[r] = {}
    for c = 1, R do
      local b = coef[(r - 1) * R + c]
      local e = b[1] + b[2] * (r > 1 and x[r - 1][c] or 0) + b[3] * (c > 1 and x[r][c - 1] or 0)
      x[r][c] = m:sample(string.format("x[%d,%d]", r, c), D.bernoulli(plume.math.logistic(e)))
    end
  end
  for r = 1, R do m:observe("e" .. r, D.bernoulli(0.15 + 0.7 * x[r][r]), r % 2) end
end)

-- an 8-state HMM with sticky transitions, 200 steps
local S, T = 8, 200
local P, E, init = {}, {}, {}
for a = 1, S do
  P[a], E[a], init[a] = {}, {}, 1 / S
  for b = 1, S do P[a][b] = a == b and 0.65 or 0.05; E[a][b] = a == b and 0.5 or 0.5 / (S - 1) end
end
local yh, s = {}, 1
for t = 1, T do
  s = t == 1 and D.categorical(init):sample() or D.categorical(P[s]):sample()
  yh[t] = D.categorical(E[s]):sample()
end
local hmm = plume.model(function(m, y)
  local s = m:sample("s[1]", D.categorical(init))
  m:observe("y[1]", D.categorical(plume.select(E, s)), y[1])
  for t = 2, #y do
    s = m:sample("s[" .. t .. "]", D.categorical(plume.select(P, s)))
    m:observe("y[" .. t .. "]", D.categorical(plume.select(E, s)), y[t])
  end
end)

-- seconds per sweep: two runs of n and 3n sweeps, so that tracing and compiling the model cancel
local function per_sweep(model, data, kernel)
  local function run(n)
    local t0 = os.clock()
    plume.infer(model, data, { kernel = kernel, chains = 1, warmup = 0, samples = n, seed = 3, threads = 1 })
    return os.clock() - t0
  end
  run(10)
  return (run(3 * SWEEPS) - run(SWEEPS)) / (2 * SWEEPS)
end

print(string.format("%-8s %7s %12s %12s %14s %8s", "model", "blocks", "learned us", "gibbs us", "us/proposal", "ratio"))
for _, c in ipairs{ { "mixture", gmm, ymix, N }, { "grid", grid, nil, (R - 1) ^ 2 }, { "chain", hmm, yh, T - 1 } } do
  local name, model, data, nb = c[1], c[2], c[3], c[4]
  local tl = per_sweep(model, data, plume.kernel.learned{ motifs = { name } })
  local tg = per_sweep(model, data, plume.kernel.gibbs{})
  print(string.format("%-8s %7d %12.1f %12.1f %14.2f %8.2f", name, nb, tl * 1e6, tg * 1e6, tl * 1e6 / nb, tl / tg))
end
