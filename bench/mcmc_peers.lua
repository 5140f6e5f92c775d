-- mcmc_peers.lua -- plume against JAGS and Stan (Debian packages jags, r-cran-rstan) on five models, each given
-- the same model and data: BUGS "rats", BUGS "seeds" (random-effects logistic regression), a 3-component
-- Gaussian mixture of 1,000 points (bench/data/gmm3.json), 8 schools non-centred, and posteriordb's
-- kidiq_interaction regression (on the kidiq data of Gelman and Hill: bench/data/kidiq.json).
-- Reported: minimum bulk ESS over every parameter, per second of sampling (warm-up included) and per second
-- including compilation. Every ESS is plume's, computed the same way from each tool's draws (written to
-- plume's CSV and read back with plume.read_posterior). Everything runs on one core: plume threads = 1, Stan
-- cores = 1 (chains one after the other), JAGS is single-threaded.
-- JAGS's compile time is a run with the same script that stops after initialisation; its sampling time is the
-- full run minus that. Stan's are rstan's stan_model() wall time and the sum of get_elapsed_time().
-- The mixture: plume and Stan marginalise the labels; JAGS samples them (its natural idiom, same posterior).
-- usage: build/plume bench/mcmc_peers.lua [samples per chain (1000)] [models, comma-separated] [out file]
local N = tonumber(arg and arg[1]) or 1000
local only = arg and arg[2] and arg[2] ~= "" and arg[2] or nil
local outpath = arg and arg[3]
local D, M = plume.dist, plume.math
local CHAINS = 4
local JAGS_MULT = tonumber(os.getenv("JAGS_MULT")) or 5   -- JAGS iterations per chain: JAGS_MULT * samples
local dir = os.tmpname(); os.remove(dir); os.execute("mkdir -p " .. dir)

local function wall()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l")); p:close(); return t
end
local function have(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") end
local function readfile(p) local f = io.open(p); if not f then return nil end local s = f:read("a"); f:close(); return s end
local function writefile(p, s) local f = assert(io.open(p, "w")); f:write(s); f:close() end

-- data as an R dump file (JAGS and rstan's read_rdump both read it); arrays of rows become column-major
local function rdump(data, keys)
  local out = {}
  for _, k in ipairs(keys) do
    local v = data[k]
    if type(v) == "table" and type(v[1]) == "table" then
      local nr, nc, flat = #v, #v[1], {}
      for j = 1, nc do for i = 1, nr do flat[#flat + 1] = string.format("%.10g", v[i][j]) end end
      out[#out + 1] = string.format("%s <- structure(c(%s), .Dim = c(%d, %d))", k, table.concat(flat, ","), nr, nc)
    elseif type(v) == "table" then
      local s = {}
      for i, x in ipairs(v) do s[i] = string.format(math.type(x) == "integer" and "%d" or "%.10g", x) end
      out[#out + 1] = string.format("%s <- c(%s)", k, table.concat(s, ","))
    else
      out[#out + 1] = string.format(math.type(v) == "integer" and "%s <- %d" or "%s <- %.10g", k, v)
    end
  end
  return table.concat(out, "\n") .. "\n"
end

-- min bulk ESS over the columns whose base name (before "[") is in params
local function min_ess(post, params)
  local want = {}
  for _, p in ipairs(params) do want[p] = true end
  local s, e, worst = post:summary(), math.huge, nil
  for _, col in ipairs(post:sites()) do
    if want[col:match("^[^%[]+")] then
      local v = s[col].ess_bulk or 0
      if v < e then e, worst = v, col end
    end
  end
  return e, worst
end

-- the same starting values for every tool (each model's `inits`; sites they do not name start as each tool
-- chooses): an R dump for JAGS and rstan, a table by site name ("beta[2]") for plume
local function inits_rdump(inits)
  local names, out = {}, {}
  for k in pairs(inits) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = inits[k]
    if type(v) == "table" then
      local xs = {}
      for i, x in ipairs(v) do xs[i] = string.format("%.17g", x) end
      out[#out + 1] = string.format("%s <- c(%s)", k, table.concat(xs, ", "))
    else
      out[#out + 1] = string.format("%s <- %.17g", k, v)
    end
  end
  return table.concat(out, "\n") .. "\n"
end
local function inits_plume(inits)
  local t = {}
  for k, v in pairs(inits) do
    if type(v) == "table" then for i, x in ipairs(v) do t[k .. "[" .. i .. "]"] = x end else t[k] = v end
  end
  return t
end

local models = {}

-- BUGS "rats" (the precision parameterisation of the BUGS manual)
do
  local data = plume.read_json("examples/data/rats.json")
  models[#models + 1] = {
    name = "rats", data = data, rkeys = { "N", "T", "x", "xbar", "Y" },
    params = { "alpha", "beta", "alpha_c", "beta_c", "tau_c", "tau_alpha", "tau_beta" },
    plume = plume.model(function(m, d)
      local alpha_c = m:sample("alpha_c", D.normal(0, 1000))
      local beta_c = m:sample("beta_c", D.normal(0, 1000))
      local tau_c = m:sample("tau_c", D.gamma(0.001, 0.001))
      local tau_alpha = m:sample("tau_alpha", D.gamma(0.001, 0.001))
      local tau_beta = m:sample("tau_beta", D.gamma(0.001, 0.001))
      local sa, sb, sy = 1 / M.sqrt(tau_alpha), 1 / M.sqrt(tau_beta), 1 / M.sqrt(tau_c)
      for i = 1, d.N do
        local a = m:sample("alpha[" .. i .. "]", D.normal(alpha_c, sa))
        local b = m:sample("beta[" .. i .. "]", D.normal(beta_c, sb))
        for j = 1, d.T do m:observe("Y[" .. i .. "," .. j .. "]", D.normal(a + b * (d.x[j] - d.xbar), sy), d.Y[i][j]) end
      end
    end),
    jags = [==[model {
  for (i in 1:N) {
    for (j in 1:T) { Y[i, j] ~ dnorm(alpha[i] + beta[i] * (x[j] - xbar), tau_c) }
    alpha[i] ~ dnorm(alpha_c, tau_alpha)
    beta[i] ~ dnorm(beta_c, tau_beta)
  }
  tau_c ~ dgamma(0.001, 0.001); alpha_c ~ dnorm(0.0, 1.0E-6); tau_alpha ~ dgamma(0.001, 0.001)
  beta_c ~ dnorm(0.0, 1.0E-6); tau_beta ~ dgamma(0.001, 0.001)
}]==],
    inits = { alpha_c = 150, beta_c = 10, tau_c = 1, tau_alpha = 1, tau_beta = 1 },
    stan = [==[data { int<lower=0> N; int<lower=0> T; real x[T]; real xbar; real Y[N, T]; }
parameters { real alpha[N]; real beta[N]; real alpha_c; real beta_c; real<lower=0> tau_c;
  real<lower=0> tau_alpha; real<lower=0> tau_beta; }
model {
  alpha_c ~ normal(0, 1000); beta_c ~ normal(0, 1000);
  tau_c ~ gamma(0.001, 0.001); tau_alpha ~ gamma(0.001, 0.001); tau_beta ~ gamma(0.001, 0.001);
  alpha ~ normal(alpha_c, 1 / sqrt(tau_alpha));
  beta ~ normal(beta_c, 1 / sqrt(tau_beta));
  for (i in 1:N) for (j in 1:T) Y[i, j] ~ normal(alpha[i] + beta[i] * (x[j] - xbar), 1 / sqrt(tau_c));
}]==],
  }
end

-- BUGS "seeds": random-effects logistic regression, centred, as in the BUGS manual
do
  local data = plume.read_json("examples/data/seeds.json")
  models[#models + 1] = {
    name = "seeds", data = data, rkeys = { "N", "r", "n", "x1", "x2" },
    params = { "alpha0", "alpha1", "alpha2", "alpha12", "tau", "b" },
    plume = plume.model(function(m, d)
      local a0 = m:sample("alpha0", D.normal(0, 1000))
      local a1 = m:sample("alpha1", D.normal(0, 1000))
      local a2 = m:sample("alpha2", D.normal(0, 1000))
      local a12 = m:sample("alpha12", D.normal(0, 1000))
      local tau = m:sample("tau", D.gamma(0.001, 0.001))
      local sigma = 1 / M.sqrt(tau)
      for i = 1, d.N do
        local b = m:sample("b[" .. i .. "]", D.normal(0, sigma))
        local p = M.logistic(a0 + a1 * d.x1[i] + a2 * d.x2[i] + a12 * d.x1[i] * d.x2[i] + b)
        m:observe("r[" .. i .. "]", D.binomial(d.n[i], p), d.r[i])
      end
    end),
    jags = [==[model {
  for (i in 1:N) {
    r[i] ~ dbin(p[i], n[i])
    b[i] ~ dnorm(0.0, tau)
    logit(p[i]) <- alpha0 + alpha1 * x1[i] + alpha2 * x2[i] + alpha12 * x1[i] * x2[i] + b[i]
  }
  alpha0 ~ dnorm(0.0, 1.0E-6); alpha1 ~ dnorm(0.0, 1.0E-6); alpha2 ~ dnorm(0.0, 1.0E-6)
  alpha12 ~ dnorm(0.0, 1.0E-6); tau ~ dgamma(0.001, 0.001)
}]==],
    inits = { alpha0 = 0, alpha1 = 0, alpha2 = 0, alpha12 = 0, tau = 1 },
    stan = [==[data { int<lower=0> N; int<lower=0> r[N]; int<lower=0> n[N]; vector[N] x1; vector[N] x2; }
parameters { real alpha0; real alpha1; real alpha2; real alpha12; real<lower=0> tau; vector[N] b; }
model {
  alpha0 ~ normal(0, 1000); alpha1 ~ normal(0, 1000); alpha2 ~ normal(0, 1000); alpha12 ~ normal(0, 1000);
  tau ~ gamma(0.001, 0.001);
  b ~ normal(0, 1 / sqrt(tau));
  r ~ binomial_logit(n, alpha0 + alpha1 * x1 + alpha2 * x2 + alpha12 * x1 .* x2 + b);
}]==],
  }
end

-- 3-component Gaussian mixture, ordered means mu1 < mu1 + d2 < mu1 + d2 + d3, weights by stick-breaking
-- (v1 ~ beta(1, 2), v2 ~ beta(1, 1) is dirichlet(1, 1, 1))
do
  local data = plume.read_json("bench/data/gmm3.json")
  models[#models + 1] = {
    name = "gmm3", data = data, rkeys = { "N", "y" },
    params = { "mu1", "d2", "d3", "sigma1", "sigma2", "sigma3", "v1", "v2" },
    plume = plume.model(function(m, d)
      local mu1 = m:sample("mu1", D.normal(0, 10))
      local d2 = m:sample("d2", D.halfnormal(5))
      local d3 = m:sample("d3", D.halfnormal(5))
      local s1 = m:sample("sigma1", D.halfnormal(2))
      local s2 = m:sample("sigma2", D.halfnormal(2))
      local s3 = m:sample("sigma3", D.halfnormal(2))
      local v1 = m:sample("v1", D.beta(1, 2))
      local v2 = m:sample("v2", D.beta(1, 1))
      local mu2, mu3 = mu1 + d2, mu1 + d2 + d3
      local w1, w2, w3 = v1, (1 - v1) * v2, (1 - v1) * (1 - v2)
      local c1, c2, c3 = w1 / s1, w2 / s2, w3 / s3
      local h1, h2, h3 = -0.5 / (s1 * s1), -0.5 / (s2 * s2), -0.5 / (s3 * s3)
      local lc = -0.5 * math.log(2 * math.pi)
      for i = 1, d.N do
        local y = d.y[i]
        m:factor(lc + M.log(c1 * M.exp(h1 * (y - mu1) ^ 2) + c2 * M.exp(h2 * (y - mu2) ^ 2) + c3 * M.exp(h3 * (y - mu3) ^ 2)))
      end
    end),
    jags = [==[model {
  mu1 ~ dnorm(0, 0.01); d2 ~ dnorm(0, 0.04) T(0,); d3 ~ dnorm(0, 0.04) T(0,)
  sigma1 ~ dnorm(0, 0.25) T(0,); sigma2 ~ dnorm(0, 0.25) T(0,); sigma3 ~ dnorm(0, 0.25) T(0,)
  v1 ~ dbeta(1, 2); v2 ~ dbeta(1, 1)
  mu[1] <- mu1; mu[2] <- mu1 + d2; mu[3] <- mu1 + d2 + d3
  tau[1] <- 1 / (sigma1 * sigma1); tau[2] <- 1 / (sigma2 * sigma2); tau[3] <- 1 / (sigma3 * sigma3)
  w[1] <- v1; w[2] <- (1 - v1) * v2; w[3] <- (1 - v1) * (1 - v2)
  for (i in 1:N) { z[i] ~ dcat(w[]); y[i] ~ dnorm(mu[z[i]], tau[z[i]]) }
}]==],
    inits = { mu1 = -2, d2 = 2, d3 = 2, sigma1 = 1, sigma2 = 1, sigma3 = 1, v1 = 0.3, v2 = 0.5 },
    stan = [==[data { int<lower=0> N; vector[N] y; }
parameters { real mu1; real<lower=0> d2; real<lower=0> d3; real<lower=0> sigma1; real<lower=0> sigma2;
  real<lower=0> sigma3; real<lower=0, upper=1> v1; real<lower=0, upper=1> v2; }
model {
  vector[3] lw = log([v1, (1 - v1) * v2, (1 - v1) * (1 - v2)]');
  mu1 ~ normal(0, 10); d2 ~ normal(0, 5); d3 ~ normal(0, 5);
  sigma1 ~ normal(0, 2); sigma2 ~ normal(0, 2); sigma3 ~ normal(0, 2);
  v1 ~ beta(1, 2); v2 ~ beta(1, 1);
  for (i in 1:N)
    target += log_sum_exp(lw[1] + normal_lpdf(y[i] | mu1, sigma1),
                          log_sum_exp(lw[2] + normal_lpdf(y[i] | mu1 + d2, sigma2),
                                      lw[3] + normal_lpdf(y[i] | mu1 + d2 + d3, sigma3)));
}]==],
  }
end

-- 8 schools, non-centred
do
  local data = plume.read_json("examples/data/eight_schools.json")
  models[#models + 1] = {
    name = "eight_schools_nc", data = data, rkeys = { "J", "y", "sigma" },
    params = { "mu", "tau", "theta_tilde" },
    plume = plume.model(function(m, d)
      local mu = m:sample("mu", D.normal(0, 5))
      local tau = m:sample("tau", D.halfcauchy(5))
      for j = 1, d.J do
        local tt = m:sample("theta_tilde[" .. j .. "]", D.normal(0, 1))
        m:observe("y[" .. j .. "]", D.normal(mu + tau * tt, d.sigma[j]), d.y[j])
      end
    end),
    jags = [==[model {
  mu ~ dnorm(0, 0.04); tau ~ dt(0, 0.04, 1) T(0,)
  for (j in 1:J) { theta_tilde[j] ~ dnorm(0, 1); y[j] ~ dnorm(mu + tau * theta_tilde[j], 1 / (sigma[j] * sigma[j])) }
}]==],
    stan = [==[data { int<lower=0> J; real y[J]; real<lower=0> sigma[J]; }
parameters { real mu; real<lower=0> tau; vector[J] theta_tilde; }
model {
  mu ~ normal(0, 5); tau ~ cauchy(0, 5); theta_tilde ~ normal(0, 1);
  for (j in 1:J) y[j] ~ normal(mu + tau * theta_tilde[j], sigma[j]);
}]==],
  }
end

-- posteriordb's kidiq_interaction (beta's flat prior replaced by normal(0, 1000) in all three, since JAGS has no
-- improper priors)
do
  local data = plume.read_json("bench/data/kidiq.json")
  models[#models + 1] = {
    name = "kidiq_interaction", data = data, rkeys = { "N", "kid_score", "mom_hs", "mom_iq" },
    params = { "beta", "sigma" },
    plume = plume.model(function(m, d)
      local b = {}
      for k = 1, 4 do b[k] = m:sample("beta[" .. k .. "]", D.normal(0, 1000)) end
      local sigma = m:sample("sigma", D.halfcauchy(2.5))
      for i = 1, d.N do
        local hs, iq = d.mom_hs[i], d.mom_iq[i]
        m:observe("kid_score[" .. i .. "]", D.normal(b[1] + b[2] * hs + b[3] * iq + b[4] * (hs * iq), sigma), d.kid_score[i])
      end
    end),
    jags = [==[model {
  for (k in 1:4) { beta[k] ~ dnorm(0, 1.0E-6) }
  sigma ~ dt(0, 0.16, 1) T(0,)
  for (i in 1:N) {
    kid_score[i] ~ dnorm(beta[1] + beta[2] * mom_hs[i] + beta[3] * mom_iq[i] + beta[4] * mom_hs[i] * mom_iq[i],
                         1 / (sigma * sigma))
  }
}]==],
    inits = { beta = { 0, 0, 0, 0 }, sigma = 10 },
    stan = [==[data { int<lower=0> N; vector[N] kid_score; vector[N] mom_hs; vector[N] mom_iq; }
parameters { vector[4] beta; real<lower=0> sigma; }
model {
  beta ~ normal(0, 1000); sigma ~ cauchy(0, 2.5);
  kid_score ~ normal(beta[1] + beta[2] * mom_hs + beta[3] * mom_iq + beta[4] * (mom_hs .* mom_iq), sigma);
}]==],
  }
end

-- JAGS: CODA output to plume CSV
local function coda_to_csv(stem, path)
  local idx, names = {}, {}
  for line in io.lines(stem .. "index.txt") do
    local name, a, b = line:match("^(%S+)%s+(%d+)%s+(%d+)")
    idx[#idx + 1] = { name, tonumber(a), tonumber(b) }
    names[#names + 1] = name
  end
  local f = assert(io.open(path, "w"))
  f:write("chain,draw," .. table.concat(names, ",") .. "\n")
  for c = 1, CHAINS do
    local vals = {}
    for line in io.lines(string.format("%schain%d.txt", stem, c)) do vals[#vals + 1] = line:match("%S+%s+(%S+)") end
    local n = idx[1][3] - idx[1][2] + 1
    for i = 1, n do
      local row = { c, i }
      for k, e in ipairs(idx) do row[k + 2] = vals[e[2] + i - 1] end
      f:write(table.concat(row, ",") .. "\n")
    end
  end
  f:close()
end

local function run_jags(mod, d)
  local NJ = JAGS_MULT * N   -- JAGS draws are cheap: longer runs for a steadier ESS (ESS/s does not depend on it)
  writefile(d .. "/model.bug", mod.jags)
  writefile(d .. "/data.R", rdump(mod.data, mod.rkeys))
  local inits = mod.inits and string.format('inits in "%s/inits.R"\n', d) or ""
  if mod.inits then writefile(d .. "/inits.R", inits_rdump(mod.inits)) end
  local head = string.format('model in "%s/model.bug"\ndata in "%s/data.R"\ncompile, nchains(%d)\n%sinitialize\n', d, d,
    CHAINS, inits)
  writefile(d .. "/setup.cmd", head .. "exit\n")
  local mon = {}
  for _, p in ipairs(mod.params) do mon[#mon + 1] = "monitor " .. p end
  writefile(d .. "/run.cmd", head .. string.format("update %d\n%s\nupdate %d\ncoda *, stem(\"%s/out\")\nexit\n", NJ,
    table.concat(mon, "\n"), NJ, d))
  local t0 = wall()
  os.execute(string.format("cd %s && jags setup.cmd > setup.log 2>&1", d))
  local t1 = wall()
  os.execute(string.format("cd %s && jags run.cmd > run.log 2>&1", d))
  local t2 = wall()
  if not readfile(d .. "/outindex.txt") then return nil, "jags failed: " .. (readfile(d .. "/run.log") or "") end
  coda_to_csv(d .. "/out", d .. "/jags.csv")
  local setup = t1 - t0
  return { csv = d .. "/jags.csv", compile = setup, sampling = math.max(1e-3, (t2 - t1) - setup), draws = NJ }
end

local function run_stan(mod, d)
  writefile(d .. "/model.stan", mod.stan .. "\n")
  writefile(d .. "/data.R", rdump(mod.data, mod.rkeys))
  local init = ""
  if mod.inits then writefile(d .. "/stan_inits.R", inits_rdump(mod.inits)); init = d .. "/stan_inits.R" end
  local cmd = string.format("Rscript bench/peers/stan_run.R %s/model.stan %s/data.R %s/stan.csv %d %d %d 1 %s 2>%s/stan.err",
    d, d, d, N, N, CHAINS, init, d)
  local p = io.popen(cmd)
  local out = p:read("a"); p:close()
  local c, s, div = out:match("compile ([%d.]+) sampling ([%d.]+) divergent (%d+)")
  if not c then return nil, "stan failed: " .. (readfile(d .. "/stan.err") or ""):sub(1, 400) end
  return { csv = d .. "/stan.csv", compile = tonumber(c), sampling = tonumber(s), divergent = tonumber(div), draws = N }
end

local function run_plume(mod, method, d)
  local t0 = wall()
  local post = plume.infer(mod.plume, mod.data, { method = method, samples = N, warmup = N, chains = CHAINS, seed = 1,
                                                 threads = 1, quiet = true, init = mod.inits and inits_plume(mod.inits) })
  local total = wall() - t0
  local csv = string.format("%s/plume_%s.csv", d, method)
  post:write_csv(csv)
  local sampling = post.sampling_time or total
  return { csv = csv, compile = total - sampling, sampling = sampling, picked = post.method,
           divergent = post.divergences, draws = N, ctime = post.compile_time }
end

local rows, notes = {}, {}
local function add(model, tool, r, params)
  local post = plume.read_posterior(r.csv)
  local e, worst = min_ess(post, params)
  rows[#rows + 1] = { model = model, tool = tool, ess = e, worst = worst, sampling = r.sampling, compile = r.compile,
                      div = r.divergent }
  io.stderr:write(string.format("%s %s: min ESS %.0f, sampling %.2f s, compile %.3f s\n", model, tool, e, r.sampling,
    r.compile))   -- progress, so a long run shows its rows as they come
end

local has_jags, has_stan = have("jags"), have("Rscript") and os.execute("Rscript -e 'library(rstan)' >/dev/null 2>&1")
-- TOOLS=plume,jags,stan (the default: all three) runs a subset, e.g. Stan's slow compilations in a run of their own
local tools = "," .. (os.getenv("TOOLS") or "plume,jags,stan") .. ","
local function wants(t) return tools:find("," .. t .. ",", 1, true) ~= nil end
for _, mod in ipairs(models) do
  if not only or (("," .. only .. ","):find("," .. mod.name .. ",", 1, true)) then
    local d = dir .. "/" .. mod.name
    os.execute("mkdir -p " .. d)
    if wants("plume") then
      local r = run_plume(mod, "auto", d)
      add(mod.name, "plume auto (" .. r.picked .. ")", r, mod.params)
      notes[#notes + 1] = string.format("%s: plume compile %.4f s (trace + compile of the graph)", mod.name, r.ctime or -1)
      add(mod.name, "plume nuts", run_plume(mod, "nuts", d), mod.params)
    end
    if has_jags and wants("jags") then
      local j, err = run_jags(mod, d)
      if j then add(mod.name, "jags", j, mod.params) else notes[#notes + 1] = mod.name .. ": " .. err end
    end
    if has_stan and wants("stan") then
      local s, err = run_stan(mod, d)
      if s then add(mod.name, "stan", s, mod.params) else notes[#notes + 1] = mod.name .. ": " .. err end
    end
  end
end
if not has_jags then notes[#notes + 1] = "jags not installed: skipped" end
if not has_stan then notes[#notes + 1] = "Rscript with rstan not installed: Stan skipped" end

local out = {}
out[#out + 1] = string.format("%d chains x %d draws after %d warm-up (JAGS: %d after %d), one core; min bulk ESS over all parameters (plume's ESS for every tool)",
  CHAINS, N, N, JAGS_MULT * N, JAGS_MULT * N)
out[#out + 1] = string.format("| %-18s | %-18s | %9s | %-16s | %10s | %10s | %10s | %14s | %5s |", "model", "tool", "min ESS",
  "worst", "compile s", "sampling s", "ESS/s", "ESS/s w/ comp.", "div")
out[#out + 1] = "|" .. string.rep("-", 20) .. "|" .. string.rep("-", 20) .. "|" .. string.rep("-", 11) .. "|" ..
  string.rep("-", 18) .. "|" .. string.rep("-", 12) .. "|" .. string.rep("-", 12) .. "|" .. string.rep("-", 12) .. "|" ..
  string.rep("-", 16) .. "|" .. string.rep("-", 7) .. "|"
for _, r in ipairs(rows) do
  out[#out + 1] = string.format("| %-18s | %-18s | %9.0f | %-16s | %10.3f | %10.2f | %10.1f | %14.1f | %5s |", r.model,
    r.tool, r.ess, r.worst or "-", r.compile, r.sampling, r.ess / r.sampling, r.ess / (r.sampling + r.compile),
    r.div and tostring(r.div) or "-")
end
for _, n in ipairs(notes) do out[#out + 1] = n end
local text = table.concat(out, "\n")
print(text)
if outpath then writefile(outpath, text .. "\n") end
os.execute("rm -rf " .. dir)
