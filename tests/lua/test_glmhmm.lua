-- test_glmhmm.lua -- plume.glmhmm from Lua: a known 2-state network simulated with m:sample, fitted under each
-- prior; states recovered after label matching, one-hot types of the strong couplings, posterior rows summing to
-- one, Viterbi paths and held-out log-likelihood; options and spikes checked with named errors. The statistical
-- comparison of the priors is in tests/test_glmhmm.c.
local plume = require "plume"
local T = dofile((arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or ".") .. "/check.lua")

local truth = plume.glmhmm { K = 2, family = "bernoulli",
  weights = {
    { { -1.5, 1.5, 0, 0 }, { 0, -1.5, 1.5, 0 }, { 0, 0, -1.5, 1.5 }, { 1.5, 0, 0, -1.5 } },
    { { -1.5, 0, 0, -1.5 }, { -1.5, -1.5, 0, 0 }, { 0, -1.5, -1.5, 0 }, { 0, 0, -1.5, -1.5 } } },
  bias = { { -1.2, -1.2, -1.2, -1.2 }, { -0.5, -0.5, -0.5, -0.5 } },
  trans = { { 0.98, 0.02 }, { 0.02, 0.98 } } }
local z, y = truth:sample(1500, 11)
local _, yt = truth:sample(1500, 12)

local function accuracy(path)
  local a, b = 0, 0
  for t = 1, #z do
    if path[t] == z[t] then a = a + 1 end
    if path[t] == 3 - z[t] then b = b + 1 end
  end
  return math.max(a, b) / #z, b > a
end

-- the true model's own Viterbi accuracy: the best a fit can expect
local truth_acc = accuracy((truth:viterbi(y)))

T.test("sample_shapes", function()
  T.ok(truth_acc > 0.8, "the true model recovers its states: " .. truth_acc)
  T.eq(#z, 1500, "states")
  T.eq(#y, 1500, "spike rows")
  T.eq(#y[1], 4, "neurons")
  T.eq(truth.N, 4, "N")
  T.eq(tostring(truth):match("given weights"), "given weights", "tostring")
end)

local fits = {}
for _, prior in ipairs({ "none", "gaussian", "onehot" }) do
  T.test("fit_recovers_states_" .. prior, function()
    local m = plume.glmhmm { K = 2, family = "bernoulli", prior = prior, seed = 1 }
    T.eq(m:fit(y), m, "fit returns the model")
    fits[prior] = m
    local path, logp = m:viterbi()
    local acc = accuracy(path)
    T.ok(acc > truth_acc - 0.03, prior .. ": state accuracy " .. acc .. " (the true model's: " .. truth_acc .. ")")
    T.ok(logp < m:loglik(), "log p(path, y) < log p(y)")
    local trace = m.trace
    for i = 2, #trace do T.ok(trace[i] >= trace[i - 1], "objective never decreases") end
    T.near(trace[#trace], m:loglik() + m.logprior, 1e-8 * math.abs(trace[#trace]), "trace ends at loglik + logprior")
    local post, ll = m:posterior()
    T.near(ll, m:loglik(), 1e-8 * math.abs(ll), "posterior's loglik")
    for t = 1, #post, 97 do T.near(post[t][1] + post[t][2], 1, 1e-12, "posterior row sums to 1") end
    T.eq(#m.weights, 2, "weights per state")
    T.eq(#m.weights[1], 4, "rows")
    T.eq(#m.weights[1][1], 4, "columns (N * lags)")
    T.ok(m:loglik(yt) < 0, "held-out log-likelihood")
  end)
end

T.test("onehot_types_of_the_strong_couplings", function()
  local m = fits.onehot
  local _, swapped = accuracy(m:viterbi())
  local tw = { truth.weights[1], truth.weights[2] }
  local wrong = 0
  for k = 1, 2 do
    local types = m.types[swapped and 3 - k or k]
    for i = 1, 4 do
      for j = 1, 4 do
        local w = tw[k][i][j]
        local want = w > 0 and 1 or w < 0 and -1 or 0
        if types[i][j] ~= want then wrong = wrong + 1 end
      end
    end
  end
  T.ok(wrong <= 2, "one-hot types wrong in " .. wrong .. " of 32 connections")
  T.ok(m.mu > 0.8 and m.mu < 2.2, "learned effect size mu " .. m.mu)
  T.eq(#m.connectome, 4, "connectome rows")
  T.eq(fits.gaussian.sigma2 > 0, true, "gaussian prior's sigma2")
  T.eq(fits.none.types, nil, "no types without the one-hot prior")
end)

T.test("bad_input_is_named", function()
  T.raises(function() plume.glmhmm { K = 0 } end, "glmhmm: K must be in 1..64 (got 0)")
  T.raises(function() plume.glmhmm { prior = "laplace" } end, "prior must be \"none\", \"gaussian\" or \"onehot\"")
  T.raises(function() plume.glmhmm { family = "normal" } end, "family must be \"poisson\" or \"bernoulli\"")
  T.raises(function() plume.glmhmm { K = 2, lag = 1 } end, "unknown option 'lag'")
  local m = plume.glmhmm { K = 2, family = "bernoulli" }
  T.raises(function() m:viterbi(y) end, "not fitted yet")
  T.raises(function() m:fit({ { 0, 1 }, { 2, 0 } }) end, "spikes[2][1] is 2, but a bernoulli model needs 0 or 1")
  T.raises(function() fits.none:loglik({ { 0, 1 } }) end, "spikes have 2 columns, but the model has 4 neurons")
end)
