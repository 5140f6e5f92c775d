-- bffg_bridge.lua -- sparse, precise observations of a nonlinear diffusion: BFFG importance sampling (guided proposals)
-- against plume.smc's bootstrap particle filter on the same Euler discretisation, at equal CPU time.
-- The double-well diffusion dX = (X - X^3) dt + 0.7 dW from X(0) = -1, Euler steps of 0.01, observed at t = 1..4 with
-- noise sd 0.02 (every 100 steps): bootstrap particles wander blind between observations and few land within the
-- noise of the next one; guided paths are pulled toward it. Reported: effective samples (Kish ESS of the final
-- weights) per CPU second, and the spread (sd over seeds) of the log-likelihood estimates; guided SMC (resampling
-- at the observations) is shown too.
-- usage: build/plume bench/bffg_bridge.lua [bffg samples] [repeats]
local MK = plume.markov_kernel
local n = tonumber(arg and arg[1]) or 2000
local reps = tonumber(arg and arg[2]) or 8
local dt, sd_obs, x0 = 0.01, 0.02, -1
local ys_at = { 0.9, 1.1, -0.95, -1.0 }   -- a crossing of the well between t = 0 and 1, back between 2 and 3
local steps = math.floor(1 / dt + 0.5)

local dw = plume.sde{ dim = 1, params = { s = 0.7 },
  drift = function(p, x) return x - x ^ 3 end, diffusion = function(p) return p.s end }
local g = plume.dag()
g:root("x0", x0)
for i, y in ipairs(ys_at) do
  g:kernel("x" .. i, "x" .. (i - 1), MK.sde{ sde = dw, t0 = i - 1, t1 = i, dt = dt, at = y })
   :observe("y" .. i, "x" .. i, MK.linear_gaussian{ B = 1, Q = sd_obs ^ 2 }, y)
end

-- the same Euler chain as a plume.ssm: x_1 is the first step from x0; y_t observed every `steps` steps, else NaN
local ssm = plume.ssm{ params = { s = 0.7 },
  init = function(p) return plume.dist.normal(x0 + (x0 - x0 ^ 3) * dt, p.s * math.sqrt(dt)) end,
  trans = function(p, x) return plume.dist.normal(x + (x - x ^ 3) * dt, p.s * math.sqrt(dt)) end,
  obs = function(p, x) return plume.dist.normal(x, sd_obs) end }
local ys = {}
for t = 1, steps * #ys_at do ys[t] = 0 / 0 end
for i, y in ipairs(ys_at) do ys[i * steps] = y end

local function stats(v)
  local m, s = 0, 0
  for _, x in ipairs(v) do m = m + x end
  m = m / #v
  for _, x in ipairs(v) do s = s + (x - m) ^ 2 end
  return m, math.sqrt(s / (#v - 1))
end

local function run(f)
  local ll, ess, t = {}, {}, 0
  for r = 1, reps do
    local c = os.clock()
    local l, e = f(r)
    t = t + os.clock() - c
    ll[r], ess[r] = l, e
  end
  local mll, sll = stats(ll)
  local mess = stats(ess)
  return t / reps, mll, sll, mess
end

local tb, mb, sb, eb = run(function(r)
  local p = plume.bffg(g, nil, { samples = n, seed = r, threads = 1 })
  return p.loglik, p.ess
end)
local ts, ms, ss, es = run(function(r)
  local p = plume.bffg(g, nil, { samples = n, seed = r, threads = 1, method = "smc" })
  return p.loglik, p.ess
end)
-- particles for equal time: a pilot run gives the cost per particle
local c = os.clock()
plume.smc(ssm, ys, { particles = 1000, seed = 99, threads = 1 })
local per = (os.clock() - c) / 1000
local N = math.max(100, math.floor(tb / per))
local tp, mp, sp, ep = run(function(r)
  local f = plume.smc(ssm, ys, { particles = N, seed = r, threads = 1 })
  -- the final weights: the ESS of the last step (after its update) is the filter's own ess[T]
  return f.logz, f.ess[#ys]
end)
print(string.format("double-well bridge, %d Euler steps, %d observations (sd %.2f), %d repeats, one thread",
  steps * #ys_at, #ys_at, sd_obs, reps))
print("method              samples   CPU s   final ESS   ESS / s     log p(y) mean (sd over seeds)")
print(string.format("BFFG-IS (guided)   %8d  %6.3f  %9.1f  %9.0f     %8.3f (%.3f)", n, tb, eb, eb / tb, mb, sb))
 print(string.format("BFFG-SMC (guided)  %8d  %6.3f  %9.1f  %9.0f     %8.3f (%.3f)", n, ts, es, es / ts, ms, ss))
print(string.format("bootstrap PF       %8d  %6.3f  %9.1f  %9.0f     %8.3f (%.3f)", N, tp, ep, ep / tp, mp, sp))
print(string.format("variance of log p(y) at equal time, bootstrap / BFFG-IS: %.1f; bootstrap / BFFG-SMC (%.1fx the "
  .. "time of IS): %.1f", (sp / sb) ^ 2, ts / tb, (sp / ss) ^ 2 * tp / ts))
print("(final ESS: whole-path importance weights for BFFG-IS; the last step's filter weights for the particle filters)")
