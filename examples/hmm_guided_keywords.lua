-- hmm_guided_keywords.lua -- sentences that contain given keywords, by twisted SMC with an HMM-guided twist
-- (GeLaTo): an HMM distilled from the language model (texts sampled from it, Baum-Welch) in product with the
-- keyword automaton gives p_hmm(every keyword appears by the end | prefix) exactly, by dynamic programming; that
-- probability is the twist. Compared with plain SMC, which proposes from the model and weights by the constraint
-- at the end. The model is a bigram (Kneser-Ney) model of sentences from the fortunes corpus.
local lines = require("plume.corpus").fortunes{
  files = { "wisdom", "platitudes", "fortunes" }, min_words = 4, max_words = 12 }
if #lines < 100 then
  print("the fortunes corpus is not installed (Debian package fortunes): nothing to do")
  return
end
local lm = plume.lm.ngram.train { text = table.concat(lines, "\n"), order = 2 }
local keywords, T, prompt = { "love", "money" }, 10, "the"
print(string.format("%d sentences, %d words; sentences after '%s' of at most %d words containing: %s", #lines,
  lm.n_vocab, prompt, T, table.concat(keywords, ", ")))

local t0 = os.clock()
local hmm = plume.twist.distil(lm, { prompt = prompt, states = 16, samples = 800, max_tokens = T, seed = 1, iters = 10 })
local dfa = plume.twist.keywords(lm, keywords)
local twist = plume.twist.hmm(hmm, dfa, { max_tokens = T, lm = lm })
print(string.format("distilled a 16-state HMM and built the guide in %.2f s: %s", os.clock() - t0, tostring(twist)))

local gen = plume.model(function(m, lm)
  local ctx = lm:context(prompt)
  for t = 1, T do
    if lm:is_eos(m:sample("w" .. t, ctx:next_token())) then break end
  end
  return ctx
end)
-- plain SMC: the constraint as a potential at the end
local plain = plume.model(function(m, lm)
  local ctx = lm:context(prompt)
  for t = 1, T do
    if lm:is_eos(m:sample("w" .. t, ctx:next_token())) then break end
  end
  m:factor(dfa:accepts(ctx:tokens()) and 0 or -math.huge)
  return ctx
end)

local N = 200
t0 = os.clock()
local tw = plume.smc(gen, { lm }, { particles = N, seed = 2, twist = twist, quiet = true })
local c1 = os.clock() - t0
t0 = os.clock()
local ok, pl = pcall(plume.smc, plain, { lm }, { particles = N, seed = 2, quiet = true })
local c2 = os.clock() - t0
local sat = 0
for i = 1, N do
  if tw.values[i] and dfa:accepts(tw.values[i]:tokens()) then sat = sat + 1 end
end
print(string.format("HMM-guided twisted SMC: log Z = %.3f, ESS %.0f, %d of %d particles satisfy the constraint (%.2f s)",
  tw.logz, tw.ess, sat, N, c1))
if ok then
  local alive = 0
  for i = 1, N do alive = alive + (pl.log_weights[i] > -math.huge and 1 or 0) end
  print(string.format("plain SMC:              log Z = %.3f, %d of %d particles alive at the end (%.2f s)", pl.logz, alive, N, c2))
else
  print(string.format("plain SMC:              every particle violated the constraint (%.2f s)", c2))
end
local seen, shown = {}, 0
for i = 1, N do
  local txt = tw.values[i] and tw.values[i]:full_text()
  if txt and not seen[txt] and shown < 6 then
    seen[txt] = true
    shown = shown + 1
    print("  " .. txt)
  end
end
