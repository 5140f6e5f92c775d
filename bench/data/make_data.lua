-- make_data.lua -- the simulated benchmark data sets, reproducibly (fixed seeds): a 3-component Gaussian
-- mixture of 1,000 points (gmm3.json), and a stand-in for posteriordb's kidiq data (kidiq_sim.json: 434
-- children, mom_hs ~ bernoulli(0.79), mom_iq ~ normal(100, 15), kid_score from the published interaction fit
-- -11.5 + 51.3 mom_hs + 0.97 mom_iq - 0.48 mom_hs mom_iq + normal(0, 18)), since the real kidiq data is not
-- in /work/shared/data. usage: build/plume bench/data/make_data.lua
local D = plume.dist
local function write(path, fields, order)
  local f = assert(io.open(path, "w"))
  local parts = {}
  for _, k in ipairs(order) do
    local v = fields[k]
    if type(v) == "table" then
      local s = {}
      for i, x in ipairs(v) do s[i] = string.format(math.type(x) == "integer" and "%d" or "%.6g", x) end
      parts[#parts + 1] = string.format('"%s": [%s]', k, table.concat(s, ", "))
    else
      parts[#parts + 1] = string.format('"%s": %s', k, tostring(v))
    end
  end
  f:write("{" .. table.concat(parts, ",\n ") .. "}\n")
  f:close()
end

plume.seed(20261127)
local w, mu, sd = { 0.3, 0.5, 0.2 }, { -3, 0, 4 }, { 1, 0.7, 1.5 }
local cat, y = D.categorical(w), {}
for i = 1, 1000 do
  local k = cat:sample()
  y[i] = D.normal(mu[k], sd[k]):sample()
end
write("bench/data/gmm3.json", { N = 1000, K = 3, y = y }, { "N", "K", "y" })

local hs, iq, score = {}, {}, {}
for i = 1, 434 do
  hs[i] = math.tointeger(D.bernoulli(0.79):sample())
  iq[i] = D.normal(100, 15):sample()
  score[i] = -11.5 + 51.3 * hs[i] + 0.97 * iq[i] - 0.48 * hs[i] * iq[i] + D.normal(0, 18):sample()
end
write("bench/data/kidiq_sim.json", { N = 434, kid_score = score, mom_hs = hs, mom_iq = iq },
  { "N", "kid_score", "mom_hs", "mom_iq" })
