-- test_markov_mixture.lua -- plume.markov.mixture_fit: on short trajectories (length about the number of states)
-- the spectral start labels trajectories far better than EM from random starts; with long trajectories the
-- labels are exact and the chains are recovered within their Monte Carlo error; classify; errors.
local T = dofile("tests/lua/check.lua")
local G = dofile("bench/gridworld_mdps.lua")

T.test("short_trajectories_spectral_beats_random_em_on_two_gridworld_mdps", function()
  local world = G.make(6, 0.7)
  local R, sp, rnd = 6, 0, 0
  for rep = 1, R do
    math.randomseed(rep)
    local trajs, acts, lab = world.sample(200, 36)
    local o = { K = 2, actions = acts, states = world.S, nactions = 4, seed = rep }
    local f = plume.markov.mixture_fit(trajs, o)
    o.init = "random"
    local r = plume.markov.mixture_fit(trajs, o)
    sp, rnd = sp + G.accuracy(lab, f.labels), rnd + G.accuracy(lab, r.labels)
  end
  sp, rnd = sp / R, rnd / R
  T.ok(sp >= 0.97, "spectral accuracy " .. sp)
  T.ok(sp - rnd >= 0.1, string.format("spectral %.3f should beat random-start EM %.3f by 0.1", sp, rnd))
end)

-- three chains on four states, drawn once; long trajectories
local P = {
  { {0.7, 0.1, 0.1, 0.1}, {0.1, 0.7, 0.1, 0.1}, {0.1, 0.1, 0.7, 0.1}, {0.1, 0.1, 0.1, 0.7} },
  { {0.1, 0.6, 0.2, 0.1}, {0.1, 0.1, 0.6, 0.2}, {0.2, 0.1, 0.1, 0.6}, {0.6, 0.2, 0.1, 0.1} },
  { {0.25, 0.25, 0.25, 0.25}, {0.4, 0.1, 0.4, 0.1}, {0.1, 0.4, 0.1, 0.4}, {0.3, 0.3, 0.2, 0.2} },
}
local function draw(row)
  local u, c = math.random(), 0
  for j = 1, #row do c = c + row[j]; if u <= c then return j end end
  return #row
end

T.test("long_trajectories_exact_labels_and_chains_within_mc_error", function()
  math.randomseed(3)
  local N, L = 30, 3000
  local trajs, lab, count = {}, {}, {}
  for n = 1, N do
    local k = (n - 1) % 3 + 1
    local x = { math.random(4) }
    for t = 2, L do x[t] = draw(P[k][x[t - 1]]) end
    trajs[n], lab[n] = x, k
  end
  local f = plume.markov.mixture_fit(trajs, { K = 3, seed = 2 })
  -- map each fitted component to the true chain most of its trajectories came from
  local map = {}
  for n = 1, N do
    map[f.labels[n]] = map[f.labels[n]] or lab[n]
    T.eq(map[f.labels[n]], lab[n], "trajectory " .. n .. " label")
  end
  for k = 1, 3 do
    local Q, truth = f.chains[k], P[map[k]]
    -- 4 standard errors of a row entry, from the number of transitions out of the state in that chain's data
    local from = { 0, 0, 0, 0 }
    for n = 1, N do
      if lab[n] == map[k] then
        for t = 1, L - 1 do from[trajs[n][t]] = from[trajs[n][t]] + 1 end
      end
    end
    for s = 1, 4 do
      for j = 1, 4 do
        local p = truth[s][j]
        T.near(Q[s][j], p, 4 * math.sqrt(p * (1 - p) / from[s]), string.format("chain %d row %d col %d", k, s, j))
      end
    end
  end
  T.near(f.weights[1] + f.weights[2] + f.weights[3], 1, 1e-12, "weights sum to one")
  -- new trajectories are classified by their likelihood under each chain
  local right = 0
  for i = 1, 30 do
    local k = (i - 1) % 3 + 1
    local x = { 1 }
    for t = 2, 200 do x[t] = draw(P[k][x[t - 1]]) end
    local label, post = f:classify(x)
    if map[label] == k then right = right + 1 end
    T.near(post[1] + post[2] + post[3], 1, 1e-12, "posterior sums to one")
  end
  T.ok(right >= 29, "classified " .. right .. " of 30")
  T.ok(tostring(f):find("3 components over 4 states", 1, true), tostring(f))
end)

T.test("same_seed_same_fit", function()
  local world = G.make(4, 0.7)
  math.randomseed(9)
  local trajs, acts = world.sample(60, 16)
  local a = plume.markov.mixture_fit(trajs, { K = 2, actions = acts, seed = 5 })
  local b = plume.markov.mixture_fit(trajs, { K = 2, actions = acts, seed = 5 })
  T.eq(a.loglik, b.loglik, "log-likelihood")
  for n = 1, 60 do T.eq(a.labels[n], b.labels[n], "label " .. n) end
  T.eq(#a.chains[1], 4, "one matrix per action")
  local label = a:classify(trajs[1], acts[1])
  T.ok(label == 1 or label == 2, "classify with actions")
end)

T.test("mixture_bad_input", function()
  local trajs = { {1, 2, 1}, {2, 2, 1} }
  T.raises(function() plume.markov.mixture_fit(trajs, { K = 3 }) end, "option 'K' must be an integer in 1..2")
  T.raises(function() plume.markov.mixture_fit({ {1, 0} }, { K = 1 }) end, "trajectory 1, entry 2 is 0")
  T.raises(function() plume.markov.mixture_fit(trajs, { smooth = 0 }) end, "option 'smooth' must be a positive")
  T.raises(function() plume.markov.mixture_fit(trajs, { init = "kmeans" }) end, "option 'init'")
  T.raises(function() plume.markov.mixture_fit(trajs, { actions = { {1, 1} } }) end, "actions has 1 lists")
  T.raises(function() plume.markov.mixture_fit(trajs, { actions = { {1}, {1, 1} } }) end, "has 3 states but 1 actions")
  local f = plume.markov.mixture_fit(trajs, { K = 1 })
  T.raises(function() f:classify({1, 5}) end, "entry 2 is 5")
end)
