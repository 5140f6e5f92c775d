-- twisted_infilling.lua -- infill a gap of G words between a prefix and a suffix with twisted SMC, on a bigram
-- (Kneser-Ney) model of English sentences from the fortunes corpus (Debian package `fortunes`).
-- Target: sigma(gap) ∝ p(gap | prefix) p(suffix | prefix, gap). For a bigram model the optimal twist is exact and
-- cheap: psi_t(x_t) = sum over the rest of the gap of p(rest | x_t) p(suffix | last gap word) = (P^(G-t) b)(x_t)
-- with P the bigram matrix and b(x) = p(first suffix word | x). Twisted SMC with it has equal weights and the
-- exact evidence p(suffix | prefix, G words between); plain SMC (proposing from the model, weighting at the end)
-- mostly wastes its particles.
local lines = require("plume.corpus").fortunes{
  files = { "wisdom", "platitudes", "fortunes" }, min_words = 4, max_words = 12 }
if #lines < 100 then
  print("the fortunes corpus is not installed (Debian package fortunes): nothing to do")
  return
end
local lm = plume.lm.ngram.train { text = table.concat(lines, "\n"), order = 2 }
local V = lm.n_vocab
local prefix, suffix, G = "a man who", "is a fool", 3
print(string.format("%d sentences, %d words; infill %d words:  %s ___ %s", #lines, V, G, prefix, suffix))

-- the bigram matrix: row x = p(. | x) (one batched call over all one-word contexts)
local ctxs = {}
for v = 0, V - 1 do ctxs[v + 1] = { v } end
local rows = lm:next_logprobs_batch(ctxs)
local sfx = lm:tokenize(suffix)
local rest = lm:logprob(prefix .. " x " .. suffix:match("^%S+"), suffix:gsub("^%S+ ?", ""))   -- p(rest | first word)
-- b[k](x) = log sum over k more words after x of p(words | x) p(first suffix word | last)
local b = { [0] = plume.array(V) }
for x = 1, V do b[0][x] = lm:is_eos(x - 1) and -math.huge or rows[x][sfx[1] + 1] end
for k = 1, G - 1 do
  b[k] = plume.array(V)
  local e = {}
  for y = 1, V do e[y] = math.exp(b[k - 1][y]) end
  for x = 1, V do
    local r, s = rows[x], 0
    if not lm:is_eos(x - 1) then
      for y = 1, V do
        local p = r[y]
        if p > -math.huge then s = s + math.exp(p) * e[y] end
      end
    end
    b[k][x] = s > 0 and math.log(s) or -math.huge
  end
end

local twist = plume.twist {
  max_tokens = G,
  batch = function(gen) return b[G - #gen - 1] end,                 -- psi of gen..v for every v
  phi = function(gen, v) return lm:is_eos(v) and -math.huge or b[0][v + 1] + rest end,
}
local infill = plume.model(function(m, lm, G)
  local ctx = lm:context(prefix)
  for t = 1, G do
    if lm:is_eos(m:sample("w" .. t, ctx:next_token())) then break end
  end
  return ctx:text()
end)
-- plain SMC: the same program, the suffix's probability as a factor at the end
local plain = plume.model(function(m, lm, G)
  local ctx = lm:context(prefix)
  for t = 1, G do
    if lm:is_eos(m:sample("w" .. t, ctx:next_token())) then m:factor(-math.huge) return end
  end
  ctx:observe_text(" " .. suffix, m)
  return ctx:text()
end)

local N = 100
local function runs(model, opts)
  local zs, t0 = {}, os.clock()
  for seed = 1, 5 do
    opts.seed, opts.particles, opts.quiet = seed, N, true
    local ok, post = pcall(plume.smc, model, { lm, G }, opts)
    zs[#zs + 1] = ok and post.logz or -math.huge
  end
  local m, v = 0, 0
  for _, z in ipairs(zs) do m = m + z / #zs end
  for _, z in ipairs(zs) do v = v + (z - m) ^ 2 / (#zs - 1) end
  return m, math.sqrt(v), os.clock() - t0
end
local m1, s1, c1 = runs(infill, { twist = twist })
local m2, s2, c2 = runs(plain, {})
print(string.format("log Z over 5 seeds, %d particles: twisted SMC %.4f (sd %.1e, %.2f s)  plain SMC %.4f (sd %.3f, %.2f s)",
  N, m1, s1, c1, m2, s2, c2))
local tw = plume.smc(infill, { lm, G }, { particles = 400, seed = 1, twist = twist, quiet = true })
-- the most frequent infills under the twisted posterior
local count = {}
for i = 1, 400 do
  local txt = tw.values[i]
  if txt then count[txt] = (count[txt] or 0) + math.exp(tw.log_weights[i]) end
end
local list = {}
for txt, w in pairs(count) do list[#list + 1] = { txt, w } end
table.sort(list, function(a, b) return a[2] > b[2] end)
for i = 1, math.min(5, #list) do
  print(string.format("  %.3f  %s [%s] %s", list[i][2], prefix, list[i][1]:gsub("^ ", ""), suffix))
end
