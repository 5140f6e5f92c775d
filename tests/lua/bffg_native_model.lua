-- bffg_native_model.lua -- a small FitzHugh-Nagumo chain for the native-code tests (tests/lua/test_bffg_native.lua,
-- tests/cli/bffg_native.sh): three sde edges of 50 steps with noisy observations of the first coordinate, and a
-- function that runs plume.bffg's pCN with parameter moves and returns the posterior.
local MK = plume.markov_kernel
local M = {}
M.sde = plume.sde{ dim = 2, params = { s = 0, eps = 0.1, gamma = 1.5, beta = 0.8, sigma = 0.3 },
  drift = function(p, x) return { (x[1] - x[1] ^ 3 - x[2] + p.s) / p.eps, p.gamma * x[1] - x[2] + p.beta } end,
  diffusion = function(p) return { { 0, 0 }, { 0, p.sigma } } end }
M.g = plume.dag()
M.g:root("x0", { -0.5, -0.6 })
local O = MK.linear_gaussian{ B = { { 1, 0 } }, Q = 0.01 }
local prev = "x0"
for i = 1, 3 do
  M.g:kernel("x" .. i, prev, MK.sde{ sde = M.sde, t0 = (i - 1) * 0.5, t1 = i * 0.5, dt = 1e-2, at = { 0, 0 } })
     :observe("v" .. i, "x" .. i, O, 0.1 * i)
  prev = "x" .. i
end
function M.run(opts)
  local o = { method = "mcmc", samples = 100, warmup = 100, chains = 2, seed = 4, sde = M.sde,
    params = { s = plume.dist.normal(0, 1), gamma = plume.dist.gamma(2, 1), beta = plume.dist.normal(0, 2) },
    init = { s = 0.2, gamma = 1, beta = 0.5 } }
  for k, v in pairs(opts or {}) do o[k] = v end
  return plume.bffg(M.g, nil, o)
end
-- every draw of the parameters and of x2, flattened
function M.values(post)
  local v = {}
  for _, name in ipairs { "s", "gamma", "beta", "x2[1]", "x2[2]", "x3[2]" } do
    for _, d in ipairs(post:draws(name)) do
      if type(d) == "table" then for _, e in ipairs(d) do v[#v + 1] = e end else v[#v + 1] = d end
    end
  end
  return v
end
return M
