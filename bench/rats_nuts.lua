-- rats_nuts.lua -- the BUGS "rats" model (examples/data/rats.json) by NUTS on the compiled static graph, by trace
-- MH on the same program, and by JAGS (Debian package jags) on the same model and data, in one run: minimum bulk
-- ESS over alpha0, beta.c, sigma per second of sampling and per second including compilation, side by side.
-- JAGS's ESS is the sum over its chains of plume's bulk ESS of each chain (its draws are read back from CODA
-- files); JAGS is skipped, and said so, when it is not installed.
-- usage: build/plume bench/rats_nuts.lua [samples]
local N = tonumber(arg and arg[1]) or 1000
local data = plume.read_json("examples/data/rats.json")
local D, sqrt = plume.dist, plume.math.sqrt
local xc = {}
for j = 1, data.T do xc[j] = data.x[j] - data.xbar end
local rats = plume.model(function(m, d)
  local alpha_c = m:sample("alpha.c", D.normal(0, 1000))
  local beta_c = m:sample("beta.c", D.normal(0, 1000))
  local alpha_tau = m:sample("alpha.tau", D.gamma(0.001, 0.001))
  local beta_tau = m:sample("beta.tau", D.gamma(0.001, 0.001))
  local tau_c = m:sample("tau.c", D.gamma(0.001, 0.001))
  local sigma = 1 / sqrt(tau_c)
  for i = 1, d.N do
    local alpha = m:sample("alpha[" .. i .. "]", D.normal(alpha_c, 1 / sqrt(alpha_tau)))
    local beta = m:sample("beta[" .. i .. "]", D.normal(beta_c, 1 / sqrt(beta_tau)))
    for j = 1, d.T do m:observe("Y[" .. i .. "," .. j .. "]", D.normal(alpha + beta * xc[j], sigma), d.Y[i][j]) end
  end
  m:deterministic("sigma", sigma)
  m:deterministic("alpha0", alpha_c - d.xbar * beta_c)
end)
local sites = { "alpha0", "beta.c", "sigma" }
local function wall()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l")); p:close(); return t
end
local function min_ess(s)
  local e = math.huge
  for _, n in ipairs(sites) do e = math.min(e, s[n].ess_bulk) end
  return e
end
local rows = {}
local function report(name, ess, sampling, total, means)
  rows[#rows + 1] = string.format("%-6s min bulk ESS %7.0f  sampling %7.2f s  total %7.2f s  ESS/s %9.1f  ESS/s with compile %9.1f  means %s",
    name, ess, sampling, total, ess / sampling, ess / total, means)
end
local function means(s) return string.format("%.2f %.3f %.3f", s.alpha0.mean, s["beta.c"].mean, s.sigma.mean) end

-- NUTS: 4 chains on the machine's threads
local t0 = wall()
local post = plume.infer(rats, data, { method = "nuts", samples = N, warmup = N, chains = 4, seed = 1, quiet = true })
local total = wall() - t0
local s = post:summary()
report("nuts", min_ess(s), post.sampling_time, total, means(s))
print(string.format("nuts: compile %.4f s, %d coordinates, %d divergences, step sizes %s", post.compile_time, post.dim,
  post.divergences, table.concat(post.step_size, " ")))

-- trace MH, 4 chains on 2 threads, fewer iterations (each re-runs the Lua program per site)
local Nmh = math.max(100, N // 10)
local init = { ["alpha.c"] = 150, ["beta.c"] = 10, ["tau.c"] = 1, ["alpha.tau"] = 1, ["beta.tau"] = 1 }
for i = 1, data.N do init["alpha[" .. i .. "]"], init["beta[" .. i .. "]"] = 250, 6 end
t0 = wall()
post = plume.infer(rats, data, { method = "mh", samples = Nmh, warmup = Nmh, chains = 4, seed = 1, threads = 2, init = init, quiet = true })
total = wall() - t0
s = post:summary()
report("mh", min_ess(s), total, total, means(s))

-- JAGS on the same model and data
dofile("bench/rats_jags.lua")(data, 10 * N, sites, report, rows, wall)
print(string.format("rats (30 x 5 observations, 65 latent sites), %d NUTS draws per chain, 4 chains; means alpha0 beta.c sigma (JAGS book: 106.6 6.19 6.09)", N))
for _, r in ipairs(rows) do print(r) end
