-- plume.markov -- Markov-chain tools from the seed analyses:
--   laplace_predict(seq, {order =, beta =, states =, all =}): the Bayes-optimal next-symbol predictor of an
--     order-k chain whose rows have a symmetric Dirichlet(beta) prior ("From Markov to Laplace"): add-beta
--     smoothing of the counts that follow the current context.
--   icl_score(lm, {...}): an LM's in-context predictions on sampled chain sequences against that optimum, as
--     KL per token by context length ("LLMs learn HMMs in-context").
--   mixture_fit(trajs, {K =, actions =}): mixtures of Markov chains and MDPs from short trajectories
--     (Kausik, Tan and Zhang, "Learning Mixtures of Markov Chains and MDPs"); the loops are in C
--     (runtime/markov_mix.c).
-- Symbols, states and actions are 1-based.
local plume = require "plume"

local markov = {}

local function opt_check(opts, who, allowed, level)
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (options: %s)", who, tostring(k), table.concat(names, ", ")),
        (level or 2) + 1)
    end
  end
end

local function check_int_opt(v, who, name, lo, hi, level)
  if v ~= nil and (math.type(v) ~= "integer" or v < lo or (hi and v > hi)) then
    error(string.format("%s: option '%s' must be an integer in %d..%s (got %s)", who, name, lo,
      hi and tostring(hi) or "", tostring(v)), level + 1)
  end
end

-- Symbols of seq checked to be integers 1..M (M from opts.states or the largest symbol).
local function check_seq(seq, who, M, level)
  if type(seq) ~= "table" then error(who .. ": seq must be a list of symbols (got " .. type(seq) .. ")", level + 1) end
  local top = 0
  for t = 1, #seq do
    local s = seq[t]
    if math.type(s) ~= "integer" or s < 1 or (M and s > M) then
      error(string.format("%s: seq[%d] is %s, but symbols are integers 1..%s", who, t, tostring(s),
        M and tostring(M) or "M"), level + 1)
    end
    if s > top then top = s end
  end
  return M or top
end

local LAPLACE_OPTS = { order = true, beta = true, states = true, all = true }

-- The context key of the k symbols before position t (t > k).
local function ctx_key(seq, t, k, M)
  local key = 0
  for i = t - k, t - 1 do key = key * M + (seq[i] - 1) end
  return key
end

--- plume.markov.laplace_predict(seq, {order = 1, beta = 0.5, states = M, all = false})
--- -> the predictive distribution {p_1, ..., p_M} of the symbol after seq: (N(ctx, a) + beta) / (N(ctx) + M beta),
---    ctx the last `order` symbols. This is the exact posterior predictive of an order-k chain whose rows are
---    Dirichlet(beta, ..., beta) a priori (the first k symbols are not modelled). With all = true: a list of
---    #seq + 1 distributions, entry t for symbol t given seq[1..t-1] (uniform while t <= order).
function markov.laplace_predict(seq, opts)
  opts = opts or {}
  local who = "markov.laplace_predict"
  opt_check(opts, who, LAPLACE_OPTS)
  local k, beta = opts.order or 1, opts.beta or 0.5
  check_int_opt(opts.order, who, "order", 0, 16, 2)
  check_int_opt(opts.states, who, "states", 1, nil, 2)
  if type(beta) ~= "number" or not (beta > 0) or beta == math.huge then
    error(who .. ": option 'beta' must be a positive number (got " .. tostring(beta) .. ")", 2)
  end
  local M = check_seq(seq, who, opts.states, 2)
  if M < 1 then error(who .. ": give option 'states' (the number of symbols) for an empty seq", 2) end
  local counts, totals = {}, {}
  local function predict(t)   -- distribution of symbol t given seq[1..t-1]
    local p = {}
    if t <= k then
      for a = 1, M do p[a] = 1 / M end
      return p
    end
    local key = ctx_key(seq, t, k, M)
    local row, n = counts[key], totals[key] or 0
    for a = 1, M do p[a] = ((row and row[a] or 0) + beta) / (n + M * beta) end
    return p
  end
  local function add(t)
    if t <= k then return end
    local key = ctx_key(seq, t, k, M)
    local row = counts[key]
    if not row then row = {}; counts[key] = row end
    row[seq[t]] = (row[seq[t]] or 0) + 1
    totals[key] = (totals[key] or 0) + 1
  end
  if opts.all then
    local out = {}
    for t = 1, #seq do
      out[t] = predict(t)
      add(t)
    end
    out[#seq + 1] = predict(#seq + 1)
    return out
  end
  for t = 1, #seq do add(t) end
  return predict(#seq + 1)
end

-- ---- in-context learning: an LM against the Bayes-optimal predictor ----

-- Dirichlet(beta) draw of length M from a plume.dist.gamma sampler.
local function dirichlet(M, beta)
  local g, s = {}, 0
  local gamma = plume.dist.gamma(beta, 1)
  for a = 1, M do g[a] = gamma:sample(); s = s + g[a] end
  if s == 0 then   -- every draw underflowed (tiny beta): one symbol takes all
    g[math.random(M)] = 1
    s = 1
  end
  for a = 1, M do g[a] = g[a] / s end
  return g
end

local function draw(p)
  local u, c = math.random(), 0
  for a = 1, #p do
    c = c + p[a]
    if u <= c then return a end
  end
  return #p
end

local ICL_OPTS = { symbols = true, order = true, beta = true, length = true, sequences = true, seed = true,
  prompt = true }

--- plume.markov.icl_score(lm, {symbols = {"a", "b", "c"}, order = 1, beta = 1, length = 32, sequences = 8,
---   seed =, prompt = ""}) -> {kl = {...}, lm_logloss =, laplace_logloss =, ...}
--- Draws `sequences` chains of `length` symbols (rows Dirichlet(beta), first `order` symbols uniform), writes
--- each as the tokens of its symbols (each symbol must be one token of lm), and compares lm's next-token
--- distribution, restricted to the symbol tokens and renormalised, with laplace_predict at every position:
--- kl[t] = mean over sequences of KL(laplace || lm) for symbol t (context length t - 1), in nats; the
--- log-losses are per symbol, averaged over positions > order. lm is any object with lm:tokenize(text) and
--- lm:next_logprobs_batch(contexts) (a plume.lm).
function markov.icl_score(lm, opts)
  opts = opts or {}
  local who = "markov.icl_score"
  opt_check(opts, who, ICL_OPTS)
  local symbols = opts.symbols or { "a", "b", "c" }
  local k, beta = opts.order or 1, opts.beta or 1
  local L, S = opts.length or 32, opts.sequences or 8
  check_int_opt(opts.order, who, "order", 0, 8, 2)
  check_int_opt(opts.length, who, "length", 1, nil, 2)
  check_int_opt(opts.sequences, who, "sequences", 1, nil, 2)
  if type(beta) ~= "number" or not (beta > 0) then
    error(who .. ": option 'beta' must be a positive number (got " .. tostring(beta) .. ")", 2)
  end
  if type(symbols) ~= "table" or #symbols < 2 then error(who .. ": option 'symbols' must list at least 2 strings", 2) end
  local M = #symbols
  local tok = {}
  for a = 1, M do
    local ids = lm:tokenize(symbols[a])
    if #ids ~= 1 then
      error(string.format("%s: symbol '%s' is %d tokens for this model; each symbol must be one token", who,
        tostring(symbols[a]), #ids), 2)
    end
    tok[a] = ids[1]
  end
  local prompt = opts.prompt and lm:tokenize(opts.prompt) or {}
  if opts.seed then math.randomseed(opts.seed); plume.seed(opts.seed) end
  local kl, n_at = {}, {}
  local lm_loss, lp_loss, n_loss = 0, 0, 0
  for _ = 1, S do
    local rows = {}
    local seq = {}
    for t = 1, L do
      if t <= k then
        seq[t] = math.random(M)
      else
        local key = ctx_key(seq, t, k, M)
        rows[key] = rows[key] or dirichlet(M, beta)
        seq[t] = draw(rows[key])
      end
    end
    local opt = markov.laplace_predict(seq, { order = k, beta = beta, states = M, all = true })
    local ctxs, cur = {}, { table.unpack(prompt) }
    for t = 1, L do
      ctxs[t] = { table.unpack(cur) }
      cur[#cur + 1] = tok[seq[t]]
    end
    local lps = lm:next_logprobs_batch(ctxs)
    for t = 1, L do
      local row, z, q = lps[t], 0, {}
      for a = 1, M do q[a] = math.exp(row[tok[a] + 1]); z = z + q[a] end
      local d = 0
      for a = 1, M do
        q[a] = z > 0 and q[a] / z or 1 / M
        if opt[t][a] > 0 then d = d + opt[t][a] * (math.log(opt[t][a]) - math.log(q[a])) end
      end
      kl[t] = (kl[t] or 0) + d
      n_at[t] = (n_at[t] or 0) + 1
      if t > k then
        lm_loss = lm_loss - math.log(q[seq[t]])
        lp_loss = lp_loss - math.log(opt[t][seq[t]])
        n_loss = n_loss + 1
      end
    end
  end
  for t = 1, L do kl[t] = kl[t] / n_at[t] end
  local mean = 0
  for t = k + 1, L do mean = mean + kl[t] end
  return {
    kl = kl,
    mean_kl = L > k and mean / (L - k) or 0,
    lm_logloss = n_loss > 0 and lm_loss / n_loss or 0,
    laplace_logloss = n_loss > 0 and lp_loss / n_loss or 0,
    order = k, beta = beta, symbols = symbols,
  }
end

-- ---- mixtures of Markov chains and MDPs ----

local Mixture = { __name = "plume.markov.mixture" }
Mixture.__index = Mixture

function Mixture.__tostring(m)
  local w = {}
  for k = 1, m.K do w[k] = string.format("%.3f", m.weights[k]) end
  return string.format("plume.markov.mixture: %d components over %d states%s, weights {%s}, log-likelihood %.4g",
    m.K, m.states, m.actions > 1 and string.format(" and %d actions", m.actions) or "", table.concat(w, ", "), m.loglik)
end

--- mixture:classify(traj [, actions]) -> label, posterior {p_1, ..., p_K}
function Mixture.classify(m, traj, actions)
  return plume._markov_mixture_classify(m._fit, traj, actions)
end

local MIX_OPTS = { K = true, actions = true, states = true, nactions = true, iters = true, smooth = true, init = true,
  restarts = true, seed = true }

--- plume.markov.mixture_fit(trajs, {K = 2, actions =, states =, nactions =, iters = 20, smooth = 0.1,
---   init = "spectral" | "random", restarts = 1, seed = 1})
--- trajs: list of state lists (1-based); actions (MDPs): one list per trajectory, actions[n][t] taken in
--- trajs[n][t]. Returns the fitted mixture: chains[k] (an S x S transition matrix, or with actions a list
--- chains[k][a] of them), weights, labels (most probable component per trajectory), clusters (the spectral
--- clustering before EM), posterior (N x K), loglik, and :classify(traj [, actions]).
function markov.mixture_fit(trajs, opts)
  opts = opts or {}
  local who = "markov.mixture_fit"
  opt_check(opts, who, MIX_OPTS)
  if type(trajs) ~= "table" or #trajs == 0 then error(who .. ": trajs must be a non-empty list of trajectories", 2) end
  local K = opts.K or 2
  check_int_opt(K, who, "K", 1, #trajs, 2)
  check_int_opt(opts.iters, who, "iters", 0, nil, 2)
  check_int_opt(opts.restarts, who, "restarts", 1, nil, 2)
  check_int_opt(opts.states, who, "states", 1, nil, 2)
  check_int_opt(opts.nactions, who, "nactions", 1, nil, 2)
  check_int_opt(opts.seed, who, "seed", 0, nil, 2)
  local init = opts.init or "spectral"
  if init ~= "spectral" and init ~= "random" then
    error(who .. ": option 'init' must be \"spectral\" or \"random\" (got " .. tostring(init) .. ")", 2)
  end
  local smooth = opts.smooth or 0.1
  if type(smooth) ~= "number" or not (smooth > 0) or smooth == math.huge then
    error(who .. ": option 'smooth' must be a positive number (got " .. tostring(smooth) .. ")", 2)
  end
  local function largest(lists, what)
    local top = 0
    for n, l in ipairs(lists) do
      if type(l) ~= "table" then error(string.format("%s: %s %d must be a list (got %s)", who, what, n, type(l)), 3) end
      for _, v in ipairs(l) do if type(v) == "number" and v > top then top = v end end
    end
    return math.tointeger(top) or math.floor(top)
  end
  local S = opts.states or largest(trajs, "trajectory")
  local A = 1
  if opts.actions then
    if type(opts.actions) ~= "table" then error(who .. ": option 'actions' must be a list of action lists", 2) end
    A = opts.nactions or largest(opts.actions, "actions of trajectory")
  end
  local fit = plume._markov_mixture_fit(trajs, opts.actions, S, A, K, opts.iters or 20, smooth, init,
    opts.restarts or 1, opts.seed or 1)
  local info = plume._markov_mixture_info(fit)
  local chains = {}
  for k = 1, K do chains[k] = opts.actions and info.P[k] or info.P[k][1] end
  return setmetatable({
    K = K, states = S, actions = A, chains = chains, weights = info.weights, labels = info.labels,
    clusters = init == "spectral" and info.clusters or nil, posterior = info.posterior, loglik = info.loglik,
    iters = info.iters, _fit = fit,
  }, Mixture)
end

-- exact marginals of a grid Bayesian network of binary nodes (lang/l_bn.c, runtime/markov/bn_exact.c)
function markov.grid_bn_exact(spec)
  if type(spec) ~= "table" then error("markov.grid_bn_exact: expects a table {rows =, cols =, cpt =, evidence =}", 2) end
  return plume._grid_bn_exact(spec)
end

-- latent state models of training dynamics live in their own file and join this namespace
markov.training_dynamics = require "plume.training_dynamics"

return markov
