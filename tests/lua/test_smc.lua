-- test_smc.lua -- plume.smc over model programs against exact answers (Kalman filter, enumeration), the
-- batching of requests across particles, and replay of resampled particles. Tolerances: 4 Monte Carlo
-- standard errors from the runs themselves, fixed seeds.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

-- Gaussian random walk observed in noise: the Kalman filter gives log p(y) and the filtering mean exactly.
local ys = { 0.5, 1.2, 0.7, 2.0, 2.5, 1.9, 3.1, 2.2 }
local walk = plume.model(function(m, ys)
  local x = 0
  for t, y in ipairs(ys) do
    x = m:sample("x" .. t, D.normal(x, 1))
    m:observe("y" .. t, D.normal(x, 1), y)
  end
  return x
end)
local kf_logz, kf_mean, kf_var = 0, 0, 0
do
  local m, P = 0, 0
  for _, y in ipairs(ys) do
    P = P + 1
    kf_logz = kf_logz + D.normal(m, math.sqrt(P + 1)):logpdf(y)
    local K = P / (P + 1)
    m, P = m + K * (y - m), (1 - K) * P
  end
  kf_mean, kf_var = m, P
end

for _, method in ipairs { "standard", "steer" } do
  T.test(method .. "_smc_filtering_mean_matches_the_kalman_filter", function()
    local post = plume.smc(walk, { ys }, { particles = 2000, seed = 1, method = method, extensions = 2 })
    local s = post:summary().x8
    -- MCSE of a weighted mean: sd / sqrt(Kish ESS); resampling makes the particles correlated, so allow 6
    T.ok(math.abs(s.mean - kf_mean) < 6 * s.mcse_mean, string.format("%.4f vs %.4f (mcse %.4f)", s.mean, kf_mean, s.mcse_mean))
    T.near(s.sd, math.sqrt(kf_var), 0.1 * math.sqrt(kf_var), "sd")
  end)

  -- Z-hat is unbiased: the mean of exp(logz - exact) over independent runs is 1 within 4 standard errors.
  T.test(method .. "_smc_evidence_is_unbiased", function()
    local r, n = {}, 40
    for seed = 1, n do
      r[seed] = math.exp(plume.smc(walk, { ys }, { particles = 100, seed = seed, method = method, extensions = 2 }).logz - kf_logz)
    end
    local mean, var = 0, 0
    for i = 1, n do mean = mean + r[i] / n end
    for i = 1, n do var = var + (r[i] - mean) ^ 2 / (n - 1) end
    T.ok(math.abs(mean - 1) < 4 * math.sqrt(var / n) + 1e-3, string.format("mean ratio %.4f, se %.4f", mean, math.sqrt(var / n)))
  end)
end

-- Negative control: a "filter" that forgets the last observation must miss the Kalman mean.
T.test("smc_mean_check_rejects_a_wrong_model", function()
  local short = { table.unpack(ys, 1, 7) }
  local post = plume.smc(walk, { short }, { particles = 2000, seed = 1 })
  local s = post:summary().x7
  T.ok(math.abs(s.mean - kf_mean) > 6 * s.mcse_mean, "the wrong model is detected")
end)

-- Discrete model, exact by enumeration: z_t in {1,2,3}, factors depend on z; the distribution of the
-- returned value (z1, z2) must match the exact posterior in total variation.
T.test("smc_return_values_match_enumeration", function()
  local pri = { 0.5, 0.3, 0.2 }
  local score = { { 0.1, 1.0, 2.0 }, { 1.5, 0.2, 0.4 } }
  local model = plume.model(function(m)
    local z1 = m:sample("z1", D.categorical(pri))
    m:factor(score[1][z1])
    local z2 = m:sample("z2", D.categorical(pri))
    m:factor(score[2][z2] * (z1 == z2 and 2 or 1))
    return z1 * 10 + z2
  end)
  local exact, Z = {}, 0
  for a = 1, 3 do for b = 1, 3 do
    local w = pri[a] * pri[b] * math.exp(score[1][a] + score[2][b] * (a == b and 2 or 1))
    exact[a * 10 + b] = w; Z = Z + w
  end end
  local post = plume.smc(model, {}, { particles = 20000, seed = 3, ess_threshold = 1.0 })
  local est = {}
  for i, v in ipairs(post.values) do est[v] = (est[v] or 0) + math.exp(post.log_weights[i]) end
  local tv = 0
  for k, w in pairs(exact) do tv = tv + 0.5 * math.abs(w / Z - (est[k] or 0)) end
  -- with 20000 particles the TV error of a 9-cell distribution is about sqrt(9 / 20000) / 2 ~ 0.01
  T.ok(tv < 0.03, "total variation " .. tv)
  T.near(post.logz, math.log(Z), 0.03, "log evidence")
end)

T.test("requests_from_all_particles_are_served_in_one_batch_per_step", function()
  local calls, sizes = 0, {}
  local function handler(batch)
    calls = calls + 1
    sizes[#sizes + 1] = #batch
    local out = {}
    for i, req in ipairs(batch) do out[i] = req * 2 end
    return out
  end
  local model = plume.model(function(m)
    for t = 1, 5 do
      local x = m:sample("x" .. t, D.normal(0, 1))
      local r = plume._request(handler, t)
      if r ~= 2 * t then error("wrong result delivered: " .. tostring(r)) end
      m:factor(-x * x)
    end
  end)
  plume.smc(model, {}, { particles = 50, seed = 1, ess_threshold = 0 })   -- never resample: no replays
  T.eq(calls, 5, "one batch per step")
  for _, s in ipairs(sizes) do T.eq(s, 50, "every particle in the batch") end
  -- outside plume.smc the handler is called directly with a batch of one
  calls = 0
  T.eq(plume._request(handler, 21), 42)
  T.eq(calls, 1)
end)

T.test("resampled_copies_replay_their_parent_exactly", function()
  -- Lua state built along the way (the running sum) must agree with the recorded choices after resampling
  local model = plume.model(function(m)
    local sum = 0
    for t = 1, 10 do
      sum = sum + m:sample("x" .. t, D.normal(0, 1))
      m:factor(-0.5 * sum * sum)
    end
    m:deterministic("sum", sum)
    return sum
  end)
  local post = plume.smc(model, {}, { particles = 300, seed = 4, ess_threshold = 1.0 })
  T.ok(post.resamples >= 5, "resampled " .. post.resamples .. " times")
  local sums = post:draws("sum")
  local xs = {}
  for t = 1, 10 do xs[t] = post:draws("x" .. t) end
  for i = 1, #sums do
    local s = 0
    for t = 1, 10 do s = s + xs[t][i] end
    T.near(sums[i], s, 1e-9, "particle " .. i)
    T.near(post.values[i], s, 1e-9, "return value " .. i)
  end
end)

T.test("smc_errors_are_clear", function()
  local dead = plume.model(function(m) m:observe("y", D.bernoulli(0.5), 2) end)
  T.raises(function() plume.smc(dead, {}, { particles = 10, seed = 1 }) end, "every particle has weight -inf")
  T.raises(function() plume.smc(walk, { ys }, { particle = 10 }) end, "unknown option 'particle'")
  T.raises(function() plume.smc(walk, { ys }, { method = "magic" }) end, "unknown method 'magic'")
  local bad = plume.model(function(m) m:factor(1); error("inside the program") end)
  local err = T.raises(function() plume.smc(bad, {}, { particles = 4, seed = 1 }) end, "inside the program")
  T.ok(err:find("test_smc.lua:%d+:"), err)
end)

T.test("same_seed_same_particles", function()
  local a = plume.smc(walk, { ys }, { particles = 200, seed = 9 })
  local b = plume.smc(walk, { ys }, { particles = 200, seed = 9 })
  T.eq(a.logz, b.logz)
  T.eq(a.values[17], b.values[17])
end)

T.test("registered_state_is_forked_for_resampled_copies", function()
  -- an object with __plume_fork stands for an LM context: a copy of a particle must continue from a
  -- snapshot of its parent's object, adopted during replay, never from a fresh one
  local Obj = {}
  Obj.__index = Obj
  Obj.__plume_fork = function(o) return setmetatable({ n = o.n, forked = true }, Obj) end
  local fresh, adopted = 0, 0
  local model = plume.model(function(m)
    local o = plume._smc_adopt()
    if o then adopted = adopted + 1; o.n = 0 else fresh = fresh + 1; o = setmetatable({ n = 0 }, Obj) end
    plume._smc_register(o)
    for t = 1, 6 do
      o.n = o.n + 1
      m:factor(-0.5 * m:sample("x" .. t, D.normal(0, 1)) ^ 2)
    end
    return o.n
  end)
  local post = plume.smc(model, {}, { particles = 100, seed = 2, ess_threshold = 1.0 })
  T.eq(fresh, 100, "only the first generation makes new objects")
  T.ok(adopted > 0, "copies adopt snapshots")
  for _, v in ipairs(post.values) do T.eq(v, 6, "replayed state agrees") end
  T.eq(plume._smc_adopt(), nil, "nothing to adopt outside plume.smc")
end)

T.test("copies_of_finished_particles_are_the_same_path", function()
  -- the choice after the last checkpoint (here: whether to stop) belongs to the finished path
  local model = plume.model(function(m)
    local n = 0
    for t = 1, 8 do
      local x = m:sample("x" .. t, D.normal(0, 1))
      if x > 1 then return n end
      n = n + 1
      m:factor(-0.3 * x * x)
    end
    return n
  end)
  local post = plume.smc(model, {}, { particles = 200, seed = 5, ess_threshold = 1.0 })
  T.ok(post.steps <= 9, "no step beyond the longest path: " .. post.steps)
  local xs = {}
  for t = 1, 8 do xs[t] = post:draws("x" .. t) end
  for i = 1, post.particles do
    local n = post.values[i]
    for t = 1, n do T.ok(xs[t][i] <= 1, "kept going only below 1") end
    T.ok(n == 8 or xs[n + 1][i] > 1, "stopped where its own choice says (particle " .. i .. ")")
  end
end)

-- Every resampling scheme gives the same target: the discrete model above, by enumeration, and the Kalman mean.
T.test("every_resampling_scheme_matches_enumeration", function()
  local pri = { 0.5, 0.3, 0.2 }
  local model = plume.model(function(m)
    local z1 = m:sample("z1", D.categorical(pri))
    m:factor(({ 0.1, 1.0, 2.0 })[z1])
    local z2 = m:sample("z2", D.categorical(pri))
    m:factor(({ 1.5, 0.2, 0.4 })[z2] * (z1 == z2 and 2 or 1))
    return z1 * 10 + z2
  end)
  local exact, Z = {}, 0
  for a = 1, 3 do for b = 1, 3 do
    local w = pri[a] * pri[b] * math.exp(({ 0.1, 1.0, 2.0 })[a] + ({ 1.5, 0.2, 0.4 })[b] * (a == b and 2 or 1))
    exact[a * 10 + b] = w; Z = Z + w
  end end
  for _, scheme in ipairs { "multinomial", "residual", "stratified", "systematic", "ssp" } do
    local post = plume.smc(model, {}, { particles = 20000, seed = 3, ess_threshold = 1.0, resample = scheme })
    T.eq(post.resample, scheme)
    local est = {}
    for i, v in ipairs(post.values) do est[v] = (est[v] or 0) + math.exp(post.log_weights[i]) end
    local tv = 0
    for k, w in pairs(exact) do tv = tv + 0.5 * math.abs(w / Z - (est[k] or 0)) end
    T.ok(tv < 0.03, scheme .. ": total variation " .. tv)
    T.near(post.logz, math.log(Z), 0.03, scheme .. ": log evidence")
  end
  T.raises(function() plume.smc(model, {}, { resample = "bogus" }) end, "unknown resampling scheme 'bogus'")
end)

-- Errors from plume.smc itself blame the caller's line; errors inside the program keep their own.
T.test("smc_errors_name_the_callers_line", function()
  local line = debug.getinfo(1, "l").currentline + 1
  local ok, err = pcall(function() plume.smc(walk, { ys }, { particle = 10 }) end)
  T.ok(not ok and err:find("test_smc.lua:" .. line .. ":", 1, true), err)
  line = debug.getinfo(1, "l").currentline + 1
  ok, err = pcall(function() plume.smc(walk, { ys }, { threads = 2 }) end)
  T.ok(not ok and err:find("test_smc.lua:" .. line .. ":", 1, true) and err:find("option 'threads' must be 1", 1, true), err)
  line = debug.getinfo(1, "l").currentline + 1
  ok, err = pcall(function() plume.smc(42) end)
  T.ok(not ok and err:find("test_smc.lua:" .. line .. ":", 1, true), err)
  local bad_line
  local bad = plume.model(function(m) m:factor(1); bad_line = debug.getinfo(1, "l").currentline + 1
    error("inside the program") end)
  ok, err = pcall(function() plume.smc(bad, {}, { particles = 4, seed = 1 }) end)
  T.ok(not ok and err:find("test_smc.lua:" .. bad_line .. ":", 1, true), err)
  line = debug.getinfo(1, "l").currentline + 1
  ok, err = pcall(function() plume.beam(walk, { ys }, { beam = 2 }) end)
  T.ok(not ok and err:find("test_smc.lua:" .. line .. ":", 1, true), err)
  line = debug.getinfo(1, "l").currentline + 1
  ok, err = pcall(function() plume.beam(walk, { ys }, { threads = 3 }) end)
  T.ok(not ok and err:find("test_smc.lua:" .. line .. ":", 1, true), err)
end)

-- An invalid parameter met inside a particle is a rejection: that particle dies, the others go on, and the
-- result equals the model conditioned on never meeting it (here: x > 0, a half-normal, by symmetry).
T.test("a_rejection_kills_only_its_particle", function()
  local model = plume.model(function(m)
    local x = m:sample("x", D.normal(0, 1))
    m:factor(0)
    local s = m:sample("s", D.normal(0, x > 0 and 1 or -1))   -- sigma < 0: rejected
    m:observe("y", D.normal(s, 1), 0.3)
    return x
  end)
  local post = plume.smc(model, {}, { particles = 4000, seed = 2, ess_threshold = 0 })
  T.ok(post.rejected > 1500 and post.rejected < 2500, "about half rejected: " .. post.rejected)
  local s = post:summary().x
  local exact = math.sqrt(2 / math.pi)    -- mean of a half-normal
  T.ok(math.abs(s.mean - exact) < 5 * s.mcse_mean, string.format("%.4f vs %.4f", s.mean, exact))
  T.ok(post.logz == post.logz and post.logz < 0, "finite logz " .. post.logz)
  -- every particle rejected: the error names the step and the last rejection
  local dead = plume.model(function(m) m:factor(0); m:sample("s", D.normal(0, -1)) end)
  local err = T.raises(function() plume.smc(dead, {}, { particles = 5, seed = 1 }) end, "every particle has weight -inf after step 2")
  T.ok(err:find("5 rejected", 1, true) and err:find("sigma", 1, true), err)
end)

-- A weight of +inf cannot weight a particle. No distribution has a +inf log density (a boundary where the
-- density blows up is -inf), so the +inf comes from a factor: the error names its line.
T.test("an_infinite_log_weight_is_an_error_naming_the_line", function()
  local model = plume.model(function(m)
    m:sample("x", D.normal(0, 1))
    m:factor(math.huge)
  end)
  local line = debug.getinfo(1, "l").currentline - 2
  T.raises(function() plume.smc(model, {}, { particles = 5, seed = 1 }) end, "test_smc.lua:" .. line .. ": m:factor: log weight is +inf")
end)

-- The running log normaliser: after step t it estimates log p(y_1..y_t), which the Kalman filter gives exactly;
-- the last entry is post.logz. Tolerance 0.2: with 2000 particles the sd of log Z-hat is about 0.03 here.
for _, method in ipairs { "standard", "steer" } do
  T.test(method .. "_smc_logz_history_follows_the_kalman_partial_evidence", function()
    local post = plume.smc(walk, { ys }, { particles = 2000, seed = 3, method = method, extensions = 2 })
    local h = post.logz_history
    T.eq(#h, post.steps, "one entry per step")
    T.eq(#post.ess_history, post.steps, "as many as ess_history")
    -- (steer's last resampling keeps the total weight, up to rounding)
    T.near(h[#h], post.logz, 1e-9 * math.abs(post.logz), "the last entry is logz")
    local m, P, lz = 0, 0, 0
    for t, y in ipairs(ys) do
      P = P + 1
      lz = lz + D.normal(m, math.sqrt(P + 1)):logpdf(y)
      local K = P / (P + 1)
      m, P = m + K * (y - m), (1 - K) * P
      T.near(h[t], lz, 0.2, string.format("step %d: %.4f vs exact %.4f", t, h[t], lz))
    end
  end)
end
