-- training_dynamics.lua -- latent state models of training dynamics (plume.markov.training_dynamics): train a
-- logistic regression by minibatch SGD from 40 random initialisations, log metrics at every checkpoint (loss,
-- weight norm, gradient norm), fit HMMs with Gaussian emissions over all runs with K chosen by BIC, and look for
-- detour states: states whose visits go with slower convergence. Runs that start with large weights pointing
-- the wrong way pass through a high-loss, large-norm phase before they reach the solution.
local plume = require "plume"

math.randomseed(3)
local function gauss() return math.sqrt(-2 * math.log(1 - math.random())) * math.cos(2 * math.pi * math.random()) end

-- data: 200 points in 2-D, labels from a logistic model with weights (2, -1) and bias 0.5
local X, Y = {}, {}
for i = 1, 200 do
  local a, b = gauss(), gauss()
  X[i] = { a, b }
  Y[i] = math.random() < 1 / (1 + math.exp(-(2 * a - b + 0.5))) and 1 or 0
end

local function loss_and_grad(w, idx)
  local L, g = 0, { 0, 0, 0 }
  for _, i in ipairs(idx) do
    local eta = w[1] * X[i][1] + w[2] * X[i][2] + w[3]
    local p = 1 / (1 + math.exp(-eta))
    L = L - (Y[i] == 1 and math.log(p + 1e-300) or math.log(1 - p + 1e-300))
    local r = p - Y[i]
    g[1], g[2], g[3] = g[1] + r * X[i][1], g[2] + r * X[i][2], g[3] + r
  end
  local n = #idx
  return L / n, { g[1] / n, g[2] / n, g[3] / n }
end

local all = {}
for i = 1, 200 do all[i] = i end

-- one run: SGD with batch 10 and step 0.3; a checkpoint every 5 steps, 40 checkpoints
local function train(seed)
  math.randomseed(seed)
  local w = { 3 * gauss(), 3 * gauss(), gauss() }
  local run = {}
  for c = 1, 40 do
    for _ = 1, 5 do
      local batch = {}
      for b = 1, 10 do batch[b] = math.random(1, 200) end
      local _, g = loss_and_grad(w, batch)
      for j = 1, 3 do w[j] = w[j] - 0.3 * g[j] end
    end
    local L, g = loss_and_grad(w, all)
    run[c] = { L, math.sqrt(w[1] ^ 2 + w[2] ^ 2 + w[3] ^ 2), math.sqrt(g[1] ^ 2 + g[2] ^ 2 + g[3] ^ 2) }
  end
  return run
end

local runs, conv = {}, {}
for r = 1, 40 do runs[r] = train(100 + r) end
-- convergence time: the first checkpoint whose full-data loss is within 0.02 of the best loss any run reached
local best = math.huge
for _, run in ipairs(runs) do for _, x in ipairs(run) do best = math.min(best, x[1]) end end
for r, run in ipairs(runs) do
  conv[r] = #run
  for c, x in ipairs(run) do
    if x[1] <= best + 0.02 then conv[r] = c; break end
  end
end

local td = plume.markov.training_dynamics(runs, { K = { 2, 6 }, convergence = conv, seed = 1 })
print(td)
print("state means (loss, weight norm, gradient norm):")
for s, m in ipairs(td.means) do
  print(string.format("  %d: %.3f %.2f %.3f%s", s, m[1], m[2], m[3], td.is_detour[s] and "  (detour)" or ""))
end
print("Viterbi paths of the first 8 runs (one digit per checkpoint) and their convergence times:")
for r = 1, 8 do print(string.format("  %s  %2d", table.concat(td.paths[r]), conv[r])) end
