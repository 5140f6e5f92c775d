-- test_pfilter.lua -- native particle filters and smoothers on plume.ssm against exact answers: the Kalman
-- filter and RTS smoother (plume.lgssm) for a linear-Gaussian model, forward-backward (plume.hmm) for a
-- two-state model. Stochastic checks use fixed seeds and tolerances from the Monte Carlo error of R
-- independent replicates (a pooled standard error over time, z < 4); each has a negative control.
package.path = "tests/lua/?.lua;" .. package.path
local T = require "check"

local rho, s, r = 0.9, 0.5, 0.8
local lin = plume.ssm{
  params = { rho = rho, s = s, r = r },
  init  = function(p) return plume.dist.normal(0, 1) end,
  trans = function(p, x, t) return plume.dist.normal(p.rho * x, p.s) end,
  obs   = function(p, x, t) return plume.dist.normal(x, p.r) end,
  proposal = function(p, x, y, t) return plume.dist.normal(0.5 * (p.rho * x + y), 0.6) end,
}
-- lgssm's m0, P0 describe x_0, and the ssm's init is x_1 ~ N(0, 1): P0 = (1 - s^2) / rho^2 makes x_1's law the same
local kf = plume.lgssm{ A = rho, Q = s * s, C = 1, R = r * r, m0 = 0, P0 = (1 - s * s) / (rho * rho) }
local wrong = plume.lgssm{ A = 0.5, Q = s * s, C = 1, R = r * r, m0 = 0, P0 = 1 }
local Tn = 30
local _, ys = lin:simulate(Tn, { seed = 3 })
ys[7] = 0 / 0   -- a missing observation
local kmeans, kvars, kll = kf:filter(ys)
local smeans = kf:smooth(ys)
local wmeans = wrong:filter(ys)

-- R replicates of a series-valued estimate: their average and the pooled standard error of one average
local function replicate(R, run)
  local sum, sum2, n = {}, {}, 0
  for k = 1, R do
    local v = run(k)
    for t = 1, #v do
      sum[t] = (sum[t] or 0) + v[t]
      sum2[t] = (sum2[t] or 0) + v[t] * v[t]
    end
  end
  local avg, pooled = {}, 0
  for t = 1, #sum do
    avg[t] = sum[t] / R
    pooled = pooled + (sum2[t] - R * avg[t] ^ 2) / (R - 1)
  end
  return avg, math.sqrt(pooled / #sum / R)
end

-- largest |avg[t] - exact[t]| / se
local function maxz(avg, se, exact)
  local z = 0
  for t = 1, #avg do z = math.max(z, math.abs(avg[t] - exact[t]) / se) end
  return z
end

T.test("logz_is_unbiased_on_the_natural_scale_against_kalman", function()
  -- 40 seeds: mean of exp(logz - kalman) within 3 standard errors of 1; a missing y_7 is skipped
  for _, method in ipairs{ "bootstrap", "guided", "auxiliary" } do
    local w, w2, n = 0, 0, 40
    for seed = 1, n do
      local res = plume.smc(lin, ys, { particles = 100, seed = seed, method = method })
      T.eq(res.logz_increments[7], 0, "missing observation skipped")
      local v = math.exp(res.logz - kll)
      w, w2 = w + v, w2 + v * v
    end
    local mean = w / n
    local se = math.sqrt((w2 / n - mean * mean) / (n - 1))
    T.ok(math.abs(mean - 1) < 3 * se, string.format("%s: mean %.4f, se %.4f", method, mean, se))
  end
end)

T.test("ssm_loglik_is_the_filter_log_evidence", function()
  local a = lin:loglik(ys, { particles = 500, seed = 4 })
  local b = plume.smc(lin, ys, { particles = 500, seed = 4 }).logz
  T.eq(a, b, "same seed, same estimate")
  T.near(a, kll, 0.5, "near the Kalman value")
end)

T.test("filtering_means_within_mc_error_of_kalman_and_a_wrong_model_is_detected", function()
  for _, method in ipairs{ "bootstrap", "guided", "auxiliary" } do
    local avg, se = replicate(10, function(k)
      return plume.smc(lin, ys, { particles = 500, seed = 100 + k, method = method }).means
    end)
    local z = maxz(avg, se, kmeans)
    T.ok(z < 4, method .. ": max z " .. z)
    -- negative control: the Kalman means of rho = 0.5 are far outside the same tolerance
    T.ok(maxz(avg, se, wmeans) > 4, method .. ": wrong model not detected")
  end
end)

T.test("filtering_variances_and_moments_match_kalman", function()
  local res = plume.smc(lin, ys, { particles = 20000, seed = 5, moments = { sq = function(x) return x * x end } })
  for t = 1, Tn do
    -- relative error of a variance from ESS >= 2000 draws is about sqrt(2 / ESS) < 0.04; allow 0.2
    T.near(res.vars[t], kvars[t], 0.2 * kvars[t], "var t=" .. t)
    T.near(res.moments.sq[t], res.means[t] ^ 2 + res.vars[t], 1e-9, "E[x^2] t=" .. t)
  end
end)

T.test("one_and_two_threads_give_bit_identical_filters_and_smoothers", function()
  for _, method in ipairs{ "bootstrap", "guided", "auxiliary" } do
    local a = plume.smc(lin, ys, { particles = 3000, seed = 9, threads = 1, method = method, resample = "ssp" })
    local b = plume.smc(lin, ys, { particles = 3000, seed = 9, threads = 2, method = method, resample = "ssp" })
    T.eq(a.logz, b.logz, method .. " logz")
    for t = 1, Tn do
      T.eq(a.means[t], b.means[t], "means")
      T.eq(a.ess[t], b.ess[t], "ess")
    end
  end
  local a = plume.smooth(lin, ys, { particles = 600, seed = 9, threads = 1 })
  local b = plume.smooth(lin, ys, { particles = 600, seed = 9, threads = 2 })
  for t = 1, Tn do T.eq(a.means[t], b.means[t], "ffbs means") end
  local c = plume.smc(lin, ys, { particles = 3000, seed = 10 })
  T.ok(c.logz ~= a.logz, "another seed gives another estimate")
end)

T.test("ffbs_smoothed_means_within_mc_error_of_rts", function()
  for _, rej in ipairs{ true, false } do
    local avg, se = replicate(10, function(k)
      local sm = plume.smooth(lin, ys, { particles = 300, seed = 200 + k, rejection = rej })
      T.eq(sm.rejection, rej, "rejection as asked")
      return sm.means
    end)
    T.ok(maxz(avg, se, smeans) < 4, "rejection " .. tostring(rej) .. ": max z " .. maxz(avg, se, smeans))
    -- negative control: the filtering means are not the smoothed ones
    T.ok(maxz(avg, se, kmeans) > 4, "the test cannot tell filtering from smoothing")
  end
end)

T.test("ffbs_rejection_accepts_and_falls_back", function()
  local sm = plume.smooth(lin, ys, { particles = 300, seed = 1, max_tries = 3 })
  T.ok(sm.backward.accepted > 0 and sm.backward.proposals >= sm.backward.accepted, "proposals accepted")
  T.eq(sm.backward.accepted + sm.backward.exact, 100 * (Tn - 1), "every backward draw made once")
  T.eq(#sm.trajectories, Tn * 100, "T x trajectories array")
end)

T.test("paris_smoothed_additive_functionals_within_mc_error_of_rts", function()
  -- S1 = sum x_t and S2 = sum x_t^2: exact smoothed values from the RTS means and variances
  local sm, sv = kf:smooth(ys)
  local s1, s2, f2 = 0, 0, 0
  for t = 1, Tn do
    s1, s2 = s1 + sm[t], s2 + sm[t] ^ 2 + sv[t]
    f2 = f2 + kmeans[t] ^ 2 + kvars[t]
  end
  local function run(k, Nt)
    return plume.smooth(lin, ys, { method = "paris", particles = 300, seed = 300 + k, backward_draws = Nt,
                                   functional = function(t, xprev, x) return { x, x * x } end }).value
  end
  for _, Nt in ipairs{ 1, 2 } do
    local a1, se1 = replicate(10, function(k) return { run(k, Nt)[1] } end)
    local a2, se2 = replicate(10, function(k) return { run(k, Nt)[2] } end)
    T.ok(math.abs(a1[1] - s1) < 4 * se1, string.format("S1 %.4f, rts %.4f, se %.4f", a1[1], s1, se1))
    T.ok(math.abs(a2[1] - s2) < 4 * se2, string.format("S2 %.4f, rts %.4f, se %.4f", a2[1], s2, se2))
    -- negative control: the filtering second moments (larger variances) are outside the tolerance
    T.ok(math.abs(a2[1] - f2) > 4 * se2, string.format("S2 %.4f, filtering %.4f, se %.4f", a2[1], f2, se2))
  end
  local one = plume.smooth(lin, ys, { method = "paris", particles = 50, seed = 1,
                                      functional = function(t, xprev, x) return x end })
  T.eq(type(one.value), "number", "a scalar functional gives a number")
end)

T.test("paris_online_equals_paris_over_the_history_and_uses_the_run_parameters", function()
  local h = function(t, xprev, x) return { x, xprev * x } end
  for _, filter in ipairs{ "bootstrap", "auxiliary" } do
    local on = plume.smooth(lin, ys, { method = "paris", particles = 200, seed = 8, functional = h, filter = filter })
    local off = plume.smooth(lin, ys, { method = "paris", particles = 200, seed = 8, functional = h, filter = filter,
                                        online = false })
    T.eq(on.online, true, "on-line by default")
    T.eq(off.online, false, "over the history")
    T.eq(on.value[1], off.value[1], filter .. ": S1 bit-identical")
    T.eq(on.value[2], off.value[2], filter .. ": S2 bit-identical")
    T.eq(on.logz, off.logz, filter .. ": same filter")
  end
  -- params = {...} holds for the backward kernel too (the smoother scores transitions at the run's values):
  -- the same as smoothing a model built with those values
  local lin2 = plume.ssm{
    params = { rho = 0.5, s = s, r = r },
    init  = function(p) return plume.dist.normal(0, 1) end,
    trans = function(p, x, t) return plume.dist.normal(p.rho * x, p.s) end,
    obs   = function(p, x, t) return plume.dist.normal(x, p.r) end,
    proposal = function(p, x, y, t) return plume.dist.normal(0.5 * (p.rho * x + y), 0.6) end,
  }
  for _, online in ipairs{ true, false } do
    local a = plume.smooth(lin, ys, { method = "paris", particles = 100, seed = 9, functional = h, online = online,
                                      params = { rho = 0.5 } })
    local b = plume.smooth(lin2, ys, { method = "paris", particles = 100, seed = 9, functional = h, online = online })
    T.eq(a.value[2], b.value[2], "params option used by the smoother (online = " .. tostring(online) .. ")")
  end
  local fa = plume.smooth(lin, ys, { particles = 100, seed = 9, params = { rho = 0.5 } })
  local fb = plume.smooth(lin2, ys, { particles = 100, seed = 9 })
  T.eq(fa.means[5], fb.means[5], "params option used by FFBS")
  T.eq(lin.params.rho, rho, "the model keeps its own value")
end)

-- a two-state chain observed in noise: the same model as plume.hmm
local A = { { 0.9, 0.1 }, { 0.2, 0.8 } }
local chain = plume.ssm{
  init  = function(p) return plume.dist.categorical({ 0.5, 0.5 }) end,
  trans = function(p, x, t) return plume.dist.categorical(plume.pick(x, A)) end,
  obs   = function(p, x, t) return plume.dist.normal(plume.pick(x, { -1, 1 }), 1) end,
}
local hmm = plume.hmm{ init = { 0.5, 0.5 }, trans = A, emit = { plume.dist.normal(-1, 1), plume.dist.normal(1, 1) } }

T.test("discrete_state_filter_and_ffbs_match_forward_backward", function()
  local _, hy = chain:simulate(25, { seed = 4 })
  local filt, post = hmm:filter(hy), hmm:posterior(hy)
  local fmean, smean = {}, {}
  for t = 1, #hy do
    fmean[t] = filt[t][1] + 2 * filt[t][2]
    smean[t] = post[t][1] + 2 * post[t][2]
  end
  local avg, se = replicate(10, function(k) return plume.smc(chain, hy, { particles = 400, seed = k }).means end)
  T.ok(maxz(avg, se, fmean) < 4, "filter: max z " .. maxz(avg, se, fmean))
  local savg, sse = replicate(10, function(k)
    local sm = plume.smooth(chain, hy, { particles = 200, seed = k })
    T.eq(sm.rejection, false, "no bound for a discrete transition")
    return sm.means
  end)
  T.ok(maxz(savg, sse, smean) < 4, "ffbs: max z " .. maxz(savg, sse, smean))
  T.ok(maxz(savg, sse, fmean) > 4, "negative control: filtering is not smoothing")
  local w, n = 0, 40
  for seed = 1, n do w = w + math.exp(chain:loglik(hy, { particles = 50, seed = seed }) - hmm:loglik(hy)) end
  T.near(w / n, 1, 0.1, "evidence unbiased (40 x 50 particles: se about 0.02)")
end)

T.test("history_keeps_particles_weights_and_ancestors", function()
  local res = plume.smc(lin, ys, { particles = 50, seed = 1, history = true, ess_threshold = 1 })
  local rows, cols = res.particles_history:shape()
  T.eq(rows, Tn, "rows")
  T.eq(cols, 50, "cols")
  for t = 2, Tn do T.eq(res.resampled[t], true, "ess_threshold = 1 resamples every step") end
  local m = 0
  for i = 1, 50 do
    m = m + math.exp(res.logw[(Tn - 1) * 50 + i]) * res.particles_history[(Tn - 1) * 50 + i]
    local a = res.ancestors[(Tn - 1) * 50 + i]
    T.ok(a >= 1 and a <= 50 and a == math.floor(a), "ancestor index")
  end
  T.near(m, res.means[Tn], 1e-12, "weights and particles give the mean")
end)

T.test("errors_name_the_step_the_option_and_the_bound", function()
  local box = plume.ssm{
    init  = function(p) return plume.dist.normal(0, 1) end,
    trans = function(p, x, t) return plume.dist.normal(x, 0.1) end,
    obs   = function(p, x, t) return plume.dist.uniform(x - 1, x + 1) end,
  }
  local e = T.raises(function() plume.smc(box, { 0, 0.1, 50, 0 }, { particles = 100 }) end,
                     "every particle has weight zero at t = 3 (y = 50)")
  T.ok(e:find("test_pfilter.lua", 1, true), "blames the caller's line: " .. e)
  T.raises(function() plume.smc(box, { 0 }, { method = "guided" }) end, "needs a model with a proposal")
  T.raises(function() plume.smc(lin, ys, { particle = 10 }) end, "unknown option 'particle'")
  T.raises(function() plume.smc(lin, ys, { resample = "best" }) end, "unknown resampling scheme 'best'")
  T.raises(function() plume.smc(lin, ys, { ess_threshold = 2 }) end, "ess_threshold' must be in [0, 1]")
  T.raises(function() plume.smooth(lin, ys, { bound = -10 }) end, "above the bound")
  T.raises(function() plume.smooth(chain, ys, { rejection = true }) end, "needs a bound")
  T.raises(function() plume.smooth(lin, ys, { method = "paris" }) end, "needs functional")
  T.raises(function() plume.smc(lin, { 1, "a" }) end, "ys[2] must be a number")
  -- plume.smc on a program still runs the program engine
  local m = plume.model(function(m) m:observe("y", plume.dist.normal(0, 1), 0.5) end)
  T.ok(plume.smc(m, {}, { particles = 10, quiet = true }).logz ~= nil, "program SMC untouched")
end)
