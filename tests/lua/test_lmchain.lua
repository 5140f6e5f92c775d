-- test_lmchain.lua -- lm:markov_chain: the chain on contexts against a dense brute-force construction in Lua
-- (states, rows, stationary distribution, mixing time), the spectral gap against the characteristic polynomial
-- of a 3-state chain, a bigram estimated by maximum likelihood from a text read cyclically (stationary
-- distribution = word frequencies), the temperature -> 0 and -> infinity limits, the tiny GGUF, and errors.
local T = dofile("tests/lua/check.lua")

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p " .. tmp)

local corpus = [[
the cat sat on the mat
the dog sat on the log
a cat saw a dog
the dog saw the cat on the mat
]]
local kn = plume.lm.ngram.train{ text = corpus, order = 3 }

local function key(t) return table.concat(t, ",") end

-- The chain built in plain Lua: breadth-first from the start context over lm:next_logprobs rows, tempered
-- as the issue defines it (p^(1/T) renormalised), dense rows.
local function brute_chain(lm, K, temp, start)
  local states, index, P = { start }, { [key(start)] = 1 }, {}
  local i = 1
  while i <= #states do
    local s = states[i]
    local row = lm:next_logprobs(s)
    local m = -math.huge
    for v = 1, #row do if row[v] > m then m = row[v] end end
    local w, z = {}, 0
    for v = 1, #row do
      w[v] = row[v] > -math.huge and math.exp((row[v] - m) / temp) or 0
      z = z + w[v]
    end
    P[i] = {}
    for v = 1, #row do
      if w[v] > 0 then
        local nxt = {}
        for j = math.max(1, #s + 2 - K), #s do nxt[#nxt + 1] = s[j] end
        nxt[#nxt + 1] = v - 1
        local k = key(nxt)
        if not index[k] then states[#states + 1] = nxt; index[k] = #states end
        P[i][index[k]] = (P[i][index[k]] or 0) + w[v] / z
      end
    end
    i = i + 1
  end
  return states, index, P
end

local function stepP(P, n, x)
  local y = {}
  for j = 1, n do y[j] = 0 end
  for i = 1, n do
    if x[i] ~= 0 then for j, p in pairs(P[i]) do y[j] = y[j] + x[i] * p end end
  end
  return y
end

-- stationary distribution by power iteration of the lazy chain, to an L1 change below 1e-15
local function brute_stationary(P, n)
  local x = {}
  for i = 1, n do x[i] = 1 / n end
  for _ = 1, 200000 do
    local y, d = stepP(P, n, x), 0
    for i = 1, n do y[i] = 0.5 * (x[i] + y[i]); d = d + math.abs(y[i] - x[i]) end
    x = y
    if d < 1e-15 then break end
  end
  return x
end

local function brute_mixing(P, n, pi, eps)
  local worst = 0
  for s = 1, n do
    local x = {}
    for i = 1, n do x[i] = i == s and 1 or 0 end
    local t = 0
    while true do
      local tv = 0
      for i = 1, n do tv = tv + math.abs(x[i] - pi[i]) end
      if tv / 2 <= eps then break end
      x, t = stepP(P, n, x), t + 1
    end
    if t > worst then worst = t end
  end
  return worst
end

T.test("chain_equals_dense_brute_force", function()
  local start = kn:tokenize("the")
  for _, case in ipairs{ { K = 2, temp = 0.7 }, { K = 1, temp = 1 }, { K = 2, temp = 2.5 } } do
    local chain = kn:markov_chain{ context = case.K, temperature = case.temp, start = start }
    local states, index, P = brute_chain(kn, case.K, case.temp, start)
    local n = #states
    T.eq(chain.n_states, n, "states")
    local cs = chain:states()
    local perm = {}                          -- C state i -> Lua state perm[i]
    for i = 1, n do perm[i] = assert(index[key(cs[i])], "state " .. key(cs[i]) .. " missing in Lua") end
    T.eq(key(cs[1]), key(start), "state 1 is the start context")
    for i = 1, n do
      local succ, prob = chain:transitions(i)
      local total = 0
      for j = 1, #succ do
        T.near(prob[j], P[perm[i]][perm[succ[j]]], 1e-12, "P[" .. i .. "][" .. succ[j] .. "]")
        total = total + prob[j]
      end
      T.near(total, 1, 1e-12, "row sum")
    end
    local pi, bpi = chain:stationary(), brute_stationary(P, n)
    for i = 1, n do T.near(pi[i], bpi[perm[i]], 1e-10, "pi " .. i) end
    for _, eps in ipairs{ 0.25, 0.01 } do
      T.eq(chain:mixing_time(eps), brute_mixing(P, n, bpi, eps), "mixing time eps " .. eps)
    end
    T.eq(chain:mixing_time(0.01, { threads = 1 }), chain:mixing_time(0.01, { threads = 2 }), "threads")
    T.ok(chain:mixing_time(0.01, { from = "start" }) <= chain:mixing_time(0.01), "start <= worst")
  end
end)

-- A bigram ARPA file holding the maximum-likelihood estimate from a text read cyclically: p(v | u) =
-- c(u v) / c(u) over the n pairs (w_i, w_{i+1 mod n}); backoff weights -99 (0), so unseen pairs get 0.
local function cyclic_bigram(words, path)
  local n, cu, cuv, order = #words, {}, {}, {}
  for i = 1, n do
    local u, v = words[i], words[i % n + 1]
    if not cu[u] then cu[u] = 0; order[#order + 1] = u end
    cu[u] = cu[u] + 1
    cuv[u .. " " .. v] = (cuv[u .. " " .. v] or 0) + 1
  end
  local bigrams = {}
  for _, u in ipairs(order) do
    for _, v in ipairs(order) do
      local c = cuv[u .. " " .. v]
      if c then bigrams[#bigrams + 1] = string.format("%.17g\t%s %s", math.log(c / cu[u], 10), u, v) end
    end
  end
  local f = assert(io.open(path, "w"))
  f:write("\\data\\\nngram 1=", #order, "\nngram 2=", #bigrams, "\n\n\\1-grams:\n")
  for _, u in ipairs(order) do f:write(string.format("%.17g\t%s\t-99\n", math.log(cu[u] / n, 10), u)) end
  f:write("\n\\2-grams:\n", table.concat(bigrams, "\n"), "\n\n\\end\\\n")
  f:close()
  return cu, n, order
end

local words = {}
for w in ([[the cat sat on the mat and the dog sat on the log and a cat saw a dog on the mat]]):gmatch("%S+") do
  words[#words + 1] = w
end
local bigram_path = tmp .. "/cyclic.arpa"
local counts, nwords, vocab = cyclic_bigram(words, bigram_path)
local bigram = plume.lm.ngram{ arpa = bigram_path, cache = false }

T.test("cyclic_bigram_stationary_equals_word_frequencies", function()
  local chain = bigram:markov_chain{ context = 1, start = "the" }
  T.eq(chain.n_states, #vocab, "one state per word (<s>, </s> have probability 0)")
  T.eq(chain.closed_classes, 1, "irreducible")
  local pi = chain:stationary()
  for i = 1, chain.n_states do
    local _, text = chain:state(i)
    local w = text:gsub("^ ", "")
    T.near(pi[i], counts[w] / nwords, 1e-13, "pi(" .. w .. ")")
  end
  -- negative control: the KN model of the same text is smoothed, and its chain is not at the frequencies
  local kn2 = plume.lm.ngram.train{ text = table.concat(words, " "), order = 2 }
  local c2 = kn2:markov_chain{ context = 1, start = "the" }
  local p2, far = c2:stationary(), 0
  for i = 1, c2.n_states do
    local _, text = c2:state(i)
    local w = text:gsub("^ ", "")
    far = math.max(far, math.abs(p2[i] - (counts[w] or 0) / nwords))
  end
  T.ok(far > 1e-3, "smoothed model's chain differs from the frequencies (max diff " .. far .. ")")
  -- and a long sample visits the words at their frequencies (Monte Carlo: 4 binomial sd)
  local toks = chain:sample(20000, 3)
  local seen = {}
  for _, t in ipairs(toks) do seen[t] = (seen[t] or 0) + 1 end
  local the = bigram:tokenize("the")[1]
  local p = counts.the / nwords
  T.near(seen[the] / 20000, p, 4 * math.sqrt(p * (1 - p) / 20000) * 3, "sampled frequency of 'the' (autocorrelated: 3x)")
end)

-- A 3-state chain: words a, b, c with a hand-written bigram table, so that the eigenvalues other than 1 are
-- the roots of l^2 - (tr P - 1) l + det P = 0.
T.test("spectral_gap_of_three_states_matches_characteristic_polynomial", function()
  local tbl = { a = { a = 0.5, b = 0.3, c = 0.2 }, b = { a = 0.1, b = 0.6, c = 0.3 }, c = { a = 0.4, b = 0.1, c = 0.5 } }
  local path = tmp .. "/abc.arpa"
  local f = assert(io.open(path, "w"))
  f:write("\\data\\\nngram 1=3\nngram 2=9\n\n\\1-grams:\n")
  for _, u in ipairs{ "a", "b", "c" } do f:write(string.format("%.17g\t%s\t-99\n", math.log(1 / 3, 10), u)) end
  f:write("\n\\2-grams:\n")
  for _, u in ipairs{ "a", "b", "c" } do
    for _, v in ipairs{ "a", "b", "c" } do f:write(string.format("%.17g\t%s %s\n", math.log(tbl[u][v], 10), u, v)) end
  end
  f:write("\n\\end\\\n")
  f:close()
  local lm = plume.lm.ngram{ arpa = path, cache = false }
  local chain = lm:markov_chain{ context = 1, start = "a" }
  T.eq(chain.n_states, 3, "states")
  local M, names = {}, {}
  for i = 1, 3 do names[i] = (select(2, chain:state(i))):gsub("^ ", "") end
  for i = 1, 3 do M[i] = {}; for j = 1, 3 do M[i][j] = tbl[names[i]][names[j]] end end
  local tr = M[1][1] + M[2][2] + M[3][3]
  local det = M[1][1] * (M[2][2] * M[3][3] - M[2][3] * M[3][2]) - M[1][2] * (M[2][1] * M[3][3] - M[2][3] * M[3][1])
              + M[1][3] * (M[2][1] * M[3][2] - M[2][2] * M[3][1])
  local b, c = -(tr - 1), det
  local disc = b * b - 4 * c
  local l2 = disc >= 0 and math.max(math.abs((-b + math.sqrt(disc)) / 2), math.abs((-b - math.sqrt(disc)) / 2))
             or math.sqrt(c)   -- complex pair: modulus sqrt(det)
  local gap, lambda2 = chain:spectral_gap()
  T.near(lambda2, l2, 1e-12, "|lambda_2|")
  T.near(gap, 1 - l2, 1e-12, "gap")
  -- the mixing time obeys the spectral lower bound t_mix(eps) >= (1/gap - 1) log(1 / (2 eps))
  local eps = 1e-3
  T.ok(chain:mixing_time(eps) >= (1 / gap - 1) * math.log(1 / (2 * eps)), "spectral lower bound")
end)

T.test("temperature_limits", function()
  local start = kn:tokenize("the cat")
  -- T -> infinity: every token of positive probability equally likely
  local hot = kn:markov_chain{ context = 2, temperature = math.huge, start = start }
  local near_hot = kn:markov_chain{ context = 2, temperature = 1e6, start = start }
  T.eq(hot.n_states, near_hot.n_states, "same support")
  for i = 1, hot.n_states do
    local succ, prob = hot:transitions(i)
    local s2, p2 = near_hot:transitions(i)
    for j = 1, #succ do
      T.near(prob[j], 1 / #succ, 1e-15, "uniform row")
      T.eq(s2[j], succ[j], "same successors")
      T.near(p2[j], prob[j], 1e-4, "T = 1e6 is near the limit")
    end
  end
  -- the bigram chain at T = inf: uniform over its observed successors, whatever their counts
  local bh = bigram:markov_chain{ context = 1, temperature = math.huge, start = "the" }
  for i = 1, bh.n_states do
    local succ, prob = bh:transitions(i)
    for j = 1, #succ do T.near(prob[j], 1 / #succ, 1e-15, "uniform") end
  end
  -- T -> 0: the greedy chain; each row puts its mass on the argmax (ties share), and a small T is close
  local cold = kn:markov_chain{ context = 2, temperature = 0, start = start }
  local near_cold = kn:markov_chain{ context = 2, temperature = 1e-3, start = start }
  for i = 1, cold.n_states do
    local succ, prob = cold:transitions(i)
    local row = kn:next_logprobs((cold:states())[i])
    local m = -math.huge
    for v = 1, #row do m = math.max(m, row[v]) end
    for j = 1, #succ do
      local st = cold:states()[succ[j]]
      T.eq(row[st[#st] + 1], m, "greedy successor is an argmax")
      T.near(prob[j], 1 / #succ, 1e-15, "ties share")
    end
  end
  T.ok(near_cold.n_states >= cold.n_states, "T > 0 reaches at least the greedy states")
  -- stationary mass of the greedy chain's cycle is matched by T = 1e-3 within 1e-3
  if cold.closed_classes == 1 and near_cold.closed_classes == 1 then
    local pc, pn = cold:stationary(), near_cold:stationary()
    local idx = {}
    for i, s in ipairs(near_cold:states()) do idx[key(s)] = i end
    for i, s in ipairs(cold:states()) do T.near(pn[idx[key(s)]], pc[i], 1e-3, "pi near T = 0") end
  end
  -- hotter chains mix faster here: gap grows with T on this model
  local g1 = kn:markov_chain{ context = 1, temperature = 0.5, start = "the" }:spectral_gap()
  local g2 = kn:markov_chain{ context = 1, temperature = 1, start = "the" }:spectral_gap()
  local g3 = kn:markov_chain{ context = 1, temperature = math.huge, start = "the" }:spectral_gap()
  T.ok(g1 < g2 and g2 < g3, string.format("gaps %.4f < %.4f < %.4f", g1, g2, g3))
end)

T.test("periodic_and_reducible_chains_are_reported", function()
  -- a -> b -> a deterministically: period 2, gap 0, never mixes
  local path = tmp .. "/ab.arpa"
  local f = assert(io.open(path, "w"))
  f:write("\\data\\\nngram 1=2\nngram 2=2\n\n\\1-grams:\n-0.30103\ta\t-99\n-0.30103\tb\t-99\n\n\\2-grams:\n0\ta b\n0\tb a\n\n\\end\\\n")
  f:close()
  local lm = plume.lm.ngram{ arpa = path, cache = false }
  local c = lm:markov_chain{ context = 1, start = "a" }
  T.eq(c.period, 2, "period")
  T.eq((c:spectral_gap()), 0, "gap of a periodic chain")
  local pi = c:stationary()
  T.near(pi[1], 0.5, 1e-15, "pi still unique")
  T.raises(function() c:mixing_time(0.1) end, "lmchain:mixing_time: the chain never mixes: its closed class is periodic (period 2)")
  -- greedy chains from two different contexts: several closed classes only if the model has two cycles;
  -- the start of text with context 3 reaches every greedy cycle of the KN model from it, one class
  local g = kn:markov_chain{ context = 1, temperature = 0, start = "the" }
  T.ok(g.closed_classes >= 1, "classes counted")
end)

T.test("tiny_gguf_chain", function()
  local ok, why = plume.lm.available()
  if not ok then print("SKIP tiny_gguf_chain: " .. why) return end
  local model = tmp .. "/tiny.gguf"
  plume.lm.write_tiny_gguf(model, { n_embd = 16, n_layer = 1, n_head = 2, ctx = 64, seed = 3 })
  local ll = plume.lm.llama{ model = model, ctx = 256, seqs = 4, threads = 1 }
  local chain = ll:markov_chain{ context = 1, temperature = 0.5, start = "a" }
  T.ok(chain.n_states <= ll.n_vocab, "at most V states with context 1")
  local succ, prob = chain:transitions(1)
  local row, m = ll:next_logprobs("a"), -math.huge
  for v = 1, #row do m = math.max(m, row[v]) end
  local z = 0
  for v = 1, #row do z = z + math.exp((row[v] - m) / 0.5) end
  for j = 1, #succ do
    local st = chain:states()[succ[j]]
    T.near(prob[j], math.exp((row[st[1] + 1] - m) / 0.5) / z, 1e-6, "tempered row of the GGUF")
  end
  local pi = chain:stationary()
  local s = 0
  for i = 1, #pi do s = s + pi[i] end
  T.near(s, 1, 1e-12, "pi sums to 1")
  local gap = chain:spectral_gap()
  T.ok(gap > 0 and gap <= 1, "gap in (0, 1]")
  local toks, text = chain:sample(10, 1)
  T.eq(#toks, 10, "sample length")
  T.eq(type(text), "string", "text")
  local again = chain:sample(10, 1)
  T.eq(key(again), key(toks), "same seed, same draws")
end)

T.test("errors", function()
  T.raises(function() kn:markov_chain{ context = 3, max_states = 50 } end, "more than 50 reachable states (the limit max_states = 50")
  T.raises(function() kn:markov_chain{ temperature = 1 } end, "lm:markov_chain: option 'context' (the number of tokens of state) is required")
  T.raises(function() kn:markov_chain{ context = 0 } end, "option 'context' must be in 1..64 (got 0)")
  T.raises(function() kn:markov_chain{ context = 1, temperature = -1 } end, "option 'temperature' must be >= 0 (got -1)")
  T.raises(function() kn:markov_chain{ context = 1, temperature = 0 / 0 } end, "option 'temperature' must be >= 0")
  T.raises(function() kn:markov_chain{ context = 1, tempreature = 1 } end, "unknown option 'tempreature'")
  T.raises(function() kn:markov_chain{ context = 1, start = { 1e6 } } end, "start[1] is 1000000, outside the vocabulary")
  local c = kn:markov_chain{ context = 1, start = "the" }
  T.raises(function() c:mixing_time(0) end, "lmchain:mixing_time: eps must be in (0, 1) (got 0)")
  T.raises(function() c:mixing_time(1e-12, { max_steps = 2 }) end, "not mixed after max_steps = 2 steps")
  T.raises(function() c:mixing_time(0.1, { from = "best" }) end, "option 'from' must be \"worst\", \"start\" or a state number")
  T.raises(function() c:mixing_time(0.1, { from = 1e6 }) end, "from must be a state 1..")
  T.raises(function() c:state(0) end, "lmchain:state: i must be a state 1..")
  T.raises(function() c.stationary() end, "self must be a plume.lmchain")
  -- several closed classes: two absorbing words
  local path = tmp .. "/absorb.arpa"
  local f = assert(io.open(path, "w"))
  f:write("\\data\\\nngram 1=3\nngram 2=5\n\n\\1-grams:\n-0.477\ta\t-99\n-0.477\tb\t-99\n-0.477\tc\t-99\n\n\\2-grams:\n",
          "-0.30103\ta b\n-0.30103\ta c\n0\tb b\n0\tc c\n-99\tb a\n\n\\end\\\n")
  f:close()
  local r = plume.lm.ngram{ arpa = path, cache = false }:markov_chain{ context = 1, start = "a" }
  T.eq(r.closed_classes, 2, "two absorbing states")
  T.raises(function() r:stationary() end, "lmchain:stationary: the stationary distribution is not unique: the chain has 2 closed classes")
  T.eq((r:spectral_gap()), 0, "gap 0 with two closed classes")
  T.raises(function() r:mixing_time(0.1) end, "never mixes: it has 2 closed classes")
end)

os.execute("rm -rf " .. tmp)
