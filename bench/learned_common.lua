-- learned_common.lua -- shared parts of the learned-proposal experiments (issue 16): CPU clock, the learned
-- kernel when this build has it, and the grid Bayesian network of bench/learned_grid.lua (also used by
-- tests/lua/test_grid_bn_gibbs.lua). Times are CPU seconds (os.clock): the machine is shared, and one chain on
-- one thread is what is compared.
local D = plume.dist
local M = {}

M.cpu = os.clock

-- arg list -> short mode flag and the remaining args
function M.args(arg)
  local short, rest = false, {}
  for _, a in ipairs(arg or {}) do
    if a == "--short" then short = true else rest[#rest + 1] = a end
  end
  return short, rest
end

-- plume.kernel.learned{library =, motifs =} when this build has it (issue 16's core, branch lp-core), else nil
-- and the reason, so every other column of the experiments runs without it
function M.learned_kernel(motifs, extra)
  if not (plume.kernel and plume.kernel.learned) then return nil, "plume.kernel.learned is not in this build" end
  local opts = { library = "stdlib/proposals", motifs = motifs }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local ok, k = pcall(plume.kernel.learned, opts)
  if not ok then return nil, tostring(k) end
  return k
end

-- sweeps that fill `budget` CPU seconds for a run costing time_of(n) seconds for n sweeps: the cost per sweep
-- and the fixed cost (compiling, starts) from two pilot runs, n and 5 n sweeps, n grown until the first takes 5% of
-- the budget; the fixed cost is part of the budget
function M.calibrate(time_of, budget)
  local n = 20
  local t1 = time_of(n)
  while t1 < 0.05 * budget and n < 1e6 do n = n * 4; t1 = time_of(n) end
  local t5 = time_of(5 * n)
  local per = (t5 - t1) / (4 * n)
  if not (per > 0.2 * t5 / (5 * n)) then per = t5 / (5 * n) end   -- noise swamped the difference
  local fixed = math.max(t1 - n * per, 0)
  return math.min(1e7, math.max(16, math.floor((budget - fixed) / per)))
end

function M.commit()
  local p = io.popen("git rev-parse --short HEAD 2>/dev/null")
  local h = p and p:read("l") or "?"
  if p then p:close() end
  return h or "?"
end

---------------------------------------------------------------------------------------------------------------
-- Grid Bayesian network: R x C binary nodes, node v = (i - 1) C + j, parents up and left. cpt[4 (v - 1) + 2 up
-- + left + 1] = P(x_v = 1 | up, left). `sharp` > 0 pushes CPT entries towards 0 and 1 (entries u^(1 + sharp)
-- or 1 - u^(1 + sharp), u uniform): near-deterministic CPTs are where single-site Gibbs mixes slowly.
function M.grid_problem(R, C, seed, opts)
  opts = opts or {}
  local sharp, frac = opts.sharp or 1, opts.observed or 0.2
  math.randomseed(seed)
  local cpt, ev = {}, {}
  for i = 1, 4 * R * C do
    local p = math.random() ^ (1 + sharp)
    cpt[i] = math.random() < 0.5 and p or 1 - p
    cpt[i] = math.min(math.max(cpt[i], 1e-3), 1 - 1e-3)
  end
  -- evidence: a forward sample of the network at a random fraction of the nodes (so it is probable)
  local x = M.grid_forward(R, C, cpt, nil)
  for v = 1, R * C do
    if math.random() < frac then ev[v] = x[v] end
  end
  return { R = R, C = C, cpt = cpt, ev = ev }
end

-- one forward (ancestral) sample of every node, evidence imposed where given; math.random's stream
function M.grid_forward(R, C, cpt, ev)
  local x = {}
  for i = 1, R do
    for j = 1, C do
      local v = (i - 1) * C + j
      local up = i > 1 and x[v - C] or 0
      local left = j > 1 and x[v - 1] or 0
      local p = cpt[4 * (v - 1) + 2 * up + left + 1]
      x[v] = (ev and ev[v]) or (math.random() < p and 1 or 0)
    end
  end
  return x
end

-- the model: x_v ~ bernoulli(P(x_v = 1 | up, left)), the CPT lookup written multilinearly in the parents so
-- that it traces (a static program: single-site Gibbs enumerates each node natively)
M.grid_model = plume.model(function(m, d)
  local x, C = {}, d.C
  for i = 1, d.R do
    for j = 1, C do
      local v = (i - 1) * C + j
      local up = i > 1 and x[v - C] or 0
      local left = j > 1 and x[v - 1] or 0
      local b = 4 * (v - 1)
      local c0, c1, c2, c3 = d.cpt[b + 1], d.cpt[b + 2], d.cpt[b + 3], d.cpt[b + 4]
      local p = c0 + (c1 - c0) * left + (c2 - c0) * up + (c3 - c2 - c1 + c0) * up * left
      if d.ev[v] then
        m:observe("x" .. v, D.bernoulli(p), d.ev[v])
        x[v] = d.ev[v]
      else
        x[v] = m:sample("x" .. v, D.bernoulli(p))
      end
    end
  end
end)

function M.grid_exact(d)
  return plume.markov.grid_bn_exact{ rows = d.R, cols = d.C, cpt = d.cpt, evidence = d.ev }
end

-- init(chain): a forward sample with the evidence imposed (math.random seeded by base + chain), latent nodes only
function M.grid_init(d, base)
  return function(chain)
    math.randomseed(base + chain)
    local x, t = M.grid_forward(d.R, d.C, d.cpt, d.ev), {}
    for v = 1, d.R * d.C do
      if not d.ev[v] then t["x" .. v] = x[v] end
    end
    return t
  end
end

-- mean over latent nodes of |p_hat - p| (the total variation distance of each binary marginal), for the first
-- n draws of chain c (draws of a site come chains concatenated, S per chain)
function M.grid_tv(post, d, exact, chains, S, checkpoints)
  local sum = {}
  for c = 1, chains do sum[c] = {} for k = 1, #checkpoints do sum[c][k] = 0 end end
  local latent = 0
  for v = 1, d.R * d.C do
    if not d.ev[v] then
      latent = latent + 1
      local dr = post:draws("x" .. v)
      for c = 1, chains do
        local acc, k, off = 0, 1, (c - 1) * S
        for n = 1, S do
          acc = acc + dr[off + n]
          while k <= #checkpoints and n == checkpoints[k] do
            sum[c][k] = sum[c][k] + math.abs(acc / n - exact[v]); k = k + 1
          end
        end
      end
    end
  end
  local out = {}
  for k = 1, #checkpoints do
    local t, lo, hi = 0, math.huge, -math.huge
    for c = 1, chains do
      local e = sum[c][k] / latent
      t, lo, hi = t + e, math.min(lo, e), math.max(hi, e)
    end
    out[k] = { mean = t / chains, lo = lo, hi = hi }
  end
  return out
end

return M
