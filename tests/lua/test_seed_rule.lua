-- test_seed_rule.lua -- one seed rule for every function: a call without `seed` takes its seed from plume's
-- default stream, so plume.seed(n) makes what follows reproducible, and two calls in a row differ.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

local model = plume.model(function(m)
  local x = m:sample("x", D.normal(0, 1))
  m:observe("y", D.normal(x, 1), 0.5)
end)

-- run fn twice after plume.seed(7) and once more without reseeding: the first two agree, the third differs
local function check_rule(name, fn)
  T.test("no_seed_continues_the_default_stream_" .. name, function()
    plume.seed(7)
    local a = fn()
    plume.seed(7)
    local b = fn()
    local c = fn()
    T.eq(a, b, name .. ": same value after plume.seed(7)")
    T.ok(a ~= c, name .. ": a second call draws new numbers")
  end)
end

check_rule("infer_mh", function() return plume.infer(model, nil, { samples = 20, chains = 1, quiet = true }):draws("x")[20] end)
check_rule("infer_is", function() return plume.infer(model, nil, { method = "is", samples = 20, quiet = true }).logz end)
check_rule("smc", function() return plume.smc(model, {}, { particles = 50, quiet = true }).logz end)
check_rule("dist_sample", function() return D.gamma(2, 1):sample() end)
check_rule("lgssm_sample", function()
  local lg = plume.lgssm { A = { { 0.9 } }, Q = { { 1 } }, C = { { 1 } }, R = { { 1 } }, m0 = { 0 }, P0 = { { 1 } } }
  local xs, ys = lg:sample(5)
  return type(ys[5]) == "table" and ys[5][1] or ys[5]
end)
check_rule("hmm_sample", function()
  local h = plume.hmm { init = { 0.5, 0.5 }, trans = { { 0.9, 0.1 }, { 0.2, 0.8 } }, emit = { { 0.7, 0.3 }, { 0.1, 0.9 } } }
  local states, obs = h:sample(50)
  return table.concat(obs, ",")
end)
