-- test_bffg_ips.lua -- plume.bffg_ips: BFFG for a general compartmental interacting particle system on a graph,
-- here an SEIRS epidemic (4 states, infection pressure from both exposed and infectious neighbours, waning
-- immunity). Exact reference: the forward-backward algorithm over the joint chain (4^3 = 64 states), whose
-- transition is built here from the rates independently of the C code. Monte Carlo checks use fixed seeds.
package.path = "tests/lua/?.lua;" .. package.path
local joint_fb = require("joint_fb")
local T = dofile("tests/lua/check.lua")

local K = 4   -- S, E, I, R
local states = { "S", "E", "I", "R" }
local function decode(x, N)
  local s = {}
  for i = 1, N do s[i] = x % K; x = x // K end
  return s
end

-- rate[from][to] = {base, per = {k = rate per neighbour in state k}} (1-based states)
local function model(over)
  local m = {
    N = 3, T = 4, edges = { { 1, 2 }, { 2, 3 } },
    rates = {
      { from = 1, to = 2, base = 0.05, per = { [2] = 0.3, [3] = 0.8 } },   -- S -> E
      { from = 2, to = 3, base = 0.7 },                                     -- E -> I
      { from = 3, to = 4, base = 0.4 },                                     -- I -> R
      { from = 4, to = 1, base = 0.2 },                                     -- R -> S (waning)
    },
    init = { 0.6, 0.1, 0.3, 0 },
    emission = { { 0.95, 0.05 }, { 0.7, 0.3 }, { 0.1, 0.9 }, { 0.9, 0.1 } },   -- a test: negative, positive
    obs = { { 1, 1, 2 }, { 2, 2, 2 }, { 3, 4, 1 }, { 1, 4, 1 }, { 3, 0, 1 }, { 2, 3, 2 }, { 1, 3, 2 } },
  }
  for k, v in pairs(over or {}) do m[k] = v end
  return m
end

local function neighbours(m)
  local nb = {}
  for i = 1, m.N do nb[i] = {} end
  for _, e in ipairs(m.edges) do table.insert(nb[e[1]], e[2]); table.insert(nb[e[2]], e[1]) end
  return nb
end

-- one individual's transition probabilities out of state s (1-based) with neighbour counts c: competing
-- exponential clocks over one time unit
local function row(m, s, c)
  local r, R = {}, 0
  for j = 1, K do r[j] = 0 end
  for _, t in ipairs(m.rates) do
    if t.from == s then
      local v = t.base or 0
      for k, p in pairs(t.per or {}) do v = v + p * c[k] end
      r[t.to] = r[t.to] + v
      R = R + v
    end
  end
  local p = {}
  for j = 1, K do p[j] = (j == s) and math.exp(-R) or (R > 0 and (1 - math.exp(-R)) * r[j] / R or 0) end
  return p
end

local function joint_transition(m)
  local N, S, nb = m.N, K ^ m.N, neighbours(m)
  local P = {}
  for x = 0, S - 1 do
    local s, pi = decode(x, N), {}
    for i = 1, N do
      local c = { 0, 0, 0, 0 }
      for _, j in ipairs(nb[i]) do c[s[j] + 1] = c[s[j] + 1] + 1 end
      pi[i] = row(m, s[i] + 1, c)
    end
    P[x + 1] = {}
    for y = 0, S - 1 do
      local sy, p = decode(y, N), 1
      for i = 1, N do p = p * pi[i][sy[i] + 1] end
      P[x + 1][y + 1] = p
    end
  end
  return P
end

local function emis(m, t, x)
  local s, p = decode(x, m.N), 1
  for _, o in ipairs(m.obs) do if o[2] == t then p = p * m.emission[s[o[1]] + 1][o[3]] end end
  return p
end

-- exact log p(y) and marginals[i][t + 1][state]
local function exact(m)
  return joint_fb(m.N, m.T, K, function(x)
      local s, p = decode(x, m.N), 1
      for i = 1, m.N do p = p * m.init[s[i] + 1] end
      return p
    end, joint_transition(m),
    function(t, x) return emis(m, t, x) end, function(x) return decode(x, m.N) end)
end

local function run(m, opts)
  local tr = {}
  for _, t in ipairs(m.rates) do
    local per = {}
    for k, p in pairs(t.per or {}) do per[states[k]] = p end
    tr[#tr + 1] = { from = states[t.from], to = states[t.to], rate = t.base, per = per }
  end
  local o = { states = states, transitions = tr, N = m.N, T = m.T, edges = m.edges, init = m.init,
    emission = m.emission, obs = m.obs }
  for k, v in pairs(opts) do o[k] = v end
  return plume.bffg_ips(o)
end

local base = model()
local L0, M0 = exact(base)

-- negative control: the exact likelihood of a model whose infection rate per infectious neighbour is 0.5, not 0.8
local Lw = exact(model { rates = { { from = 1, to = 2, base = 0.05, per = { [2] = 0.3, [3] = 0.5 } }, { from = 2, to = 3, base = 0.7 },
  { from = 3, to = 4, base = 0.4 }, { from = 4, to = 1, base = 0.2 } } })

T.test("bffg_ips: SEIRS likelihood estimate unbiased against the exact joint chain (IS and guided SMC)", function()
  for _, method in ipairs { "is", "smc" } do
    local r, r2, R = 0, 0, 300
    for seed = 1, R do
      local v = math.exp(run(base, { samples = 20, seed = seed, method = method }).loglik - L0)
      r, r2 = r + v, r2 + v * v
    end
    local mean = r / R
    local se = math.sqrt((r2 / R - mean * mean) / (R - 1))
    local wrong = mean * math.exp(L0 - Lw)   -- the same runs against the other model's likelihood
    print(string.format("  %s: mean p^/p %.4f (se %.4f) over %d runs of 20; exact log p(y) %.5f; against the other "
      .. "model %.4f (z %.1f)", method, mean, se, R, L0, wrong, (wrong - 1) / (se * math.exp(L0 - Lw))))
    T.ok(se > 0, method .. ": the weights vary (the auxiliary is not the true dynamics)")
    T.near(mean, 1, 3.5 * se, method .. ": mean of p^/p")
    T.ok(math.abs(wrong - 1) > 3.5 * se * math.exp(L0 - Lw), method .. ": another model's likelihood must miss")
  end
end)

local function marg_z(post, M)
  local worst = 0
  for i = 1, base.N do
    for t = 1, base.T + 1 do
      for s = 1, K do
        local p, q = M[i][t][s], post.marginals[i][t][s]
        worst = math.max(worst, math.abs(p - q) / math.sqrt(math.max(p * (1 - p), 1e-4) / post.ess))
      end
    end
  end
  return worst
end

T.test("bffg_ips: marginals match forward-backward within MC error; other data miss", function()
  local post = run(base, { samples = 40000, seed = 3 })
  local z = marg_z(post, M0)
  print(string.format("  IS: ESS %.0f of 40000, worst z %.2f, loglik %.4f (exact %.4f)", post.ess, z, post.loglik, L0))
  T.ok(z < 4.5, "IS worst z " .. z)
  T.near(post.loglik, L0, 0.03, "IS loglik")
  T.eq(post.states[2], "E", "states listed")
  local _, M1 = exact(model { obs = { { 1, 1, 1 }, { 2, 2, 2 }, { 3, 4, 2 }, { 1, 4, 2 }, { 3, 0, 1 }, { 2, 3, 1 }, { 1, 3, 1 } } })
  T.ok(marg_z(post, M1) > 4.5, "other data must miss")
end)

T.test("bffg_ips: without interaction every weight is the exact log-likelihood", function()
  local m = model { rates = { { from = 1, to = 2, base = 0.2 }, { from = 2, to = 3, base = 0.7 }, { from = 3, to = 4, base = 0.4 },
    { from = 4, to = 1, base = 0.2 } } }
  local L = exact(m)
  local post = run(m, { samples = 300, seed = 1 })
  for k, lw in ipairs(post.log_weights) do T.near(lw, L, 1e-10, "weight " .. k) end
  T.near(post.loglik_aux, L, 1e-10, "auxiliary likelihood")
end)

T.test("bffg_ips: SIR written as rates is plume.bffg_sir", function()
  local beta, gamma, eps = 0.5, 0.3, 0.05
  local common = { N = 3, T = 4, edges = { { 1, 2 }, { 2, 3 } }, init = { 0.7, 0.3, 0 },
    emission = { { 0.95, 0.05 }, { 0.1, 0.9 }, { 0.8, 0.2 } }, obs = { { 1, 1, 2 }, { 2, 2, 2 }, { 3, 4, 1 } },
    samples = 2000, seed = 4 }
  local a = plume.bffg_sir(setmetatable({ beta = beta, gamma = gamma, eps = eps }, { __index = common }))
  local o = { states = { "S", "I", "R" }, transitions = {
    { from = "S", to = "I", rate = -math.log(1 - eps), per = { I = -math.log(1 - beta) } },
    { from = "I", to = "R", rate = -math.log(1 - gamma) } } }
  for k, v in pairs(common) do o[k] = v end
  local b = plume.bffg_ips(o)
  T.near(a.loglik, b.loglik, 1e-9, "the same estimate")
  T.near(a.marginals[2][3][2], b.marginals[2][3][2], 1e-9, "the same marginals")
end)

T.test("bffg_ips: same seed, same result for any thread count", function()
  for _, method in ipairs { "is", "smc" } do
    local a = run(base, { samples = 3000, seed = 9, threads = 1, method = method })
    local b = run(base, { samples = 3000, seed = 9, threads = 3, method = method })
    T.eq(a.loglik, b.loglik, method .. " loglik")
  end
end)

T.test("bffg_ips: bad input is named", function()
  local tr = { { from = "S", to = "X", rate = 1 } }
  T.raises(function() plume.bffg_ips { states = { "S", "I" }, transitions = tr, N = 1, T = 1, edges = {}, init = { 1, 0 } } end,
    "transitions[1].to names state 'X', which is not one of 'states'")
  T.raises(function() plume.bffg_ips { states = { "S", "I" }, transitions = { { from = "S", to = "I", rate = -1 } }, N = 1,
    T = 1, edges = {}, init = { 1, 0 } } end, "transitions[1].rate must be >= 0")
  T.raises(function() plume.bffg_ips { states = { "S", "I" }, transitions = { { from = "S", to = "I", per = { Q = 1 } } },
    N = 1, T = 1, edges = {}, init = { 1, 0 } } end, "transitions[1].per names state 'Q'")
  T.raises(function() plume.bffg_ips { states = { "S", "S" }, transitions = {}, N = 1, T = 1, edges = {}, init = { 1, 0 } } end,
    "state 'S' is named twice")
  T.raises(function() run(base, { init = { 0.5, 0.5, 0 } }) end, "init must have 4 entries (got 3)")
  T.raises(function() run(base, { emission = { { 1 }, { 1 }, { 1 } } }) end, "'emission' must have 4 rows")
  T.raises(function() run(base, { aux = 0.5 }) end, "'aux' must be \"mean_field\"")
end)
