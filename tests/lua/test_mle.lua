-- test_mle.lua -- plume.mle: stochastic-approximation maximum likelihood for a plume.ssm, with the score from
-- on-line PaRIS (Fisher's identity), from PaRIS inside conditional SMC (PPG) or by Markov score climbing,
-- converges to the exact MLE of a linear-Gaussian model (golden-section search on the Kalman log-likelihood). The
-- tolerance is 4 standard errors of the Polyak average over 4 seeds (plus 0.005 for the particle bias of the
-- score); the exact MLE under another observation noise, the negative control, is outside it.
package.path = "tests/lua/?.lua;" .. package.path
local T = require "check"
local LG = require "lingauss"

local rho, r, lin, kalman = LG.rho, LG.r, LG.model, LG.kalman
local ys = LG.simulate(100, 30)   -- T = 100, y_30 missing

local function argmax(f, a, b)
  local g = (math.sqrt(5) - 1) / 2
  for _ = 1, 80 do
    local c, d = b - g * (b - a), a + g * (b - a)
    if f(c) > f(d) then b = d else a = c end
  end
  return (a + b) / 2
end
local mle = argmax(function(v) return kalman(v, r):loglik(ys) end, -0.99, 0.99)
local wrong = argmax(function(v) return kalman(v, 0.3):loglik(ys) end, -0.99, 0.99)

T.test("mle_by_paris_ppg_score_and_markov_score_climbing_converges_to_the_kalman_mle", function()
  for _, method in ipairs{ "score", "ppg", "msc" } do
    local sum, sum2, n = 0, 0, 4
    for seed = 1, n do
      local res = plume.mle(lin, ys, { params = { rho = 0.3 }, method = method, iters = 150, step = 1,
                                       particles = 50, seed = seed })
      T.eq(#res.trajectory.rho, 151, "start and every iterate")
      T.eq(res.trajectory.rho[1], 0.3, "the trajectory starts at the start")
      sum, sum2 = sum + res.average.rho, sum2 + res.average.rho ^ 2
    end
    local mean = sum / n
    local se = math.sqrt(math.max(sum2 / n - mean * mean, 0) / (n - 1))
    local tol = 4 * se + 0.005
    print(string.format("  %s: average %.4f, exact MLE %.4f, tolerance %.4f, wrong-model MLE %.4f", method, mean, mle, tol, wrong))
    T.ok(math.abs(mean - mle) < tol, string.format("%s: %.4f vs exact MLE %.4f (tolerance %.4f)", method, mean, mle, tol))
    T.ok(math.abs(mean - wrong) > tol, string.format("%s: the wrong model's MLE %.4f is rejected", method, wrong))
  end
  T.eq(lin.params.rho, rho, "the model keeps its own values")
end)

T.test("mle_ppg_same_iterates_on_one_and_two_threads", function()
  -- 2048 particles: enough for a sweep to spread over threads
  local o = { params = { rho = 0.3, r = 1 }, method = "ppg", iters = 3, step = 1, particles = 2048, seed = 5 }
  o.threads = 1
  local a = plume.mle(lin, ys, o)
  o.threads = 2
  local b = plume.mle(lin, ys, o)
  for k = 1, 4 do
    T.eq(a.trajectory.rho[k], b.trajectory.rho[k], "rho, iterate " .. k - 1)
    T.eq(a.trajectory.r[k], b.trajectory.r[k], "r, iterate " .. k - 1)
  end
  T.ok(a.trajectory.rho[4] ~= 0.3 and a.trajectory.r[4] ~= 1, "both parameters moved")
end)

T.test("mle_bad_input_names_the_option", function()
  T.raises(function() plume.mle(lin, ys, { params = { nope = 1 } }) end, "params.nope is not a parameter")
  T.raises(function() plume.mle(lin, ys, { params = { rho = 0.5 }, method = "em" }) end, "unknown method 'em'")
  T.raises(function() plume.mle(lin, ys, { params = { rho = 0.5 }, kappa = 2 }) end, "option 'kappa'")
  T.raises(function() plume.mle(lin, ys, {}) end, "option 'params'")
end)
