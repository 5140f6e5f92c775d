-- gridworld_mdps.lua -- two MDPs on a W x W gridworld, the mixture-of-MDPs experiment of Kausik, Tan and Tewari:
-- actions up/right/down/left chosen uniformly; MDP k moves as intended w.p. p and otherwise slips clockwise
-- (k = 1) or counter-clockwise (k = 2); walls keep the agent in place. Shared by the test, the example and the
-- benchmark (dofile it; it returns the generator and the label accuracy).
local G = {}

function G.make(W, p)
  local S = W * W
  local dirs = { {0, -1}, {1, 0}, {0, 1}, {-1, 0} }
  local function move(s, d)
    local x, y = (s - 1) % W, (s - 1) // W
    local nx, ny = x + dirs[d][1], y + dirs[d][2]
    if nx < 0 or nx >= W or ny < 0 or ny >= W then return s end
    return ny * W + nx + 1
  end
  local function next_state(k, s, a, u)
    if u < p then return move(s, a) end
    return move(s, k == 1 and (a % 4) + 1 or ((a + 2) % 4) + 1)
  end
  -- N trajectories of T states (and T - 1 actions), labels drawn uniformly, from Lua's math.random
  local function sample(N, T)
    local trajs, acts, lab = {}, {}, {}
    for n = 1, N do
      local k = math.random(2)
      local x, a = { math.random(S) }, {}
      for t = 1, T - 1 do
        a[t] = math.random(4)
        x[t + 1] = next_state(k, x[t], a[t], math.random())
      end
      trajs[n], acts[n], lab[n] = x, a, k
    end
    return trajs, acts, lab
  end
  return { S = S, A = 4, sample = sample, next_state = next_state }
end

-- label accuracy of est against lab, up to relabelling (K = 2)
function G.accuracy(lab, est)
  local c = 0
  for n = 1, #lab do if lab[n] == est[n] then c = c + 1 end end
  return math.max(c, #lab - c) / #lab
end

return G
