-- learned_hmm_tagging.lua -- issue 16, experiment 3: sequence labelling with an HMM of 16 tags and sparse
-- emissions (bench/data/tagging.json, made by bench/data/make_tagging.lua: 150 sentences, 1,286 tokens), the
-- HMM's parameters known, the tags latent: a static program of categorical states (the chain motif of the
-- learned proposals: two consecutive states of a Markov chain with emissions). Single-site Gibbs (method
-- "gibbs") against the learned chain-segment proposals (plume.kernel.learned{motifs = {"chain"}}), alone and
-- cycled with Gibbs, at equal CPU time per chain, same seeds, same starts (each token a random tag that can emit
-- its word); each run is about 1.3 times the budget and read after the sweeps it had made in the budget (its fixed
-- cost included; "sweeps" is that count, "cpu/ch" the whole run's CPU per chain). Over those sweeps (1/8 .. 1 of them, mean over chains): the token accuracy of the current labelling
-- against the true tags, and the mean total variation between the tags' running empirical marginals and the exact
-- ones (forward-backward, plume.hmm). References, exact: the expected accuracy of an exact posterior draw (what a
-- sampler's accuracy tends to) and the accuracy of the max-marginal labelling. The row "gibbs, =sweeps" is Gibbs
-- after as many sweeps as the last learned method made (efficiency per sweep, not per second).
-- usage: build/plume bench/learned_hmm_tagging.lua [--short]   (--short: small budgets and 30 sentences)
local L = dofile("bench/learned_common.lua")
local short = L.args(arg)
local K, D = plume.kernel, plume.dist
local data = plume.read_json("bench/data/tagging.json")
-- 30 CPU s: tracing this program and compiling its updates take 10-20 s before the first sweep (more for the
-- learned kernel, which compiles a program per term of each of its 1,136 blocks), and that fixed cost is part of
-- every method's budget; with 8 s every method ran the 16-sweep floor of the calibration
local budget = short and 1.5 or 30
local chains = short and 2 or 4
local nsent = short and 30 or #data.sentences
local fracs = { 1 / 8, 1 / 4, 1 / 2, 1 }

local S, V = data.tags, data.words
local emit = {}
for k = 1, S do
  emit[k] = {}
  for v = 1, V do emit[k][v] = 0 end
  for i, v in ipairs(data.emit_words[k]) do emit[k][v] = data.emit_probs[k][i] end
  local s = 0
  for v = 1, V do s = s + emit[k][v] end
  for v = 1, V do emit[k][v] = emit[k][v] / s end   -- the file's 6 digits: rows sum to 1 again
end
local function renorm(row) local s, o = 0, {} for _, x in ipairs(row) do s = s + x end for i, x in ipairs(row) do o[i] = x / s end return o end
local init, trans = renorm(data.init), {}
for i = 1, S do trans[i] = renorm(data.trans[i]) end

local sents, truth = {}, {}
for s = 1, nsent do sents[s], truth[s] = data.sentences[s], data.true_tags[s] end

-- the emission of word w as a factor log p(w | tag) (a select over the 16 tags: cheaper to trace than a
-- categorical over 300 words per state); -inf where the tag cannot emit the word
local logcol = {}
for v = 1, V do
  logcol[v] = {}
  for k = 1, S do logcol[v][k] = emit[k][v] > 0 and math.log(emit[k][v]) or -math.huge end
end
local model = plume.model(function(m, d)
  local P = plume.vector(d.trans)
  for s, w in ipairs(d.sents) do
    local z = m:sample("z[" .. s .. "," .. 1 .. "]", D.categorical(d.init))
    m:factor(plume.vector(d.logcol[w[1]])[z])
    for t = 2, #w do
      z = m:sample("z[" .. s .. "," .. t .. "]", D.categorical(P[z]))
      m:factor(plume.vector(d.logcol[w[t]])[z])
    end
  end
end)
local d = { sents = sents, init = init, trans = trans, logcol = logcol }

-- exact marginals per sentence
local h = plume.hmm{ init = init, trans = trans, emit = emit }
local exact, e_acc, mpm_acc, ntok = {}, 0, 0, 0
for s = 1, nsent do
  local rows = h:posterior(sents[s])
  exact[s] = rows
  for t, row in ipairs(rows) do
    local best = 1
    for k = 2, S do if row[k] > row[best] then best = k end end
    e_acc = e_acc + row[truth[s][t]]
    mpm_acc = mpm_acc + (best == truth[s][t] and 1 or 0)
    ntok = ntok + 1
  end
end
e_acc, mpm_acc = e_acc / ntok, mpm_acc / ntok

local function start(chain)
  math.randomseed(500 + chain)
  local t = {}
  for s, w in ipairs(sents) do
    for i, v in ipairs(w) do
      local ok = {}
      for k = 1, S do if emit[k][v] > 0 then ok[#ok + 1] = k end end
      t["z[" .. s .. "," .. i .. "]"] = ok[math.random(#ok)]
    end
  end
  return t
end

local function infer(opts, samples, nchains)
  local o = { samples = samples, warmup = 0, chains = nchains, seed = 1, threads = 1, quiet = true, init = start }
  for k, v in pairs(opts) do o[k] = v end
  local t0 = L.cpu()
  local post = plume.infer(model, d, o)
  return post, L.cpu() - t0
end

print(string.format("learned_hmm_tagging (commit %s)%s: %d tags, %d sentences, %d tokens; CPU budget %.2f s per chain, %d chains",
  L.commit(), short and " --short" or "", S, nsent, ntok, budget, chains))
print(string.format("exact: expected accuracy of a posterior draw %.4f, max-marginal labelling %.4f", e_acc, mpm_acc))
print(string.format("%-16s %7s %6s  %s", "method", "sweeps", "cpu/ch", "accuracy of the current labelling | mean TV of running marginals, at 1/8 1/4 1/2 1 of its sweeps"))

local methods = { { name = "gibbs", opts = { method = "gibbs" } } }
local lk, why = L.learned_kernel({ "chain" }, { S_max = S })
if lk then
  methods[#methods + 1] = { name = "learned", opts = { kernel = lk } }
  methods[#methods + 1] = { name = "learned+gibbs", opts = { kernel = K.cycle{ K.gibbs{}, L.learned_kernel({ "chain" }, { S_max = S }) } } }
else
  methods[#methods + 1] = { name = "learned", skip = why }
end

local function report(name, post, Sw, n_used, t, fixed)
  local cps = {}
  for k, f in ipairs(fracs) do cps[k] = math.max(1, math.floor(n_used * f)) end
  local acc, tv = {}, {}
  for k = 1, #cps do acc[k], tv[k] = 0, 0 end
  for s = 1, nsent do
    for i = 1, #sents[s] do
      local dr, tr = post:draws("z[" .. s .. "," .. i .. "]"), truth[s][i]
      local row = exact[s][i]
      for c = 1, chains do
        local off, count, k = (c - 1) * Sw, {}, 1
        for n = 1, n_used do
          local z = dr[off + n]
          count[z] = (count[z] or 0) + 1
          while k <= #cps and n == cps[k] do
            if z == tr then acc[k] = acc[k] + 1 end
            local dist = 0
            for j = 1, S do dist = dist + math.abs((count[j] or 0) / n - row[j]) end
            tv[k] = tv[k] + dist / 2
            k = k + 1
          end
        end
      end
    end
  end
  local cells = {}
  for k = 1, #cps do cells[#cells + 1] = string.format("%.4f", acc[k] / (ntok * chains)) end
  cells[#cells + 1] = "|"
  for k = 1, #cps do cells[#cells + 1] = string.format("%.4f", tv[k] / (ntok * chains)) end
  local a = L.learned_acc(post)
  print(string.format("%-16s %7d %6s  %s%s%s", name, n_used, t and string.format("%6.2f", t) or "-",
    table.concat(cells, " "), a and string.format("  accept %.3f", a) or "",
    fixed and string.format("  fixed cost %.1f s", fixed) or ""))
end

local gibbs_post, gibbs_S, last_S
for _, m in ipairs(methods) do
  if m.skip then
    print(string.format("%-16s n/a: %s", m.name, m.skip))
  else
    -- pilots until their difference is 20% of the budget: the fixed cost (15-20 s) varies by a second or more. The
    -- run is read at equal CPU time (L.timed_run: its own cost per sweep, the fixed cost part of the budget)
    local r = L.timed_run(function(n) local _, t = infer(m.opts, n, 1); return t end,
      function(n) return infer(m.opts, n, chains) end, budget, chains, { frac = 0.2 })
    local n_used = r.at(budget)
    if m.name == "gibbs" then gibbs_post, gibbs_S = r.post, r.S else last_S = n_used end
    report(m.name, r.post, r.S, n_used, r.t, r.fixed)
  end
end
-- per sweep rather than per second: Gibbs after as many sweeps as the last learned method made in the budget
if gibbs_post and last_S and last_S < gibbs_S then report("gibbs, =sweeps", gibbs_post, gibbs_S, last_S) end
