-- test_ppg_gibbs.lua -- plume.ppg with parameter updates: when params gives a parameter a prior, each PPG sweep
-- is followed by a draw of the parameters given the sweep's path (conjugate here, as plume.pgibbs does), and
-- the functional's outputs become columns of a posterior. On a linear-Gaussian model the posterior mean of rho
-- and the posterior expectations of the smoothed sums E[sum x_t | y] and E[sum x_t^2 | y] (rho integrated
-- out) match quadrature over a grid of Kalman likelihoods and RTS smoothers, within 4 Monte Carlo standard
-- errors (plume's ESS-based MCSE); the same expectations under a wrong observation noise, the negative control,
-- are rejected by the same tolerance.
package.path = "tests/lua/?.lua;" .. package.path
local T = require "check"
local LG = require "lingauss"
local D = plume.dist

local rho, r, lin, kalman = LG.rho, LG.r, LG.model, LG.kalman
local Tn = 50
local ys = LG.simulate(Tn, 20)   -- y_20 missing
local prior = D.normal(0.5, 0.5)

-- exact posterior expectations of rho, sum x_t and sum x_t^2 by quadrature on G midpoints of [lo, hi]
local function exact(rr)
  local G, lo, hi = 300, -0.5, 1.5
  local rows, mx = {}, -math.huge
  for i = 1, G do
    local v = lo + (i - 0.5) * (hi - lo) / G
    local kf = kalman(v, rr)
    local lp = kf:loglik(ys) + prior:logpdf(v)
    local sm, sc = kf:smooth(ys)
    local sx, sxx = 0, 0
    for t = 1, Tn do sx, sxx = sx + sm[t], sxx + sm[t] ^ 2 + sc[t] end
    rows[i] = { v = v, lp = lp, sx = sx, sxx = sxx }
    mx = math.max(mx, lp)
  end
  local z, e = 0, { rho = 0, sx = 0, sxx = 0 }
  for _, row in ipairs(rows) do
    local w = math.exp(row.lp - mx)
    z = z + w
    e.rho, e.sx, e.sxx = e.rho + w * row.v, e.sx + w * row.sx, e.sxx + w * row.sxx
  end
  for k, v in pairs(e) do e[k] = v / z end
  return e
end

local h = { sx = function(t, xp, x) return x end, sxx = function(t, xp, x) return x * x end }

T.test("ppg_with_parameter_updates_matches_quadrature", function()
  local ex, wrong = exact(r), exact(0.35)
  local post = plume.ppg(lin, ys, { particles = 16, iters = 700, burnin = 100, chains = 2, seed = 1, functional = h,
                                    params = { rho = prior } })
  local sm = post:summary()
  T.eq(post.method, "ppg", "a posterior of method ppg")
  T.eq(post.conjugate.rho, true, "rho drawn from its conjugate conditional")
  for _, k in ipairs{ "rho", "sx", "sxx" } do
    local z, zw = math.abs(sm[k].mean - ex[k]) / sm[k].mcse_mean, math.abs(sm[k].mean - wrong[k]) / sm[k].mcse_mean
    print(string.format("  %s: ppg %.4f (mcse %.4f), exact %.4f (z %.1f); wrong model %.4f (z %.1f)", k, sm[k].mean,
                        sm[k].mcse_mean, ex[k], z, wrong[k], zw))
    T.ok(z < 4, string.format("%s: %.4f vs exact %.4f (z %.1f)", k, sm[k].mean, ex[k], z))
    T.ok(zw > 4, string.format("%s: the wrong model's %.4f is rejected (z %.1f)", k, wrong[k], zw))
  end
end)

T.test("ppg_with_random_walk_moves_and_the_same_draws_on_one_and_two_threads", function()
  -- conjugate = false: rho moves by the adaptive random walk given each path
  local ex = exact(r)
  local post = plume.ppg(lin, ys, { particles = 16, iters = 700, burnin = 200, chains = 2, seed = 2,
                                    functional = h.sx, params = { rho = prior }, conjugate = false, param_moves = 3 })
  local sm = post:summary()
  T.eq(post.conjugate.rho, false, "rho moved by the random walk")
  for _, k in ipairs{ "rho", "h" } do
    local want = k == "h" and ex.sx or ex.rho
    local z = math.abs(sm[k].mean - want) / sm[k].mcse_mean
    print(string.format("  random walk, %s: ppg %.4f (mcse %.4f), exact %.4f (z %.1f)", k, sm[k].mean, sm[k].mcse_mean,
                        want, z))
    T.ok(z < 4, string.format("random walk, %s: %.4f vs exact %.4f (z %.1f)", k, sm[k].mean, want, z))
  end
  T.ok(post.accept_rate[1] > 0.1 and post.accept_rate[1] < 0.9, "random-walk acceptance " .. post.accept_rate[1])
  local o = { particles = 8, iters = 30, burnin = 10, chains = 2, seed = 3, functional = h, params = { rho = prior } }
  o.threads = 1
  local a = plume.ppg(lin, ys, o)
  o.threads = 2
  local b = plume.ppg(lin, ys, o)
  local ar, br, ax, bx = a:draws("rho"), b:draws("rho"), a:draws("sxx"), b:draws("sxx")
  local same = #ar == 40 and #ax == 40
  for i = 1, #ar do same = same and ar[i] == br[i] and ax[i] == bx[i] end
  T.ok(same, "40 draws of rho and sxx identical on 1 and 2 threads")
  T.eq(lin.params.rho, rho, "the model keeps its own values")
end)

T.test("ppg_with_parameter_updates_bad_input", function()
  T.raises(function() plume.ppg(lin, ys, { functional = h.sx, chains = 2 }) end,
           "option 'chains' needs parameters to sample")
  T.raises(function() plume.ppg(lin, ys, { functional = h.sx, params = { rho = prior }, chains = 0 }) end,
           "option 'chains' must be in 1..1024")
  T.raises(function() plume.ppg(lin, ys, { functional = { rho = h.sx }, params = { rho = prior } }) end,
           "column name 'rho' is used twice")
end)
