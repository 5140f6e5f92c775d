-- rats_common.lua -- what the rats benchmarks (bench/rats_gibbs.lua, bench/rats_nuts.lua) share: the BUGS "rats"
-- model and data (examples/data/rats.json), the timing and reporting helpers, and the JAGS run (Debian package
-- jags) on the same model and data: 4 chains of NJ warm-up and NJ kept iterations, the minimum over `sites` of
-- the bulk ESS (plume's, summed over JAGS's chains read back from its CODA files). When jags is not installed,
-- a row says so.
-- usage: local R = dofile("bench/rats_common.lua")
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

local function jags(NJ)
  if os.execute("command -v jags >/dev/null 2>&1") then
    local dir = os.tmpname(); os.remove(dir); os.execute("mkdir -p " .. dir)
    local f = io.open(dir .. "/rats.bug", "w")
    f:write([[model {
    for (i in 1:N) {
      for (j in 1:T) { mu[i, j] <- alpha[i] + beta[i] * (x[j] - xbar); Y[i, j] ~ dnorm(mu[i, j], tau.c) }
      alpha[i] ~ dnorm(alpha.c, alpha.tau)
      beta[i] ~ dnorm(beta.c, beta.tau)
    }
    tau.c ~ dgamma(0.001, 0.001); sigma <- 1 / sqrt(tau.c)
    alpha.c ~ dnorm(0.0, 1.0E-6); alpha.tau ~ dgamma(0.001, 0.001)
    beta.c ~ dnorm(0.0, 1.0E-6); beta.tau ~ dgamma(0.001, 0.001)
    alpha0 <- alpha.c - xbar * beta.c
  }
  ]]); f:close()
    f = io.open(dir .. "/data.R", "w")
    local y = {}
    for j = 1, data.T do for i = 1, data.N do y[#y + 1] = data.Y[i][j] end end   -- R arrays are column-major
    f:write(string.format("N <- %d\nT <- %d\nxbar <- %g\nx <- c(%s)\nY <- structure(c(%s), .Dim = c(%d, %d))\n", data.N,
      data.T, data.xbar, table.concat(data.x, ","), table.concat(y, ","), data.N, data.T)); f:close()
    f = io.open(dir .. "/run.cmd", "w")
    f:write(string.format([[model in "%s/rats.bug"
  data in "%s/data.R"
  compile, nchains(4)
  inits in "%s/inits.R"
  initialize
  update %d
  monitor alpha0
  monitor beta.c
  monitor sigma
  update %d
  coda *, stem("%s/out")
  exit
  ]], dir, dir, dir, NJ, NJ, dir)); f:close()
    f = io.open(dir .. "/inits.R", "w")
    f:write("alpha.c <- 150\nbeta.c <- 10\ntau.c <- 1\nalpha.tau <- 1\nbeta.tau <- 1\n"); f:close()
    local t0 = wall()
    os.execute("cd " .. dir .. " && jags run.cmd > jags.log 2>&1")
    local total = wall() - t0
    -- CODA: an index file (name first last) and one file per chain (iteration value)
    local idx = {}
    for line in io.lines(dir .. "/outindex.txt") do
      local name, a, b = line:match("^(%S+)%s+(%d+)%s+(%d+)")
      idx[name] = { tonumber(a), tonumber(b) }
    end
    local ess, mjags = math.huge, {}
    for _, name in ipairs(sites) do
      local e, sum, cnt = 0, 0, 0
      for c = 1, 4 do
        local vals = {}
        for line in io.lines(string.format("%s/outchain%d.txt", dir, c)) do
          vals[#vals + 1] = tonumber(line:match("%S+%s+(%S+)"))
        end
        local a, b = idx[name][1], idx[name][2]
        local col = table.move(vals, a, b, 1, {})
        for _, v in ipairs(col) do sum, cnt = sum + v, cnt + 1 end
        -- plume's bulk ESS of this chain: replay it as a one-chain run of a program that records it
        local k = 0
        local replay = plume.model(function(m) k = k + 1; m:deterministic("v", col[k]) end)
        local p = plume.infer(replay, nil, { method = "prior", samples = #col, seed = 1, quiet = true })
        e = e + p:summary().v.ess_bulk
      end
      ess = math.min(ess, e)
      mjags[#mjags + 1] = string.format(name == "alpha0" and "%.2f" or "%.3f", sum / cnt)
    end
    report("jags", ess, total, total, table.concat(mjags, " "))
    os.execute("rm -rf " .. dir)
  else
    rows[#rows + 1] = "jags   not installed (apt-get install jags); reference: about 34,000 ESS/s (doc/manual.md)"
  end
end

return { data = data, rats = rats, sites = sites, wall = wall, min_ess = min_ess, rows = rows, report = report,
         means = means, jags = jags }
