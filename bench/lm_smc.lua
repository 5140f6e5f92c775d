-- lm_smc.lua -- plume.smc over a language-model program: per-token overhead of plume itself (scheduler,
-- coroutines, replay, resampling, distributions) apart from llama_decode, on a 27.5M-parameter random GGUF,
-- 64 particles x 32 tokens, and the same SMC with a naive scheduler that re-evaluates every particle's whole
-- prefix at every step (stateless calls, no KV reuse), measured side by side.
-- usage: build/plume bench/lm_smc.lua [threads] [naive]   (the naive baseline takes minutes: ask for it)
if not plume.lm.available() then print("lm_smc: llama.cpp not available; skipped") return end
local threads = tonumber(arg and arg[1]) or 1
local N, TOK = 64, 32
local path = os.tmpname() .. ".gguf"
plume.lm.write_tiny_gguf(path, { n_embd = 512, n_layer = 8, n_head = 8, n_ff = 1536, ctx = 512, seed = 3 })

local function potential(tok) return (tok >= 97 and tok <= 122 or tok == 32) and 0 or -2 end   -- favour a-z, space

local story = plume.model(function(m, lm, prompt)
  local ctx = lm:context(prompt)
  for t = 1, TOK do
    local tok = m:sample("t" .. t, ctx:next_token())   -- EOS is not special here: every particle makes TOK tokens
    m:factor(potential(tok))
  end
  return ctx:len()
end)

local function wall()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l")); p:close(); return t
end

-- 1. plume.smc with KV sequences, batched decoding, forks on resampling
local lm = plume.lm.llama { model = path, ctx = 8192, seqs = N + 8, threads = threads }
local s0 = lm:stats()
local t0 = wall()
local post = plume.smc(story, { lm, "Once upon a time" }, { particles = N, seed = 1, quiet = true })
local t1 = wall()
local s1 = lm:stats()
local tokens = N * TOK
local dec = s1.decode_seconds - s0.decode_seconds
local total = t1 - t0
print(string.format("plume.smc (KV forks, batched): %d particles x %d tokens in %.2f s = %.1f tok/s, %d resampling steps", N, TOK, total, tokens / total, post.resamples))
print(string.format("  llama_decode: %.2f s in %d calls (%d tokens); plume's own time %.3f s = %.1f%% of decode time",
  dec, s1.decode_calls - s0.decode_calls, s1.decode_tokens - s0.decode_tokens, total - dec, 100 * (total - dec) / dec))

if arg[2] ~= "naive" then os.remove(path) return end

-- 2. naive SMC: every step, every particle's whole context is evaluated from scratch (no KV, no cache)
local naive_lm = plume.lm.llama { model = path, ctx = 8192, seqs = 8, threads = threads, cache = false, no_prefix_reuse = true }
local prompt = naive_lm:tokenize("Once upon a time")
local parts, logw = {}, {}
for i = 1, N do parts[i] = { table.unpack(prompt) }; logw[i] = 0 end
plume.seed(1)
local t2 = wall()
local ntok = 0
for t = 1, TOK do
  local rows = {}
  for i = 1, N do rows[i] = naive_lm:next_logprobs(parts[i]) end       -- one full evaluation per particle
  for i = 1, N do
    local d = plume.dist.categorical_logits(rows[i], { base = 0 })
    local tok = d:sample()
    parts[i][#parts[i] + 1] = tok
    logw[i] = logw[i] + potential(tok)
    ntok = ntok + 1
  end
  -- multinomial resampling every step
  local m = -math.huge
  for i = 1, N do if logw[i] > m then m = logw[i] end end
  local w = {}
  for i = 1, N do w[i] = math.exp(logw[i] - m) end
  local s = 0 for i = 1, N do s = s + w[i] end
  for i = 1, N do w[i] = w[i] / s end
  local pick = plume.dist.categorical(w):sample(N)
  local np = {}
  for i = 1, N do np[i] = { table.unpack(parts[pick[i]]) }; logw[i] = 0 end
  parts = np
end
local t3 = wall()
print(string.format("naive SMC (re-evaluate each prefix every step): %d tokens in %.2f s = %.1f tok/s", ntok, t3 - t2, ntok / (t3 - t2)))
print(string.format("speed-up of plume.smc over naive: %.1fx", (tokens / total) / (ntok / (t3 - t2))))
os.remove(path)
