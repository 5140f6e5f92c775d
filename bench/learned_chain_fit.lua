-- learned_chain_fit.lua -- how close a chain proposal (issue 16's chain motif) is to the block conditional it
-- approximates, on the blocks of the tagging task (bench/data/tagging.json) and on its own training prior. The
-- tagging blocks are every pair of consecutive tokens of every sentence at an exact posterior path (forward
-- filtering, backward sampling; seed 77), with the network inputs built as runtime/engines/motif_discrete.c builds
-- them (S; U1 shifted to max 0; N = M + U2 shifted as a whole; clamped to [-30, 0], padding -30); the prior's are
-- plume.proposals.draw's (seed 99). Per set: the mean log q of the blocks, the mean exact log p(block | blanket)
-- (the best any proposal can score), and the MH acceptance rate at stationarity, computed exactly by enumerating
-- the S^2 block values: sum over v, v' of min(p(v) q(v'), p(v') q(v)), averaged over blocks. The row "skip logits
-- alone" is the network with every weight zero (s1 from U1, s2 from its exact conditional given s1).
-- usage: build/plume bench/learned_chain_fit.lua [proposal file] [blocks]
--   (default stdlib/proposals/chain.plmprop, every tagging block; blocks = n: every (total / n)-th one)
local path = arg and arg[1] or "stdlib/proposals/chain.plmprop"
local prop = plume.proposals.load(path)
local SM = prop.shape.S_max
local data = plume.read_json("bench/data/tagging.json")
local S, V = data.tags, data.words
assert(S <= SM, "the proposal's S_max is below the task's 16 tags")
local function renorm(row) local s, o = 0, {} for _, x in ipairs(row) do s = s + x end for i, x in ipairs(row) do o[i] = x / s end return o end
local emit = {}
for k = 1, S do
  emit[k] = {}
  for v = 1, V do emit[k][v] = 0 end
  for i, v in ipairs(data.emit_words[k]) do emit[k][v] = data.emit_probs[k][i] end
  emit[k] = renorm(emit[k])
end
local init, trans = renorm(data.init), {}
for i = 1, S do trans[i] = renorm(data.trans[i]) end
local function LOG(p) return p > 0 and math.log(p) or -math.huge end
local function lse(t, n)
  local m = -math.huge
  for i = 1, n do if t[i] > m then m = t[i] end end
  if m == -math.huge then return m end
  local s = 0
  for i = 1, n do s = s + math.exp(t[i] - m) end
  return m + math.log(s)
end

-- the network inputs of a block from U1[S], M[S][S], U2[S] (as chain_features in motif_discrete.c)
local function features(U1, M, U2)
  local x, mx = { S }, -math.huge
  for k = 1, S do if U1[k] > mx then mx = U1[k] end end
  for j = 1, SM do x[1 + j] = j <= S and math.max(U1[j] - mx, -30) or -30 end
  mx = -math.huge
  for a = 1, S do for b = 1, S do mx = math.max(mx, M[a][b] + U2[b]) end end
  for a = 1, SM do
    for b = 1, SM do
      x[1 + SM + (a - 1) * SM + b] = (a <= S and b <= S) and math.max(M[a][b] + U2[b] - mx, -30) or -30
    end
  end
  return x
end

-- an exact posterior path of sentence w (forward filtering, backward sampling)
local function ffbs(w)
  local T, a = #w, {}
  a[1] = {}
  for k = 1, S do a[1][k] = init[k] * emit[k][w[1]] end
  a[1] = renorm(a[1])
  for t = 2, T do
    a[t] = {}
    for k = 1, S do
      local s = 0
      for j = 1, S do s = s + a[t - 1][j] * trans[j][k] end
      a[t][k] = s * emit[k][w[t]]
    end
    a[t] = renorm(a[t])
  end
  local function pick(p) local u = math.random() for k = 1, S do u = u - p[k] if u < 0 then return k end end return S end
  local z = { [T] = pick(a[T]) }
  for t = T - 1, 1, -1 do
    local p = {}
    for k = 1, S do p[k] = a[t][k] * trans[k][z[t + 1]] end
    z[t] = pick(renorm(p))
  end
  return z
end

math.randomseed(77)
local M = {}
for k = 1, S do M[k] = {} for j = 1, S do M[k][j] = LOG(trans[k][j]) end end
local blocks = {}
for _, w in ipairs(data.sentences) do
  local z = ffbs(w)
  for t = 1, #w - 1 do
    local U1, U2 = {}, {}
    for k = 1, S do
      U1[k] = (t == 1 and LOG(init[k]) or LOG(trans[z[t - 1]][k])) + LOG(emit[k][w[t]])
      U2[k] = LOG(emit[k][w[t + 1]]) + (t + 2 <= #w and LOG(trans[k][z[t + 2]]) or 0)
    end
    blocks[#blocks + 1] = { x = features(U1, M, U2), v = { z[t], z[t + 1] } }
  end
end

-- log q of the network, and of the skip logits alone
local function logq_net(x, v) return prop:logq(x, v) end
local function logq_skip(x, v)
  local n, a, b = x[1], {}, {}
  for i = 1, n do a[i] = x[1 + i] end
  for i = 1, n do b[i] = x[1 + SM + (v[1] - 1) * SM + i] end
  return a[v[1]] - lse(a, n) + b[v[2]] - lse(b, n)
end

-- exact log p(block | blanket) at every value (index (a - 1) n + b) from the inputs: U1[a] + N[a, b], normalised
local function exact(x, n)
  local lp = {}
  for a = 1, n do for b = 1, n do lp[(a - 1) * n + b] = x[1 + a] + x[1 + SM + (a - 1) * SM + b] end end
  local z = lse(lp, n * n)
  for i = 1, n * n do lp[i] = lp[i] - z end
  return lp
end

local function measure(set, logq, with_acc)
  local lq, lp, acc, nacc = 0, 0, 0, 0
  for _, b in ipairs(set) do
    local n = b.x[1]
    local e = exact(b.x, n)
    lq = lq + logq(b.x, b.v)
    lp = lp + e[(b.v[1] - 1) * n + b.v[2]]
    if with_acc then
      local q = {}
      for a = 1, n do for c = 1, n do q[(a - 1) * n + c] = math.exp(logq(b.x, { a, c })) end end
      local s = 0
      for i = 1, n * n do
        local p1 = math.exp(e[i])
        if p1 > 0 then
          for j = 1, n * n do s = s + math.min(p1 * q[j], math.exp(e[j]) * q[i]) end
        end
      end
      acc, nacc = acc + s, nacc + 1
    end
  end
  return lq / #set, lp / #set, nacc > 0 and acc / nacc or nil
end

local nb = tonumber(arg and arg[2])
local tag = {}
for i = 1, #blocks, nb and math.max(1, #blocks // nb) or 1 do tag[#tag + 1] = blocks[i] end
local X, Vs = plume.proposals.draw("chain", 2000, 99, { S_max = SM })
local prior, prior_acc = {}, {}
for i = 1, #X do prior[i] = { x = X[i], v = Vs[i] } end
for i = 1, 200 do prior_acc[i] = prior[i] end

print(string.format("learned_chain_fit: %s (S_max %d, %d weights, held-out log q %.4f); %d tagging blocks, 2000 prior draws (acceptance on 200)",
  path, SM, prop.weights, prop.heldout, #tag))
print(string.format("%-22s %12s %12s %9s | %12s %12s %9s", "proposal", "tag log q", "exact log p", "accept", "prior log q", "exact log p", "accept"))
for _, r in ipairs{ { "network", logq_net }, { "skip logits alone", logq_skip } } do
  local a1, b1, c1 = measure(tag, r[2], true)
  local a2, b2 = measure(prior, r[2], false)
  local _, _, c2 = measure(prior_acc, r[2], true)
  print(string.format("%-22s %12.3f %12.3f %9.3f | %12.3f %12.3f %9.3f", r[1], a1, b1, c1, a2, b2, c2))
end
