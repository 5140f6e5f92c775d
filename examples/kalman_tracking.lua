-- kalman_tracking.lua -- track a target moving in the plane from noisy position fixes, some of them missing.
-- State (x, y, vx, vy) follows a constant-velocity model driven by white-noise acceleration; we observe
-- (x, y) with noise of standard deviation 2. Every 5th fix is lost and every 7th has only its x coordinate.
-- The Kalman filter estimates the position from the fixes so far, the RTS smoother from all of them.
local dt, q, r = 1.0, 0.05, 4.0     -- time step, acceleration noise intensity, measurement variance
local model = plume.lgssm{
  A  = { { 1, 0, dt, 0 }, { 0, 1, 0, dt }, { 0, 0, 1, 0 }, { 0, 0, 0, 1 } },
  Q  = { { q * dt^3 / 3, 0, q * dt^2 / 2, 0 }, { 0, q * dt^3 / 3, 0, q * dt^2 / 2 },
         { q * dt^2 / 2, 0, q * dt, 0 },       { 0, q * dt^2 / 2, 0, q * dt } },
  C  = { { 1, 0, 0, 0 }, { 0, 1, 0, 0 } },
  R  = { { r, 0 }, { 0, r } },
  m0 = { 0, 0, 1, 0.5 },
  P0 = { { 10, 0, 0, 0 }, { 0, 10, 0, 0 }, { 0, 0, 1, 0 }, { 0, 0, 0, 1 } },
}
print(model)

local T = 300
local truth, fixes = model:sample(T, 2024)
local nan = 0 / 0
for t = 1, T do
  if t % 5 == 0 then fixes[t] = { nan, nan }        -- lost fix
  elseif t % 7 == 0 then fixes[t][2] = nan end      -- only x came through
end

local filtered = model:filter(fixes)
local smoothed, _, loglik = model:smooth(fixes)

-- RMSE of the position estimate; raw fixes are scored on the coordinates they actually have
local function rmse(estimate)
  local sum, n = 0, 0
  for t = 1, T do
    for i = 1, 2 do
      local e = estimate(t, i)
      if e == e then sum, n = sum + (e - truth[t][i])^2, n + 1 end
    end
  end
  return math.sqrt(sum / n), n
end
local raw, nraw = rmse(function(t, i) return fixes[t][i] end)
local filt = rmse(function(t, i) return filtered[t][i] end)
local smooth = rmse(function(t, i) return smoothed[t][i] end)

print(string.format("%d steps, %d of %d coordinates observed, log-likelihood %.2f", T, nraw, 2 * T, loglik))
print(string.format("position RMSE  raw fixes %.3f   filter %.3f   smoother %.3f", raw, filt, smooth))
assert(smooth < filt and filt < raw, "the smoother should beat the filter, which should beat the raw fixes")
