-- lm_smc_tiny.lua -- SMC steering of a real transformer: plume writes a tiny llama-architecture GGUF with
-- random weights and a byte-level tokenizer, loads it in-process through llama.cpp, and runs sequential Monte
-- Carlo over a program that samples 24 tokens under a potential favouring lowercase letters and spaces.
-- Every step, all particles' next tokens come from one batched decode; resampling forks KV sequences.
local have_llama, why_not = plume.lm.available()
if not have_llama then
  print("SKIP example lm_smc_tiny: llama.cpp is not available here (" .. why_not .. "; scripts/deps.sh fetches it from npm)")
  return
end

local path = os.tmpname() .. ".gguf"
plume.lm.write_tiny_gguf(path, { n_embd = 64, n_layer = 2, n_head = 4, n_ff = 128, ctx = 256, seed = 7 })
local lm = plume.lm.llama { model = path, ctx = 4096, seqs = 64, threads = 1 }
print(lm)

local function lowercase_or_space(lm, tok)
  local s = lm:detokenize { tok }
  return s:match("^[a-z ]$") ~= nil
end

local story = plume.model(function(m, lm, prompt)
  local ctx = lm:context(prompt)
  for t = 1, 24 do
    local tok = m:sample("tok" .. t, ctx:next_token())
    if lm:is_eos(tok) then break end
    m:factor(lowercase_or_space(lm, tok) and 0 or -3)    -- the potential
  end
  return ctx:text()
end)

local t0 = os.clock()
local post = plume.smc(story, { lm, "Once upon a time" }, { particles = 32, ess_threshold = 0.5, seed = 1 })
local secs = os.clock() - t0
local best, bw = nil, -math.huge
local lower = 0
for i = 1, post.particles do
  local text = post.values[i]
  if text and post.log_weights[i] > bw then best, bw = text, post.log_weights[i] end
  if text then
    local n = 0
    for _ in text:gmatch("[a-z ]") do n = n + 1 end
    lower = lower + math.exp(post.log_weights[i]) * n / math.max(1, #text)
  end
end
print(string.format("log evidence %.3f, final ESS %.1f, %d steps, %d with resampling, %.2f s", post.logz, post.ess, post.steps, post.resamples, secs))
print(string.format("weighted share of lowercase/space characters: %.2f (random weights alone give about %.2f)", lower, 27 / 258))
print("heaviest particle: " .. string.format("%q", best))
os.remove(path)
