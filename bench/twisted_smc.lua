-- twisted_smc.lua -- a rare constraint: sentences (at most T words after "the", bigram Kneser-Ney model of the
-- fortunes corpus) that contain both "love" and "money"; the exact evidence Z (about 2e-5: rejection accepts one
-- text in ~40,000) comes from the same HMM x automaton dynamic program with the bigram model itself as the HMM
-- (hidden state = last word). Rejection sampling vs plain SMC (the constraint as a potential at the end) vs
-- twisted SMC with the twist of a distilled 16-state HMM, each given the same CPU time: effective samples per
-- second and the error of log Z-hat.
-- usage: build/plume bench/twisted_smc.lua [seconds per method = 3]
local budget = tonumber(arg and arg[1]) or 3
local lines = require("plume.corpus").fortunes{
  files = { "wisdom", "platitudes", "fortunes" }, min_words = 4, max_words = 12 }
if #lines < 100 then print("twisted_smc: the fortunes corpus is not installed; skipped") return end
local lm = plume.lm.ngram.train { text = table.concat(lines, "\n"), order = 2 }
local V, T, prompt, keywords = lm.n_vocab, 10, "the", { "love", "money" }
local dfa = plume.twist.keywords(lm, keywords)

-- exact log Z: the bigram model as an HMM whose hidden state is the last word (emission = identity)
local t0 = os.clock()
local trans, emit, init = plume.array(V, V, 0), plume.array(V, V, 0), plume.array(V, 0)
local first = lm:next_logprobs(prompt)
for v = 1, V do init[v] = math.exp(first[v]) end
local rows = lm:next_logprobs_batch((function()
  local c = {}
  for v = 0, V - 1 do c[v + 1] = { v } end
  return c
end)())
for x = 1, V do
  local r, s = rows[x], 0
  for y = 1, V do s = s + math.exp(r[y]) end
  -- rows sum to 1 up to rounding (renormalised for the HMM's check); the rows of <s> and </s> are never used
  for y = 1, V do trans[(x - 1) * V + y] = s > 0.5 and math.exp(r[y]) / s or (x == y and 1 or 0) end
  emit[(x - 1) * V + x] = 1
end
local exact_hmm = plume.hmm { init = init, trans = trans, emit = emit }
local exact_twist = plume.twist.hmm(exact_hmm, dfa, { max_tokens = T, lm = lm, smoothing = 0 })
local row0 = exact_twist:logpsi({})
local Z = 0
for v = 1, V do if first[v] > -math.huge and row0[v] > -math.huge then Z = Z + math.exp(first[v] + row0[v]) end end
local logZ = math.log(Z)
print(string.format("V = %d words, T = %d, keywords %s: exact Z = %.3e (log Z = %.4f), %.1f s", V, T,
  table.concat(keywords, "+"), Z, logZ, os.clock() - t0))

t0 = os.clock()
local hmm = plume.twist.distil(lm, { prompt = prompt, states = 16, samples = 1500, max_tokens = T, seed = 1, iters = 15 })
local twist = plume.twist.hmm(hmm, dfa, { max_tokens = T, lm = lm })
local distil_s = os.clock() - t0

local gen = plume.model(function(m, lm)
  local ctx = lm:context(prompt)
  for t = 1, T do if lm:is_eos(m:sample("w" .. t, ctx:next_token())) then break end end
end)
local plain = plume.model(function(m, lm)
  local ctx = lm:context(prompt)
  for t = 1, T do if lm:is_eos(m:sample("w" .. t, ctx:next_token())) then break end end
  m:factor(dfa:accepts(ctx:tokens()) and 0 or -math.huge)
end)

local results = {}
-- rejection
do
  local n, acc, start = 0, 0, os.clock()
  while os.clock() - start < budget do
    n = n + 1
    local text = lm:sample_text(prompt, { max_tokens = T, seed = n })
    if text ~= "" and dfa:accepts(lm:tokenize(text)) then acc = acc + 1 end
  end
  local el = os.clock() - start
  results[#results + 1] = { "rejection", el, acc / el, acc > 0 and math.abs(math.log(acc / n) - logZ) or math.huge,
    string.format("%d texts, %d accepted", n, acc) }
end
local function smc_runs(name, model, opts)
  local runs, ess, sq, dead, start = 0, 0, 0, 0, os.clock()
  while os.clock() - start < budget do
    runs = runs + 1
    opts.seed, opts.quiet, opts.particles = runs, true, 200
    local ok, post = pcall(plume.smc, model, { lm }, opts)
    if ok then
      ess = ess + post.ess
      sq = sq + (post.logz - logZ) ^ 2
    else
      dead = dead + 1
    end
  end
  local el = os.clock() - start
  results[#results + 1] = { name, el, ess / el, dead == runs and math.huge or math.sqrt(sq / (runs - dead)),
    string.format("%d runs of 200 particles, %d with every particle dead", runs, dead) }
end
smc_runs("plain SMC", plain, {})
smc_runs("twisted SMC (HMM guide)", gen, { twist = twist })
print(string.format("(distilling the HMM and building its guide: %.1f s, once)", distil_s))
print("| method | CPU s | effective samples / s | RMS error of log Z-hat | |")
print("|---|---|---|---|---|")
for _, r in ipairs(results) do
  print(string.format("| %s | %.1f | %.1f | %s | %s |", r[1], r[2], r[3], r[4] == math.huge and "no estimate" or string.format("%.3f", r[4]), r[5]))
end
