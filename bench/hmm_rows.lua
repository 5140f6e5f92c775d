-- hmm_rows.lua -- what returning T rows of K numbers costs next to the forward-backward itself: h:posterior
-- and h:filter as Lua tables (the default) and as one T x K plume.array ({as = "array"}), with h:loglik (the
-- forward pass alone) as the reference, on T = 200,000 observations of a 3-state categorical HMM.
-- usage: build/plume --quiet bench/hmm_rows.lua [T] [reps]
local plume = require "plume"
local T, reps = tonumber(arg and arg[1]) or 200000, tonumber(arg and arg[2]) or 5
local h = plume.hmm{ init = {0.5, 0.3, 0.2},
                     trans = {{0.90, 0.05, 0.05}, {0.10, 0.80, 0.10}, {0.05, 0.15, 0.80}},
                     emit = {{0.7, 0.2, 0.1}, {0.1, 0.6, 0.3}, {0.2, 0.2, 0.6}} }
local _, obs = h:sample(T, 1)

-- the best of reps runs, in seconds; a full collection first so earlier garbage is not charged to this one
local function best(f)
  local b = math.huge
  for _ = 1, reps do
    collectgarbage("collect")
    local t0 = os.clock()
    f()
    local t = os.clock() - t0
    if t < b then b = t end
  end
  return b
end

local t_ll = best(function() h:loglik(obs) end)
local rows = {
  { "posterior, tables", best(function() h:posterior(obs) end) },
  { "posterior, array", best(function() h:posterior(obs, { as = "array" }) end) },
  { "filter, tables", best(function() h:filter(obs) end) },
  { "filter, array", best(function() h:filter(obs, { as = "array" }) end) },
}
print(string.format("T = %d, K = 3, best of %d runs (CPU seconds)", T, reps))
print(string.format("%-20s %9.4f s", "loglik (forward)", t_ll))
for _, r in ipairs(rows) do
  print(string.format("%-20s %9.4f s  %5.2f x loglik", r[1], r[2], r[2] / t_ll))
end
print(string.format("posterior: tables / array = %.2f; filter: tables / array = %.2f",
  rows[1][2] / rows[2][2], rows[3][2] / rows[4][2]))
