-- mh_memory.lua -- peak resident memory (VmHWM) of trace MH on a 100-observation model after 1e4 and after
-- 1e5 iterations on one chain. Each run makes 101 distributions and a trace: without collection during the
-- run, memory grows with the iterations; with it, the two peaks are about equal.
-- usage: build/plume bench/mh_memory.lua [iterations...]   (Linux: reads /proc/self/status)
local D = plume.dist
local model = plume.model(function(m, ys)
  local mu = m:sample("mu", D.normal(0, 10))
  local sigma = m:sample("sigma", D.gamma(2, 1))
  for i = 1, #ys do m:observe(i, D.normal(mu, sigma), ys[i]) end
end)
local ys = {}
for i = 1, 100 do ys[i] = math.sin(i) end

local function vm(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a"); f:close()
  return tonumber(s:match(field .. ":%s*(%d+)")) / 1024
end

local counts = { ... }
if #counts == 0 then counts = { 1e4, 1e5 } end
for _, n in ipairs(counts) do
  n = math.tointeger(tonumber(n))
  local t0 = os.clock()
  -- 2 latent sites: one iteration is a sweep of 2 runs; samples = n / 2 so that n runs are made
  plume.infer(model, ys, { samples = n // 2, warmup = 0, chains = 1, seed = 1, quiet = true })
  print(string.format("mh, 1 chain, %d runs of a 100-observation model: peak RSS %.1f MiB (now %.1f MiB), cpu %.1f s",
    n, vm("VmHWM"), vm("VmRSS"), os.clock() - t0))
end
