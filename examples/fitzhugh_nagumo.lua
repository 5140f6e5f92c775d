-- fitzhugh_nagumo.lua -- the stochastic FitzHugh-Nagumo neuron model as an SDE written in plain Lua, traced
-- once and compiled: Euler-Maruyama for one path (with an ASCII picture of the voltage) and for many paths at
-- once, plus the drift Jacobian that linearisation-based inference uses.
local fhn = plume.sde{ dim = 2, params = { s = 0, eps = 0.1, gamma = 1.5, beta = 0.8, sigma = 0.3 },
  drift     = function(p, x, t) return { (x[1] - x[1]^3 - x[2] + p.s) / p.eps, p.gamma * x[1] - x[2] + p.beta } end,
  diffusion = function(p, x, t) return { {0, 0}, {0, p.sigma} } end }
print(fhn)

-- one path: voltage x1 over time, and the spikes (x1 rising above 0.5 after it was below -0.5)
local times, path = fhn:simulate{ x0 = {-0.5, -0.6}, t_end = 20, dt = 1e-3, seed = 1 }
local spikes, armed = 0, true
for k = 1, #path do
  local v = path[k][1]
  if armed and v > 0.5 then spikes, armed = spikes + 1, false end
  if v < -0.5 then armed = true end
end
print(("one path, %d steps of dt = 0.001 to t = %g: %d spikes"):format(#times - 1, times[#times], spikes))
local width, rows = 72, 9
for r = rows, 1, -1 do
  local level, line = -1.2 + 2.4 * (r - 0.5) / rows, {}
  for c = 1, width do
    local v = path[math.floor((c - 1) / width * (#path - 1)) + 1][1]
    line[c] = math.abs(v - level) < 1.2 / rows and "*" or " "
  end
  print(("%5.1f |%s"):format(level, table.concat(line)))
end
print("       " .. ("-"):rep(width) .. "\n       t = 0" .. (" "):rep(width - 12) .. "t = 20")

-- 500 paths at once, final states only
local n = 500
local _, X = fhn:simulate{ x0 = {-0.5, -0.6}, t_end = 5, dt = 1e-3, seed = 2, paths = n, every = 5000 }
for c = 1, 2 do
  local s, s2 = 0, 0
  for i = 1, n do
    local v = X[c][n + i]
    s, s2 = s + v, s2 + v * v
  end
  print(("x%d at t = 5 over %d paths: mean %.4f, sd %.4f"):format(c, n, s / n, math.sqrt(s2 / n - (s / n)^2)))
end

-- the drift Jacobian at the initial state (compiled from the symbolic derivative)
local J = fhn:jacobian({-0.5, -0.6})
print(("drift Jacobian at x0: [[%.3f, %.3f], [%.3f, %.3f]]"):format(J[1][1], J[1][2], J[2][1], J[2][2]))
