-- make_tagging.lua -- the simulated tagging data of bench/learned_hmm_tagging.lua, reproducibly (Lua's
-- math.random with a fixed seed): an HMM with 16 tags and 300 words -- each tag's successors concentrated on 4
-- tags (95%) plus a uniform 5%, each tag emitting only its own ~10 words (sparse emissions; words drawn with
-- Zipf-like popularity, so frequent words belong to several tags and are ambiguous) -- and 150 sentences of 5 to
-- 12 tokens drawn from it, with their true tags. Writes bench/data/tagging.json.
-- usage: build/plume bench/data/make_tagging.lua
local S, V, NSENT = 16, 300, 150
math.randomseed(20261127)

local function gamma1()   -- Gamma(1, 1)
  return -math.log(1 - math.random())
end

local function normalise(t)
  local s = 0
  for _, x in ipairs(t) do s = s + x end
  for i = 1, #t do t[i] = t[i] / s end
  return t
end

local init = {}
for k = 1, S do init[k] = gamma1() end
normalise(init)

local trans = {}
for i = 1, S do
  local row, hot = {}, {}
  for j = 1, S do row[j] = 0.05 / S end
  local w = {}
  for a = 1, 4 do
    local j
    repeat j = math.random(S) until not hot[j]
    hot[j] = true
    w[a] = { j, gamma1() }
  end
  local s = 0
  for _, p in ipairs(w) do s = s + p[2] end
  for _, p in ipairs(w) do row[p[1]] = row[p[1]] + 0.95 * p[2] / s end
  trans[i] = row
end

-- word popularity ~ 1 / rank: a tag's words are drawn by popularity, so popular words serve several tags
local pop, cum = {}, 0
for v = 1, V do cum = cum + 1 / v; pop[v] = cum end
local function popular_word()
  local u = math.random() * cum
  for v = 1, V do if u <= pop[v] then return v end end
  return V
end
local emit = {}
for k = 1, S do
  local row, n = {}, 8 + math.random(0, 4)
  for v = 1, V do row[v] = 0 end
  local got = 0
  while got < n do
    local v = popular_word()
    if row[v] == 0 then row[v] = gamma1(); got = got + 1 end
  end
  emit[k] = normalise(row)
end

local function draw(p)
  local u, c = math.random(), 0
  for k = 1, #p do c = c + p[k]; if u <= c then return k end end
  return #p
end

local words, tags = {}, {}
for s = 1, NSENT do
  local T, w, t = math.random(5, 12), {}, {}
  t[1] = draw(init)
  for i = 1, T do
    if i > 1 then t[i] = draw(trans[t[i - 1]]) end
    w[i] = draw(emit[t[i]])
  end
  words[s], tags[s] = w, t
end

-- emissions are written sparsely: per tag, the list of its words and their probabilities
local function num(x) return string.format("%.6g", x) end
local function list(t, f) local o = {} for i, x in ipairs(t) do o[i] = (f or tostring)(x) end return "[" .. table.concat(o, ",") .. "]" end
local f = assert(io.open("bench/data/tagging.json", "w"))
f:write('{"tags": ', S, ', "words": ', V, ',\n "init": ', list(init, num), ',\n "trans": [')
for i = 1, S do f:write(i > 1 and ",\n  " or "\n  ", list(trans[i], num)) end
f:write('],\n "emit_words": [')
local ew, ep = {}, {}
for k = 1, S do
  local ws, ps = {}, {}
  for v = 1, V do if emit[k][v] > 0 then ws[#ws + 1] = v; ps[#ps + 1] = emit[k][v] end end
  ew[k], ep[k] = ws, ps
end
for k = 1, S do f:write(k > 1 and ",\n  " or "\n  ", list(ew[k])) end
f:write('],\n "emit_probs": [')
for k = 1, S do f:write(k > 1 and ",\n  " or "\n  ", list(ep[k], num)) end
f:write('],\n "sentences": [')
for s = 1, NSENT do f:write(s > 1 and ",\n  " or "\n  ", list(words[s])) end
f:write('],\n "true_tags": [')
for s = 1, NSENT do f:write(s > 1 and ",\n  " or "\n  ", list(tags[s])) end
f:write("]}\n")
f:close()
local ntok = 0
for s = 1, NSENT do ntok = ntok + #words[s] end
print(string.format("bench/data/tagging.json: %d tags, %d words, %d sentences, %d tokens", S, V, NSENT, ntok))
