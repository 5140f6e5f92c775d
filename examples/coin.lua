-- coin.lua -- the flagship example: is this coin fair? A beta-bernoulli model fitted with four chains of
-- Metropolis-Hastings; the exact posterior is Beta(1 + heads, 1 + tails), printed alongside.
local coin = plume.model(function(m, data)
  local p = m:sample("p", plume.dist.beta(1, 1))
  for i, y in ipairs(data) do m:observe("y" .. i, plume.dist.bernoulli(p), y) end
end)

local data = {1, 0, 1, 1, 1, 0, 1, 1}
local post = plume.infer(coin, data, {method = "mh", samples = 4000, chains = 4, seed = 1})
print(post:summary())

local heads = 0
for _, y in ipairs(data) do heads = heads + y end
local exact = plume.dist.beta(1 + heads, 1 + #data - heads)
print(string.format("\nexact posterior: %s, mean %.4f, sd %.4f", tostring(exact), exact:mean(), math.sqrt(exact:var())))
