-- test_conformal.lua -- plume.conformal.hmm: coverage over many simulated sequences within binomial bounds of
-- 1 - alpha (finite-sample validity), naive split conformal missing its level on the same data, the hidden
-- state target with continuous emissions, user scores, and errors. (Exact validity by enumeration of every
-- path is in tests/test_conformal.c.)
local T = dofile("tests/lua/check.lua")

-- A chain that starts in state 1, stays w.p. 0.95, then leaves for good to states 2..5, among which it
-- moves uniformly: a sticky, far-from-stationary start, the case where exchangeability of steps fails.
local trans = {
  {0.95, 0.0125, 0.0125, 0.0125, 0.0125},
  {0, 0.25, 0.25, 0.25, 0.25},
  {0, 0.25, 0.25, 0.25, 0.25},
  {0, 0.25, 0.25, 0.25, 0.25},
  {0, 0.25, 0.25, 0.25, 0.25},
}
local eye = {}
for i = 1, 5 do eye[i] = {} for j = 1, 5 do eye[i][j] = i == j and 1 or 0 end end
local chain = plume.hmm{ init = {1, 0, 0, 0, 0}, trans = trans, emit = eye }

local function miss_rate(h, S, N, opts, states_known)
  local miss = 0
  for s = 1, S do
    local x, y = h:sample(N + 1, 1000 + s)
    local obs, st = {}, {}
    for t = 1, N do obs[t], st[t] = y[t], x[t] end
    local o = { alpha = opts.alpha, smooth = opts.smooth, method = opts.method, seed = s }
    if states_known then o.states = st end
    local r = plume.conformal.hmm(h, obs, o)
    if not r:contains(y[N + 1]) then miss = miss + 1 end
  end
  return miss / S
end

-- Binomial bound: S Bernoulli(alpha) trials; 4 standard errors (two-sided p ~ 6e-5 with fixed seeds).
local function bound(alpha, S) return 4 * math.sqrt(alpha * (1 - alpha) / S) end

T.test("blocks_coverage_within_binomial_bounds_where_split_misses", function()
  local S, N, alpha = 3000, 30, 0.1
  local blocks = miss_rate(chain, S, N, { alpha = alpha, smooth = true })
  local split = miss_rate(chain, S, N, { alpha = alpha, smooth = true, method = "split" })
  T.near(blocks, alpha, bound(alpha, S), "block conformal miscoverage")
  T.ok(split > alpha + bound(alpha, S), "split conformal should miss its level: miscoverage " .. split)
  -- the conservative p-value never misses more than alpha
  local cons = miss_rate(chain, S, N, { alpha = alpha })
  T.ok(cons <= alpha + bound(alpha, S), "conservative miscoverage " .. cons)
end)

T.test("hidden_state_target_with_normal_emissions_covers", function()
  local h = plume.hmm{
    init = {1, 0, 0},
    trans = {{0.9, 0.08, 0.02}, {0.05, 0.9, 0.05}, {0.1, 0.1, 0.8}},
    emit = { plume.dist.normal(0, 1), plume.dist.normal(1.5, 1), plume.dist.normal(3, 0.7) },
  }
  local S, N, alpha, miss, size = 2000, 40, 0.2, 0, 0
  for s = 1, S do
    local x, y = h:sample(N, 500 + s)
    local st = {}
    for t = 1, N - 1 do st[t] = x[t] end
    local r = plume.conformal.hmm(h, y, { target = "state", states = st, alpha = alpha, smooth = true, seed = s })
    if not r:contains(x[N]) then miss = miss + 1 end
    size = size + #r.set
  end
  T.near(miss / S, alpha, bound(alpha, S), "state-target miscoverage")
  T.ok(size / S < 2.6, "sets should be informative (mean size " .. size / S .. " of 3)")
end)

T.test("next_symbol_with_observed_states_is_valid", function()
  local h = plume.hmm{
    trans = {{0.85, 0.15}, {0.3, 0.7}},
    emit = {{0.7, 0.2, 0.1}, {0.1, 0.3, 0.6}},
  }
  local S, N, alpha = 2000, 25, 0.2
  local m = miss_rate(h, S, N, { alpha = alpha }, true)
  T.ok(m <= alpha + bound(alpha, S), "miscoverage " .. m)
end)

T.test("user_score_equal_to_default_gives_same_pvalues", function()
  local h = plume.hmm{ trans = {{0.85, 0.15}, {0.3, 0.7}}, emit = {{0.7, 0.2, 0.1}, {0.1, 0.3, 0.6}} }
  local x, y = h:sample(60, 3)
  local st = {}
  for t = 1, 59 do st[t] = x[t] end
  local A, B = h.trans, h.emit
  local def = plume.conformal.hmm(h, y, { target = "state", states = st })
  local usr = plume.conformal.hmm(h, y, { target = "state", states = st, score = function(prev, cur)
    local z = 0
    for k = 1, 2 do z = z + A[prev.state][k] * B[k][cur.obs] end
    return -math.log(A[prev.state][cur.state] * B[cur.state][cur.obs] / z)
  end })
  for k = 1, 2 do T.near(usr.pvalues[k], def.pvalues[k], 1e-12, "p-value of state " .. k) end
  local def2 = plume.conformal.hmm(h, y, {})
  T.eq(#def2.set >= 1, true, "a set")
  T.ok(tostring(def2):find("conformal next set at level 0.9", 1, true), tostring(def2))
end)

T.test("bad_input_is_refused", function()
  local h = plume.hmm{ trans = {{0.5, 0.5}, {0.5, 0.5}}, emit = {{0.5, 0.5}, {0.5, 0.5}} }
  T.raises(function() plume.conformal.hmm(h, {1, 2, 3}) end, "obs[3] is 3, but there are 2 symbols")
  T.raises(function() plume.conformal.hmm(h, {1, 2}, { alpha = 1.5 }) end, "option 'alpha' must be in (0, 1)")
  T.raises(function() plume.conformal.hmm(h, {1, 2}, { target = "state" }) end, "needs the hidden states")
  T.raises(function() plume.conformal.hmm(h, {1, 2}, { target = "state", states = {1, 2} }) end,
    "states has 2 entries")
  T.raises(function() plume.conformal.hmm(h, {1, 2}, { bogus = 1 }) end, "unknown option 'bogus'")
  T.raises(function() plume.conformal.hmm(h, {1, 2}, { states = {1, 3} }) end, "states[2] must be a state 1..2")
end)
