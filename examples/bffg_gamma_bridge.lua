-- bffg_gamma_bridge.lua -- a gamma bridge by backward filtering, forward guiding. A gamma process (independent
-- Gamma(shape dt, rate) increments: a subordinator, e.g. cumulative wear or a random time change) starts at 0 and is
-- observed exactly at t = 0.5 and t = 1; it is simulated on a grid of 20 steps. The backward filter carries each
-- observation back as an exact gamma message (shapes add along the way), forward guiding draws every increment as
-- the remaining distance times a Beta variate (the Dirichlet law of increments given their total), and every draw
-- gets the same weight: the exact log-likelihood log Gamma(y1; a/2, b) + log Gamma(y2 - y1; a/2, b).
-- By the Markov property the path after t = 0.5 starts afresh from the observed value, so the model is two chains:
-- one from the root 0 to y1, one from the root y1 to y2 (an observed node is a leaf).
local MK = plume.markov_kernel
local a, b, steps = 3, 2, 20
local y = { 0.6, 1.9 }
local inc = MK.gamma_process{ shape = a, rate = b, t = 1 / steps }
local half = steps // 2

local g = plume.dag()
local start = { 0, y[1] }
for seg = 1, 2 do
  local prev = "x" .. (seg - 1) * half
  g:root(prev, start[seg])
  for i = (seg - 1) * half + 1, seg * half - 1 do
    g:kernel("x" .. i, prev, inc)
    prev = "x" .. i
  end
  g:observe("y" .. seg, prev, inc, y[seg])
end

local function lgamma_pdf(x, k, r) return k * math.log(r) - plume.math.lgamma(k) + (k - 1) * math.log(x) - r * x end
local exact = lgamma_pdf(y[1], a / 2, b) + lgamma_pdf(y[2] - y[1], a / 2, b)
local post = plume.bffg(g, nil, { samples = 5000, seed = 1 })
local lo, hi = math.huge, -math.huge
for _, w in ipairs(post.log_weights_raw) do lo, hi = math.min(lo, w), math.max(hi, w) end
print(string.format("log-likelihood: filter %.12f, closed form %.12f; weights in [%.12f, %.12f], ESS %.0f of %d",
  g:loglik(), exact, lo, hi, post.ess, post.samples))

print("   t    posterior mean (sd)    exact mean (sd)")
local s = post:summary()
for _, i in ipairs { 3, 6, 9, 13, 16, 19 } do
  local seg = i < half and 1 or 2
  local x0, total, tt = start[seg], y[seg] - start[seg], (i - (seg - 1) * half) / half
  local al, be = a / 2 * tt, a / 2 * (1 - tt)
  local m, sd = x0 + total * tt, total * math.sqrt(al * be / ((al + be) ^ 2 * (al + be + 1)))
  print(string.format("%5.2f   %7.4f (%6.4f)      %7.4f (%6.4f)", i / steps, s["x" .. i].mean, s["x" .. i].sd, m, sd))
  assert(math.abs(s["x" .. i].mean - m) < 4.5 * sd / math.sqrt(post.ess), "bridge mean at t = " .. i / steps)
end
assert(math.abs(g:loglik() - exact) < 1e-10 and hi - lo < 1e-9, "exact, constant weights")
print("PASS bffg_gamma_bridge")
