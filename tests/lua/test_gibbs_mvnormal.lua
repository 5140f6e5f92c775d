-- test_gibbs_mvnormal.lua -- an mvnormal mean with known covariances: mvnormal children with that mean and a
-- normal child on one entry give an mvnormal full conditional, which "gibbs" and "auto" draw in closed form.
local T = dofile("tests/lua/check.lua")
local D = plume.dist

local function inv2(a) local d = a[1][1] * a[2][2] - a[1][2] * a[2][1]
  return { { a[2][2] / d, -a[1][2] / d }, { -a[2][1] / d, a[1][1] / d } } end

T.test("mvnormal_mean_posterior_equals_the_closed_form", function()
  local m0, S0, S, ys = { 1, -1 }, { { 4, 1 }, { 1, 2 } }, { { 1, 0.3 }, { 0.3, 0.5 } }, { { 0.5, 0.2 }, { 1.5, -0.4 } }
  local model = plume.model(function(m, ys)
    local mu = m:sample("mu", D.mvnormal(m0, S0))
    for i, y in ipairs(ys) do m:observe("y" .. i, D.mvnormal(mu, S), y) end
    m:observe("z", D.normal(mu[2], 0.7), 0.1)
  end)
  -- P = S0^-1 + 2 S^-1 + e2 e2' / 0.49; mean = P^-1 (S0^-1 m0 + S^-1 (y1 + y2) + e2 0.1 / 0.49)
  local A, B = inv2(S0), inv2(S)
  local P, h = { { 0, 0 }, { 0, 0 } }, { 0, 0 }
  for i = 1, 2 do
    for j = 1, 2 do
      P[i][j] = A[i][j] + 2 * B[i][j]
      h[i] = h[i] + A[i][j] * m0[j] + B[i][j] * (ys[1][j] + ys[2][j])
    end
  end
  P[2][2], h[2] = P[2][2] + 1 / 0.49, h[2] + 0.1 / 0.49
  local C = inv2(P)
  local mean = { C[1][1] * h[1] + C[1][2] * h[2], C[2][1] * h[1] + C[2][2] * h[2] }
  local post = plume.infer(model, ys, { samples = 2000, warmup = 50, chains = 2, seed = 4, quiet = true })
  T.ok(post.kernel:find("mu (mvnormal-mvnormal)", 1, true), "auto picks the conjugate update: " .. post.kernel)
  local s = post:summary()
  for k = 1, 2 do
    local r = s["mu[" .. k .. "]"]
    T.near(r.mean, mean[k], 4 * r.mcse_mean, "mean of mu[" .. k .. "]")
    T.near(r.sd, math.sqrt(C[k][k]), 0.1 * math.sqrt(C[k][k]), "sd of mu[" .. k .. "] (within 10%)")
  end
end)
