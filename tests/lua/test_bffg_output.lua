-- test_bffg_output.lua -- plume.bffg's option `output`: with method = "mcmc" every kept draw is appended to the CSV as
-- the chains make it (tests/cli/bffg_output.sh interrupts such a run and reads what it left), so the file read back
-- holds the posterior's draws exactly, column for column and chain for chain, on one thread or two; with methods
-- "is" and "smc" the weighted draws are written when the run ends; a path that cannot be written is an error naming it.
local T = dofile("tests/lua/check.lua")
package.path = "tests/lua/?.lua;" .. package.path
local OU = require "ou_theta"

local g = OU.chain(0.05)
local dir = os.tmpname()
os.remove(dir)
local function path(name) return dir .. "-" .. name end

-- every column of a posterior (its chains one after the other) against the file read back; returns the number of
-- values compared
local function same_draws(post, file)
  local back = plume.read_posterior(file)
  local n = 0
  for _, col in ipairs { "theta", "x0", "x1", "x2", "x3", "x4" } do
    local a, b = post:draws(col), back:draws(col)
    T.eq(#b, #a, col .. ": draws")
    for i = 1, #a do
      if a[i] ~= b[i] then error(string.format("%s draw %d: %.17g in the file, %.17g in the posterior", col, i, b[i], a[i])) end
      n = n + 1
    end
  end
  return n
end

for _, threads in ipairs { 1, 2 } do
  T.test("mcmc output on " .. threads .. " thread(s): the streamed CSV holds the posterior's draws exactly", function()
    local file = path("mcmc" .. threads .. ".csv")
    local post = plume.bffg(g, nil, { method = "mcmc", samples = 200, warmup = 100, chains = 3, seed = 5, threads = threads,
      sde = OU.sde, params = { theta = plume.dist.uniform(0, 10) }, output = file })
    local n = same_draws(post, file)
    T.eq(n, 6 * 3 * 200, "values compared")
    -- the header and one line per draw, nothing else
    local lines = 0
    for _ in io.lines(file) do lines = lines + 1 end
    T.eq(lines, 1 + 3 * 200, "lines in the file")
    -- negative control: a chain with another seed differs from the file
    local other = plume.bffg(g, nil, { method = "mcmc", samples = 200, warmup = 100, chains = 3, seed = 6, threads = threads,
      sde = OU.sde, params = { theta = plume.dist.uniform(0, 10) } })
    T.ok(not pcall(same_draws, other, file), "another chain must not match the file")
    os.remove(file)
  end)
end

T.test("is and smc output: the weighted draws and their log weights, as write_csv gives them", function()
  for _, method in ipairs { "is", "smc" } do
    local file, ref = path(method .. ".csv"), path(method .. "-ref.csv")
    local post = plume.bffg(g, nil, { method = method, samples = 300, seed = 3, output = file })
    post:write_csv(ref)
    local a, b = io.open(file):read("a"), io.open(ref):read("a")
    T.ok(#a > 1000 and a == b, method .. ": the file must be write_csv's")
    T.ok(a:match("^chain,draw,.-,log_weight\n"), method .. ": header with log_weight")
    os.remove(file)
    os.remove(ref)
  end
end)

T.test("an output path that cannot be written is an error naming it", function()
  T.raises(function()
    plume.bffg(g, nil, { method = "mcmc", samples = 10, warmup = 10, chains = 1, sde = OU.sde,
      params = { theta = plume.dist.uniform(0, 10) }, output = "/nonexistent-dir/fit.csv" })
  end, "cannot open '/nonexistent-dir/fit.csv' for writing", "mcmc")
  T.raises(function() plume.bffg(g, nil, { samples = 10, output = "/nonexistent-dir/fit.csv" }) end,
    "/nonexistent-dir/fit.csv", "is")
  T.raises(function() plume.bffg(g, nil, { samples = 10, output = 5 }) end, "output", "not a string")
end)
