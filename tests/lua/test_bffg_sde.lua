-- test_bffg_sde.lua -- plume.markov_kernel.sde (guided proposals through a plume.sde) and plume.bffg with
-- method = "smc", against the exact answers of a one-dimensional Ornstein-Uhlenbeck process observed with noise
-- (its transition is Gaussian in closed form, so plume.lgssm gives the exact likelihood and smoother).
local T = dofile("tests/lua/check.lua")
local MK = plume.markov_kernel

-- dX = -theta (X - mu) dt + sigma dW, observed at t = 1, 2, 3, 4 with noise variance R
local theta, mu, sigma, R = 1.2, 0.5, 0.7, 0.05
local ys = { 1.1, 0.4, -0.2, 0.9 }
local ou = plume.sde{ dim = 1, params = { theta = theta, mu = mu, sigma = sigma },
  drift = function(p, x) return -p.theta * (x - p.mu) end,
  diffusion = function(p) return p.sigma end }
local e = math.exp(-theta)
local kalman = plume.lgssm{ A = e, b = mu * (1 - e), Q = sigma ^ 2 * (1 - e * e) / (2 * theta), C = 1, R = R,
  m0 = 0, P0 = 0.5 }

local function chain(kernel_opts)
  local g = plume.dag()
  g:root("x0", plume.dist.normal(0, math.sqrt(0.5)))
  local O = MK.linear_gaussian{ B = 1, Q = R }
  for t = 1, #ys do
    local o = { sde = ou, t0 = t - 1, t1 = t, dt = 1e-2 }
    for k, v in pairs(kernel_opts) do o[k] = v end
    g:kernel("x" .. t, "x" .. (t - 1), MK.sde(o)):observe("y" .. t, "x" .. t, O, ys[t])
  end
  return g
end

local function wmean(post, name)
  local d, w, m = post:draws(name), post:weights(), 0
  for i = 1, #d do m = m + w[i] * d[i] end
  return m
end

T.test("OU with the auxiliary found by linearisation: exact likelihood, constant weights, IS and SMC", function()
  local g = chain{ at = 0 }
  local ll = kalman:loglik(ys)
  T.near(g:loglik(), ll, 1e-10, "filter")
  local post = plume.bffg(g, nil, { samples = 300, seed = 2 })
  for i, lw in ipairs(post.log_weights_raw) do T.near(lw, ll, 1e-10, "weight " .. i) end
  T.near(post.loglik, ll, 1e-10, "is estimate")
  T.eq(post.method, "bffg-is")
  local s = plume.bffg(g, nil, { samples = 300, seed = 2, method = "smc" })
  T.near(s.loglik, ll, 1e-9, "smc estimate")
  T.eq(s.method, "bffg-smc")
  T.eq(s.resamples, 3)
  T.ok(tostring(MK.sde{ sde = ou, t1 = 1, dt = 0.1, at = 0 }):match("sde%(R%^1 %-> R%^1%)"), "tostring")
end)

T.test("OU with a wrong auxiliary: weighted means match the smoother, unweighted ones do not", function()
  local n = 3000
  local post = plume.bffg(chain{ dt = 2e-3, aux = { B = -0.3, beta = 0, sigma = 1 } }, nil, { samples = n, seed = 4 })
  local sm, sc = kalman:smooth(ys)
  T.ok(post.ess > 0.05 * n and post.ess < 0.95 * n, "ess " .. post.ess)
  local worst_unweighted = 0
  for t = 1, #ys do
    local name, m_t, v_t = "x" .. t, sm[t], sc[t]
    if type(m_t) == "table" then m_t, v_t = m_t[1], v_t[1][1] end
    T.near(wmean(post, name), m_t, 4.5 * math.sqrt(v_t / post.ess), name)
    local d, m = post:draws(name), 0
    for i = 1, #d do m = m + d[i] / #d end
    worst_unweighted = math.max(worst_unweighted, math.abs(m - m_t) / math.sqrt(v_t / n))
  end
  T.ok(worst_unweighted > 4.5, "negative control: unweighted z " .. worst_unweighted)
  -- plus 0.01 for the O(dt) bias of Euler paths and the Riemann sum of G at dt = 2e-3 (tests/test_bffg_sde.c
  -- measures it for a 2-d OU: +0.03 at dt = 4e-3, +0.003 at 1e-3)
  T.near(post.loglik, kalman:loglik(ys), 4.5 * math.sqrt((n / post.ess - 1) / n) + 0.01, "likelihood estimate")
end)

T.test("hypoelliptic noise (an integrated OU process): exact filter, constant weights, the exact kernel's means", function()
  -- dX1 = X2 dt, dX2 = -X2 dt + sig dW: the transition over h is Gaussian with Phi = [[1, 1 - e^-h], [0, e^-h]] and
  -- the covariance written below; the auxiliary (linearisation: exact) has a singular a = diag(0, sig^2)
  local sig, noise, obs = 0.8, 0.05, { 0.4, 0.9, 0.7 }
  local s = plume.sde{ dim = 2, params = { sig = sig }, drift = function(p, x) return { x[2], -x[2] } end,
    diffusion = function(p) return { { 0, 0 }, { 0, p.sig } } end }
  local e, e2, s2 = math.exp(-1), math.exp(-2), sig * sig
  local c12 = s2 * ((1 - e) - (1 - e2) / 2)
  local exactk = MK.linear_gaussian{ B = { { 1, 1 - e }, { 0, e } },
    Q = { { s2 * (1 - 2 * (1 - e) + (1 - e2) / 2), c12 }, { c12, s2 * (1 - e2) / 2 } } }
  local function chain(kf)
    local g = plume.dag()
    g:root("x0", plume.dist.mvnormal({ 0, 0.5 }, { { 0.1, 0 }, { 0, 0.2 } }))
    local O = MK.linear_gaussian{ B = { { 1, 0 } }, Q = noise }
    for t = 1, #obs do g:kernel("x" .. t, "x" .. (t - 1), kf(t)):observe("y" .. t, "x" .. t, O, obs[t]) end
    return g
  end
  local ex = chain(function() return exactk end)
  local gd = chain(function(t) return MK.sde{ sde = s, t0 = t - 1, t1 = t, dt = 2e-3, at = { 0, 0 } } end)
  T.near(gd:loglik(), ex:loglik(), 1e-10, "filter")
  local n = 2000
  local post = plume.bffg(gd, nil, { samples = n, seed = 3 })
  for i, lw in ipairs(post.log_weights_raw) do T.near(lw, ex:loglik(), 1e-10, "weight " .. i) end
  local a, b = plume.bffg(ex, nil, { samples = n, seed = 4 }):summary(), post:summary()
  for t = 1, #obs do
    for j = 1, 2 do
      local k = "x" .. t .. "[" .. j .. "]"
      T.near(b[k].mean, a[k].mean, 4.5 * a[k].sd * math.sqrt(2 / n), k)
    end
  end
end)

T.test("save: the path at chosen times has the exact Gaussian bridge's moments; the likelihood is unchanged", function()
  -- an OU bridge from x0 = -1 to an observation y at T = 1 (noise R1); the auxiliary is the process (a linear drift
  -- linearised), so every weight is exact and the draws at the saved times are the bridge's, up to the Euler bias
  -- of dt = 1e-3 (far below the Monte Carlo error here)
  local th, sg, x0, T1, R1, y = 2, 0.7, -1, 1, 1e-2, 1.5
  local o2 = plume.sde{ dim = 1, params = { theta = th, sigma = sg },
    drift = function(p, x) return -p.theta * x end, diffusion = function(p) return p.sigma end }
  local function model(save)
    local g = plume.dag():root("x0", x0)
    g:kernel("x1", "x0", MK.sde{ sde = o2, t1 = T1, dt = 1e-3, at = 0, save = save })
     :observe("v", "x1", MK.linear_gaussian{ B = 1, Q = R1 }, y)
    return g
  end
  local g = model({ 0.5, 0.25 })
  local names = {}
  for _, nd in ipairs(g:nodes()) do names[#names + 1] = nd.name end
  T.eq(table.concat(names, " "), "x0 x1@0.25 x1@0.5 x1 v", "the pieces' nodes, in time order")
  T.near(g:loglik(), model(nil):loglik(), 1e-10, "the same likelihood as the kernel unsaved")
  local function v(t) return sg ^ 2 * (1 - math.exp(-2 * th * t)) / (2 * th) end
  local function bridge(t)   -- the exact law of X(t) given X(0) = x0 and y
    local e2, ms, vs = math.exp(-th * (T1 - t)), x0 * math.exp(-th * t), v(t)
    local vy, cov = e2 * e2 * vs + v(T1 - t) + R1, vs * e2
    return ms + cov / vy * (y - ms * e2), math.sqrt(vs - cov * cov / vy)
  end
  local n = 20000
  local post = plume.bffg(g, nil, { samples = n, seed = 1 })
  T.near(post.ess, n, 1e-6, "constant weights")
  local s = post:summary()
  for _, t in ipairs { 0.25, 0.5 } do
    local m, sd = bridge(t)
    local c = s["x1@" .. t]
    T.near(c.mean, m, 4.5 * sd / math.sqrt(n), "mean at " .. t .. ": " .. c.mean .. " vs " .. m)
    T.near(c.sd, sd, 4.5 * sd / math.sqrt(2 * n), "sd at " .. t .. ": " .. c.sd .. " vs " .. sd)
  end
  -- negative control: the bridge a little later (t = 0.3) is not what the node at 0.25 holds
  local m3 = bridge(0.3)
  T.ok(math.abs(s["x1@0.25"].mean - m3) > 4.5 * s["x1@0.25"].sd / math.sqrt(n), "0.25 is not 0.3")
  -- a number for one time; pCN with parameter moves remakes every piece
  local pm = plume.bffg(model(0.5), nil, { method = "mcmc", samples = 200, warmup = 100, chains = 1, seed = 2, sde = o2,
    params = { theta = plume.dist.gamma(2, 1) } })
  T.ok(#pm:draws("x1@0.5") == 200 and pm:summary().theta.sd > 0, "mcmc keeps the saved node and moves theta")
  T.raises(function() MK.sde{ sde = o2, t1 = 1, dt = 1e-3, at = 0, save = { 0.5, 1 } } end, "save[2] = 1.0 is not inside")
  T.raises(function() MK.sde{ sde = o2, t1 = 1, dt = 1e-3, at = 0, save = { 0.5, 0.5 } } end, "the time 0.5 twice")
  T.raises(function() MK.sde{ sde = o2, t1 = 1, dt = 1e-3, at = 0, save = { "a" } } end, "save[1] must be a number")
  T.raises(function() MK.sde{ sde = o2, t1 = 1, dt = 1e-3, at = 0, save = {} } end, "empty")
  T.raises(function()
    plume.dag():root("x0", 0):observe("v", "x0", MK.sde{ sde = o2, t1 = 1, dt = 1e-3, at = 0, save = 0.5 }, 1)
  end, "save times are for latent nodes")
end)

T.test("bffg: the same draws for any thread count, IS and SMC", function()
  local g = chain{ aux = { B = -0.3, sigma = 1 } }
  for _, method in ipairs{ "is", "smc" } do
    local a = plume.bffg(g, nil, { samples = 500, seed = 7, threads = 1, method = method })
    local b = plume.bffg(g, nil, { samples = 500, seed = 7, threads = 2, method = method })
    T.eq(a.loglik, b.loglik, method .. " loglik")
    local da, db = a:draws("x3"), b:draws("x3")
    local same = true
    for i = 1, #da do same = same and da[i] == db[i] end
    T.ok(same, method .. " draws")
  end
end)

T.test("markov_kernel.sde and method smc refuse bad input with clear messages", function()
  T.raises(function() MK.sde{ sde = ou, t1 = 1, dt = 0.1 } end, "give 'at'")
  T.raises(function() MK.sde{ sde = 1, t1 = 1, dt = 0.1, at = 0 } end, "must be a plume.sde")
  T.raises(function() MK.sde{ sde = ou, t1 = 1, at = 0 } end, "missing field 'dt'")
  T.raises(function() MK.sde{ sde = ou, t1 = 1, dt = 0.1, at = 0, seed = 1 } end, "seed")
  T.raises(function() MK.sde{ sde = ou, t0 = 1, t1 = 1, dt = 0.1, at = 0 } end, "t0 < t1")
  T.raises(function() MK.sde{ sde = ou, t1 = 1, dt = 0.1, aux = { B = { { 1, 0 } }, sigma = 1 } } end, "aux.B must be 1 x 1")
  local bare = plume.sde{ dim = 1, params = { k = 0 }, drift = function(p, x) return -p.k * x end,
    diffusion = function() return 1 end }
  bare:set_params{ k = 0 / 0 }
  T.raises(function() MK.sde{ sde = bare, t1 = 1, dt = 0.1, at = 0 } end, "parameter 'k' has no value")
  local g = plume.dag()
  g:root("x0", 0)
  T.raises(function() g:observe("x1", "x0", MK.sde{ sde = ou, t1 = 1, dt = 0.1, at = 0 }, 0.3) end, "cannot be observed")
  local tree = plume.dag()
  tree:root("r", 0):kernel("a", "r", MK.brownian{ rate = 1, t = 1 }):kernel("b", "r", MK.brownian{ rate = 1, t = 1 })
  T.raises(function() plume.bffg(tree, nil, { method = "smc" }) end, "chain")
  T.raises(function() plume.bffg(tree, nil, { method = "pmmh" }) end, "methods: is, smc, mcmc")
  T.raises(function() plume.bffg(tree, nil, { method = "smc", resample = "nope" }) end, "unknown resample scheme")
  T.raises(function() plume.bffg(tree, nil, { resample = "systematic" }) end, "for method \"smc\"")
end)
