-- test_cascade.lua -- plume.cascade: generation with the max-tokens weight correction (exact against
-- enumeration), tool calls through Lua and native (libffi) functions, scratchpad/self-consistency, verifiers,
-- STaR and selection-inference as runnable programs.
local T = dofile("tests/lua/check.lua")
local cascade = require "plume.cascade"

local lm = plume.lm.ngram.train { text = "a b c a b a c b a a b c c a d a b d", order = 2 }

-- With the correction, the evidence of "generate at most 2 tokens" is P(the text ends within 2 tokens).
T.test("forced_stop_at_max_tokens_is_weighted_by_the_eos_probability", function()
  local model = plume.model(function(m)
    local ctx = lm:context("b")
    local text, why = cascade.generate(m, ctx, "t", { max_tokens = 2 })
    return why
  end)
  local exact = 0
  local row1 = lm:next_logprobs(lm:tokenize("b"))
  for v = 0, lm.n_vocab - 1 do
    local p1 = math.exp(row1[v + 1])
    if p1 > 0 then
      if lm:is_eos(v) then exact = exact + p1
      else
        local row2 = lm:next_logprobs { lm:tokenize("b")[1], v }
        for w = 0, lm.n_vocab - 1 do
          local p2 = math.exp(row2[w + 1])
          if lm:is_eos(w) then exact = exact + p1 * p2
          elseif p2 > 0 then
            local row3 = lm:next_logprobs { lm:tokenize("b")[1], v, w }
            for _, e in ipairs(lm.eos) do exact = exact + p1 * p2 * math.exp(row3[e + 1]) end
          end
        end
      end
    end
  end
  local post = plume.infer(model, nil, { method = "is", samples = 20000, seed = 1 })
  local rel = math.sqrt(20000 / post:summary()["t1"].ess_bulk - 1) / math.sqrt(20000)
  T.near(post.logz, math.log(exact), 4 * rel + 1e-3, "log P(ends within 2 tokens)")
  local trunc = plume.model(function(m) cascade.generate(m, lm:context("b"), "t", { max_tokens = 2, at_max = "truncate" }) end)
  T.near(plume.infer(trunc, nil, { method = "is", samples = 100, seed = 1 }).logz, 0, 1e-12, "truncate: no weight")
end)

T.test("tools_run_as_lua_and_native_functions", function()
  local corpus = {}
  for i = 1, 20 do corpus[#corpus + 1] = "Q: power A: pow ( 2 , 10 ) = 1024 done" end
  local tlm = plume.lm.ngram.train { text = table.concat(corpus, "\n"), order = 3 }
  local cpow = plume.native { lib = "libm.so.6", name = "pow", sig = "double(double, double)" }
  local called = 0
  local function pow_tool(args)
    called = called + 1
    local a, b = args:match("(%d+)%s*,%s*(%d+)")
    return math.tointeger(cpow(tonumber(a), tonumber(b)))
  end
  local tool = cascade.tool_use { lm = tlm, tools = { pow = pow_tool }, max_tokens = 10,
    prompt = function(q) return "Q: " .. q .. " A:" end }
  local post = plume.infer(tool, "power", { method = "prior", samples = 20, seed = 2 })
  local ok = 0
  for _, v in ipairs(post.values) do
    if v.calls[1] and v.calls[1].result == "1024" then ok = ok + 1 end
  end
  T.ok(called > 0 and ok > 0, "the native tool answered " .. ok .. " calls")
  T.eq(cascade.calculator("2 * (3 + 4)"), 14)
  T.raises(function() cascade.calculator("os.exit()") end, "not arithmetic")
end)

T.test("cascades_are_programs_every_engine_runs", function()
  local cot = cascade.scratchpad { lm = lm, thought_tokens = 4, answer_tokens = 2, prompt = function(q) return q end,
    thought_stop = "d", answer_prefix = " a", answer_stop = "d", at_max = "truncate" }
  local dist, best = cascade.self_consistency(cot, "b", { samples = 50, seed = 3 })
  local total = 0
  for _, p in pairs(dist) do total = total + p end
  T.near(total, 1, 1e-9, "answer distribution sums to one")
  T.ok(dist[best] > 0, "best answer has mass")
  local verified = cascade.verified { lm = lm, generator = cot, verifier_prompt = function(q, out) return "a b" end, accept = " c" }
  local post = plume.smc(verified, { "b" }, { particles = 16, seed = 1 })
  T.near(post.logz, lm:logprob("a b", " c"), 1e-9, "the verifier's acceptance is the only factor")
  local si = cascade.selection_inference { lm = lm, steps = 1, select_tokens = 3, infer_tokens = 3, answer_tokens = 2 }
  local r = plume.infer(si, plume.args({ "a b", "b c" }, "c"), { method = "prior", samples = 3, seed = 1 })
  T.eq(#r.values[1].facts, 3, "one inferred fact added")
  local set = cascade.star { lm = lm, data = { { question = "b", answer = "a" } }, samples = 30, seed = 1,
    thought_tokens = 2, answer_tokens = 1, prompt = function(q) return q end }
  T.ok(#set <= 1, "at most one example per question")
  for _, ex in ipairs(set) do T.eq(ex.answer, "a", "kept rationales answer correctly") end
end)
