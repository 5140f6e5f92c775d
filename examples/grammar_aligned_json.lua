-- grammar_aligned_json.lua -- JSON that follows a schema, written by a Kneser-Ney word model trained on real
-- English (the fortune cookies of Debian's `fortunes` package), with three samplers side by side:
--   rejection   sample freely, keep the texts the schema accepts: exact samples of p(s | s in L), but wasteful
--   masked      locally masked decoding: every token is drawn from the model's row restricted to the tokens that
--               keep the text valid; fast and always valid, but it changes the distribution
--   asap        grammar-aligned sampling (Park et al. 2024): converges to p(s | s in L)
-- and SMC over a program with the constraint as a potential (ctx:mask). Rejection is the exact reference here
-- because valid texts are common; the statistics below show masked decoding away from it and ASAp and SMC near.
-- Then the same schema on the tiny random-weight GGUF model (byte-level BPE), when llama.cpp is present.
local dir = "/usr/share/games/fortunes/"
local f = io.open(dir .. "fortunes", "r")
if not f then
  print("grammar_aligned_json: this example needs the Debian package 'fortunes' (" .. dir .. "fortunes is missing);")
  print("install it with: sudo apt-get install fortunes   (scripts/deps.sh lists it)")
  return
end
local raw = f:read("a")
f:close()

-- one-line fortunes of 3 to 10 words, lower case, letters only: "a visit to a fresh place will bring strange work"
local sentences = {}
for block in (raw .. "\n%\n"):gmatch("(.-)\n%%\n") do
  if not block:find("\n") then
    local words = {}
    for w in block:lower():gmatch("[a-z']+") do words[#words + 1] = w end
    if #words >= 3 and #words <= 10 then sentences[#sentences + 1] = words end
  end
end

-- the training text: each fortune as a JSON record, words separated by spaces (they are the model's tokens),
-- {"fortune": "...", "words": n}. Every record is valid, but a trigram model trained on 260 of them backs off to
-- shorter histories and often loses a quote or a comma: most free samples are not JSON
local lines = {}
for _, w in ipairs(sentences) do
  lines[#lines + 1] = '{ "fortune" : "' .. table.concat(w, " ") .. '" , "words" : ' .. #w .. " }"
end
local lm = plume.lm.ngram.train { text = table.concat(lines, "\n"), order = 3 }
print(string.format("%d fortunes -> %s", #sentences, tostring(lm)))

local schema = { type = "object", required = { "fortune", "words" },
  properties = { fortune = { type = "string" }, words = { type = "integer" } } }
local L = plume.json_schema(schema)
local MAX, N = 24, 300

local function stats(texts, weights)
  local n, len, valid, tot = 0, 0, 0, 0
  for i, t in ipairs(texts) do
    if t then
      local w = weights and weights[i] or 1
      local ok, v = pcall(plume.json.decode, t)
      tot = tot + w
      if ok and type(v) == "table" and type(v.fortune) == "string" then
        local k = 0
        for _ in v.fortune:gmatch("%S+") do k = k + 1 end
        len = len + w * k
        if v.words == k then valid = valid + w end
      end
      n = n + 1
    end
  end
  return len / tot, valid / tot, n
end

-- rejection: free samples, kept when the schema accepts them (the exact reference)
local free, kept, tries = {}, 0, 0
local seed = 1
while kept < N do
  local text = lm:sample_text("", { max_tokens = MAX + 1, seed = seed })
  seed = seed + 1
  tries = tries + 1
  local n = #lm:tokenize(text)
  if n <= MAX and L:matches(text) then kept = kept + 1; free[kept] = text end
end
print(string.format("free sampling: %d of %d texts match the schema (P(L) ~ %.3f)", kept, tries, kept / tries))

local masked = plume.masked_decode(lm, L, { samples = N, max_tokens = MAX, seed = 2 })
local t0 = os.clock()
local asap = plume.asap(lm, L, { samples = 4 * N, max_tokens = MAX, seed = 3 })
local asap_late = table.move(asap.texts, 3 * N + 1, 4 * N, 1, {})   -- the last N of 4N samples
local t_asap = os.clock() - t0

local gen = plume.model(function(m)
  local ctx = lm:context("")
  for t = 1, MAX + 1 do
    m:observe("ok" .. t, ctx:mask(L, { final = t > MAX }), true)
    if lm:is_eos(m:sample("tok" .. t, ctx:next_token())) then break end
  end
  return ctx:text()
end)
local post = plume.smc(gen, {}, { particles = 3 * N, seed = 4, quiet = true })
local w = {}
for i = 1, 3 * N do w[i] = math.exp(post.log_weights[i]) end

print(string.format("\n%-22s %14s %22s", "sampler", "words/fortune", "\"words\" = true count"))
for _, row in ipairs({ { "rejection (exact)", free }, { "masked decoding", masked.texts }, { "ASAp (last 300)", asap_late },
                       { string.format("SMC (ESS %.0f)", post.ess), post.values, w } }) do
  local len, agree = stats(row[2], row[3])
  print(string.format("%-22s %14.2f %21.1f%%", row[1], len, 100 * agree))
end
print(string.format("P(L): rejection %.3f, ASAp's upper bound after %d samples %.3f, SMC exp(logz) %.3f",
  kept / tries, 4 * N, asap.mass, math.exp(post.logz)))
print(string.format("ASAp: %.2f s CPU for %d samples, %d trie nodes; its bound on P(L) after 1, 10, 100, 1200 samples:"
  .. " %.3f %.3f %.3f %.3f", t_asap, 4 * N, asap.nodes, asap.mass_history[1], asap.mass_history[10],
  asap.mass_history[100], asap.mass_history[4 * N]))
-- ASAp's estimates start at the mask's optimism (every allowed token counts as certain to end well) and come
-- down only where samples have been: on a space this broad it needs far more samples than SMC particles
print("\nmasked decoding:")
for i = 1, 3 do print("  " .. tostring(masked.texts[i])) end
print("ASAp:")
for i = 4 * N - 2, 4 * N do print("  " .. asap.texts[i]) end

-- the tiny GGUF: random weights, byte-level tokens; its text is noise, but it is valid JSON of the schema
local ok, why = plume.lm.available()
if not ok then
  print("\n(tiny GGUF skipped: " .. tostring(why) .. ")")
  return
end
local path = os.tmpname() .. ".gguf"
plume.lm.write_tiny_gguf(path, { n_embd = 32, n_layer = 1, n_head = 2, n_ff = 64, ctx = 256, seed = 1 })
local tiny = plume.lm.llama { model = path, ctx = 512, seqs = 4, threads = 1 }
-- a finite language (booleans and an enum, no white space), so that no text runs past max_tokens
local S = plume.json_schema({ type = "object", required = { "ok", "size" },
  properties = { ok = { type = "boolean" }, size = { enum = { "S", "M", "L" } } } }, { whitespace = false })
local r = plume.masked_decode(tiny, S, { samples = 2, max_tokens = 48, seed = 1 })
print("\ntiny GGUF, masked decoding:")
for i = 1, 2 do print("  " .. tostring(r.texts[i])) end
os.remove(path)
