-- plume.cascade -- language-model cascades as probabilistic programs (Dohan et al., "Language Model
-- Cascades"): scratchpads with the thought latent, self-consistency, verifiers, STaR, selection-inference
-- and tool use. Each builder returns a plume.model, so every inference method applies (plume.smc, "is",
-- "prior"); the helpers that run inference themselves (self_consistency, star) say so.
--
--   local cascade = require "plume.cascade"
--   local cot = cascade.scratchpad{ lm = lm }
--   local post = plume.smc(cot, { "What is 2 plus 3?" }, { particles = 32 })
local cascade = {}

local function check(opts, who)
  if type(opts) ~= "table" then error(who .. ": expected an options table (got " .. type(opts) .. ")", 3) end
  if opts.lm == nil then error(who .. ": option 'lm' (a plume.lm model) is required", 3) end
  return opts
end

local function as_list(s)
  if s == nil then return {} end
  if type(s) == "string" then return { s } end
  return s
end

--- cascade.generate(m, ctx, name, {max_tokens = 32, stop = "\n" or {...}, at_max = "eos"}) -> text, why
--- Sample tokens as random choices name.."1", name.."2", ... until EOS ("eos"), a stop string ("stop": the
--- text is cut before it) or max_tokens ("max_tokens"). When the cap is reached without EOS, the default
--- at_max = "eos" corrects the weight as if the model had ended the text there: m:factor(log P(EOS | text)),
--- so the program targets texts that end within the cap; at_max = "truncate" keeps the prefix unweighted.
function cascade.generate(m, ctx, name, opts)
  opts = opts or {}
  local lm = ctx:model()
  local stops = as_list(opts.stop)
  local start = ctx:len()
  local max = opts.max_tokens or 32
  for i = 1, max do
    local tok = m:sample(name .. i, ctx:next_token())
    if lm:is_eos(tok) then
      return lm:detokenize({ table.unpack(ctx:tokens(), start + 1, ctx:len() - 1) }), "eos"
    end
    local text = lm:detokenize({ table.unpack(ctx:tokens(), start + 1) })
    for _, s in ipairs(stops) do
      local at = text:find(s, 1, true)
      if at then return text:sub(1, at - 1), "stop" end
    end
  end
  if (opts.at_max or "eos") == "eos" then
    local d, p = ctx:next_token(), 0
    for _, e in ipairs(lm.eos) do p = p + math.exp(d:logpdf(e)) end
    m:factor(p > 0 and math.log(p) or -math.huge)
  end
  return lm:detokenize({ table.unpack(ctx:tokens(), start + 1) }), "max_tokens"
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

--- cascade.scratchpad{lm =, prompt = function(question) ... end, thought_tokens = 48, answer_tokens = 8,
---   thought_stop = "\n", answer_prefix = "\nA:", answer_stop = "\n", at_max = "eos"} -> model(m, question) returning
--- {thought =, answer =}: chain of thought with the thought a latent variable.
function cascade.scratchpad(opts)
  check(opts, "cascade.scratchpad")
  local prompt = opts.prompt or function(q) return "Q: " .. q .. "\nThought:" end
  return plume.model(function(m, question)
    local ctx = opts.lm:context(prompt(question))
    local thought = cascade.generate(m, ctx, "thought", { max_tokens = opts.thought_tokens or 48,
      stop = opts.thought_stop or "\n", at_max = opts.at_max })
    ctx:append_text(opts.answer_prefix or "\nA:")
    local answer = cascade.generate(m, ctx, "answer", { max_tokens = opts.answer_tokens or 8,
      stop = opts.answer_stop or "\n", at_max = opts.at_max })
    return { thought = trim(thought), answer = trim(answer) }
  end)
end

--- cascade.self_consistency(model, question, {samples = 32, seed =, method = "prior"}) -> {answer -> probability},
--- most_likely_answer: the answer marginalised over sampled thoughts (runs plume.infer itself).
function cascade.self_consistency(model, question, opts)
  opts = opts or {}
  local post = plume.infer(model, question, { method = opts.method or "prior", samples = opts.samples or 32,
    seed = opts.seed, quiet = true })
  local w = post:weights()
  local dist, best, bestp = {}, nil, -1
  for i, v in ipairs(post.values) do
    local a = type(v) == "table" and v.answer or v
    dist[a] = (dist[a] or 0) + (w and w[i] or 1 / #post.values)
  end
  -- ties go to the smaller answer string, so the result does not depend on table iteration order
  for a, p in pairs(dist) do
    if p > bestp or (p == bestp and tostring(a) < tostring(best)) then best, bestp = a, p end
  end
  return dist, best
end

--- cascade.verified{lm =, generator = model, verifier_prompt = function(question, out) ... end,
---   accept = " yes"} -> model(m, question): the generator's output conditioned on a verifier (an LM
--- asked whether it is right) accepting it: the factor is log p(accept | verifier prompt).
function cascade.verified(opts)
  check(opts, "cascade.verified")
  local gen = opts.generator or cascade.scratchpad(opts)
  local vprompt = opts.verifier_prompt or function(q, out)
    return "Q: " .. q .. "\nA: " .. (type(out) == "table" and out.answer or tostring(out)) .. "\nIs this answer correct?"
  end
  local accept = opts.accept or " yes"
  return plume.model(function(m, question)
    local out = gen.fn(m, question)
    local v = opts.lm:context(vprompt(question, out))
    v:observe_text(accept, m)
    return out
  end)
end

--- cascade.star{lm =, data = {{question =, answer =}, ...}, samples = 8, seed =, prompt =, hint =}
--- -> a fine-tuning set {{question =, rationale =, answer =, rationalized = bool}, ...}: STaR's rejection
--- sampling of rationales whose answers match the gold labels; for questions with none, the answer-hinted
--- rationalization proposal (the hint is shown while sampling and left out of the kept example).
function cascade.star(opts)
  check(opts, "cascade.star")
  if type(opts.data) ~= "table" then error("cascade.star: option 'data' must be a list of {question =, answer =}", 2) end
  local plain = cascade.scratchpad(opts)
  local hint = opts.hint or function(q, a) return "Q: " .. q .. " (the answer is " .. a .. ")\nThought:" end
  local out = {}
  for k, ex in ipairs(opts.data) do
    local function matches(v) return v and trim(v.answer) == trim(tostring(ex.answer)) end
    local post = plume.infer(plain, ex.question, { method = "prior", samples = opts.samples or 8,
      seed = (opts.seed or 1) * 1000 + k, quiet = true })
    local kept
    for _, v in ipairs(post.values) do if matches(v) then kept = v; break end end
    local rationalized = false
    if not kept then
      local hinted = cascade.scratchpad { lm = opts.lm, prompt = function(q) return hint(q, tostring(ex.answer)) end,
        thought_tokens = opts.thought_tokens, answer_tokens = opts.answer_tokens }
      post = plume.infer(hinted, ex.question, { method = "prior", samples = opts.samples or 8,
        seed = (opts.seed or 1) * 1000 + k + 500, quiet = true })
      for _, v in ipairs(post.values) do if matches(v) then kept = v; rationalized = true; break end end
    end
    if kept then
      out[#out + 1] = { question = ex.question, rationale = kept.thought, answer = kept.answer, rationalized = rationalized }
    end
  end
  return out
end

--- cascade.selection_inference{lm =, steps = 2, select_tokens = 16, infer_tokens = 16} -> model(m, facts,
--- question) returning {facts = {...}, answer =}: alternate a selection module (pick facts relevant to the
--- question) and an inference module (derive a new fact from the selection), then answer.
function cascade.selection_inference(opts)
  check(opts, "cascade.selection_inference")
  return plume.model(function(m, facts, question)
    facts = { table.unpack(facts) }
    for step = 1, opts.steps or 2 do
      local sel = opts.lm:context("Facts: " .. table.concat(facts, ". ") .. "\nQuestion: " .. question .. "\nRelevant:")
      local chosen = cascade.generate(m, sel, "select" .. step .. "_", { max_tokens = opts.select_tokens or 16, stop = "\n" })
      local inf = opts.lm:context("Facts: " .. chosen .. "\nTherefore:")
      local new = cascade.generate(m, inf, "infer" .. step .. "_", { max_tokens = opts.infer_tokens or 16, stop = "\n" })
      facts[#facts + 1] = trim(new)
    end
    local ans = opts.lm:context("Facts: " .. table.concat(facts, ". ") .. "\nQuestion: " .. question .. "\nAnswer:")
    return { facts = facts, answer = trim(cascade.generate(m, ans, "answer", { max_tokens = opts.answer_tokens or 8, stop = "\n" })) }
  end)
end

--- cascade.tool_use{lm =, tools = {calc = function(args) ... end}, prompt =, max_tokens = 64, max_calls = 4,
---   call = "(%w+)%s*%((.-)%)%s*=$"} -> model(m, question) returning {text =, calls = {...}}: generation in
--- which a call "name(args) =" written by the LM is answered by running the tool (a Lua function, or a
--- native function from plume.native) and forcing its result into the context.
function cascade.tool_use(opts)
  check(opts, "cascade.tool_use")
  local tools = opts.tools or {}
  local pattern = opts.call or "(%w+)%s*%((.-)%)%s*=$"
  local prompt = opts.prompt or function(q) return "Q: " .. q .. "\nA:" end
  return plume.model(function(m, question)
    local ctx = opts.lm:context(prompt(question))
    local lm, calls, start = ctx:model(), {}, ctx:len()
    for i = 1, opts.max_tokens or 64 do
      local tok = m:sample("tok" .. i, ctx:next_token())
      if lm:is_eos(tok) then break end
      local text = lm:detokenize({ table.unpack(ctx:tokens(), start + 1) })
      local name, args = text:match(pattern)
      if name and tools[name] and #calls < (opts.max_calls or 4) then
        local ok, result = pcall(tools[name], args)
        result = ok and tostring(result) or "error"
        calls[#calls + 1] = { tool = name, args = args, result = result }
        ctx:append_text(" " .. result)
      end
    end
    local text = lm:detokenize({ table.unpack(ctx:tokens(), start + 1) })
    return { text = trim(text), calls = calls }
  end)
end

--- cascade.calculator(expr) -> number: a safe arithmetic tool (digits, + - * / ^ ( ) . and spaces only).
function cascade.calculator(expr)
  if type(expr) ~= "string" or not expr:match("^[%d%s%+%-%*/%^%(%)%.]+$") then error("calculator: not arithmetic: " .. tostring(expr)) end
  local f = load("return " .. expr, "=calculator", "t", {})
  local v = f and f()
  if type(v) ~= "number" then error("calculator: not a number") end
  if math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 2 ^ 53 then v = math.tointeger(v) end
  return v
end

return cascade
