-- icl_markov.lua -- in-context learning of Markov chains against the Bayes-optimal reference.
-- plume.markov.laplace_predict is the exact posterior predictive of a chain with Dirichlet(beta) rows (add-beta
-- smoothing); plume.markov.icl_score draws chains from that prior, writes them as text, and measures how far a
-- language model's in-context next-symbol predictions are from the optimum (KL per token by context length).
local P = require "plume"

-- the reference itself: after "a b a b a", with beta = 0.5 over 3 symbols
local p = P.markov.laplace_predict({1, 2, 1, 2, 1}, { order = 1, beta = 0.5, states = 3 })
print(string.format("laplace after a b a b a: p(a) = %.3f, p(b) = %.3f, p(c) = %.3f", p[1], p[2], p[3]))

local function show(name, r)
  local line = {}
  for _, t in ipairs{2, 4, 8, 16, 24} do line[#line + 1] = string.format("t=%d %.3f", t, r.kl[t]) end
  print(string.format("%-28s KL(laplace || lm): %s   log-loss lm %.3f vs optimum %.3f", name, table.concat(line, "  "),
    r.lm_logloss, r.laplace_logloss))
end

-- an n-gram model trained on text from other chains of the same prior: it learns the average chain, not the
-- one in its context, so its KL does not fall with context length
local words, corpus = { "a", "b", "c" }, {}
math.randomseed(2)
for _ = 1, 200 do
  local rows = {}
  for s = 1, 3 do
    local g, z = {}, 0
    for b = 1, 3 do g[b] = -math.log(math.random()); z = z + g[b] end   -- Dirichlet(1, 1, 1)
    for b = 1, 3 do g[b] = g[b] / z end
    rows[s] = g
  end
  local x = math.random(3)
  for _ = 1, 30 do
    corpus[#corpus + 1] = words[x]
    local u, c = math.random(), 0
    for b = 1, 3 do c = c + rows[x][b]; if u <= c then x = b; break end end
  end
end
local ngram = P.lm.ngram.train{ text = table.concat(corpus, " "), order = 3 }
show("n-gram (order 3)", P.markov.icl_score(ngram, { symbols = words, order = 1, beta = 1, length = 24,
  sequences = 20, seed = 1 }))

-- a tiny random transformer (llama.cpp) over bytes: far from the optimum, as an untrained model should be
local have_llama, why_not = P.lm.available()
if not have_llama then
  print("SKIP tiny GGUF: llama.cpp is not available here (" .. why_not .. ")")
  return
end
local path = os.tmpname() .. ".gguf"
P.lm.write_tiny_gguf(path, { n_embd = 64, n_layer = 2, n_head = 4, ctx = 128, seed = 3 })
local tiny = P.lm.llama{ model = path, ctx = 1024, seqs = 8, threads = 1 }
show("tiny GGUF (random weights)", P.markov.icl_score(tiny, { symbols = words, order = 1, beta = 1, length = 24,
  sequences = 4, seed = 1 }))
os.remove(path)
