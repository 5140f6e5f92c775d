-- learned_grid.lua -- a 4x4 grid Bayesian network of binary nodes (each node's probability a logistic function
-- of its upper and left neighbours, random coefficients) with noisy evidence on the diagonal, sampled by the
-- learned 2x2 block proposal shipped in stdlib/proposals/grid.plmprop (trained once on random grid motifs, never
-- on this network) and by single-site Gibbs. The exact marginals come from enumerating the 2^16 states; each
-- sampler's error is the mean total variation between its marginals and the exact ones.
local R = 4
plume.seed(7)
local coef = {}
for i = 1, R * R do
  coef[i] = { plume.dist.normal(0, 1):sample(), plume.dist.normal(0, 2.5):sample(), plume.dist.normal(0, 2.5):sample() }
end
local function eta(r, c, up, left)
  local b = coef[(r - 1) * R + c]
  return b[1] + b[2] * (up or 0) + b[3] * (left or 0)
end
local evidence = { 1, 0, 1, 1 }

local grid = plume.model(function(m)
  local x = {}
  for r = 1, R do
    x[r] = {}
    for c = 1, R do
      local e = eta(r, c, r > 1 and x[r - 1][c] or nil, c > 1 and x[r][c - 1] or nil)
      x[r][c] = m:sample(string.format("x[%d,%d]", r, c), plume.dist.bernoulli(plume.math.logistic(e)))
    end
  end
  for r = 1, R do m:observe("e" .. r, plume.dist.bernoulli(0.15 + 0.7 * x[r][r]), evidence[r]) end
end)

-- exact marginals by enumeration
local exact, tot = {}, 0
for r = 1, R do for c = 1, R do exact[string.format("x[%d,%d]", r, c)] = 0 end end
for s = 0, (1 << (R * R)) - 1 do
  local x, lp = {}, 0
  for r = 1, R do
    x[r] = {}
    for c = 1, R do
      local v = (s >> ((r - 1) * R + c - 1)) & 1
      x[r][c] = v
      local p = 1 / (1 + math.exp(-eta(r, c, r > 1 and x[r - 1][c] or nil, c > 1 and x[r][c - 1] or nil)))
      lp = lp + math.log(v == 1 and p or 1 - p)
    end
    lp = lp + math.log(evidence[r] == 1 and 0.15 + 0.7 * x[r][r] or 0.85 - 0.7 * x[r][r])
  end
  local w = math.exp(lp)
  tot = tot + w
  for r = 1, R do for c = 1, R do
    if x[r][c] == 1 then local k = string.format("x[%d,%d]", r, c); exact[k] = exact[k] + w end
  end end
end
for k, v in pairs(exact) do exact[k] = v / tot end

local function run(name, kernel, samples)
  local t0 = os.clock()
  local post = plume.infer(grid, nil, { kernel = kernel, chains = 2, warmup = 100, samples = samples, seed = 3 })
  local secs = os.clock() - t0
  local s, tv, n = post:summary(), 0, 0
  for k, v in pairs(exact) do tv, n = tv + math.abs(s[k].mean - v), n + 1 end
  print(string.format("%-8s %5d iterations  %5.2f s   mean |marginal - exact| %.4f", name, samples, secs, tv / n))
end

print(string.format("%dx%d grid, %d 2x2 blocks; exact marginals from %d states", R, R, (R - 1) ^ 2, 1 << (R * R)))
run("learned", plume.kernel.learned{ motifs = { "grid" } }, 2000)
run("gibbs", plume.kernel.gibbs{}, 2000)
run("gibbs", plume.kernel.gibbs{}, 6000)
