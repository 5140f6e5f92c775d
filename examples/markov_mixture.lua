-- markov_mixture.lua -- learning a mixture of two MDPs from short unlabelled trajectories
-- (plume.markov.mixture_fit, after Kausik, Tan and Tewari). A 5 x 5 gridworld where the agent picks
-- up/right/down/left at random; in MDP 1 a move slips clockwise w.p. 0.3, in MDP 2 counter-clockwise. Each
-- trajectory has 25 steps, about one visit per state. The spectral start (subspace estimation and clustering of
-- pairwise estimators) is compared with EM from a random start; then new trajectories are classified.
local P = require "plume"

local W, p = 5, 0.7
local S = W * W
local dirs = { {0, -1}, {1, 0}, {0, 1}, {-1, 0} }
local function move(s, d)
  local x, y = (s - 1) % W + dirs[d][1], (s - 1) // W + dirs[d][2]
  if x < 0 or x >= W or y < 0 or y >= W then return s end
  return y * W + x + 1
end
local function trajectory(k, T)
  local x, a = { math.random(S) }, {}
  for t = 1, T - 1 do
    a[t] = math.random(4)
    local d = math.random() < p and a[t] or (k == 1 and a[t] % 4 + 1 or (a[t] + 2) % 4 + 1)
    x[t + 1] = move(x[t], d)
  end
  return x, a
end

math.randomseed(1)
local trajs, acts, truth = {}, {}, {}
for n = 1, 300 do
  truth[n] = math.random(2)
  trajs[n], acts[n] = trajectory(truth[n], 25)
end

local function accuracy(est)
  local c = 0
  for n = 1, #truth do if est[n] == truth[n] then c = c + 1 end end
  return math.max(c, #truth - c) / #truth
end

local fit = P.markov.mixture_fit(trajs, { K = 2, actions = acts, seed = 1 })
local rnd = P.markov.mixture_fit(trajs, { K = 2, actions = acts, seed = 1, init = "random" })
print(fit)
print(string.format("label accuracy: spectral clustering %.1f%%, then EM %.1f%%; EM from a random start %.1f%%",
  100 * accuracy(fit.clusters), 100 * accuracy(fit.labels), 100 * accuracy(rnd.labels)))

-- the learned dynamics of "right" from the centre cell (13): intended cell 14, slips to 18 or 8
local c = 13
for k = 1, 2 do
  local row = fit.chains[k][2][c]
  print(string.format("component %d, action right from cell %d: p(14) = %.2f, p(18) = %.2f, p(8) = %.2f", k, c,
    row[14], row[18], row[8]))
end

-- classify new trajectories
local right = 0
for i = 1, 100 do
  local k = (i % 2) + 1
  local x, a = trajectory(k, 25)
  local label = fit:classify(x, a)
  -- component labels are arbitrary: compare with the component the training majority of MDP k got
  local votes = 0
  for n = 1, #truth do if truth[n] == k and fit.labels[n] == label then votes = votes + 1 end end
  if votes > 75 then right = right + 1 end
end
print(string.format("new trajectories classified correctly: %d of 100", right))
