-- test_gmm_birth_death.lua -- the birth/death kernel of bench/learned_gmm.lua's open-universe mixture (a Lua
-- kernel on traces of a dynamic program: K - 1 ~ poisson, means normal(0, tau), labels uniform, unit sd). The
-- posterior of K on 4 points against its exact value by enumeration of every labelling (the means integrated
-- in closed form), within 5 Monte Carlo standard errors (from the ESS of each indicator); a negative control
-- (the birth's log q left out of the ratio) must fail the same check; the same with the learned birth (a mixture
-- proposal network drawing the new mean). Also: tr:with imposes a number on a site
-- the trace lacks (the birth's new mean), and says when the run does not sample it.
local T = dofile("tests/lua/check.lua")
local L = dofile("bench/learned_common.lua")
local K = plume.kernel

local d = { y = { -2.2, -1.5, 1.9, 2.6 }, lambda = 1, tau = 2 }

-- log p(y_S) for one cluster S: n points, sum s, sum of squares q; the mean integrated out
local function log_ml(n, s, q, tau)
  if n == 0 then return 0 end
  local t2 = tau * tau
  return -0.5 * n * math.log(2 * math.pi) - 0.5 * math.log(1 + n * t2) - 0.5 * (q - t2 * s * s / (1 + n * t2))
end

local function exact_K(kmax)
  local y, n, lw = d.y, #d.y, {}
  for Kc = 1, kmax do
    local terms, z = {}, {}
    for i = 1, n do z[i] = 1 end
    while true do
      local cn, cs, cq = {}, {}, {}
      for k = 1, Kc do cn[k], cs[k], cq[k] = 0, 0, 0 end
      for i = 1, n do local k = z[i]; cn[k] = cn[k] + 1; cs[k] = cs[k] + y[i]; cq[k] = cq[k] + y[i] ^ 2 end
      local l = -n * math.log(Kc)
      for k = 1, Kc do l = l + log_ml(cn[k], cs[k], cq[k], d.tau) end
      terms[#terms + 1] = l
      local i = 1
      while i <= n and z[i] == Kc do z[i] = 1; i = i + 1 end
      if i > n then break end
      z[i] = z[i] + 1
    end
    local top = -math.huge
    for _, t in ipairs(terms) do top = math.max(top, t) end
    local s = 0
    for _, t in ipairs(terms) do s = s + math.exp(t - top) end
    lw[Kc] = top + math.log(s) + plume.dist.poisson(d.lambda):logpdf(Kc - 1)
  end
  local top, s, p = -math.huge, 0, {}
  for Kc = 1, kmax do top = math.max(top, lw[Kc]) end
  for Kc = 1, kmax do s = s + math.exp(lw[Kc] - top) end
  for Kc = 1, kmax do p[Kc] = math.exp(lw[Kc] - top) / s end
  return p
end

local p = exact_K(9)   -- P(K > 9) under the prior is below 1e-6

local function run(broken, seed, birth)
  birth = birth or L.hand_birth(L.anchors(d.y, 4), 1.0)
  local kern = K.cycle{ L.ou_labels_kernel(d), L.ou_means_kernel(d), L.ou_birth_death_kernel(d, birth, broken) }
  local post = plume.infer(L.gmm_ou_model, d, { kernel = kern, samples = 4000, warmup = 200, chains = 1, seed = seed,
    quiet = true, init = { k = 0 } })
  local ks = post:draws("k")
  local worst = 0
  for Kc = 1, 3 do
    local ind, f = {}, 0
    for i, k in ipairs(ks) do ind[i] = (k + 1 == Kc) and 1 or 0; f = f + ind[i] end
    f = f / #ks
    local se = math.sqrt(math.max(p[Kc] * (1 - p[Kc]), 1e-4) / L.ess(ind))
    worst = math.max(worst, math.abs(f - p[Kc]) / (5 * se))
  end
  return worst, post
end

T.test("birth_death_posterior_of_K_matches_enumeration", function()
  local w, post = run(false, 1)
  io.write(string.format("  (exact P(K = 1..3) = %.3f %.3f %.3f; worst %.2f tolerances; birth/death acceptance %.3f)\n",
    p[1], p[2], p[3], w, post["k3.accept_rate"][1]))
  T.ok(w <= 1, string.format("P(K) is %.2f tolerances (5 MCSE) from the exact one", w))
  T.ok(post["k3.accept_rate"][1] > 0.05, "the birth/death move is accepted at times")
end)

-- the learned birth (bench/learned_birth.lua): the new mean from a mixture proposal network, its density in the
-- ratio. MH is exact whatever the network, so a small one trained in 0.1 s serves (the shipped ones are better
-- proposals, not more correct ones)
T.test("learned_birth_posterior_of_K_matches_enumeration", function()
  local net = plume.proposals.train("mixture", { samples = 2000, epochs = 3, hidden = 16, seed = 1, progress = false })
  local birth = assert(dofile("bench/learned_birth.lua")(d, L.anchors(d.y, 4), net))
  local w, post = run(false, 2, birth)
  io.write(string.format("  (learned birth: worst %.2f tolerances; birth/death acceptance %.3f)\n", w, post["k3.accept_rate"][1]))
  T.ok(w <= 1, string.format("P(K) is %.2f tolerances (5 MCSE) from the exact one", w))
  T.ok(post["k3.accept_rate"][1] > 0.02, "the learned birth/death move is accepted at times")
end)

T.test("negative_control_birth_without_its_proposal_density_is_detected", function()
  local w = run(true, 1)
  io.write(string.format("  (broken kernel: worst %.2f tolerances)\n", w))
  T.ok(w > 1, "the broken kernel passes")
end)

T.test("with_imposes_a_site_the_trace_lacks", function()
  local seen
  local function kern(tr)
    local Kc = 1 + tr:get("k")
    local tr2 = tr:with{ k = Kc, ["mu[" .. (Kc + 1) .. "]"] = 0.25 }
    seen = tr2:get("mu[" .. (Kc + 1) .. "]")
    T.raises(function() tr:with{ ["mu[" .. (Kc + 5) .. "]"] = 1 } end, "nor in the run with the imposed values")
    return tr
  end
  plume.infer(L.gmm_ou_model, d, { kernel = kern, samples = 2, warmup = 0, chains = 1, seed = 1, quiet = true,
    init = { k = 0 } })
  T.eq(seen, 0.25, "the imposed new mean")
end)
