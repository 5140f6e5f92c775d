-- test_bffg_reaction_mcmc.lua -- plume.bffg method = "mcmc" on a reaction network: pCN over the innovations that
-- drive the guided jump paths, with random-walk moves of a rate constant that remake the linear-noise backward
-- filter. Exact reference: a birth-death process (0 -> X at rate lambda, X -> 0 at rate mu X) truncated at 60
-- individuals, whose likelihood of noisy counts comes from the forward algorithm with plume.ctmc's exp(Q t); the
-- posterior of lambda by quadrature on a grid. The chains' posterior mean and sd must match within their own Monte
-- Carlo error (4.5 mcse); a weight without its integral term (the kernel's test hook) must miss.
local T = dofile("tests/lua/check.lua")
local MK = plume.markov_kernel

local mu, x0, Kmax = 0.5, 4, 60
local ys = { 6.1, 7.8, 9.2, 8.4, 11.3, 9.9 }   -- X(t) + N(0, 1) at t = 1..6
local prior = plume.dist.lognormal(math.log(3), 0.75)

local function exact_loglik(lam, y)
  local Q = {}
  for a = 0, Kmax do
    local row = {}
    for b = 0, Kmax do row[b + 1] = 0 end
    local birth, death = a < Kmax and lam or 0, mu * a
    if a < Kmax then row[a + 2] = birth end
    if a > 0 then row[a] = death end
    row[a + 1] = -(birth + death)
    Q[a + 1] = row
  end
  local P = plume.ctmc{ Q = Q }:transition(1)
  local alpha, ll = {}, 0
  for a = 1, Kmax + 1 do alpha[a] = 0 end
  alpha[x0 + 1] = 1
  for _, yk in ipairs(y) do
    local nxt, s = {}, 0
    for b = 1, Kmax + 1 do
      local acc = 0
      for a = 1, Kmax + 1 do if alpha[a] > 0 then acc = acc + alpha[a] * P[a][b] end end
      nxt[b] = acc * math.exp(-0.5 * (yk - (b - 1)) ^ 2) / math.sqrt(2 * math.pi)
      s = s + nxt[b]
    end
    for b = 1, Kmax + 1 do nxt[b] = nxt[b] / s end
    alpha, ll = nxt, ll + math.log(s)
  end
  return ll
end

-- the posterior mean and sd of lambda by the trapezoid rule on a grid
local function exact_posterior(y)
  local grid, lp, mx = {}, {}, -math.huge
  for i = 1, 150 do   -- (0, 15]
    grid[i] = 0.1 * i
    lp[i] = exact_loglik(grid[i], y) + prior:logpdf(grid[i])
    mx = math.max(mx, lp[i])
  end
  local z, m1, m2 = 0, 0, 0
  for i = 1, #grid do
    local w = math.exp(lp[i] - mx) * ((i == 1 or i == #grid) and 0.5 or 1)
    z, m1, m2 = z + w, m1 + w * grid[i], m2 + w * grid[i] ^ 2
  end
  m1, m2 = m1 / z, m2 / z
  return m1, math.sqrt(m2 - m1 * m1)
end

local bd = plume.reactions{
  species = { "X" },
  params = { lambda = 3, mu = mu },
  reactions = { { stoich = { 1 }, rate = "lambda" }, { stoich = { -1 }, rate = "mu * X" } },
}

local function chain(weight)
  local g = plume.dag():root("x0", { x0 })
  local ref = bd:ode({ x0 }, { 0, 1, 2, 3, 4, 5, 6 })
  for k = 1, #ys do
    g:kernel("x" .. k, "x" .. (k - 1), MK.reactions{ network = bd, t0 = k - 1, t1 = k, dt = 0.1, at = ref[k], _weight = weight })
     :observe("y" .. k, "x" .. k, MK.linear_gaussian{ B = 1, Q = 1 }, ys[k])
  end
  return g
end

local mean, sd = exact_posterior(ys)

T.test("reaction network, method mcmc: the posterior of a rate constant matches quadrature of the exact likelihood", function()
  -- rho fixed at 0.9: correlated moves of the uniforms that drive the paths (adapted, rho falls toward 0 here: the
  -- guided paths are good enough for independent proposals, which the last test below exercises)
  local opts = { method = "mcmc", samples = 2000, warmup = 500, chains = 4, seed = 5, network = bd,
    params = { lambda = prior }, rho = 0.9, target_accept = 0 }
  local post = plume.bffg(chain(), nil, opts)
  local s = post:summary().lambda
  print(string.format("  lambda: exact %.4f (sd %.4f); mcmc %.4f (sd %.4f, mcse %.4f, ess %.0f, rhat %.3f)", mean, sd,
    s.mean, s.sd, s.mcse_mean, s.ess_bulk, s.rhat))
  print(string.format("  acceptance: paths %.2f, lambda %.2f (chain 1; rho %.3f)", post.accept[1], post.accept_params[1],
    post.rho[1]))
  T.near(s.mean, mean, 4.5 * s.mcse_mean, "posterior mean")
  T.near(s.sd, sd, 4.5 * sd / math.sqrt(2 * s.ess_bulk), "posterior sd")
  T.ok(s.rhat < 1.05, "rhat " .. s.rhat)
  for c = 1, 4 do T.ok(post.accept[c] > 0.05 and post.accept_params[c] > 0.1, "chain " .. c .. " moves") end
  -- negative control: without the integral term of the guided weight the posterior of lambda moves away
  opts.samples, opts.warmup = 1000, 300
  local s2 = plume.bffg(chain("no_integral"), nil, opts):summary().lambda
  print(string.format("  no_integral: %.4f (mcse %.4f)", s2.mean, s2.mcse_mean))
  T.ok(math.abs(s2.mean - mean) > 4.5 * s2.mcse_mean, "a weight without its integral must miss (" .. s2.mean .. ")")
end)

T.test("reaction network, method mcmc: the same draws for any thread count", function()
  local function run(threads)
    return plume.bffg(chain(), nil, { method = "mcmc", samples = 40, warmup = 20, chains = 3, seed = 9, threads = threads,
      network = bd, params = { lambda = prior } })
  end
  local a, b = run(1), run(3)
  local da, db = a:draws("lambda"), b:draws("lambda")
  T.eq(#da, 120)
  for i = 1, #da, 7 do T.eq(da[i], db[i], "lambda " .. i) end
end)

T.test("reaction network, method mcmc with no parameters: adapted pCN over the paths alone", function()
  local post = plume.bffg(chain(), nil, { method = "mcmc", samples = 300, warmup = 100, chains = 2, seed = 3 })
  T.ok(post.accept[1] > 0.05, "paths move (" .. post.accept[1] .. ")")
  T.ok(post.rho[1] < 0.9, "rho adapts from 0.9 (" .. post.rho[1] .. ")")
end)

T.test("reaction network, method mcmc: errors name the option", function()
  local other = plume.reactions{ species = { "X" }, params = { lambda = 1 }, reactions = { { stoich = { 1 }, rate = "lambda" } } }
  T.raises(function() plume.bffg(chain(), nil, { method = "mcmc", samples = 10, network = other,
    params = { lambda = prior } }) end, "no node of the model is a markov_kernel.reactions of option 'network'")
  T.raises(function() plume.bffg(chain(), nil, { method = "mcmc", samples = 10, network = bd,
    params = { lambda = prior }, init = { lambda = -1 } }) end, "outside its prior's support")
end)
