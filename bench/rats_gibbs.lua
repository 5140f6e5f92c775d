-- rats_gibbs.lua -- the BUGS "rats" model (examples/data/rats.json) by plume's exact Gibbs kernel (method
-- "gibbs": every site conjugate, normal means and gamma precisions) on the compiled static graph and by JAGS
-- (Debian package jags) on the same model and data, in one run, each on one thread: minimum bulk ESS over
-- alpha0, beta.c, sigma per second of sampling and per second including compilation. JAGS's ESS is the sum
-- over its chains of plume's bulk ESS of each chain (read back from CODA files); JAGS is skipped, and said so,
-- when it is not installed. 10 N iterations of warm-up and 10 N kept per chain, 4 chains, for both.
-- Also "auto" (Gibbs here, since every site is conjugate) and NUTS on every site (N + N iterations per chain).
-- usage: build/plume bench/rats_gibbs.lua [N]
local N = tonumber(arg and arg[1]) or 1000
local R = dofile("bench/rats_common.lua")
local data, rats, wall, min_ess, rows, report, means = R.data, R.rats, R.wall, R.min_ess, R.rows, R.report, R.means
local t0 = wall()
local post = plume.infer(rats, data, { method = "gibbs", samples = 10 * N, warmup = 10 * N, chains = 4, seed = 1, quiet = true, threads = 1 })
local total = wall() - t0
local s = post:summary()
report("gibbs", min_ess(s), post.sampling_time, total, means(s))
-- "auto" (the default method): what it picks here, and its rate
t0 = wall()
post = plume.infer(rats, data, { method = "auto", samples = 10 * N, warmup = 10 * N, chains = 4, seed = 1, quiet = true, threads = 1 })
total = wall() - t0
s = post:summary()
report("auto", min_ess(s), post.sampling_time, total, means(s))
local picked = post.kernel
-- NUTS on every site (a tenth of the iterations: each costs a tree)
t0 = wall()
post = plume.infer(rats, data, { method = "nuts", samples = N, warmup = N, chains = 4, seed = 1, quiet = true, threads = 1 })
total = wall() - t0
s = post:summary()
report("nuts", min_ess(s), post.sampling_time, total, means(s))
-- JAGS on the same model and data
R.jags(10 * N)
print(string.format("rats (30 x 5 observations, 65 latent sites), %d Gibbs and JAGS draws per chain (after as many warm-up), 4 chains; means alpha0 beta.c sigma (JAGS book: 106.6 6.19 6.09)", 10 * N))
for _, r in ipairs(rows) do print(r) end
print("auto picked: " .. picked)
