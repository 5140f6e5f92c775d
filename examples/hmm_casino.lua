-- hmm_casino.lua -- the dishonest casino (Durbin et al., "Biological Sequence Analysis", ch. 3).
-- A casino mostly rolls a fair die but sometimes switches to one loaded towards six. We see only the
-- rolls. Simulate a night of play, learn the casino's habits with Baum-Welch from a rough guess, then
-- decode which die was in use at each roll with Viterbi and see how often we are right.

local FAIR, LOADED = 1, 2
local truth = plume.hmm{
  init  = {1, 0},                                -- the night starts with the fair die
  trans = {{0.95, 0.05},                         -- fair -> loaded 5% of rolls
           {0.10, 0.90}},                        -- loaded -> fair 10% of rolls
  emit  = {{1/6, 1/6, 1/6, 1/6, 1/6, 1/6},       -- fair die
           {0.1, 0.1, 0.1, 0.1, 0.1, 0.5}},      -- loaded die: half the rolls are sixes
}
print("the casino:")
print(truth)

local dice, rolls = truth:sample(10000, 2024)

-- A rough guess: "there might be a loaded die that likes sixes a bit, used now and then".
local guess = plume.hmm{
  init  = {0.5, 0.5},
  trans = {{0.8, 0.2}, {0.2, 0.8}},
  emit  = {{0.17, 0.17, 0.17, 0.17, 0.17, 0.15},
           {0.15, 0.15, 0.15, 0.15, 0.15, 0.25}},
}
local fit, trace = guess:fit(rolls, {iters = 500, tol = 1e-8})
print(string.format("\nBaum-Welch: %d iterations, log-likelihood %.2f -> %.2f (it never decreases)",
                    #trace - 1, trace[1], trace[#trace]))

-- EM does not know which state we called "loaded": it is the one that likes sixes.
local loaded = fit.emit[2][6] > fit.emit[1][6] and 2 or 1
local fair = 3 - loaded
print("\nfitted vs true:")
print(string.format("  p(fair -> loaded) %.3f (true 0.050)   p(loaded -> fair) %.3f (true 0.100)",
                    fit.trans[fair][loaded], fit.trans[loaded][fair]))
local function row(p) local t = {} for i = 1, 6 do t[i] = string.format("%.3f", p[i]) end return table.concat(t, " ") end
print("  fair die   " .. row(fit.emit[fair]) .. "   (true 0.167 each)")
print("  loaded die " .. row(fit.emit[loaded]) .. "   (true 0.1 ... 0.5)")

-- Decode with the fitted model, and with the truth for comparison.
local path = fit:viterbi(rolls)
local tpath = truth:viterbi(rolls)
local hits, thits = 0, 0
for t = 1, #rolls do
  if (path[t] == loaded and LOADED or FAIR) == dice[t] then hits = hits + 1 end
  if tpath[t] == dice[t] then thits = thits + 1 end
end
print(string.format("\nViterbi decoding accuracy: %.1f%% with the fitted model, %.1f%% with the true one",
                    100 * hits / #rolls, 100 * thits / #rolls))

-- Smoothed probability that the loaded die was in use, for the first rolls.
local post = fit:posterior(rolls)
local function strip(from, to, f) local s = {} for t = from, to do s[#s + 1] = f(t) end return table.concat(s) end
print("\nfirst 60 rolls:")
print("  rolls    " .. strip(1, 60, function(t) return tostring(rolls[t]) end))
print("  die      " .. strip(1, 60, function(t) return dice[t] == LOADED and "L" or "F" end))
print("  viterbi  " .. strip(1, 60, function(t) return path[t] == loaded and "L" or "F" end))
print("  p(L)>0.5 " .. strip(1, 60, function(t) return post[t][loaded] > 0.5 and "L" or "F" end))

-- How predictable is the next roll? The Bayes-optimal predictor's log-loss against the fair-die baseline.
local pr = truth:predict(rolls)
print(string.format("\nnext-roll prediction with the true model: log-loss %.4f nats/roll (fair die: %.4f), accuracy %.3f",
                    pr.logloss, math.log(6), pr.accuracy))
print(string.format("stationary share of the loaded die %.3f; entropy rate of the die chain %.4f nats/roll",
                    truth:stationary()[LOADED], truth:entropy_rate()))
