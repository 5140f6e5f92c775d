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

T.test("dag: several parents -- what is not supported is an error naming the node", function()
  local g = plume.dag():root("a", plume.dist.normal(0, 1)):root("b", plume.dist.normal(0, 1))
  g:kernel("c", "a", MK.linear_gaussian{ B = 1, Q = 1 })
  T.raises(function() g:kernel("x", { "a", "c" }, MK.linear_gaussian{ B = { 1, 1 }, Q = 1 }) end,
    "node 'x' has several parents, and then they must be roots; 'c' is not")
  T.raises(function() g:kernel("x", { "a", "b" }, MK.linear_gaussian{ B = { 1, 1, 1 }, Q = 1 }) end,
    "node 'x': its kernel takes a continuous value of dimension 3, but its 2 parents stack to dimension 2")
  T.raises(function() g:kernel("x", { "a", "a" }, MK.linear_gaussian{ B = { 1, 1 }, Q = 1 }) end, "names parent 'a' twice")
  g:root("s", plume.dist.categorical{ 0.5, 0.5 })
  T.raises(function() g:kernel("x", { "s", "a" }, MK.discrete{ { 1, 0 }, { 0, 1 } }) end,
    "'a' has a continuous linear_gaussian prior")
  T.raises(function() g:kernel("x", { "a", "nope" }, MK.linear_gaussian{ B = { 1, 1 }, Q = 1 }) end, "there is no node 'nope'")
  g:observe("y", { "a", "b" }, MK.linear_gaussian{ B = { 1, 1 }, Q = 1 }, 0.5)
  T.raises(function() plume.bffg(g, nil, { method = "smc", samples = 10, seed = 1 }) end,
    "node 'y' has several parents, so the latent nodes are not a chain")
  local names = g:nodes()
  T.eq(names[#names].parents[2], "b", "nodes() lists the parents")
end)

T.test("dag: several parents -- same seed, same draws on 1 and 3 threads", function()
  for _, g in ipairs { gauss_dag(), disc_dag() } do
    local a = plume.bffg(g, nil, { samples = 3000, seed = 5, threads = 1 })
    local b = plume.bffg(g, nil, { samples = 3000, seed = 5, threads = 3 })
    local xa, xb = a:draws("b"), b:draws("b")
    for i = 1, #xa, 101 do T.eq(xa[i], xb[i], "draw " .. i) end
  end
end)
