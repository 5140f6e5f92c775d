-- lm_markov_chain.lua -- a language model read as a Markov chain on its contexts (after "Large Language Models
-- as Markov Chains"): the state is the last K tokens, a step draws the next token at temperature T. We train a
-- small n-gram model, build its chain for several temperatures, and print the number of states, the spectral
-- gap, the mixing time and the most probable contexts under the stationary distribution. Hotter chains reach
-- more contexts and mix faster; as T -> 0 the chain becomes the greedy decoder, which falls into a cycle.
local corpus = [[
the cat sat on the mat
the dog sat on the log
a cat saw a dog
the dog saw the cat on the mat
a dog ate the cat food
]]
local lm = plume.lm.ngram.train{ text = corpus, order = 3 }

-- a context as words; the end-of-sentence token </s> has no text of its own, so name it
local function words(chain, i)
  local toks, out = chain:state(i), {}
  for j, t in ipairs(toks) do
    out[j] = lm:is_eos(t) and "</s>" or lm:detokenize({ t }):gsub("^ ", "")
  end
  return table.concat(out, " ")
end

print(string.format("%-6s %7s %6s %8s %9s  %s", "T", "states", "gap", "|l2|", "t_mix(.1)", "top contexts (pi)"))
for _, T in ipairs{ 0, 0.25, 0.5, 1, 2, math.huge } do
  local chain = lm:markov_chain{ context = 2, temperature = T, start = "the cat" }
  local gap, l2 = chain:spectral_gap()
  local ok, tmix = pcall(chain.mixing_time, chain, 0.1)
  local pi = chain:stationary()
  local order = {}
  for i = 1, chain.n_states do order[i] = i end
  table.sort(order, function(a, b) return pi[a] > pi[b] end)
  local top = {}
  for r = 1, 3 do
    top[r] = string.format("'%s' %.3f", words(chain, order[r]), pi[order[r]])
  end
  print(string.format("%-6s %7d %6.3f %8.4f %9s  %s", tostring(T), chain.n_states, gap, l2,
                      ok and tostring(tmix) or "never", table.concat(top, ", ")))
end

-- A sample path of the T = 1 chain: generated text that never stops, one context at a time.
local chain = lm:markov_chain{ context = 2, temperature = 1, start = "the cat" }
local _, text = chain:sample(25, 7)
print("sample:" .. text)
