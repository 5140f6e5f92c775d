-- test_bffg.lua -- plume.dag, plume.markov_kernel.*, plume.tree.newick and plume.bffg from Lua, against the exact
-- answers of plume.lgssm (Kalman), plume.hmm (forward algorithm, forward-backward), plume.ctmc and the
-- multivariate normal of a Brownian trait on a tree. Monte Carlo checks use fixed seeds and 4.5 standard errors.
local T = dofile("tests/lua/check.lua")
local MK = plume.markov_kernel

-- the issue's linear-Gaussian chain: x0 ~ N([1,0], I), x_t = Phi x_{t-1} + beta + N(0, Q), y_t = x_t[1] + N(0, 1)
local Phi, beta, Q = { { .8, .5 }, { -.1, .8 } }, { .1, .2 }, { { .2, 0 }, { 0, 1 } }
local ys = { 0.31, -0.52, 1.24, 0.87, 0.05, -0.66, 0.42, 1.58, 0.93, -0.11 }

local function lg_chain(aux)
  local g = plume.dag()
  g:root("x0", plume.dist.mvnormal({ 1, 0 }, { { 1, 0 }, { 0, 1 } }))
  local K = MK.linear_gaussian{ B = Phi, beta = beta, Q = Q, aux = aux }
  local O = MK.linear_gaussian{ B = { { 1, 0 } }, Q = 1 }
  local prev = "x0"
  for t = 1, #ys do
    g:kernel("x" .. t, prev, K):observe("y" .. t, "x" .. t, O, ys[t])
    prev = "x" .. t
  end
  return g
end
local kalman = plume.lgssm{ A = Phi, b = beta, Q = Q, C = { 1, 0 }, R = 1, m0 = { 1, 0 }, P0 = { { 1, 0 }, { 0, 1 } } }

-- weighted mean of a site
local function wmean(post, name)
  local d, w, m = post:draws(name), post:weights(), 0
  for i = 1, #d do m = m + w[i] * d[i] end
  return m
end

T.test("linear-Gaussian chain: weight constant and equal to the Kalman log-likelihood", function()
  local g = lg_chain()
  local ll = kalman:loglik(ys)
  T.near(g:loglik(), ll, 1e-10, "filter")
  local post = plume.bffg(g, nil, { samples = 400, seed = 3 })
  for i, lw in ipairs(post.log_weights_raw) do T.near(lw, ll, 1e-9, "weight " .. i) end
  T.near(post.loglik, ll, 1e-9, "estimate")
  T.near(post.ess, 400, 1e-6, "ess")
  T.eq(post.method, "bffg-is")
end)

T.test("linear-Gaussian chain: guided draws have the smoother's means (and a wrong model's do not)", function()
  local n = 8000
  local sm, sc = kalman:smooth(ys)
  local function worst(post)
    local z = 0
    for t = 1, #ys do
      for j = 1, 2 do
        local m = wmean(post, "x" .. t .. "[" .. j .. "]")
        z = math.max(z, math.abs(m - sm[t][j]) / math.sqrt(sc[t][j][j] / n))
      end
    end
    return z
  end
  T.ok(worst(plume.bffg(lg_chain(), nil, { samples = n, seed = 5 })) < 4.5, "draws match the smoother")
  -- negative control: observations shifted by 0.5 give another posterior
  local shifted = {}
  for i, y in ipairs(ys) do shifted["y" .. i] = y + 0.5 end
  T.ok(worst(plume.bffg(lg_chain(), shifted, { samples = n, seed = 5 })) > 4.5, "shifted data must miss")
end)

T.test("linear-Gaussian chain with a wrong auxiliary: weights vary, reweighted means match", function()
  local n = 20000
  local aux = MK.linear_gaussian{ B = { { .56, .35 }, { -.07, .56 } }, Q = { { .4, 0 }, { 0, 2 } } }
  local post = plume.bffg(lg_chain(aux), nil, { samples = n, seed = 8 })
  local sm, sc = kalman:smooth(ys)
  T.ok(post.ess < 0.99 * n and post.ess > 0.05 * n, "ess " .. post.ess)
  for t = 1, #ys do
    local m = wmean(post, "x" .. t .. "[1]")
    T.near(m, sm[t][1], 4.5 * math.sqrt(sc[t][1][1] / post.ess), "x" .. t)
  end
  T.near(post.loglik, kalman:loglik(ys), 4.5 * math.sqrt((n / post.ess - 1) / n), "likelihood estimate")
end)

T.test("discrete chain: weight equals the forward algorithm, marginals match forward-backward", function()
  local init = { 0.5, 0.3, 0.2 }
  local trans = { { 0.8, 0.15, 0.05 }, { 0.1, 0.7, 0.2 }, { 0.25, 0.25, 0.5 } }
  local emit = { { 0.6, 0.2, 0.1, 0.1 }, { 0.1, 0.6, 0.2, 0.1 }, { 0.05, 0.05, 0.3, 0.6 } }
  local obs = { 1, 1, 2, 4, 4, 3, 2, 1, 1, 4, 3, 3, 2, 1, 2 }
  local h = plume.hmm{ init = init, trans = trans, emit = emit }
  local g = plume.dag():root("x1", plume.dist.categorical(init))
  local A, E = MK.discrete(trans), MK.discrete(emit)
  for t = 1, #obs do
    if t > 1 then g:kernel("x" .. t, "x" .. (t - 1), A) end
    g:observe("y" .. t, "x" .. t, E, obs[t])
  end
  local post_fb, ll = h:posterior(obs)
  T.near(g:loglik(), ll, 1e-10, "loglik")
  local n = 10000
  local post = plume.bffg(g, nil, { samples = n, seed = 2 })
  for _, lw in ipairs(post.log_weights_raw) do T.near(lw, ll, 1e-9, "weight") end
  for t = 1, #obs do
    local d, cnt = post:draws("x" .. t), { 0, 0, 0 }
    for i = 1, n do cnt[d[i]] = cnt[d[i]] + 1 end
    for k = 1, 3 do
      local p = post_fb[t][k]
      T.near(cnt[k] / n, p, 4.5 * math.sqrt(p * (1 - p) / n) + 1e-12, "x" .. t .. " = " .. k)
    end
  end
end)

T.test("CTMC observed at discrete times: weight equals the exact likelihood", function()
  local Qr = { { -3, 2, 1 }, { 0.5, -0.5, 0 }, { 0, 4, -4 } }
  local chain = plume.ctmc{ Q = Qr }
  local times, states, init = { 0, 0.3, 0.35, 1.2, 2.0, 4.5 }, { 2, 1, 1, 3, 2, 2 }, { 0.2, 0.5, 0.3 }
  local I3 = MK.discrete{ { 1, 0, 0 }, { 0, 1, 0 }, { 0, 0, 1 } }
  local g = plume.dag():root("x1", plume.dist.categorical(init))
  g:observe("s1", "x1", I3, states[1])
  for i = 2, #times do
    local k = (i % 2 == 0) and MK.ctmc{ Q = Qr, t = times[i] - times[i - 1] } or MK.ctmc{ Q = chain, t = times[i] - times[i - 1] }
    g:kernel("x" .. i, "x" .. (i - 1), k):observe("s" .. i, "x" .. i, I3, states[i])
  end
  local want = math.log(init[states[1]]) + chain:loglik_obs(times, states)
  T.near(g:loglik(), want, 1e-12, "filter")
  local post = plume.bffg(g, nil, { samples = 50, seed = 1 })
  for _, lw in ipairs(post.log_weights_raw) do T.near(lw, want, 1e-12, "weight") end
  T.eq(post:draws("x4")[7], 3, "the path is forced through the observed states")
end)

-- 20 tips; the covariance of the tips is s0^2 + rate * (depth of their most recent common ancestor)
local newick20 = "(((t1:0.5,t2:0.7):0.3,(t3:1.1,(t4:0.2,t5:0.4):0.6):0.2):0.4,((t6:0.9,t7:0.3):0.8,(((t8:0.5,t9:0.5):0.1," ..
  "t10:1.2):0.3,(t11:0.7,(t12:0.25,t13:0.35):0.45):0.5):0.2):0.1,((t14:1.3,(t15:0.6,t16:0.8):0.4):0.7,((t17:0.2," ..
  "t18:0.9):0.5,(t19:1.0,t20:0.15):0.65):0.3):0.25);"

local function tree_reference(tree, mu0, s0sq, rate, data)
  local parent, len, depth, tips = {}, {}, {}, {}
  for _, nd in ipairs(tree:nodes()) do
    parent[nd.name], len[nd.name] = nd.parent, nd.length or 0
    depth[nd.name] = nd.parent and depth[nd.parent] + len[nd.name] or 0
    if nd.tip then tips[#tips + 1] = nd.name end
  end
  local function ancestors(a)
    local set = {}
    while a do set[a] = true; a = parent[a] end
    return set
  end
  local S, mu, y = {}, {}, {}
  for i, a in ipairs(tips) do
    S[i], mu[i], y[i] = {}, mu0, data[a]
    local anc = ancestors(a)
    for j, b in ipairs(tips) do
      while not anc[b] do b = parent[b] end
      S[i][j] = s0sq + rate * depth[b]
    end
  end
  return plume.dist.mvnormal(mu, S):logpdf(y), #tips
end

T.test("Brownian motion on a 20-tip Newick tree: log-likelihood equals the multivariate normal", function()
  local tree = plume.tree.newick(newick20)
  T.eq(tostring(tree), "tree(20 tips, 38 nodes)")   -- the root has three children: three messages fuse there
  local data = {}
  for i, name in ipairs(tree:tips()) do data[name] = math.sin(i) * 2 end
  local g = tree:dag{ root = plume.dist.normal(0.3, 2), data = data,
                      process = function(t) return MK.brownian{ rate = 0.7, t = t } end }
  local want, ntips = tree_reference(tree, 0.3, 4, 0.7, data)
  T.eq(ntips, 20)
  T.near(g:loglik(), want, 1e-10, "filter")
  local post = plume.bffg(g, nil, { samples = 200, seed = 4 })
  for _, lw in ipairs(post.log_weights_raw) do T.near(lw, want, 1e-9, "weight") end
  -- negative control: another rate gives another likelihood
  local g2 = tree:dag{ root = plume.dist.normal(0.3, 2), data = data,
                       process = function(t) return MK.brownian{ rate = 0.9, t = t } end }
  T.ok(math.abs(g2:loglik() - want) > 0.01, "a different rate must differ")
end)

T.test("same seed, same draws, whatever the thread count", function()
  local aux = MK.linear_gaussian{ B = { { .56, .35 }, { -.07, .56 } }, Q = { { .4, 0 }, { 0, 2 } } }
  local a = plume.bffg(lg_chain(aux), nil, { samples = 600, seed = 9, threads = 1 })
  local b = plume.bffg(lg_chain(aux), nil, { samples = 600, seed = 9, threads = 2 })
  local da, db = a:draws("x4[2]"), b:draws("x4[2]")
  for i = 1, 600 do T.eq(da[i], db[i], "draw " .. i) end
end)

T.test("bad input names the node, the field or the line", function()
  local g = plume.dag():root("x", plume.dist.categorical{ 0.5, 0.5 })
  T.raises(function() g:kernel("y", "nope", MK.discrete{ { 1, 0 }, { 0, 1 } }) end, "there is no node 'nope'")
  T.raises(function() g:kernel("x", "x", MK.discrete{ { 1, 0 }, { 0, 1 } }) end, "already a node named 'x'")
  T.raises(function() g:kernel("z", "x", MK.brownian{ rate = 1, t = 1 }) end, "parent 'x' is discrete")
  T.raises(function() MK.discrete{ { 0.5, 0.6 }, { 0, 1 } } end, "row 1 of P must sum to 1")
  T.raises(function() MK.linear_gaussian{ B = 1, Q = -1 } end, "not positive semi-definite")
  T.raises(function() MK.linear_gaussian{ B = { { 1, 0 } }, Q = { { 1, 0 }, { 0, 1 } } } end, "Q must be 1 x 1")
  T.raises(function() MK.linear_gaussian{ B = 1, Q = 1, R = 2 } end, "unknown option 'R'")
  T.raises(function() MK.brownian{ rate = 1, t = -1 } end, "t must be finite and >= 0")
  T.raises(function() g:observe("o", "x", MK.discrete{ { 1, 0 }, { 0, 1 } }, 3) end, "must be a state in 1..2")
  g:observe("o", "x", MK.discrete{ { 1, 0 }, { 1, 0 } }, 2)
  T.raises(function() g:loglik() end, "below node 'x' have probability 0")
  T.raises(function() plume.bffg(g, { x = 1 }) end, "node 'x' is latent")
  T.raises(function() plume.bffg(g, { o = 1 }, { method = "gibbs" }) end, "method 'gibbs' is not available")
  T.raises(function() plume.bffg(g, { o = 1 }, { rho = 0.5 }) end, "option 'rho' is for method \"mcmc\"")
  T.raises(function() plume.bffg(g, { o = 1 }, { sample = 10 }) end, "unknown option 'sample'")
  T.near(g:loglik{ o = 1 }, 0, 1e-15, "override makes it possible")
  T.raises(function() plume.tree.newick("((A:1,B:2);") end, "line 1, column 11")
  T.raises(function() plume.tree.newick("(A,B);"):dag{ root = 0, process = function(t) return MK.brownian{ rate = 1, t = t } end } end,
    "the branch into 'A' has no length")
  T.raises(function() plume.tree.newick("(A:1,B:1);"):dag{ root = 0, data = { C = 1 }, process = function() end } end,
    "'C', which is not a tip")
  local bm = plume.sde{ dim = 1, drift = function(p, x) return 0 * x end, diffusion = function(p) return 1 end }
  T.raises(function()
    plume.tree.newick("(A:1,B:1);"):dag{ root = 0,
      process = function(t) return MK.sde{ sde = bm, t1 = t, dt = 0.1, at = 0, save = t / 2 } end }
  end, "a kernel with save times: those are for dag:kernel")
end)
