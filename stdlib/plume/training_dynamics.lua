-- plume.markov.training_dynamics -- latent state models of training dynamics (after Hu, Chen, Saphra and
-- Ziegler, "Latent State Models of Training Dynamics", TMLR 2023): an HMM with multivariate Gaussian emissions
-- fitted by Baum-Welch (plume.hmm, in C) over many training runs' metric sequences, K chosen by BIC or AIC over
-- a range, the state graph, each run's Viterbi path, and "detour" states: states whose visits go with slower
-- convergence (runs that visit the state converge later than runs that do not, by a Welch t statistic).
--
--   local td = plume.markov.training_dynamics(runs, { K = {2, 8} })
--   print(td)              -- chosen K, BIC per K, states, graph and detours
--   td.paths[r]            -- run r's Viterbi path (states 1..K per checkpoint)
--
-- runs: a list of runs; each run a list of checkpoints; each checkpoint a list of D metric values (or a plume
-- array T x D). Metrics are standardised over all runs before fitting (means and sds are reported back in the
-- original units).
local plume = require "plume"

local function fail(msg) error("training_dynamics: " .. msg, 3) end

local function check_runs(runs)
  if type(runs) ~= "table" or #runs == 0 then fail("runs must be a non-empty list of runs (got " .. type(runs) .. ")") end
  local D
  for r, run in ipairs(runs) do
    if type(run) ~= "table" or #run == 0 then fail(("runs[%d] must be a non-empty list of checkpoints"):format(r)) end
    for t, x in ipairs(run) do
      if type(x) == "number" then x = { x }; run[t] = x end
      if type(x) ~= "table" then fail(("runs[%d][%d] must be a list of metric values (got %s)"):format(r, t, type(x))) end
      D = D or #x
      if #x ~= D or D == 0 then fail(("runs[%d][%d] has %d metrics, but runs[1][1] has %d"):format(r, t, #x, D)) end
      for j = 1, D do
        local v = x[j]
        if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
          fail(("runs[%d][%d][%d] is %s: metrics must be finite numbers"):format(r, t, j, tostring(v)))
        end
      end
    end
  end
  return D
end

-- z-score every metric over all checkpoints of all runs
local function standardise(runs, D)
  local mean, sd, n = {}, {}, 0
  for j = 1, D do mean[j], sd[j] = 0, 0 end
  for _, run in ipairs(runs) do
    for _, x in ipairs(run) do
      n = n + 1
      for j = 1, D do mean[j] = mean[j] + x[j] end
    end
  end
  for j = 1, D do mean[j] = mean[j] / n end
  for _, run in ipairs(runs) do
    for _, x in ipairs(run) do
      for j = 1, D do sd[j] = sd[j] + (x[j] - mean[j]) ^ 2 end
    end
  end
  for j = 1, D do
    sd[j] = math.sqrt(sd[j] / n)
    if sd[j] == 0 then sd[j] = 1 end
  end
  local z = {}
  for r, run in ipairs(runs) do
    z[r] = {}
    for t, x in ipairs(run) do
      local row = {}
      for j = 1, D do row[j] = (x[j] - mean[j]) / sd[j] end
      z[r][t] = row
    end
  end
  return z, mean, sd, n
end

-- A starting HMM with K states: sticky chain, means at K checkpoints spread along the runs' time axis
-- (the first, the last and evenly between, pooled over runs), unit covariances.
local function start_hmm(z, K, D)
  local trans, emit, init = {}, {}, {}
  local eye = {}
  for i = 1, D do
    eye[i] = {}
    for j = 1, D do eye[i][j] = i == j and 1 or 0 end
  end
  for k = 1, K do
    init[k] = 1 / K
    trans[k] = {}
    for j = 1, K do trans[k][j] = K == 1 and 1 or (k == j and 0.9 or 0.1 / (K - 1)) end
    -- mean over runs of the checkpoint at relative time (k - 1) / (K - 1)
    local mu = {}
    for j = 1, D do mu[j] = 0 end
    for _, run in ipairs(z) do
      local t = K == 1 and 1 or 1 + math.floor((#run - 1) * (k - 1) / (K - 1) + 0.5)
      for j = 1, D do mu[j] = mu[j] + run[t][j] / #z end
    end
    emit[k] = plume.dist.mvnormal(mu, eye)
  end
  return plume.hmm { init = init, trans = trans, emit = emit }
end

local function nparams(K, D) return (K - 1) + K * (K - 1) + K * D + K * D * (D + 1) / 2 end

-- Welch's t statistic of mean(a) - mean(b) (nil when either group has fewer than 2 runs)
local function welch(a, b)
  if #a < 2 or #b < 2 then return nil end
  local function mv(x)
    local m, v = 0, 0
    for _, u in ipairs(x) do m = m + u end
    m = m / #x
    for _, u in ipairs(x) do v = v + (u - m) ^ 2 end
    return m, v / (#x - 1)
  end
  local ma, va = mv(a)
  local mb, vb = mv(b)
  local se = math.sqrt(va / #a + vb / #b)
  if se == 0 then return ma > mb and math.huge or ma < mb and -math.huge or 0 end
  return (ma - mb) / se
end

local Result = { __name = "plume.training_dynamics" }
Result.__index = Result

function Result:__tostring()
  local out = {}
  local function p(...) out[#out + 1] = string.format(...) end
  p("training dynamics: %d runs, %d checkpoints, %d metrics; K = %d by %s", self.runs, self.n, self.D, self.K,
    self.criterion:upper())
  local ks = {}
  for k in pairs(self.bic) do ks[#ks + 1] = k end
  table.sort(ks)
  for _, k in ipairs(ks) do p("  K = %d: loglik %.1f  BIC %.1f  AIC %.1f", k, self.logliks[k], self.bic[k], self.aic[k]) end
  for s = 1, self.K do
    local e = self.effects[s]
    p("  state %d: visited by %d runs, occupancy %.3f%s", s, e.runs, self.occupancy[s],
      e.t and string.format(", converge %+.1f checkpoints later when visited (t = %.2f)%s", e.delay, e.t,
        self.is_detour[s] and "  <- detour" or "") or "")
  end
  local g = {}
  for _, e in ipairs(self.graph) do g[#g + 1] = string.format("%d->%d (%.2f)", e.from, e.to, e.p) end
  p("  graph: %s", #g > 0 and table.concat(g, ", ") or "(no transitions between states)")
  return table.concat(out, "\n")
end

--- training_dynamics(runs, {K = {2, 8}, criterion = "bic" | "aic", restarts = 4, iters = 200, seed = 1,
---   convergence = {t_1, ..., t_R} | nil, edge = 0.02, t = 2}) -> result
--- convergence: each run's convergence time (in checkpoints); default: the run's length (runs logged until they
--- converged). A state visited by some runs but not all is a detour when runs that visit it converge later, with
--- Welch t >= opts.t. The graph lists transitions between distinct states with probability >= opts.edge.
return function(runs, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("options must be a table (got " .. type(opts) .. ")") end
  local known = { K = 1, criterion = 1, restarts = 1, iters = 1, seed = 1, convergence = 1, edge = 1, t = 1, tol = 1 }
  for k in pairs(opts) do
    if not known[k] then fail("unknown option '" .. tostring(k) .. "' (options: K, criterion, restarts, iters, seed, convergence, edge, t, tol)") end
  end
  local D = check_runs(runs)
  local Krange = opts.K or { 2, 8 }
  if type(Krange) == "number" then Krange = { Krange, Krange } end
  local K1, K2 = Krange[1], Krange[2] or Krange[1]
  if math.type(K1) ~= "integer" or math.type(K2) ~= "integer" or K1 < 1 or K2 < K1 then
    fail("option 'K' must be {Kmin, Kmax} with 1 <= Kmin <= Kmax (got {" .. tostring(K1) .. ", " .. tostring(K2) .. "})")
  end
  local criterion = opts.criterion or "bic"
  if criterion ~= "bic" and criterion ~= "aic" then fail("option 'criterion' must be \"bic\" or \"aic\" (got " .. tostring(criterion) .. ")") end
  local conv = opts.convergence
  if conv ~= nil then
    if type(conv) ~= "table" or #conv ~= #runs then fail("option 'convergence' must list one time per run (" .. #runs .. ")") end
  else
    conv = {}
    for r, run in ipairs(runs) do conv[r] = #run end
  end
  local z, mean, sd, n = standardise(runs, D)
  local fit_opts = { restarts = opts.restarts or 4, iters = opts.iters or 200, seed = opts.seed or 1, tol = opts.tol or 1e-6 }
  local best, bestK, bestcrit
  local res = setmetatable({ bic = {}, aic = {}, logliks = {}, models = {}, criterion = criterion, runs = #runs, n = n, D = D,
    metric_mean = mean, metric_sd = sd }, Result)
  for K = K1, K2 do
    local h = start_hmm(z, K, D)
    local ok, fitted = pcall(h.fit, h, z, fit_opts)
    if ok then
      local ll = fitted:loglik(z)
      local p = nparams(K, D)
      res.logliks[K], res.models[K] = ll, fitted
      res.bic[K] = -2 * ll + p * math.log(n)
      res.aic[K] = -2 * ll + 2 * p
      local c = criterion == "bic" and res.bic[K] or res.aic[K]
      if not bestcrit or c < bestcrit then best, bestK, bestcrit = fitted, K, c end
    end
  end
  if not best then fail("no K in " .. K1 .. ".." .. K2 .. " could be fitted") end
  local K = bestK
  res.K, res.hmm, res.trans = K, best, best.trans
  res.paths = best:viterbi(z)
  if #runs == 1 then res.paths = { res.paths } end
  -- state means in the original units
  res.means = {}
  for s = 1, K do
    local m = best.emit[s]:mean()
    local u = {}
    for j = 1, D do u[j] = mean[j] + sd[j] * m[j] end
    res.means[s] = u
  end
  -- occupancy and the state graph
  local count, total = {}, 0
  for s = 1, K do count[s] = 0 end
  for _, path in ipairs(res.paths) do
    for _, s in ipairs(path) do count[s] = count[s] + 1; total = total + 1 end
  end
  res.occupancy = {}
  for s = 1, K do res.occupancy[s] = count[s] / total end
  res.graph = {}
  local edge = opts.edge or 0.02
  for i = 1, K do
    for j = 1, K do
      if i ~= j and res.trans[i][j] >= edge then res.graph[#res.graph + 1] = { from = i, to = j, p = res.trans[i][j] } end
    end
  end
  -- detours: does visiting state s go with later convergence?
  res.effects, res.detours, res.is_detour = {}, {}, {}
  local tmin = opts.t or 2
  for s = 1, K do
    local with, without = {}, {}
    for r, path in ipairs(res.paths) do
      local visits = false
      for _, x in ipairs(path) do if x == s then visits = true; break end end
      if visits then with[#with + 1] = conv[r] else without[#without + 1] = conv[r] end
    end
    local e = { runs = #with }
    local t = welch(with, without)
    if t then
      local a, b = 0, 0
      for _, u in ipairs(with) do a = a + u end
      for _, u in ipairs(without) do b = b + u end
      e.delay, e.t = a / #with - b / #without, t
      if t >= tmin then res.detours[#res.detours + 1] = s; res.is_detour[s] = true end
    end
    res.effects[s] = e
  end
  return res
end
