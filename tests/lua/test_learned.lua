-- test_learned.lua -- learned block proposals (plume.proposals, plume.kernel.learned): MH with the shipped
-- networks leaves the posterior exact (simulation-based calibration on a small mixture, with a negative control
-- that drops the reverse proposal density; the exact posterior of a tiny mixture by enumeration), training
-- approaches the exact conditional of the grid motif, proposal objects, and damaged files refused with a clear
-- error through Lua.
local T = dofile("tests/lua/check.lua")
local D = plume.dist
local LIB = os.getenv("PLUME_PROPOSALS") or "stdlib/proposals"

-- two components with distinct priors, mu_k ~ normal(m0[k], S0), y_i ~ normal(mu[z_i], 1), z_i ~ categorical(W)
local M0, S0, W = { -1.5, 1.5 }, 1.2, { 0.4, 0.6 }
local model = plume.model(function(m, y)
  local mu = plume.vector{ m:sample("mu[1]", D.normal(M0[1], S0)), m:sample("mu[2]", D.normal(M0[2], S0)) }
  for i = 1, #y do
    local z = m:sample("z[" .. i .. "]", D.categorical(W))
    m:observe("y[" .. i .. "]", D.normal(mu[z], 1), y[i])
  end
end)

-- The exact posterior means of mu[1], mu[2] and z[1] (1-based) by enumerating the 2^n labellings: given the
-- labels, each mean is conjugate normal-normal.
local function exact(y)
  local n, tot, e1, e2, ez = #y, 0, 0, 0, 0
  for c = 0, (1 << n) - 1 do
    local lw, cnt, sum, ss = 0, { 0, 0 }, { 0, 0 }, { 0, 0 }
    for i = 1, n do
      local z = ((c >> (i - 1)) & 1) + 1
      lw = lw + math.log(W[z])
      cnt[z], sum[z], ss[z] = cnt[z] + 1, sum[z] + y[i], ss[z] + y[i] ^ 2
    end
    local mean = {}
    for k = 1, 2 do
      local p0 = 1 / S0 ^ 2
      local prec = p0 + cnt[k]
      mean[k] = (M0[k] * p0 + sum[k]) / prec
      lw = lw - 0.5 * ss[k] - 0.5 * M0[k] ^ 2 * p0 + 0.5 * mean[k] ^ 2 * prec + 0.5 * math.log(p0 / prec)
    end
    local w = math.exp(lw)
    tot, e1, e2, ez = tot + w, e1 + w * mean[1], e2 + w * mean[2], ez + w * ((c & 1) + 1)
  end
  return { ["mu[1]"] = e1 / tot, ["mu[2]"] = e2 / tot, ["z[1]"] = ez / tot }
end

local Y = { -2.1, -0.4, 0.6, 1.9, 2.4, 0.1 }

-- each posterior mean within 4 Monte Carlo standard errors of the exact one; the returned number is the largest
-- deviation in standard errors
local function deviation(kernel)
  local want = exact(Y)
  local post = plume.infer(model, Y, { kernel = kernel, chains = 2, warmup = 200, samples = 4000, seed = 11 })
  local s, worst = post:summary(), 0
  for site, v in pairs(want) do
    worst = math.max(worst, math.abs(s[site].mean - v) / s[site].mcse_mean)
  end
  return worst, post
end

T.test("mixture_posterior_equals_enumeration", function()
  local worst, post = deviation(plume.kernel.learned{ library = LIB, motifs = { "mixture" } })
  T.ok(worst < 4, string.format("largest deviation %.2f Monte Carlo standard errors", worst))
  for c = 1, 2 do
    local r, rm = post.accept_rate[c], post["learned.mixture.accept_rate"][c]
    T.ok(r > 0.2 and r <= 1 and r == rm, "chain " .. c .. " acceptance rate " .. tostring(r))
  end
end)

-- The negative control: the same check fed a kernel that drops the reverse proposal density must fail it. The
-- mixture network starts from the block's exact conditional (its skip inputs), and for an exact q the broken ratio
-- is 1 / q(old), which rejects only where q's density exceeds 1 and then only narrows a mean's posterior a little
-- around the same centre: on this small mixture the broken kernel is nearly right (measured: within 0.5-1.7
-- standard errors of the means and of E[mu^2]), so the control runs where the proposal is far from exact: the
-- partially observed grid below (partially_observed_grid_learned_kernel_alone_is_exact), whose network is accepted
-- about 80% of the time.

-- SBC: truth from the prior, data from the truth, 19 thinned draws of the learned kernel alone; the rank of the
-- truth among them is uniform on 0..19 when the kernel leaves the posterior invariant. Ranks of mu[1] and of
-- mu[1] - mu[2] in 5 bins; chi-square with 4 degrees of freedom against its 0.999 quantile, 18.47 (fixed seeds).
local function sbc(kernel, reps)
  local bins1, bins2 = { 0, 0, 0, 0, 0 }, { 0, 0, 0, 0, 0 }
  plume.seed(2026)
  for s = 1, reps do
    local mu = { D.normal(M0[1], S0):sample(), D.normal(M0[2], S0):sample() }
    local y = {}
    for i = 1, 4 do y[i] = D.normal(mu[D.categorical(W):sample()], 1):sample() end
    local post = plume.infer(model, y, { kernel = kernel, chains = 1, warmup = 50, samples = 190, thin = 10, seed = s })
    local a, b = post:draws("mu[1]"), post:draws("mu[2]")
    T.eq(#a, 19, "kept draws")
    local r1, r2 = 0, 0
    for j = 1, #a do
      if a[j] < mu[1] then r1 = r1 + 1 end
      if a[j] - b[j] < mu[1] - mu[2] then r2 = r2 + 1 end
    end
    bins1[r1 // 4 + 1] = bins1[r1 // 4 + 1] + 1
    bins2[r2 // 4 + 1] = bins2[r2 // 4 + 1] + 1
  end
  local function chisq(bins)
    local c, e = 0, reps / 5
    for _, n in ipairs(bins) do c = c + (n - e) ^ 2 / e end
    return c
  end
  return chisq(bins1), chisq(bins2)
end

T.test("sbc_mixture_learned_kernel_is_calibrated", function()
  local c1, c2 = sbc(plume.kernel.learned{ library = LIB, motifs = { "mixture" } }, 200)
  T.ok(c1 < 18.47 and c2 < 18.47, string.format("chi-square of the ranks: %.2f, %.2f (0.999 quantile 18.47)", c1, c2))
end)

-- The grid network's mean log q on fresh draws of the motif's prior is below the exact conditional's mean log
-- density (a KL divergence is >= 0; tolerance 3 standard errors of the mean difference) and within 0.15 nats of
-- it. The exact conditional from the 17 features: own terms x L - softplus(L), children x U, normalised over the
-- 16 values with every absent position (flags x[14..17]) at 0, the value the features are written for.
T.test("grid_network_approaches_the_exact_conditional", function()
  local p = plume.proposals.load(LIB .. "/grid.plmprop")
  local X, V = plume.proposals.draw("grid", 2000, 77)
  local function softplus(l) return l > 0 and l + math.log(1 + math.exp(-l)) or math.log(1 + math.exp(l)) end
  local function score(x, a, b, c, d)
    local s = a * x[1] - softplus(x[1])
    s = s + b * x[2 + a] - softplus(x[2 + a]) + c * x[4 + a] - softplus(x[4 + a])
    s = s + d * x[6 + b + 2 * c] - softplus(x[6 + b + 2 * c])
    return s + a * x[10] + b * x[11] + c * x[12] + d * x[13]
  end
  local n, sum, sum2, partial = #X, 0, 0, 0
  for i = 1, n do
    local x, v, z = X[i], V[i], 0
    local absent = 0
    for j = 0, 3 do if x[14 + j] ~= 0 then absent = absent | (1 << j) end end
    if absent ~= 0 then partial = partial + 1 end
    for cfg = 0, 15 do
      if cfg & absent == 0 then z = z + math.exp(score(x, cfg & 1, (cfg >> 1) & 1, (cfg >> 2) & 1, (cfg >> 3) & 1)) end
    end
    local lp = score(x, v[1] - 1, v[2] - 1, v[3] - 1, v[4] - 1) - math.log(z)
    local d = lp - p:logq(x, v)
    sum, sum2 = sum + d, sum2 + d * d
  end
  T.ok(partial > n / 2 and partial < n, "the prior draws blocks with and without absent positions")
  local mean = sum / n
  local se = math.sqrt((sum2 / n - mean ^ 2) / n)
  T.ok(mean > -3 * se, string.format("mean log p - log q = %.4f, below 0 by more than 3 se (%.4f)", mean, se))
  T.ok(mean < 0.15, string.format("the network is %.4f nats per block from the exact conditional", mean))
end)

-- A 3x3 grid network and a 3-state HMM of 5 steps, each sampled by its learned kernel alone: the marginals
-- P(node = 1) and P(state = 1) equal the enumerated ones within 4 Monte Carlo standard errors.
local function grid_model()
  local B = { { 0.3, 0, 0 }, { -0.5, 0, 1.5 }, { 0.2, 0, -2 }, { 1, -1.7, 0 }, { -0.3, 2, 1 }, { 0.1, -1, 1.2 },
    { 0.4, 1.1, 0 }, { -1, 0.5, 2.2 }, { 0.7, -2.5, 1.3 } }
  local function logistic(x) return 1 / (1 + math.exp(-x)) end
  local function p_of(r, c, up, left)
    local b = B[3 * (r - 1) + c]
    return b[1] + b[2] * (up or 0) + b[3] * (left or 0)
  end
  local m = plume.model(function(m)
    local x = {}
    for r = 1, 3 do
      x[r] = {}
      for c = 1, 3 do
        local e = p_of(r, c, r > 1 and x[r - 1][c] or nil, c > 1 and x[r][c - 1] or nil)
        x[r][c] = m:sample("x" .. r .. c, D.bernoulli(plume.math.logistic(e)))
      end
    end
    for r = 1, 3 do m:observe("y" .. r, D.bernoulli(0.2 + 0.6 * x[r][r]), 1) end
  end)
  -- exact marginals over the 512 states
  local tot, marg = 0, {}
  for s = 0, 511 do
    local x, lp = {}, 0
    for r = 1, 3 do
      x[r] = {}
      for c = 1, 3 do x[r][c] = (s >> (3 * (r - 1) + c - 1)) & 1 end
    end
    for r = 1, 3 do
      for c = 1, 3 do
        local p = logistic(p_of(r, c, r > 1 and x[r - 1][c] or nil, c > 1 and x[r][c - 1] or nil))
        lp = lp + math.log(x[r][c] == 1 and p or 1 - p)
      end
      lp = lp + math.log(0.2 + 0.6 * x[r][r])
    end
    local w = math.exp(lp)
    tot = tot + w
    for r = 1, 3 do for c = 1, 3 do
      local k = "x" .. r .. c
      marg[k] = (marg[k] or 0) + w * x[r][c]
    end end
  end
  for k, v in pairs(marg) do marg[k] = v / tot end
  return m, marg
end

local function check_marginals(model, data, want, kernel, shift)
  local post = plume.infer(model, data, { kernel = kernel, chains = 2, warmup = 200, samples = 3000, seed = 5 })
  local s, worst = post:summary(), 0
  for site, v in pairs(want) do
    local r = s[site]
    if r.mcse_mean and r.mcse_mean > 0 then worst = math.max(worst, math.abs(r.mean - shift - v) / r.mcse_mean) end
  end
  return worst, post
end

T.test("grid_learned_kernel_marginals_equal_enumeration", function()
  local m, want = grid_model()
  local worst, post = check_marginals(m, nil, want, plume.kernel.learned{ library = LIB, motifs = { "grid" } }, 0)
  T.ok(worst < 4, string.format("largest deviation %.2f Monte Carlo standard errors", worst))
  for c = 1, 2 do
    local r = post["learned.grid.accept_rate"][c]
    T.ok(r > 0.5 and r <= 1, "chain " .. c .. " grid acceptance rate " .. tostring(r))
  end
end)

-- A 4x4 grid network with four grid nodes observed (so that windows lose their a, their d or both, and some nodes
-- lie in no window), sampled by the grid's learned kernel alone: every latent node moves, and the marginals equal
-- the enumerated ones (over the 4,096 latent states) within 4 Monte Carlo standard errors.
T.test("partially_observed_grid_learned_kernel_alone_is_exact", function()
  local R, obs = 4, { [6] = 1, [8] = 0, [11] = 0, [13] = 1 }   -- node (r - 1) R + c
  local function logistic(x) return 1 / (1 + math.exp(-x)) end
  local function coef(v) return { 0.4 * math.sin(3 * v), 1.8 * math.cos(5 * v), -1.6 * math.sin(7 * v + 1) } end
  local function p_of(v, up, left, f)
    local b = coef(v)
    return (f or logistic)(b[1] + b[2] * up + b[3] * left)
  end
  local m = plume.model(function(m)
    local x = {}
    for v = 1, R * R do
      local r, c = (v - 1) // R + 1, (v - 1) % R + 1
      local p = p_of(v, r > 1 and x[v - R] or 0, c > 1 and x[v - 1] or 0, plume.math.logistic)
      if obs[v] then
        m:observe("x" .. v, D.bernoulli(p), obs[v]); x[v] = obs[v]
      else
        x[v] = m:sample("x" .. v, D.bernoulli(p))
      end
    end
  end)
  local lat = {}
  for v = 1, R * R do if not obs[v] then lat[#lat + 1] = v end end
  local tot, marg = 0, {}
  for s = 0, (1 << #lat) - 1 do
    local x, lp = {}, 0
    for v, o in pairs(obs) do x[v] = o end
    for i, v in ipairs(lat) do x[v] = (s >> (i - 1)) & 1 end
    for v = 1, R * R do
      local r, c = (v - 1) // R + 1, (v - 1) % R + 1
      local p = p_of(v, r > 1 and x[v - R] or 0, c > 1 and x[v - 1] or 0)
      lp = lp + math.log(x[v] == 1 and p or 1 - p)
    end
    local w = math.exp(lp)
    tot = tot + w
    for _, v in ipairs(lat) do marg["x" .. v] = (marg["x" .. v] or 0) + w * x[v] end
  end
  for k, v in pairs(marg) do marg[k] = v / tot end
  local worst, post = check_marginals(m, nil, marg, plume.kernel.learned{ library = LIB, motifs = { "grid" } }, 0)
  T.ok(worst < 4, string.format("largest deviation %.2f Monte Carlo standard errors", worst))
  -- the negative control: without the reverse proposal density the same check fails
  local bad = check_marginals(m, nil, marg, plume.kernel.learned{ library = LIB, motifs = { "grid" }, _drop_reverse = true }, 0)
  T.ok(bad > 4, string.format("the kernel without the reverse density is within %.2f standard errors", bad))
  local s = post:summary()
  for _, v in ipairs(lat) do
    local r = s["x" .. v]
    T.ok(r.mcse_mean and r.mcse_mean > 0 and r.sd > 0, "x" .. v .. " moves (P = " .. string.format("%.3f", marg["x" .. v]) .. ")")
  end
end)

T.test("chain_learned_kernel_marginals_equal_enumeration", function()
  local P = { { 0.8, 0.15, 0.05 }, { 0.1, 0.7, 0.2 }, { 0.3, 0.3, 0.4 } }
  local E = { { 0.7, 0.2, 0.1 }, { 0.1, 0.8, 0.1 }, { 0.2, 0.2, 0.6 } }
  local init, ys = { 0.5, 0.3, 0.2 }, { 1, 3, 2, 2, 3 }
  local hmm = plume.model(function(m, y)
    local s = m:sample("s[1]", D.categorical(init))
    m:observe("y[1]", D.categorical(plume.select(E, s)), y[1])
    for t = 2, #y do
      s = m:sample("s[" .. t .. "]", D.categorical(plume.select(P, s)))
      m:observe("y[" .. t .. "]", D.categorical(plume.select(E, s)), y[t])
    end
  end)
  -- E[s_t] (1-based) by enumerating the 3^5 paths
  local tot, es = 0, { 0, 0, 0, 0, 0 }
  for c = 0, 242 do
    local s, w, k = {}, 1, c
    for t = 1, 5 do s[t] = k % 3 + 1; k = k // 3 end
    w = init[s[1]] * E[s[1]][ys[1]]
    for t = 2, 5 do w = w * P[s[t - 1]][s[t]] * E[s[t]][ys[t]] end
    tot = tot + w
    for t = 1, 5 do es[t] = es[t] + w * s[t] end
  end
  local want = {}
  for t = 1, 5 do want["s[" .. t .. "]"] = es[t] / tot end
  local worst = check_marginals(hmm, ys, want, plume.kernel.learned{ library = LIB, motifs = { "chain" } }, 0)
  T.ok(worst < 4, string.format("largest deviation %.2f Monte Carlo standard errors", worst))
end)

-- A damaged proposal file is refused, by plume.proposals.load and by plume.infer through the kernel, with the
-- file's name and what is wrong; never used.
T.test("damaged_proposal_file_is_refused", function()
  local f = assert(io.open(LIB .. "/grid.plmprop", "rb"))
  local bytes = f:read("a")
  f:close()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local path = dir .. "/grid.plmprop"
  local function write(b)
    local g = assert(io.open(path, "wb"))
    g:write(b)
    g:close()
  end
  local m = grid_model()
  local k = plume.kernel.learned{ library = dir, motifs = { "grid" } }
  local mid = #bytes - 200
  write(bytes:sub(1, mid - 1) .. string.char(bytes:byte(mid) ~ 1) .. bytes:sub(mid + 1))
  T.raises(function() plume.proposals.load(path) end, "proposal file '" .. path .. "': checksum mismatch")
  T.raises(function() plume.infer(m, nil, { kernel = k, samples = 10 }) end, "checksum mismatch")
  write(bytes:sub(1, #bytes - 100))
  T.raises(function() plume.infer(m, nil, { kernel = k, samples = 10 }) end, "': truncated")
  write(bytes:sub(1, 8) .. string.char(9) .. bytes:sub(10))
  T.raises(function() plume.infer(m, nil, { kernel = k, samples = 10 }) end, "format version 9, but this plume reads version 4")
  os.remove(path)
  T.raises(function() plume.infer(m, nil, { kernel = k, samples = 10 }) end, "proposal file '" .. path .. "': cannot open it")
  os.execute("rmdir " .. dir)
end)

T.test("proposal_objects_sample_score_and_round_trip", function()
  local p = plume.proposals.train("mixture", { samples = 500, epochs = 1, hidden = 8, seed = 3, progress = false })
  T.eq(p.motif, "mixture", "motif")
  T.eq(p.shape.K_max, 8, "shape")
  local x = plume.proposals.mixture_inputs{ k = 2, w = { 0.5, 0.5 }, mu = { -1, 0 }, sd = { 1, 1 }, y = 0.3 }
  T.eq(#x, p.inputs, "mixture_inputs gives the network's inputs")
  local v, lq = p:sample(x, 1)
  T.ok(v[1] >= 1 and v[1] <= 2 and v[1] == math.floor(v[1]), "slot is a category among K = 2")
  T.near(p:logq(x, v), lq, 1e-12, "logq of a draw is its density")
  local path = os.tmpname()
  p:save(path)
  local q = plume.proposals.load(path)
  T.eq(q:logq(x, v), p:logq(x, v), "a saved proposal scores the same")
  os.remove(path)
  T.ok(tostring(q):find("plume.proposal{motif = mixture", 1, true), "tostring")
  T.raises(function() p:logq(x, { 9, 0 }) end, "values[1] must be a category in 1..8")
  T.raises(function() plume.proposals.train("ring", {}) end, "unknown motif 'ring'")
  T.raises(function() plume.proposals.train("grid", { K_max = 4 }) end, "option 'K_max' is not a parameter of motif grid")
  T.raises(function() plume.kernel.learned{ motifs = { "ring" } } end, "motifs[1] must be one of mixture, grid, chain")
  T.raises(function() plume.infer(model, Y, { kernel = plume.kernel.learned{ library = LIB, motifs = { "grid" } }, samples = 10 }) end,
    "motif grid (a 2x2 block of a binary grid network) does not occur in this model")
  T.ok(tostring(plume.kernel.cycle{ plume.kernel.learned{ motifs = { "mixture" } }, plume.kernel.gibbs{} })
    :find("learned{library = stdlib/proposals; motifs = mixture}", 1, true), "kernel tostring")
end)

-- Same seed, same draws, whatever the thread count (each chain has its own stream and scratch)
T.test("learned_kernel_draws_do_not_depend_on_threads", function()
  local m = grid_model()
  local k = plume.kernel.learned{ library = LIB, motifs = { "grid" } }
  local a = plume.infer(m, nil, { kernel = k, chains = 3, warmup = 20, samples = 50, seed = 9, threads = 1 })
  local b = plume.infer(m, nil, { kernel = k, chains = 3, warmup = 20, samples = 50, seed = 9, threads = 3 })
  T.eq(table.concat(a:draws("x22"), ","), table.concat(b:draws("x22"), ","), "draws of x22")
  T.eq(table.concat(a:draws("x33"), ","), table.concat(b:draws("x33"), ","), "draws of x33")
  local km = plume.kernel.learned{ library = LIB, motifs = { "mixture" } }
  a = plume.infer(model, Y, { kernel = km, chains = 3, samples = 100, seed = 9, threads = 1 })
  b = plume.infer(model, Y, { kernel = km, chains = 3, samples = 100, seed = 9, threads = 3 })
  T.eq(table.concat(a:draws("mu[1]"), ","), table.concat(b:draws("mu[1]"), ","), "draws of mu[1]")
end)
