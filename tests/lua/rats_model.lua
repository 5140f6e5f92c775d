-- rats_model.lua -- BUGS "rats" (examples/data/rats.json) with its vague priors, gamma(0.001, 0.001) precisions
-- and normal(0, 1000) means, as the Gibbs tests share it; alpha0 (the BUGS book: 106.6) is a deterministic.
-- The precision of the data, tau.c, is sampled first, as in bench/mcmc_peers.lua: the order of the sites is the
-- order of the single-site updates, which the starting-value test depends on.
local D, sqrt = plume.dist, plume.math.sqrt
local R = {}
R.data = plume.read_json("examples/data/rats.json")
R.model = plume.model(function(m, d)
  local alpha_c = m:sample("alpha.c", D.normal(0, 1000))
  local beta_c = m:sample("beta.c", D.normal(0, 1000))
  local sigma = 1 / sqrt(m:sample("tau.c", D.gamma(0.001, 0.001)))
  local alpha_tau = m:sample("alpha.tau", D.gamma(0.001, 0.001))
  local beta_tau = m:sample("beta.tau", D.gamma(0.001, 0.001))
  for i = 1, d.N do
    local alpha = m:sample("alpha[" .. i .. "]", D.normal(alpha_c, 1 / sqrt(alpha_tau)))
    local beta = m:sample("beta[" .. i .. "]", D.normal(beta_c, 1 / sqrt(beta_tau)))
    for j = 1, d.T do m:observe("Y[" .. i .. "," .. j .. "]", D.normal(alpha + beta * (d.x[j] - d.xbar), sigma), d.Y[i][j]) end
  end
  m:deterministic("alpha0", alpha_c - d.xbar * beta_c)
end)
return R
