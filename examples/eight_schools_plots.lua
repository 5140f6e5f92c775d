-- eight_schools_plots.lua -- the "8 schools" coaching effects (Rubin 1981; data in data/eight_schools.json),
-- a non-centred hierarchical model sampled by MH, and every posterior plot written to out/: trace, rank
-- histograms, densities, a pair plot of the funnel (mu, log tau) and a forest of the school effects.
if not os.execute("command -v gnuplot >/dev/null 2>&1") then
  print("SKIP example eight_schools_plots: gnuplot not found (Debian package gnuplot-nox)")
  return
end
local d = plume.read_json("data/eight_schools.json")

local schools = plume.model(function(m, d)
  local mu = m:sample("mu", plume.dist.normal(0, 5))
  local tau = m:sample("tau", plume.dist.lognormal(1, 1))
  m:deterministic("log_tau", math.log(tau))
  for j = 1, d.J do
    local z = m:sample("z" .. j, plume.dist.normal(0, 1))
    local theta = mu + tau * z
    m:deterministic("theta" .. j, theta)
    m:observe("y" .. j, plume.dist.normal(theta, d.sigma[j]), d.y[j])
  end
end)

local post = plume.infer(schools, d, { samples = 500, chains = 4, seed = 1 })
os.execute("mkdir -p out")
local thetas = {}
for j = 1, d.J do thetas[j] = "theta" .. j end
print(plume.plot.trace(post, { "mu", "tau" }, { file = "out/schools_trace.svg" }))
print(plume.plot.rank(post, { "mu", "tau" }, { file = "out/schools_rank.svg" }))
print(plume.plot.density(post, "mu", { file = "out/schools_density.svg" }))
print(plume.plot.pair(post, "mu", "log_tau", { file = "out/schools_pair.png" }))
print(plume.plot.forest(post, thetas, { file = "out/schools_forest.svg", title = "school effects" }))
print(plume.plot.forest(post, thetas, { height = 24 }))   -- the same as text
