-- glmhmm.lua -- switching GLM-HMMs with learnable priors (plume.glmhmm): simulate spike trains from a known
-- 2-state network of 6 neurons whose states share a connectome but differ in strengths and baseline rates,
-- fit a GLM-HMM under each prior, and compare recovered states, held-out log-likelihood and the one-hot
-- prior's connectome with the truth.
local plume = require "plume"

-- the true network: connections j -> i as N x N matrices (row i: inputs to neuron i); -1.5 on the diagonal
-- is each neuron's refractoriness
local A = { { -1.5, 1.2, 0, 0, -1.2, 0 }, { 0, -1.5, 1.2, 0, 0, 0 }, { 0, 0, -1.5, 1.2, 0, -1.2 },
            { 0, 0, 0, -1.5, 1.2, 0 }, { 1.2, 0, 0, 0, -1.5, 0 }, { 0, 1.2, 0, 0, 0, -1.5 } }
local function scaled(f)
  local W = {}
  for i = 1, 6 do
    W[i] = {}
    for j = 1, 6 do W[i][j] = A[i][j] * (i == j and 1 or f) end
  end
  return W
end
local truth = plume.glmhmm { K = 2, family = "bernoulli", weights = { scaled(1.4), scaled(0.6) },
  bias = { { -1.5, -1.5, -1.5, -1.5, -1.5, -1.5 }, { -0.8, -0.8, -0.8, -0.8, -0.8, -0.8 } },
  trans = { { 0.985, 0.015 }, { 0.015, 0.985 } } }
local states, spikes = truth:sample(1500, 1)
local _, heldout = truth:sample(1500, 2)

local function accuracy(path)
  local same, swapped = 0, 0
  for t = 1, #states do
    if path[t] == states[t] then same = same + 1 elseif path[t] == 3 - states[t] then swapped = swapped + 1 end
  end
  return math.max(same, swapped) / #states
end

print(string.format("true model: state accuracy %.3f, held-out log-likelihood %.1f",
  accuracy((truth:viterbi(spikes))), truth:loglik(heldout)))
local onehot
for _, prior in ipairs({ "none", "gaussian", "onehot" }) do
  local m = plume.glmhmm { K = 2, family = "bernoulli", prior = prior, seed = 1 }
  m:fit(spikes)
  print(string.format("prior %-8s: state accuracy %.3f, held-out log-likelihood %.1f, EM iterations %d",
    prior, accuracy((m:viterbi())), m:loglik(heldout), #m.trace - 1))
  if prior == "onehot" then onehot = m end
end

-- the learned connectome (the global one-hot prior's most probable type per connection) against the truth
local wrong = 0
print("learned connectome (+ excitatory, - inhibitory, . none), true one on the right:")
local sym = { [-1] = "-", [0] = ".", [1] = "+" }
for i = 1, 6 do
  local row, trow = {}, {}
  for j = 1, 6 do
    local c = onehot.connectome[i][j]
    local t = A[i][j] > 0 and 1 or A[i][j] < 0 and -1 or 0
    row[j], trow[j] = sym[c], sym[t]
    if c ~= t then wrong = wrong + 1 end
  end
  print("  " .. table.concat(row, " ") .. "    " .. table.concat(trow, " "))
end
print(string.format("connections typed wrongly: %d of 36; learned effect size mu = %.2f", wrong, onehot.mu))
