-- bffg_ou_bridge.lua -- an Ornstein-Uhlenbeck bridge by guided proposals. X starts at -1 and is seen at t = 1
-- at 1.5 (noise sd 0.01). The guided diffusion dX = b dt + a r dt + sigma dW is pulled toward the observation by
-- r = grad log h~, the backward message of a linear auxiliary diffusion; each path is weighted by the likelihood
-- ratio of guided proposals. With the auxiliary equal to the process every weight is the exact likelihood; with a
-- Brownian auxiliary the weights vary and correct the draws. The exact bridge (Gaussian: the OU transition is
-- known in closed form) is the reference.
local MK = plume.markov_kernel
local theta, mu, sigma = 2, 0, 0.7
local x0, v, noise = -1, 1.5, 1e-4
local times = { 0.25, 0.5, 0.75, 1 }

local ou = plume.sde{ dim = 1, params = { theta = theta, mu = mu, sigma = sigma },
  drift = function(p, x) return -p.theta * (x - p.mu) end,
  diffusion = function(p) return p.sigma end }

-- one latent node per time (the bridge at that time), the observation below the last
local function bridge(kernel)
  local g = plume.dag()
  g:root("x0", x0)
  local prev, t0 = "x0", 0
  for i, t in ipairs(times) do
    g:kernel("x" .. i, prev, kernel(t0, t))
    prev, t0 = "x" .. i, t
  end
  g:observe("v", prev, MK.linear_gaussian{ B = 1, Q = noise }, v)
  return g
end

-- the exact reference: the OU transition over h is N(mu + e^{-theta h}(x - mu), sigma^2 (1 - e^{-2 theta h}) / (2 theta))
local exact = bridge(function(t0, t)
  local e = math.exp(-theta * (t - t0))
  return MK.linear_gaussian{ B = e, beta = mu * (1 - e), Q = sigma ^ 2 * (1 - e * e) / (2 * theta) }
end)
local ref = plume.bffg(exact, nil, { samples = 4000, seed = 1 }):summary()

local function guided(aux)
  return bridge(function(t0, t)
    local o = { sde = ou, t0 = t0, t1 = t, dt = 1e-3, time_change = true }
    if aux then o.aux = aux else o.at = 0 end
    return MK.sde(o)
  end)
end

local same = plume.bffg(guided(nil), nil, { samples = 2000, seed = 2 })
local brown = plume.bffg(guided{ B = 0, sigma = sigma }, nil, { samples = 2000, seed = 3 })
local s1, s2 = same:summary(), brown:summary()

print(string.format("log p(v): exact %.6f | auxiliary = OU: %.6f (ESS %.0f) | Brownian auxiliary: %.4f (ESS %.0f)",
  exact:loglik(), same.loglik, same.ess, brown.loglik, brown.ess))
print("  t    exact mean  sd      guided (aux = OU)   guided (Brownian aux, weighted)")
for i, t in ipairs(times) do
  local k = "x" .. i
  print(string.format("%5.2f  %8.4f %7.4f   %8.4f %7.4f   %8.4f %7.4f", t, ref[k].mean, ref[k].sd, s1[k].mean, s1[k].sd,
    s2[k].mean, s2[k].sd))
end

-- with the auxiliary equal to the process, G = 0 on every path: each weight is the exact likelihood
for _, lw in ipairs(same.log_weights_raw) do assert(math.abs(lw - exact:loglik()) < 1e-9) end
-- the Brownian auxiliary's reweighted bridge mean at t = 0.5 is within 4.5 Monte Carlo errors of the exact one
assert(math.abs(s2.x2.mean - ref.x2.mean) < 4.5 * ref.x2.sd / math.sqrt(brown.ess), "reweighted mean")
print("PASS bffg_ou_bridge")
