-- gmm_gibbs.lua -- a 3-component Gaussian mixture fitted by Gibbs sampling on the compiled graph: the
-- assignments z[i] are categorical sites drawn by enumeration, the component means mu[k] (normal priors)
-- and the noise precision tau (gamma prior) by their conjugate closed forms. mu[z] indexes the means by a
-- discrete symbol (plume.vector). The data are simulated with well-separated components and the priors
-- centre each component near its own region, so labels do not switch and posterior means can be read
-- directly against the truth.
local N = 300
local truth = { mu = { -4, 0, 5 }, sigma = 1, weights = { 0.3, 0.3, 0.4 } }

plume.seed(2026)
local y, zt = {}, {}
for i = 1, N do
  zt[i] = plume.dist.categorical(truth.weights):sample()
  y[i] = plume.dist.normal(truth.mu[zt[i]], truth.sigma):sample()
end

local gmm = plume.model(function(m, y)
  local mu = plume.vector{}
  local centre = { -5, 0, 5 }
  for k = 1, 3 do mu[k] = m:sample("mu[" .. k .. "]", plume.dist.normal(centre[k], 2)) end
  local tau = m:sample("tau", plume.dist.gamma(1, 1))
  local sd = 1 / plume.math.sqrt(tau)
  for i = 1, #y do
    local z = m:sample("z[" .. i .. "]", plume.dist.categorical(truth.weights))
    m:observe("y[" .. i .. "]", plume.dist.normal(mu[z], sd), y[i])
  end
end)

-- what plume found for each site (the same for every z[i], so only the first is shown)
for _, p in ipairs(plume.graph(gmm, y):gibbs_plan()) do
  if p.site:match("^mu") or p.site == "tau" or p.site == "z[1]" then
    print(string.format("%-6s %-12s %s", p.site, p.update, p.why))
  end
end

local post = plume.infer(gmm, y, { method = "gibbs", samples = 500, warmup = 100, chains = 2, seed = 1 })
local s = post:summary()
print(string.format("\ncompiled in %.3f s, %d sweeps in %.3f s", post.compile_time, 2 * 600, post.sampling_time))
print(string.format("%-6s %8s %8s %8s %8s", "site", "truth", "mean", "sd", "ess"))
for k = 1, 3 do
  local r = s["mu[" .. k .. "]"]
  print(string.format("%-6s %8.3f %8.3f %8.3f %8.0f", "mu[" .. k .. "]", truth.mu[k], r.mean, r.sd, r.ess_bulk))
  assert(math.abs(r.mean - truth.mu[k]) < 0.5, "mu[" .. k .. "] far from the truth")
end
local rt = s.tau
print(string.format("%-6s %8.3f %8.3f %8.3f %8.0f", "tau", 1 / truth.sigma ^ 2, rt.mean, rt.sd, rt.ess_bulk))
assert(math.abs(rt.mean - 1) < 0.3, "tau far from the truth")

-- the share of points whose most probable assignment is their true component
local right = 0
for i = 1, N do
  local draws, counts = post:draws("z[" .. i .. "]"), { 0, 0, 0 }
  for _, v in ipairs(draws) do counts[v] = counts[v] + 1 end
  local best = 1
  for k = 2, 3 do if counts[k] > counts[best] then best = k end end
  if best == zt[i] then right = right + 1 end
end
print(string.format("assignments recovered: %d of %d", right, N))
assert(right > 0.9 * N, "too few assignments recovered")
