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

T.test("nan_parameters_are_named_and_called_nan", function()
  local nan = 0 / 0
  T.raises(function() D.normal(0, nan) end, "normal: sigma is NaN")
  T.raises(function() D.gamma(nan, 1) end, "gamma: alpha is NaN")
  T.raises(function() D.categorical { 0.5, nan } end, "categorical: probs[2] is NaN")
  T.raises(function() D.dirichlet { 1, nan } end, "dirichlet: alpha[2] is NaN")
  T.raises(function() D.mvnormal({ 0, nan }, { { 1, 0 }, { 0, 1 } }) end, "mvnormal: mu[2] is NaN")
  T.raises(function() D.multinomial(nan, { 0.5, 0.5 }) end, "multinomial: n is NaN")
  T.raises(function() D.truncated(D.normal(0, 1), nan, 1) end, "truncated: lo is NaN")
  T.raises(function() D.categorical_logits { 0, nan } end, "categorical: logits[2] is NaN")
end)

T.test("sizes_are_checked_in_64_bits_and_name_the_limit", function()
  local err = T.raises(function() D.normal(0, 1):sample(1e12) end, "0..100000000 (got 1000000000000")
  T.ok(not err:find("-", 1, true), "no wrapped negative count: " .. err)
  T.raises(function() D.normal(0, 1):sample(2 ^ 63) end, "0..100000000")
  T.raises(function() D.normal(0, 1):sample(-1) end, "0..100000000 (got -1")
  T.eq(#D.normal(0, 1):sample(3), 3)
end)

T.test("boundary_densities_are_never_plus_infinity", function()
  T.eq(D.gamma(0.5, 1):logpdf(0), -math.huge)
  T.eq(D.beta(0.5, 0.5):logpdf(0), -math.huge)
  T.eq(D.beta(0.5, 0.5):logpdf(1), -math.huge)
  T.eq(D.weibull(0.5, 1):logpdf(0), -math.huge)
  T.near(D.exponential(2):logpdf(0), math.log(2), 1e-15)   -- a finite limit at a closed end is kept
  T.eq(D.dirichlet { 0.5, 2 }:logpdf { 0, 1 }, -math.huge)
end)

T.test("tiny_shapes_give_positive_draws_and_numbers_not_nan", function()
  plume.seed(5)
  local zeros = 0
  for _, x in ipairs(D.gamma(0.001, 0.001):sample(2000)) do
    if not (x > 0) then zeros = zeros + 1 end
  end
  T.eq(zeros, 0, "gamma(0.001, 0.001) draws that are 0 or NaN")
  local b = D.beta(1e-310, 1e-310)
  for _ = 1, 200 do
    local x = b:sample()
    T.ok(x > 0 and x < 1, "beta draw in (0, 1): " .. x)
    T.ok(b:logpdf(x) == b:logpdf(x), "beta density is a number")
  end
  local d = D.dirichlet { 1e-310, 1e-310 }
  for _ = 1, 200 do
    local x = d:sample()
    T.ok(x[1] > 0 and x[2] > 0 and math.abs(x[1] + x[2] - 1) < 1e-12, "dirichlet draw on the simplex")
    T.ok(d:logpdf(x) == d:logpdf(x), "dirichlet density is a number")
  end
end)

T.test("huge_discrete_parameters_give_whole_numbers_near_the_mean", function()
  plume.seed(6)
  local x = D.poisson(4.5e9):sample()   -- wrapped to ~2e8 before
  T.ok(math.abs(x - 4.5e9) < 10 * math.sqrt(4.5e9), "poisson(4.5e9) draw " .. x)
  T.ok(D.geometric(1e-12):sample() >= 0)
  T.raises(function() D.poisson(2e15) end, "poisson: lambda must be <= 1e15")
  T.raises(function() D.geometric(1e-16) end, "geometric: p must be >= 1e-14")
  T.raises(function() D.binomial(2 ^ 54, 0.5) end, "binomial: n must be <= 2^53")
end)

T.test("half_distributions_from_lua", function()
  local h = D.halfnormal(2)
  T.eq(tostring(h), "halfnormal(sigma=2)")
  T.near(h:logpdf(1), math.log(2) + D.normal(0, 2):logpdf(1), 1e-14)
  T.eq(h:logpdf(-0.1), -math.huge)
  T.near(h:mean(), 2 * math.sqrt(2 / math.pi), 1e-14)
  T.near(h:var(), 4 * (1 - 2 / math.pi), 1e-14)
  T.near(D.halfcauchy(3):logpdf(2), math.log(2) + D.cauchy(0, 3):logpdf(2), 1e-14)
  T.raises(function() return D.halfcauchy(1):mean() end, "halfcauchy: the mean is undefined")
  local t = D.halfstudent_t(4, 1.5)
  T.eq(tostring(t), "halfstudent_t(nu=4, sigma=1.5)")
  T.near(t:logpdf(0.7), math.log(2) + D.student_t(4, 0, 1.5):logpdf(0.7), 1e-14)
  T.raises(function() D.halfnormal(-1) end, "halfnormal: sigma must be > 0 (got -1)")
  plume.seed(7)
  for _, v in ipairs(t:sample(100)) do T.ok(v >= 0, "half-t draw >= 0") end
end)

T.test("truncated_from_lua", function()
  local t = D.truncated(D.normal(0, 1), 0, math.huge)
  T.eq(tostring(t), "truncated(normal(mu=0, sigma=1), lo=0, hi=inf)")
  T.near(t:logpdf(0.5), D.halfnormal(1):logpdf(0.5), 1e-14)   -- normal on [0, inf) is the half-normal
  T.near(t:mean(), D.halfnormal(1):mean(), 1e-9)
  T.eq(t:logpdf(-0.5), -math.huge)
  T.eq(t:params().lo, 0)
  T.eq(t:params().d.name, "normal")
  local open = D.truncated(D.gamma(2, 1), nil, 3)           -- nil is an open side
  T.eq(open:params().lo, -math.huge)
  plume.seed(8)
  for _, v in ipairs(D.truncated(D.normal(0, 1), 10, math.huge):sample(200)) do T.ok(v >= 10, "tail draw " .. v) end
  T.raises(function() D.truncated(D.normal(0, 1), 1, 1) end, "truncated: lo must be < hi (got lo = 1, hi = 1)")
  T.raises(function() D.truncated(D.poisson(3), 0, 2) end, "truncated: d must be a scalar continuous")
  T.raises(function() D.truncated(D.gamma(2, 1), 1e5, math.huge) end, "has no probability")
  T.raises(function() D.truncated("normal", 0, 1) end, "truncated: d must be")
end)

T.test("flat_is_improper", function()
  local f = D.flat()
  T.eq(tostring(f), "flat()")
  T.eq(f:logpdf(1e300), 0)
  T.eq(f:logpdf(math.huge), -math.huge)
  T.raises(function() f:sample() end,
    'flat: an improper prior has no draws; use it with method = "mh" (give init = ... to choose a start)')
  T.raises(function() return f:mean() end, "flat: an improper prior has no mean")
end)
