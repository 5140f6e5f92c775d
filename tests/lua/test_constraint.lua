-- test_constraint.lua -- constrained generation against exact answers by enumeration on a 3-word bigram model:
-- locally masked decoding follows its own (exactly computed) distribution, which is far from p(s | s in L);
-- ASAp converges to p(s | s in L) (total variation shrinking with samples, its mass estimate to P(L)); SMC with
-- ctx:mask(constraint) as the potential gets p(s | s in L) and log P(L). Also: masks from the grammar recogniser
-- equal a token-by-token check, the JSON grammar agrees with plume.json.decode, JSON-schema outputs parse and
-- match the schema (n-gram and, when llama.cpp is present, the tiny byte-level GGUF), and errors.
local T = dofile("tests/lua/check.lua")

-- "a" is the likely first word, but texts in L must end with " c", which rarely follows "a"
local corpus = "a a\na a a\na\na a\nb c\na c\nc\nb b c\na b\na a a a\nb\n"
local lm = plume.lm.ngram.train { text = corpus, order = 2 }
local K = 4
local L = plume.regex("( a| b)*( c)")

local function key(text) return (text:gsub("^ ", "")) end

-- every text of at most K words (a, b, c) with its model probability (EOS included)
local words = { " a", " b", " c" }
local function enumerate(fn)
  local function rec(text, toks, depth)
    fn(text, toks, depth)
    if depth == K then return end
    for _, w in ipairs(words) do
      local t2 = { table.unpack(toks) }
      t2[#t2 + 1] = lm:tokenize(w)[1]
      rec(text .. w, t2, depth + 1)
    end
  end
  rec("", {}, 0)
end
local EOS = lm.eos[1]

local function logp_text(toks)
  local lp, ctx = 0, {}
  for _, t in ipairs(toks) do
    lp = lp + lm:next_logprobs(ctx)[t + 1]
    ctx[#ctx + 1] = t
  end
  return lp + lm:next_logprobs(ctx)[EOS + 1]
end

-- the target p(s | s in L, |s| <= K), and the exact distribution of locally masked decoding (given success)
local target, Z = {}, 0
local masked, masked_ok = {}, 0
enumerate(function(text, toks, depth)
  if L:matches(text) then
    local p = math.exp(logp_text(toks))
    target[key(text)] = p
    Z = Z + p
  end
  -- masked decoding: each step renormalised over the allowed tokens; past K only EOS
  local q, ctx, prefix = 1, {}, ""
  for i = 0, #toks do
    local row = lm:next_logprobs(ctx)
    local allowed = i == K and (L:matches(prefix) and { EOS } or {}) or L:allowed(lm, prefix)
    local z = 0
    for _, v in ipairs(allowed) do z = z + math.exp(row[v + 1]) end
    local v = toks[i + 1] or EOS
    local ok = false
    for _, u in ipairs(allowed) do ok = ok or u == v end
    if not ok then q = 0; break end
    q = q * math.exp(row[v + 1]) / z
    if v == EOS then break end
    ctx[#ctx + 1] = v
    prefix = prefix .. lm:detokenize({ v }):gsub("^(%S)", " %1")
  end
  if q > 0 then masked[key(text)] = q; masked_ok = masked_ok + q end
end)
for k, p in pairs(target) do target[k] = p / Z end
for k, q in pairs(masked) do masked[k] = q / masked_ok end

local function tv(p, q)
  local d, seen = 0, {}
  for k, v in pairs(p) do d = d + math.abs(v - (q[k] or 0)); seen[k] = true end
  for k, v in pairs(q) do if not seen[k] then d = d + math.abs(v) end end
  return d / 2
end

local function freqs(texts, n, weights)
  local f, tot = {}, 0
  for i = 1, n do
    if texts[i] then
      local w = weights and weights[i] or 1
      f[key(texts[i])] = (f[key(texts[i])] or 0) + w
      tot = tot + w
    end
  end
  for k, v in pairs(f) do f[k] = v / tot end
  return f
end

-- the expected total variation of an empirical distribution of N exact draws from p (a bound on MC error)
local function mc_tv(p, N)
  local s = 0
  for _, v in pairs(p) do s = s + math.sqrt(v * (1 - v) / N) end
  return 0.5 * s * math.sqrt(2 / math.pi)
end

T.test("masked_decoding_distorts_the_target", function()
  local d = tv(masked, target)
  T.ok(d > 0.15, "exact TV(masked, target) = " .. d .. " should show the distortion")
  local N = 4000
  local r = plume.masked_decode(lm, L, { samples = N, max_tokens = K, seed = 3 })
  local emp = freqs(r.texts, N)
  local e_masked, e_target = tv(emp, masked), tv(emp, target)
  -- the sampler follows its own exact law (within 3x its expected MC error), not the target
  T.ok(e_masked < 3 * mc_tv(masked, N - r.failed), "TV(masked samples, masked law) = " .. e_masked)
  T.ok(e_target > d - 3 * mc_tv(masked, N - r.failed), "TV(masked samples, target) = " .. e_target)
  for i = 1, N do if r.texts[i] then T.ok(L:matches(r.texts[i]), "masked output in L: " .. r.texts[i]) end end
end)

T.test("asap_converges_to_the_target", function()
  local N = 3000
  local r = plume.asap(lm, L, { samples = N, max_tokens = K, seed = 5 })
  for i = 1, N do T.ok(L:matches(r.texts[i]), "asap output in L: " .. r.texts[i]) end
  local early, late = {}, {}
  for i = 1, 300 do early[i] = r.texts[i] end
  for i = N - 1999, N do late[#late + 1] = r.texts[i] end
  local tv_early, tv_late = tv(freqs(early, 300), target), tv(freqs(late, 2000), target)
  local bound = 3 * mc_tv(target, 2000)
  T.ok(tv_late < tv_early, string.format("TV shrinks: %.4f (first 300) -> %.4f (last 2000)", tv_early, tv_late))
  T.ok(tv_late < bound, string.format("TV of the last 2000 samples %.4f < 3 x MC error %.4f", tv_late, bound))
  -- EFG(root) is an upper bound on P(L) that has come down to it
  T.ok(r.mass >= Z - 1e-12, "mass " .. r.mass .. " >= P(L) " .. Z)
  T.near(r.mass, Z, 1e-3 * Z, "ASAp's estimate of P(L)")
  for i = 2, N do T.ok(r.mass_history[i] <= r.mass_history[i - 1] + 1e-12, "the bound never rises") end
  T.eq(r.mass_history[N], r.mass, "history ends at mass")
  -- logq is the sampler's own law: p(s) / q(s) ~ a ratio that tends to P(L) for the late samples
  T.near(math.exp(r.logp[N] - r.logq[N]), Z, 1e-3 * Z, "p(s)/q(s) of a late sample")
end)

T.test("smc_with_constraint_potential_gets_target_and_evidence", function()
  local prog = plume.model(function(m)
    local ctx = lm:context("")
    for t = 1, K + 1 do
      m:observe("ok" .. t, ctx:mask(L, { final = t > K }), true)
      local tok = m:sample("tok" .. t, ctx:next_token())
      if lm:is_eos(tok) then break end
    end
    return ctx:text()
  end)
  local N = 2000
  local post = plume.smc(prog, {}, { particles = N, seed = 2, quiet = true })
  local w = {}
  for i = 1, N do w[i] = math.exp(post.log_weights[i]) end
  local emp = freqs(post.values, N, w)
  for k in pairs(emp) do T.ok(target[k], "SMC output outside L: " .. k) end
  local d = tv(emp, target)
  T.ok(d < 3 * mc_tv(target, N) + 0.02, "TV(SMC, target) = " .. d)
  T.near(post.logz, math.log(Z), 0.05, "SMC log evidence = log P(L)")
end)

T.test("smc_with_a_zero_or_minus_inf_potential", function()
  -- the plain potential (ctx:check): blind proposals, dead particles weighted -inf; same target, more variance
  local prog = plume.model(function(m)
    local ctx = lm:context("")
    for t = 1, K + 1 do
      local tok = m:sample("tok" .. t, ctx:next_token())
      if lm:is_eos(tok) then m:factor(ctx:check(L) == "accept" and 0 or -math.huge) break end
      m:factor((t > K or ctx:check(L) == "dead") and -math.huge or 0)
    end
    return ctx:text()
  end)
  local N = 4000
  local post = plume.smc(prog, {}, { particles = N, seed = 7, quiet = true })
  local w = {}
  for i = 1, N do w[i] = math.exp(post.log_weights[i]) end
  local d = tv(freqs(post.values, N, w), target)
  T.ok(d < 3 * mc_tv(target, N) + 0.03, "TV(SMC with a 0/-inf potential, target) = " .. d)
  T.near(post.logz, math.log(Z), 0.08, "log evidence = log P(L)")
  local ctx = lm:context("")
  T.eq(ctx:check(L), "alive", "empty text")
  ctx:append_text("a c")
  T.eq(ctx:check(L), "accept", "' a c'")
  ctx:append_text("c a")
  T.eq(ctx:check(L), "dead", "' a c c a'")
end)

T.test("grammar_masks_equal_token_by_token_check", function()
  local g = plume.grammar('root ::= (" a" | " b")+ " c"? | " c" " c"*')
  for _, prefix in ipairs({ "", " a", " a b", " c", " c c", " b x" }) do
    local allowed = {}
    for _, v in ipairs(g:allowed(lm, prefix)) do allowed[v] = true end
    for v = 0, lm.n_vocab - 1 do
      local bytes = lm:detokenize({ v })
      local want
      if lm:is_eos(v) then want = g:matches(prefix)
      elseif bytes == "" or v == lm.bos then want = false
      else want = g:check(prefix .. " " .. bytes) ~= "dead" end
      T.eq(allowed[v] or false, want, "token " .. v .. " after '" .. prefix .. "'")
    end
  end
end)

T.test("json_grammar_agrees_with_json_decode", function()
  local J = plume.grammar.json
  local valid = { '{}', '[]', '{"a": 1}', ' [1, -2.5e+3, true, false, null, "x\\n\\u00e9"] ', '{"a": {"b": [[]]}}', '"s"',
    '0', '-0.0', '1e5', '\n{ "k" : [ ] }\t' }
  -- invalid by RFC 8259; cJSON (behind plume.json.decode) is lenient on the first three
  local invalid = { '01', '1.', '"a\tb"', '.5', '{"a" 1}', '[1,]', '{"a":1,}', '"\\q"', '[1 2]', 'tru', '{"a":[}', '-', '' }
  for _, s in ipairs(valid) do
    T.ok(pcall(plume.json.decode, s), "json.decode takes " .. s)
    T.eq(J:matches(s), true, "json grammar on " .. s)
  end
  for i, s in ipairs(invalid) do
    if i > 3 then T.ok(not pcall(plume.json.decode, s), "json.decode refuses " .. s) end
    T.eq(J:matches(s), false, "json grammar on " .. s)
  end
  T.eq(J:check('{"a": [1, {"b'), "alive", "a prefix of JSON")
  T.eq(J:check('{"a": ]'), "dead", "not a prefix")
end)

-- a schema checker for the outputs
local schema = { type = "object", properties = { name = { type = "string" }, age = { type = "integer" },
  pets = { type = "array", items = { enum = { "cat", "dog" } }, maxItems = 2 } }, required = { "name", "age" } }
local function conforms(v)
  if type(v) ~= "table" or type(v.name) ~= "string" or math.type(v.age) ~= "integer" then return false end
  for k in pairs(v) do if not schema.properties[k] then return false end end
  if v.pets ~= nil then
    if type(v.pets) ~= "table" or #v.pets > 2 then return false end
    for _, p in ipairs(v.pets) do if p ~= "cat" and p ~= "dog" then return false end end
  end
  return true
end

T.test("json_schema_outputs_parse_and_match", function()
  local S, text = plume.json_schema(schema)
  T.ok(text:find("root ::="), "the grammar text is returned")
  T.ok(S:matches('{"name": "x", "age": 3}') and not S:matches('{"age": 3}') and not S:matches('{"name": "x", "age": 3.5}'),
    "schema grammar spot checks")
  -- a word model trained on JSON records (tokens separated by spaces), sometimes off-schema
  local recs = "{ \"name\" : \"bob\" , \"age\" : 3 }\n{ \"name\" : \"ann\" , \"age\" : 41 , \"pets\" : [ \"cat\" ] }\n" ..
    "{ \"age\" : 7 }\n{ \"name\" : \"eve\" , \"pets\" : [ \"dog\" , \"cat\" , \"dog\" ] }\n{ \"name\" : 3 }\n"
  local jl = plume.lm.ngram.train { text = recs, order = 3 }
  for _, sampler in ipairs({ plume.masked_decode, plume.asap }) do
    local r = sampler(jl, S, { samples = 50, max_tokens = 24, seed = 1 })
    local good = 0
    for i = 1, 50 do
      if r.texts[i] then
        local ok, v = pcall(plume.json.decode, r.texts[i])
        T.ok(ok and conforms(v), "output parses and matches the schema: " .. r.texts[i])
        good = good + 1
      end
    end
    T.ok(good > 0, "some outputs")
  end
  T.raises(function() plume.json_schema { type = "tuple" } end, "plume.json_schema: /: unsupported type 'tuple'")
  T.raises(function() plume.json_schema { type = "object", properties = { a = { type = "date" } } } end,
    "/properties/a: unsupported type 'date'")
  T.raises(function() plume.json_schema('{"type": ') end, "the schema is not JSON")
  T.raises(function() plume.json_schema { type = "string", pattern = "^a" } end, "/: keyword 'pattern' is not supported")
  local S2 = plume.json_schema { type = "array", items = { type = "string", minLength = 1, maxLength = 2 }, maxItems = 2 }
  for text, want in pairs({ ['["a", "bc"]'] = true, ['[]'] = true, ['[""]'] = false, ['["abc"]'] = false,
                            ['["a","b","c"]'] = false, ['["\\n"]'] = true }) do
    T.eq(S2:matches(text), want, "minLength/maxLength/maxItems on " .. text)
  end
end)

T.test("json_on_the_tiny_byte_level_gguf", function()
  local ok, why = plume.lm.available()
  if not ok then print("SKIP json_on_the_tiny_byte_level_gguf: " .. tostring(why)) return end
  local path = os.tmpname() .. ".gguf"
  plume.lm.write_tiny_gguf(path, { n_embd = 32, n_layer = 1, n_head = 2, n_ff = 64, ctx = 128, seed = 1 })
  local tl = plume.lm.llama { model = path, ctx = 256, seqs = 4, threads = 1 }
  local S = plume.json_schema { type = "object", properties = { ok = { type = "boolean" }, n = { type = "integer" } },
    required = { "ok", "n" } }
  local r = plume.masked_decode(tl, S, { samples = 4, max_tokens = 40, seed = 2 })
  for i = 1, 4 do
    if r.texts[i] then
      local okj, v = pcall(plume.json.decode, r.texts[i])
      T.ok(okj and type(v.ok) == "boolean" and math.type(v.n) == "integer", "tiny gguf JSON: " .. r.texts[i])
    end
  end
  os.remove(path)
end)

T.test("errors", function()
  T.raises(function() plume.regex("a(b") end, "plume.regex: position 2: unclosed '('")
  T.raises(function() plume.regex("a{2,1}") end, "n must be at least m")
  T.raises(function() plume.grammar("root ::= \"a\"\nb ::= c\n") end, "plume.grammar: line 2, column 7: undefined rule 'c'")
  T.raises(function() plume.grammar(5) end, "plume.grammar: the grammar must be a string")
  T.raises(function() plume.asap(lm, "x") end, "plume.asap: expected a constraint")
  T.raises(function() plume.asap(lm, L, { sample = 3 }) end, "unknown option 'sample'")
  T.raises(function() plume.masked_decode(lm, L, { max_tokens = 0 }) end, "option 'max_tokens' must be in 1..1e5 (got 0)")
  T.raises(function() plume.asap(lm, plume.regex(" zzz"), { max_tokens = 2 }) end, "asap: no text of at most 2 tokens")
  local ctx = lm:context("")
  T.raises(function() ctx:mask(5) end, "ctx:mask: allowed must be a list of token ids or a constraint")
end)
