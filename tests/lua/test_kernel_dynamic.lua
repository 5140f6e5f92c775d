-- test_kernel_dynamic.lua -- plume.kernel on dynamic programs: trace kernels (mh, gibbs), their cycles,
-- mixtures and repetitions, and kernels written as Lua functions from trace to trace (tr:get, tr:with,
-- plume.kernel.accept). Correctness by simulation-based calibration (Talts et al. 2018) on a model whose
-- structure depends on a discrete choice, each with a negative control the same test rejects; exact
-- enumeration for the Gibbs kernel; errors that name the site or the kernel function's file:line.
local T = dofile("tests/lua/check.lua")
local D, K = plume.dist, plume.kernel

-- k switches an extra site b on: the number of latent sites depends on a random choice
local switch = plume.model(function(m, y)
  local k = m:sample("k", D.bernoulli(0.5))
  local x = m:sample("x", D.gamma(2, 1))
  local mu = math.log(x)
  if k == 1 then mu = mu + m:sample("b", D.normal(0, 1)) end
  for j = 1, #y do m:observe("y" .. j, D.normal(mu, 0.5), y[j]) end
end)

local function simulate_switch()
  local k, x = D.bernoulli(0.5):sample(), D.gamma(2, 1):sample()
  local mu = math.log(x) + (k == 1 and D.normal(0, 1):sample() or 0)
  return x, { D.normal(mu, 0.5):sample(), D.normal(mu, 0.5):sample() }, k
end

-- A multiplicative random walk on x written in Lua: x' = x exp(0.7 e) is asymmetric, and its Hastings term is
-- log q(x | x') - log q(x' | x) = log x' - log x. hastings = false drops it: the negative control (the chain
-- then leaves pi(x) / x invariant).
local function rw_x(hastings)
  return function(tr)
    local x = tr:get("x")
    local x2 = x * math.exp(0.7 * D.normal(0, 1):sample())
    return K.accept(tr, tr:with{ x = x2 }, hastings and math.log(x2) - math.log(x) or 0)
  end
end

-- Rank of the true value among the draws, ties broken uniformly (discrete sites), as Talts et al. do.
local function rank_of(truth, draws)
  local less, ties = 0, 0
  for _, v in ipairs(draws) do
    if v < truth then less = less + 1 elseif v == truth then ties = ties + 1 end
  end
  return less + math.floor(D.uniform(0, 1):sample() * (ties + 1))
end

-- Ranks 0..19 in 10 bins: the chi-square statistic against the uniform, and the bins.
local function rank_chi2(ranks)
  local bins, chi2, e = {}, 0, #ranks / 10
  for b = 1, 10 do bins[b] = 0 end
  for _, rank in ipairs(ranks) do bins[rank // 2 + 1] = bins[rank // 2 + 1] + 1 end
  for b = 1, 10 do chi2 = chi2 + (bins[b] - e) ^ 2 / e end
  return chi2, bins
end

-- SBC: reps replicates of (truth, data) from the prior, 19 kept draws each (thinned by 10, so that they are
-- close to independent), one(r) the rank of the truth among them; returns rank_chi2 of the ranks.
local function sbc(reps, seed, one)
  local ranks = {}
  plume.seed(seed)
  for r = 1, reps do ranks[r] = one(r) end
  return rank_chi2(ranks)
end

-- chi-square with 9 degrees of freedom: 27.9 is its 0.999 quantile (fixed seeds: each check is deterministic)
local CHI2_999 = 27.9
local REPS = 150

local function sbc_switch(hastings, seed)
  local kernel = K.cycle{ K.mh{ sites = { "k", "b" } }, rw_x(hastings) }
  return sbc(REPS, seed, function(r)
    local x, y = simulate_switch()
    local post = plume.infer(switch, y, { kernel = kernel, samples = 190, thin = 10, warmup = 60, chains = 1,
      seed = seed * 1000 + r, quiet = true })
    return rank_of(x, post:draws("x"))
  end)
end

T.test("sbc_lua_function_mh_kernel_ranks_uniform", function()
  local chi2, bins = sbc_switch(true, 31)
  T.ok(chi2 < CHI2_999, string.format("chi-square %.1f (bins %s)", chi2, table.concat(bins, " ")))
end)

T.test("sbc_negative_control_mh_without_hastings_term_is_rejected", function()
  local chi2, bins = sbc_switch(false, 32)
  T.ok(chi2 > CHI2_999, string.format("chi-square %.1f (bins %s)", chi2, table.concat(bins, " ")))
end)

-- k switches a site a on; z, categorical, is moved by the Gibbs kernel (its values keep the structure)
local mixed = plume.model(function(m, y)
  local mu = m:sample("mu", D.normal(0, 1))
  if m:sample("k", D.bernoulli(0.5)) == 1 then mu = mu + m:sample("a", D.normal(0, 1)) end
  local z = m:sample("z", D.categorical{ 0.2, 0.3, 0.5 })
  for j = 1, #y do m:observe("y" .. j, D.normal(mu + (z - 2), 1), y[j]) end
end)

local function simulate_mixed()
  local mu = D.normal(0, 1):sample()
  local shift = D.bernoulli(0.5):sample() == 1 and D.normal(0, 1):sample() or 0
  local z = D.categorical{ 0.2, 0.3, 0.5 }:sample()
  local y = {}
  for j = 1, 2 do y[j] = D.normal(mu + shift + (z - 2), 1):sample() end
  return mu, z, y
end

-- The negative control: a Gibbs update of z written in Lua (enumeration with tr:with) whose conditional is
-- wrong: it weighs the values with the prior probabilities reversed (0.5, 0.3, 0.2), as a kernel that read
-- the categories in the wrong order would.
local zprior = { 0.2, 0.3, 0.5 }
local function wrong_gibbs_z(tr)
  local trs, w, total = {}, {}, 0
  for v = 1, 3 do
    trs[v] = tr:with{ z = v }
    w[v] = math.exp(trs[v].logp) / zprior[v] * zprior[4 - v]
    total = total + w[v]
  end
  local u = D.uniform(0, total):sample()
  for v = 1, 3 do
    u = u - w[v]
    if u <= 0 then return trs[v] end
  end
  return trs[3]
end

local function sbc_mixed(zkernel, seed)
  local kernel = K.cycle{ K.mh{ sites = { "mu", "k", "a" } }, zkernel }
  local zranks = {}
  local chi2, bins = sbc(REPS, seed, function(r)
    local mu, z, y = simulate_mixed()
    local post = plume.infer(mixed, y, { kernel = kernel, samples = 190, thin = 10, warmup = 60, chains = 1,
      seed = seed * 1000 + r, quiet = true })
    zranks[r] = rank_of(z, post:draws("z"))
    return rank_of(mu, post:draws("mu"))
  end)
  local zchi2, zbins = rank_chi2(zranks)
  return chi2, bins, zchi2, zbins
end

T.test("sbc_cycle_of_mh_and_gibbs_on_a_dynamic_model_ranks_uniform", function()
  local chi2, bins, zchi2, zbins = sbc_mixed(K.gibbs{ sites = "z" }, 41)
  T.ok(chi2 < CHI2_999, string.format("mu: chi-square %.1f (bins %s)", chi2, table.concat(bins, " ")))
  T.ok(zchi2 < CHI2_999, string.format("z: chi-square %.1f (bins %s)", zchi2, table.concat(zbins, " ")))
end)

T.test("sbc_negative_control_wrong_gibbs_conditional_is_rejected", function()
  local chi2, bins, zchi2, zbins = sbc_mixed(wrong_gibbs_z, 42)
  T.ok(zchi2 > CHI2_999, string.format("z: chi-square %.1f (bins %s)", zchi2, table.concat(zbins, " ")))
end)

-- the Gibbs kernel on k, whose values switch site b on and off (weighed with b's prior as pseudo-prior)
T.test("sbc_gibbs_on_a_structure_switching_site_ranks_uniform", function()
  local kernel = K.cycle{ K.gibbs{ sites = "k" }, K.mh{ sites = { "x", "b" } } }
  local kranks = {}
  local chi2, bins = sbc(REPS, 61, function(r)
    local x, y, k = simulate_switch()
    local post = plume.infer(switch, y, { kernel = kernel, samples = 190, thin = 10, warmup = 60, chains = 1,
      seed = 61000 + r, quiet = true })
    kranks[r] = rank_of(k, post:draws("k"))
    return rank_of(x, post:draws("x"))
  end)
  local kchi2, kbins = rank_chi2(kranks)
  T.ok(chi2 < CHI2_999, string.format("x: chi-square %.1f (bins %s)", chi2, table.concat(bins, " ")))
  T.ok(kchi2 < CHI2_999, string.format("k: chi-square %.1f (bins %s)", kchi2, table.concat(kbins, " ")))
end)
