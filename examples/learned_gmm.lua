-- learned_gmm.lua -- a Gaussian mixture sampled with a learned block proposal (plume.kernel.learned, after Wang,
-- Wu, Moore and Russell 2018): the network shipped in stdlib/proposals/mixture.plmprop was trained once on random
-- mixtures and knows nothing of this model; plume finds every (assignment, component mean) motif in the compiled
-- graph and proposes z[i] together with the mean of a component, accepting by the exact Metropolis-Hastings
-- ratio. The noise precision tau has its own Gibbs update (a cycle of kernels). The same model with single-site
-- Gibbs on every site runs alongside, for the same number of iterations.
local N = 120
local truth = { mu = { -4, 0, 4 }, sigma = 1, weights = { 0.3, 0.3, 0.4 } }

plume.seed(16)
local y = {}
for i = 1, N do
  y[i] = plume.dist.normal(truth.mu[plume.dist.categorical(truth.weights):sample()], truth.sigma):sample()
end

local gmm = plume.model(function(m, y)
  local mu = plume.vector{}
  local centre = { -4, 0, 4 }
  for k = 1, 3 do mu[k] = m:sample("mu[" .. k .. "]", plume.dist.normal(centre[k], 2)) end
  local tau = m:sample("tau", plume.dist.gamma(2, 2))
  local sd = 1 / plume.math.sqrt(tau)
  for i = 1, #y do
    local z = m:sample("z[" .. i .. "]", plume.dist.categorical(truth.weights))
    m:observe("y[" .. i .. "]", plume.dist.normal(mu[z], sd), y[i])
  end
end)

local learned = plume.kernel.cycle{ plume.kernel.learned{ motifs = { "mixture" } }, plume.kernel.gibbs{ sites = { "tau" } } }
local gibbs = plume.kernel.gibbs{}
local opts = { chains = 2, warmup = 100, samples = 400, seed = 7 }

local function run(name, kernel)
  local t0 = os.clock()
  local post = plume.infer(gmm, y, { kernel = kernel, chains = opts.chains, warmup = opts.warmup, samples = opts.samples,
    seed = opts.seed })
  local secs = os.clock() - t0
  local s, ess = post:summary(), math.huge
  for k = 1, 3 do ess = math.min(ess, s["mu[" .. k .. "]"].ess_bulk) end
  local acc = post["k1.learned.mixture.accept_rate"]
  print(string.format("%-8s %6.2f s   min ESS(mu) %6.0f   ESS/s %7.0f   mu = %.2f, %.2f, %.2f   tau = %.2f%s", name, secs,
    ess, ess / secs, s["mu[1]"].mean, s["mu[2]"].mean, s["mu[3]"].mean, s.tau.mean,
    acc and string.format("   acceptance %.2f", (acc[1] + acc[2]) / 2) or ""))
  return post
end

print(string.format("%d points, 3 components, %d chains x %d iterations after %d of warm-up", N, opts.chains, opts.samples,
  opts.warmup))
run("learned", learned)
run("gibbs", gibbs)
