-- joint_fb.lua -- exact log p(y) and every node's marginals for a small interacting particle system, by
-- forward-backward over its joint chain (K^N joint states): the reference of the BFFG tests of interacting
-- systems (test_bffg_sir.lua, test_bffg_ips.lua). Joint states x are 0-based; the caller gives
--   init(x)     the initial probability of x,
--   P[x+1][y+1] the joint transition matrix,
--   emis(t, x)  the likelihood of the observations at time t (0..T) given x,
--   decode(x)   the node states of x (0-based, N of them).
-- Returns log p(y) and marg[i][t + 1][state + 1].
return function(N, T, K, init, P, emis, decode)
  local S = K ^ N
  local alpha, beta = { [0] = {} }, {}
  for x = 1, S do alpha[0][x] = init(x - 1) * emis(0, x - 1) end
  for t = 1, T do
    alpha[t] = {}
    for y = 1, S do
      local acc = 0
      for x = 1, S do acc = acc + alpha[t - 1][x] * P[x][y] end
      alpha[t][y] = acc * emis(t, y - 1)
    end
  end
  beta[T] = {}
  for x = 1, S do beta[T][x] = 1 end
  for t = T - 1, 0, -1 do
    beta[t] = {}
    for x = 1, S do
      local acc = 0
      for y = 1, S do acc = acc + P[x][y] * emis(t + 1, y - 1) * beta[t + 1][y] end
      beta[t][x] = acc
    end
  end
  local L = 0
  for x = 1, S do L = L + alpha[T][x] end
  local marg = {}
  for i = 1, N do
    marg[i] = {}
    for t = 0, T do
      marg[i][t + 1] = {}
      for k = 1, K do marg[i][t + 1][k] = 0 end
    end
  end
  for t = 0, T do
    for x = 1, S do
      local w, s = alpha[t][x] * beta[t][x] / L, decode(x - 1)
      for i = 1, N do marg[i][t + 1][s[i] + 1] = marg[i][t + 1][s[i] + 1] + w end
    end
  end
  return math.log(L), marg
end
