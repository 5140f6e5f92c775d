-- test_mh_memory.lua -- MH memory stays flat in the iterations: the peak resident set after 2e4 runs is within
-- a few MiB of the peak after 2e3 (before the fix it grew about linearly: 21 -> 250 MiB for a 100-observation
-- model). A memory bound, not a time bound. Linux only (/proc/self/status).
local T = dofile("tests/lua/check.lua")
local D = plume.dist
local f = io.open("/proc/self/status")
if not f then
  print("SKIP mh_peak_memory_is_flat_in_iterations: no /proc/self/status on this system")
  return
end
f:close()
-- AddressSanitizer keeps freed memory in quarantine (256 MiB by default) to catch use after free, so under
-- `make SAN=1 test` the resident set measures the quarantine, not plume
if os.getenv("SAN") == "1" then
  print("SKIP mh_peak_memory_is_flat_in_iterations: the sanitizer build holds freed memory in quarantine")
  return
end

local function peak_mib()
  local s = io.open("/proc/self/status"):read("a")
  return tonumber(s:match("VmHWM:%s*(%d+)")) / 1024
end

local model = plume.model(function(m, ys)
  local mu = m:sample("mu", D.normal(0, 10))
  for i = 1, #ys do m:observe(i, D.normal(mu, 1), ys[i]) end
end)
local ys = {}
for i = 1, 50 do ys[i] = math.sin(i) end

T.test("mh_peak_memory_is_flat_in_iterations", function()
  plume.infer(model, ys, { samples = 2000, warmup = 0, chains = 1, seed = 1 })
  local p1 = peak_mib()
  plume.infer(model, ys, { samples = 20000, warmup = 0, chains = 1, seed = 1 })
  local p2 = peak_mib()
  -- the draws themselves take 20000 doubles (0.15 MiB); 10 MiB is slack for allocator noise
  T.ok(p2 - p1 < 10, string.format("peak RSS %.1f MiB after 2e3 runs, %.1f MiB after 2e4", p1, p2))
end)
