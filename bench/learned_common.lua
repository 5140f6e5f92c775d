-- learned_common.lua -- shared parts of the learned-proposal experiments (issue 16): CPU clock, the learned
-- kernel when this build has it, and the grid Bayesian network of bench/learned_grid.lua (also used by
-- tests/lua/test_grid_bn_gibbs.lua). Times are CPU seconds (os.clock): the machine is shared, and one chain on
-- one thread is what is compared.
local D = plume.dist
local M = {}

M.cpu = os.clock

-- arg list -> short mode flag and the remaining args
function M.args(arg)
  local short, rest = false, {}
  for _, a in ipairs(arg or {}) do
    if a == "--short" then short = true else rest[#rest + 1] = a end
  end
  return short, rest
end

-- The proposal for a motif: stdlib/proposals/<motif>.plmprop when it is there and its shape fits (`need`, e.g.
-- {S_max = 16}), else one trained here once (plume.proposals.train with its defaults -- 20,000 instantiations,
-- 10 epochs, two hidden layers of 64 -- seed 1, the shape given) and kept in build/proposals/ for later runs.
-- Returns the proposal and where it came from, or nil and the reason.
local trained = {}
function M.proposal(motif, need)
  if not (plume.proposals and plume.proposals.load) then return nil, "plume.proposals is not in this build" end
  if trained[motif] then return trained[motif][1], trained[motif][2] end
  local function fits(p)
    for k, v in pairs(need or {}) do
      if not (p.shape and p.shape[k] and p.shape[k] >= v) then return false end
    end
    return true
  end
  local from
  for _, path in ipairs{ "stdlib/proposals/" .. motif .. ".plmprop", "build/proposals/" .. motif .. ".plmprop" } do
    local ok, p = pcall(plume.proposals.load, path)
    if ok and fits(p) then from = { p, path } break end
  end
  if not from then
    os.execute("mkdir -p build/proposals")
    local opts = { seed = 1, progress = false, out = "build/proposals/" .. motif .. ".plmprop" }
    for k, v in pairs(need or {}) do opts[k] = v end
    local t0 = M.cpu()
    local ok, p = pcall(plume.proposals.train, motif, opts)
    if not ok then return nil, tostring(p) end
    from = { p, string.format("trained here in %.1f CPU s", M.cpu() - t0) }
  end
  trained[motif] = from
  return from[1], from[2]
end

-- plume.kernel.learned{proposals = {...}} for these motifs when this build has it (issue 16's core), else nil
-- and the reason, so every other column of the experiments runs without it
function M.learned_kernel(motifs, need)
  if not (plume.kernel and plume.kernel.learned) then return nil, "plume.kernel.learned is not in this build" end
  local props = {}
  for i, m in ipairs(motifs) do
    local p, why = M.proposal(m, need)
    if not p then return nil, why end
    props[i] = p
  end
  local ok, k = pcall(plume.kernel.learned, { proposals = props })
  if not ok then return nil, tostring(k) end
  return k
end

-- the learned kernel's MH acceptance in a posterior (mean over chains), or nil when it did not run
function M.learned_acc(post)
  for k, v in pairs(post) do
    if type(k) == "string" and k:match("learned%.%a+%.accept_rate$") and type(v) == "table" then
      local s = 0
      for _, x in ipairs(v) do s = s + x end
      return s / #v
    end
  end
end

-- sweeps that fill `budget` CPU seconds for a run costing time_of(n) seconds for n sweeps: the cost per sweep
-- from pilot runs of n and 4 n sweeps, n grown until their difference is `frac` (default 5%) of the budget (so the
-- fixed cost of a run -- tracing, checks, compiling -- cancels), the fixed cost from the smaller; it is part of
-- the budget. Where the fixed cost is large and noisy (the tagging task: 15-20 s), a larger frac keeps its noise
-- out of the cost per sweep.
function M.calibrate(time_of, budget, frac)
  local n = 10
  local ta = time_of(n)
  while true do
    local tb = time_of(4 * n)
    if tb - ta >= (frac or 0.05) * budget or n >= 1e6 then
      local per = math.max((tb - ta) / (3 * n), 1e-9)
      local fixed = math.max(ta - n * per, 0)
      return math.min(1e7, math.max(16, math.floor((budget - fixed) / per))), per, fixed
    end
    n, ta = 4 * n, tb
  end
end

-- A run long enough to be read at equal CPU time whatever the pilots said: run(n) -> post, CPU seconds of the
-- whole call (`chains` chains one after another) is called once with the sweeps M.calibrate gives for `over`
-- (default 1.3) times the budget, and the run's own CPU time then sets its cost per sweep, the pilots' fixed cost
-- (tracing, compiling: paid once per call, not per chain) taken out: at(T) is the number of sweeps the run had made after T CPU seconds of a chain's budget (fixed cost
-- included), capped at the sweeps it ran (short = true when capped: the run ended before T). So methods are
-- compared at the same CPU time however far the pilots missed (once they gave a run 1.30 s of a 3 s budget).
function M.timed_run(pilot, run, budget, chains, opts)
  opts = opts or {}
  local over = opts.over or 1.3
  local S, _, fixed = M.calibrate(pilot, over * budget, opts.frac)
  local post, t = run(S)
  local per = math.max((t - fixed) / (chains * S), 1e-12)
  -- pilots that overrated the cost per sweep (a load spike during one) leave the run short of the budget: run
  -- again, once, sized from this run's own cost
  if (budget - fixed) / per > S then
    S = math.min(1e7, math.floor((over * budget - fixed) / per))
    post, t = run(S)
    per = math.max((t - fixed) / (chains * S), 1e-12)
  end
  local function at(T)
    local n = math.floor((T - fixed) / per)
    if n >= S then return S, n > S end
    return math.max(1, n), false
  end
  return { post = post, S = S, t = t / chains, per = per, fixed = fixed, at = at }
end

function M.commit()
  local p = io.popen("git rev-parse --short HEAD 2>/dev/null")
  local h = p and p:read("l") or "?"
  if p then p:close() end
  return h or "?"
end

---------------------------------------------------------------------------------------------------------------
-- Grid Bayesian network: R x C binary nodes, node v = (i - 1) C + j, parents up and left. cpt[4 (v - 1) + 2 up
-- + left + 1] = P(x_v = 1 | up, left). `sharp` > 0 pushes CPT entries towards 0 and 1 (entries u^(1 + sharp)
-- or 1 - u^(1 + sharp), u uniform): near-deterministic CPTs are where single-site Gibbs mixes slowly.
function M.grid_problem(R, C, seed, opts)
  opts = opts or {}
  local sharp, frac = opts.sharp or 1, opts.observed or 0.2
  math.randomseed(seed)
  local cpt, ev = {}, {}
  for i = 1, 4 * R * C do
    local p = math.random() ^ (1 + sharp)
    cpt[i] = math.random() < 0.5 and p or 1 - p
    cpt[i] = math.min(math.max(cpt[i], 1e-3), 1 - 1e-3)
  end
  -- evidence: a forward sample of the network at a random fraction of the nodes (so it is probable)
  local x = M.grid_forward(R, C, cpt, nil)
  for v = 1, R * C do
    if math.random() < frac then ev[v] = x[v] end
  end
  return { R = R, C = C, cpt = cpt, ev = ev }
end

-- one forward (ancestral) sample of every node, evidence imposed where given; math.random's stream
function M.grid_forward(R, C, cpt, ev)
  local x = {}
  for i = 1, R do
    for j = 1, C do
      local v = (i - 1) * C + j
      local up = i > 1 and x[v - C] or 0
      local left = j > 1 and x[v - 1] or 0
      local p = cpt[4 * (v - 1) + 2 * up + left + 1]
      x[v] = (ev and ev[v]) or (math.random() < p and 1 or 0)
    end
  end
  return x
end

-- the model: x_v ~ bernoulli(P(x_v = 1 | up, left)), the CPT lookup written multilinearly in the parents so
-- that it traces (a static program: single-site Gibbs enumerates each node natively)
M.grid_model = plume.model(function(m, d)
  local x, C = {}, d.C
  for i = 1, d.R do
    for j = 1, C do
      local v = (i - 1) * C + j
      local up = i > 1 and x[v - C] or 0
      local left = j > 1 and x[v - 1] or 0
      local b = 4 * (v - 1)
      local c0, c1, c2, c3 = d.cpt[b + 1], d.cpt[b + 2], d.cpt[b + 3], d.cpt[b + 4]
      local p = c0 + (c1 - c0) * left + (c2 - c0) * up + (c3 - c2 - c1 + c0) * up * left
      if d.ev[v] then
        m:observe("x" .. v, D.bernoulli(p), d.ev[v])
        x[v] = d.ev[v]
      else
        x[v] = m:sample("x" .. v, D.bernoulli(p))
      end
    end
  end
end)

function M.grid_exact(d)
  return plume.markov.grid_bn_exact{ rows = d.R, cols = d.C, cpt = d.cpt, evidence = d.ev }
end

-- init(chain): a forward sample with the evidence imposed (math.random seeded by base + chain), latent nodes only
function M.grid_init(d, base)
  return function(chain)
    math.randomseed(base + chain)
    local x, t = M.grid_forward(d.R, d.C, d.cpt, d.ev), {}
    for v = 1, d.R * d.C do
      if not d.ev[v] then t["x" .. v] = x[v] end
    end
    return t
  end
end

-- mean over latent nodes of |p_hat - p| (the total variation distance of each binary marginal), for the first
-- n draws of chain c (draws of a site come chains concatenated, S per chain)
function M.grid_tv(post, d, exact, chains, S, checkpoints)
  local sum = {}
  for c = 1, chains do sum[c] = {} for k = 1, #checkpoints do sum[c][k] = 0 end end
  local latent = 0
  for v = 1, d.R * d.C do
    if not d.ev[v] then
      latent = latent + 1
      local dr = post:draws("x" .. v)
      for c = 1, chains do
        local acc, k, off = 0, 1, (c - 1) * S
        for n = 1, S do
          acc = acc + dr[off + n]
          while k <= #checkpoints and n == checkpoints[k] do
            sum[c][k] = sum[c][k] + math.abs(acc / n - exact[v]); k = k + 1
          end
        end
      end
    end
  end
  local out = {}
  for k = 1, #checkpoints do
    local t, lo, hi = 0, math.huge, -math.huge
    for c = 1, chains do
      local e = sum[c][k] / latent
      t, lo, hi = t + e, math.min(lo, e), math.max(hi, e)
    end
    out[k] = { mean = t / chains, lo = lo, hi = hi }
  end
  return out
end

-- Effective sample size of a series by Geyer's initial monotone sequence (the autocorrelations summed in pairs
-- while the pairs stay positive, each pair no larger than the one before); n / (1 + 2 sum rho)
function M.ess(x)
  local n = #x
  if n < 4 then return n end
  local mean, var = 0, 0
  for i = 1, n do mean = mean + x[i] end
  mean = mean / n
  for i = 1, n do var = var + (x[i] - mean) ^ 2 end
  var = var / n
  if var <= 0 then return 0 end
  local function rho(lag)
    local s = 0
    for i = 1, n - lag do s = s + (x[i] - mean) * (x[i + lag] - mean) end
    return s / (n * var)
  end
  local sum, prev, lag = 0, math.huge, 0
  while lag + 1 < n do
    local pair = rho(lag) + rho(lag + 1)
    if pair <= 0 then break end
    pair = math.min(pair, prev)
    sum, prev, lag = sum + pair, pair, lag + 2
  end
  local tau = -1 + 2 * sum   -- rho(0) = 1 is in the first pair
  return n / math.max(tau, 1 / math.log(n + 1))
end

---------------------------------------------------------------------------------------------------------------
-- Gaussian mixtures, unit observation sd, equal weights. Data: n points from K means (math.random seeded).
local function rnorm()
  return math.sqrt(-2 * math.log(1 - math.random())) * math.cos(2 * math.pi * math.random())
end
M.rnorm = rnorm

function M.gmm_data(means, n, seed)
  math.randomseed(seed)
  local y, z = {}, {}
  for i = 1, n do
    z[i] = math.random(#means)
    y[i] = means[z[i]] + rnorm()
  end
  return y, z
end

-- fixed K: mu[k] ~ normal(0, tau), z[i] ~ categorical(1/K), y[i] ~ normal(mu[z[i]], 1). A static program (the
-- mixture motif of the learned proposals: an assignment choosing the mean of a normal observation)
M.gmm_model = plume.model(function(m, d)
  local mu = plume.vector{}
  for k = 1, d.K do mu[k] = m:sample("mu[" .. k .. "]", D.normal(0, d.tau)) end
  local w = {}
  for k = 1, d.K do w[k] = 1 / d.K end
  for i = 1, #d.y do
    local z = m:sample("z[" .. i .. "]", D.categorical(w))
    m:observe("y[" .. i .. "]", D.normal(mu[z], 1), d.y[i])
  end
end)

-- open universe: K = 1 + k, k ~ poisson(lambda); then as above. A dynamic program (its sites depend on k).
M.gmm_ou_model = plume.model(function(m, d)
  local K = 1 + m:sample("k", D.poisson(d.lambda))
  local mu = {}
  for k = 1, K do mu[k] = m:sample("mu[" .. k .. "]", D.normal(0, d.tau)) end
  local w = {}
  for k = 1, K do w[k] = 1 / K end
  for i = 1, #d.y do
    local z = m:sample("z[" .. i .. "]", D.categorical(w))
    m:observe("y[" .. i .. "]", D.normal(mu[z], 1), d.y[i])
  end
end)

local LOG2PI = math.log(2 * math.pi)
local function lnorm(x, m, s) return -0.5 * ((x - m) / s) ^ 2 - math.log(s) - 0.5 * LOG2PI end
M.lnorm = lnorm

-- Lua kernels on traces of gmm_ou_model (math.random is not the chain's stream: the kernels draw through
-- plume.dist so that a seed fixes the chain)
local U01 = D.uniform(0, 1)
local function runif() return U01:sample() end

local function state(tr, n)
  local K = 1 + tr:get("k")
  local mu, z = {}, {}
  for k = 1, K do mu[k] = tr:get("mu[" .. k .. "]") end
  for i = 1, n do z[i] = tr:get("z[" .. i .. "]") end
  return K, mu, z
end

local function labels_with(y, mu, zfix)
  -- as draw_labels, the uniforms from the chain's stream
  local K, z, lq, lp = #mu, {}, 0, {}
  for i = 1, #y do
    local top = -math.huge
    for k = 1, K do lp[k] = -0.5 * (y[i] - mu[k]) ^ 2; if lp[k] > top then top = lp[k] end end
    local tot = 0
    for k = 1, K do lp[k] = math.exp(lp[k] - top); tot = tot + lp[k] end
    local zi = zfix and zfix[i]
    if not zi then
      local u = runif() * tot
      zi = K
      for k = 1, K do u = u - lp[k]; if u <= 0 then zi = k; break end end
    end
    z[i] = zi
    lq = lq + math.log(lp[zi] / tot)
  end
  return z, lq
end
M.labels_with = labels_with

-- every label from its exact conditional, as one MH move whose ratio is 1 (a Gibbs sweep of z)
function M.ou_labels_kernel(d)
  return function(tr)
    local _, mu, zold = state(tr, #d.y)
    local z, lq_new = labels_with(d.y, mu)
    local _, lq_old = labels_with(d.y, mu, zold)
    local imp = {}
    for i = 1, #d.y do imp["z[" .. i .. "]"] = z[i] end
    return plume.kernel.accept(tr, tr:with(imp), lq_old - lq_new)
  end
end

-- every mean from its conjugate normal conditional given the labels (prior normal(0, tau), unit sd)
function M.ou_means_kernel(d)
  local N01 = D.normal(0, 1)
  return function(tr)
    local K, mu, z = state(tr, #d.y)
    local n, s = {}, {}
    for k = 1, K do n[k], s[k] = 0, 0 end
    for i = 1, #d.y do n[z[i]] = n[z[i]] + 1; s[z[i]] = s[z[i]] + d.y[i] end
    local imp, lq = {}, 0
    for k = 1, K do
      local prec = 1 / d.tau ^ 2 + n[k]
      local m, sd = s[k] / prec, 1 / math.sqrt(prec)
      local new = m + sd * N01:sample()
      imp["mu[" .. k .. "]"] = new
      lq = lq + lnorm(mu[k], m, sd) - lnorm(new, m, sd)
    end
    return plume.kernel.accept(tr, tr:with(imp), lq)
  end
end

-- birth (append a component) or death (drop the last one), probability 1/2 each; the new mean from
-- birth = {sample = function(means) -> mu, logq = function(mu, means) -> log q(mu)}, a density given the data
-- and the current means (those without the new one);
-- the labels are then redrawn from their conditional given the means, in both moves, and scored in reverse.
-- broken = true leaves out log q of the new mean (a negative control for the tests).
function M.ou_birth_death_kernel(d, birth, broken)
  local prior = D.normal(0, d.tau)
  return function(tr)
    local K, mu, zold = state(tr, #d.y)
    local _, lq_old = labels_with(d.y, mu, zold)
    local imp = {}
    if runif() < 0.5 then
      local new = birth.sample(mu)
      local lqb = birth.logq(new, mu)
      mu[K + 1] = new
      local z, lq_new = labels_with(d.y, mu)
      for i = 1, #d.y do imp["z[" .. i .. "]"] = z[i] end
      imp.k = K
      imp["mu[" .. (K + 1) .. "]"] = new
      -- reverse: death (1/2), labels of the old means
      return plume.kernel.accept(tr, tr:with(imp), lq_old - lq_new - (broken and 0 or lqb))
    else
      if K == 1 then return tr end
      local gone = mu[K]
      mu[K] = nil
      local z, lq_new = labels_with(d.y, mu)
      for i = 1, #d.y do imp["z[" .. i .. "]"] = z[i] end
      imp.k = K - 2
      -- the dropped mean: accept counts it as if the reverse drew it from its prior; the reverse (a birth)
      -- draws it from q, so the prior's term is taken out and q's put in
      return plume.kernel.accept(tr, tr:with(imp),
        lq_old - lq_new + (broken and 0 or birth.logq(gone, mu)) - prior:logpdf(gone))
    end
  end
end

-- the hand-tuned birth: a normal(y_j, s) around one of `anchors` data points (fixed: every n/A-th point of the
-- sorted data), chosen uniformly: q(mu) = mean_j normal(mu; y_j, s)
function M.anchors(y, A)
  local sorted = {}
  for i, v in ipairs(y) do sorted[i] = v end
  table.sort(sorted)
  local a = {}
  for j = 1, A do a[j] = sorted[math.max(1, math.floor((j - 0.5) * #y / A + 0.5))] end
  return a
end

function M.hand_birth(anchors, s)
  local N01 = D.normal(0, 1)
  return {
    sample = function()
      local j = math.min(#anchors, 1 + math.floor(runif() * #anchors))
      return anchors[j] + s * N01:sample()
    end,
    logq = function(mu)
      local top, t = -math.huge, {}
      for j = 1, #anchors do t[j] = lnorm(mu, anchors[j], s); if t[j] > top then top = t[j] end end
      local sum = 0
      for j = 1, #anchors do sum = sum + math.exp(t[j] - top) end
      return top + math.log(sum / #anchors)
    end,
  }
end

return M
