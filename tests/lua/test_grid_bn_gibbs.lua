-- test_grid_bn_gibbs.lua -- the grid Bayesian network of bench/learned_grid.lua: plume.markov.grid_bn_exact
-- against enumeration in Lua on a 2x3 grid, and single-site Gibbs marginals on a 5x5 grid within their Monte
-- Carlo error of the exact ones (5 MCSE per node, from the summary's ESS), with a negative control: the same
-- draws against the exact marginals of a network with one CPT row changed must fail that tolerance somewhere.
local T = dofile("tests/lua/check.lua")
local L = dofile("bench/learned_common.lua")

-- every joint state of a small grid, weighted by its probability and the evidence
local function enumerate(d)
  local n, num, z = d.R * d.C, {}, 0
  for v = 1, n do num[v] = 0 end
  for s = 0, (1 << n) - 1 do
    local x, w = {}, 1
    for v = 1, n do x[v] = (s >> (v - 1)) & 1 end
    for i = 1, d.R do
      for j = 1, d.C do
        local v = (i - 1) * d.C + j
        local up, left = i > 1 and x[v - d.C] or 0, j > 1 and x[v - 1] or 0
        local p = d.cpt[4 * (v - 1) + 2 * up + left + 1]
        w = w * (x[v] == 1 and p or 1 - p)
        if d.ev[v] and d.ev[v] ~= x[v] then w = 0 end
      end
    end
    z = z + w
    for v = 1, n do num[v] = num[v] + w * x[v] end
  end
  for v = 1, n do num[v] = num[v] / z end
  return num, math.log(z)
end

T.test("grid_bn_exact_equals_enumeration", function()
  for seed = 1, 4 do
    local d = L.grid_problem(2, 3, seed, { observed = 0.3 })
    local m, lz = L.grid_exact(d)
    local e, elz = enumerate(d)
    for v = 1, 6 do T.near(m[v], e[v], 1e-12, "node " .. v) end
    T.near(lz, elz, 1e-12, "log P(evidence)")
  end
end)

T.test("grid_bn_exact_errors", function()
  T.raises(function() plume.markov.grid_bn_exact{ rows = 2, cols = 2, cpt = { 0.5, 0.5 } } end, "cpt has 2 entries")
  T.raises(function() plume.markov.grid_bn_exact{ rows = 1, cols = 1, cpt = { 0, 0, 0, 0 }, evidence = { [1] = 1 } } end,
    "probability 0")
  T.raises(function() plume.markov.grid_bn_exact{ rows = 1, cols = 1, cpt = { 0.5, 0, 0, 0 }, evidence = { [1] = 2 } } end,
    "must be 0 or 1")
end)

-- the draws of x_v are correlated; summary's mcse_mean is sd / sqrt(ESS). 5 MCSE per node over 20 nodes: a
-- correct sampler fails with probability well under 1e-4; 1e-3 absorbs nodes that hardly ever move
local d = L.grid_problem(5, 5, 11, { sharp = 0.5 })
local post = plume.infer(L.grid_model, d, { method = "gibbs", samples = 6000, warmup = 200, chains = 1, seed = 3,
  quiet = true, init = L.grid_init(d, 100) })
local s = post:summary()

local function worst(exact)
  local w, at = 0, nil
  for v = 1, 25 do
    if not d.ev[v] then
      local e = s["x" .. v]
      local z = math.abs(e.mean - exact[v]) / (5 * (e.mcse_mean or 0) + 1e-3)
      if z > w then w, at = z, v end
    end
  end
  return w, at
end

T.test("gibbs_marginals_on_a_5x5_grid_are_within_5_mcse_of_exact", function()
  local w, at = worst(L.grid_exact(d))
  io.write(string.format("  (worst node: %.2f tolerances)\n", w))
  T.ok(w <= 1, string.format("node %s is %.2f tolerances from its exact marginal", tostring(at), w))
end)

T.test("negative_control_a_changed_cpt_is_detected", function()
  local wrong = { R = d.R, C = d.C, ev = d.ev, cpt = {} }
  for i, p in ipairs(d.cpt) do wrong.cpt[i] = p end
  for i = 1, 4 do wrong.cpt[4 * 12 + i] = 1 - d.cpt[4 * 12 + i] end   -- node 13 (the centre) flipped
  local w = worst(L.grid_exact(wrong))
  io.write(string.format("  (wrong network, worst node: %.2f tolerances)\n", w))
  T.ok(w > 1, string.format("the wrong network's marginals pass (worst %.2f tolerances)", w))
end)
