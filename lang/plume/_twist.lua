-- plume._twist: evidence bounds for SMC over programs -- plume.bounds(model, args, opts). The SMC estimate of
-- log Z is a lower bound in expectation; conditional SMC with an exact target sample pinned gives an upper bound
-- in expectation (Zhao et al. 2024, after Grosse et al.'s bidirectional Monte Carlo). With one particle the same
-- two runs give E_q[log w] and E_sigma[log w], which sandwich KL(q || sigma) and KL(sigma || q).
return function(plume)
  local options = { particles = true, runs = true, seed = true, twist = true, proposal = true, exact = true,
    max_tries = true, resample = true, ess_threshold = true }

  -- a uniform in (0, 1) from (seed, i), independent of plume's default stream (splitmix64)
  local function uniform(seed, i)
    local z = (seed * 0x9E3779B97F4A7C15 + i * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ~ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ~ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z = z ~ (z >> 31)
    return ((z >> 11) + 0.5) / 9007199254740992.0
  end

  local function mean_se(xs)
    local n, s, s2 = #xs, 0, 0
    for _, x in ipairs(xs) do s = s + x end
    local m = s / n
    for _, x in ipairs(xs) do s2 = s2 + (x - m) ^ 2 end
    return { mean = m, se = n > 1 and math.sqrt(s2 / (n - 1) / n) or 0, values = xs }
  end

  -- the latent choices of particle 1 of a one-particle run, as {address = value}
  local function choices(post)
    local pin = {}
    for _, name in ipairs(post._draws:columns()) do
      local v = post:draws(name)[1]
      if v == v then pin[name] = v end
    end
    return pin
  end

  --- plume.bounds(model, args, {particles = 100, runs = 20, seed =, twist =, proposal =, exact = "rejection" |
  --- function(i) -> {address = value}, max_tries = 1e5}) -> {lower =, upper =, kl_q_sigma =, kl_sigma_q =}
  function plume.bounds(model, args, opts)
    opts = opts or {}
    if type(opts) ~= "table" then error("plume.bounds: options must be a table (got " .. type(opts) .. ")", 2) end
    for k in pairs(opts) do
      if not options[k] then
        local names = {}
        for n in pairs(options) do names[#names + 1] = n end
        table.sort(names)
        error("plume.bounds: unknown option '" .. tostring(k) .. "' (options: " .. table.concat(names, ", ") .. ")", 2)
      end
    end
    local N, R = opts.particles or 100, opts.runs or 20
    local seed = opts.seed or math.floor(plume.dist.uniform(0, 1):sample() * 2 ^ 31)
    local exact, max_tries = opts.exact or "rejection", opts.max_tries or 100000
    if math.type(R) ~= "integer" or R < 2 then error("plume.bounds: runs must be an integer >= 2 (got " .. tostring(R) .. ")", 2) end
    if exact ~= "rejection" and type(exact) ~= "function" then
      error("plume.bounds: exact must be \"rejection\" or a function(i) -> {address = value} (got " .. tostring(exact) .. ")", 2)
    end
    local function run(n, s, pin, prop)
      return plume.smc(model, args, { particles = n, seed = s, twist = opts.twist, proposal = prop or opts.proposal,
        pin = pin, quiet = true, resample = opts.resample, ess_threshold = opts.ess_threshold })
    end
    -- exact samples of sigma ∝ p0 phi: by rejection, proposing from p0 (the twist weights then telescope to
    -- log phi, which must be <= 0), or from the user
    local tries = 0
    local function exact_sample(i)
      if exact ~= "rejection" then return exact(i) end
      while true do
        tries = tries + 1
        if tries > max_tries then
          error(string.format("plume.bounds: no exact sample after %d proposals by rejection (raise max_tries, or give exact =)", max_tries), 3)
        end
        local post = run(1, seed * 7919 + 1000003 + tries, nil, opts.twist and "p0" or nil)
        if post.logz > 1e-9 then
          error(string.format("plume.bounds: rejection needs phi <= 1, but a text has log phi = %g (give exact =)", post.logz), 3)
        end
        if math.log(uniform(seed, tries)) < post.logz then return choices(post) end
      end
    end
    local lower, upper, wq, wsig = {}, {}, {}, {}
    for i = 1, R do
      local pin = exact_sample(i)
      lower[i] = run(N, seed + i).logz
      upper[i] = run(N, seed + R + i, pin).logz
      wq[i] = run(1, seed + 2 * R + i).logz
      wsig[i] = run(1, seed + 3 * R + i, pin).logz
    end
    local res = { lower = mean_se(lower), upper = mean_se(upper), log_w_q = mean_se(wq), log_w_sigma = mean_se(wsig),
      particles = N, runs = R, proposals = exact == "rejection" and tries or nil }
    res.kl_q_sigma = { lo = math.max(0, res.lower.mean - res.log_w_q.mean), hi = res.upper.mean - res.log_w_q.mean }
    res.kl_sigma_q = { lo = math.max(0, res.log_w_sigma.mean - res.upper.mean), hi = res.log_w_sigma.mean - res.lower.mean }
    return setmetatable(res, { __tostring = function(r)
      return string.format("log Z in [%.4f ± %.4f, %.4f ± %.4f]  KL(q||sigma) in [%.3f, %.3f]  KL(sigma||q) in [%.3f, %.3f]",
        r.lower.mean, r.lower.se, r.upper.mean, r.upper.se, r.kl_q_sigma.lo, r.kl_q_sigma.hi, r.kl_sigma_q.lo, r.kl_sigma_q.hi)
    end })
  end

  --- plume.twist.distil(lm, {prompt = "", states = 16, samples = 1000, max_tokens = 16, seed = 1, iters = 30,
  --- restarts = 1}) -> hmm, loglik trace: an HMM over lm's tokens (symbol v + 1 = token v) fitted by Baum-Welch to
  --- texts sampled from lm after prompt, each padded with EOS to max_tokens (so EOS is absorbing), as GeLaTo does
  local distil_options = { prompt = true, states = true, samples = true, max_tokens = true, seed = true, iters = true,
    restarts = true }
  function plume.twist.distil(lm, opts)
    opts = opts or {}
    for k in pairs(opts) do
      if not distil_options[k] then error("plume.twist.distil: unknown option '" .. tostring(k) .. "'", 2) end
    end
    local K, n, T = opts.states or 16, opts.samples or 1000, opts.max_tokens or 16
    local seed, prompt = opts.seed or 1, opts.prompt or ""
    if not lm.eos[1] then error("plume.twist.distil: the model has no EOS token to pad with", 2) end
    local V, eos = lm.n_vocab, lm.eos[1]
    local data, counts = {}, {}
    for v = 1, V do counts[v] = 0.01 end
    for i = 1, n do
      local text, _, why = lm:sample_text(prompt, { max_tokens = T, seed = seed * 1000003 + i })
      local toks = text == "" and {} or lm:tokenize(text)
      local y = {}
      for t = 1, math.min(#toks, T) do y[t] = toks[t] + 1 end
      while #y < T do y[#y + 1] = eos + 1 end
      for _, s in ipairs(y) do counts[s] = counts[s] + 1 end
      data[i] = y
    end
    -- start: every state emits the corpus unigram, perturbed differently per state; transitions near uniform
    local init, trans, emit = {}, {}, {}
    for k = 1, K do
      init[k] = 1 / K
      trans[k], emit[k] = {}, {}
      local tsum, esum = 0, 0
      for j = 1, K do trans[k][j] = 1 + uniform(seed, k * 7919 + j); tsum = tsum + trans[k][j] end
      for j = 1, K do trans[k][j] = trans[k][j] / tsum end
      for v = 1, V do emit[k][v] = counts[v] * (0.5 + uniform(seed + 17, k * 104729 + v)); esum = esum + emit[k][v] end
      for v = 1, V do emit[k][v] = emit[k][v] / esum end
    end
    local h = plume.hmm { init = init, trans = trans, emit = emit }
    return h:fit(data, { iters = opts.iters or 30, restarts = opts.restarts or 1, seed = seed, tol = 1e-4 })
  end
end