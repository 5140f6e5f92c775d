-- ppg_bias.lua -- PPG against PaRIS at the same cost on a linear-Gaussian model (T = 100, E[sum x_t^2] from
-- the RTS smoother): PPG with 8 particles and K iterations (one sweep each, burn-in K/2) next to plume.smooth's
-- PaRIS with 8 and with 8 (K + 1) particles (about the same number of particle-steps as the PPG run), over many
-- seeds: bias, standard deviation, RMSE and CPU seconds per run, measured side by side in this run.
-- Usage: plume bench/ppg_bias.lua [seeds]
local D = plume.dist
local nseeds = tonumber(arg and arg[1]) or 50
local rho, s, r = 0.9, 0.5, 0.5
local lin = plume.ssm{
  params = { rho = rho, s = s, r = r },
  init  = function(p) return D.normal(0, math.sqrt(rho ^ 2 + s ^ 2)) end,
  trans = function(p, x, t) return D.normal(p.rho * x, p.s) end,
  obs   = function(p, x, t) return D.normal(x, p.r) end,
}
local kf = plume.lgssm{ A = rho, Q = s * s, C = 1, R = r * r, m0 = 0, P0 = 1 }
local _, ys = lin:simulate(100, { seed = 4 })
local sm, sc = kf:smooth(ys)
local truth = 0
for t = 1, #ys do truth = truth + sm[t] ^ 2 + sc[t] end
local h = function(t, xp, x) return x * x end

local function row(name, run)
  local m, m2, t0 = 0, 0, os.clock()
  for seed = 1, nseeds do
    local v = run(seed)
    m, m2 = m + v, m2 + (v - truth) ^ 2
  end
  local cpu = (os.clock() - t0) / nseeds
  m = m / nseeds
  local mse = m2 / nseeds
  print(string.format("%-34s %9.3f %+8.3f %8.3f %8.3f %9.4f", name, m, m - truth, math.sqrt(math.max(mse - (m - truth) ^ 2, 0)),
                      math.sqrt(mse), cpu))
end

print(string.format("exact E[sum x_t^2] = %.3f; %d seeds each", truth, nseeds))
print(string.format("%-34s %9s %8s %8s %8s %9s", "method", "mean", "bias", "sd", "rmse", "cpu s/run"))
for _, K in ipairs{ 20, 50 } do
  row(string.format("PaRIS, N = 8"), function(seed)
    return plume.smooth(lin, ys, { method = "paris", particles = 8, seed = seed, functional = h, threads = 1 }).value
  end)
  row(string.format("PaRIS, N = %d", 8 * (K + 1)), function(seed)
    return plume.smooth(lin, ys, { method = "paris", particles = 8 * (K + 1), seed = seed, functional = h,
                                   threads = 1 }).value
  end)
  row(string.format("PPG, N = 8, %d iters, burn-in %d", K, K // 2), function(seed)
    return plume.ppg(lin, ys, { particles = 8, iters = K, burnin = K // 2, seed = seed, functional = h,
                                threads = 1 }).value
  end)
end
