-- test_twistnet.lua -- network twists (plume.twist.net) trained by contrastive twist learning, against exact
-- references by enumeration on the 7-token bigram model of test_twisted.lua (texts of at most 4 words after "b",
-- target: the text contains "d"): log Z-hat stays unbiased before and after training, training shrinks its spread
-- by a clear factor, a saved net loads with bit-identical psi, corrupted or wrong-version files are refused; on the
-- tiny GGUF (llama.cpp) a net reading the LM's last hidden state trains and stays unbiased.
local T = dofile("tests/lua/check.lua")

local lm = plume.lm.ngram.train { text = "a b c a b a c b a a b c c a d a b d", order = 2 }
local A, D = lm:tokenize("a")[1], lm:tokenize("d")[1]
local MAXT, V = 4, lm.n_vocab
local P = lm:tokenize("b")
local dfa = plume.twist.keywords(lm, { "d" })

-- exact Z = p(the text after "b" contains "d"), by enumerating every text of at most MAXT tokens
local function exact_z(model, prompt, automaton, maxt)
  local z, nv = 0, model.n_vocab
  local function rec(g, lp)
    local c = { table.unpack(prompt) }
    for _, v in ipairs(g) do c[#c + 1] = v end
    local row = model:next_logprobs(c)
    for v = 0, nv - 1 do
      if row[v + 1] > -math.huge then
        local g2 = { table.unpack(g) }
        g2[#g2 + 1] = v
        if model:is_eos(v) then z = z + (automaton:accepts(g) and math.exp(lp + row[v + 1]) or 0)
        elseif #g2 == maxt then z = z + (automaton:accepts(g2) and math.exp(lp + row[v + 1]) or 0)
        else rec(g2, lp + row[v + 1]) end
      end
    end
  end
  rec({}, 0)
  return z
end
local Zk = exact_z(lm, P, dfa, MAXT)

local gen = plume.model(function(m, lm, prompt, maxt)
  local ctx = lm:context(prompt)
  for t = 1, maxt do
    local tok = m:sample("tok" .. t, ctx:next_token())
    if lm:is_eos(tok) then break end
  end
  return ctx:text()
end)

-- mean, standard error and standard deviation of Z-hat over n seeds
local function zhat(model, args, tw, n, particles, seed0)
  local zs, m, v = {}, 0, 0
  for i = 1, n do
    zs[i] = math.exp(plume.smc(gen, args, { particles = particles, seed = seed0 + i, twist = tw, quiet = true }).logz)
    T.ok(zs[i] == zs[i] and zs[i] < math.huge, "Z-hat is a finite number")
    m = m + zs[i] / n
  end
  for i = 1, n do v = v + (zs[i] - m) ^ 2 / (n - 1) end
  return m, math.sqrt(v / n), math.sqrt(v)
end

local net = plume.twist.net { automaton = dfa, max_tokens = MAXT, lm = lm, hidden = 16, seed = 3 }

T.test("network twist (CTL): Z-hat unbiased before and after training, and training shrinks its spread", function()
  local m0, se0, sd0 = zhat(lm, { lm, "b", MAXT }, net, 200, 8, 6000)
  local trace, heldout = net:learn(lm, { prompt = "b", particles = 64, iters = 80, seed = 1, quiet = true })
  T.eq(#trace, 80, "one log Z per iteration")
  T.eq(#heldout, 10, "one held-out log Z per evaluation (every 8 iterations)")
  for i = 1, 80 do T.ok(trace[i] > -math.huge and trace[i] < 0, "iteration " .. i .. " log Z " .. trace[i]) end
  local m1, se1, sd1 = zhat(lm, { lm, "b", MAXT }, net, 200, 8, 6000)
  -- unbiased on the natural scale: the mean of 200 Z-hats within 3.5 of their standard errors of Z
  T.ok(math.abs(m0 - Zk) < 3.5 * se0, string.format("untrained: mean %.5f, Z %.5f, SE %.5f", m0, Zk, se0))
  T.ok(math.abs(m1 - Zk) < 3.5 * se1, string.format("trained: mean %.5f, Z %.5f, SE %.5f", m1, Zk, se1))
  print(string.format("  Z %.5f; sd of Z-hat (8 particles): untrained %.5f, trained %.5f (factor %.1f); held-out log Z %.4f -> %.4f (log Z %.4f)",
    Zk, sd0, sd1, sd0 / sd1, heldout[1], heldout[#heldout], math.log(Zk)))
  T.ok(sd1 < sd0 / 3, string.format("training did not cut the spread of Z-hat by 3: %.4f -> %.4f", sd0, sd1))
end)

T.test("network twist: ctx:twist and the twist option agree; a net for another target misses Z (negative control)", function()
  local twm = plume.model(function(m, lm, tw)
    local ctx = lm:context("b")
    ctx:twist(tw)
    for t = 1, MAXT do
      local tok = m:sample("tok" .. t, ctx:next_token())
      if lm:is_eos(tok) then break end
    end
    return ctx:text()
  end)
  local a = plume.smc(twm, { lm, net }, { particles = 16, seed = 9, quiet = true })
  local b = plume.smc(gen, { lm, "b", MAXT }, { particles = 16, seed = 9, twist = net, quiet = true })
  T.eq(a.logz, b.logz, "the same log Z")
  -- every particle of the twisted run ends with a "d" (phi = 0 elsewhere)
  for i = 1, 16 do T.ok(a.values[i]:find("d", 1, true), "particle " .. i .. ": " .. a.values[i]) end
  -- the same unbiasedness check fed a net whose phi is another constraint ("contains a") must fail
  local other = plume.twist.net { automaton = plume.twist.keywords(lm, { "a" }), max_tokens = MAXT, lm = lm, hidden = 16, seed = 3 }
  local m, se = zhat(lm, { lm, "b", MAXT }, other, 200, 8, 6000)
  T.ok(math.abs(m - Zk) > 3.5 * se, string.format("another target: mean %.5f, Z %.5f, SE %.5f", m, Zk, se))
end)

T.test("network twist: save and load give identical psi; corrupted and wrong-version files are refused", function()
  local path = os.tmpname()
  net:save(path)
  local back = plume.twist.load(path)
  T.eq(back.kind, "net", "loads as a network twist")
  T.eq(tostring(back), tostring(net), "same shape")
  for _, prefix in ipairs { {}, { D }, { A, A }, { A, D, A } } do
    local r1, r2 = net:logpsi(prefix), back:logpsi(prefix)
    for v = 1, V do T.eq(r1[v], r2[v], "loaded row entry " .. v) end
  end
  local f = io.open(path, "rb"); local text = f:read("a"); f:close()
  -- one digit of one weight changed: the checksum catches it
  local pos = text:find("%d%.%d", text:find("\n[^\n]*\n[^\n]*\n[^\n]*\n[^\n]*\n") or 1)
  local d = text:sub(pos, pos)
  local bad = text:sub(1, pos - 1) .. (d == "1" and "2" or "1") .. text:sub(pos + 1)
  f = io.open(path, "wb"); f:write(bad); f:close()
  T.raises(function() plume.twist.load(path) end, "fails its checksum: the file is corrupted")
  f = io.open(path, "wb"); f:write(text:sub(1, #text // 2)); f:close()
  T.raises(function() plume.twist.load(path) end, "has no checksum line (truncated?)")
  f = io.open(path, "wb"); f:write((text:gsub("^plume%-twistnet 1", "plume-twistnet 99"))); f:close()
  T.raises(function() plume.twist.load(path) end, "is version 99; this plume reads version 1")
  f = io.open(path, "wb"); f:write(text); f:close()
  T.eq(plume.twist.load(path):logpsi({ D })[1], net:logpsi({ D })[1], "the original file loads again")
  os.remove(path)
end)

T.test("network twist: same seeds, same net and same training", function()
  local function trained()
    local tw = plume.twist.net { automaton = dfa, max_tokens = MAXT, lm = lm, hidden = 8, seed = 21 }
    return tw, tw:learn(lm, { prompt = "b", particles = 16, iters = 10, seed = 5, quiet = true })
  end
  local a, ta = trained()
  local b, tb = trained()
  for i = 1, 10 do T.eq(ta[i], tb[i], "log Z of iteration " .. i) end
  local ra, rb = a:logpsi({ A }), b:logpsi({ A })
  for v = 1, V do T.eq(ra[v], rb[v], "psi entry " .. v) end
end)

T.test("network twist: options are checked", function()
  T.raises(function() plume.twist.net { max_tokens = 4 } end, "plume.twist.net: automaton (the constraint")
  T.raises(function() plume.twist.net { automaton = dfa, max_tokens = 0 } end, "max_tokens (the horizon) must be in 1..100000 (got 0)")
  T.raises(function() plume.twist.net { automaton = dfa, max_tokens = 4, features = { "colour" } } end, "unknown feature 'colour'")
  T.raises(function() plume.twist.net { automaton = dfa, max_tokens = 4, hidden = 0 } end, "hidden (units) must be in 1..4096 (got 0)")
  T.raises(function() plume.twist.net { automaton = dfa, max_tokens = 4, lm = lm, features = { "hidden" } } end,
    "gives none (only llama.cpp models do)")
  T.raises(function() net:learn(lm, { iters = 5, eval_every = 6 }) end, "eval_every must be in 1..iters (got 6)")
end)

T.test("network twist on the tiny GGUF reads the LM's last hidden state, trains, and keeps Z-hat unbiased", function()
  local ok, why = plume.lm.available()
  if not ok then print("SKIP network twist on the tiny GGUF: " .. tostring(why)) return end
  local path = os.tmpname() .. ".gguf"
  plume.lm.write_tiny_gguf(path, { n_embd = 32, n_layer = 1, n_head = 2, n_ff = 64, ctx = 128, seed = 1 })
  local tl = plume.lm.llama { model = path, ctx = 512, seqs = 32, threads = 1 }
  -- the constraint: some lower-case letter among at most 2 generated bytes
  local lower = plume.twist.automaton { states = 2, vocab = tl.n_vocab, accept = { 1 },
    next = function(s, v) return (s == 1 or (v >= 97 and v <= 122)) and 1 or 0 end }
  local prompt = tl:tokenize("ab")
  local Zt = exact_z(tl, prompt, lower, 2)
  local tw = plume.twist.net { automaton = lower, max_tokens = 2, lm = tl, hidden = 8, seed = 4,
    features = { "state", "left", "hidden" } }
  -- the hidden state is read: with only hidden-state inputs besides state and tokens left, two prompts give
  -- different rows once the first layer's output weights are non-zero
  local trace = tw:learn(tl, { prompt = "ab", particles = 16, iters = 10, seed = 1, quiet = true })
  for i = 1, 10 do T.ok(trace[i] > -math.huge and trace[i] < 0, "iteration " .. i .. " log Z " .. trace[i]) end
  local r1, r2 = tw:logpsi({}, tl, "ab"), tw:logpsi({}, tl, "zq")
  T.ok(r1[66] ~= r2[66], string.format("the prompt changes psi through the hidden state (%g vs %g)", r1[66], r2[66]))
  local m, se = zhat(tl, { tl, "ab", 2 }, tw, 150, 4, 7000)
  print(string.format("  tiny GGUF: Z %.5f, mean Z-hat %.5f, SE %.5f", Zt, m, se))
  T.ok(math.abs(m - Zt) < 3.5 * se, string.format("tiny GGUF: mean Z-hat %.5f, Z %.5f, SE %.5f", m, Zt, se))
  os.remove(path)
end)
