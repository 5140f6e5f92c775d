-- learned_birth.lua -- the learned birth proposal of bench/learned_gmm.lua's open-universe mixture: the new
-- component's mean comes from the mixture proposal (L.proposal: the library's, or one trained once) asked about
-- one of the anchor points y_j, as if that point's block were (z_j, mu_new) with mu_new a component of its own
-- (weight 1 / (K + 1), no other points yet). Its density is a fixed function of the data and the current means:
-- q(mu) = mean over anchors j of sum over the slots s of the network's q(s, mu | inputs_j), so the MH ratio is
-- exact. Above the network's K_max the hand-tuned birth is used instead (a function of K, so still exact).
-- returns function(d, anchors [, proposal]) -> birth {sample =, logq =}, or nil and the reason (proposal: a
-- mixture proposal to use instead of L.proposal's)
local L = dofile("bench/learned_common.lua")
local D = plume.dist

return function(d, anchors, proposal)
  local p, why = proposal, nil
  if not p then p, why = L.proposal("mixture") end
  if not p then return nil, why end
  local kmax = p.shape and p.shape.K_max or 8
  local hand = L.hand_birth(anchors, 1.0)
  local U = D.uniform(0, 1)
  local function inputs(mu, j)
    local K = #mu + 1
    local w, m, sd = {}, {}, {}
    for k = 1, K do w[k], sd[k], m[k] = 1, 1, mu[k] or 0 end
    return plume.proposals.mixture_inputs{ K_max = kmax, k = K, w = w, mu = m, sd = sd, prior_mean = 0,
      prior_sd = d.tau, y = anchors[j] }
  end
  local function logq(mu_new, mu)
    if #mu + 1 > kmax then return hand.logq(mu_new, mu) end
    local v2, terms, top = mu_new / d.tau, {}, -math.huge
    for j = 1, #anchors do
      local x = inputs(mu, j)
      for s = 1, #mu + 1 do
        local l = p:logq(x, { s, v2 }) - math.log(d.tau)
        terms[#terms + 1] = l
        if l > top then top = l end
      end
    end
    local sum = 0
    for _, l in ipairs(terms) do sum = sum + math.exp(l - top) end
    return top + math.log(sum / #anchors)
  end
  local function sample(mu)
    if #mu + 1 > kmax then return hand.sample(mu) end
    local j = math.min(#anchors, 1 + math.floor(U:sample() * #anchors))
    local v = p:sample(inputs(mu, j), math.floor(U:sample() * 2 ^ 31))
    return d.tau * v[2]
  end
  return { sample = sample, logq = logq, proposal = p }
end
