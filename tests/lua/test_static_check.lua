-- test_static_check.lua -- a traced graph is the program: Lua compares a symbol with a number without asking
-- it (`z == 1` is false for a symbol), so a program that branches on such a test would trace one branch
-- silently. The tracer checks the graph against runs of the program on numbers and calls it dynamic when
-- they differ, saying why; programs without such branches stay static.
package.path = "tests/lua/?.lua;" .. package.path
local T = require "check"
local D = plume.dist

T.test("a_value_branch_on_a_discrete_choice_makes_the_program_dynamic", function()
  local m = plume.model(function(m)
    local z = m:sample("z", D.bernoulli(0.5))
    local mu = m:sample("mu", D.normal(0, 1))
    if z == 1 then mu = mu + 5 end
    m:observe("y", D.normal(mu, 1), 2)
  end)
  local g = plume.graph(m)
  T.eq(g.mode, "dynamic")
  T.ok(g.why:find("tracing cannot see", 1, true), "the reason names the invisible test: " .. g.why)
  T.raises(function() plume.infer(m, nil, { method = "gibbs", samples = 10, quiet = true }) end, "needs a static model")
  -- the posterior of z is still right, by MH on the dynamic program: P(z=1 | y=2) from the two marginals
  local function marg(c) return math.exp(-(2 - c) ^ 2 / 4) end
  local exact = marg(5) / (marg(5) + marg(0))
  local post = plume.infer(m, nil, { method = "mh", samples = 20000, warmup = 2000, chains = 2, seed = 4, quiet = true })
  local zs, s = post:draws("z"), 0
  for i = 1, #zs do s = s + zs[i] end
  T.near(s / #zs, exact, 0.05, "P(z = 1 | y)")
end)

T.test("a_structure_branch_makes_the_program_dynamic", function()
  local m = plume.model(function(m)
    local z = m:sample("z", D.bernoulli(0.5))
    if z == 1 then m:sample("w", D.normal(0, 1)) end
    m:observe("y", D.normal(0, 1), 0)
  end)
  local g = plume.graph(m)
  T.eq(g.mode, "dynamic")
  T.ok(g.why:find("'w'", 1, true) or g.why:find("structure", 1, true), "the reason names the site: " .. g.why)
end)

T.test("a_continuous_equality_test_makes_the_program_dynamic", function()
  local m = plume.model(function(m)
    local x = m:sample("x", D.normal(0, 1))
    local s = 1
    if x == 0 then s = 2 end   -- never true on numbers, but a symbol is never == 0 either: agrees, stays static
    local k = m:sample("k", D.categorical{ 0.2, 0.3, 0.5 })
    local mu = x
    if k == 3 then mu = x + 1 end   -- true on numbers for k = 3, never for a symbol
    m:observe("y", D.normal(mu, s), 1)
  end)
  local g = plume.graph(m)
  T.eq(g.mode, "dynamic")
end)

T.test("programs_without_hidden_branches_stay_static", function()
  local m = plume.model(function(m, d)
    local mu = plume.vector{ m:sample("mu1", D.normal(-2, 1)), m:sample("mu2", D.normal(2, 1)) }
    local sigma = m:sample("sigma", D.gamma(2, 2))
    for i = 1, #d do
      local z = m:sample("z" .. i, D.categorical{ 0.5, 0.5 })
      m:observe("y" .. i, D.normal(mu[z], sigma), d[i])
    end
  end)
  local g = plume.graph(m, { -2.1, 1.9, 2.2 })
  T.eq(g.mode, "static", g.why)
  local lo = plume.model(function(m)
    local a = m:sample("a", D.uniform(0, 1))
    local b = m:sample("b", D.uniform(0, 1 - a))   -- a support that depends on another site: checked by structure
    m:observe("y", D.normal(a + b, 1), 0.5)
  end)
  T.eq(plume.graph(lo).mode, "static")
end)

