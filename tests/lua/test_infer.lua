-- test_infer.lua -- model programs and plume.infer against exact posteriors. Tolerance: 4 Monte Carlo
-- standard errors (MCSE from the run's own ESS), fixed seeds; a negative control shows the check can fail.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

local coin = plume.model(function(m, data)
  local p = m:sample("p", D.beta(1, 1))
  for i, y in ipairs(data) do m:observe("y" .. i, D.bernoulli(p), y) end
end)
local flips = { 1, 0, 1, 1, 1, 0, 1, 1 }       -- exact posterior Beta(7, 3): mean 0.7
local exact_mean = 0.7
local exact_sd = math.sqrt(7 * 3 / (10 ^ 2 * 11))

T.test("mh_beta_bernoulli_mean_within_4_mcse_and_rhat_below_1_01", function()
  local post = plume.infer(coin, flips, { method = "mh", samples = 4000, chains = 4, seed = 1 })
  local s = post:summary().p
  T.ok(s.rhat < 1.01, "rhat " .. s.rhat)
  T.ok(math.abs(s.mean - exact_mean) < 4 * s.mcse_mean,
    string.format("mean %.4f vs %.4f, mcse %.4f", s.mean, exact_mean, s.mcse_mean))
  T.near(s.sd, exact_sd, 0.1 * exact_sd, "posterior sd within 10%")
  T.ok(s.ess_bulk > 1000, "ess_bulk " .. s.ess_bulk)
  T.eq(#post:draws("p"), 16000)
  for _, r in ipairs(post.accept_rate) do T.ok(r > 0.2 and r < 0.8, "acceptance " .. r) end
end)

-- Negative control: the same check against a wrong exact value (the posterior under a Beta(2, 1) prior,
-- mean 0.7273) must fail, or the check above proves nothing.
T.test("mcse_check_rejects_a_wrong_posterior", function()
  local post = plume.infer(coin, flips, { method = "mh", samples = 4000, chains = 4, seed = 1 })
  local s = post:summary().p
  T.ok(math.abs(s.mean - 8 / 11) > 4 * s.mcse_mean, "the wrong answer is rejected")
end)

T.test("is_beta_bernoulli_mean_and_evidence_match_exact", function()
  local post = plume.infer(coin, flips, { method = "is", samples = 20000, seed = 2 })
  local s = post:summary().p
  T.ok(math.abs(s.mean - exact_mean) < 4 * s.mcse_mean, string.format("mean %.4f mcse %.4f", s.mean, s.mcse_mean))
  -- log evidence: B(7, 3) / B(1, 1); relative se of Z-hat is about sqrt(N / ESS - 1) / sqrt(N)
  local logz = math.log(1 / 252)   -- B(7, 3) = 6! 2! / 9!
  local rel = math.sqrt(20000 / s.ess_bulk - 1) / math.sqrt(20000)
  T.near(post.logz, logz, 4 * rel, "logz")
  local w = post:weights()
  local sum = 0
  for _, v in ipairs(w) do sum = sum + v end
  T.near(sum, 1, 1e-12, "weights sum to one")
end)

-- normal-normal: mu ~ N(0, 2), y_i ~ N(mu, 1): posterior precision 1/4 + n, mean sum(y) / (n + 1/4)
local nn = plume.model(function(m, ys)
  local mu = m:sample("mu", D.normal(0, 2))
  for i, y in ipairs(ys) do m:observe(i, D.normal(mu, 1), y) end
end)
local ys = { 1.2, 0.4, 2.1, 1.7, 0.9, 1.1, 1.6, 0.2, 1.3, 1.0 }
local sy = 0
for _, y in ipairs(ys) do sy = sy + y end
local nn_mean, nn_sd = sy / (#ys + 0.25), math.sqrt(1 / (#ys + 0.25))

T.test("mh_and_is_normal_normal_match_the_conjugate_posterior", function()
  local mh = plume.infer(nn, ys, { method = "mh", samples = 3000, chains = 4, seed = 3 }):summary().mu
  T.ok(math.abs(mh.mean - nn_mean) < 4 * mh.mcse_mean, string.format("mh mean %.4f vs %.4f (mcse %.4f)", mh.mean, nn_mean, mh.mcse_mean))
  T.near(mh.sd, nn_sd, 0.1 * nn_sd, "mh sd")
  T.ok(mh.rhat < 1.01, "rhat")
  local is = plume.infer(nn, ys, { method = "is", samples = 50000, seed = 4 }):summary().mu
  T.ok(math.abs(is.mean - nn_mean) < 4 * is.mcse_mean, string.format("is mean %.4f vs %.4f (mcse %.4f)", is.mean, nn_mean, is.mcse_mean))
end)

T.test("mh_moves_mvnormal_sites_jointly_and_names_their_columns", function()
  local model = plume.model(function(m)
    local x = m:sample("x", D.mvnormal({ 0, 0 }, { { 1, 0 }, { 0, 1 } }))
    m:observe("y", D.mvnormal(x, { { 1, 0 }, { 0, 1 } }), { 1, 2 })
  end)
  local s = plume.infer(model, nil, { samples = 3000, chains = 4, seed = 5 }):summary()
  T.ok(math.abs(s["x[1]"].mean - 0.5) < 4 * s["x[1]"].mcse_mean, "x[1] mean " .. s["x[1]"].mean)
  T.ok(math.abs(s["x[2]"].mean - 1.0) < 4 * s["x[2]"].mcse_mean, "x[2] mean " .. s["x[2]"].mean)
end)

T.test("mh_discrete_site_matches_enumeration", function()
  local model = plume.model(function(m)
    local z = m:sample("z", D.bernoulli(0.5))
    m:observe("y", D.normal(2 * z, 1), 1.5)
  end)
  local l1, l0 = math.exp(-0.5 * 0.25), math.exp(-0.5 * 2.25)
  local exact = l1 / (l1 + l0)
  local s = plume.infer(model, nil, { samples = 4000, chains = 4, seed = 6 }):summary().z
  T.ok(math.abs(s.mean - exact) < 4 * s.mcse_mean, string.format("P(z=1) %.4f vs %.4f", s.mean, exact))
end)

-- The number of latent sites changes with n: this exercises the fresh/stale corrections of trace MH.
-- n uniform on {1,2,3}, x_i ~ N(0,1), y ~ N(sum x, 1) at y = 2: p(y | n) = N(2; 0, n + 1).
T.test("mh_transdimensional_model_matches_enumeration", function()
  local model = plume.model(function(m)
    local n = m:sample("n", D.categorical { 1 / 3, 1 / 3, 1 / 3 })
    local s = 0
    for i = 1, n do s = s + m:sample("x" .. i, D.normal(0, 1)) end
    m:observe("y", D.normal(s, 1), 2)
  end)
  local w, z, en = {}, 0, 0
  for n = 1, 3 do w[n] = math.exp(D.normal(0, math.sqrt(n + 1)):logpdf(2)); z = z + w[n] end
  for n = 1, 3 do en = en + n * w[n] / z end
  local s = plume.infer(model, nil, { samples = 6000, chains = 4, seed = 7 }):summary().n
  T.ok(math.abs(s.mean - en) < 4 * s.mcse_mean, string.format("E[n] %.4f vs %.4f (mcse %.4f)", s.mean, en, s.mcse_mean))
end)

T.test("same_seed_gives_byte_identical_csv_for_1_and_2_threads", function()
  local function csv(threads, seed)
    local path = os.tmpname()
    plume.infer(coin, flips, { samples = 500, chains = 4, seed = seed, threads = threads }):write_csv(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    os.remove(path)
    return s
  end
  local a, b, c = csv(1, 11), csv(2, 11), csv(1, 12)
  T.ok(#a > 1000, "csv written")
  T.ok(a == b, "threads = 1 and threads = 2 give the same bytes")
  T.ok(a ~= c, "another seed gives other draws")
  T.eq(a:match("^[^\n]*"), "chain,draw,p")
end)

T.test("deterministic_sites_are_recorded", function()
  local model = plume.model(function(m)
    local p = m:sample("p", D.beta(2, 2))
    m:deterministic("odds", p / (1 - p))
  end)
  local post = plume.infer(model, nil, { method = "prior", samples = 100, seed = 1 })
  local p, o = post:draws("p"), post:draws("odds")
  for i = 1, 100 do T.near(o[i], p[i] / (1 - p[i]), 1e-12) end
end)

T.test("observations_outside_the_support_weigh_minus_infinity_never_nan", function()
  -- p ~ U(0,1), 0.5 observed from U(0, p): weight -inf when p < 0.5; Z = log 2, so logz = log(log 2)
  local model = plume.model(function(m)
    local p = m:sample("p", D.uniform(0, 1))
    m:observe("y", D.uniform(0, p), 0.5)
  end)
  local post = plume.infer(model, nil, { method = "is", samples = 40000, seed = 8 })
  T.ok(post.logz == post.logz, "logz is not NaN")
  local s = post:summary().p
  local rel = math.sqrt(40000 / s.ess_bulk - 1) / math.sqrt(40000)
  T.near(post.logz, math.log(math.log(2)), 4 * rel, "logz")
  T.ok(s.q5 >= 0.5, "no draw with p < 0.5 carries weight")
end)

T.test("impossible_observations_give_a_clear_error", function()
  local model = plume.model(function(m)
    local p = m:sample("p", D.beta(1, 1))
    m:observe("y", D.bernoulli(p), 3)
  end)
  T.raises(function() plume.infer(model, nil, { method = "is", samples = 100, seed = 1 }) end,
    "every one of the 100 samples has weight -inf")
  T.raises(function() plume.infer(model, nil, { method = "mh", samples = 10, seed = 1 }) end,
    "found no starting point with finite log density")
end)

T.test("model_errors_carry_file_and_line", function()
  local dup = plume.model(function(m)
    m:sample("a", D.normal(0, 1))
    m:sample("a", D.normal(0, 1))
  end)
  local err = T.raises(function() plume.infer(dup, nil, { samples = 10, seed = 1 }) end, "address 'a' is used twice")
  T.ok(err:find("test_infer.lua:%d+:"), err)
  local bad = plume.model(function(m) m:sample("a", 3) end)
  T.raises(function() plume.infer(bad, nil, { samples = 10, seed = 1 }) end, "m:sample: dist must be a dist (got number)")
  local neg = plume.model(function(m) m:sample("a", D.normal(0, -2)) end)
  err = T.raises(function() plume.infer(neg, nil, { samples = 10, seed = 1 }) end, "normal: sigma must be > 0 (got -2)")
  T.ok(err:find("test_infer.lua:%d+:"), err)
  local obs = plume.model(function(m) m:observe("y", D.normal(0, 1), "x") end)
  T.raises(function() plume.infer(obs, nil, { samples = 10, seed = 1 }) end, "m:observe: value of 'y' must be a number (got string)")
  local nan = plume.model(function(m) m:factor(0 / 0) end)
  T.raises(function() plume.infer(nan, nil, { method = "is", samples = 10, seed = 1 }) end, "m:factor: log weight is NaN")
end)

T.test("bad_options_are_named", function()
  T.raises(function() plume.infer(coin, flips, { sample = 10 }) end, "unknown option 'sample'")
  T.raises(function() plume.infer(coin, flips, { samples = "many" }) end, "option 'samples' must be an integer (got string)")
  T.raises(function() plume.infer(coin, flips, { method = "gibs" }) end, "unknown method 'gibs'")
  T.raises(function() plume.infer(coin, flips, { chains = 0 }) end, "option 'chains' must be in 1..1024")
  T.raises(function() plume.infer(42, flips) end, "plume.infer: expected a plume.model (got number)")
  T.raises(function() plume.model(1) end, "plume.model: expected a function")
end)

T.test("the_handle_is_only_valid_during_a_run", function()
  local kept
  local model = plume.model(function(m) kept = m; m:sample("a", D.normal(0, 1)) end)
  plume.infer(model, nil, { method = "prior", samples = 1, seed = 1 })
  T.raises(function() kept:sample("b", D.normal(0, 1)) end, "called outside a model run")
end)

T.test("plume_args_passes_several_arguments", function()
  local model = plume.model(function(m, a, b)
    m:deterministic("s", a + b)
  end)
  local post = plume.infer(model, plume.args(2, 3), { method = "prior", samples = 2, seed = 1 })
  T.eq(post:draws("s")[1], 5)
end)

T.test("summary_prints_as_a_table_with_every_field", function()
  local post = plume.infer(coin, flips, { samples = 200, chains = 2, seed = 9 })
  local s = post:summary()
  for _, k in ipairs { "mean", "sd", "q5", "q50", "q95", "ess_bulk", "ess_tail", "rhat" } do
    T.eq(type(s.p[k]), "number", k)
  end
  local text = tostring(s)
  T.ok(text:find("ess_bulk") and text:find("\np "), text)
end)

T.test("write_json_is_valid_enough_to_read_back", function()
  -- ArviZ InferenceData's JSON since issue 14: posterior.p is chains x draws
  local path = os.tmpname()
  local post = plume.infer(coin, flips, { samples = 20, chains = 2, seed = 9 })
  post:write_json(path)
  local j = plume.read_json(path)
  os.remove(path)
  T.eq(#j.posterior.p, 2, "2 chains")
  local n, same = 0, true
  local d = post:draws("p")
  for c = 1, 2 do
    for i = 1, 20 do
      n = n + 1
      same = same and j.posterior.p[c][i] == d[n]
    end
  end
  T.ok(n == 40 and same, "40 numbers, equal to post:draws")
end)

T.test("output_option_writes_draws_as_they_are_produced", function()
  local path, path2 = os.tmpname(), os.tmpname()
  local post = plume.infer(coin, flips, { samples = 300, chains = 2, seed = 5, output = path })
  post:write_csv(path2)
  local a, b = io.open(path):read("a"), io.open(path2):read("a")
  T.ok(a == b, "the streamed file equals write_csv")
  -- a run that fails part-way keeps what it produced
  local runs = 0
  local flaky = plume.model(function(m)
    runs = runs + 1
    if runs > 150 then error("power cut") end
    m:sample("p", D.beta(2, 2))
  end)
  T.raises(function() plume.infer(flaky, nil, { method = "prior", samples = 1000, seed = 1, output = path }) end, "power cut")
  local n = 0
  for _ in io.lines(path) do n = n + 1 end
  T.eq(n, 151, "header and the 150 draws made before the failure")
  os.remove(path); os.remove(path2)
end)

T.test("chains_on_threads_match_one_thread_whatever_the_program_closes_over", function()
  -- a local helper function and a data table (copied to each chain's own Lua state) ...
  local function prior() return D.beta(2, 2) end
  local local_model = plume.model(function(m, ys)
    local p = m:sample("p", prior())
    for i, y in ipairs(ys) do m:observe(i, D.bernoulli(p), y) end
  end)
  -- ... and a global of this script, which a fresh state lacks: those chains run on the calling state
  HELPER_SCALE = 2
  local global_model = plume.model(function(m)
    local x = m:sample("x", D.normal(0, HELPER_SCALE))
    m:observe("y", D.normal(x, 1), 1.5)
  end)
  for _, case in ipairs { { local_model, { 1, 0, 1, 1 } }, { global_model, nil } } do
    local a = plume.infer(case[1], case[2], { samples = 300, chains = 4, seed = 3, threads = 1 })
    local b = plume.infer(case[1], case[2], { samples = 300, chains = 4, seed = 3, threads = 2 })
    local pa, pb = a:draws(a:sites()[1]), b:draws(b:sites()[1])
    T.eq(#pa, #pb)
    for i = 1, #pa do T.eq(pa[i], pb[i], "draw " .. i) end
    for c = 1, 4 do T.eq(a.accept_rate[c], b.accept_rate[c], "acceptance of chain " .. c) end
  end
  -- a genuine error in the program is reported with its own message on any thread count
  local bad = plume.model(function(m) m:sample("a", D.normal(0, -1)) end)
  T.raises(function() plume.infer(bad, nil, { samples = 10, chains = 2, threads = 2, seed = 1 }) end, "sigma must be > 0")
end)
