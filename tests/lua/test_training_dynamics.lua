-- test_training_dynamics.lua -- plume.markov.training_dynamics on simulated runs with a known state sequence:
-- BIC picks the true number of states, the detour state (visited by half the runs, which then converge later)
-- is found, and with convergence times shuffled across runs (negative control) no detour is reported.
local plume = require "plume"
local T = dofile((arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/check.lua")

-- states: start, middle, converged, and the detour; 2 metrics (loss, weight norm)
local centres = { { 2.0, 0.5 }, { 1.0, 1.0 }, { 0.2, 1.5 }, { 1.6, 2.4 } }

local function gauss() return math.sqrt(-2 * math.log(1 - math.random())) * math.cos(2 * math.pi * math.random()) end

-- nruns runs; with detour, every other run passes start -> detour -> middle -> converged
local function simulate(nruns, detour, seed)
  math.randomseed(seed)
  local runs, truth = {}, {}
  for r = 1, nruns do
    local seq = { 1, 2, 3 }
    if detour and r % 2 == 0 then seq = { 1, 4, 2, 3 } end
    local run, states = {}, {}
    for _, s in ipairs(seq) do
      for _ = 1, 5 + math.random(0, 4) do
        run[#run + 1] = { centres[s][1] + 0.15 * gauss(), centres[s][2] + 0.15 * gauss() }
        states[#states + 1] = s
      end
    end
    runs[r], truth[r] = run, states
  end
  return runs, truth
end

-- the fitted state whose mean is closest to centre c
local function nearest(td, c)
  local best, bd
  for s, m in ipairs(td.means) do
    local d = (m[1] - c[1]) ^ 2 + (m[2] - c[2]) ^ 2
    if not bd or d < bd then best, bd = s, d end
  end
  return best, bd
end

T.test("bic_recovers_true_K_and_the_detour_state", function()
  local runs, truth = simulate(40, true, 1)
  local td = plume.markov.training_dynamics(runs, { K = { 2, 6 }, seed = 1 })
  T.eq(td.K, 4, "K chosen by BIC")
  for k = 2, 6 do T.ok(td.bic[k], "BIC for K = " .. k) end
  local d, dist = nearest(td, centres[4])
  T.ok(dist < 0.05, "a state sits at the detour's centre (squared distance " .. dist .. ")")
  T.eq(#td.detours, 1, "one detour state")
  T.eq(td.detours[1], d, "the detour is the state at the detour's centre")
  T.ok(td.effects[d].delay > 5, "visiting the detour delays convergence by > 5 checkpoints: " .. td.effects[d].delay)
  -- Viterbi paths agree with the simulated states (matched by nearest centre)
  local map, hit, n = {}, 0, 0
  for s = 1, 4 do map[nearest(td, centres[s])] = s end
  for r, path in ipairs(td.paths) do
    T.eq(#path, #runs[r], "path length of run " .. r)
    for t, s in ipairs(path) do
      n = n + 1
      if map[s] == truth[r][t] then hit = hit + 1 end
    end
  end
  T.ok(hit / n > 0.97, "Viterbi accuracy " .. hit / n)
  -- the graph has the edges start->middle, start->detour, detour->middle, middle->converged
  local edges = {}
  for _, e in ipairs(td.graph) do edges[(map[e.from] or 0) .. ">" .. (map[e.to] or 0)] = true end
  for _, e in ipairs({ "1>2", "1>4", "4>2", "2>3" }) do T.ok(edges[e], "graph edge " .. e) end
  T.ok(tostring(td):find("detour", 1, true), "the summary names the detour")
end)

T.test("bic_picks_three_states_without_detours", function()
  local runs = simulate(30, false, 2)
  local td = plume.markov.training_dynamics(runs, { K = { 2, 6 }, seed = 1 })
  T.eq(td.K, 3, "K chosen by BIC")
  T.eq(#td.detours, 0, "no detour")
end)

T.test("negative_control_shuffled_convergence_times_give_no_detour", function()
  local runs = simulate(40, true, 1)
  local conv = {}
  for r, run in ipairs(runs) do conv[r] = #run end
  math.randomseed(7)
  for i = #conv, 2, -1 do
    local j = math.random(1, i)
    conv[i], conv[j] = conv[j], conv[i]
  end
  local td = plume.markov.training_dynamics(runs, { K = { 4, 4 }, seed = 1, convergence = conv })
  T.eq(#td.detours, 0, "no detour when convergence times are unrelated to the paths")
end)

T.test("bad_input_is_named", function()
  T.raises(function() plume.markov.training_dynamics({}) end, "runs must be a non-empty list")
  T.raises(function() plume.markov.training_dynamics({ { { 1, 2 }, { 1 } } }) end, "runs[1][2] has 1 metrics, but runs[1][1] has 2")
  T.raises(function() plume.markov.training_dynamics({ { { 1, 0 / 0 } } }) end, "runs[1][1][2] is")
  T.raises(function() plume.markov.training_dynamics({ { { 1 } } }, { K = { 3, 2 } }) end, "option 'K' must be")
  T.raises(function() plume.markov.training_dynamics({ { { 1 } } }, { Kmax = 3 }) end, "unknown option 'Kmax'")
end)
