-- bffg_fhn.lua -- pCN MCMC over paths and parameters (plume.bffg, method = "mcmc") on the stochastic FitzHugh-Nagumo
-- model of van der Meulen and Schauer's BFFG paper / BridgeSDEInference.jl: dt = 1e-3, T = 10, 100 noisy
-- observations of the first coordinate, 10,000 iterations (each a pCN path move and a random-walk move of three
-- parameters that recomputes the backward filter, then with fixed_aux = true: B~, a~ frozen after warm-up), one
-- chain, one thread. Prints the time per phase, and the parameters' effective samples per second; each phase runs
-- with the drift and the guided Euler loop as native code (the default) and with the interpreter (native = false),
-- side by side, with the ratio (the chains are the same draw for draw: checked).
-- usage: build/plume bench/bffg_fhn.lua [iterations] [both|native|interp] [seed] [isotropic]
-- (seed: the chains' seed, default 1; isotropic: adapt_cov = false, the random walks unshaped)
-- The last part compares a conjugate block of (gamma, beta) with a random-walk block of the same two.
local MK = plume.markov_kernel
local iters = tonumber(arg and arg[1]) or 10000
local which = arg and arg[2] or "both"
local modes = which == "both" and { true, false } or { which == "native" }
local cseed, adapt = tonumber(arg and arg[3]) or 1, not (arg and arg[4] == "isotropic")
local truth = { s = 0, eps = 0.1, gamma = 1.5, beta = 0.8, sigma = 0.3 }
local fhn = plume.sde{ dim = 2, params = truth,
  drift = function(p, x) return { (x[1] - x[1] ^ 3 - x[2] + p.s) / p.eps, p.gamma * x[1] - x[2] + p.beta } end,
  -- one Brownian motion, on the second coordinate (a 2 x 1 diffusion, as in BridgeSDEInference.jl): a 2 x 2 matrix
  -- with a zero column gives the same process with a second, unused normal per step for pCN to move
  diffusion = function(p) return { { 0 }, { p.sigma } } end }
local x0, T, n, noise = { -0.5, -0.6 }, 10, 100, 0.01
local times = {}
for i = 1, n do times[i] = i * T / n end
local o = plume.sde_obs{ times = times, L = { { 1, 0 } }, noise = noise }
plume.seed(1)
local tt, path = fhn:simulate{ x0 = x0, t_end = T, dt = 1e-3, seed = 3 }
local v = o:sample(o:at(tt, path))

local g = plume.dag()
g:root("x0", x0)
local O = MK.linear_gaussian{ B = { { 1, 0 } }, Q = noise }
local prev = "x0"
for i, t in ipairs(times) do
  local vi = type(v[i]) == "table" and v[i][1] or v[i]
  g:kernel("x" .. i, prev, MK.sde{ sde = fhn, t0 = t - T / n, t1 = t, dt = 1e-3, at = { vi, 0 } })
   :observe("v" .. i, "x" .. i, O, vi)
  prev = "x" .. i
end

local function clock(f)
  local t = os.clock(); local r = f(); return os.clock() - t, r
end
local function name(native) return native and "native" or "interp" end
local tp = {}
for _, nat in ipairs(modes) do
  local tb = clock(function() for _ = 1, 20 do g:loglik() end end) / 20
  local tf = clock(function() return plume.bffg(g, nil, { samples = 50, threads = 1, seed = 1, native = nat }) end) / 50
  print(string.format("[%s] one backward filter (10,000 steps): %.2f ms; one guided forward path: %.2f ms", name(nat), 1e3 * tb, 1e3 * tf))
end
for _, nat in ipairs(modes) do
  local post
  tp[nat], post = clock(function()
    return plume.bffg(g, nil, { method = "mcmc", samples = iters // 2, warmup = iters // 2, chains = 1, threads = 1, seed = cseed,
      native = nat })
  end)
  print(string.format("[%s] pCN on the path only, %d iterations: %.2f s (native code: %s)", name(nat), iters, tp[nat], tostring(post.native)))
end
if #modes == 2 then print(string.format("  interp / native: %.2f", tp[false] / tp[true])) end
local params = { s = plume.dist.normal(0, 1), gamma = plume.dist.gamma(2, 1), beta = plume.dist.normal(0, 2) }
local function with_params(fixed, nat)
  return clock(function()
    return plume.bffg(g, nil, { method = "mcmc", samples = iters // 2, warmup = iters // 2, chains = 1, threads = 1,
      seed = cseed, sde = fhn, params = params, init = { s = 0.2, gamma = 1, beta = 0.5 }, fixed_aux = fixed or nil,
      native = nat, adapt_cov = adapt })
  end)
end
local function report(what, ta, post)
  local sm = post:summary()
  print(string.format("[%s] pCN + parameter moves (%s), %d iterations: %.2f s (reference: about 45 s for "
    .. "BridgeSDEInference.jl, Julia, on a laptop)", name(post.native), what, iters, ta))
  print(string.format("  acceptance: path %.2f (rho %.3f), parameters %.2f", post.accept[1], post.rho[1], post.accept_params[1]))
  for _, k in ipairs { "s", "gamma", "beta" } do
    print(string.format("  %-5s true %5.2f  posterior mean %6.3f  sd %5.3f  ess %5.0f  ess/s %6.1f", k, truth[k], sm[k].mean,
      sm[k].sd, sm[k].ess_bulk, sm[k].ess_bulk / ta))
  end
end
for _, fixed in ipairs { false, true } do
  local what = fixed and "fixed_aux" or "filter recomputed at every move"
  local t, posts = {}, {}
  for _, nat in ipairs(modes) do
    t[nat], posts[nat] = with_params(fixed, nat)
    report(what, t[nat], posts[nat])
  end
  if #modes == 2 then
    local a, b, same = posts[true]:draws("gamma"), posts[false]:draws("gamma"), true
    for i = 1, #a do same = same and a[i] == b[i] end
    print(string.format("  interp / native: %.2f; the same draws: %s", t[false] / t[true], tostring(same)))
  end
end
-- gamma and beta enter the drift of x2 (which the noise drives) linearly: a conjugate block draws them from their
-- Gaussian conditional given the path and keeps the path, against a random-walk block of the same two; s (in the
-- drift of x1, which no noise drives) keeps its own random-walk block in both. Native code only.
-- With fixed_aux a third row adds the block's own random walk after its conjugate move (walk = true), which moves
-- (gamma, beta) with the path's innovations kept rather than the path itself.
for _, fixed in ipairs { true, false } do
  for _, conj in ipairs(fixed and { false, true, "walk" } or { false, true }) do
    local ta, post = clock(function()
      return plume.bffg(g, nil, { method = "mcmc", samples = iters // 2, warmup = iters // 2, chains = 1, threads = 1,
        seed = cseed, adapt_cov = adapt, sde = fhn, params = params, init = { s = 0.2, gamma = 1, beta = 0.5 }, fixed_aux = fixed or nil,
        blocks = { { "s" }, { "gamma", "beta", conjugate = conj and true, walk = conj == "walk" or nil } } })
    end)
    local sm = post:summary()
    print(string.format("[blocks {s}, {gamma, beta%s}%s] %d iterations: %.2f s; acceptance: path %.2f, parameters %.2f%s",
      conj == "walk" and ", conjugate, walk" or conj and ", conjugate" or "", fixed and ", fixed_aux" or "", iters, ta,
      post.accept[1], post.accept_params[1],
      conj and string.format(" (conjugate %.2f)", post.accept_conjugate[1]) or ""))
    for _, k in ipairs { "s", "gamma", "beta" } do
      print(string.format("  %-5s posterior mean %6.3f  sd %5.3f  ess %5.0f  ess/s %6.1f", k, sm[k].mean, sm[k].sd,
        sm[k].ess_bulk, sm[k].ess_bulk / ta))
    end
  end
end
