-- test_posterior_io.lua -- posteriors in the layouts other tools read (CmdStan's CSV, ArviZ's JSON) and back
-- (plume.read_posterior), NaN kept apart from absent sites, print(model), hmm:filter/posterior as arrays.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

local function slurp(path)
  local f = assert(io.open(path))
  local s = f:read("a")
  f:close()
  return s
end

local function lines(path)
  local out = {}
  for l in io.lines(path) do out[#out + 1] = l end
  return out
end

-- a model with a scalar, a discrete site, a vector, a NaN-valued deterministic and a site present in some
-- draws only (z exists when k == 1)
local model = plume.model(function(m, ys)
  local mu = m:sample("mu", D.normal(0, 10))
  local k = m:sample("k", D.bernoulli(0.5))
  if k == 1 then m:sample("z", D.normal(0, 1)) end
  m:deterministic("v", { mu, 2 * mu })
  m:deterministic("nanv", 0 / 0)
  for i, y in ipairs(ys) do m:observe("y" .. i, D.normal(mu, 1), y) end
end)
local ys = { 1, 2, 3 }
local post = plume.infer(model, ys, { samples = 30, warmup = 30, chains = 2, seed = 11, quiet = true })
local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)

-- the draw positions (flat, chains concatenated) where site z is absent, from post:draws
local function absent_positions(p, site)
  local out = {}
  for i, v in ipairs(p:draws(site)) do if v == false then out[#out + 1] = i end end
  return out
end

T.test("cmdstan_files_have_cmdstans_header_columns_and_one_file_per_chain", function()
  local files = post:write_csv(dir .. "/fit.csv", { format = "cmdstan" })
  T.eq(#files, 2, "one file per chain")
  T.eq(files[2], dir .. "/fit_2.csv", "chain files are path_<chain>.csv")
  for c = 1, 2 do
    local L = lines(files[c])
    local expect = {
      "# model = plume", "# method = sample (Default)", "#   sample", "#     num_samples = 30",
      "#     num_warmup = 30", "#     save_warmup = 0", "#     thin = 1", "#     adapt", "#       engaged = 1",
      "#     algorithm = mh", "#     num_chains = 2", "# id = " .. c, "# random", "#   seed = 11",
      "# plume_version = " .. plume.version, "# plume_method = mh",
      "lp__,mu,k,v.1,v.2,nanv,z" }
    for i, e in ipairs(expect) do T.eq(L[i], e, files[c] .. " line " .. i) end
    -- 30 draws, then the absent list, where CmdStan puts its timing comments
    T.eq(#L, #expect + 30 + 1, "header, 30 draw lines and one '# absent:' line")
    T.ok(L[#L]:match("^# absent: z[ %d]+$"), L[#L])
  end
end)

T.test("cmdstan_values_read_back_with_read_csv_equal_the_draws", function()
  -- strip the comment lines and read the table with plume.read_csv: same columns, same numbers
  local mu, lp, k = post:draws("mu"), post:lp(), 0
  T.ok(lp and #lp == 60, "the MH engine records each draw's log density")
  for c = 1, 2 do
    local tmp = dir .. "/plain.csv"
    local f = assert(io.open(tmp, "w"))
    for _, l in ipairs(lines(dir .. "/fit_" .. c .. ".csv")) do
      if l:sub(1, 1) ~= "#" then f:write(l, "\n") end
    end
    f:close()
    local cols, names = plume.read_csv(tmp)
    T.eq(table.concat(names, ","), "lp__,mu,k,v.1,v.2,nanv,z", "columns")
    for i = 1, 30 do
      k = k + 1
      T.eq(cols.mu[i], mu[k], "mu draw " .. k)
      T.eq(cols.lp__[i], lp[k], "lp__ draw " .. k)
      T.ok(cols.nanv[i] ~= cols.nanv[i], "NaN written as nan")
    end
  end
  -- CmdStan writes NaN as nan; the fields of nanv and of absent z are both "nan" (ArviZ needs numbers)
  T.ok(slurp(dir .. "/fit_1.csv"):find(",nan,nan\n", 1, true), "nan fields")
end)

-- summaries equal line for line (every printed digit) and draws equal bit for bit, NaN and absent kept apart
local function same_posterior(q, what)
  T.eq(tostring(q:summary()), tostring(post:summary()), what .. ": printed summary")
  T.eq(table.concat(q:sites(), ","), table.concat(post:sites(), ","), what .. ": sites in order")
  for _, site in ipairs(post:sites()) do
    local a, b = post:draws(site), q:draws(site)
    T.eq(#b, #a, what .. ": number of draws of " .. site)
    for i = 1, #a do
      local same = a[i] == b[i] or (a[i] ~= a[i] and b[i] ~= b[i])
      T.ok(same, string.format("%s: %s draw %d: %s vs %s", what, site, i, tostring(a[i]), tostring(b[i])))
    end
  end
  T.eq(table.concat(absent_positions(q, "z"), " "), table.concat(absent_positions(post, "z"), " "), what .. ": absent draws")
  T.ok(#absent_positions(post, "z") > 0, "the run has draws without z")
  T.ok(q:draws("nanv")[1] ~= q:draws("nanv")[1], what .. ": a NaN value reads back as NaN, not as absent")
end

T.test("read_posterior_reads_plumes_csv_back", function()
  post:write_csv(dir .. "/plain_fit.csv")
  local text = slurp(dir .. "/plain_fit.csv")
  T.ok(text:find(",nan,\n", 1, true), "NaN is nan and an absent site an empty field")
  local q = plume.read_posterior(dir .. "/plain_fit.csv")
  same_posterior(q, "plume csv")
end)

T.test("read_posterior_reads_cmdstan_files_back", function()
  local q = plume.read_posterior(dir .. "/fit.csv")   -- the path given to write_csv: its chain files
  same_posterior(q, "cmdstan")
  T.eq(q.method, "mh", "method")
  T.eq(q.seed, 11, "seed")
  T.eq(q.samples, 30, "samples")
  T.eq(q.chains, 2, "chains")
  local lp, lq = post:lp(), q:lp()
  for i = 1, #lp do T.eq(lq[i], lp[i], "lp__ " .. i) end
  local one = plume.read_posterior(dir .. "/fit_2.csv")
  T.eq(one.chains, 1, "one chain file alone")
end)

T.test("json_has_arviz_groups_with_chain_and_draw_dimensions", function()
  post:write_json(dir .. "/fit.json")
  local j = plume.read_json(dir .. "/fit.json")
  T.eq(#j.posterior.mu, 2, "chains")
  T.eq(#j.posterior.mu[1], 30, "draws")
  T.eq(#j.posterior.v[1][1], 2, "the vector v[1..2] is one variable, chain x draw x 2")
  T.eq(j.posterior.v[2][5][2], post:draws("v[2]")[35], "v[2] of chain 2, draw 5")
  T.eq(j.posterior.nanv[1][1], plume.json.null, "NaN is null")
  T.eq(#j.sample_stats.lp[1], 30, "sample_stats.lp")
  T.eq(j.log_likelihood, nil, "no log_likelihood group without pointwise values")
  T.eq(j.attrs.method, "mh", "attrs.method")
  T.eq(j.attrs.inference_library, "plume", "attrs.inference_library")
  -- absent draws: null in the data and listed (0-based) in attrs.plume_absent
  local listed = {}
  for c = 1, 2 do
    for _, i in ipairs(j.attrs.plume_absent.z[c]) do
      listed[#listed + 1] = (c - 1) * 30 + i + 1
      T.eq(j.posterior.z[c][i + 1], plume.json.null, "absent z is null")
    end
  end
  T.eq(table.concat(listed, " "), table.concat(absent_positions(post, "z"), " "), "plume_absent lists the absent draws")
  T.eq(j.attrs.plume_absent.mu, nil, "mu is never absent")
end)

T.test("read_posterior_reads_json_back", function()
  local q = plume.read_posterior(dir .. "/fit.json")
  same_posterior(q, "json")
  T.eq(q.method, "mh", "method")
  T.eq(q.seed, 11, "seed")
end)

T.test("log_lik_columns_go_to_the_log_likelihood_group", function()
  local m2 = plume.model(function(m, y)
    local mu = m:sample("mu", D.normal(0, 1))
    local ll = {}
    for i, yi in ipairs(y) do
      m:observe("y" .. i, D.normal(mu, 1), yi)
      ll[i] = D.normal(mu, 1):logpdf(yi)
    end
    m:deterministic("log_lik", ll)
  end)
  local p2 = plume.infer(m2, { 0.5, -0.2, 1 }, { samples = 10, chains = 1, seed = 2, quiet = true })
  p2:write_json(dir .. "/ll.json")
  local j = plume.read_json(dir .. "/ll.json")
  T.eq(#j.log_likelihood.log_lik[1][1], 3, "log_lik: chain x draw x 3")
  T.eq(j.posterior.log_lik, nil, "not in posterior")
  T.eq(j.log_likelihood.log_lik[1][4][3], p2:draws("log_lik[3]")[4], "value")
  local q = plume.read_posterior(dir .. "/ll.json")
  T.eq(table.concat(q:sites(), ","), table.concat(p2:sites(), ","), "columns back in plume's order")
end)

T.test("weighted_draws_keep_their_weights_in_every_layout", function()
  local is = plume.infer(model, ys, { method = "is", samples = 50, seed = 4, quiet = true })
  local w = is:weights()
  is:write_csv(dir .. "/is.csv")
  is:write_csv(dir .. "/is_stan.csv", { format = "cmdstan" })
  is:write_json(dir .. "/is.json")
  T.ok(slurp(dir .. "/is_stan_1.csv"):find("\nlp__,log_weight__,mu,", 1, true), "log_weight__ column")
  for _, f in ipairs { dir .. "/is.csv", dir .. "/is_stan.csv", dir .. "/is.json" } do
    local q = plume.read_posterior(f)
    local w2 = q:weights()
    T.ok(w2 and #w2 == #w, f .. ": weights")
    for i = 1, #w do T.eq(w2[i], w[i], f .. " weight " .. i) end
    T.eq(tostring(q:summary()), tostring(is:summary()), f .. ": summary")
  end
end)

T.test("infinities_survive_every_layout", function()
  local m3 = plume.model(function(m)
    local x = m:sample("x", D.normal(0, 1))
    m:deterministic("big", x > 0 and math.huge or -math.huge)
  end)
  local p3 = plume.infer(m3, nil, { method = "prior", samples = 20, seed = 5, quiet = true })
  p3:write_csv(dir .. "/inf.csv")
  p3:write_csv(dir .. "/inf_s.csv", { format = "cmdstan" })
  p3:write_json(dir .. "/inf.json")
  T.ok(slurp(dir .. "/inf.json"):find("1e999", 1, true), "JSON writes infinities as 1e999")
  for _, f in ipairs { dir .. "/inf.csv", dir .. "/inf_s.csv", dir .. "/inf.json" } do
    local a, b = p3:draws("big"), plume.read_posterior(f):draws("big")
    for i = 1, #a do T.eq(b[i], a[i], f .. " draw " .. i) end
  end
end)

T.test("bad_files_get_errors_naming_the_line", function()
  local f = assert(io.open(dir .. "/bad.csv", "w"))
  f:write("chain,draw,a\n1,1,0.5\n1,2,abc\n")
  f:close()
  T.raises(function() plume.read_posterior(dir .. "/bad.csv") end, "bad.csv:3: column 'a' is not a number ('abc')")
  f = assert(io.open(dir .. "/bad2.csv", "w"))
  f:write("chain,draw,a\n1,1,0.5,7\n")
  f:close()
  T.raises(function() plume.read_posterior(dir .. "/bad2.csv") end, "bad2.csv:2:")
  f = assert(io.open(dir .. "/bad.json", "w"))
  f:write('{"posterior": {"a": [[1, 2],\n [3, }')
  f:close()
  T.raises(function() plume.read_posterior(dir .. "/bad.json") end, "bad.json:2: not valid JSON")
  T.raises(function() plume.read_posterior(dir .. "/none.csv") end, "cannot open")
  T.raises(function() post:write_csv(dir .. "/x.csv", { format = "stan" }) end, 'format must be "plume" or "cmdstan"')
  T.raises(function() post:write_csv(dir .. "/x.csv", { fromat = "cmdstan" }) end, "unknown option 'fromat'")
end)

T.test("print_model_shows_its_sites_from_one_run", function()
  local s = tostring(model)
  -- the program reads ys: without data it fails, and says so
  T.ok(s:find("sites unknown", 1, true) and s:find("^plume%.model %(.-test_posterior_io%.lua:%d+%)"), s)
  local m4 = plume.model(function(m)
    local mu = m:sample("mu", D.normal(0, 10))
    m:deterministic("twice", 2 * mu)
    m:observe("y", D.normal(mu, 1), 1.5)
  end)
  plume.seed(7)
  local a = plume.infer(m4, nil, { method = "prior", samples = 5, quiet = true }):draws("mu")
  plume.seed(7)
  s = tostring(m4)
  local b = plume.infer(m4, nil, { method = "prior", samples = 5, quiet = true }):draws("mu")
  T.ok(s:find("3 sites in one run under the prior", 1, true), s)
  T.ok(s:find("\n  mu%s+latent%s+normal%(mu=0, sigma=10%)"), s)
  T.ok(s:find("\n  twice%s+deterministic"), s)
  T.ok(s:find("\n  y%s+observed%s+normal%(mu="), s)
  for i = 1, 5 do T.eq(b[i], a[i], "printing a model leaves plume's default stream alone") end
end)

T.test("hmm_filter_and_posterior_as_arrays_equal_the_tables", function()
  local h = plume.hmm { init = { 0.5, 0.3, 0.2 }, trans = { { 0.8, 0.1, 0.1 }, { 0.2, 0.7, 0.1 }, { 0.1, 0.2, 0.7 } },
                        emit = { { 0.7, 0.3 }, { 0.2, 0.8 }, { 0.5, 0.5 } } }
  local _, obs = h:sample(200, 3)
  for _, method in ipairs { "filter", "posterior" } do
    local rows, ll = h[method](h, obs)
    local a, ll2 = h[method](h, obs, { as = "array" })
    T.eq(ll2, ll, method .. ": loglik")
    local r, c = a:shape()
    T.ok(r == 200 and c == 3, method .. ": a 200 x 3 array")
    for t = 1, 200 do
      for k = 1, 3 do T.eq(a[(t - 1) * 3 + k], rows[t][k], method .. " row " .. t) end
    end
    local many = h[method](h, { obs, obs }, { as = "array" })
    T.eq(#many, 2, method .. ": one array per sequence")
    T.eq(many[2][600], rows[200][3], method .. ": second sequence")
  end
  T.raises(function() h:posterior(obs, { as = "matrix" }) end, 'hmm:posterior: option \'as\' must be "table" or "array"')
  T.raises(function() h:filter(obs, { sa = "array" }) end, "sa")
end)

os.execute("rm -rf " .. dir)
