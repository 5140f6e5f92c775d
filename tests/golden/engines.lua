-- engines.lua -- golden outputs of the model-program engines: fixed-seed draws (CSV) and printed logz/means of
-- plume.infer "prior", "is", "mh" (1 and 2 threads, init, thin), plume.smc (standard, steer) and plume.beam,
-- on a conjugate model, a trans-dimensional one, a discrete one, one with a support-dependent site and one
-- with an n-gram LM. Refactors of the engine layer must reproduce them byte for byte.
-- usage: build/plume --quiet tests/golden/engines.lua OUTDIR   (then diff -r OUTDIR against a reference)
local out = assert(arg and arg[1], "usage: engines.lua OUTDIR")
local D = plume.dist
local log = assert(io.open(out .. "/summary.txt", "w"))
local function note(name, post)
  post:write_csv(out .. "/" .. name .. ".csv")
  local s = post:summary()
  local parts = { name }
  if post.logz then parts[#parts + 1] = string.format("logz=%.17g", post.logz) end
  for _, site in ipairs(post:sites()) do
    parts[#parts + 1] = site .. "=" .. (s[site].mean and string.format("%.17g", s[site].mean) or "none")
  end
  if post.accept_rate then
    for c, a in ipairs(post.accept_rate) do parts[#parts + 1] = string.format("acc%d=%.17g", c, a) end
  end
  if post.values then
    for i = 1, post.values.n or #post.values do
      local v = post.values[i]
      if type(v) == "table" then v = table.concat(v, " ") end
      parts[#parts + 1] = "v" .. i .. "=" .. tostring(v)
    end
  end
  if post.log_weights then
    for i, w in ipairs(post.log_weights) do parts[#parts + 1] = string.format("lw%d=%.17g", i, w) end
  end
  for _, k in ipairs { "ess", "resamples", "steps", "rejected" } do
    if post[k] then parts[#parts + 1] = string.format("%s=%.17g", k, post[k]) end
  end
  if post.ess_history then
    local h = {}
    for i, e in ipairs(post.ess_history) do h[i] = string.format("%.17g", e) end
    parts[#parts + 1] = "essh=" .. table.concat(h, ",")
  end
  log:write(table.concat(parts, " "), "\n")
end

local normal = plume.model(function(m, ys)
  local mu = m:sample("mu", D.normal(0, 2))
  local sigma = m:sample("sigma", D.halfnormal(1))
  for i, y in ipairs(ys) do m:observe("y" .. i, D.normal(mu, sigma), y) end
  m:deterministic("mu2", mu * mu)
  return mu
end)
local ys = { 0.3, 1.2, -0.4, 0.8, 1.9, 0.1 }

local transdim = plume.model(function(m)
  local k = m:sample("k", D.poisson(1.5))
  local s = 0
  for i = 1, k + 1 do s = s + m:sample("x" .. i, D.normal(0, 1)) end
  m:observe("y", D.normal(s, 1), 1.5)
  m:deterministic("ks", { k, s })
end)

local discrete = plume.model(function(m)
  local z = m:sample("z", D.categorical { 0.2, 0.3, 0.5 })
  local b = m:sample("b", D.bernoulli(0.3))
  m:observe("y", D.poisson(z + 2 * b + 0.5), 3)
  m:factor(-0.1 * z)
  return z
end)

local support = plume.model(function(m)
  local a = m:sample("a", D.uniform(0, 1))
  local b = m:sample("b", D.uniform(0, 1 - a))
  m:observe("y", D.normal(a + b, 0.3), 0.7)
end)

local mvn = plume.model(function(m)
  local x = m:sample("x", D.mvnormal({ 0, 0 }, { { 1, 0.5 }, { 0.5, 1 } }))
  local p = m:sample("p", D.dirichlet { 1, 2, 3 })
  m:observe("y", D.normal(x[1] + x[2] + p[1], 1), 0.5)
end)

for _, meth in ipairs { "prior", "is" } do
  note(meth .. "_normal", plume.infer(normal, ys, { method = meth, samples = 400, seed = 7 }))
  note(meth .. "_transdim", plume.infer(transdim, nil, { method = meth, samples = 400, seed = 8 }))
  note(meth .. "_discrete", plume.infer(discrete, nil, { method = meth, samples = 300, seed = 9 }))
  note(meth .. "_support", plume.infer(support, nil, { method = meth, samples = 300, seed = 10 }))
end
for _, th in ipairs { 1, 2 } do
  local t = "_t" .. th
  note("mh_normal" .. t, plume.infer(normal, ys, { samples = 300, warmup = 200, chains = 3, seed = 7, threads = th }))
  note("mh_normal_init_thin" .. t, plume.infer(normal, ys, { samples = 300, warmup = 100, chains = 2, seed = 3,
    threads = th, thin = 3, init = function(c) return { mu = c - 1.5, sigma = c } end }))
  note("mh_transdim" .. t, plume.infer(transdim, nil, { samples = 300, warmup = 200, chains = 2, seed = 8, threads = th }))
  note("mh_discrete" .. t, plume.infer(discrete, nil, { samples = 300, warmup = 100, chains = 2, seed = 9, threads = th }))
  note("mh_support" .. t, plume.infer(support, nil, { samples = 300, warmup = 100, chains = 2, seed = 10, threads = th }))
  note("mh_mvn" .. t, plume.infer(mvn, nil, { samples = 200, warmup = 100, chains = 2, seed = 12, threads = th }))
end
note("mh_output", plume.infer(transdim, nil, { samples = 100, warmup = 50, chains = 2, seed = 4,
  output = out .. "/mh_output_stream.csv" }))

local walk = plume.model(function(m, T)
  local x = 0
  for t = 1, T do
    x = m:sample("x" .. t, D.normal(x, 1))
    m:observe("y" .. t, D.normal(x, 1), math.sin(t / 3) * 2)
  end
  return x
end)
note("smc_walk", plume.smc(walk, { 12 }, { particles = 200, seed = 5 }))
note("smc_walk_stratified", plume.smc(walk, { 8 }, { particles = 100, seed = 6, resample = "stratified" }))
note("smc_steer", plume.smc(walk, { 6 }, { particles = 20, seed = 5, method = "steer", extensions = 3 }))
note("smc_transdim", plume.smc(transdim, nil, { particles = 300, seed = 3 }))
note("beam_discrete", plume.beam(discrete, nil, { beams = 4 }))

local lm = plume.lm.ngram.train { text = "a b c a b a c b a a b c c a d a b d", order = 2 }
local lmprog = plume.model(function(m)
  local ctx = lm:context("a")
  local toks = {}
  for i = 1, 4 do
    local t = m:sample("t" .. i, ctx:next_token())
    toks[#toks + 1] = t
  end
  m:factor(toks[1] == toks[2] and -1 or 0)
  return toks
end)
note("smc_lm", plume.smc(lmprog, nil, { particles = 30, seed = 2 }))
note("beam_lm", plume.beam(lmprog, nil, { beams = 3 }))
note("is_lm", plume.infer(lmprog, nil, { method = "is", samples = 50, seed = 2 }))
note("mh_lm", plume.infer(lmprog, nil, { samples = 50, warmup = 20, chains = 2, seed = 2 }))
log:close()
print("golden outputs written to " .. out)
