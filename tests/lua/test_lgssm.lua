-- test_lgssm.lua -- plume.lgssm from Lua: against an independent scalar Kalman filter written here, the input
-- forms (flat lists, vectors, plume.array, nil/NaN missing), partial observations, and every bad input.
local T = dofile("tests/lua/check.lua")

-- scalar Kalman filter, x0 ~ N(m0, P0), x_t = a x_{t-1} + q, y_t = c x_t + r; nil or NaN skips the update
local function kalman1(a, q, c, r, m0, P0, ys, n)
  local m, P, ll = m0, P0, 0
  local means, vars = {}, {}
  for t = 1, n or #ys do
    m, P = a * m, a * a * P + q
    local y = ys[t]
    if y ~= nil and y == y then
      local S = c * c * P + r
      local K = P * c / S
      local e = y - c * m
      ll = ll - 0.5 * (math.log(2 * math.pi * S) + e * e / S)
      m, P = m + K * e, (1 - K * c) * P
    end
    means[t], vars[t] = m, P
  end
  return ll, means, vars
end

local ys = { 0.3, 1.1, -0.4, 0.8, 2.2, 1.9, 0.7 }

T.test("scalar loglik and filter equal an independent Kalman filter", function()
  local s = plume.lgssm{ A = 0.8, Q = 0.5, C = 1.5, R = 0.7, m0 = 0.2, P0 = 2 }
  local want, wm, wv = kalman1(0.8, 0.5, 1.5, 0.7, 0.2, 2, ys)
  T.near(s:loglik(ys), want, 1e-12, "loglik")
  local means, vars, ll = s:filter(ys)
  T.near(ll, want, 1e-12, "filter loglik")
  for t = 1, #ys do
    T.near(means[t], wm[t], 1e-12, "mean " .. t)
    T.near(vars[t], wv[t], 1e-12, "var " .. t)
  end
  local sm, sv = s:smooth(ys)
  T.near(sm[#ys], wm[#ys], 1e-12, "smoothed last = filtered last")
  T.near(sv[#ys], wv[#ys], 1e-12)
  T.ok(sv[3] < vars[3], "smoothing reduces variance")
end)

T.test("missing observations: nil, NaN and ys.n agree with skipping the update", function()
  local s = plume.lgssm{ A = 0.8, Q = 0.5, C = 1.5, R = 0.7, m0 = 0.2, P0 = 2 }
  local gappy = { 0.3, 0 / 0, -0.4, 0.8, 0 / 0, 1.9, 0.7 }
  local want = kalman1(0.8, 0.5, 1.5, 0.7, 0.2, 2, gappy)
  T.near(s:loglik(gappy), want, 1e-12, "NaN")
  T.near(s:loglik({ 0.3, nil, -0.4, 0.8, nil, 1.9, 0.7, n = 7 }), want, 1e-12, "nil holes with n")
  local trailing = { 0.3, 1.1, n = 4 }
  T.near(s:loglik(trailing), kalman1(0.8, 0.5, 1.5, 0.7, 0.2, 2, trailing, 4), 1e-12, "trailing nils")
  local means = s:filter(trailing)
  T.eq(#means, 4, "four filtered steps")
end)

T.test("plume.array and list-of-vectors inputs equal the flat list", function()
  local s = plume.lgssm{ A = { { 0.8 } }, Q = { { 0.5 } }, C = { { 1.5 } }, R = { { 0.7 } }, m0 = { 0.2 }, P0 = { { 2 } } }
  local want = kalman1(0.8, 0.5, 1.5, 0.7, 0.2, 2, ys)
  T.near(s:loglik(plume.array(ys)), want, 1e-12, "plume.array")
  local vecs = {}
  for t = 1, #ys do vecs[t] = { ys[t] } end
  T.near(s:loglik(vecs), want, 1e-12, "vectors")
end)

T.test("a partially observed 2-D series equals the 1-D model of its observed row", function()
  local A = { { 1, 1 }, { 0, 1 } }
  local Q = { { 0.1, 0 }, { 0, 0.05 } }
  local P0 = { { 4, 0 }, { 0, 1 } }
  local two = plume.lgssm{ A = A, Q = Q, C = { { 1, 0 }, { 0.5, 1 } }, R = { { 0.3, 0.1 }, { 0.1, 0.4 } },
                           m0 = { 0, 1 }, P0 = P0 }
  local one = plume.lgssm{ A = A, Q = Q, C = { 1, 0 }, R = 0.3, m0 = { 0, 1 }, P0 = P0 }
  local y2, y1 = {}, {}
  for t = 1, 6 do y2[t] = { 0.5 * t, nil }; y1[t] = 0.5 * t end
  T.near(two:loglik(y2), one:loglik(y1), 1e-12, "loglik")
  local m2, P2 = two:smooth(y2)
  local m1, P1 = one:smooth(y1)
  for t = 1, 6 do
    for i = 1, 2 do
      T.near(m2[t][i], m1[t][i], 1e-10, "smoothed mean")
      for j = 1, 2 do T.near(P2[t][i][j], P1[t][i][j], 1e-10, "smoothed cov") end
    end
  end
  -- b and d shift the mean: y - d with b = 0 equals y with d = 0 when d is constant
  local shifted = plume.lgssm{ A = A, Q = Q, C = { 1, 0 }, R = 0.3, m0 = { 0, 1 }, P0 = P0, d = { 2 } }
  local yd = {}
  for t = 1, 6 do yd[t] = y1[t] + 2 end
  T.near(shifted:loglik(yd), one:loglik(y1), 1e-12, "offset d")
end)

T.test("sample: shapes, seeds reproduce, tostring", function()
  local s = plume.lgssm{ A = { { 1, 1 }, { 0, 1 } }, Q = { { 0.01, 0 }, { 0, 0.01 } }, C = { 1, 0 }, R = 1,
                         m0 = { 0, 0 }, P0 = { { 1, 0 }, { 0, 1 } }, b = { 0, 0.1 } }
  local xs, y = s:sample(50, 7)
  local xs2, y2 = s:sample(50, 7)
  T.eq(#xs, 50); T.eq(#xs[1], 2); T.eq(type(y[1]), "number")
  T.eq(y[50], y2[50], "same seed, same draw")
  T.eq(xs[10][2], xs2[10][2])
  -- drift b = 0.1 per step: velocity at t = 50 has mean 5 and sd sqrt(1 + 50 * 0.01) = 1.22; the mean of 200
  -- draws is within 4 standard errors (0.35); without the drift it would be near 0
  local sum = 0
  for k = 1, 200 do sum = sum + s:sample(50, 100 + k)[50][2] end
  T.near(sum / 200, 5, 4 * 1.2247 / math.sqrt(200), "velocity mean")
  T.eq(tostring(s), "lgssm(state dimension 2, observation dimension 1)")
end)

T.test("bad input names the argument", function()
  local ok = { A = 1, Q = 1, C = 1, R = 1, m0 = 0, P0 = 1 }
  local function with(k, v)
    local t = {}
    for kk, vv in pairs(ok) do t[kk] = vv end
    t[k] = v
    return t
  end
  T.raises(function() plume.lgssm(with("Q", -1)) end, "lgssm: Q must be positive semi-definite")
  T.raises(function() plume.lgssm(with("R", 0)) end, "lgssm: R must be positive definite")
  T.raises(function() plume.lgssm(with("P0", nil)) end, "lgssm: missing field 'P0'")
  T.raises(function() plume.lgssm(with("A", { { 1, 2 } })) end, "lgssm: A must be 1 x 1, got 1 x 2")
  T.raises(function() plume.lgssm(with("A", 0 / 0)) end, "lgssm: A[1][1] is not finite")
  T.raises(function() plume.lgssm(with("b", { 1, 2 })) end, "lgssm: b must have 1 entries, got 2")
  T.raises(function()
    plume.lgssm{ A = { { 1, 0 }, { 0, 1 } }, Q = { { 1, 2 }, { 0, 1 } }, C = { 1, 0 }, R = 1, m0 = { 0, 0 },
                 P0 = { { 1, 0 }, { 0, 1 } } }
  end, "lgssm: Q is not symmetric (Q[1][2] = 2, Q[2][1] = 0)")
  local s = plume.lgssm(ok)
  T.raises(function() s:loglik({}) end, "observation sequence is empty")
  T.raises(function() s:loglik({ 1, "x" }) end, "lgssm:loglik: ys[2] must be a number or nil (got string)")
  T.raises(function() s:filter({ { 1, 2 } }) end, "lgssm:filter: ys[1] has 2 entries, expected 1")
  T.raises(function() s:smooth({ 1, math.huge }) end, "ys[2][1] is infinite")
  T.raises(function() s:sample(0) end, "lgssm:sample: T must be in 1..1e8")
  T.raises(function() s.loglik(nil, { 1 }) end, "lgssm:loglik: self must be a lgssm")
end)

-- issue 8: a misspelt field is an error that lists the valid ones; sizes are capped with the limit named
T.test("unknown fields and oversized requests are errors", function()
  local err = T.raises(function() plume.lgssm{ A = 0.8, Q = 0.5, C = 1.5, R = 0.7, m0 = 0.2, P0 = 2, sed = 1 } end,
    "lgssm: unknown option 'sed' (options: m0, P0, A, Q, C, R, b, d)")
  T.ok(err:find("test_lgssm.lua:%d+:"), "names the caller's line: " .. err)
  local s = plume.lgssm{ A = 0.8, Q = 0.5, C = 1.5, R = 0.7, m0 = 0.2, P0 = 2 }
  T.raises(function() s:sample(1e12) end, "lgssm:sample: T must be in 1..1e8 (got 1000000000000)")
  local I, row, zero = {}, {}, {}
  for i = 1, 100 do
    I[i], row[i], zero[i] = {}, 1, 0
    for j = 1, 100 do I[i][j] = i == j and 1 or 0 end
  end
  local big = plume.lgssm{ A = I, Q = I, C = { row }, R = 1, m0 = zero, P0 = I }
  T.raises(function() big:sample(2e6) end,
    "lgssm:sample: T = 2000000 steps of 100 states and 1 observations would return 202000000 numbers (the limit is 1e8)")
  local ys = plume.array(20000)
  T.raises(function() big:filter(ys) end, "would return 202000000 numbers (the limit is 1e8)")
end)
