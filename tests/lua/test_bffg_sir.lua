-- test_bffg_sir.lua -- plume.bffg_sir: BFFG for an SIR interacting particle system on a graph. Exact references:
-- the forward-backward algorithm over the joint chain (3^N states), itself checked against enumeration of every
-- joint path on a smaller instance. Monte Carlo checks use fixed seeds; tolerances are stated where used.
package.path = "tests/lua/?.lua;" .. package.path
local joint_fb = require("joint_fb")
local T = dofile("tests/lua/check.lua")

-- the joint chain: states are N-digit base-3 numbers (digit i = individual i's state, 0 S, 1 I, 2 R)
local function decode(x, N)
  local s = {}
  for i = 1, N do s[i] = x % 3; x = x // 3 end
  return s
end

local function neighbours(m)
  local nb = {}
  for i = 1, m.N do nb[i] = {} end
  for _, e in ipairs(m.edges) do
    table.insert(nb[e[1]], e[2]); table.insert(nb[e[2]], e[1])
  end
  return nb
end

-- p(x' | x) of the true dynamics, for all pairs: P[x][x'] (0-based joint indices, +1 in Lua)
local function joint_transition(m)
  local N, S, nb = m.N, 3 ^ m.N, neighbours(m)
  local P = {}
  for x = 0, S - 1 do
    local s = decode(x, N)
    local row = {}
    local pi = {}
    for i = 1, N do
      local k = 0
      for _, j in ipairs(nb[i]) do if s[j] == 1 then k = k + 1 end end
      local pinf = 1 - (1 - m.eps) * (1 - m.beta) ^ k
      if s[i] == 0 then pi[i] = { 1 - pinf, pinf, 0 }
      elseif s[i] == 1 then pi[i] = { 0, 1 - m.gamma, m.gamma }
      else pi[i] = { 0, 0, 1 } end
    end
    for y = 0, S - 1 do
      local sy, p = decode(y, N), 1
      for i = 1, N do p = p * pi[i][sy[i] + 1] end
      row[y + 1] = p
    end
    P[x + 1] = row
  end
  return P
end

-- g(t, x): the emission probability of the observations at time t
local function emis(m, t, x)
  local s, p = decode(x, m.N), 1
  for _, o in ipairs(m.obs) do
    if o[2] == t then p = p * m.emission[s[o[1]] + 1][o[3]] end
  end
  return p
end

local function init_p(m, x)
  local s, p = decode(x, m.N), 1
  for i = 1, m.N do p = p * m.init[s[i] + 1] end
  return p
end

-- exact log p(y) and marginals[i][t + 1][state] by forward-backward over the joint chain
local function exact(m)
  return joint_fb(m.N, m.T, 3, function(x) return init_p(m, x) end, joint_transition(m),
    function(t, x) return emis(m, t, x) end, function(x) return decode(x, m.N) end)
end

-- log p(y) by summing p(x_{0:T}, y) over every joint path (3^(N (T + 1)) of them)
local function enumerate(m)
  local S, P = 3 ^ m.N, joint_transition(m)
  local total = 0
  local function rec(t, x, p)
    if t == m.T then total = total + p; return end
    for y = 1, S do
      local q = P[x][y]
      if q > 0 then rec(t + 1, y, p * q * emis(m, t + 1, y - 1)) end
    end
  end
  for x = 1, S do rec(0, x, init_p(m, x - 1) * emis(m, 0, x - 1)) end
  return math.log(total)
end

local function run(m, opts)
  local o = { N = m.N, T = m.T, edges = m.edges, beta = m.beta, gamma = m.gamma, eps = m.eps, init = m.init,
              emission = m.emission, obs = m.obs }
  for k, v in pairs(opts) do o[k] = v end
  return plume.bffg_sir(o)
end

-- 3 individuals on a path 1 - 2 - 3, 4 steps, a two-symbol test (negative, positive) with errors
local base = { N = 3, T = 4, edges = { { 1, 2 }, { 2, 3 } }, beta = 0.5, gamma = 0.3, eps = 0.05, init = { 0.7, 0.3, 0 },
  emission = { { 0.95, 0.05 }, { 0.1, 0.9 }, { 0.8, 0.2 } },
  obs = { { 1, 1, 2 }, { 2, 2, 2 }, { 3, 4, 1 }, { 1, 4, 1 }, { 3, 0, 1 }, { 2, 3, 2 } } }

T.test("bffg_sir: the reference forward-backward equals enumeration of all joint paths", function()
  local small = { N = 2, T = 2, edges = { { 1, 2 } }, beta = 0.5, gamma = 0.3, eps = 0.05, init = { 0.7, 0.3, 0 },
    emission = base.emission, obs = { { 1, 1, 2 }, { 2, 2, 1 }, { 2, 0, 1 } } }
  T.near(exact(small), enumerate(small), 1e-12, "N = 2, T = 2")
end)

local L0, M0 = exact(base)

-- The IS estimate of p(y) is unbiased: over R seeds the mean of exp(loglik - log p(y)) is 1 within 3.5 standard
-- errors. With few samples per run the estimator's own spread shows.
local function unbiased(opts, R)
  local r, r2 = 0, 0
  for seed = 1, R do
    opts.seed = seed
    local v = math.exp(run(base, opts).loglik - L0)
    r, r2 = r + v, r2 + v * v
  end
  local mean = r / R
  local se = math.sqrt((r2 / R - mean * mean) / (R - 1))
  return mean, se
end

T.test("bffg_sir: IS likelihood estimate unbiased against the exact joint chain (mean-field auxiliary)", function()
  local mean, se = unbiased({ samples = 20 }, 400)
  T.ok(se > 0, "the weights vary (the auxiliary is not the true dynamics)")
  T.near(mean, 1, 3.5 * se, "mean of p^/p (se " .. se .. ")")
end)

T.test("bffg_sir: IS unbiased with a poor auxiliary (no infected neighbours assumed)", function()
  local mean, se = unbiased({ samples = 20, aux = 0 }, 400)
  T.near(mean, 1, 3.5 * se, "mean of p^/p (se " .. se .. ")")
end)

T.test("bffg_sir: guided SMC likelihood estimate unbiased", function()
  local mean, se = unbiased({ samples = 20, method = "smc", ess_threshold = 1 }, 400)
  T.near(mean, 1, 3.5 * se, "mean of p^/p (se " .. se .. ")")
end)

-- marginals within 4.5 x sqrt(p (1 - p) / ESS) (the self-normalised IS error of an indicator, with Kish's ESS)
local function marg_ok(post, M)
  local worst = 0
  for i = 1, base.N do
    for t = 1, base.T + 1 do
      for s = 1, 3 do
        local p, q = M[i][t][s], post.marginals[i][t][s]
        local se = math.sqrt(math.max(p * (1 - p), 1e-4) / post.ess)
        worst = math.max(worst, math.abs(p - q) / se)
      end
    end
  end
  return worst
end

T.test("bffg_sir: marginals match forward-backward within MC error (IS and SMC); other data miss", function()
  local post = run(base, { samples = 40000, seed = 3 })
  T.ok(post.ess > 10000, "ESS " .. post.ess)
  local z = marg_ok(post, M0)
  T.ok(z < 4.5, "IS worst z " .. z)
  local smc = run(base, { samples = 40000, seed = 4, method = "smc" })
  z = marg_ok(smc, M0)
  T.ok(z < 4.5, "SMC worst z " .. z)
  T.near(smc.loglik, L0, 0.02, "SMC loglik")
  T.near(post.loglik, L0, 0.02, "IS loglik")
  -- negative control: the exact marginals of other data (individual 1 observed positive at the end)
  local other = {}
  for k, v in pairs(base) do other[k] = v end
  other.obs = { { 1, 1, 2 }, { 2, 2, 2 }, { 3, 4, 1 }, { 1, 4, 2 }, { 3, 0, 1 }, { 2, 3, 2 } }
  local _, M1 = exact(other)
  T.ok(marg_ok(post, M1) > 4.5, "other data must miss")
end)

T.test("bffg_sir: with the auxiliary equal to the dynamics (beta = 0) every weight is the exact log-likelihood", function()
  local m = {}
  for k, v in pairs(base) do m[k] = v end
  m.beta = 0
  local L = exact(m)
  local post = run(m, { samples = 500, seed = 1 })
  for k, lw in ipairs(post.log_weights) do T.near(lw, L, 1e-10, "weight " .. k) end
  T.near(post.loglik, L, 1e-10, "estimate")
  T.near(post.loglik_aux, L, 1e-10, "auxiliary likelihood")
  -- no edges: the same, whatever beta
  m.beta, m.edges = 0.5, {}
  L = exact(m)
  post = run(m, { samples = 200, seed = 2, method = "smc" })
  for k, lw in ipairs(post.log_weights) do T.near(lw, L, 1e-10, "no edges: weight " .. k) end
  T.near(post.loglik, L, 1e-10, "no edges: estimate")
  -- negative control: with interaction the weights vary
  post = run(base, { samples = 200, seed = 1 })
  local lo, hi = math.huge, -math.huge
  for _, lw in ipairs(post.log_weights) do lo, hi = math.min(lo, lw), math.max(hi, lw) end
  T.ok(hi - lo > 1e-3, "interaction: weights vary")
end)

T.test("bffg_sir: same seed, same result for any thread count", function()
  for _, method in ipairs { "is", "smc" } do
    local a = run(base, { samples = 3000, seed = 9, threads = 1, method = method })
    local b = run(base, { samples = 3000, seed = 9, threads = 3, method = method })
    T.eq(a.loglik, b.loglik, method .. " loglik")
    T.eq(a.marginals[2][3][2], b.marginals[2][3][2], method .. " marginal")
  end
end)

T.test("bffg_sir: bad input is named", function()
  T.raises(function() run(base, { beta = 1.5 }) end, "beta must be in [0, 1] (got 1.5)")
  T.raises(function() run(base, { obs = { { 4, 1, 1 } } }) end, "observation 1: entry 1 must be an integer in 1..3")
  T.raises(function() run(base, { obs = { { 1, 9, 1 } } }) end, "entry 2 must be an integer in 0..4")
  T.raises(function() run(base, { edges = { { 1, 1 } } }) end, "joins individual 1 to itself")
  T.raises(function() run(base, { init = { 0.5, 0.2, 0.2 } }) end, "initial probabilities of individual 1")
  T.raises(function() run(base, { aux = "magic" }) end, "'aux' must be \"mean_field\" or a fraction")
  T.raises(function() run(base, { method = "mcmc" }) end, "method 'mcmc' is not available")
  -- impossible data: individual 1 recovered at 0 (init has no R) seen exactly
  T.raises(function() run(base, { emission = { { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } }, obs = { { 1, 0, 3 } } }) end,
    "individual 1 have probability 0")
end)
