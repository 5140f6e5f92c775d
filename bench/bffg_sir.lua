-- bffg_sir.lua -- plume.bffg_sir on a 10 x 10 grid of 100 individuals, 50 steps, a third of them tested every
-- fifth step (333 results of an imperfect test on an epidemic simulated from the model). Guided SMC with the mean-field auxiliary against the auxiliary that ignores neighbours
-- (aux = 0), same particles: CPU seconds, final ESS, resamplings, and the spread of log p(y) over seeds.
-- usage: build/plume bench/bffg_sir.lua [particles] [seeds]
local n = tonumber(arg and arg[1]) or 2000
local seeds = tonumber(arg and arg[2]) or 5
local side, T = 10, 50
local N = side * side
local edges = {}
for r = 0, side - 1 do
  for c = 0, side - 1 do
    local i = r * side + c + 1
    if c + 1 < side then edges[#edges + 1] = { i, i + 1 } end
    if r + 1 < side then edges[#edges + 1] = { i, i + side } end
  end
end
local beta, gamma, eps = 0.3, 0.1, 0.001
local emission = { { 0.95, 0.05 }, { 0.15, 0.85 }, { 0.9, 0.1 } }
local nb = {}
for i = 1, N do nb[i] = {} end
for _, e in ipairs(edges) do table.insert(nb[e[1]], e[2]); table.insert(nb[e[2]], e[1]) end
math.randomseed(7)
local x = {}
for i = 1, N do x[i] = (i == 1) and 2 or 1 end
local obs = {}
for t = 1, T do
  local y = {}
  for i = 1, N do
    local k = 0
    for _, j in ipairs(nb[i]) do if x[j] == 2 then k = k + 1 end end
    local u = math.random()
    if x[i] == 1 then y[i] = (u < 1 - (1 - eps) * (1 - beta) ^ k) and 2 or 1
    elseif x[i] == 2 then y[i] = (u < gamma) and 3 or 2 else y[i] = 3 end
  end
  x = y
  if t % 5 == 0 then
    for i = t % 3 + 1, N, 3 do obs[#obs + 1] = { i, t, math.random() < emission[x[i]][2] and 2 or 1 } end
  end
end
local init = {}
for i = 1, N do init[i] = i == 1 and { 0, 1, 0 } or { 1, 0, 0 } end

print(string.format("%d individuals, %d steps, %d observations, %d particles, %d seeds, one thread", N, T, #obs, n, seeds))
print("auxiliary    CPU s/run  ESS (mean)  resamplings  log p(y) mean  sd over seeds")
for _, aux in ipairs { "mean_field", 0 } do
  local t0, ll, ess, res = os.clock(), {}, 0, 0
  for s = 1, seeds do
    local p = plume.bffg_sir{ N = N, T = T, edges = edges, beta = beta, gamma = gamma, eps = eps, init = init,
      emission = emission, obs = obs, samples = n, method = "smc", seed = s,
      threads = 1, aux = aux }
    ll[s], ess, res = p.loglik, ess + p.ess / seeds, res + p.resamples / seeds
  end
  local m, v = 0, 0
  for _, x in ipairs(ll) do m = m + x / seeds end
  for _, x in ipairs(ll) do v = v + (x - m) ^ 2 / (seeds - 1) end
  print(string.format("%-11s  %9.2f  %10.0f  %11.1f  %13.3f  %13.3f", tostring(aux), (os.clock() - t0) / seeds, ess, res, m,
    math.sqrt(v)))
end
