-- plume.conformal -- conformal prediction sets for hidden Markov models with exact finite-sample validity
-- (after Nettasinghe et al., "Extending Conformal Prediction to Hidden Markov Models with Exact Validity via
-- de Finetti's Theorem for Markov Chains").
--
-- Why it is exact: by de Finetti's theorem for Markov chains (Diaconis and Freedman 1980) a path's
-- probability depends only on its first state and its transition counts. Cut the path, extended by a
-- candidate c for the next state, into the excursions that end at successive visits to c: permuting every
-- excursion but the first (which holds the start) keeps the first state and the counts, so these blocks are
-- exchangeable, and the step that ends the last block (the step into c) ranks uniformly among the steps that
-- end the others. The p-value of c is that rank. It holds for any chain, any start, any mixture of chains
-- and every sequence length; the HMM enters only through the score. The randomised p-value (smooth = true)
-- is exactly uniform, so the sets then cover with probability exactly 1 - alpha.
--
--   plume.conformal.hmm(h, obs, {alpha = 0.1, target = "next" | "state", states =, score =, smooth =,
--                                method = "blocks" | "split", seed =})
--     -> {set = {...}, pvalues = {...}, alpha =, target =}
local plume = require "plume"

local conformal = {}

local Set = { __name = "plume.conformal.set" }
Set.__index = Set
function Set.__tostring(r)
  local parts = {}
  for _, v in ipairs(r.set) do parts[#parts + 1] = tostring(v) end
  return string.format("conformal %s set at level %g: {%s}", r.target, 1 - r.alpha, table.concat(parts, ", "))
end

--- r:contains(v) -> true when v is in the prediction set
function Set.contains(r, v)
  return (r.pvalues[v] or 0) > r.alpha
end

local function opt_check(opts, who, allowed)
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (options: %s)", who, tostring(k), table.concat(names, ", ")), 3)
    end
  end
end

local HMM_OPTS = { alpha = true, target = true, states = true, score = true, smooth = true, method = true, seed = true }

-- A uniform draw on (0, 1] for the randomised p-value: from opts.seed when given, else plume's default stream.
local function tie_breaker(opts)
  if not opts.smooth then return 1 end
  return plume._conformal_u(opts.seed)
end

-- Per-step scores from a user function score(prev, cur, t) for the pair view used by the chain core:
-- prev and cur are tables {state =, obs =} (state absent when the chain is the observations themselves).
local function user_pvalues(h, obs, opts, u, method)
  local score, states, target = opts.score, opts.states, opts.target or "next"
  local K, chain, cand, cands, cscores = nil, {}, {}, {}, {}
  local function item(t, x, y) return { state = x, obs = y, t = t } end
  local steps = {}
  if target == "state" then
    if not states then error("conformal.hmm: target 'state' needs option 'states' (the hidden states of obs)", 3) end
    K = h.K
    for t = 1, #states do chain[t] = states[t] end
    for t = 2, #states do steps[t] = score(item(t - 1, states[t - 1], obs[t - 1]), item(t, states[t], obs[t])) end
    local T = #obs
    for k = 1, K do
      cand[k], cands[k] = k, score(item(T - 1, states[T - 1], obs[T - 1]), item(T, k, obs[T]))
    end
    for k = 1, K do cscores[k] = cands[k] end
  else
    local M = h.M or (h.family == "bernoulli" and 2) or
      error("conformal.hmm: target 'next' needs categorical or bernoulli emissions (got " .. h.family .. ")", 3)
    local T = #obs
    if states then
      K = h.K
      for t = 1, T do chain[t] = states[t] end
      for t = 2, T do steps[t] = score(item(t - 1, states[t - 1], obs[t - 1]), item(t, states[t], obs[t])) end
      for k = 1, K do
        for m = 1, M do
          local sym = h.family == "bernoulli" and m - 1 or m
          cand[#cand + 1] = k
          cscores[#cscores + 1] = score(item(T, states[T], obs[T]), item(T + 1, k, sym))
        end
      end
    else
      K = M
      for t = 1, T do chain[t] = h.family == "bernoulli" and obs[t] + 1 or obs[t] end
      for t = 2, T do steps[t] = score(item(t - 1, nil, obs[t - 1]), item(t, nil, obs[t])) end
      for m = 1, M do
        cand[m] = m
        cscores[m] = score(item(T, nil, obs[T]), item(T + 1, nil, h.family == "bernoulli" and m - 1 or m))
      end
    end
  end
  steps[1] = 0
  for t = 2, #chain do
    if type(steps[t]) ~= "number" then error("conformal.hmm: score must return a number (got " .. type(steps[t]) .. ")", 3) end
  end
  local p = plume._conformal_blocks(K, chain, steps, cand, cscores, u, method)
  if target ~= "state" and states then   -- symbol p-value: the largest over states
    local M, q = #cand // K, {}
    for m = 1, M do
      q[m] = 0
      for k = 1, K do q[m] = math.max(q[m], p[(k - 1) * M + m]) end
    end
    p = q
  end
  return p
end

--- plume.conformal.hmm(h, obs, opts) -> prediction set with p-values
--- target = "next": a set for the observation after obs. With states (one per observation, the hidden path
---   of obs, as in fully observed training data) the blocks are excursions of the hidden chain; without it obs
---   itself is taken to be a Markov chain on the symbols.
--- target = "state": a set for the hidden state of the last observation; states holds the hidden path of the
---   others (#obs - 1 entries).
--- score (optional): function(prev, cur) -> nonconformity (larger = stranger), prev and cur tables with fields
---   state (absent without states), obs and t; it may look at prev.state and cur but not further back.
---   Default: minus h's predictive log-probability of the step.
function conformal.hmm(h, obs, opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("conformal.hmm: options must be a table (got " .. type(opts) .. ")", 2) end
  opt_check(opts, "conformal.hmm", HMM_OPTS)
  if type(obs) ~= "table" then error("conformal.hmm: obs must be a list of observations (got " .. type(obs) .. ")", 2) end
  local alpha = opts.alpha or 0.1
  if type(alpha) ~= "number" or not (alpha > 0 and alpha < 1) then
    error("conformal.hmm: option 'alpha' must be in (0, 1) (got " .. tostring(alpha) .. ")", 2)
  end
  local target = opts.target or "next"
  if target ~= "next" and target ~= "state" then
    error("conformal.hmm: option 'target' must be \"next\" or \"state\" (got " .. tostring(target) .. ")", 2)
  end
  local method = opts.method or "blocks"
  if opts.score ~= nil and type(opts.score) ~= "function" then
    error("conformal.hmm: option 'score' must be a function (got " .. type(opts.score) .. ")", 2)
  end
  local u = tie_breaker(opts)
  local p
  if opts.score then
    p = user_pvalues(h, obs, opts, u, method)
  else
    p = plume._conformal_hmm(h, obs, opts.states, target, method, u)
  end
  local set = {}
  local first = (target == "next" and h.family == "bernoulli") and 0 or 1
  local values = {}
  for i = 1, #p do
    local v = i - 1 + first
    values[v] = p[i]
    if p[i] > alpha then set[#set + 1] = v end
  end
  return setmetatable({ set = set, pvalues = values, alpha = alpha, target = target }, Set)
end

return conformal
