-- test_smc_migrate.lua -- the replay that moves plume.smc's particles between MPI ranks, on one rank: with
-- migrate = "all" every particle, at every resampling, is serialised to its record and rebuilt by replaying the
-- program under the record's choices (rescored and checked); the runs must equal the ordinary ones bit for bit
-- (logz, histories, return values, log weights, the draws CSV). Negative controls:
-- a record with one choice changed, and programs with side effects, stop with an error naming the choice.
local T = dofile("tests/lua/check.lua")
SMC_RANKS_LIB = true
local run = dofile("tests/lua/smc_ranks.lua")
local D = plume.dist

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

T.test("migrate_all_rebuilds_every_particle_exactly", function()
  local c1, c2 = os.tmpname(), os.tmpname()
  local a, moved_a = run("needed", c1)
  local b, moved_b = run("all", c2)
  T.eq(moved_a, 0, "records on one rank without migrate")
  T.ok(moved_b > 100, "migrate = all sent " .. moved_b .. " records")
  T.eq(#b, #a, "lines")
  for i = 1, #a do T.eq(b[i], a[i], "line " .. i) end
  local s1, s2 = slurp(c1), slurp(c2)
  os.remove(c1); os.remove(c2)
  T.ok(#s1 > 1000, "the CSV has the draws")
  T.ok(s1 == s2, "the draws CSV (every choice, log weights) is the same")
end)

T.test("a_perturbed_record_rescores_to_another_log_density", function()
  -- particle 1's first token is changed in transit: the replay rescores it (records carry no densities) and the
  -- log prior it sums differs from the record's
  local err = T.raises(function() run("perturb") end, "particle 1, replayed from its record on rank 0, scores log prior")
  local got, rec = err:match("scores log prior (%S+) and log likelihood %S+ where its record says (%S+) and")
  T.ok(got and rec, "the message gives both log priors: " .. err)
  T.ok(tonumber(got) ~= tonumber(rec), "the changed record scores " .. got .. ", the original " .. rec)
  T.ok(err:find("smc_ranks.lua:%d+:"), "the error names the program's line: " .. err)
end)

local function side_effect_model(vary_address)
  local calls = 0
  return plume.model(function(m)
    calls = calls + 1
    local x = vary_address and m:sample("x" .. calls, D.normal(0, 1)) or m:sample("x", D.normal(calls, 1))
    m:observe("y", D.normal(x, 1), 0.5)
    local z = m:sample("z", D.normal(0, 1))
    m:observe("w", D.normal(z, 1), 0)
  end)
end

T.test("a_program_with_side_effects_fails_clearly_when_particles_move", function()
  local o = { particles = 20, seed = 1, migrate = "all", ess_threshold = 1, quiet = true }
  T.raises(function() plume.smc(side_effect_model(true), {}, o) end, "which its record lacks", "address from outside state")
  T.raises(function() plume.smc(side_effect_model(false), {}, o) end, "the replay diverged", "density from outside state")
  -- without migration the same programs run (copies on one rank replay their parents leniently)
  local post = plume.smc(side_effect_model(false), {}, { particles = 20, seed = 1, ess_threshold = 1, quiet = true })
  T.ok(post.logz == post.logz, "a number")
end)

T.test("migrate_option_is_checked", function()
  local m = plume.model(function(m) m:observe("y", D.normal(m:sample("x", D.normal(0, 1)), 1), 0) end)
  T.raises(function() plume.smc(m, {}, { migrate = "some", quiet = true }) end, "option 'migrate' must be \"needed\", \"all\" or \"perturb\" (got 'some')")
  T.raises(function() plume.smc(m, {}, { migrate = "all", method = "steer", quiet = true }) end, "option 'migrate' works with method = \"standard\" only")
  T.raises(function()
    plume.smc(plume.model(function(m) m:observe("y", D.normal(m:sample("x", D.normal(0, 1)), 1), 0); return function() end end),
      {}, { particles = 4, migrate = "all", quiet = true })
  end, "the return value of particle 1 is a function")
end)
