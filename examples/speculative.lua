-- speculative.lua -- speculative sampling as an exact sampler: a cheap draft model proposes k words, the target
-- checks them all in one batched call and keeps each with probability min(1, p/q), resampling from (p - q)+ at
-- the first rejection. The texts have the target's distribution whatever the draft; a better draft only makes
-- more words per target call. Target: a trigram (Kneser-Ney) model of the fortunes corpus; drafts: the bigram
-- and unigram models of the same corpus.
local lines = require("plume.corpus").fortunes{
  files = { "wisdom", "platitudes", "fortunes", "people" }, min_words = 4, max_words = 14 }
if #lines < 100 then
  print("the fortunes corpus is not installed (Debian package fortunes): nothing to do")
  return
end
local text = table.concat(lines, "\n")
local target = plume.lm.ngram.train { text = text, order = 3 }
local drafts = { bigram = plume.lm.ngram.train { text = text, order = 2 }, unigram = plume.lm.ngram.train { text = text, order = 1 } }
print(string.format("%d sentences, %d words", #lines, target.n_vocab))
for _, name in ipairs { "bigram", "unigram" } do
  for _, k in ipairs { 2, 4 } do
    local acc, tpc, n = 0, 0, 100
    local example
    for seed = 1, n do
      local txt, st = plume.speculative(target, drafts[name], { k = k, max_tokens = 20, prompt = "a wise man", seed = seed })
      acc, tpc = acc + st.acceptance / n, tpc + st.tokens_per_call / n
      if not example and #txt > 20 then example = txt end
    end
    print(string.format("draft %-7s k = %d: acceptance %.2f, %.2f words per target call   a wise man%s", name, k, acc, tpc, example or ""))
  end
end
