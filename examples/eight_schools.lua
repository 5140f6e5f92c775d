-- eight_schools.lua -- the "8 schools" coaching effects (Rubin 1981; data in data/eight_schools.json), the
-- non-centred hierarchical model, sampled by NUTS on the compiled static graph. Short settings; checked loosely
-- against the posterior means Stan reports for this model (mu about 4.4, tau about 3.6).
local dir = (arg and arg[0] or ""):match("^(.*)/") or "."
local d = plume.read_json(dir .. "/data/eight_schools.json")
local D = plume.dist

local schools = plume.model(function(m, d)
  local mu = m:sample("mu", D.normal(0, 5))
  local tau = m:sample("tau", D.halfcauchy(5))
  for j = 1, d.J do
    local z = m:sample("z" .. j, D.normal(0, 1))
    local theta = mu + tau * z
    m:deterministic("theta" .. j, theta)
    m:observe("y" .. j, D.normal(theta, d.sigma[j]), d.y[j])
  end
end)

print(plume.graph(schools, d))
local post = plume.infer(schools, d, { method = "nuts", samples = 1000, chains = 4, seed = 1, delta = 0.9 })
local s = post:summary()
for _, site in ipairs { "mu", "tau", "theta1", "theta8" } do
  local r = s[site]
  print(string.format("%-7s mean %7.3f  sd %6.3f  ess %6.0f  rhat %.3f", site, r.mean, r.sd, r.ess_bulk, r.rhat))
end
print(string.format("%d divergences, compiled in %.4f s, sampled in %.2f s", post.divergences, post.compile_time,
  post.sampling_time))
assert(s.mu.rhat < 1.02 and s.tau.rhat < 1.02, "chains agree")
assert(math.abs(s.mu.mean - 4.4) < 4 * s.mu.mcse_mean + 0.2, "mu near Stan's 4.4")
assert(math.abs(s.tau.mean - 3.6) < 4 * s.tau.mcse_mean + 0.3, "tau near Stan's 3.6")
