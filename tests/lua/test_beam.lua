-- test_beam.lua -- plume.beam: with a beam as wide as the hypothesis space it returns every hypothesis sorted by
-- its exact log joint; narrower beams prune as beam search does; on a language model it finds the most
-- probable continuation found by enumeration.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

local model = plume.model(function(m)
  local s = 0
  for i = 1, 3 do
    local z = m:sample("z" .. i, D.bernoulli(0.3))
    s = s + z * i
    m:factor(-0.5 * (s - 2) ^ 2)
  end
  return s
end)

-- exact log joint of every path, by enumeration
local exact = {}
for a = 0, 1 do for b = 0, 1 do for c = 0, 1 do
  local lp, s = 0, 0
  for i, z in ipairs { a, b, c } do
    lp = lp + (z == 1 and math.log(0.3) or math.log(0.7))
    s = s + z * i
    lp = lp - 0.5 * (s - 2) ^ 2
  end
  exact[#exact + 1] = lp
end end end
table.sort(exact, function(x, y) return x > y end)

T.test("a_full_beam_returns_every_path_sorted_by_exact_log_joint", function()
  local post = plume.beam(model, {}, { beams = 8 })
  T.eq(post.particles, 8)
  for i = 1, 8 do T.near(post.scores[i], exact[i], 1e-12, "rank " .. i) end
  local z = 0
  for i = 1, 8 do z = z + math.exp(post.log_weights[i]) end
  T.near(z, 1, 1e-12, "log weights are normalised scores")
end)

T.test("a_narrow_beam_prunes_like_beam_search", function()
  local post = plume.beam(model, {}, { beams = 2 })
  T.eq(post.particles, 2)
  T.near(post.scores[1], exact[1], 1e-12, "the best path survives")
  -- the second best path (0,1,0) starts with a poor first choice and is pruned at step 2
  T.ok(post.scores[2] < exact[2] - 1, "pruned: " .. post.scores[2])
end)

T.test("continuous_choices_are_sampled_not_branched", function()
  local mixed = plume.model(function(m)
    local x = m:sample("x", D.normal(0, 1))
    local z = m:sample("z", D.categorical { 0.2, 0.5, 0.3 })
    return z
  end)
  local post = plume.beam(mixed, {}, { beams = 3, seed = 1 })
  T.eq(post.particles, 3)
  T.eq(post.values[1], 2, "most probable category first")
  local xs = post:draws("x")
  T.eq(xs[1], xs[2], "copies share the continuous choice made before the branch")
end)

T.test("beam_over_an_lm_finds_the_most_probable_continuation", function()
  local lm = plume.lm.ngram.train { text = "a b c a b a c b a a b c c a d a b d", order = 2 }
  local gen = plume.model(function(m)
    local ctx = lm:context("b")
    for t = 1, 3 do
      local tok = m:sample("t" .. t, ctx:next_token())
      if lm:is_eos(tok) then break end
    end
    return ctx:text()
  end)
  -- enumeration of the best 3-token continuation (or shorter, ended by EOS)
  local best, bestlp = nil, -math.huge
  local function rec(toks, gen_toks, lp, depth)
    local row = lm:next_logprobs(toks)
    for v = 0, lm.n_vocab - 1 do
      local l = row[v + 1]
      if l > -math.huge then
        if lm:is_eos(v) or depth == 3 then
          local g = { table.unpack(gen_toks) }
          if not lm:is_eos(v) then g[#g + 1] = v end
          if lp + l > bestlp then best, bestlp = lm:detokenize(g), lp + l end
        else
          local t2, g2 = { table.unpack(toks) }, { table.unpack(gen_toks) }
          t2[#t2 + 1] = v; g2[#g2 + 1] = v
          rec(t2, g2, lp + l, depth + 1)
        end
      end
    end
  end
  rec(lm:tokenize("b"), {}, 0, 1)
  local post = plume.beam(gen, {}, { beams = 64 })
  T.eq(post.values[1], best)
  T.near(post.scores[1], bestlp, 1e-9)
end)

T.test("beam_errors_are_clear", function()
  T.raises(function() plume.beam(model, {}, { width = 3 }) end, "unknown option 'width'")
  T.raises(function() plume.beam(model, {}, { beams = 0 }) end, "option 'beams' must be in 1..100000")
  local dead = plume.model(function(m) m:sample("z", D.bernoulli(0.5)); m:factor(-math.huge) end)
  T.raises(function() plume.beam(dead, {}, {}) end, "every hypothesis has log probability -inf")
end)
