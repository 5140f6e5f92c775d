-- theta_logistic_pgibbs.lua -- particle Gibbs with ancestor sampling (plume.pgibbs) on the theta-logistic
-- population model (log population x_t; the parameter values are those of the `particles` library's
-- ThetaLogistic example):
--   x_t = x_{t-1} + tau0 - tau1 exp(tau2 x_{t-1}) + sigma_x e_t,   y_t ~ N(x_t, sigma_y^2)
-- The path is drawn by conditional SMC with ancestor sampling, tau0 and tau1 by exact (conjugate) draws given
-- the path, tau2 and sigma_x by random-walk moves. Quick settings run in the test suite;
-- `plume theta_logistic_pgibbs.lua full` runs the settings quoted in doc/manual.md.
local full = arg and arg[1] == "full"
local T = full and 500 or 100
local N = full and 50 or 20
local samples, warmup, chains = full and 4000 or 400, full and 1000 or 200, full and 4 or 2

local truth = { tau0 = 0.15, tau1 = 0.12, tau2 = 0.1, sigma_x = 0.47, sigma_y = 0.39 }
local function model(params)
  return plume.ssm{
    params = params,
    init  = function(p) return plume.dist.normal(0, 1) end,
    trans = function(p, x, t)
      return plume.dist.normal(x + p.tau0 - p.tau1 * plume.math.exp(p.tau2 * x), p.sigma_x)
    end,
    obs   = function(p, x, t) return plume.dist.normal(x, p.sigma_y) end,
  }
end
local xs, ys = model(truth):simulate(T, { seed = 7 })

-- tau0, tau1, tau2 and sigma_x learnt; sigma_y known
local learn = model{ tau0 = plume.dist.normal(0, 1), tau1 = plume.dist.halfnormal(1),
                     tau2 = plume.dist.uniform(0, 2), sigma_x = plume.dist.halfnormal(1), sigma_y = truth.sigma_y }
local t0 = os.clock()
local post = plume.pgibbs(learn, ys, { particles = N, samples = samples, warmup = warmup, chains = chains, seed = 1,
                                       threads = 2, times = { 1, T // 2, T }, param_moves = 5 })
local secs = os.clock() - t0
print(post)
print(string.format("%.1f s CPU; random-walk acceptance per chain %.2f", secs, post.accept_rate[1]))
-- tau0 and tau1 enter the transition mean linearly under (half)normal priors: drawn exactly given the path
local cj = {}
for _, name in ipairs{ "tau0", "tau1", "tau2", "sigma_x" } do
  if post.conjugate[name] then cj[#cj + 1] = name end
end
print("conjugate Gibbs draws: " .. table.concat(cj, ", "))
local sm = post:summary()
for _, name in ipairs{ "tau0", "tau1", "tau2", "sigma_x" } do
  print(string.format("%-8s truth %.3f, posterior %.3f (90%% interval %.3f .. %.3f)", name, truth[name],
                      sm[name].mean, sm[name].q5, sm[name].q95))
end

-- why ancestor sampling: how often a sweep changes x_t, with it and without it (plain conditional SMC), at the
-- true parameters. Without it the path near t = 1 is almost never renewed with few particles.
local fixed = model(truth)
local function rates(as)
  local p = plume.pgibbs(fixed, ys, { particles = N, samples = 200, warmup = 50, chains = 1, seed = 2,
                                      ancestor_sampling = as, times = {} })
  local lo = 1
  for t = 1, T do lo = math.min(lo, p.update_rate[t]) end
  return p.update_rate[1], lo
end
local a1, alo = rates(true)
local p1, plo = rates(false)
print(string.format("update rate at t = 1 (lowest over t): with ancestor sampling %.2f (%.2f), without %.2f (%.2f)",
                    a1, alo, p1, plo))
