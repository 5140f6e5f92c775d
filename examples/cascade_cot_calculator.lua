-- cascade_cot_calculator.lua -- a language-model cascade with a tool: a small word-level language model
-- (a Kneser-Ney trigram trained here on arithmetic worked examples) writes "calc ( a + b ) =", plume runs
-- the calculator and forces its result into the context, and SMC conditions the final answer on agreeing
-- with the calculator. Then self-consistency: the answer marginalised over sampled thoughts.
local cascade = require "plume.cascade"

local corpus = {}
for a = 1, 6 do
  for b = 1, 5 do
    local q = string.format("Q: what is %d plus %d ?", a, b)
    corpus[#corpus + 1] = string.format("%s A: calc ( %d + %d ) = %d . so the answer is %d .", q, a, b, a + b, a + b)
    corpus[#corpus + 1] = string.format("%s Thought: add %d and %d to get %d . A: %d", q, a, b, a + b, a + b)
  end
end
local lm = plume.lm.ngram.train { text = table.concat(corpus, "\n"), order = 3 }
print(lm)

-- 1. tool use: the calculator answers the LM's calls
local tool = cascade.tool_use { lm = lm, tools = { calc = cascade.calculator }, max_tokens = 20,
  call = "(calc)%s*%((.-)%)%s*=$", prompt = function(q) return "Q: " .. q .. " A:" end }

-- 2. condition on the call using the question's numbers and the stated answer agreeing with the calculator
local checked = plume.model(function(m, question)
  local out = tool.fn(m, question)
  local a, b = question:match("(%d+) plus (%d+)")
  local call = out.calls[1]
  local args_ok = call and call.args:gsub("%s", "") == a .. "+" .. b
  local said = out.text:match("answer is (%d+)")
  m:factor(args_ok and 0 or -8)
  m:factor((said and call and said == call.result) and 0 or -4)
  return out
end)

local post = plume.smc(checked, { "what is 4 plus 2 ?" }, { particles = 64, seed = 1 })
local seen = {}
for i = 1, post.particles do
  local v = post.values[i]
  if v and not seen[v.text] then
    seen[v.text] = true
    if #v.calls > 0 then
      print(string.format("w=%.3f  %s   [calc(%s) -> %s]", math.exp(post.log_weights[i]), v.text, v.calls[1].args, v.calls[1].result))
    end
  end
end
print(string.format("log evidence %.3f, ESS %.1f", post.logz, post.ess))

-- 3. self-consistency: scratchpad with the thought latent, answer marginalised over 64 sampled thoughts
local cot = cascade.scratchpad { lm = lm, prompt = function(q) return "Q: " .. q .. " Thought:" end,
  thought_stop = ".", answer_prefix = " A:", answer_stop = "\n", answer_tokens = 1 }
local dist, best = cascade.self_consistency(cot, "what is 3 plus 3 ?", { samples = 64, seed = 2 })
print("self-consistency answer:", best, string.format("(probability %.2f)", dist[best]))
