-- smc_cost.lua -- what plume.smc over a model program costs as the number of steps grows: CPU time and peak
-- RSS of 2,000 particles x 25 / 50 / 100 steps of a Gaussian random walk observed in noise (resampling at
-- ESS < N/2, about every other step). Each configuration runs in its own process so that peak RSS is its
-- own. With a reference binary (an older build of plume) both run side by side and the ratios are printed.
-- usage: build/plume bench/smc_cost.lua [reference-plume-binary] [particles]
if arg and arg[1] == "--child" then
  local N, T = tonumber(arg[2]), tonumber(arg[3])
  local D = plume.dist
  local walk = plume.model(function(m, T)
    local x = 0
    for t = 1, T do
      x = m:sample("x" .. t, D.normal(x, 1))
      m:observe("y" .. t, D.normal(x, 1), math.sin(t / 5) * 3)
    end
    return x
  end)
  local c0 = os.clock()
  local post = plume.smc(walk, { T }, { particles = N, seed = 1, quiet = true })
  local secs = os.clock() - c0
  local rss = 0
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s*(%d+)")
    if kb then rss = tonumber(kb) end
  end
  print(string.format("%.3f %d %d %.3f", secs, rss, post.resamples, post.logz))
  return
end

local self_bin = "build/plume"
local ref = arg and arg[1] ~= "" and arg[1] or nil
local N = tonumber(arg and arg[2]) or 2000
local function run(bin, T)
  local p = io.popen(string.format("%s --quiet bench/smc_cost.lua --child %d %d", bin, N, T))
  local out = p:read("a")
  p:close()
  local s, rss, res, logz = out:match("([%d.]+) (%d+) (%d+) (%S+)")
  if not s then error("child failed: " .. out) end
  return { secs = tonumber(s), mb = tonumber(rss) / 1024, resamples = tonumber(res), logz = tonumber(logz) }
end
print(string.format("plume.smc, %d particles, random walk; CPU seconds and peak RSS per run", N))
for _, T in ipairs { 25, 50, 100 } do
  local a = run(self_bin, T)
  local line = string.format("  %3d steps: %7.2f s %7.0f MB (%d resamplings, logz %.2f)", T, a.secs, a.mb, a.resamples, a.logz)
  if ref then
    local b = run(ref, T)
    line = line .. string.format("   reference %7.2f s %7.0f MB   time %.2fx, memory %.2fx less", b.secs, b.mb,
      b.secs / a.secs, b.mb / a.mb)
  end
  print(line)
end
