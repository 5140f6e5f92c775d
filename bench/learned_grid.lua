-- learned_grid.lua -- issue 16, experiment 2: grid Bayesian networks of binary nodes (10x10 and 15x15, random
-- CPTs pushed towards 0 and 1, each node's parents its up and left neighbours, 20% of the nodes observed at a
-- forward sample). Exact marginals by runtime/markov/bn_exact.c (frontier forward-backward); the mean total
-- variation |p_hat - p| over latent nodes of the running marginal estimates of each method at equal CPU time:
-- single-site Gibbs (method "gibbs", native enumeration) against the learned 2x2-block proposals
-- (plume.kernel.learned{motifs = {"grid"}}, MH with the exact ratio) alone and cycled with a Gibbs sweep.
-- Every method: the same chains (seed 1, chain c on stream c, one thread), the same starts (a forward sample per
-- chain), no warm-up, run for about 1.3 times the CPU budget per chain (pilots) and read at equal CPU time: TV after
-- the sweeps each run had made at 1/8, 1/4, 1/2 and all of the budget (L.timed_run: the run's own cost per sweep,
-- the pilots' fixed cost included in the budget), the mean over chains [min, max]. "sweeps" is the sweeps in the
-- budget, "cpu/chain" the whole run's CPU per chain. The last row ("gibbs, =sweeps") is Gibbs's TV after as many
-- sweeps as the last learned method made in the budget: efficiency per sweep, not per second.
-- usage: build/plume bench/learned_grid.lua [--short] [seed]   (--short: small budgets; its numbers are not results;
-- seed, default 1: the chains' seed, and the starts' forward samples from math.random seeded 100 seed + chain; the grids stay)
local L = dofile("bench/learned_common.lua")
local short, rest = L.args(arg)
local seed = math.tointeger(tonumber(rest[1] or "1")) or error("learned_grid: the seed must be an integer (got " .. tostring(rest[1]) .. ")")
local K = plume.kernel
local budget = short and 0.15 or 3.0      -- CPU seconds per chain
local chains = short and 2 or 4
local sizes = short and { { 6, 6 }, { 10, 10 } } or { { 10, 10 }, { 15, 15 } }
local fracs = { 1 / 8, 1 / 4, 1 / 2, 1 }

local function methods()
  local list = { { name = "gibbs", opts = { method = "gibbs" } } }
  local lk, why = L.learned_kernel({ "grid" })
  if lk then
    list[#list + 1] = { name = "learned", opts = { kernel = lk } }
    list[#list + 1] = { name = "learned+gibbs", opts = { kernel = K.cycle{ K.gibbs{}, L.learned_kernel({ "grid" }) } } }
  else
    list[#list + 1] = { name = "learned", skip = why }
  end
  return list
end

local function run(d, opts, samples, nchains, init)
  local o = { samples = samples, warmup = 0, chains = nchains, seed = seed, threads = 1, quiet = true, init = init }
  for k, v in pairs(opts) do o[k] = v end
  local t0 = L.cpu()
  local post = plume.infer(L.grid_model, d, o)
  return post, L.cpu() - t0
end

print(string.format("learned_grid (commit %s)%s: seed %d, CPU budget %.2f s per chain, %d chains, TV = mean |p_hat - p| over latent nodes",
  L.commit(), short and " --short" or "", seed, budget, chains))
-- the problems: the sizes above with CPT entries u^2 or 1 - u^2, then a harder regime (an extra table, the first
-- ones kept as they were): CPT entries u^5 or 1 - u^5, near-deterministic couplings where single-site Gibbs mixes
-- slowly (entries clamped to [1e-3, 1 - 1e-3] as always)
local problems = {}
for _, rc in ipairs(sizes) do problems[#problems + 1] = { rc[1], rc[2], 1, "" } end
problems[#problems + 1] = { short and 6 or 10, short and 6 or 10, 4, " (harder: CPT entries u^5 or 1 - u^5)" }
for _, pr in ipairs(problems) do
  local R, C, sharp, what = pr[1], pr[2], pr[3], pr[4]
  local d = L.grid_problem(R, C, 2026 + R, { sharp = sharp })
  local t0 = L.cpu()
  local exact = L.grid_exact(d)
  local texact = L.cpu() - t0
  local latent = 0
  for v = 1, R * C do if not d.ev[v] then latent = latent + 1 end end
  print(string.format("\n%dx%d grid%s: %d latent, %d observed; exact marginals in %.3f s", R, C, what, latent, R * C - latent, texact))
  print(string.format("%-14s %8s %9s %7s %22s %22s %22s %22s", "method", "sweeps", "cpu/chain", "us/swp",
    "TV@1/8", "TV@1/4", "TV@1/2", "TV@1"))
  local gibbs, last
  for _, m in ipairs(methods()) do
    if m.skip then
      print(string.format("%-14s  n/a: %s", m.name, m.skip))
    else
      local r = L.timed_run(function(n) local _, t = run(d, m.opts, n, 1, L.grid_init(d, 100 * seed)); return t end,
        function(n) return run(d, m.opts, n, chains, L.grid_init(d, 100 * seed)) end, budget, chains)
      local cps, short_run = {}, false
      for k, f in ipairs(fracs) do
        local n, sh = r.at(f * budget)
        cps[k], short_run = n, short_run or sh
      end
      local tv = L.grid_tv(r.post, d, exact, chains, r.S, cps)
      local cells = {}
      for k = 1, #fracs do cells[k] = string.format("%.4f [%.4f,%.4f]", tv[k].mean, tv[k].lo, tv[k].hi) end
      r.cps = cps
      if m.name == "gibbs" then gibbs = r else last = r end
      local acc = L.learned_acc(r.post)
      print(string.format("%-14s %8d %9.2f %7.1f %22s %22s %22s %22s%s%s", m.name, cps[#cps], r.t, 1e6 * r.per, cells[1],
        cells[2], cells[3], cells[4], acc and string.format("  accept %.3f", acc) or "",
        short_run and "  (run ended before the budget: TV read at its end)" or ""))
    end
  end
  -- per sweep rather than per second: Gibbs's running estimate after as many sweeps as the last learned method made
  -- in the budget
  if gibbs and last and last.cps[#fracs] < gibbs.S then
    local cps = {}
    for k = 1, #fracs do cps[k] = math.min(last.cps[k], gibbs.S) end
    local tv = L.grid_tv(gibbs.post, d, exact, chains, gibbs.S, cps)
    local cells = {}
    for k = 1, #fracs do cells[k] = string.format("%.4f [%.4f,%.4f]", tv[k].mean, tv[k].lo, tv[k].hi) end
    print(string.format("%-14s %8d %9s %7s %22s %22s %22s %22s", "gibbs, =sweeps", cps[#fracs], "-", "-", table.unpack(cells)))
  end
end
