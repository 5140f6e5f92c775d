-- test_bffg_reaction.lua -- reaction networks as BFFG edges (plume.reactions, markov_kernel.reactions). Exact
-- reference: an SIR network with N = 10 individuals has 66 states (s, i), so the likelihood of noisy observations of
-- the counts and the posterior marginals are computed exactly by the forward-backward algorithm with the
-- transition matrices exp(Q t) of plume.ctmc over the enumerated state space. BFFG-IS weights are unbiased for
-- p(y): the mean of p^(y) / p(y) over independent runs must be 1 within 3 standard errors (natural scale);
-- posterior means within 4 standard errors (self-normalised IS, delta method). Fixed seeds throughout.
local T = dofile("tests/lua/check.lua")
local MK = plume.markov_kernel

local N, beta, gamma = 10, 1.6, 0.5
local x0 = { 9, 1, 0 }
local times = { 1, 2, 3, 4 }
local yI = { 3, 5, 4, 2 }            -- noisy observations of I (variance 1)
local ySI = 6                        -- at t = 3, also S + I (variance 2): a linear combination

local net = plume.reactions{
  species = { "S", "I", "R" },
  params = { beta = beta, gamma = gamma, N = N },
  reactions = {
    { stoich = { -1, 1, 0 }, rate = "beta * S * I / N" },
    { stoich = { 0, -1, 1 }, rate = function(x, p) return p.gamma * x.I end },
  },
}

-- ---- the exact reference -----------------------------------------------------------------------------------
local states, index = {}, {}
for s = 0, N do
  for i = 0, N - s do
    states[#states + 1] = { s, i }
    index[s * 100 + i] = #states
  end
end
local K = #states
local Q = {}
for a = 1, K do
  Q[a] = {}
  for b = 1, K do Q[a][b] = 0 end
  local s, i = states[a][1], states[a][2]
  local inf, rec = beta * s * i / N, gamma * i
  if inf > 0 then Q[a][index[(s - 1) * 100 + i + 1]] = inf end
  if rec > 0 then Q[a][index[s * 100 + i - 1]] = rec end
  Q[a][a] = -(inf + rec)
end
local P = plume.ctmc{ Q = Q }:transition(1)

local function dnorm(y, m, v) return math.exp(-0.5 * (y - m) ^ 2 / v) / math.sqrt(2 * math.pi * v) end
local function lik(k, a)
  local s, i = states[a][1], states[a][2]
  local l = dnorm(yI[k], i, 1)
  if k == 3 then l = l * dnorm(ySI, s + i, 2) end
  return l
end

-- forward-backward: log p(y) and E[S_k], E[I_k] given y
local exact = {}
do
  local alpha, scale = {}, {}
  local a0 = {}
  for a = 1, K do a0[a] = 0 end
  a0[index[x0[1] * 100 + x0[2]]] = 1
  local prev = a0
  for k = 1, #times do
    local cur, tot = {}, 0
    for b = 1, K do
      local acc = 0
      for a = 1, K do acc = acc + prev[a] * P[a][b] end
      cur[b] = acc * lik(k, b)
      tot = tot + cur[b]
    end
    for b = 1, K do cur[b] = cur[b] / tot end
    alpha[k], scale[k], prev = cur, tot, cur
  end
  local ll = 0
  for k = 1, #times do ll = ll + math.log(scale[k]) end
  exact.loglik = ll
  local betak = {}
  for a = 1, K do betak[a] = 1 end
  exact.S, exact.I, exact.pI = {}, {}, {}
  for k = #times, 1, -1 do
    local z, ms, mi = 0, 0, 0
    for a = 1, K do
      local w = alpha[k][a] * betak[a]
      z = z + w; ms = ms + w * states[a][1]; mi = mi + w * states[a][2]
    end
    exact.S[k], exact.I[k] = ms / z, mi / z
    exact.pI[k] = {}
    for i = 0, N do exact.pI[k][i] = 0 end
    for a = 1, K do exact.pI[k][states[a][2]] = exact.pI[k][states[a][2]] + alpha[k][a] * betak[a] / z end
    local nb = {}
    for a = 1, K do
      local acc = 0
      for b = 1, K do acc = acc + P[a][b] * lik(k, b) * betak[b] end
      nb[a] = acc
    end
    betak = nb
  end
end

-- ---- BFFG models ------------------------------------------------------------------------------------------
local obsI = MK.linear_gaussian{ B = { { 0, 1, 0 } }, Q = 1 }
local obsSI = MK.linear_gaussian{ B = { { 1, 1, 0 } }, Q = 2 }

-- aux: "ode" (the rate equation from x0), or "poor" (a constant, wrong reference)
local function model(aux, weight)
  local ref = net:ode(x0, { 0, 1, 2, 3 })
  local g = plume.dag():root("x0", x0)
  local prev = "x0"
  for k, t in ipairs(times) do
    local kern
    if aux == "poor" then
      kern = MK.reactions{ network = net, t0 = t - 1, t1 = t, dt = 0.1, at = { 2, 2, 6 }, ode = false, _weight = weight }
    else
      kern = MK.reactions{ network = net, t0 = t - 1, t1 = t, dt = 0.05, at = ref[k], _weight = weight }
    end
    g:kernel("x" .. k, prev, kern):observe("y" .. k, "x" .. k, obsI, yI[k])
    if k == 3 then g:observe("z3", "x3", obsSI, ySI) end
    prev = "x" .. k
  end
  return g
end

-- the ratio p^(y) / p(y) of nseed independent IS runs: z score of its mean against 1
local function unbiased(g, nseed, n, method)
  local r, s2 = {}, 0
  local m = 0
  for s = 1, nseed do
    local post = plume.bffg(g, nil, { samples = n, seed = 100 + s, method = method })
    r[s] = math.exp(post.loglik - exact.loglik)
    m = m + r[s] / nseed
  end
  for s = 1, nseed do s2 = s2 + (r[s] - m) ^ 2 / (nseed - 1) end
  local se = math.sqrt(s2 / nseed)
  return (m - 1) / se, m, se
end

-- the self-normalised weighted mean of xs under log weights lw, with its delta-method standard error
local function wmean(lw, xs)
  local mx = -math.huge
  for _, v in ipairs(lw) do mx = math.max(mx, v) end
  local sw, m = 0, 0
  local w = {}
  for i, v in ipairs(lw) do w[i] = math.exp(v - mx); sw = sw + w[i] end
  for i = 1, #w do m = m + w[i] * xs[i] / sw end
  local v = 0
  for i = 1, #w do v = v + (w[i] / sw) ^ 2 * (xs[i] - m) ^ 2 end
  return m, math.sqrt(v)
end

local function post_means(post, col) return wmean(post.log_weights_raw, post:draws(col)) end

T.test("exact reference: the forward algorithm's likelihood is a probability-weighted sum", function()
  T.ok(exact.loglik < 0 and exact.loglik > -30, "loglik " .. exact.loglik)
  -- rows of exp(Q) sum to 1 and the chain conserves S + I + R (closed state space)
  for a = 1, K do
    local s = 0
    for b = 1, K do s = s + P[a][b] end
    T.near(s, 1, 1e-9, "row " .. a)
  end
end)

T.test("simulate: Gillespie paths have the exact marginal mean of I(1)", function()
  local m, m2, n = 0, 0, 4000
  for s = 1, n do
    local path = net:simulate{ x0 = x0, times = { 0, 1 }, seed = s }
    T.eq(path[2][1] + path[2][2] + path[2][3], 10, "conservation")
    m = m + path[2][2] / n; m2 = m2 + path[2][2] ^ 2 / n
  end
  local e = 0
  for b = 1, K do e = e + P[index[900 + 1]][b] * states[b][2] end
  local se = math.sqrt((m2 - m * m) / n)
  T.ok(math.abs(m - e) < 4 * se, string.format("mean %g exact %g se %g", m, e, se))
end)

T.test("ode and rates", function()
  local r = net:rates({ 9, 1, 0 })
  T.near(r[1], beta * 9 / 10, 1e-12, "infection rate")
  T.near(r[2], gamma, 1e-12, "recovery rate")
  local path = net:ode(x0, { 0, 1, 2 })
  T.near(path[1][1], 9, 0, "start")
  T.near(path[3][1] + path[3][2] + path[3][3], 10, 1e-9, "the rate equation conserves N")
  T.ok(path[3][1] < path[2][1] and path[2][1] < 9, "S decreases")
end)

T.test("BFFG-IS on SIR (N = 10): unbiased likelihood and exact posterior means", function()
  local g = model("ode")
  local z, m, se = unbiased(g, 20, 500)
  print(string.format("  exact log p(y) %.5f; LNA filter %.5f; mean p^/p over 20 runs of 500: %.4f (se %.4f, z %.2f)",
    exact.loglik, g:loglik(), m, se, z))
  T.ok(math.abs(z) < 3, "z = " .. z)
  local post = plume.bffg(g, nil, { samples = 20000, seed = 7 })
  print(string.format("  one run of 20000: loglik %.5f, ESS %.0f", post.loglik, post.ess))
  T.ok(post.ess > 2000, "ESS " .. post.ess)
  for k = 1, #times do
    local mi, sei = post_means(post, "x" .. k .. "[2]")
    local ms, ses = post_means(post, "x" .. k .. "[1]")
    T.ok(math.abs(mi - exact.I[k]) < 4 * sei, string.format("E[I%d]: %g exact %g se %g", k, mi, exact.I[k], sei))
    T.ok(math.abs(ms - exact.S[k]) < 4 * ses, string.format("E[S%d]: %g exact %g se %g", k, ms, exact.S[k], ses))
  end
  -- the whole posterior marginal of I at t = 2: P(I2 = i | y) for every i with exact mass above 1%
  local xs, lw = post:draws("x2[2]"), post.log_weights_raw
  for i = 0, N do
    if exact.pI[2][i] > 0.01 then
      local ind = {}
      for s = 1, #xs do ind[s] = (xs[s] == i) and 1 or 0 end
      local pm, pse = wmean(lw, ind)
      T.ok(math.abs(pm - exact.pI[2][i]) < 4 * pse, string.format("P(I2 = %d): %g exact %g se %g", i, pm, exact.pI[2][i], pse))
    end
  end
end)

T.test("a poor auxiliary: the weights still correct", function()
  local g = model("poor")
  local z, m, se = unbiased(g, 20, 2000)
  print(string.format("  poor auxiliary: mean p^/p over 20 runs of 2000 %.4f (se %.4f, z %.2f)", m, se, z))
  T.ok(math.abs(z) < 3, "z = " .. z)
  local post = plume.bffg(g, nil, { samples = 20000, seed = 8 })
  local good = plume.bffg(model("ode"), nil, { samples = 20000, seed = 8 })
  print(string.format("  ESS %.0f (the ODE reference: %.0f)", post.ess, good.ess))
  for k = 1, #times do
    local mi, sei = post_means(post, "x" .. k .. "[2]")
    T.ok(math.abs(mi - exact.I[k]) < 4 * sei, string.format("E[I%d]: %g exact %g se %g", k, mi, exact.I[k], sei))
  end
end)

T.test("pure death: the exact binomial likelihood, to 1e-3", function()
  -- Y -> 0 at rate mu Y from 5: Y(1) ~ Binomial(5, exp(-mu)), observed with noise variance 1. The guided weights
  -- are light-tailed here (ESS 97%), so 200,000 draws pin the mean of p^/p down to about 4e-4.
  local mu = 0.7
  local death = plume.reactions{ species = { "Y" }, params = { mu = mu }, reactions = { { stoich = { -1 }, rate = "mu * Y" } } }
  local q, p = math.exp(-mu), 0
  local binom = { 1, 5, 10, 10, 5, 1 }
  for k = 0, 5 do p = p + binom[k + 1] * q ^ k * (1 - q) ^ (5 - k) * dnorm(2, k, 1) end
  local function ratio(weight)
    local g = plume.dag():root("x0", { 5 })
      :kernel("x1", "x0", MK.reactions{ network = death, t1 = 1, dt = 0.05, at = { 5 }, _weight = weight })
      :observe("y", "x1", MK.linear_gaussian{ B = 1, Q = 1 }, 2)
    local post = plume.bffg(g, nil, { samples = 200000, seed = 9 })
    local m, m2, n = 0, 0, #post.log_weights_raw
    for _, l in ipairs(post.log_weights_raw) do
      local r = math.exp(l) / p
      m = m + r / n; m2 = m2 + r * r / n
    end
    return m, math.sqrt((m2 - m * m) / n), post.ess / n
  end
  local m, se, frac = ratio()
  print(string.format("  death: mean p^/p %.5f (se %.5f), ESS %.3f of the draws", m, se, frac))
  T.ok(math.abs(m - 1) < 3 * se and se < 1e-3, string.format("mean %g se %g", m, se))
  local mb, seb = ratio("no_integral")
  T.ok(math.abs(mb - 1) > 3 * seb, string.format("no_integral: mean %g se %g", mb, seb))
end)

T.test("negative controls: a weight without the integral or the jump terms is rejected", function()
  for _, w in ipairs{ "no_integral", "no_jumps" } do
    local z, m, se = unbiased(model("ode", w), 20, 500)
    print(string.format("  %s: mean p^/p %.4f (se %.4f, z %.1f)", w, m, se, z))
    T.ok(math.abs(z) > 3, w .. ": z = " .. z)
    -- and the posterior means of the same check miss
    local post, worst = plume.bffg(model("ode", w), nil, { samples = 20000, seed = 7 }), 0
    for k = 1, #times do
      local mi, sei = post_means(post, "x" .. k .. "[2]")
      local ms, ses = post_means(post, "x" .. k .. "[1]")
      worst = math.max(worst, math.abs(mi - exact.I[k]) / sei, math.abs(ms - exact.S[k]) / ses)
    end
    print(string.format("  %s: largest |posterior mean - exact| / se %.1f", w, worst))
    T.ok(worst > 4, w .. ": posterior means all within 4 se")
  end
end)

T.test("guided SMC: unbiased likelihood", function()
  local z, m, se = unbiased(model("ode"), 20, 200, "smc")
  print(string.format("  smc: mean p^/p %.4f (se %.4f, z %.2f)", m, se, z))
  T.ok(math.abs(z) < 3, "z = " .. z)
end)

T.test("same seed, same draws whatever the thread count", function()
  local g = model("ode")
  local a = plume.bffg(g, nil, { samples = 300, seed = 3, threads = 1 })
  local b = plume.bffg(g, nil, { samples = 300, seed = 3, threads = 2 })
  T.eq(a.loglik, b.loglik, "loglik")
end)

T.test("errors", function()
  T.raises(function() plume.reactions{ species = { "A" }, reactions = { { stoich = { 1 }, rate = "k *" } } } end,
    "is not an expression")
  T.raises(function() plume.reactions{ species = { "A" }, reactions = { { stoich = { 1, 0 }, rate = 1 } } } end,
    "must have 1 entries")
  T.raises(function() plume.reactions{ species = { "A" }, params = { A = 1 }, reactions = { { stoich = { 1 }, rate = 1 } } } end,
    "names both a species and a parameter")
  local bad = plume.reactions{ species = { "A" }, params = { k = 1 }, reactions = { { stoich = { -1 }, rate = "k * (A - 5)" } } }
  T.raises(function() bad:simulate{ x0 = { 3 }, times = { 0, 1 }, seed = 1 } end, "rate of reaction 1 is -2")
  T.raises(function() MK.reactions{ network = net, t1 = 1, dt = 0.1 } end, "missing field 'at'")
  T.raises(function() MK.reactions{ network = net, t1 = 1, dt = 0.1, at = { 1, 2 } } end, "must have 3 entries")
  T.raises(function() MK.reactions{ network = net, t0 = 1, t1 = 1, dt = 0.1, at = x0 } end, "t0 < t1")
  local k = MK.reactions{ network = net, t1 = 1, dt = 0.1, at = x0 }
  T.raises(function() plume.dag():root("x0", x0):observe("x1", "x0", k, { 1, 2, 3 }) end, "cannot be observed")
  local g = plume.dag():root("x0", x0):kernel("x1", "x0", k):observe("y", "x1", obsI, 2)
  T.raises(function() plume.bffg(g, nil, { method = "mcmc", samples = 10, params = { beta = plume.dist.lognormal(0, 1) } }) end,
    "needs option 'sde' (the plume.sde they belong to) or 'network'")
  T.raises(function() plume.bffg(g, nil, { method = "mcmc", samples = 10, network = net, params = { nope = plume.dist.lognormal(0, 1) } }) end,
    "params names 'nope', which is not a parameter of the network")
  T.raises(function() plume.bffg(g, nil, { method = "mcmc", samples = 10, network = net, fixed_aux = true,
    params = { beta = plume.dist.lognormal(0, 1) } }) end, "'fixed_aux' is for diffusions")
  T.raises(function() MK.reactions{ network = net, t1 = 1, dt = 0.1, at = x0, weight = "no_jumps" } end, "unknown option 'weight'")
  local gb = plume.dag():root("x0", { 3 })
    :kernel("x1", "x0", MK.reactions{ network = bad, t1 = 1, dt = 0.5, at = { 6 }, ode = false })
    :observe("y", "x1", MK.linear_gaussian{ B = 1, Q = 1 }, 2)
  T.raises(function() plume.bffg(gb, nil, { samples = 10, seed = 1 }) end, "reaction rate was negative")
end)
