-- ngram_train_and_sample.lua -- train a modified Kneser-Ney trigram model on a small text, write it as an ARPA
-- file, read it back, sample a few sentences and print their log-probabilities.
local text = [[
the old man walked to the sea
the old man sat by the sea
the young girl walked to the market
the young girl sold fish at the market
a cold wind came from the sea
the old man sold fish to the young girl
the market was full of fish
a young man walked by the market
the wind was cold and the sea was grey
the girl and the old man walked home
]]

local arpa = os.tmpname()
local trained = plume.lm.ngram.train{ text = text, order = 3, out = arpa }
local lm = plume.lm.ngram{ arpa = arpa }          -- the same model, read from the ARPA file
os.remove(arpa)
print(string.format("%s: %d words in the vocabulary (with <s>, </s>, <unk>)", tostring(lm), lm.n_vocab))

-- a sentence is a sample until </s>; logp is its log-probability under the model, </s> included
for seed = 1, 5 do
  local sentence, logp, why = lm:sample_text("", { seed = seed, max_tokens = 30 })
  print(string.format("  %-50s logp %8.3f  (%s)", sentence:sub(2), logp, why))   -- sub(2): the leading space
end

-- scoring a given continuation, token by token
local total, per = lm:logprob("the old man", "walked to the market")
print(string.format("log p(walked to the market | the old man) = %.4f", total))
for i, tok in ipairs(lm:tokenize("walked to the market")) do
  print(string.format("  %-8s %.4f", lm:detokenize{ tok }, per[i]))
end

-- the ARPA round trip keeps probabilities to the file's 7 significant digits
local a = trained:logprob("the", "old man sat by the sea")
local b = lm:logprob("the", "old man sat by the sea")
assert(math.abs(a - b) < 1e-5, "ARPA round trip changed the model")

-- greedy decoding: the most likely word at every step
print("greedy: " .. lm:sample_text("the young", { temperature = 0, max_tokens = 10 }))
