-- markov_mixture.lua -- the two-MDP gridworld experiment of Kausik, Tan and Tewari ("Learning Mixtures of
-- Markov Chains and MDPs"; they report 96.6% average label accuracy for their method against 73.2% for EM from
-- random initialisation). 8 x 8 gridworld, 4 actions chosen uniformly, MDPs that slip clockwise or
-- counter-clockwise w.p. 0.3; N trajectories of length T; average label accuracy over R replications of
-- plume.markov.mixture_fit with the spectral start and with a random start (both then run 20 EM iterations).
-- Usage: plume bench/markov_mixture.lua [R]
local G = dofile("bench/gridworld_mdps.lua")
local R = tonumber(arg and arg[1]) or 10
local world = G.make(8, 0.7)
print(string.format("8x8 gridworld, 2 MDPs, %d replications", R))
print("  N    T    spectral+EM   random-start EM   spectral alone   seconds (spectral, random)")
for _, cfg in ipairs{ {400, 64}, {400, 32}, {200, 64} } do
  local N, T = cfg[1], cfg[2]
  local a, b, c, ts, tr = 0, 0, 0, 0, 0
  for rep = 1, R do
    math.randomseed(rep)
    local trajs, acts, lab = world.sample(N, T)
    local o = { K = 2, actions = acts, states = world.S, nactions = 4, seed = rep }
    local t0 = os.clock()
    local f = plume.markov.mixture_fit(trajs, o)
    local t1 = os.clock()
    o.init = "random"
    local r = plume.markov.mixture_fit(trajs, o)
    local t2 = os.clock()
    a, b, c = a + G.accuracy(lab, f.labels), b + G.accuracy(lab, r.labels), c + G.accuracy(lab, f.clusters)
    ts, tr = ts + t1 - t0, tr + t2 - t1
  end
  print(string.format("  %-4d %-4d %6.1f%%       %6.1f%%           %6.1f%%          %.3f, %.3f", N, T, 100 * a / R,
    100 * b / R, 100 * c / R, ts / R, tr / R))
end
