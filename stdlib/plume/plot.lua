-- plume.plot -- plots through gnuplot (Debian gnuplot-nox): posteriors (trace, rank, density, pair, forest),
-- Markov blocks (lgssm filter/smoother bands, hmm state posteriors as a heat strip, simulated ssm/sde paths)
-- and SMC runs (ESS and log normaliser per step).
--
-- Every function takes an options table last; `file = "x.svg" | "x.png" | "x.pdf"` writes that file (the type
-- comes from the extension) and returns the path; without `file` the plot is drawn as text (gnuplot's dumb
-- terminal) and returned as an object that prints itself, so the REPL shows it and a script can print it.
-- Common options: file, width, height (pixels for files, characters for text), title.
-- The data go to gnuplot as inline data blocks in one script; smoothing (kernel densities, histograms) is
-- done by gnuplot itself.
local plume = require "plume"

local plot = {}

local Text = { __name = "plume.textplot" }
Text.__index = Text
function Text.__tostring(t) return t.text end

local function shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function gp_string(s) return "'" .. tostring(s):gsub("'", "''") .. "'" end

local gnuplot_ok = {}
local function gnuplot(who)
  local cmd = os.getenv("PLUME_GNUPLOT") or "gnuplot"
  if gnuplot_ok[cmd] == nil then
    gnuplot_ok[cmd] = os.execute("command -v " .. shell_quote(cmd) .. " >/dev/null 2>&1") == true
  end
  if not gnuplot_ok[cmd] then
    error(who .. ": gnuplot not found (" .. cmd .. "); install the Debian package gnuplot-nox " ..
      "(apt-get install gnuplot-nox, or make deps)", 4)
  end
  return cmd
end

-- ---- numbers to text ----

local function num(x)
  if x ~= x or x == math.huge or x == -math.huge then return "NaN" end
  return string.format("%.10g", x)
end

-- A data block from columns of equal length (Lua tables or plume.arrays of numbers).
local function block(cols)
  local n, out = #cols[1], {}
  local row = {}
  for i = 1, n do
    for j = 1, #cols do row[j] = num(cols[j][i]) end
    out[i] = table.concat(row, " ", 1, #cols)
  end
  return table.concat(out, "\n")
end

-- ---- a figure: a gnuplot script with data blocks, run once ----

local Fig = {}
Fig.__index = Fig

local function figure(who, opts, panels)
  opts = opts or {}
  if type(opts) ~= "table" then error(who .. ": options must be a table (got " .. type(opts) .. ")", 3) end
  local f = setmetatable({ who = who, opts = opts, lines = {}, nblocks = 0, panels = panels or 1 }, Fig)
  return f
end

function Fig:add(s) self.lines[#self.lines + 1] = s end

-- Adds a data block; returns its name ($d1, ...).
function Fig:data(cols)
  self.nblocks = self.nblocks + 1
  local name = "$d" .. self.nblocks
  self:add(name .. " << EOD\n" .. block(cols) .. "\nEOD")
  return name
end

local terminals = {
  svg = function(w, h) return string.format("set terminal svg size %d,%d dynamic noenhanced background rgb 'white'", w, h) end,
  png = function(w, h) return string.format("set terminal pngcairo size %d,%d noenhanced", w, h) end,
  pdf = function(w, h) return string.format("set terminal pdfcairo size %gin,%gin noenhanced", w / 100, h / 100) end,
}

-- Runs the script; returns the file path, or a text plot.
function Fig:render()
  local o, who = self.opts, self.who
  local cmd = gnuplot(who)
  local head = {}
  local file = o.file
  if file ~= nil then
    if type(file) ~= "string" then error(who .. ": option 'file' must be a string path", 3) end
    local ext = file:match("%.(%w+)$")
    ext = ext and ext:lower()
    local term = terminals[ext or ""]
    if not term then
      error(who .. ": cannot tell the plot type from '" .. file .. "' (use a .svg, .png or .pdf file name)", 3)
    end
    head[1] = term(o.width or 800, o.height or (60 + 260 * self.panels))
    head[2] = "set output " .. gp_string(file)
  else
    head[1] = string.format("set terminal dumb size %d,%d noenhanced", o.width or 80,
      o.height or (4 + 20 * self.panels))
  end
  head[#head + 1] = "set datafile missing 'NaN'"
  -- in text the curves overwrite a key drawn inside the frame (draws that fill it hide "chain 2"): below it
  head[#head + 1] = file and "set key top right" or "set key below horizontal"
  local script = table.concat(head, "\n") .. "\n" .. table.concat(self.lines, "\n") .. "\n"
  -- under mpirun rank 0 writes plot files (text plots are made everywhere: only rank 0's stdout shows them)
  if file and not plume.mpi.is_root then return file end
  local sfile, efile = os.tmpname(), os.tmpname()
  local fh = assert(io.open(sfile, "w"))
  fh:write(script)
  fh:close()
  local p = assert(io.popen(shell_quote(cmd) .. " " .. shell_quote(sfile) .. " 2>" .. shell_quote(efile), "r"))
  local text = p:read("a")
  local ok = p:close()
  local ef = io.open(efile, "r")
  local err = ef and ef:read("a") or ""
  if ef then ef:close() end
  os.remove(sfile)
  os.remove(efile)
  if not ok then
    error(who .. ": gnuplot failed: " .. (err:gsub("%s+$", "")), 3)
  end
  if file then return file end
  return setmetatable({ text = (text:gsub("\f", "")) }, Text)
end

-- ---- posteriors ----

local function site_list(post, sites, who)
  if sites == nil then return post:sites() end
  if type(sites) == "string" then return { sites } end
  if type(sites) ~= "table" or #sites == 0 then
    error(who .. ": sites must be a site name or a list of them", 3)
  end
  return sites
end

local function check_post(post, who)
  if type(post) ~= "table" or type(post.draws) ~= "function" then
    error(who .. ": expected a posterior (from plume.infer or plume.smc), got " .. type(post), 3)
  end
end

-- The draws of one site split by chain: a list of Lua tables.
local function by_chain(post, site, who)
  local ok, d = pcall(post.draws, post, site)
  if not ok then error(who .. ": " .. tostring(d):gsub("^.-post:draws: ", ""), 4) end
  local n, nch = #d, post.chains or 1
  if nch < 1 or n % nch ~= 0 then nch = 1 end
  local per, out = n // nch, {}
  for c = 1, nch do
    local t = table.move(d, (c - 1) * per + 1, c * per, 1, {})
    out[c] = t
  end
  return out
end

local function seq(n)
  local t = {}
  for i = 1, n do t[i] = i end
  return t
end

local function multiplot(f, title)
  if f.panels > 1 or title then
    f:add(string.format("set multiplot layout %d,1%s", f.panels, title and (" title " .. gp_string(title)) or ""))
  end
end

local function end_multiplot(f, title)
  if f.panels > 1 or title then f:add("unset multiplot") end
end

--- plot.trace(post, sites [, opts]): draws against iteration, one line per chain, one panel per site.
function plot.trace(post, sites, opts)
  check_post(post, "plot.trace")
  sites = site_list(post, sites, "plot.trace")
  local f = figure("plot.trace", opts, #sites)
  multiplot(f, f.opts.title)
  for _, s in ipairs(sites) do
    local chains, parts = by_chain(post, s, "plot.trace"), {}
    for c, d in ipairs(chains) do
      local b = f:data({ seq(#d), d })
      parts[c] = b .. " using 1:2 with lines title " .. gp_string(#chains > 1 and ("chain " .. c) or s)
    end
    f:add("set xlabel 'iteration'; set ylabel " .. gp_string(s))
    f:add("plot " .. table.concat(parts, ", "))
  end
  end_multiplot(f, f.opts.title)
  return f:render()
end

-- Ranks (1..N) of every draw among all chains' draws of the site; ties get consecutive ranks.
local function ranks(chains)
  local all = {}
  for _, d in ipairs(chains) do table.move(d, 1, #d, #all + 1, all) end
  table.sort(all, function(a, b) return a < b or (a == a and b ~= b) end)
  local out = {}
  for c, d in ipairs(chains) do
    local r = {}
    for i = 1, #d do
      local x, lo, hi = d[i], 1, #all
      while lo < hi do    -- first position holding x
        local mid = (lo + hi) // 2
        if all[mid] < x then lo = mid + 1 else hi = mid end
      end
      r[i] = lo
    end
    out[c] = r
  end
  return out, #all
end

--- plot.rank(post, sites [, {bins = 20}]): per site, the histogram of each chain's ranks among all draws
--- (Vehtari et al. 2021). Chains that mix well give flat, overlapping histograms.
function plot.rank(post, sites, opts)
  check_post(post, "plot.rank")
  sites = site_list(post, sites, "plot.rank")
  local f = figure("plot.rank", opts, #sites)
  local bins = f.opts.bins or 20
  if math.type(bins) ~= "integer" or bins < 2 then error("plot.rank: option 'bins' must be an integer >= 2", 2) end
  multiplot(f, f.opts.title)
  for _, s in ipairs(sites) do
    local rk, N = ranks(by_chain(post, s, "plot.rank"))
    local parts = {}
    for c, r in ipairs(rk) do
      local counts, x = {}, {}
      for b = 1, bins do counts[b] = 0; x[b] = (b - 0.5) * N / bins end
      for i = 1, #r do
        local b = math.min(bins, (r[i] - 1) * bins // N + 1)
        counts[b] = counts[b] + 1
      end
      local blk = f:data({ x, counts })
      parts[c] = blk .. " using 1:2 with histeps title " .. gp_string("chain " .. c)
    end
    f:add("set xlabel " .. gp_string("rank of " .. s) .. "; set ylabel 'count'; set yrange [0:*]")
    f:add("plot " .. table.concat(parts, ", "))
  end
  end_multiplot(f, f.opts.title)
  return f:render()
end

--- plot.density(post, sites [, {kind = "kde" | "hist", bins = 30}]): per chain, a kernel density estimate
--- (gnuplot's smooth kdensity) or a normalised histogram.
function plot.density(post, sites, opts)
  check_post(post, "plot.density")
  sites = site_list(post, sites, "plot.density")
  local f = figure("plot.density", opts, #sites)
  local kind = f.opts.kind or "kde"
  if kind ~= "kde" and kind ~= "hist" then
    error("plot.density: option 'kind' must be \"kde\" or \"hist\" (got " .. tostring(kind) .. ")", 2)
  end
  local bins = f.opts.bins or 30
  multiplot(f, f.opts.title)
  for _, s in ipairs(sites) do
    local chains, parts = by_chain(post, s, "plot.density"), {}
    local lo, hi = math.huge, -math.huge
    for _, d in ipairs(chains) do
      for i = 1, #d do local x = d[i]; if x < lo then lo = x end; if x > hi then hi = x end end
    end
    local width = (hi > lo) and (hi - lo) / bins or 1
    for c, d in ipairs(chains) do
      local blk = f:data({ d })
      local title = gp_string(#chains > 1 and ("chain " .. c) or s)
      if kind == "kde" then
        parts[c] = string.format("%s using 1:(1.0/%d) smooth kdensity with lines title %s", blk, #d, title)
      else
        parts[c] = string.format("%s using (%s + %s*floor(($1 - %s)/%s) + %s/2):(1.0/(%d*%s)) smooth frequency with histeps title %s",
          blk, num(lo), num(width), num(lo), num(width), num(width), #d, num(width), title)
      end
    end
    f:add("set xlabel " .. gp_string(s) .. "; set ylabel 'density'; set key top left")
    f:add("plot " .. table.concat(parts, ", "))
  end
  end_multiplot(f, f.opts.title)
  return f:render()
end

--- plot.pair(post, x, y [, opts]): the joint draws of two sites as a scatter, one colour per chain.
function plot.pair(post, x, y, opts)
  check_post(post, "plot.pair")
  if type(x) ~= "string" or type(y) ~= "string" then error("plot.pair: expected two site names", 2) end
  local f = figure("plot.pair", opts, 1)
  local cx, cy, parts = by_chain(post, x, "plot.pair"), by_chain(post, y, "plot.pair"), {}
  for c = 1, #cx do
    local blk = f:data({ cx[c], cy[c] })
    parts[c] = blk .. " using 1:2 with points pt 7 ps 0.3 title " .. gp_string(#cx > 1 and ("chain " .. c) or (x .. " , " .. y))
  end
  if f.opts.title then f:add("set title " .. gp_string(f.opts.title)) end
  f:add("set xlabel " .. gp_string(x) .. "; set ylabel " .. gp_string(y))
  f:add("plot " .. table.concat(parts, ", "))
  return f:render()
end

--- plot.forest(post, sites [, opts]): per site the median (point), the 5%-95% interval (bar) and the mean (x),
--- from post:summary(), one row per site.
function plot.forest(post, sites, opts)
  check_post(post, "plot.forest")
  sites = site_list(post, sites, "plot.forest")
  local f = figure("plot.forest", opts, math.max(1, #sites // 8))
  local s = post:summary()
  local q5, q50, q95, mean, y, tics = {}, {}, {}, {}, {}, {}
  for i, name in ipairs(sites) do
    local r = s[name]
    if not r then error("plot.forest: no site named '" .. tostring(name) .. "'", 2) end
    local row = #sites - i + 1                  -- the first site on top
    q5[i], q50[i], q95[i], mean[i], y[i] = r.q5, r.q50, r.q95, r.mean, row
    tics[i] = string.format("%s %d", gp_string(name), row)
  end
  local blk = f:data({ q50, y, q5, q95, mean })
  if f.opts.title then f:add("set title " .. gp_string(f.opts.title)) end
  f:add(string.format("set yrange [0.5:%g]; set ytics (%s); set xlabel 'value'", #sites + 0.5, table.concat(tics, ", ")))
  f:add("plot " .. blk .. " using 1:2:3:4 with xerrorbars pt 7 title 'median, 5%-95%', " ..
    blk .. " using 5:2 with points pt 2 title 'mean'")
  return f:render()
end

-- ---- Markov blocks ----

local function component(v, k)
  if type(v) == "table" then return v[k] end
  return v
end

local function variance(c, k)
  if type(c) == "table" then return c[k][k] end
  return c
end

-- mean +- 2 sd columns from lgssm means/covs for state component k
local function band(means, covs, k)
  local m, lo, hi = {}, {}, {}
  for t = 1, #means do
    local mu, v = component(means[t], k), variance(covs[t], k)
    local sd = math.sqrt(math.max(v, 0))
    m[t], lo[t], hi[t] = mu, mu - 2 * sd, mu + 2 * sd
  end
  return m, lo, hi
end

--- plot.lgssm(model, ys [, {which = "both" | "filter" | "smooth", component = 1, obs = 1, truth = xs}]):
--- the filtered and/or smoothed means of one state component with +-2 sd bands, the observations (entry
--- `obs` of each y) and, if given, the true states.
function plot.lgssm(model, ys, opts)
  if type(model) ~= "userdata" and type(model) ~= "table" or not model.filter then
    error("plot.lgssm: expected a plume.lgssm model", 2)
  end
  local f = figure("plot.lgssm", opts, 1)
  local o = f.opts
  local which, k, ko = o.which or "both", o.component or 1, o.obs or 1
  if which ~= "both" and which ~= "filter" and which ~= "smooth" then
    error("plot.lgssm: option 'which' must be \"both\", \"filter\" or \"smooth\"", 2)
  end
  local T, parts = #ys, {}
  if ys.n then T = ys.n end
  local t = seq(T)
  local function add(kind, means, covs, colour)
    local m, lo, hi = band(means, covs, k)
    local blk = f:data({ t, m, lo, hi })
    parts[#parts + 1] = string.format("%s using 1:3:4 with filledcurves fc rgb %s fs transparent solid 0.25 noborder title %s",
      blk, gp_string(colour), gp_string(kind .. " +-2 sd"))
    parts[#parts + 1] = string.format("%s using 1:2 with lines lw 2 lc rgb %s title %s", blk, gp_string(colour),
      gp_string(kind .. " mean"))
  end
  if which ~= "smooth" then local m, c = model:filter(ys); add("filtered", m, c, "#1f77b4") end
  if which ~= "filter" then local m, c = model:smooth(ys); add("smoothed", m, c, "#d62728") end
  local y = {}
  for i = 1, T do
    local v = ys[i]
    if type(v) == "table" then v = v[ko] end
    y[i] = v == nil and 0 / 0 or v
  end
  parts[#parts + 1] = f:data({ t, y }) .. " using 1:2 with points pt 7 ps 0.4 lc rgb 'black' title 'data'"
  if o.truth then
    local x = {}
    for i = 1, T do x[i] = component(o.truth[i], k) end
    parts[#parts + 1] = f:data({ t, x }) .. " using 1:2 with lines dt 2 lc rgb '#2ca02c' title 'true state'"
  end
  f:add("set key below")
  f:add("set title " .. gp_string(o.title or ("state " .. k)))
  f:add("set xlabel 't'; set ylabel " .. gp_string("x[" .. k .. "]"))
  f:add("plot " .. table.concat(parts, ", "))
  return f:render()
end

--- plot.hmm(h, obs [, {filter = false, data = true}]): the state posteriors p(x_t = k | y) as a heat strip
--- (states by time; smoothed, or filtered with filter = true) above the observations.
function plot.hmm(h, obs, opts)
  if (type(h) ~= "userdata" and type(h) ~= "table") or not h.posterior then
    error("plot.hmm: expected a plume.hmm model", 2)
  end
  if type(obs) ~= "table" then error("plot.hmm: obs must be a list of observations", 2) end
  local f = figure("plot.hmm", opts, (opts or {}).data == false and 1 or 2)
  local o = f.opts
  local rows = o.filter and h:filter(obs) or h:posterior(obs)
  local T, K = #rows, #rows[1]
  local what = o.filter and "p(x_t = k | y_1..t)" or "p(x_t = k | y_1..T)"
  multiplot(f, o.title)
  if o.file then   -- a heat strip: states by time, darker = more probable
    local lines = {}
    for k = 1, K do
      local r = {}
      for t = 1, T do r[t] = num(rows[t][k]) end
      lines[k] = table.concat(r, " ")
    end
    f.nblocks = f.nblocks + 1
    local blk = "$d" .. f.nblocks
    f:add(blk .. " << EOD\n" .. table.concat(lines, "\n") .. "\nEOD")
    f:add(string.format("set xrange [0.5:%g]; set yrange [0.5:%g]; set cbrange [0:1]; set xlabel 't'; set ylabel 'state'", T + 0.5, K + 0.5))
    f:add("set ytics 1; set palette defined (0 'white', 1 '#08306b')")
    f:add(string.format("plot %s matrix using ($1+1):($2+1):3 with image title %s", blk, gp_string(what)))
    f:add("set autoscale y; set ytics autofreq; unset colorbox")   -- the same time axis below
  else             -- text has no colours: one line per state
    local cols, parts = { seq(T) }, {}
    for k = 1, K do
      local c = {}
      for t = 1, T do c[t] = rows[t][k] end
      cols[k + 1] = c
    end
    local blk = f:data(cols)
    for k = 1, K do parts[k] = string.format("%s using 1:%d with lines title %s", blk, k + 1, gp_string("state " .. k)) end
    f:add("set yrange [0:1]; set xlabel 't'; set ylabel 'probability'; set title " .. gp_string(what))
    f:add("plot " .. table.concat(parts, ", "))
    f:add("set autoscale; unset title")
  end
  if o.data ~= false then
    local y = {}
    for t = 1, T do y[t] = type(obs[t]) == "number" and obs[t] or 0 / 0 end
    f:add("set ylabel 'y'")
    f:add("plot " .. f:data({ seq(T), y }) .. " using 1:2 with impulses title 'observations'")
  end
  end_multiplot(f, o.title)
  return f:render()
end

-- the k-th component of every saved state, from a table of states (numbers or tables)
local function path_component(states, k)
  local x = {}
  for i = 1, #states do x[i] = component(states[i], k) end
  return x
end

-- columns of a T x n plume.array (or a table of them by component) for paths = n
local function array_paths(a, limit)
  local rows, cols = a:shape()
  local out = {}
  for j = 1, math.min(cols, limit) do
    local c = {}
    for i = 1, rows do c[i] = a[(i - 1) * cols + j] end
    out[j] = c
  end
  return out
end

local function paths_of(states, k, limit)
  if type(states) == "userdata" then return array_paths(states, limit) end
  if type(states) == "table" and type(states[1]) == "userdata" then return array_paths(states[k], limit) end
  return { path_component(states, k) }
end

--- plot.sde(times, states [, {component = 1, obs = {times =, values =}, paths = 20}]): simulated paths of a
--- plume.sde (what s:simulate returns: one path's states, or arrays of many paths), with observations.
function plot.sde(times, states, opts)
  if times == nil or states == nil then error("plot.sde: expected times and states (from s:simulate)", 2) end
  local f = figure("plot.sde", opts, 1)
  local o = f.opts
  local k = o.component or 1
  local t = {}
  for i = 1, #times do t[i] = times[i] end
  local parts = {}
  for j, x in ipairs(paths_of(states, k, o.paths or 20)) do
    parts[j] = f:data({ t, x }) .. " using 1:2 with lines lw 1 title " .. gp_string(j == 1 and ("x[" .. k .. "]") or "")
    if j > 1 then parts[j] = parts[j]:gsub("title ''$", "notitle") end
  end
  if o.obs then
    local ov = {}
    for i = 1, #o.obs.times do ov[i] = component(o.obs.values[i], 1) end
    parts[#parts + 1] = f:data({ o.obs.times, ov }) .. " using 1:2 with points pt 7 ps 0.8 lc rgb 'black' title 'observations'"
  end
  f:add("set title " .. gp_string(o.title or "simulated paths"))
  f:add("set xlabel 't'; set ylabel " .. gp_string("x[" .. k .. "]"))
  f:add("plot " .. table.concat(parts, ", "))
  return f:render()
end

--- plot.ssm(xs, ys [, {component = 1, obs = 1, paths = 20}]): a simulated state path of a plume.ssm (or the
--- T x n arrays of many particles) over t = 1..T, with the observations.
function plot.ssm(xs, ys, opts)
  if xs == nil then error("plot.ssm: expected xs (and ys) from m:simulate", 2) end
  local o = opts or {}
  local T
  if type(xs) == "userdata" then T = xs:shape()
  elseif type(xs[1]) == "userdata" then T = xs[1]:shape()
  else T = #xs end
  local obs
  if ys ~= nil then
    obs = { times = seq(T), values = {} }
    local ko = o.obs or 1
    if type(ys) == "table" and type(ys[1]) ~= "userdata" then
      for t = 1, T do obs.values[t] = component(ys[t], ko) end
    else
      local col = paths_of(ys, ko, 1)[1]
      for t = 1, T do obs.values[t] = col[t] end
    end
  end
  local o2 = {}
  for key, v in pairs(o) do o2[key] = v end
  o2.obs, o2.title = obs, o.title or "simulated state and observations"
  local ok, r = pcall(plot.sde, seq(T), xs, o2)
  if not ok then error((tostring(r):gsub("plot%.sde", "plot.ssm")), 2) end
  return r
end

-- ---- SMC ----

--- plot.smc(post [, opts]): the effective sample size after each step (post.ess_history, with the particle
--- count) and, when the run recorded it (post.logz_history), the running log normaliser estimate.
function plot.smc(post, opts)
  if type(post) ~= "table" or type(post.ess_history) ~= "table" then
    error("plot.smc: expected the result of plume.smc (with ess_history)", 2)
  end
  local lz = post.logz_history
  local f = figure("plot.smc", opts, lz and 2 or 1)
  local o = f.opts
  multiplot(f, o.title)
  local n = #post.ess_history
  local steps = seq(n)
  local N = post.particles and (type(post.particles) == "number" and post.particles or #post.particles) or nil
  f:add("set xlabel 'step'; set ylabel 'ESS'; set yrange [0:*]")
  local line = f:data({ steps, post.ess_history }) .. " using 1:2 with linespoints pt 7 ps 0.5 title 'ESS'"
  if N then line = line .. string.format(", %g with lines dt 2 title 'particles'", N) end
  f:add("plot " .. line)
  if lz then
    f:add("set autoscale y; set ylabel 'log Z'")
    f:add("plot " .. f:data({ seq(#lz), lz }) .. " using 1:2 with linespoints pt 7 ps 0.5 title 'log normaliser'")
  end
  end_multiplot(f, o.title)
  return f:render()
end

plume.plot = plot
return plot
