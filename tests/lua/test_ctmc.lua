-- test_ctmc.lua -- plume.ctmc and plume.cthmm from Lua: closed forms, hand computations, an independent
-- forward pass written here, and every bad input.
local T = dofile("tests/lua/check.lua")

local a, b = 0.7, 0.2
local Q2 = { { -a, a }, { b, -b } }
local function P2(t)   -- closed form for the two-state chain
  local e = math.exp(-(a + b) * t)
  return { { (b + a * e) / (a + b), (a - a * e) / (a + b) }, { (b - b * e) / (a + b), (a + b * e) / (a + b) } }
end

T.test("ctmc:transition equals the two-state closed form", function()
  local c = plume.ctmc{ Q = Q2 }
  for _, t in ipairs{ 0, 0.01, 0.5, 3, 40 } do
    local P, W = c:transition(t), P2(t)
    for i = 1, 2 do for j = 1, 2 do T.near(P[i][j], W[i][j], 1e-13, "P(" .. t .. ")") end end
  end
  T.eq(tostring(c), "ctmc(2 states, largest exit rate 0.7)")
end)

T.test("ctmc:loglik_path and loglik_obs equal hand computations", function()
  local c = plume.ctmc{ Q = { { -3, 2, 1 }, { 0.5, -0.5, 0 }, { 0, 4, -4 } } }
  local path = { times = { 0, 0.5, 1.25, 2 }, states = { 1, 2, 1, 3 }, t_end = 3 }
  T.near(c:loglik_path(path), math.log(2) - 1.5 + math.log(0.5) - 0.375 - 2.25 - 4, 1e-14)
  local c2 = plume.ctmc{ Q = Q2 }
  local times, states = { 0, 0.3, 2.0, 2.5 }, { 1, 2, 2, 1 }
  local want = 0
  for i = 1, 3 do want = want + math.log(P2(times[i + 1] - times[i])[states[i]][states[i + 1]]) end
  T.near(c2:loglik_obs(times, states), want, 1e-12)
end)

T.test("ctmc:sample_path is a valid path with a finite likelihood; seeds reproduce", function()
  local c = plume.ctmc{ Q = { { -3, 2, 1 }, { 0.5, -0.5, 0 }, { 0, 4, -4 } } }
  local p = c:sample_path(2, 10, 42)
  local q = c:sample_path(2, 10, 42)
  T.eq(p.states[1], 2); T.eq(p.times[1], 0); T.eq(p.t_end, 10)
  T.eq(#p.times, #p.states)
  T.eq(#p.times, #q.times, "same seed, same path")
  for i = 2, #p.times do
    T.ok(p.times[i] > p.times[i - 1] and p.times[i] < 10)
    T.ok(p.states[i] ~= p.states[i - 1])
  end
  T.ok(c:loglik_path(p) > -math.huge)
end)

-- forward algorithm in probability space with the chain's own transition matrices
local function forward(c, init, E, times, obs)
  local K = #init
  local alpha, ll = {}, 0
  for t = 1, #times do
    local nxt, z = {}, 0
    local P = t > 1 and c:transition(times[t] - times[t - 1])
    for j = 1, K do
      local v = 0
      if t == 1 then v = init[j] else for i = 1, K do v = v + alpha[i] * P[i][j] end end
      nxt[j] = v * E(j, obs[t])
      z = z + nxt[j]
    end
    for j = 1, K do alpha[j] = nxt[j] / z end
    ll = ll + math.log(z)
  end
  return ll
end

local Q3 = { { -1.0, 0.6, 0.4 }, { 0.3, -0.5, 0.2 }, { 1.5, 0.5, -2.0 } }
local init3 = { 0.5, 0.3, 0.2 }
local E3 = { { 0.7, 0.2, 0.1 }, { 0.1, 0.6, 0.3 }, { 0.2, 0.2, 0.6 } }
local times = { 0.0, 0.5, 1.0, 1.0, 3.7, 4.2, 9.0 }
local obs = { 1, 3, 2, 2, 1, 3, 3 }

T.test("cthmm:loglik equals a forward pass over ctmc:transition matrices", function()
  local c = plume.ctmc{ Q = Q3 }
  local h = plume.cthmm{ Q = Q3, init = init3, emit = E3 }
  T.near(h:loglik(times, obs), forward(c, init3, function(k, y) return E3[k][y] end, times, obs), 1e-12)
  local g = plume.cthmm{ Q = c, init = init3,
                         emit = { plume.dist.normal(0, 1), plume.dist.normal(2, 0.5), plume.dist.normal(-1, 2) } }
  local ys = { 0.1, 2.2, 1.7, -0.5, -2.0, 0.3, 1.0 }
  local dens = { { 0, 1 }, { 2, 0.5 }, { -1, 2 } }
  local function E(k, y)
    local z = (y - dens[k][1]) / dens[k][2]
    return math.exp(-0.5 * z * z) / (dens[k][2] * math.sqrt(2 * math.pi))
  end
  T.near(g:loglik(times, ys), forward(c, init3, E, times, ys), 1e-12)
  T.eq(tostring(g), "cthmm(3 states, normal emissions)")
  T.eq(tostring(h), "cthmm(3 states, categorical emissions over 3 symbols)")
end)

T.test("cthmm:posterior rows sum to 1 and viterbi's path scores its log-probability", function()
  local c = plume.ctmc{ Q = Q3 }
  local h = plume.cthmm{ Q = Q3, init = init3, emit = E3 }
  local post, ll = h:posterior(times, obs)
  T.near(ll, h:loglik(times, obs), 1e-12)
  for t = 1, #times do T.near(post[t][1] + post[t][2] + post[t][3], 1, 1e-12) end
  local path, logp = h:viterbi(times, obs)
  local lp = math.log(init3[path[1]] * E3[path[1]][obs[1]])
  for t = 2, #times do
    lp = lp + math.log(c:transition(times[t] - times[t - 1])[path[t - 1]][path[t]] * E3[path[t]][obs[t]])
  end
  T.near(logp, lp, 1e-12)
  T.ok(logp <= ll)
end)

T.test("cthmm:sample returns 1-based states and symbols; seeds reproduce", function()
  local h = plume.cthmm{ Q = Q3, init = init3, emit = E3 }
  local s, y = h:sample(times, 5)
  local s2, y2 = h:sample(times, 5)
  T.eq(#s, #times); T.eq(#y, #times)
  for t = 1, #times do
    T.ok(s[t] >= 1 and s[t] <= 3 and y[t] >= 1 and y[t] <= 3)
    T.eq(s[t], s2[t]); T.eq(y[t], y2[t])
  end
  T.ok(h:loglik(times, y) > -math.huge)
end)

T.test("bad input names the argument and entry", function()
  T.raises(function() plume.ctmc{ Q = { { -1, 1 }, { 2, -1 } } } end, "ctmc: Q row 2 sums to 1")
  T.raises(function() plume.ctmc{ Q = { { -1, 1 }, { -2, 2 } } } end, "ctmc: Q[2][1] is negative (-2)")
  T.raises(function() plume.ctmc{ Q = { { -1, 1 } } } end, "ctmc: Q must be square (got 1 x 2)")
  T.raises(function() plume.ctmc{} end, "ctmc: missing field 'Q'")
  local c = plume.ctmc{ Q = Q2 }
  T.raises(function() c:transition(-1) end, "transition time must be finite and >= 0")
  T.raises(function() c:loglik_obs({ 0, 1 }, { 1, 3 }) end, "ctmc:loglik_obs: states[2] must be a state in 1..2 (got 3)")
  T.raises(function() c:loglik_obs({ 1, 0 }, { 1, 2 }) end, "times must not decrease")
  T.raises(function() c:loglik_obs({ 0, 1 }, { 1 }) end, "times has 2 entries but states has 1")
  T.raises(function() c:sample_path(3, 1) end, "ctmc:sample_path: x0 must be a state in 1..2 (got 3)")
  T.raises(function() c:loglik_path({ times = { 0, 1 }, states = { 1, 1 }, t_end = 2 }) end, "every jump must change state")
  T.raises(function() c:loglik_path({ times = { 0, 1 }, states = { 1, 2 } }) end, "path.t_end must be a number")
  T.raises(function() plume.cthmm{ Q = Q3, init = { 0.5, 0.6, -0.1 }, emit = E3 } end, "cthmm: init[3] must be a probability >= 0")
  T.raises(function() plume.cthmm{ Q = Q3, init = { 0.5, 0.5 }, emit = E3 } end, "cthmm: init must have 3 entries")
  T.raises(function() plume.cthmm{ Q = Q3, init = init3, emit = { { 0.5, 0.5 }, { 1, 0 } } } end, "cthmm: emit must have 3 rows")
  T.raises(function() plume.cthmm{ Q = Q3, init = init3, emit = { { 0.5, 0.4 }, { 1, 0 }, { 0, 1 } } } end,
    "cthmm: emit row 1 must sum to 1")
  T.raises(function() plume.cthmm{ Q = Q3, init = init3, emit = { plume.dist.normal(0, 1), 3, plume.dist.normal(0, 1) } } end,
    "cthmm: emit[2] must be a distribution (got number)")
  local h = plume.cthmm{ Q = Q3, init = init3, emit = E3 }
  T.raises(function() h:loglik({ 0, 1 }, { 1, 4 }) end, "obs[2] is 4, but the symbols are 1..3")
  T.raises(function() h:loglik({ 0, 1 }, { 1 }) end, "cthmm:loglik: obs has 1 entries but times has 2")
  T.raises(function() h:posterior({}, {}) end, "observation sequence is empty")
  T.raises(function() h:viterbi({ 0, 1 }, { 1, "a" }) end, "cthmm:viterbi: obs[2] must be a symbol number (got string)")
end)

-- issue 8: rows of P(t) stay stochastic at any t (they summed to 0.83 at t = 1e16, 0 at 1e20, inf at 1e300),
-- and a misspelt field is an error naming the valid ones
T.test("transition keeps stochastic rows at huge t; fields are checked", function()
  local c = plume.ctmc{ Q = { { -1, 1 }, { 1, -1 } } }
  for _, t in ipairs{ 1e16, 1e20, 1e300 } do
    local P = c:transition(t)
    for i = 1, 2 do
      T.near(P[i][1] + P[i][2], 1, 1e-12, "row sum at t = " .. t)
      T.near(P[i][1], 0.5, 1e-12, "stationary limit at t = " .. t)
    end
  end
  local err = T.raises(function() plume.ctmc{ Q = { { -1, 1 }, { 1, -1 } }, q = 1 } end, "ctmc: unknown option 'q' (options: Q)")
  T.ok(err:find("test_ctmc.lua:%d+:"), "names the caller's line: " .. err)
  T.raises(function() plume.cthmm{ Q = { { -1, 1 }, { 1, -1 } }, init = { 0.5, 0.5 }, emit = { { 1 }, { 1 } }, emits = 1 } end,
    "cthmm: unknown option 'emits' (options: Q, init, emit)")
  T.raises(function() c:sample_path(1e15, 1) end, "ctmc:sample_path: x0 must be a state in 1..2 (got 1000000000000000)")
end)
