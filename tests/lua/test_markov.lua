-- test_markov.lua -- plume.markov: laplace_predict against the exact posterior predictive (numerical
-- integration over the transition matrix), the chain rule against the Dirichlet-multinomial marginal
-- likelihood, Bayes-optimality on sequences drawn from the prior, and icl_score against LMs whose answers are
-- known.
local T = dofile("tests/lua/check.lua")
local markov = plume.markov

T.test("laplace_equals_posterior_predictive_by_integration", function()
  -- binary order-1 chain, rows Beta(beta, beta): integrate over both rows. theta = sin^2(phi) makes the
  -- Beta(1/2, 1/2) density flat in phi, and the integrand a trigonometric polynomial, which the midpoint rule
  -- integrates to rounding error.
  local seq = {1, 1, 2, 1, 2, 2, 2, 1, 1, 1, 2}
  for _, beta in ipairs{0.5} do
    local n = 120
    local num, den = 0, 0
    local c = seq[#seq]
    for i = 1, n do
      local t1 = math.sin((i - 0.5) / n * math.pi / 2) ^ 2
      for j = 1, n do
        local t2 = math.sin((j - 0.5) / n * math.pi / 2) ^ 2
        local th = { t1, t2 }    -- th[s] = P(next = 1 | s)
        local L = 1
        for t = 2, #seq do
          local p1 = th[seq[t - 1]]
          L = L * (seq[t] == 1 and p1 or 1 - p1)
        end
        den = den + L
        num = num + L * th[c]
      end
    end
    local p = markov.laplace_predict(seq, { order = 1, beta = beta })
    T.near(p[1], num / den, 1e-12, "P(next = 1)")
    T.near(p[1] + p[2], 1, 1e-15, "sums to one")
  end
end)

-- log Gamma(a) from the gamma(a, 1) density at 1: log p(1) = -log Gamma(a) - 1
local function lgamma(a) return -1 - plume.dist.gamma(a, 1):logpdf(1) end
local function lbeta(a) -- log multivariate beta of the list a
  local s, l = 0, 0
  for i = 1, #a do s = s + a[i]; l = l + lgamma(a[i]) end
  return l - lgamma(s)
end

T.test("laplace_chain_rule_equals_dirichlet_multinomial_marginal", function()
  -- order 2 over 3 symbols: prod_t p(x_t | x_<t) = prod_ctx B(N_ctx + beta) / B(beta)
  math.randomseed(4)
  local seq = {}
  for t = 1, 60 do seq[t] = math.random(3) end
  local beta, k, M = 0.7, 2, 3
  local preds = markov.laplace_predict(seq, { order = k, beta = beta, states = M, all = true })
  T.eq(#preds, #seq + 1, "one prediction per position and one after")
  local lp = 0
  for t = k + 1, #seq do lp = lp + math.log(preds[t][seq[t]]) end
  local counts = {}
  for t = k + 1, #seq do
    local key = seq[t - 2] * 10 + seq[t - 1]
    counts[key] = counts[key] or {0, 0, 0}
    counts[key][seq[t]] = counts[key][seq[t]] + 1
  end
  local exact = 0
  for _, n in pairs(counts) do
    exact = exact + lbeta{ n[1] + beta, n[2] + beta, n[3] + beta } - lbeta{ beta, beta, beta }
  end
  T.near(lp, exact, 1e-10, "log marginal likelihood")
  T.near(preds[1][2], 1 / 3, 1e-15, "uniform before a full context")
end)

T.test("laplace_with_the_prior_beta_beats_other_betas_on_prior_draws", function()
  -- Bayes-optimality: on chains whose rows are drawn from Dirichlet(0.5), beta = 0.5 has the lowest expected
  -- log-loss. The differences are paired over the same sequences; 4 standard errors.
  math.randomseed(11)
  plume.seed(11)
  local M, L, S = 4, 40, 400
  local gamma = plume.dist.gamma(0.5, 1)
  local diffs = { [0.1] = {}, [2] = {} }
  for s = 1, S do
    local rows, seq = {}, { math.random(M) }
    for a = 1, M do
      local g, z = {}, 0
      for b = 1, M do g[b] = gamma:sample(); z = z + g[b] end
      for b = 1, M do g[b] = g[b] / z end
      rows[a] = g
    end
    for t = 2, L do
      local u, c, r = math.random(), 0, rows[seq[t - 1]]
      seq[t] = M
      for b = 1, M do c = c + r[b]; if u <= c then seq[t] = b; break end end
    end
    local function loss(beta)
      local p = markov.laplace_predict(seq, { beta = beta, states = M, all = true })
      local l = 0
      for t = 2, L do l = l - math.log(p[t][seq[t]]) end
      return l
    end
    local l0 = loss(0.5)
    for b, d in pairs(diffs) do d[s] = loss(b) - l0 end
  end
  for b, d in pairs(diffs) do
    local m, v = 0, 0
    for s = 1, S do m = m + d[s] end
    m = m / S
    for s = 1, S do v = v + (d[s] - m) ^ 2 end
    local se = math.sqrt(v / (S - 1) / S)
    T.ok(m > 4 * se, string.format("beta=%g should lose to beta=0.5: mean excess %.4f, se %.4f", b, m, se))
  end
end)

-- An "LM" over a 3-token vocabulary that answers with the Laplace predictive of its context (or uniform):
-- icl_score must give KL 0 for the first and the exact KL(laplace || uniform) for the second.
local function mock_lm(kind, beta)
  local m = {}
  function m:tokenize(s) return { string.byte(s) - string.byte("a") } end
  function m:next_logprobs_batch(ctxs)
    local out = {}
    for i, c in ipairs(ctxs) do
      local seq = {}
      for j, v in ipairs(c) do seq[j] = v + 1 end
      local p = markov.laplace_predict(seq, { order = 1, beta = beta, states = 3 })
      local row = {}
      for a = 1, 3 do row[a] = kind == "laplace" and math.log(p[a]) or math.log(1 / 3) end
      if #c == 0 then for a = 1, 3 do row[a] = math.log(1 / 3) end end
      out[i] = row
    end
    return out
  end
  return m
end

T.test("icl_score_is_zero_for_the_optimum_and_exact_for_uniform", function()
  local r = markov.icl_score(mock_lm("laplace", 1), { order = 1, beta = 1, length = 20, sequences = 5, seed = 3 })
  T.eq(#r.kl, 20, "one KL per position")
  for t = 1, 20 do T.near(r.kl[t], 0, 1e-12, "KL at " .. t) end
  T.near(r.lm_logloss, r.laplace_logloss, 1e-12, "same log-loss")
  local u = markov.icl_score(mock_lm("uniform", 1), { order = 1, beta = 1, length = 12, sequences = 3, seed = 3 })
  -- the same seed draws the same sequences: recompute KL(laplace || uniform) = log 3 - H(laplace) directly
  T.near(u.kl[1], 0, 1e-12, "uniform equals the optimum before any context")
  T.ok(u.kl[5] > 0 and u.lm_logloss > 0, "positive KL against uniform")
  T.near(u.lm_logloss, math.log(3), 1e-12, "uniform log-loss is log 3")
end)

T.test("icl_score_with_an_ngram_model", function()
  local words, text = { "a", "b", "c" }, {}
  math.randomseed(5)
  for i = 1, 3000 do text[i] = words[math.random(3)] end
  local lm = plume.lm.ngram.train{ text = table.concat(text, " "), order = 2 }
  local r = markov.icl_score(lm, { symbols = words, order = 1, beta = 1, length = 16, sequences = 4, seed = 1 })
  for t = 1, 16 do T.ok(r.kl[t] >= 0 and r.kl[t] < 5, "KL in range at " .. t) end
end)

T.test("laplace_bad_input", function()
  T.raises(function() markov.laplace_predict({1, 0}) end, "seq[2] is 0")
  T.raises(function() markov.laplace_predict({1, 3}, { states = 2 }) end, "seq[2] is 3, but symbols are integers 1..2")
  T.raises(function() markov.laplace_predict({1}, { beta = 0 }) end, "option 'beta' must be a positive number")
  T.raises(function() markov.laplace_predict({1}, { order = -1 }) end, "option 'order'")
  T.raises(function() markov.laplace_predict({1}, { bogus = 1 }) end, "unknown option 'bogus'")
  T.raises(function() markov.icl_score(mock_lm("laplace", 1), { symbols = { "a" } }) end, "at least 2")
end)
