-- test_hmm.lua -- plume.hmm from Lua: exact answers against brute-force enumeration, input forms,
-- Baum-Welch's monotone trace, and the error messages for bad input.
local T = dofile("tests/lua/check.lua")

local init = {0.5, 0.3, 0.2}
local trans = {{0.8, 0.15, 0.05}, {0.1, 0.7, 0.2}, {0.25, 0.25, 0.5}}
local emit = {{0.6, 0.2, 0.1, 0.1}, {0.1, 0.5, 0.3, 0.1}, {0.25, 0.25, 0.25, 0.25}}
local h = plume.hmm{init = init, trans = trans, emit = emit}

-- every state path of length #obs: joint probabilities p(x, y)
local function enumerate(obs)
  local K, n = 3, #obs
  local paths = {}
  local x = {}
  local function rec(t)
    if t > n then
      local p = init[x[1]] * emit[x[1]][obs[1]]
      for s = 2, n do p = p * trans[x[s - 1]][x[s]] * emit[x[s]][obs[s]] end
      paths[#paths + 1] = {p = p, x = {table.unpack(x)}}
      return
    end
    for k = 1, K do x[t] = k; rec(t + 1) end
  end
  rec(1)
  return paths
end

T.test("loglik_posterior_viterbi_equal_enumeration", function()
  local obs = {1, 2, 2, 4, 3, 1}
  local paths = enumerate(obs)
  local Z, best = 0, paths[1]
  local post = {}
  for t = 1, #obs do post[t] = {0, 0, 0} end
  for _, p in ipairs(paths) do
    Z = Z + p.p
    if p.p > best.p then best = p end
  end
  for _, p in ipairs(paths) do
    for t = 1, #obs do post[t][p.x[t]] = post[t][p.x[t]] + p.p / Z end
  end
  T.near(h:loglik(obs), math.log(Z), 1e-10, "loglik")
  local g, ll = h:posterior(obs)
  T.near(ll, math.log(Z), 1e-10, "posterior loglik")
  for t = 1, #obs do
    for k = 1, 3 do T.near(g[t][k], post[t][k], 1e-10, "posterior " .. t .. "," .. k) end
  end
  local f = h:filter(obs)
  for k = 1, 3 do T.near(f[#obs][k], post[#obs][k], 1e-10, "last filtered row") end
  local path, logp = h:viterbi(obs)
  for t = 1, #obs do T.eq(path[t], best.x[t], "viterbi state " .. t) end
  T.near(logp, math.log(best.p), 1e-10, "viterbi logp")
end)

T.test("predict_equals_enumeration", function()
  local obs = {1, 2, 2, 4, 3}
  local r = h:predict(obs)
  local function Z(seq)
    local s = 0
    for _, p in ipairs(enumerate(seq)) do s = s + p.p end
    return s
  end
  local prefix, zprev = {}, 1
  for t = 1, #obs do
    for m = 1, 4 do
      local seq = {table.unpack(prefix)}
      seq[#seq + 1] = m
      T.near(r.probs[t][m], Z(seq) / zprev, 1e-12, "p(y_" .. t .. " = " .. m .. ")")
    end
    prefix[#prefix + 1] = obs[t]
    zprev = Z(prefix)
  end
  T.near(r.logloss, -h:loglik(obs) / #obs, 1e-12, "logloss")
  T.ok(r.accuracy >= 0 and r.accuracy <= 1, "accuracy in [0, 1]")
  T.eq(#r.next.probs, 4, "next predictive has M entries")
end)

T.test("array_and_table_observations_agree", function()
  local obs = {1, 2, 2, 4, 3, 1, 1}
  T.near(h:loglik(plume.array(obs)), h:loglik(obs), 1e-14)
  local g = plume.hmm{init = {0.5, 0.5}, trans = {{0.9, 0.1}, {0.2, 0.8}},
                      emit = {plume.dist.normal(0, 1), plume.dist.normal(3, 2)}}
  local y = {0.1, 2.5, 3.3, -0.4}
  T.near(g:loglik(plume.array(y)), g:loglik(y), 1e-14)
end)

T.test("several_sequences_are_a_list", function()
  local a, b = {1, 2, 3}, {4, 4, 1, 2}
  T.near(h:loglik{a, b}, h:loglik(a) + h:loglik(b), 1e-12)
  local paths = h:viterbi{a, b}
  T.eq(#paths, 2)
  T.eq(#paths[2], 4)
end)

T.test("sample_is_reproducible_and_in_range", function()
  local s1, o1 = h:sample(200, 7)
  local s2, o2 = h:sample(200, 7)
  for t = 1, 200 do
    T.eq(s1[t], s2[t])
    T.eq(o1[t], o2[t])
    T.ok(o1[t] >= 1 and o1[t] <= 4 and math.type(o1[t]) == "integer", "symbol range")
  end
end)

T.test("fields_and_tostring", function()
  T.eq(h.K, 3)
  T.eq(h.M, 4)
  T.eq(h.family, "categorical")
  T.near(h.trans[2][3], 0.2, 0)
  T.near(h.emit[1][1], 0.6, 0)
  T.near(h.init[3], 0.2, 0)
  T.ok(tostring(h):find("3 states, categorical emissions over 4 symbols", 1, true), tostring(h))
  local g = plume.hmm{trans = {{1}}, emit = {plume.dist.poisson(3)}}
  T.eq(g.init[1], 1.0)
  T.eq(g.emit[1].name, "poisson")
end)

-- Baum-Welch: the trace never decreases, for each family, from a poor start
T.test("fit_trace_never_decreases", function()
  local truths = {
    h,
    plume.hmm{init = {0.5, 0.5}, trans = {{0.9, 0.1}, {0.2, 0.8}}, emit = {plume.dist.normal(0, 1), plume.dist.normal(2, 1)}},
    plume.hmm{init = {0.5, 0.5}, trans = {{0.9, 0.1}, {0.2, 0.8}}, emit = {plume.dist.poisson(1), plume.dist.poisson(5)}},
    plume.hmm{init = {0.5, 0.5}, trans = {{0.9, 0.1}, {0.2, 0.8}}, emit = {plume.dist.bernoulli(0.2), plume.dist.bernoulli(0.7)}},
  }
  for i, truth in ipairs(truths) do
    local _, y1 = truth:sample(1000, 10 + i)
    local _, y2 = truth:sample(500, 20 + i)
    local fitted, trace = truth:fit({y1, y2}, {iters = 40, tol = 0, restarts = 2, seed = 3})
    T.ok(#trace >= 2, "trace length")
    for j = 2, #trace do T.ok(trace[j] >= trace[j - 1], "family " .. i .. " step " .. j) end
    T.near(fitted:loglik{y1, y2}, trace[#trace], 1e-8 * math.abs(trace[#trace]), "last trace entry is the fit's loglik")
  end
end)

-- dishonest-casino-sized recovery: fair die vs a die loaded on six; T = 20,000. With ~6,000 loaded rolls
-- the standard error of p(six | loaded) is ~0.007; tolerance 0.05.
T.test("fit_recovers_casino", function()
  local truth = plume.hmm{init = {1, 0}, trans = {{0.95, 0.05}, {0.1, 0.9}},
                          emit = {{1/6, 1/6, 1/6, 1/6, 1/6, 1/6}, {0.1, 0.1, 0.1, 0.1, 0.1, 0.5}}}
  local _, rolls = truth:sample(20000, 5)
  local start = plume.hmm{init = {0.5, 0.5}, trans = {{0.8, 0.2}, {0.2, 0.8}},
                          emit = {{0.2, 0.16, 0.16, 0.16, 0.16, 0.16}, {0.12, 0.12, 0.12, 0.12, 0.12, 0.4}}}
  local fit = start:fit(rolls, {iters = 500, tol = 1e-9})
  T.near(fit.emit[2][6], 0.5, 0.05, "p(six | loaded)")
  T.near(fit.trans[1][2], 0.05, 0.02, "fair -> loaded")
end)

T.test("long_peaked_sequence_stays_finite", function()
  local g = plume.hmm{init = {0.5, 0.5}, trans = {{0.99, 0.01}, {0.01, 0.99}},
                      emit = {plume.dist.normal(0, 0.001), plume.dist.normal(1, 0.001)}}
  local _, y = g:sample(100000, 9)
  local ll = g:loglik(y)
  T.ok(ll == ll and ll > -math.huge and ll < math.huge, "finite loglik " .. tostring(ll))
  local _, logp = g:viterbi(y)
  T.ok(logp == logp and logp > -math.huge, "finite viterbi")
end)

T.test("stationary_and_entropy_rate", function()
  local g = plume.hmm{init = {0.5, 0.5}, trans = {{0.9, 0.1}, {0.2, 0.8}}, emit = {{1, 0}, {0, 1}}}
  local pi = g:stationary()
  T.near(pi[1], 2 / 3, 1e-14)
  local H = -(2 / 3) * (0.9 * math.log(0.9) + 0.1 * math.log(0.1)) - (1 / 3) * (0.2 * math.log(0.2) + 0.8 * math.log(0.8))
  T.near(g:entropy_rate(), H, 1e-14)
  local red = plume.hmm{trans = {{1, 0}, {0, 1}}, emit = {{1, 0}, {0, 1}}}
  T.raises(function() red:stationary() end, "hmm:stationary: the chain has no unique stationary distribution")
end)

T.test("bad_input_names_argument_and_entry", function()
  local E = {{0.5, 0.5}, {0.5, 0.5}}
  T.raises(function() plume.hmm{init = {0.5, 0.5}, trans = {{0.9, 0.1}, {0.2, 0.7}}, emit = E} end,
           "hmm: trans row 2 must sum to 1 (sum is 0.9)")
  T.raises(function() plume.hmm{init = {0.5, 0.5}, trans = {{1.1, -0.1}, {0.2, 0.8}}, emit = E} end,
           "hmm: trans row 1 entry 2 is negative")
  T.raises(function() plume.hmm{init = {0.6, 0.5}, trans = {{0.9, 0.1}, {0.2, 0.8}}, emit = E} end,
           "hmm: init must sum to 1")
  T.raises(function() plume.hmm{init = {0.5, 0.5}, trans = {{0.9, 0.1}, {0.2, 0.8}}, emit = {{0.5, 0.5}, {0.5, 0.6}}} end,
           "hmm: emit row 2 must sum to 1")
  T.raises(function() plume.hmm{init = {1}, trans = {{0.9, 0.1}, {0.2, 0.8}}, emit = E} end,
           "hmm: init has 1 entries, but trans is 2 x 2")
  T.raises(function() plume.hmm{init = {0.5, 0.5}, trans = {{0.9, 0.1}, {0.2, 0.8}}, emit = {{1}}} end,
           "hmm: emit has 1 rows, but there are 2 states")
  T.raises(function() plume.hmm{init = {0.5, 0.5}, trans = {{0.9, 0.1}, {0.2}}, emit = E} end,
           "hmm: trans row 2 has 1 entries, expected 2")
  T.raises(function() plume.hmm{init = {0.5, 0.5}, trans = {{0.9, 0.1}, {0.2, 0.8}},
                                emit = {plume.dist.normal(0, 1), plume.dist.poisson(2)}} end,
           "hmm: emit entry 2 is a poisson distribution, but entry 1 is a normal")
  T.raises(function() plume.hmm{init = {0.5, 0.5}, trans = {{0.9, 0.1}, {0.2, 0.8}},
                                emit = {plume.dist.gamma(1, 1), plume.dist.gamma(2, 1)}} end,
           "per-state emissions must be")
  T.raises(function() h:loglik{1, 2, 9, 1} end, "hmm:loglik: obs[3] is 9, but there are 4 symbols")
  T.raises(function() h:loglik{1, 2.5} end, "hmm:loglik: obs[2] is 2.5")
  T.raises(function() h:posterior{} end, "hmm:posterior: obs is empty")
  T.raises(function() h:fit({{1, 2}, {}}) end, "hmm:fit: data[2] is empty")
  T.raises(function() h:fit({{1, 2}, {3, 0}}) end, "hmm:fit: data[2][2] is 0, but there are 4 symbols")
  T.raises(function() h:fit({1, 2}, {iters = -1}) end, "hmm:fit: option 'iters'")
  T.raises(function() h:sample(0) end, "hmm:sample: T must be in 1..1e8 (got 0)")
  local p = plume.hmm{trans = {{1}}, emit = {plume.dist.poisson(2)}}
  T.raises(function() p:loglik{1, -2} end, "hmm:loglik: obs[2] is -2, but poisson observations are counts")
  local mv = plume.hmm{trans = {{1}}, emit = {plume.dist.mvnormal({0, 0}, {{1, 0}, {0, 1}})}}
  T.raises(function() mv:loglik{{1, 2}, {3}} end, "hmm:loglik: obs[2] has 1 entries, but the emissions have dimension 2")
  -- a zero-probability sequence: loglik is -inf, the others explain
  local z = plume.hmm{init = {1, 0}, trans = {{1, 0}, {0, 1}}, emit = {{1, 0}, {0, 1}}}
  T.eq(z:loglik{1, 2}, -math.huge)
  T.raises(function() z:posterior{1, 2} end,
           "hmm:posterior: observation 2 (symbol 2) has probability 0 under the model given the observations before it")
end)

-- issue 8: options and constructor fields are checked (a misspelt seed used to be ignored), sizes are
-- capped before anything is allocated, and an impossible observation is named by position and value in
-- every method, with the caller's file:line.
T.test("misspelt options and fields are errors that list the valid ones", function()
  local h = plume.hmm{trans = {{0.9, 0.1}, {0.2, 0.8}}, emit = {{0.5, 0.5}, {0.1, 0.9}}}
  local err = T.raises(function() h:fit({1, 2, 1, 1}, {sed = 1}) end,
                       "hmm:fit: unknown option 'sed' (options: iters, tol, restarts, seed, threads)")
  T.ok(err:find("test_hmm.lua:%d+:"), "names the caller's line: " .. err)
  T.raises(function() plume.hmm{trans = {{1}}, emti = {{1}}} end,
           "hmm: unknown option 'emti' (options: trans, init, emit)")
  T.raises(function() h:sample(1e12) end, "hmm:sample: T must be in 1..1e8 (got 1000000000000)")
  T.raises(function() h:loglik{1, 2, 1e15} end, "hmm:loglik: obs[3] is 1e+15, but there are 2 symbols")
end)

T.test("an impossible observation is named by position and value in every method", function()
  local h = plume.hmm{trans = {{0.9, 0.1}, {0.1, 0.9}}, emit = {{0.5, 0.5, 0}, {0.5, 0.5, 0}}}
  local y = {1, 2, 3, 1}
  T.eq(h:loglik(y), -math.huge)
  for _, m in ipairs{"posterior", "viterbi", "filter", "predict"} do
    local err = T.raises(function() h[m](h, y) end,
                         "hmm:" .. m .. ": observation 3 (symbol 3) has probability 0 under the model")
    T.ok(err:find("test_hmm.lua:%d+:"), m .. " names the caller's line: " .. err)
  end
  T.raises(function() h:fit({{1, 2}, y}) end, "hmm:fit: sequence 2: observation 3 (symbol 3) has probability 0")
  -- the chain starts in and keeps state 2, whose poisson(0) emits only 0
  local p = plume.hmm{trans = {{1, 0}, {0, 1}}, init = {0, 1}, emit = {plume.dist.poisson(1), plume.dist.poisson(0)}}
  T.raises(function() p:viterbi{0, 2, 7} end, "hmm:viterbi: observation 2 (value 2) has probability 0")
end)
