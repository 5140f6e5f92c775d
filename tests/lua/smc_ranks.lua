-- smc_ranks.lua -- plume.smc over programs whose particles the MPI tests spread over ranks (tests/cli/mpi_smc*.sh):
-- `plume smc_ranks.lua MIGRATE CSV` runs four programs on a 7-token n-gram model -- an LM program with a
-- potential, a continuous latent and an observation; the same twisted (ctx:twist); conditional SMC with a pinned
-- path; a program with categorical labels, a Dirichlet vector, deterministic sites, table return values, dead
-- particles and rejections -- with option migrate = MIGRATE ("needed", "all" or "perturb"), and prints every
-- result a run gives (logz and its history, ESS, step counts, each particle's return value, log weight and
-- draws) with 17 digits. Rank 0 prints them to stdout and writes the first run's draws to CSV; every rank r
-- writes one line "R<r> <lines> <checksum> moved <records it sent>" to stderr, so that a test can compare every
-- rank's view with a one-rank run's. With the global SMC_RANKS_LIB set, dofile returns run(migrate, csv) ->
-- lines, records sent (tests/lua/test_smc_migrate.lua).
local D = plume.dist
local lm = plume.lm.ngram.train { text = "a b c a b a c b a a b c c a d a b d", order = 2 }
local A, Dt = lm:tokenize("a")[1], lm:tokenize("d")[1]

local story = plume.model(function(m, lm, prompt)
  local ctx = lm:context(prompt)
  for t = 1, 6 do
    local tok = m:sample("tok" .. t, ctx:next_token())
    if lm:is_eos(tok) then break end
    m:factor(tok == A and 0.7 or -0.2)
  end
  local x = m:sample("x", D.normal(0, 1))
  m:observe("y", D.normal(x, 1), 0.3)
  return ctx:text()
end)

local gen = plume.model(function(m, lm)
  local ctx = lm:context("b")
  for t = 1, 4 do
    local tok = m:sample("tok" .. t, ctx:next_token())
    if lm:is_eos(tok) then break end
  end
  return ctx:text()
end)
local function has_d(prefix, v)
  local seq = { table.unpack(prefix) }
  if not lm:is_eos(v) then seq[#seq + 1] = v end
  for _, u in ipairs(seq) do if u == Dt then return 0 end end
  return math.log(0.05)
end
local crude = plume.twist { max_tokens = 4, phi = has_d,
  batch = function(prefix)
    local r = {}
    for v = 0, lm.n_vocab - 1 do r[v + 1] = v == Dt and 0 or -1 end
    return r
  end }

local mixed = plume.model(function(m, n)
  local out = { k = {}, det = 0 }
  for t = 1, n do
    local k = m:sample("k" .. t, D.categorical { 0.2, 0.3, 0.5 })
    local p = m:sample("p" .. t, D.dirichlet { 1, 2, 3 })
    out.det = out.det + p[k]
    m:deterministic("d" .. t, out.det)
    if k == 1 and t == 2 then m:factor(-math.huge) end          -- some particles die
    local s = m:sample("s" .. t, D.normal(0, 1))
    m:observe("o" .. t, D.normal(s, s > 2 and -1 or 1), 0.5)  -- sigma < 0 rejects (s > 2 is rare)
    out.k[t] = k
  end
  return out
end)

local function show(v)
  if type(v) ~= "table" then return type(v) == "number" and string.format("%.17g", v) or string.format("%q", tostring(v)) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = tostring(k) .. "=" .. show(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function run(migrate, csv)
  local lines, moved = {}, 0
  local function report(name, post)
    local h = {}
    moved = moved + (post.records_sent or 0)
    for i, z in ipairs(post.logz_history) do h[i] = string.format("%.17g", z) end
    lines[#lines + 1] = string.format("%s logz %.17g ess %.17g steps %d resamples %d rejected %d particles %d", name,
      post.logz, post.ess, post.steps, post.resamples, post.rejected, post.particles)
    lines[#lines + 1] = name .. " logz_history " .. table.concat(h, " ")
    for i = 1, post.particles do
      lines[#lines + 1] = string.format("%s %d %s %.17g", name, i, show(post.values[i]), post.log_weights[i])
    end
    for _, site in ipairs(post:sites()) do   -- the draws: every recorded choice of every particle
      local d, v = post:draws(site), {}
      for i = 1, post.particles do v[i] = show(d[i]) end
      lines[#lines + 1] = name .. " draws " .. site .. " " .. table.concat(v, " ")
    end
  end

  local o = { seed = 3, migrate = migrate, ess_threshold = 0.8, quiet = true }
  o.particles = 50
  local post = plume.smc(story, { lm, "b" }, o)
  report("story", post)
  if csv and plume.mpi.rank == 0 then post:write_csv(csv) end
  report("twisted", plume.smc(gen, { lm }, { particles = 24, seed = 5, twist = crude, migrate = migrate, ess_threshold = 1, quiet = true }))
  report("pinned", plume.smc(gen, { lm }, { particles = 9, seed = 9, twist = crude, migrate = migrate, quiet = true,
    pin = { tok1 = Dt, tok2 = A, tok3 = lm.eos[1] } }))
  report("mixed", plume.smc(mixed, { 3 }, { particles = 40, seed = 11, migrate = migrate, ess_threshold = 1, quiet = true }))
  return lines, moved
end
if SMC_RANKS_LIB then return run end

local lines, moved = run(arg[1] or "needed", arg[2])
local text = table.concat(lines, "\n")
if plume.mpi.rank == 0 then print(text) end
local h = 2166136261                      -- FNV-1a over the text's bytes
for i = 1, #text do h = ((h ~ text:byte(i)) * 16777619) & 0xffffffff end
io.stderr:write(string.format("R%d %d %08x moved %d\n", plume.mpi.rank, #lines, h, moved))
