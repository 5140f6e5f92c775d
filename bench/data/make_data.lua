-- make_data.lua -- the simulated benchmark data set, reproducibly (fixed seed): a 3-component Gaussian mixture of
-- 1,000 points (gmm3.json). usage: build/plume bench/data/make_data.lua
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
