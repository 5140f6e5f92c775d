-- bffg_tree_brownian.lua -- a continuous trait evolving by Brownian motion along a phylogeny, observed at the tips.
-- BFFG sends the tip values back to the root as exact Gaussian messages (Felsenstein's pruning in canonical form),
-- then draws the ancestral traits forward from the guided kernels. The log-likelihood gives the rate by profile.
local MK = plume.markov_kernel

local tree = plume.tree.newick([[
  ((((human:6.4,chimp:6.4):2.2,gorilla:8.6):7.4,orangutan:16.0):13.0,
   ((macaque:9.0,baboon:9.0):12.0,(marmoset:14.0,capuchin:14.0):7.0):8.0);
]])
-- log body mass (kg), roughly
local data = { human = 4.1, chimp = 3.8, gorilla = 4.9, orangutan = 4.2, macaque = 2.0, baboon = 2.9,
               marmoset = -1.1, capuchin = 1.0 }

local function model(rate)
  return tree:dag{
    root = plume.dist.normal(2, 3),                                  -- prior on the root's trait
    process = function(t) return MK.brownian{ rate = rate, t = t } end,
    data = data,
  }
end

-- profile log-likelihood of the variance rate on a grid: each value is one exact backward pass
local best, best_ll = nil, -math.huge
for _, rate in ipairs{ 0.02, 0.05, 0.1, 0.2, 0.4 } do
  local ll = model(rate):loglik()
  print(string.format("rate %.2f  loglik %8.4f", rate, ll))
  if ll > best_ll then best, best_ll = rate, ll end
end
print(string.format("best rate on the grid: %.2f", best))

-- ancestral states at that rate: guided draws, all with the same weight (the messages are exact)
local post = plume.bffg(model(best), nil, { samples = 2000, seed = 1 })
print(post)
print(string.format("log-likelihood: filter %.6f, importance estimate %.6f, ESS %.0f of %d",
  post.loglik_filter, post.loglik, post.ess, post.samples))
assert(math.abs(post.loglik - best_ll) < 1e-9, "exact messages give a constant weight equal to the likelihood")
