-- rats.lua -- the BUGS "Rats" hierarchical growth model with its vague gamma(0.001, 0.001) precisions, sampled by
-- NUTS on the compiled static graph (the program is static: plume.math.sqrt, not math.sqrt, so it traces; the
-- same program also runs under method = "mh"). Precisions move on the log scale, so a draw never meets tau = 0.
-- Short settings; the posterior means are checked against JAGS (alpha0 106.6, beta.c 6.19, sigma 6.09) within
-- 4 Monte Carlo standard errors plus the rounding of the JAGS figures.
local dir = (arg and arg[0] or ""):match("^(.*)/") or "."
local f = assert(io.open(dir .. "/data/rats.json"))
-- the file is plain JSON of numbers and arrays: rewritten as a Lua table constructor
local data = assert(load("return " .. f:read("a"):gsub("%[", "{"):gsub("%]", "}"):gsub('"([%w_]+)"%s*:', "%1 =")))()
f:close()

-- site names made once, outside the model: a run then makes no strings
local a_name, b_name, y_name, xc = {}, {}, {}, {}
for i = 1, data.N do
  a_name[i], b_name[i], y_name[i] = "alpha[" .. i .. "]", "beta[" .. i .. "]", {}
  for j = 1, data.T do y_name[i][j] = "Y[" .. i .. "," .. j .. "]" end
end
for j = 1, data.T do xc[j] = data.x[j] - data.xbar end

local D, sqrt = plume.dist, plume.math.sqrt
local rats = plume.model(function(m, d)
  local alpha_c = m:sample("alpha.c", D.normal(0, 1000))          -- BUGS dnorm(0, 1.0E-6): sd 1000
  local beta_c = m:sample("beta.c", D.normal(0, 1000))
  local alpha_tau = m:sample("alpha.tau", D.gamma(0.001, 0.001))
  local beta_tau = m:sample("beta.tau", D.gamma(0.001, 0.001))
  local tau_c = m:sample("tau.c", D.gamma(0.001, 0.001))
  local sigma = 1 / sqrt(tau_c)
  for i = 1, d.N do
    local alpha = m:sample(a_name[i], D.normal(alpha_c, 1 / sqrt(alpha_tau)))
    local beta = m:sample(b_name[i], D.normal(beta_c, 1 / sqrt(beta_tau)))
    local Yi, names = d.Y[i], y_name[i]
    for j = 1, d.T do m:observe(names[j], D.normal(alpha + beta * xc[j], sigma), Yi[j]) end
  end
  m:deterministic("sigma", sigma)
  m:deterministic("alpha0", alpha_c - d.xbar * beta_c)
end)

-- the BUGS example's initial values (Inits 1)
local init = { ["alpha.c"] = 150, ["beta.c"] = 10, ["tau.c"] = 1, ["alpha.tau"] = 1, ["beta.tau"] = 1 }
for i = 1, data.N do init[a_name[i]], init[b_name[i]] = 250, 6 end
local post = plume.infer(rats, data, { method = "nuts", samples = 500, warmup = 500, chains = 2, seed = 1, init = init })
local s = post:summary()
for _, site in ipairs { "alpha0", "beta.c", "sigma", "alpha.tau", "beta.tau" } do
  local r = s[site]
  print(string.format("%-9s mean %9.4f  sd %8.4f  ess %6.0f", site, r.mean, r.sd, r.ess_bulk))
end
print(string.format("%d divergences, compiled in %.3f s, sampled in %.2f s", post.divergences, post.compile_time,
  post.sampling_time))
local jags = { alpha0 = { 106.6, 0.05 }, ["beta.c"] = { 6.19, 0.005 }, sigma = { 6.09, 0.005 } }
for site, v in pairs(jags) do
  assert(math.abs(s[site].mean - v[1]) < 4 * s[site].mcse_mean + v[2],
    string.format("rats: posterior mean of %s is %.3f +- %.3f, JAGS gives %.3f", site, s[site].mean, s[site].mcse_mean, v[1]))
end
print("posterior means agree with JAGS within 4 MCSE")
