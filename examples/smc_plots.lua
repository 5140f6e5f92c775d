-- smc_plots.lua -- SMC over a random-walk program: the effective sample size after each step (resampling
-- brings it back to N), written to out/smc_ess.svg and shown as text.
if not os.execute("command -v gnuplot >/dev/null 2>&1") then
  print("SKIP example smc_plots: gnuplot not found (Debian package gnuplot-nox)")
  return
end
os.execute("mkdir -p out")
local walk = plume.model(function(m, ys)
  local x = 0
  for t, y in ipairs(ys) do
    x = m:sample("x" .. t, plume.dist.normal(x, 1))
    m:observe("y" .. t, plume.dist.normal(x, 0.5), y)
  end
  return x
end)
local ys = {}
for t = 1, 30 do ys[t] = math.sin(t / 4) * 3 end
local post = plume.smc(walk, { ys }, { particles = 300, seed = 1 })
print(string.format("log evidence %.3f, %d resamples", post.logz, post.resamples))
print(plume.plot.smc(post, { file = "out/smc_ess.svg" }))
print(plume.plot.smc(post, { height = 18 }))
