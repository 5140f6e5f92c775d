-- test_auto.lua -- kernels on static models with discrete sites: plume.kernel.gibbs / block_gibbs composed
-- with continuous kernels (cycle, mixture, rep), method "auto" (Gibbs for discrete and conjugate sites, NUTS
-- restricted to the rest), against a posterior computed by enumeration and quadrature; thread invariance,
-- what auto says it picked, and the errors for kernels on sites they cannot move.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

-- mu ~ N(0, 2) (conjugate: Gibbs in closed form), z ~ bernoulli(0.3) (enumerated), sigma ~ lognormal(0, 0.5)
-- (not conjugate: NUTS), y[i] ~ N(mu, sigma (1 + z)).
local ys = { 1.9, -2.4, 4.7, 1.1, 5.2, -3.3 }
local mixsd = plume.model(function(m, y)
  local mu = m:sample("mu", D.normal(0, 2))
  local z = m:sample("z", D.bernoulli(0.3))
  local sigma = m:sample("sigma", D.lognormal(0, 0.5))
  local sd = sigma * (1 + z)
  for i = 1, #y do m:observe("y[" .. i .. "]", D.normal(mu, sd), y[i]) end
end)

-- The exact posterior means of mu, sigma and z: mu integrated in closed form, z enumerated, log sigma by the
-- midpoint rule on a fine grid (its error is far below the tolerances used here).
local function exact(y)
  local n, ybar, S, tau2 = #y, 0, 0, 4
  for _, v in ipairs(y) do ybar = ybar + v / n end
  for _, v in ipairs(y) do S = S + (v - ybar) ^ 2 end
  local W, Emu, Esig, Pz, lw, terms = 0, 0, 0, 0, {}, {}
  local lo, hi, K = -6, 4, 20000
  local h = (hi - lo) / K
  local best = -math.huge
  for z = 0, 1 do
    for k = 1, K do
      local t = lo + (k - 0.5) * h
      local s2 = (math.exp(t) * (1 + z)) ^ 2
      local v = tau2 + s2 / n
      local l = -0.5 * (t / 0.5) ^ 2 + math.log(z == 1 and 0.3 or 0.7) - 0.5 * n * math.log(2 * math.pi * s2)
        - S / (2 * s2) + 0.5 * math.log(2 * math.pi * s2 / n) - 0.5 * math.log(2 * math.pi * v) - ybar ^ 2 / (2 * v)
      local m = (ybar * n / s2) / (n / s2 + 1 / tau2)
      terms[#terms + 1] = { l, m, math.exp(t), z }
      if l > best then best = l end
    end
  end
  for _, r in ipairs(terms) do
    local w = math.exp(r[1] - best)
    W, Emu, Esig, Pz = W + w, Emu + w * r[2], Esig + w * r[3], Pz + w * r[4]
  end
  return { mu = Emu / W, sigma = Esig / W, z = Pz / W }
end

local truth = exact(ys)

-- every posterior mean within 4 Monte Carlo standard errors of the exact one
local function agrees(post, want, label)
  local s = post:summary()
  for _, site in ipairs({ "mu", "sigma", "z" }) do
    T.near(s[site].mean, want[site], 4 * s[site].mcse_mean, label .. ": posterior mean of " .. site)
  end
end

local cyc = plume.kernel.cycle{ plume.kernel.gibbs{ sites = { "z", "mu" } }, plume.kernel.nuts{ sites = { "sigma" } } }

T.test("cycle_of_gibbs_and_nuts_matches_exact_posterior", function()
  -- no init: the discrete coordinate must start at a valid value on its own
  local post = plume.infer(mixsd, ys, { kernel = cyc, samples = 3000, warmup = 500, chains = 2, seed = 11 })
  agrees(post, truth, "cycle")
  for _, v in ipairs(post:draws("z")) do T.ok(v == 0 or v == 1, "z draws are 0 or 1: got " .. tostring(v)) end
  -- negative control: the same check against the posterior for other data fails
  local wrong = exact({ 2.9, -1.4, 5.7, 2.1, 6.2, -2.3 })
  local s = post:summary()
  T.ok(math.abs(s.mu.mean - wrong.mu) > 4 * s.mu.mcse_mean, "the check separates the posterior of other data")
end)

T.test("gibbs_kernels_compose_with_mixture_and_rep", function()
  local k = plume.kernel.mixture{ { plume.kernel.rep(plume.kernel.gibbs{ sites = "mu" }, 2), 1 },
                                  { plume.kernel.block_gibbs{ sites = { "z" } }, 1 },
                                  { plume.kernel.slice{ sites = { "sigma" } }, 1 } }
  local post = plume.infer(mixsd, ys, { kernel = k, samples = 6000, warmup = 500, chains = 2, seed = 12 })
  agrees(post, truth, "mixture")
  T.ok(tostring(plume.kernel.gibbs{}):find("gibbs{all sites}", 1, true), "a gibbs kernel without sites moves every site")
end)

T.test("gibbs_cycle_draws_are_identical_for_one_and_two_threads", function()
  local a = plume.infer(mixsd, ys, { kernel = cyc, samples = 200, warmup = 100, chains = 2, seed = 5, threads = 1 })
  local b = plume.infer(mixsd, ys, { kernel = cyc, samples = 200, warmup = 100, chains = 2, seed = 5, threads = 2 })
  for _, site in ipairs({ "mu", "sigma", "z" }) do
    T.eq(table.concat(a:draws(site), ","), table.concat(b:draws(site), ","), site .. " draws, 1 vs 2 threads")
  end
end)

T.test("kernels_on_sites_they_cannot_move_are_errors_naming_the_site", function()
  T.raises(function()
    plume.infer(mixsd, ys, { kernel = plume.kernel.nuts{ sites = { "z", "sigma" } }, samples = 10 })
  end, "site 'z' is discrete (bernoulli)")
  T.raises(function()
    plume.infer(mixsd, ys, { kernel = plume.kernel.slice{ sites = "z" }, samples = 10 })
  end, "site 'z' is discrete")
  T.raises(function()
    plume.infer(mixsd, ys, { kernel = plume.kernel.gibbs{ sites = { "mu", "sigma" } }, samples = 10 })
  end, "sigma")
  T.raises(function()
    plume.infer(mixsd, ys, { kernel = plume.kernel.gibbs{ sites = { "nope" } }, samples = 10 })
  end, "site 'nope', which the model does not have")
  T.raises(function() plume.infer(mixsd, ys, { method = "nuts", samples = 10 }) end, "site 'z' is discrete")
  T.raises(function() plume.kernel.gibbs{ sites = {} } end, "option 'sites' is empty")
end)

T.test("auto_picks_gibbs_for_discrete_and_conjugate_sites_and_nuts_for_the_rest", function()
  local post = plume.infer(mixsd, ys, { method = "auto", samples = 3000, warmup = 500, chains = 2, seed = 13 })
  T.eq(post.kernel, "gibbs on mu (normal-normal), z (enumeration); nuts on sigma (continuous, no conjugate pair)",
       "what auto picked")
  agrees(post, truth, "auto")
  -- negative control for the comparison's power: z's prior mean is far outside its tolerance
  local s = post:summary()
  T.ok(math.abs(s.z.mean - 0.3) > 4 * s.z.mcse_mean, "the posterior of z moved from its prior")
end)

T.test("auto_compresses_site_lists_and_uses_no_nuts_when_all_are_gibbs", function()
  local gmm = plume.model(function(m, y)
    local mu = plume.vector{}
    for k = 1, 3 do mu[k] = m:sample("mu[" .. k .. "]", D.normal(2 * k - 4, 2)) end
    local tau = m:sample("tau", D.gamma(1, 1))
    for i = 1, #y do
      local z = m:sample("z[" .. i .. "]", D.categorical({ 0.3, 0.3, 0.4 }))
      m:observe("y[" .. i .. "]", D.normal(mu[z], 1 / plume.math.sqrt(tau)), y[i])
    end
  end)
  local y = { -2.1, -1.8, 0.2, 0.1, 2.3, 1.9, 2.2, -0.1 }
  local post = plume.infer(gmm, y, { method = "auto", samples = 50, chains = 1, seed = 1 })
  -- the means share every y term (through mu[z]) and their joint conditional is Gaussian: one block
  T.eq(post.kernel, "gibbs on tau (gamma), z[1..8] (enumeration); gibbs-block on mu[1..3] (gaussian block)",
       "auto on a mixture")
  -- no conjugate site: NUTS alone, as before
  local plain = plume.model(function(m, y)
    local s = m:sample("s", D.lognormal(0, 1))
    for i = 1, #y do m:observe("y[" .. i .. "]", D.normal(0, s), y[i]) end
  end)
  post = plume.infer(plain, y, { method = "auto", samples = 50, chains = 1, seed = 1 })
  T.eq(post.kernel, "nuts on s (continuous; no discrete or conjugate site for gibbs)", "auto without gibbs")
end)

T.test("auto_with_an_unbounded_discrete_site_runs_mh_and_says_why", function()
  local pois = plume.model(function(m, y)
    local k = m:sample("k", D.poisson(3))
    m:observe("y", D.normal(k, 1), y)
  end)
  local post = plume.infer(pois, 2.5, { method = "auto", samples = 200, chains = 1, seed = 2 })
  T.eq(post.method, "mh", "method")
  T.ok(tostring(post.why):find("site 'k' is discrete (poisson)", 1, true), "why names the site: " .. tostring(post.why))
end)

T.test("a_discrete_site_compared_with_a_number_keeps_the_program_dynamic", function()
  -- Lua calls no metamethod for `k == 1` with k a symbol: traced, the branch would silently vanish. k is read by
  -- no other site; the check against runs on numbers (l_static_check.c) sees runs making z, so the program runs
  -- as dynamic (MH), and z exists in the draws where k == 1.
  local prog = plume.model(function(m)
    local k = m:sample("k", D.bernoulli(0.5))
    if k == 1 then m:sample("z", D.normal(0, 1)) end
  end)
  local post = plume.infer(prog, nil, { samples = 400, chains = 1, seed = 3 })
  T.eq(post.method, "mh", "the default method runs MH")
  T.ok(tostring(post.why):find("makes site 'z', which the traced graph does not have", 1, true), tostring(post.why))
  local seen = 0
  for _, v in ipairs(post:draws("z")) do if v ~= false then seen = seen + 1 end end
  T.ok(seen > 0, "z is drawn where k == 1")
  T.eq(plume.graph(prog).mode, "dynamic", "plume.graph says dynamic")
end)

T.test("default_method_is_auto_on_static_programs", function()
  local post = plume.infer(mixsd, ys, { samples = 200, warmup = 100, chains = 1, seed = 4 })
  T.eq(post.method, "auto", "static program with gibbs and nuts sites")
  T.ok(post.kernel:find("nuts on sigma", 1, true), post.kernel)
end)

T.test("kernel_mh_with_sites_on_a_dynamic_program_is_trace_mh_on_those_sites", function()
  -- x > 5 compares a symbol: the program is dynamic. With y held at 2, x | o = 1 is N(-0.5, 0.5).
  local dyn = plume.model(function(m)
    local x = m:sample("x", D.normal(0, 1))
    local y = m:sample("y", D.normal(0, 1))
    if x > 5 then m:factor(0) end
    m:observe("o", D.normal(x + y, 1), 1)
  end)
  local k = plume.kernel.mh{ sites = { "x" } }
  local post = plume.infer(dyn, nil, { kernel = k, samples = 4000, chains = 2, seed = 7, init = { y = 2 } })
  T.eq(post.method, "mh", "method")
  T.ok(post.why ~= nil, "says why the program is dynamic")
  for _, v in ipairs(post:draws("y")) do if v ~= 2 then error("y moved: " .. v) end end
  local s = post:summary().x
  T.near(s.mean, -0.5, 4 * s.mcse_mean, "mean of x given y = 2")
  local p2 = plume.infer(dyn, nil, { kernel = k, samples = 4000, chains = 2, seed = 7, init = { y = 2 }, threads = 2 })
  T.eq(table.concat(p2:draws("x"), ","), table.concat(post:draws("x"), ","), "same draws on two threads")
  -- negative control: MH over every site moves y, and x's mean leaves -0.5
  local all = plume.infer(dyn, nil, { method = "mh", samples = 4000, chains = 2, seed = 7, init = { y = 2 } })
  local moved = false
  for _, v in ipairs(all:draws("y")) do moved = moved or v ~= 2 end
  T.ok(moved, "unrestricted MH moves y")
  local sa = all:summary().x
  T.ok(math.abs(sa.mean - -0.5) > 4 * sa.mcse_mean, "the check tells the two apart: " .. sa.mean)
  -- other kernel values still need a static program
  T.raises(function() plume.infer(dyn, nil, { kernel = plume.kernel.slice{}, samples = 10 }) end,
    "on a dynamic program, use plume.kernel.mh{sites = ...}")
end)

T.test("static_kernels_thin_as_mh_does", function()
  -- thin keeps iterations 1, 1 + thin, ... of the unthinned chain, for NUTS, Gibbs + NUTS and a composite
  -- kernel (the chain driver once kept thin, 2 thin, ..., so thinned draws were other draws)
  local cont = plume.model(function(m, y)
    local s = m:sample("s", D.lognormal(0, 1))
    for i = 1, #y do m:observe("y[" .. i .. "]", D.normal(0, s), y[i]) end
  end)
  -- compared on the sampler's unconstrained coordinates (x[k]), which the driver keeps: the map to the support
  -- is vectorised over all kept rows, and a row's last bit may depend on its place in the batch
  local cases = { { cont, { method = "nuts" }, "x[1]" }, { mixsd, { method = "auto" }, "x[3]" },
                  { mixsd, { kernel = cyc }, "x[1]" } }
  for _, c in ipairs(cases) do
    local o = { samples = 100, warmup = 30, chains = 2, seed = 21 }
    for k, v in pairs(c[2]) do o[k] = v end
    local a = plume.infer(c[1], ys, o).sampler:column(c[3])
    o.thin = 3
    local b = plume.infer(c[1], ys, o).sampler:column(c[3])
    local what = c[2].method or "kernel"
    T.eq(#b, 2 * 34, what .. ": ceil(100 / 3) draws per chain")
    for ch = 0, 1 do
      for i = 1, 34 do T.eq(b[ch * 34 + i], a[ch * 100 + 3 * (i - 1) + 1], what .. ": chain " .. ch + 1 .. " draw " .. i) end
    end
  end
end)
