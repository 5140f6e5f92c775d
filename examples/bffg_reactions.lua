-- bffg_reactions.lua -- a stochastic Lotka-Volterra predator-prey network (Wilkinson's rates: prey birth 1,
-- predation 0.005, predator death 0.6), counts observed with noise: the prey every time unit, the predators
-- only at a few times. plume.reactions compiles the rate expressions; each interval between observations is a
-- markov_kernel.reactions edge: the backward filter carries the observations back under the linear-noise
-- approximation around the rate equation's solution, and forward guiding simulates the jump process exactly
-- under guided intensities with exact likelihood-ratio weights. Prints the log-likelihood estimates of guided
-- IS and guided SMC with their effective sample sizes, and the posterior means of the unobserved predators.
local MK = plume.markov_kernel
local net = plume.reactions{
  species = { "prey", "pred" },
  params = { a = 1, b = 0.005, c = 0.6 },
  reactions = {
    { stoich = { 1, 0 }, rate = "a * prey" },                 -- prey birth
    { stoich = { -1, 1 }, rate = "b * prey * pred" },         -- predation
    { stoich = { 0, -1 }, rate = "c * pred" },                -- predator death
  },
}
local x0, T = { 50, 100 }, 8
local times = {}
for k = 0, T do times[k + 1] = k end
local truth = net:simulate{ x0 = x0, times = times, seed = 2026 }

-- noisy observations: prey every time (sd 5), predators at t = 4 and 8 (sd 10)
math.randomseed(7)
local function noise(sd)   -- Box-Muller from Lua's generator: the data only
  return sd * math.sqrt(-2 * math.log(1 - math.random())) * math.cos(2 * math.pi * math.random())
end
local prey_obs = MK.linear_gaussian{ B = { { 1, 0 } }, Q = 25 }
local pred_obs = MK.linear_gaussian{ B = { { 0, 1 } }, Q = 100 }
local ref = net:ode(x0, times)   -- the reference of the linear-noise approximation
local g = plume.dag():root("x0", x0)
for k = 1, T do
  g:kernel("x" .. k, "x" .. (k - 1), MK.reactions{ network = net, t0 = k - 1, t1 = k, dt = 0.05, at = ref[k] })
  g:observe("y" .. k, "x" .. k, prey_obs, truth[k + 1][1] + noise(5))
  if k % 4 == 0 then g:observe("z" .. k, "x" .. k, pred_obs, truth[k + 1][2] + noise(10)) end
end

local is = plume.bffg(g, nil, { samples = 2000, seed = 1 })
local smc = plume.bffg(g, nil, { samples = 2000, seed = 1, method = "smc" })
print(string.format("log-likelihood: LNA filter %.3f, guided IS %.3f (ESS %.0f of 2000), guided SMC %.3f (%d resamplings)",
  g:loglik(), is.loglik, is.ess, smc.loglik, smc.resamples))
local s = smc:summary()
print(" t   prey (true)  predators (true)  posterior mean of predators (SMC)")
for k = 1, T do
  print(string.format("%2d   %5d        %5d             %8.1f", k, truth[k + 1][1], truth[k + 1][2], s["x" .. k .. "[2]"].mean))
end
