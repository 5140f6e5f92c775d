-- mh_threads.lua -- trace MH on a model program, 4 chains, with 1 and with 2 threads in one run: wall time,
-- the ratio, and a check that both gave the same draws.
-- usage: build/plume bench/mh_threads.lua
local coin = plume.model(function(m, data)
  local p = m:sample("p", plume.dist.beta(1, 1))
  for i, y in ipairs(data) do m:observe("y" .. i, plume.dist.bernoulli(p), y) end
end)
local data = {}
for i = 1, 200 do data[i] = i % 3 == 0 and 0 or 1 end
local function wall()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l")); p:close(); return t
end
local res = {}
for _, th in ipairs { 1, 2 } do
  local t0 = wall()
  local post = plume.infer(coin, data, { samples = 3000, chains = 4, seed = 1, threads = th, quiet = true })
  res[th] = { secs = wall() - t0, draws = post:draws("p") }
end
local same = #res[1].draws == #res[2].draws
for i = 1, #res[1].draws do same = same and res[1].draws[i] == res[2].draws[i] end
print(string.format("mh, 4 chains x 6000 iterations, 200 observations: 1 thread %.2f s, 2 threads %.2f s, speed-up %.2fx, same draws: %s",
  res[1].secs, res[2].secs, res[1].secs / res[2].secs, tostring(same)))
