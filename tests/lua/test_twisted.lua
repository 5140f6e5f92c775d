-- test_twisted.lua -- twisted SMC over LM programs against exact references by enumeration on a 7-token n-gram
-- model (texts of at most 4 words): the optimal twist gives zero-variance weights and the exact log Z; other twists
-- and proposals give unbiased Z-hat; the evidence bounds sandwich log Z; the HMM x automaton dynamic program and
-- TRACE's expected attribute equal brute-force sums over the HMM's continuations; speculative sampling's
-- texts pass a chi-square test against the target (and accepting every draft token fails it).
local T = dofile("tests/lua/check.lua")

local lm = plume.lm.ngram.train { text = "a b c a b a c b a a b c c a d a b d", order = 2 }
local A, D = lm:tokenize("a")[1], lm:tokenize("d")[1]
local MAXT, V = 4, lm.n_vocab
local P = lm:tokenize("b")

-- the target: texts after "b" of at most MAXT words; phi = 1 when the text contains "d", else 0.05
local function logphi(seq)
  for _, v in ipairs(seq) do if v == D then return 0 end end
  return math.log(0.05)
end
local function extend(gen, v) local g = { table.unpack(gen) }; g[#g + 1] = v; return g end
-- every text lm can generate after P, up to L tokens, by enumeration: f(tokens, tokens before the last, ended
-- by end-of-sequence, probability)
local function each_text(L, f)
  local function rec(g, lp)
    local c = { table.unpack(P) }
    for _, v in ipairs(g) do c[#c + 1] = v end
    local row = lm:next_logprobs(c)
    for v = 0, V - 1 do
      if row[v + 1] > -math.huge then
        local g2 = extend(g, v)
        if lm:is_eos(v) or #g2 == L then f(g2, g, lm:is_eos(v), math.exp(lp + row[v + 1]))
        else rec(g2, lp + row[v + 1]) end
      end
    end
  end
  rec({}, 0)
end
-- Z = P(the text satisfies dfa) exactly (the end-of-sequence token is not part of the text)
local function exact_Z(dfa)
  local Z = 0
  each_text(MAXT, function(g2, g, eos, p) if dfa:accepts(eos and g or g2) then Z = Z + p end end)
  return Z
end
-- psi*(gen) = E_p0[phi | gen] for an unfinished prefix, by enumeration
local memo = {}
local function optimal(gen)
  local key = table.concat(gen, ",")
  if memo[key] then return memo[key] end
  local row, s = lm:next_logprobs(extend(P, table.unpack(gen)) and (function() local c = { table.unpack(P) }
    for _, v in ipairs(gen) do c[#c + 1] = v end return c end)()), 0
  for v = 0, V - 1 do
    local lp = row[v + 1]
    if lp > -math.huge then
      local g2 = extend(gen, v)
      if lm:is_eos(v) then s = s + math.exp(lp + logphi(gen))
      elseif #g2 == MAXT then s = s + math.exp(lp + logphi(g2))
      else s = s + math.exp(lp) * optimal(g2) end
    end
  end
  memo[key] = s
  return s
end
local Z = optimal({})
local function phi_of(prefix, v) return logphi(lm:is_eos(v) and prefix or extend(prefix, v)) end

local gen = plume.model(function(m, lm, tw, prop)
  local ctx = lm:context("b")
  if tw then ctx:twist(tw, { proposal = prop }) end
  for t = 1, MAXT do
    local tok = m:sample("tok" .. t, ctx:next_token())
    if lm:is_eos(tok) then break end
  end
  return ctx:text()
end)

local best = plume.twist { max_tokens = MAXT, phi = phi_of,
  psi = function(prefix, v) return math.log(optimal(extend(prefix, v))) end }
-- a valid but poor twist: favours "d" now, knows nothing of the future
local crude = plume.twist { max_tokens = MAXT, phi = phi_of,
  batch = function(prefix)
    local r = {}
    for v = 0, V - 1 do r[v + 1] = v == D and 0 or -1 end
    return r
  end }

T.test("optimal twist: every weight equal and log Z exact", function()
  for _, how in ipairs { "option", "ctx:twist" } do
    local post = how == "option" and plume.smc(gen, { lm }, { particles = 64, seed = 1, twist = best, quiet = true })
      or plume.smc(gen, { lm, best }, { particles = 64, seed = 1, quiet = true })
    T.near(post.logz, math.log(Z), 1e-12, how .. ": log Z")
    T.near(post.ess, 64, 1e-9, how .. ": ESS")
    for i = 1, 64 do T.near(post.log_weights[i], -math.log(64), 1e-12, how .. ": weight " .. i) end
  end
end)

-- Z-hat is unbiased: its mean over 300 seeds within 3.5 standard errors of Z (the SE from the same 300 values)
local function mean_zhat(opts, args)
  local s, s2, n = 0, 0, 300
  for i = 1, n do
    opts.seed, opts.quiet = 1000 + i, true
    local z = math.exp(plume.smc(gen, args or { lm }, opts).logz)
    s, s2 = s + z, s2 + z * z
  end
  local m = s / n
  return m, math.sqrt((s2 / n - m * m) / (n - 1))
end

T.test("any valid twist: Z-hat unbiased for the twisted, p0 and a user proposal", function()
  local cases = {
    { "crude twist, twisted proposal", { particles = 4, twist = crude } },
    { "crude twist, p0 proposal", { particles = 4, twist = crude, proposal = "p0" } },
    { "crude twist, user proposal", { particles = 4, twist = crude,
      proposal = function(prefix, logp0)     -- p0 tempered by 1/2: covers the target
        local q = {}
        for v = 1, V do q[v] = logp0[v] / 2 end
        return q
      end } },
    { "crude twist, p0 proposal, resampling every step (copies replay the twist)",
      { particles = 4, twist = crude, proposal = "p0", ess_threshold = 1 } },
    { "no twist: plain SMC with the potential as a factor", nil },
  }
  for _, c in ipairs(cases) do
    local m, se
    if c[2] then
      m, se = mean_zhat(c[2])
    else
      local plain = plume.model(function(mm, lm)
        local ctx, g = lm:context("b"), {}
        for t = 1, MAXT do
          local tok = mm:sample("tok" .. t, ctx:next_token())
          if lm:is_eos(tok) then break end
          g[#g + 1] = tok
        end
        mm:factor(logphi(g))
        return ctx:text()
      end)
      local s, n = 0, 300
      local zs = {}
      for i = 1, n do zs[i] = math.exp(plume.smc(plain, { lm }, { particles = 4, seed = 2000 + i, quiet = true }).logz); s = s + zs[i] end
      m = s / n
      local v = 0
      for i = 1, n do v = v + (zs[i] - m) ^ 2 end
      se = math.sqrt(v / (n - 1) / n)
    end
    T.ok(se > 0, c[1] .. ": the estimator varies")
    T.ok(math.abs(m - Z) < 3.5 * se, string.format("%s: mean Z-hat %.5f, Z %.5f, SE %.5f", c[1], m, Z, se))
  end
end)

T.test("resampled copies replay the twist: same seed, same result", function()
  local a = plume.smc(gen, { lm }, { particles = 16, seed = 5, twist = crude, ess_threshold = 1, quiet = true })
  local b = plume.smc(gen, { lm }, { particles = 16, seed = 5, twist = crude, ess_threshold = 1, quiet = true })
  T.ok(a.resamples > 0, "resampled")
  T.eq(a.logz, b.logz, "same log Z")
  for i = 1, 16 do T.eq(a.values[i], b.values[i], "same text " .. i) end
end)

T.test("negative control: a proposal whose weight ignores q is biased", function()
  -- an extra factor on "d" that no proposal ratio justifies: the same check must reject it
  local wrong = plume.model(function(m, lm)
    local ctx, g = lm:context("b"), {}
    for t = 1, MAXT do
      local tok = m:sample("tok" .. t, ctx:next_token())   -- sampled from p0 ...
      if lm:is_eos(tok) then break end
      g[#g + 1] = tok
      if tok == D then m:factor(0.3) end     -- ... but weighted by an extra factor that is not p0/q
    end
    m:factor(logphi(g))
  end)
  local s, s2, n = 0, 0, 300
  for i = 1, n do
    local z = math.exp(plume.smc(wrong, { lm }, { particles = 4, seed = 3000 + i, quiet = true }).logz)
    s, s2 = s + z, s2 + z * z
  end
  local m = s / n
  local se = math.sqrt((s2 / n - m * m) / (n - 1))
  T.ok(math.abs(m - Z) > 3.5 * se, string.format("the wrong weights pass: mean %.5f, Z %.5f, SE %.5f", m, Z, se))
end)

T.test("bounds: E[lower] <= log Z <= E[upper] (3 SE), with rejection and with given exact samples", function()
  local b = plume.bounds(gen, { lm }, { particles = 2, runs = 60, seed = 7, twist = crude })
  T.ok(b.lower.mean <= math.log(Z) + 3 * b.lower.se, string.format("lower %.4f ± %.4f vs %.4f", b.lower.mean, b.lower.se, math.log(Z)))
  T.ok(b.upper.mean >= math.log(Z) - 3 * b.upper.se, string.format("upper %.4f ± %.4f vs %.4f", b.upper.mean, b.upper.se, math.log(Z)))
  T.ok(b.kl_q_sigma.hi >= b.kl_q_sigma.lo and b.kl_sigma_q.hi >= b.kl_sigma_q.lo, "KL intervals ordered")
  T.ok(b.proposals >= 60, "rejection proposed at least one text per run")
  -- the optimal twist closes the gap: both bounds equal log Z and both KLs are 0
  local e = plume.bounds(gen, { lm }, { particles = 2, runs = 10, seed = 8, twist = best })
  T.near(e.lower.mean, math.log(Z), 1e-10, "optimal lower")
  T.near(e.upper.mean, math.log(Z), 1e-10, "optimal upper")
  T.near(e.kl_q_sigma.hi, 0, 1e-10, "optimal KL(q||sigma)")
  -- exact samples given by the user: the pinned path is the one particle 1 follows
  local post = plume.smc(gen, { lm }, { particles = 8, seed = 9, twist = crude, pin = { tok1 = D, tok2 = A, tok3 = lm.eos[1] }, quiet = true })
  T.eq(post.values[1], "d a", "particle 1 follows the pinned path")
  local sure = plume.bounds(gen, { lm }, { particles = 2, runs = 5, seed = 9, twist = crude,
    exact = function(i) return { tok1 = D, tok2 = lm.eos[1] } end })
  T.ok(sure.upper.mean == sure.upper.mean, "upper with given samples is a number")
end)

-- ---- HMM x automaton ----
local K = 3
local function rowsum1(r) local s = 0; for _, x in ipairs(r) do s = s + x end; for i = 1, #r do r[i] = r[i] / s end; return r end
local emit = {}
for k = 1, K do
  emit[k] = {}
  for v = 1, V do emit[k][v] = 1 + ((k * 7 + v * 3) % 5) end
  rowsum1(emit[k])
end
local hmm = plume.hmm { init = { 0.5, 0.3, 0.2 }, trans = { { 0.6, 0.3, 0.1 }, { 0.2, 0.5, 0.3 }, { 0.3, 0.3, 0.4 } }, emit = emit }
local H = 4
-- p_hmm(x_1..n), by the forward algorithm
local function hmm_prob(xs)
  local a = {}
  for k = 1, K do a[k] = hmm.init[k] * emit[k][xs[1] + 1] end
  for t = 2, #xs do
    local b = {}
    for j = 1, K do
      local s = 0
      for k = 1, K do s = s + a[k] * hmm.trans[k][j] end
      b[j] = s * emit[j][xs[t] + 1]
    end
    a = b
  end
  local s = 0
  for k = 1, K do s = s + a[k] end
  return s
end
-- brute force: sum over the HMM's continuations of prefix (texts end at EOS or after H tokens) of f(text)
local function brute(prefix, f)
  local num, den = 0, hmm_prob(prefix)
  local function rec(xs)
    local last = xs[#xs]
    if lm:is_eos(last) or #xs == H then num = num + hmm_prob(xs) * f(xs); return end
    for v = 0, V - 1 do rec(extend(xs, v)) end
  end
  rec(prefix)
  return num / den
end

T.test("HMM x keyword automaton: the dynamic program equals brute-force enumeration", function()
  local dfa = plume.twist.keywords(lm, { "a", "d" })
  T.eq(dfa.states, 4, "2 keywords, 4 states")
  T.ok(dfa:accepts({ D, 3, A }) and not dfa:accepts({ D, D }), "automaton accepts iff both keywords")
  local tw = plume.twist.hmm(hmm, dfa, { max_tokens = H, lm = lm, smoothing = 0 })
  local worst = 0
  for _, prefix in ipairs { {}, { A }, { D }, { A, D }, { 5, 6 }, { D, 5, 2 } } do
    local row = tw:logpsi(prefix)
    for v = 0, V - 1 do
      local x = extend(prefix, v)
      local want
      if lm:is_eos(v) or #x == H then want = dfa:accepts(x) and 1 or 0
      else want = brute(x, function(xs) return dfa:accepts(xs) and 1 or 0 end) end
      local got = math.exp(row[v + 1])
      worst = math.max(worst, math.abs(got - want))
    end
  end
  T.ok(worst < 1e-12, "largest difference " .. worst)
end)

T.test("an automaton given as a table gives the same guide as plume.twist.keywords", function()
  local kw = plume.twist.keywords(lm, { "a", "d" })
  local tab = plume.twist.automaton { states = 4, vocab = V, accept = { 3 },
    next = function(s, v) return s | (v == A and 1 or 0) | (v == D and 2 or 0) end }
  local t1 = plume.twist.hmm(hmm, kw, { max_tokens = H, lm = lm })
  local t2 = plume.twist.hmm(hmm, tab, { max_tokens = H, lm = lm })
  for _, prefix in ipairs { {}, { A }, { 2, D } } do
    local r1, r2 = t1:logpsi(prefix), t2:logpsi(prefix)
    for v = 1, V do T.eq(r1[v], r2[v], "row entry " .. v) end
  end
  T.raises(function() plume.twist.automaton { states = 2, vocab = V, accept = {}, next = function() return 5 end } end,
    "must be a state in 0..1")
end)

T.test("TRACE: the expected log-linear attribute equals brute force", function()
  local w = {}
  for v = 1, V do w[v] = -0.1 * ((v * 5) % 4) end
  local tw = plume.twist.trace(hmm, { weights = w, max_tokens = H, lm = lm, smoothing = 0 })
  local function attr(xs) local s = 0; for _, x in ipairs(xs) do s = s + w[x + 1] end; return math.exp(s) end
  local worst = 0
  for _, prefix in ipairs { {}, { 3 }, { 4, 5 } } do
    local row = tw:logpsi(prefix)
    for v = 0, V - 1 do
      local x = extend(prefix, v)
      local want = (lm:is_eos(v) or #x == H) and attr(x) or brute(x, attr)
      worst = math.max(worst, math.abs(math.exp(row[v + 1]) - want))
    end
  end
  T.ok(worst < 1e-12, "largest difference " .. worst)
end)

T.test("HMM-guided twisted SMC: unbiased for the keyword target of the n-gram model", function()
  local dfa = plume.twist.keywords(lm, { "d" })
  local h = plume.twist.distil(lm, { prompt = "b", states = 4, samples = 300, max_tokens = MAXT, seed = 2, iters = 20 })
  local tw = plume.twist.hmm(h, dfa, { max_tokens = MAXT, lm = lm })
  -- exact Z for phi = 1[contains d]
  local Zk = exact_Z(dfa)
  local s, s2, n = 0, 0, 200
  for i = 1, n do
    local z = math.exp(plume.smc(gen, { lm }, { particles = 4, seed = 4000 + i, twist = tw, quiet = true }).logz)
    s, s2 = s + z, s2 + z * z
  end
  local m = s / n
  local se = math.sqrt((s2 / n - m * m) / (n - 1))
  T.ok(math.abs(m - Zk) < 3.5 * se + 1e-12, string.format("mean Z-hat %.5f, Z %.5f, SE %.5f", m, Zk, se))
  -- every particle satisfies the constraint
  local post = plume.smc(gen, { lm }, { particles = 32, seed = 5, twist = tw, quiet = true })
  for i = 1, 32 do
    local txt = post.values[i]
    T.ok(txt == nil or txt:find("d", 1, true), "particle " .. i .. " has no d: " .. tostring(txt))
  end
end)

T.test("learned table twist (CTL): log Z still unbiased, its spread shrinks; save and load give the same twist", function()
  local dfa = plume.twist.keywords(lm, { "d" })
  local Zk = exact_Z(dfa)
  local function spread(tw)
    local zs, m, v, n = {}, 0, 0, 200
    for i = 1, n do zs[i] = math.exp(plume.smc(gen, { lm }, { particles = 8, seed = 6000 + i, twist = tw, quiet = true }).logz); m = m + zs[i] / n end
    for i = 1, n do v = v + (zs[i] - m) ^ 2 / (n - 1) end
    return m, math.sqrt(v / n), math.sqrt(v)
  end
  local tw = plume.twist.table(dfa, { max_tokens = MAXT, lm = lm })
  local m0, se0, sd0 = spread(tw)
  local trace = tw:learn(lm, { prompt = "b", particles = 64, iters = 60, lr = 0.5, seed = 1, quiet = true })
  T.eq(#trace, 60, "one log Z per iteration")
  local m1, se1, sd1 = spread(tw)
  T.ok(math.abs(m0 - Zk) < 3.5 * se0, string.format("untrained: mean %.5f, Z %.5f, SE %.5f", m0, Zk, se0))
  T.ok(math.abs(m1 - Zk) < 3.5 * se1, string.format("learned: mean %.5f, Z %.5f, SE %.5f", m1, Zk, se1))
  T.ok(sd1 < sd0 / 2, string.format("learning did not halve the spread of Z-hat: %.4f -> %.4f", sd0, sd1))
  local path = os.tmpname()
  tw:save(path)
  local back = plume.twist.load(path)
  for _, prefix in ipairs { {}, { D }, { A, A } } do
    local r1, r2 = tw:logpsi(prefix), back:logpsi(prefix)
    for v = 1, V do T.eq(r1[v], r2[v], "loaded row entry " .. v) end
  end
  local f = io.open(path, "w"); f:write("plume-twist 99\n"); f:close()
  T.raises(function() plume.twist.load(path) end, "is version 99; this plume reads version 1")
  os.remove(path)
end)

-- ---- speculative sampling ----
local target = lm
local draft = plume.lm.ngram.train { text = "a a b d c a d d b a c c b", order = 1 }

-- the target's distribution over texts of at most 3 tokens after "b"
local function target_dist(L)
  local dist = {}
  each_text(L, function(g2, _, _, p) dist[table.concat(g2, ",")] = p end)
  return dist
end

local function chisq(rule, n, seed)
  local want, got = target_dist(3), {}
  local stats
  for i = 1, n do
    local _, st = plume.speculative(target, draft, { k = 2, max_tokens = 3, prompt = "b", seed = seed + i, rule = rule })
    local key = table.concat(st.tokens, ",")
    got[key] = (got[key] or 0) + 1
    stats = st
  end
  -- bins with expected count >= 5; the rest pooled
  local x2, df, pool_e, pool_o = 0, -1, 0, 0
  for key, p in pairs(want) do
    local e, o = n * p, got[key] or 0
    if e >= 5 then x2 = x2 + (o - e) ^ 2 / e; df = df + 1 else pool_e, pool_o = pool_e + e, pool_o + o end
  end
  for key, o in pairs(got) do if not want[key] then pool_o = pool_o + o end end
  if pool_e > 0 then x2 = x2 + (pool_o - pool_e) ^ 2 / pool_e; df = df + 1 end
  -- the chi-square quantile at p = 1e-3 (Wilson-Hilferty)
  local z = 3.09
  local crit = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ^ 3
  return x2, crit, df, stats
end

T.test("speculative sampling: texts pass a chi-square test against the target; accepting every draft fails", function()
  local x2, crit, df, st = chisq("exact", 6000, 10)
  T.ok(x2 < crit, string.format("chi-square %.1f >= %.1f (df %d)", x2, crit, df))
  T.ok(st.acceptance > 0 and st.acceptance < 1, "some draft tokens kept, some not")
  local y2, ycrit = chisq("accept_all", 6000, 10)
  T.ok(y2 > ycrit, string.format("the wrong rule passes: %.1f <= %.1f", y2, ycrit))
end)

T.test("speculative: same seed, same text; a draft of another vocabulary is an error", function()
  local a = plume.speculative(target, draft, { k = 3, max_tokens = 10, prompt = "a", seed = 4 })
  local b = plume.speculative(target, draft, { k = 3, max_tokens = 10, prompt = "a", seed = 4 })
  T.eq(a, b, "same text")
  local other = plume.lm.ngram.train { text = "x y", order = 1 }
  T.raises(function() plume.speculative(target, other, {}) end, "must share a vocabulary")
  T.raises(function() plume.speculative(target, draft, { k = 0 }) end, "k must be in 1..256")
end)

T.test("errors name what is wrong", function()
  T.raises(function() plume.twist { phi = phi_of } end, "give psi")
  T.raises(function() plume.twist { psi = phi_of } end, "phi must be a function")
  T.raises(function() plume.smc(gen, { lm }, { proposal = "p0", quiet = true }) end, "option 'proposal' needs option 'twist'")
  T.raises(function() plume.smc(gen, { lm, crude, "q" }, { quiet = true }) end, "proposal must be")
  T.raises(function() plume.twist.keywords(lm, { "a b" }) end, "must be single tokens")
  T.raises(function() plume.twist.hmm(hmm, plume.twist.keywords(lm, { "a" }), { max_tokens = 0 }) end, "max_tokens")
  local nan_twist = plume.twist { max_tokens = MAXT, phi = phi_of, psi = function() return 0 / 0 end }
  T.raises(function() plume.smc(gen, { lm, nan_twist }, { quiet = true, seed = 1 }) end, "not a log value")
  T.raises(function() plume.bounds(gen, { lm }, { runs = 1 }) end, "runs must be")
end)
