-- test_lm_programs.lua -- language models inside model programs: SMC with a potential on a 5-word n-gram
-- model against the exact target by enumeration (total variation, and the log evidence unbiased over seeds),
-- contexts forked on resampling, masks, observe_text, and the tiny llama model when llama.cpp is present.
local T = dofile("tests/lua/check.lua")

local lm = plume.lm.ngram.train { text = "a b c a b a c b a a b c c a d a b d", order = 2 }
local A = lm:tokenize("a")[1]
local MAXT = 4

local story = plume.model(function(m, lm, prompt)
  local ctx = lm:context(prompt)
  for t = 1, MAXT do
    local tok = m:sample("tok" .. t, ctx:next_token())
    if lm:is_eos(tok) then break end
    m:factor(tok == A and 0.7 or -0.2)          -- a potential that favours the word "a"
  end
  return ctx:text()
end)

-- exact target: enumerate every token sequence up to MAXT tokens (stopping at EOS)
local function enumerate(prompt)
  local dist, Z = {}, 0
  local function rec(toks, gen, logp)
    if #gen == MAXT then
      local text = lm:detokenize(gen)
      dist[text] = (dist[text] or 0) + math.exp(logp); Z = Z + math.exp(logp); return
    end
    local row = lm:next_logprobs(toks)
    for v = 0, lm.n_vocab - 1 do
      local lp = row[v + 1]
      if lp > -math.huge then
        local t2, g2 = { table.unpack(toks) }, { table.unpack(gen) }
        t2[#t2 + 1] = v
        if lm:is_eos(v) then
          local text = lm:detokenize(g2)
          dist[text] = (dist[text] or 0) + math.exp(logp + lp); Z = Z + math.exp(logp + lp)
        else
          g2[#g2 + 1] = v
          rec(t2, g2, logp + lp + (v == A and 0.7 or -0.2))
        end
      end
    end
  end
  rec(lm:tokenize(prompt), {}, 0)
  return dist, Z
end
local exact, Z = enumerate("b")

-- Compare low-dimensional marginals of the exact target (first word; number of words), so that the check has
-- power: the full distribution has hundreds of sequences.
local function marginals(dist, weight_of)
  local first, len = {}, {}
  for text, w in pairs(dist) do
    w = weight_of(w)
    local f = text:match("^(%S+)") or "<eos>"
    local n = 0
    for _ in text:gmatch("%S+") do n = n + 1 end
    first[f] = (first[f] or 0) + w
    len[n] = (len[n] or 0) + w
  end
  return first, len
end
local ex_first, ex_len = marginals(exact, function(w) return w / Z end)
local function tv(p, q)
  local d = 0
  for k, v in pairs(p) do d = d + 0.5 * math.abs(v - (q[k] or 0)) end
  for k, v in pairs(q) do if p[k] == nil then d = d + 0.5 * v end end
  return d
end

for _, method in ipairs { "standard", "steer" } do
  T.test(method .. "_smc_over_an_lm_matches_the_enumerated_target", function()
    local post = plume.smc(story, { lm, "b" }, { particles = 4000, seed = 1, method = method, extensions = 2, ess_threshold = 1.0 })
    local est = {}
    for i = 1, post.particles do
      local v = post.values[i]
      if v then est[v] = (est[v] or 0) + math.exp(post.log_weights[i]) end
    end
    local f, l = marginals(est, function(w) return w end)
    -- 6 first-word cells and 5 lengths: sampling error of the TV is about 0.5 * sum sqrt(p / ESS) < 0.03
    T.ok(tv(f, ex_first) < 0.04, "first word: total variation " .. tv(f, ex_first))
    T.ok(tv(l, ex_len) < 0.04, "length: total variation " .. tv(l, ex_len))
    T.ok(post.resamples > 0, "resampling happened")
  end)
end

-- Negative control: the same check against the target without the potential must fail.
T.test("lm_marginal_check_rejects_the_untilted_target", function()
  local post = plume.smc(story, { lm, "b" }, { particles = 4000, seed = 1 })
  local est = {}
  for i = 1, post.particles do
    local v = post.values[i]
    if v then est[v] = (est[v] or 0) + math.exp(post.log_weights[i]) end
  end
  local f = marginals(est, function(w) return w end)
  local row = lm:next_logprobs(lm:tokenize("b"))
  local prior_first = {}
  for v = 0, lm.n_vocab - 1 do
    local w = lm:is_eos(v) and "<eos>" or lm:detokenize { v }
    if row[v + 1] > -math.huge then prior_first[w] = (prior_first[w] or 0) + math.exp(row[v + 1]) end
  end
  T.ok(tv(f, prior_first) > 0.1, "the potential visibly tilts the first word: " .. tv(f, prior_first))
end)

T.test("lm_smc_log_evidence_is_unbiased", function()
  local r, n = {}, 30
  for seed = 1, n do r[seed] = math.exp(plume.smc(story, { lm, "b" }, { particles = 100, seed = seed }).logz) / Z end
  local mean, var = 0, 0
  for i = 1, n do mean = mean + r[i] / n end
  for i = 1, n do var = var + (r[i] - mean) ^ 2 / (n - 1) end
  T.ok(math.abs(mean - 1) < 4 * math.sqrt(var / n) + 1e-3, string.format("E[Z-hat / Z] = %.4f (se %.4f)", mean, math.sqrt(var / n)))
end)

T.test("next_token_outside_smc_works_directly", function()
  local post = plume.infer(story, plume.args(lm, "b"), { method = "is", samples = 3000, seed = 2 })
  T.near(post.logz, math.log(Z), 0.1, "importance-sampling evidence")
end)

T.test("observe_text_scores_like_lm_logprob", function()
  local got
  local model = plume.model(function(m)
    local ctx = lm:context("a b")
    got = ctx:observe_text("c a", m)
    return ctx:text()
  end)
  local post = plume.smc(model, {}, { particles = 3, seed = 1 })
  T.near(got, lm:logprob("a b", "c a"), 1e-12)
  T.eq(post.values[1], "c a")
  T.near(post.logz, lm:logprob("a b", "c a"), 1e-9, "the factor entered the weights")
end)

T.test("a_mask_that_allows_nothing_kills_only_that_particle", function()
  local D = lm:tokenize("d")[1]
  local model = plume.model(function(m)
    local ctx = lm:context("b")
    local z = m:sample("z", plume.dist.bernoulli(0.5))
    local allowed = z == 1 and { A } or {}
    m:observe("in_set", ctx:mask(allowed), true)
    local tok = m:sample("tok", ctx:next_token())
    return tok
  end)
  local post = plume.smc(model, {}, { particles = 200, seed = 3, ess_threshold = 0 })
  local alive = 0
  for i = 1, post.particles do    -- dead particles have no value: not ipairs
    if post.log_weights[i] > -math.huge then alive = alive + 1; T.eq(post.values[i], A, "masked to 'a'") end
  end
  T.ok(alive > 50 and alive < 150, "about half survive: " .. alive)
  local row = lm:next_logprobs(lm:tokenize("b"))
  T.near(post.logz, math.log(0.5 * math.exp(row[A + 1])), 0.15, "evidence = P(z=1) P(a | b)")
  T.ok(D ~= A)
end)

local have_llama, why_not = plume.lm.available()
if not have_llama then
  print("SKIP tiny_llama tests: " .. why_not)
else
  local path = os.tmpname() .. ".gguf"
  plume.lm.write_tiny_gguf(path, { n_embd = 32, n_layer = 1, n_head = 2, n_ff = 64, ctx = 128, seed = 1 })
  local llm = plume.lm.llama { model = path, ctx = 1024, seqs = 64, threads = 1 }
  T.test("tiny_llama_smc_runs_with_forked_sequences", function()
    local model = plume.model(function(m, prompt)
      local ctx = llm:context(prompt)
      for t = 1, 6 do
        local tok = m:sample("t" .. t, ctx:next_token())
        if llm:is_eos(tok) then break end
        m:factor(tok % 2 == 0 and 0 or -1)     -- prefer even token ids
      end
      return ctx:tokens()
    end)
    local post = plume.smc(model, { "hi" }, { particles = 16, seed = 1, ess_threshold = 1.0 })
    T.ok(post.resamples >= 3, "resampled")
    T.ok(post.logz < 0 and post.logz > -10, "logz " .. post.logz)
    -- after forks, replays and resampling, every particle's context holds exactly the tokens its trace
    -- recorded, and each was possible under a fresh evaluation of its prefix
    local draws = {}
    for t = 1, 6 do draws[t] = post:sites()[t] and post:draws("t" .. t) end
    for i = 1, post.particles do
      local toks, ctx = post.values[i], llm:tokenize("hi")
      for t, tok in ipairs(toks) do
        T.eq(draws[t][i], tok, "particle " .. i .. " token " .. t)
        T.ok(llm:next_logprobs(ctx)[tok + 1] > -math.huge, "token possible")
        ctx[#ctx + 1] = tok
      end
    end
  end)
  T.test("smc_decodes_each_token_once_and_the_prompt_once", function()
    -- every particle's token is decoded exactly once, in one llama_decode per step; resampling forks KV
    -- sequences instead of evaluating again; the shared prompt is evaluated once
    local model = plume.model(function(m)
      local ctx = llm:context("shared prompt")
      for t = 1, 8 do m:factor(m:sample("t" .. t, ctx:next_token()) % 2 == 0 and 0 or -2) end
    end)
    local before = llm:stats()
    local post = plume.smc(model, {}, { particles = 12, seed = 2, ess_threshold = 1.0 })
    local after = llm:stats()
    T.ok(post.resamples >= 7, "resampled every step")
    local prompt_len = #llm:tokenize("shared prompt")
    T.eq(after.decode_tokens - before.decode_tokens, 12 * 8 + prompt_len + (llm.bos and 1 or 0), "tokens decoded (BOS included)")
    T.eq(after.decode_calls - before.decode_calls, 8 + 1, "one decode per step, plus the prompt")
  end)
  os.remove(path)
end
