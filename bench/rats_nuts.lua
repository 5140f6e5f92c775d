-- rats_nuts.lua -- the BUGS "rats" model (examples/data/rats.json) by NUTS on the compiled static graph, by trace
-- MH on the same program, and by JAGS (Debian package jags) on the same model and data, in one run: minimum bulk
-- ESS over alpha0, beta.c, sigma per second of sampling and per second including compilation, side by side.
-- JAGS's ESS is the sum over its chains of plume's bulk ESS of each chain (its draws are read back from CODA
-- files); JAGS is skipped, and said so, when it is not installed.
-- usage: build/plume bench/rats_nuts.lua [samples]
local N = tonumber(arg and arg[1]) or 1000
local R = dofile("bench/rats_common.lua")
local data, rats, wall, min_ess, rows, report, means = R.data, R.rats, R.wall, R.min_ess, R.rows, R.report, R.means

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
R.jags(10 * N)
print(string.format("rats (30 x 5 observations, 65 latent sites), %d NUTS draws per chain, 4 chains; means alpha0 beta.c sigma (JAGS book: 106.6 6.19 6.09)", N))
for _, r in ipairs(rows) do print(r) end
