-- test_bffg_dag.lua -- plume.dag nodes with several parents. Exact references: the joint Gaussian likelihood and
-- conditional mean of the observations (linear-Gaussian), and enumeration of every joint state (discrete).
-- Monte Carlo checks use fixed seeds and 4.5 standard errors.
local T = dofile("tests/lua/check.lua")
local MK = plume.markov_kernel

-- small dense matrix helpers (tables of rows)
local function mat(r, c, f) local A = {} for i = 1, r do A[i] = {} for j = 1, c do A[i][j] = f(i, j) end end return A end
local function mul(A, B) return mat(#A, #B[1], function(i, j) local s = 0 for k = 1, #B do s = s + A[i][k] * B[k][j] end return s end) end
local function tr(A) return mat(#A[1], #A, function(i, j) return A[j][i] end) end
local function add(A, B) return mat(#A, #A[1], function(i, j) return A[i][j] + B[i][j] end) end
local function solve(A, b)   -- Gaussian elimination with partial pivoting, b a column (table of rows)
  local n, M = #A, mat(#A, #A + #b[1], function(i, j) return j <= #A and A[i][j] or b[i][j - #A] end)
  for c = 1, n do
    local p = c
    for r = c + 1, n do if math.abs(M[r][c]) > math.abs(M[p][c]) then p = r end end
    M[c], M[p] = M[p], M[c]
    for r = 1, n do
      if r ~= c then
        local f = M[r][c] / M[c][c]
        for j = c, #M[1] do M[r][j] = M[r][j] - f * M[c][j] end
      end
    end
  end
  return mat(n, #b[1], function(i, j) return M[i][n + j] / M[i][i] end)
end
local function col(v) return mat(#v, 1, function(i) return v[i] end) end

-- ---- linear-Gaussian -------------------------------------------------------------------------------------
-- roots a in R^2 and b in R^1; y | a, b ~ N(B1 a + B2 b + beta, Q) observed; z | a observed; c | b latent with
-- w | c observed; u | (b, a) latent (parents in the other order) with v | u observed.
local ma, Sa, mb, sb = { 0.5, -1 }, { { 1, 0.3 }, { 0.3, 0.8 } }, 2, 1.5
local By, betay, Qy = { { 1, 0.5, -1 }, { 0, 2, 0.3 } }, { 0.1, -0.2 }, { { 0.4, 0.1 }, { 0.1, 0.3 } }
local Bu, Qu = { { 0.7, 1, -0.5 } }, 0.6   -- u = 0.7 b + a1 - 0.5 a2 + N(0, 0.6)
local yv, zv, wv, vv = { 1.2, -0.7 }, 0.9, 2.6, 1.4

local function gauss_dag(y)
  local g = plume.dag()
  g:root("a", plume.dist.mvnormal(ma, Sa)):root("b", plume.dist.normal(mb, sb))
  g:observe("y", { "a", "b" }, MK.linear_gaussian{ B = By, beta = betay, Q = Qy }, y or yv)
  g:observe("z", "a", MK.linear_gaussian{ B = { 1, 0 }, Q = 0.5 }, zv)
  g:kernel("c", "b", MK.linear_gaussian{ B = 1, Q = 1 }):observe("w", "c", MK.linear_gaussian{ B = 1, Q = 0.3 }, wv)
  g:kernel("u", { "b", "a" }, MK.linear_gaussian{ B = Bu, Q = Qu }):observe("v", "u", MK.linear_gaussian{ B = 1, Q = 0.2 }, vv)
  return g
end

-- every observation is linear in x = (a1, a2, b) with independent noise: Y = A x + k + E
local function gauss_exact(y)
  y = y or yv
  local A = { { 1, 0.5, -1 }, { 0, 2, 0.3 }, { 1, 0, 0 }, { 0, 0, 1 }, { 1, -0.5, 0.7 } }
  local k = { 0.1, -0.2, 0, 0, 0 }
  local R = mat(5, 5, function() return 0 end)
  R[1][1], R[1][2], R[2][1], R[2][2] = 0.4, 0.1, 0.1, 0.3
  R[3][3], R[4][4], R[5][5] = 0.5, 1.3, 0.8
  local m = col { ma[1], ma[2], mb }
  local S = { { 1, 0.3, 0 }, { 0.3, 0.8, 0 }, { 0, 0, sb * sb } }
  local Am = mul(A, m)
  local mean, Y = {}, { y[1], y[2], zv, wv, vv }
  for i = 1, 5 do mean[i] = Am[i][1] + k[i] end
  local C = add(mul(mul(A, S), tr(A)), R)
  local ll = plume.dist.mvnormal(mean, C):logpdf(Y)
  local resid = col { Y[1] - mean[1], Y[2] - mean[2], Y[3] - mean[3], Y[4] - mean[4], Y[5] - mean[5] }
  local post = add(m, mul(mul(S, tr(A)), solve(C, resid)))
  return ll, { post[1][1], post[2][1], post[3][1] }
end

T.test("dag: a linear-Gaussian node with several parents: exact likelihood, constant weights, exact posterior mean", function()
  local g = gauss_dag()
  local ll, pm = gauss_exact()
  T.near(g:loglik(), ll, 1e-10, "filter")
  local n = 20000
  local post = plume.bffg(g, nil, { samples = n, seed = 1 })
  for i = 1, n, 997 do T.near(post.log_weights_raw[i], ll, 1e-9, "weight " .. i) end
  T.near(post.ess, n, 1e-6, "ESS")
  local s = post:summary()
  for j, name in ipairs { "a[1]", "a[2]", "b" } do
    T.near(s[name].mean, pm[j], 4.5 * s[name].sd / math.sqrt(n), name .. " mean")
  end
  -- other data: the same draws' mean must miss (negative control)
  local _, pm2 = gauss_exact { 3.2, 1.3 }
  local worst = 0
  for j, name in ipairs { "a[1]", "a[2]", "b" } do
    worst = math.max(worst, math.abs(s[name].mean - pm2[j]) / (s[name].sd / math.sqrt(n)))
  end
  T.ok(worst > 4.5, "other data miss (z " .. worst .. ")")
  T.near(gauss_dag({ 3.2, 1.3 }):loglik(), (gauss_exact { 3.2, 1.3 }), 1e-10, "filter, other data")
  T.near(g:loglik { y = { 3.2, 1.3 } }, (gauss_exact { 3.2, 1.3 }), 1e-10, "filter with obs override")
end)

T.test("dag: several parents under pCN MCMC keep the exact likelihood", function()
  local g = gauss_dag()
  local ll = gauss_exact()
  local post = plume.bffg(g, nil, { method = "mcmc", samples = 200, warmup = 50, chains = 1, seed = 2 })
  local lp = post:lp()
  T.eq(#lp, 200, "draws")
  for i = 1, #lp, 17 do T.near(lp[i], ll, 1e-8, "state " .. i .. "'s log weight") end
end)

-- ---- DAGs whose co-parents are not roots (clusters drawn jointly) ----------------------------------------
-- A generic exact reference: every node (latent or observed) is linear-Gaussian in its stacked parents, so all
-- coordinates are jointly Gaussian; the mean and covariance come from the recursion Cov(X_i, X_j) =
-- B_i Cov(X_pa(i), X_j), Var(X_i) = B_i Cov(X_pa(i)) B_i' + Q_i over the nodes in order, then the observations are
-- conditioned on. spec: list of {name, parents = {...}, d, B (rows), beta, Q (rows), obs = value or nil}.
local function gauss_net_exact(spec)
  local coord, mu, S, n = {}, {}, {}, 0
  for _, nd in ipairs(spec) do
    local pc = {}
    for _, p in ipairs(nd.parents or {}) do for _, c in ipairs(coord[p]) do pc[#pc + 1] = c end end
    local oc = {}
    for a = 1, nd.d do n = n + 1; oc[a] = n; S[n] = {} end
    for a = 1, nd.d do
      local i = oc[a]
      local m = nd.beta and nd.beta[a] or 0
      for l = 1, #pc do m = m + nd.B[a][l] * mu[pc[l]] end
      mu[i] = m
      for j = 1, oc[1] - 1 do   -- earlier coordinates
        local s = 0
        for l = 1, #pc do s = s + nd.B[a][l] * S[pc[l]][j] end
        S[i][j], S[j][i] = s, s
      end
    end
    for a = 1, nd.d do for b = 1, nd.d do
      local s = nd.Q[a][b]
      for l = 1, #pc do for l2 = 1, #pc do s = s + nd.B[a][l] * nd.B[b][l2] * S[pc[l]][pc[l2]] end end
      S[oc[a]][oc[b]] = s
    end end
    coord[nd.name] = oc
  end
  local X, Y, y = {}, {}, {}
  for _, nd in ipairs(spec) do
    for a, c in ipairs(coord[nd.name]) do
      if nd.obs then Y[#Y + 1] = c; y[#y + 1] = type(nd.obs) == "table" and nd.obs[a] or nd.obs
      else X[#X + 1] = c end
    end
  end
  local function sub(I, J) return mat(#I, #J, function(i, j) return S[I[i]][J[j]] end) end
  local Syy, Sxy, Sxx = sub(Y, Y), sub(X, Y), sub(X, X)
  local my, mx = {}, {}
  for i, c in ipairs(Y) do my[i] = mu[c] end
  for i, c in ipairs(X) do mx[i] = mu[c] end
  local ll = plume.dist.mvnormal(my, Syy):logpdf(y)
  local r = {}
  for i = 1, #Y do r[i] = y[i] - my[i] end
  local K = solve(Syy, tr(Sxy))                 -- Syy^-1 Syx
  local pm, pc = {}, add(Sxx, mat(#X, #X, function(i, j)
    local s = 0 for l = 1, #Y do s = s + Sxy[i][l] * K[l][j] end return -s end))
  for i = 1, #X do
    local s = mx[i]
    for l = 1, #Y do s = s + K[l][i] * r[l] end
    pm[i] = s
  end
  local names = {}   -- the draws' column names of X, in order
  for _, nd in ipairs(spec) do
    if not nd.obs then
      for a = 1, nd.d do names[#names + 1] = nd.d > 1 and (nd.name .. "[" .. a .. "]") or nd.name end
    end
  end
  return ll, pm, pc, names
end

local function gauss_net_dag(spec)
  local g = plume.dag()
  for _, nd in ipairs(spec) do
    if not nd.parents then
      if nd.d == 1 then g:root(nd.name, plume.dist.normal(nd.beta[1], math.sqrt(nd.Q[1][1])))
      else g:root(nd.name, plume.dist.mvnormal(nd.beta, nd.Q)) end
    else
      local k = MK.linear_gaussian{ B = nd.B, beta = nd.beta, Q = nd.Q }
      local par = #nd.parents == 1 and nd.parents[1] or nd.parents
      if nd.obs then g:observe(nd.name, par, k, nd.obs) else g:kernel(nd.name, par, k) end
    end
  end
  return g
end

-- a in R^2 (root) -> c -> e; y observes {a, c} (a collider whose co-parent c is a's child); d over {c, b} with b a
-- root (so b joins the cluster), w observed over {a, e} (the path a -> c -> e must join the cluster), u below d;
-- and a second cluster {s, t} below the root r (given in the order s, r, t: its parent unit comes after its first
-- member), observed through v over {s, t}, with x below the first cluster's node c.
local net = {
  { name = "a", d = 2, beta = { 0.5, -1 }, Q = { { 1, 0.3 }, { 0.3, 0.8 } } },
  { name = "c", d = 1, parents = { "a" }, B = { { 0.7, -0.4 } }, beta = { 0.2 }, Q = { { 0.5 } } },
  { name = "y", d = 2, parents = { "a", "c" }, B = { { 1, 0.5, -1 }, { 0, 2, 0.3 } }, beta = { 0.1, -0.2 },
    Q = { { 0.4, 0.1 }, { 0.1, 0.3 } }, obs = { 1.2, -0.7 } },
  { name = "b", d = 1, beta = { 2 }, Q = { { 2.25 } } },
  { name = "e", d = 1, parents = { "c" }, B = { { 0.9 } }, beta = { -0.3 }, Q = { { 0.6 } } },
  { name = "d", d = 1, parents = { "c", "b" }, B = { { 1.1, -0.5 } }, beta = { 0 }, Q = { { 0.7 } } },
  { name = "u", d = 1, parents = { "d" }, B = { { 1 } }, Q = { { 0.2 } }, obs = 1.4 },
  { name = "w", d = 1, parents = { "a", "e" }, B = { { 0.3, 0.6, -1.2 } }, Q = { { 0.9 } }, obs = -0.8 },
  { name = "s", d = 1, beta = { 1 }, Q = { { 1 } } },
  { name = "r", d = 1, beta = { 0 }, Q = { { 4 } } },
  { name = "t", d = 1, parents = { "r" }, B = { { -0.8 } }, beta = { 0.5 }, Q = { { 0.3 } } },
  { name = "v", d = 1, parents = { "s", "t" }, B = { { 1, 1 } }, Q = { { 0.25 } }, obs = 2.2 },
  { name = "x", d = 1, parents = { "c" }, B = { { 2 } }, Q = { { 1 } } },
  { name = "xo", d = 1, parents = { "x" }, B = { { 1 } }, Q = { { 0.5 } }, obs = 0.4 },
}

T.test("dag: co-parents that are not roots (linear-Gaussian): exact likelihood, weights, posterior mean and covariance", function()
  local g = gauss_net_dag(net)
  local ll, pm, pc, names = gauss_net_exact(net)
  T.near(g:loglik(), ll, 1e-9, "filter")
  local n = 20000
  local post = plume.bffg(g, nil, { samples = n, seed = 11 })
  local lw, wmax = post.log_weights_raw, 0
  for i = 1, n do wmax = math.max(wmax, math.abs(lw[i] - ll)) end
  T.ok(wmax < 1e-9, "every weight equals the exact log-likelihood (largest gap " .. wmax .. ")")
  local x, m = {}, {}
  for i, name in ipairs(names) do
    x[i] = post:draws(name)
    local s = 0
    for _, v in ipairs(x[i]) do s = s + v end
    m[i] = s / n
  end
  -- a covariance reference with a weaker link a -> c (B of c (0.7, -0.4) -> (0.5, -0.4)), for a negative control
  local net2 = {}
  for i, nd in ipairs(net) do net2[i] = nd end
  net2[2] = setmetatable({ B = { { 0.5, -0.4 } } }, { __index = net[2] })
  local _, _, pc2 = gauss_net_exact(net2)
  local worst_m, worst_c, miss_c = 0, 0, 0
  for i = 1, #names do
    T.near(m[i], pm[i], 4.5 * math.sqrt(pc[i][i] / n), names[i] .. " mean")
    worst_m = math.max(worst_m, math.abs(m[i] - pm[i]) / math.sqrt(pc[i][i] / n))
    for j = i, #names do   -- the sample covariance against the exact one, with the standard error of its terms
      local s, s2 = 0, 0
      for k = 1, n do
        local p = (x[i][k] - pm[i]) * (x[j][k] - pm[j])
        s, s2 = s + p, s2 + p * p
      end
      local c = s / n
      local se = math.sqrt((s2 / n - c * c) / n)
      worst_c = math.max(worst_c, math.abs(c - pc[i][j]) / se)
      miss_c = math.max(miss_c, math.abs(c - pc2[i][j]) / se)
    end
  end
  T.ok(worst_c < 4.5, "posterior covariances: worst z " .. worst_c)
  T.ok(miss_c > 4.5, "the covariances of a model with a weaker link miss (z " .. miss_c .. ")")
  print(string.format("  %d latent coordinates: worst z of means %.2f, of covariances %.2f (other model %.1f)", #names,
    worst_m, worst_c, miss_c))
  -- negative controls: another data set's posterior mean misses, and the likelihood differs
  local other = {}
  for i, nd in ipairs(net) do other[i] = nd end
  other[3] = setmetatable({ obs = { 3.2, 1.3 } }, { __index = net[3] })
  local ll2, pm2 = gauss_net_exact(other)
  local worst = 0
  for i = 1, #names do worst = math.max(worst, math.abs(m[i] - pm2[i]) / math.sqrt(pc[i][i] / n)) end
  T.ok(worst > 4.5, "other data miss (z " .. worst .. ")")
  T.near(g:loglik { y = { 3.2, 1.3 } }, ll2, 1e-9, "filter with obs override")
  T.ok(math.abs(ll2 - ll) > 0.1, "the override changes the likelihood")
end)

T.test("dag: co-parents at the two ends of a long chain: the chain joins their cluster, the likelihood stays exact", function()
  -- x0 -> x1 -> ... -> x40 with observations of every fifth node, y over {x0, x40}, and a second collider over
  -- {x20, b} (b a root) whose cluster is then the same one
  local spec = { { name = "x0", d = 1, beta = { 0 }, Q = { { 1 } } }, { name = "b", d = 1, beta = { 1 }, Q = { { 0.5 } } } }
  for k = 1, 40 do
    spec[#spec + 1] = { name = "x" .. k, d = 1, parents = { "x" .. (k - 1) }, B = { { 0.95 } }, beta = { 0.05 }, Q = { { 0.3 } } }
    if k % 5 == 0 then
      spec[#spec + 1] = { name = "o" .. k, d = 1, parents = { "x" .. k }, B = { { 1 } }, Q = { { 0.4 } }, obs = math.sin(k) }
    end
  end
  spec[#spec + 1] = { name = "y", d = 1, parents = { "x0", "x40" }, B = { { 1, -1 } }, Q = { { 0.2 } }, obs = 0.7 }
  spec[#spec + 1] = { name = "z", d = 1, parents = { "x20", "b" }, B = { { 0.5, 1 } }, Q = { { 0.3 } }, obs = -0.4 }
  local g = gauss_net_dag(spec)
  local ll = gauss_net_exact(spec)
  T.near(g:loglik(), ll, 1e-9, "filter")
  local post = plume.bffg(g, nil, { samples = 200, seed = 1 })
  for i = 1, 200, 19 do T.near(post.log_weights_raw[i], ll, 1e-9, "weight " .. i) end
end)

T.test("dag: a cluster below a cluster (s | p1, t | p2, v over {s, t}, u over {p1, p2}): exact, both kinds", function()
  local spec = {
    { name = "p1", d = 1, beta = { 0.3 }, Q = { { 1 } } },
    { name = "p2", d = 1, beta = { -0.5 }, Q = { { 2 } } },
    { name = "s", d = 1, parents = { "p1" }, B = { { 0.8 } }, beta = { 0.1 }, Q = { { 0.5 } } },
    { name = "t", d = 1, parents = { "p2" }, B = { { -1.2 } }, Q = { { 0.4 } } },
    { name = "v", d = 1, parents = { "s", "t" }, B = { { 1, 0.5 } }, Q = { { 0.3 } }, obs = 1.1 },
    { name = "u", d = 1, parents = { "p2", "p1" }, B = { { 1, 1 } }, Q = { { 0.6 } }, obs = -0.2 },
  }
  local g = gauss_net_dag(spec)
  local ll, pm, pc, names = gauss_net_exact(spec)
  T.near(g:loglik(), ll, 1e-10, "Gaussian filter")
  local n = 10000
  local post = plume.bffg(g, nil, { samples = n, seed = 21 })
  for i = 1, n, 499 do T.near(post.log_weights_raw[i], ll, 1e-9, "weight " .. i) end
  local sm = post:summary()
  for i, name in ipairs(names) do T.near(sm[name].mean, pm[i], 4.5 * math.sqrt(pc[i][i] / n), name .. " mean") end
  -- the same shape with two states everywhere, against enumeration
  local P1, P2 = { 0.4, 0.6 }, { 0.7, 0.3 }
  local Ps, Pt = { { 0.9, 0.1 }, { 0.2, 0.8 } }, { { 0.6, 0.4 }, { 0.1, 0.9 } }
  local Pv, Pu = { { 0.8, 0.2 }, { 0.3, 0.7 }, { 0.5, 0.5 }, { 0.05, 0.95 } }, { { 0.9, 0.1 }, { 0.4, 0.6 }, { 0.3, 0.7 }, { 0.2, 0.8 } }
  local gd = plume.dag():root("p1", plume.dist.categorical(P1)):root("p2", plume.dist.categorical(P2))
  gd:kernel("s", "p1", MK.discrete(Ps)):kernel("t", "p2", MK.discrete(Pt))
  gd:observe("v", { "s", "t" }, MK.discrete(Pv), 2):observe("u", { "p2", "p1" }, MK.discrete(Pu), 1)
  local L, ms = 0, 0
  for a = 1, 2 do for b = 1, 2 do for c = 1, 2 do for d = 1, 2 do
    local p = P1[a] * P2[b] * Ps[a][c] * Pt[b][d] * Pv[(c - 1) * 2 + d][2] * Pu[(b - 1) * 2 + a][1]
    L, ms = L + p, ms + (c == 2 and p or 0)
  end end end end
  T.near(gd:loglik(), math.log(L), 1e-12, "discrete filter")
  local pd = plume.bffg(gd, nil, { samples = n, seed = 22 })
  for i = 1, n, 499 do T.near(pd.log_weights_raw[i], math.log(L), 1e-10, "discrete weight " .. i) end
  local c2 = 0
  for _, v in ipairs(pd:draws("s")) do if v == 2 then c2 = c2 + 1 end end
  local q = ms / L
  T.near(c2 / n, q, 4.5 * math.sqrt(q * (1 - q) / n), "P(s = 2 | y)")
end)

T.test("dag: co-parents that are not roots under pCN MCMC keep the exact likelihood", function()
  local ll = gauss_net_exact(net)
  local post = plume.bffg(gauss_net_dag(net), nil, { method = "mcmc", samples = 100, warmup = 20, chains = 1, seed = 2 })
  local lp = post:lp()
  for i = 1, #lp, 9 do T.near(lp[i], ll, 1e-8, "state " .. i .. "'s log weight") end
end)

-- ---- discrete --------------------------------------------------------------------------------------------
-- roots a (2 states), b (3), z (2); d | (a, b) latent (2 states) with e | d observed; y | (a, b) observed;
-- o | a observed; k | (b, z) observed. The roots a, b, z form one group (joined through b).
local pa, pb, pz = { 0.3, 0.7 }, { 0.2, 0.5, 0.3 }, { 0.6, 0.4 }
local Pd = { { 0.9, 0.1 }, { 0.6, 0.4 }, { 0.2, 0.8 }, { 0.5, 0.5 }, { 0.3, 0.7 }, { 0.05, 0.95 } }   -- rows (a, b), a slowest
local Py = { { 0.7, 0.3 }, { 0.4, 0.6 }, { 0.1, 0.9 }, { 0.8, 0.2 }, { 0.5, 0.5 }, { 0.25, 0.75 } }
local Pe = { { 0.8, 0.2 }, { 0.3, 0.7 } }
local Po = { { 0.6, 0.4 }, { 0.1, 0.9 } }
local Pk = { { 0.9, 0.1 }, { 0.5, 0.5 }, { 0.7, 0.3 }, { 0.2, 0.8 }, { 0.4, 0.6 }, { 0.35, 0.65 } }   -- rows (b, z)
local ev, yv2, ov, kv = 2, 2, 1, 2

local function disc_dag()
  local g = plume.dag()
  g:root("a", plume.dist.categorical(pa)):root("b", plume.dist.categorical(pb)):root("z", plume.dist.categorical(pz))
  g:observe("o", "a", MK.discrete(Po), ov)
  g:kernel("d", { "a", "b" }, MK.discrete(Pd)):observe("e", "d", MK.discrete(Pe), ev)
  g:observe("y", { "a", "b" }, MK.discrete(Py), yv2)
  g:observe("k", { "b", "z" }, MK.discrete(Pk), kv)
  return g
end

local function disc_exact()
  local L, marg = 0, { a = { 0, 0 }, b = { 0, 0, 0 }, z = { 0, 0 }, d = { 0, 0 } }
  for a = 1, 2 do for b = 1, 3 do for z = 1, 2 do for d = 1, 2 do
    local ab = (a - 1) * 3 + b
    local p = pa[a] * pb[b] * pz[z] * Po[a][ov] * Pd[ab][d] * Pe[d][ev] * Py[ab][yv2] * Pk[(b - 1) * 2 + z][kv]
    L = L + p
    marg.a[a] = marg.a[a] + p; marg.b[b] = marg.b[b] + p; marg.z[z] = marg.z[z] + p; marg.d[d] = marg.d[d] + p
  end end end end
  for _, v in pairs(marg) do for i = 1, #v do v[i] = v[i] / L end end
  return math.log(L), marg
end

T.test("dag: discrete nodes with several parents (a table over the product of states): enumeration", function()
  local g = disc_dag()
  local ll, marg = disc_exact()
  T.near(g:loglik(), ll, 1e-12, "filter")
  local n = 20000
  local post = plume.bffg(g, nil, { samples = n, seed = 3 })
  for i = 1, n, 997 do T.near(post.log_weights_raw[i], ll, 1e-10, "weight " .. i) end
  local worst = 0
  for name, p in pairs(marg) do
    local x = post:draws(name)
    for s = 1, #p do
      local c = 0
      for _, v in ipairs(x) do if v == s then c = c + 1 end end
      worst = math.max(worst, math.abs(c / n - p[s]) / math.sqrt(p[s] * (1 - p[s]) / n))
    end
  end
  T.ok(worst < 4.5, "marginals: worst z " .. worst)
  -- negative control: the prior's marginals of a
  local x, c = post:draws("a"), 0
  for _, v in ipairs(x) do if v == 1 then c = c + 1 end end
  T.ok(math.abs(c / n - pa[1]) / math.sqrt(pa[1] * pa[2] / n) > 4.5, "the prior of a must miss")
end)

-- a (2 states) root; b | a (3), c | a (2); y observed over {b, c} (a collider of two children of a); d over {b, r}
-- latent (r a root, 2 states) with e | d observed; f | b observed; and the cluster {x1, x3} whose parent unit z
-- is added after x1: x3 | z, o observed over {x1, x3}.
local Pa2, Pb2 = { 0.35, 0.65 }, { { 0.2, 0.5, 0.3 }, { 0.6, 0.1, 0.3 } }
local Pc2 = { { 0.8, 0.2 }, { 0.3, 0.7 } }
local Py2 = { { 0.9, 0.1 }, { 0.4, 0.6 }, { 0.2, 0.8 }, { 0.7, 0.3 }, { 0.5, 0.5 }, { 0.1, 0.9 } }   -- rows (b, c)
local Pr2 = { 0.45, 0.55 }
local Pd2 = { { 0.9, 0.1 }, { 0.25, 0.75 }, { 0.6, 0.4 }, { 0.3, 0.7 }, { 0.15, 0.85 }, { 0.5, 0.5 } }   -- rows (b, r)
local Pe2, Pf2 = { { 0.7, 0.3 }, { 0.2, 0.8 } }, { { 0.5, 0.5 }, { 0.1, 0.9 }, { 0.8, 0.2 } }
local Px1, Pz = { 0.3, 0.3, 0.4 }, { 0.5, 0.5 }
local Px3 = { { 0.9, 0.1 }, { 0.2, 0.8 } }
local Po2 = { { 0.8, 0.2 }, { 0.3, 0.7 }, { 0.6, 0.4 }, { 0.1, 0.9 }, { 0.5, 0.5 }, { 0.35, 0.65 } }   -- rows (x1, x3)
local obs2 = { y = 2, e = 1, f = 2, o = 2 }

local function disc_dag2(o)
  o = o or obs2
  local g = plume.dag():root("a", plume.dist.categorical(Pa2))
  g:kernel("b", "a", MK.discrete(Pb2)):kernel("c", "a", MK.discrete(Pc2))
  g:observe("y", { "b", "c" }, MK.discrete(Py2), o.y)
  g:root("r", plume.dist.categorical(Pr2)):kernel("d", { "b", "r" }, MK.discrete(Pd2)):observe("e", "d", MK.discrete(Pe2), o.e)
  g:observe("f", "b", MK.discrete(Pf2), o.f)
  g:root("x1", plume.dist.categorical(Px1)):root("z", plume.dist.categorical(Pz)):kernel("x3", "z", MK.discrete(Px3))
  g:observe("o", { "x1", "x3" }, MK.discrete(Po2), o.o)
  return g
end

local function disc_exact2(o)
  o = o or obs2
  local L = 0
  local names = { "a", "b", "c", "r", "d", "x1", "z", "x3" }
  local K = { a = 2, b = 3, c = 2, r = 2, d = 2, x1 = 3, z = 2, x3 = 2 }
  local marg, pair = {}, {}
  for _, nm in ipairs(names) do marg[nm] = {} for s = 1, K[nm] do marg[nm][s] = 0 end end
  for s = 1, 6 do pair[s] = 0 end   -- (b, c)
  for a = 1, 2 do for b = 1, 3 do for c = 1, 2 do for r = 1, 2 do for d = 1, 2 do
    for x1 = 1, 3 do for z = 1, 2 do for x3 = 1, 2 do
      local p = Pa2[a] * Pb2[a][b] * Pc2[a][c] * Py2[(b - 1) * 2 + c][o.y] * Pr2[r] * Pd2[(b - 1) * 2 + r][d]
        * Pe2[d][o.e] * Pf2[b][o.f] * Px1[x1] * Pz[z] * Px3[z][x3] * Po2[(x1 - 1) * 2 + x3][o.o]
      L = L + p
      local st = { a = a, b = b, c = c, r = r, d = d, x1 = x1, z = z, x3 = x3 }
      for _, nm in ipairs(names) do marg[nm][st[nm]] = marg[nm][st[nm]] + p end
      pair[(b - 1) * 2 + c] = pair[(b - 1) * 2 + c] + p
    end end end
  end end end end end
  for _, v in pairs(marg) do for i = 1, #v do v[i] = v[i] / L end end
  for i = 1, 6 do pair[i] = pair[i] / L end
  return math.log(L), marg, pair
end

T.test("dag: discrete co-parents that are not roots: enumeration of every joint state", function()
  local g = disc_dag2()
  local ll, marg, pair = disc_exact2()
  T.near(g:loglik(), ll, 1e-12, "filter")
  local n = 20000
  local post = plume.bffg(g, nil, { samples = n, seed = 13 })
  local wmax = 0
  for i = 1, n do wmax = math.max(wmax, math.abs(post.log_weights_raw[i] - ll)) end
  T.ok(wmax < 1e-10, "every weight equals the exact log-likelihood (largest gap " .. wmax .. ")")
  local worst = 0
  local function z(c, p) return math.abs(c / n - p) / math.sqrt(p * (1 - p) / n) end
  for name, p in pairs(marg) do
    local x = post:draws(name)
    for s = 1, #p do
      local c = 0
      for _, v in ipairs(x) do if v == s then c = c + 1 end end
      worst = math.max(worst, z(c, p[s]))
    end
  end
  local xb, xc = post:draws("b"), post:draws("c")
  for s = 1, 6 do   -- the joint of the co-parents b, c
    local c = 0
    for i = 1, n do if (xb[i] - 1) * 2 + xc[i] == s then c = c + 1 end end
    worst = math.max(worst, z(c, pair[s]))
  end
  T.ok(worst < 4.5, "marginals and the joint of (b, c): worst z " .. worst)
  -- negative control: the posterior of other data misses
  local other = { y = 1, e = 2, f = 1, o = 1 }
  local ll2, marg2 = disc_exact2(other)
  T.near(disc_dag2(other):loglik(), ll2, 1e-12, "filter, other data")
  local miss = 0
  for name, p in pairs(marg2) do
    local x = post:draws(name)
    for s = 1, #p do
      local c = 0
      for _, v in ipairs(x) do if v == s then c = c + 1 end end
      miss = math.max(miss, z(c, p[s]))
    end
  end
  T.ok(miss > 4.5, "other data's marginals miss (z " .. miss .. ")")
end)

T.test("dag: several parents -- what is not supported is an error naming the node", function()
  local g = plume.dag():root("a", plume.dist.normal(0, 1)):root("b", plume.dist.normal(0, 1))
  g:kernel("c", "a", MK.linear_gaussian{ B = 1, Q = 1 })
  T.raises(function() g:kernel("x", { "a", "b" }, MK.nonlinear_gaussian{ mean = function(p, x) return x end, Q = 1, at = 0 }) end,
    "node 'x' has several parents, but a nonlinear_gaussian kernel takes one parent")
  local ou = plume.sde{ dim = 1, drift = function(p, x) return -x end, diffusion = function(p) return 1 end }
  local g2 = plume.dag():root("a", plume.dist.normal(0, 1)):kernel("q", "a", MK.sde{ sde = ou, t1 = 1, dt = 0.1, at = 0 })
  g2:observe("o", "q", MK.linear_gaussian{ B = 1, Q = 1 }, 0.3)
  local ll0 = g2:loglik()
  T.raises(function() g2:observe("x", { "a", "q" }, MK.linear_gaussian{ B = { 1, 1 }, Q = 1 }, 0.5) end,
    "node 'x' has several parents; the exact filter must then draw 'q' jointly with 'a' (2 nodes), but 'q' has a sde kernel")
  T.near(g2:loglik(), ll0, 1e-12, "a refused node leaves the model as it was")
  T.eq(#g2:nodes(), 3, "and adds no node")
  T.raises(function() g:kernel("x", { "a", "b" }, MK.linear_gaussian{ B = { 1, 1, 1 }, Q = 1 }) end,
    "node 'x': its kernel takes a continuous value of dimension 3, but its 2 parents stack to dimension 2")
  T.raises(function() g:kernel("x", { "a", "a" }, MK.linear_gaussian{ B = { 1, 1 }, Q = 1 }) end, "names parent 'a' twice")
  g:root("s", plume.dist.categorical{ 0.5, 0.5 })
  T.raises(function() g:kernel("x", { "s", "a" }, MK.discrete{ { 1, 0 }, { 0, 1 } }) end,
    "they must be all discrete or all continuous: 's' is discrete, 'a' is continuous")
  T.raises(function() g:kernel("x", { "a", "nope" }, MK.linear_gaussian{ B = { 1, 1 }, Q = 1 }) end, "there is no node 'nope'")
  g:observe("y", { "a", "b" }, MK.linear_gaussian{ B = { 1, 1 }, Q = 1 }, 0.5)
  T.raises(function() plume.bffg(g, nil, { method = "smc", samples = 10, seed = 1 }) end,
    "node 'y' has several parents, so the latent nodes are not a chain")
  local names = g:nodes()
  T.eq(names[#names].parents[2], "b", "nodes() lists the parents")
end)

T.test("dag: several parents -- same seed, same draws on 1 and 3 threads", function()
  for _, g in ipairs { gauss_dag(), disc_dag(), gauss_net_dag(net), disc_dag2() } do
    local a = plume.bffg(g, nil, { samples = 3000, seed = 5, threads = 1 })
    local b = plume.bffg(g, nil, { samples = 3000, seed = 5, threads = 3 })
    local xa, xb = a:draws("b"), b:draws("b")
    for i = 1, #xa, 101 do T.eq(xa[i], xb[i], "draw " .. i) end
  end
end)
