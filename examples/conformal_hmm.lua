-- conformal_hmm.lua -- conformal prediction sets for an HMM with exact validity (plume.conformal.hmm).
-- A prediction set for the next symbol of a sticky chain that starts far from stationarity, its p-values, and
-- the coverage over many simulated sequences: the block method holds its level, naive split conformal
-- (which takes all steps as exchangeable) does not. Then a set for a hidden state given its observation.
local P = require "plume"

-- start in state 1, stay w.p. 0.95, then wander among states 2..5 for good
local trans = { {0.95, 0.0125, 0.0125, 0.0125, 0.0125} }
for i = 2, 5 do trans[i] = {0, 0.25, 0.25, 0.25, 0.25} end
local eye = {}
for i = 1, 5 do eye[i] = {} for j = 1, 5 do eye[i][j] = i == j and 1 or 0 end end
local chain = P.hmm{ init = {1, 0, 0, 0, 0}, trans = trans, emit = eye }

local _, y = chain:sample(200, 7)
local r = P.conformal.hmm(chain, y, { alpha = 0.1 })
print(r)
for v = 1, 5 do io.write(string.format("  p(%d) = %.3f", v, r.pvalues[v])) end
print()

-- coverage over S sequences of length N: the (N+1)-th symbol is the truth
local S, N = 2000, 30
print(string.format("\ncoverage over %d sequences of %d steps (4 s.e. = %.3f at alpha = 0.1)", S, N,
  4 * math.sqrt(0.09 / S)))
print("  alpha  blocks  blocks(smooth)  split(smooth)  mean size (blocks)")
for _, alpha in ipairs{0.05, 0.1, 0.2} do
  local cov = { 0, 0, 0 }
  local size = 0
  for s = 1, S do
    local _, ys = chain:sample(N + 1, 100 + s)
    local truth = table.remove(ys)
    local a = P.conformal.hmm(chain, ys, { alpha = alpha })
    local b = P.conformal.hmm(chain, ys, { alpha = alpha, smooth = true, seed = s })
    local c = P.conformal.hmm(chain, ys, { alpha = alpha, smooth = true, seed = s, method = "split" })
    cov[1] = cov[1] + (a:contains(truth) and 1 or 0)
    cov[2] = cov[2] + (b:contains(truth) and 1 or 0)
    cov[3] = cov[3] + (c:contains(truth) and 1 or 0)
    size = size + #a.set
  end
  print(string.format("  %.2f   %.3f   %.3f           %.3f          %.2f", alpha, cov[1] / S, cov[2] / S,
    cov[3] / S, size / S))
end

-- the hidden state of a new observation, with the hidden path of the earlier ones known (training data)
local h = P.hmm{
  init = {1, 0, 0},
  trans = {{0.9, 0.08, 0.02}, {0.05, 0.9, 0.05}, {0.1, 0.1, 0.8}},
  emit = { P.dist.normal(0, 1), P.dist.normal(1.5, 1), P.dist.normal(3, 0.7) },
}
local x, obs = h:sample(200, 11)
local states = { table.unpack(x, 1, 199) }
local rs = P.conformal.hmm(h, obs, { target = "state", states = states, alpha = 0.1 })
print(string.format("\nobservation %.2f, true state %d: %s", obs[200], x[200], tostring(rs)))
