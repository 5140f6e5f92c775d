-- test_dist.lua -- plume.dist from Lua: constructors, methods, readable output, errors naming the parameter.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

T.test("normal_logpdf_matches_the_closed_form", function()
  T.near(D.normal(0, 1):logpdf(0.5), -1.0439385332046727, 1e-15)
  T.near(D.normal(2, 3):logpdf(1), -0.5 * (1 / 3) ^ 2 - math.log(3) - 0.5 * math.log(2 * math.pi), 1e-14)
end)

T.test("every_constructor_named_in_the_reference_exists", function()
  for _, name in ipairs { "normal", "lognormal", "student_t", "cauchy", "laplace", "logistic", "exponential",
    "gamma", "inverse_gamma", "beta", "uniform", "weibull", "bernoulli", "binomial", "poisson",
    "negative_binomial", "geometric", "categorical", "dirichlet", "multinomial", "mvnormal" } do
    T.eq(type(D[name]), "function", name)
  end
end)

T.test("tostring_names_the_distribution_and_its_parameters", function()
  T.eq(tostring(D.normal(0, 1)), "normal(mu=0, sigma=1)")
  T.eq(tostring(D.gamma(2, 0.5)), "gamma(alpha=2, beta=0.5)")
  T.eq(tostring(D.categorical { 0.25, 0.75 }), "categorical(probs={0.25, 0.75})")
  T.eq(D.beta(2, 3).name, "beta")
end)

T.test("moments_are_exact", function()
  T.near(D.gamma(3, 2):mean(), 1.5, 1e-15)
  T.near(D.gamma(3, 2):var(), 0.75, 1e-15)
  T.near(D.inverse_gamma(3, 2):mean(), 1, 1e-15)
  T.near(D.categorical { 0.5, 0.5 }:mean(), 1.5, 1e-15)      -- values are 1 and 2 in Lua
  local m = D.dirichlet { 1, 3 }:mean()
  T.near(m[2], 0.75, 1e-15)
  T.raises(function() return D.cauchy(0, 1):mean() end, "cauchy: the mean is undefined")
end)

T.test("categorical_values_are_one_based", function()
  plume.seed(3)
  local c = D.categorical { 0.2, 0.3, 0.5 }
  local seen = {}
  for _, v in ipairs(c:sample(2000)) do
    T.ok(math.type(v) == "integer" and v >= 1 and v <= 3, "value in 1..3")
    seen[v] = (seen[v] or 0) + 1
  end
  T.ok(seen[1] and seen[2] and seen[3], "every category drawn")
  T.near(c:logpdf(3), math.log(0.5), 1e-15)
  T.eq(c:logpdf(4), -math.huge)
  T.eq(c:logpdf(0), -math.huge)
end)

T.test("sample_n_returns_n_values_and_seed_makes_them_repeatable", function()
  plume.seed(42)
  local a = D.normal(0, 1):sample(100)
  plume.seed(42)
  local b = D.normal(0, 1):sample(100)
  T.eq(#a, 100)
  for i = 1, 100 do T.eq(a[i], b[i], "draw " .. i) end
end)

T.test("logpdf_outside_the_support_is_minus_infinity_not_nan", function()
  T.eq(D.beta(2, 2):logpdf(1.5), -math.huge)
  T.eq(D.poisson(3):logpdf(2.5), -math.huge)
  T.eq(D.exponential(1):logpdf(-1), -math.huge)
  T.eq(D.bernoulli(0.3):logpdf(true), math.log(0.3))
end)

T.test("bad_parameters_name_the_distribution_and_parameter", function()
  T.raises(function() D.normal(0, -1) end, "normal: sigma must be > 0 (got -1)")
  T.raises(function() D.normal("a", 1) end, "normal: mu must be a number (got string)")
  T.raises(function() D.gamma(1) end, "gamma: beta must be a number (got no value)")
  T.raises(function() D.categorical { 0.5, 0.6 } end, "categorical: probs must sum to 1")
  T.raises(function() D.categorical { 0.5, "x" } end, "categorical: probs[2] must be a number (got string)")
  T.raises(function() D.mvnormal({ 0, 0 }, { { 1, 0 } }) end, "mvnormal: Sigma must be 2 x 2")
  T.raises(function() D.mvnormal({ 0, 0 }, { { 1, 2 }, { 2, 1 } }) end, "not positive definite")
  T.raises(function() D.normal(0, 1):logpdf("x") end, "normal:logpdf: x must be a number (got string)")
  local err = T.raises(function() D.beta(0, 1) end, "beta: alpha must be > 0")
  T.ok(err:find("test_dist.lua:%d+:"), "error carries file:line: " .. err)
end)

T.test("vector_distributions_round_trip_through_lua_tables", function()
  plume.seed(1)
  local mv = D.mvnormal({ 1, 2 }, { { 1, 0.3 }, { 0.3, 2 } })
  local x = mv:sample()
  T.eq(#x, 2)
  T.ok(mv:logpdf(x) < 0, "finite log density")
  local p = mv:params()
  T.near(p.Sigma[2][2], 2, 1e-14)
  T.near(p.Sigma[1][2], 0.3, 1e-14)
  local m = D.multinomial(5, { 0.5, 0.5 }):sample()
  T.eq(m[1] + m[2], 5)
end)

T.test("plume_array_holds_numbers_and_scores_in_one_call", function()
  local a = plume.array { 0.5, -0.5, 1 }
  T.eq(#a, 3)
  T.eq(a[2], -0.5)
  a[2] = 0.25
  T.eq(a[2], 0.25)
  local d = D.normal(0, 1)
  T.near(d:logpdf(a), d:logpdf(0.5) + d:logpdf(0.25) + d:logpdf(1), 1e-14)
  T.raises(function() a[4] = 1 end, "index 4 out of range")
  T.ok(tostring(a):find("plume.array%(3%)"), tostring(a))
end)
