-- test_plot.lua -- plume.plot through gnuplot: every family renders to SVG, which must be well-formed XML
-- (xmllint when present, and a tag-balance check here) and hold the expected series (gnuplot writes one
-- <g id="gnuplot_plot_N"> group per series) with the data in them; text plots, PNG and PDF files; errors.
local T = dofile("tests/lua/check.lua")

if not os.execute("command -v gnuplot >/dev/null 2>&1") then
  print("SKIP plot tests: gnuplot not found (Debian package gnuplot-nox; make deps installs it)")
  return
end
local have_xmllint = os.execute("command -v xmllint >/dev/null 2>&1")

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir)

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Tags must nest and close; returns the number of elements.
local function balanced(svg)
  local stack, n = {}, 0
  local body = svg:gsub("<!%-%-.-%-%->", ""):gsub("<%?.-%?>", ""):gsub("<!DOCTYPE.->", "", 1)
  for close, name, selfclose in body:gmatch("<(/?)([%w:_%-]+)[^>]-(/?)>") do
    if close == "/" then
      local top = table.remove(stack)
      if top ~= name then error("</" .. name .. "> closes <" .. tostring(top) .. ">") end
    elseif selfclose == "" then
      stack[#stack + 1] = name
      n = n + 1
    else
      n = n + 1
    end
  end
  if #stack ~= 0 then error("unclosed <" .. stack[#stack] .. ">") end
  return n
end

-- Checks the SVG at path and returns its text and number of series.
local function svg(path)
  local s = slurp(path)
  T.ok(s:find("<svg", 1, true), path .. " is not SVG")
  T.ok(balanced(s) > 10, "elements")
  if have_xmllint then T.ok(os.execute("xmllint --noout " .. path), "xmllint rejects " .. path) end
  local series = 0
  for _ in s:gmatch('<g id="gnuplot_plot_%d+%a*"') do series = series + 1 end
  return s, series
end

-- Coordinates drawn inside series group id (a path's points, plus the key's sample line).
local function points_in(s, id)
  local a = s:find('<g id="' .. id .. '"', 1, true)
  local b = s:find('<g id="gnuplot_plot_', a + 1, true) or #s
  local n = 0
  for _ in s:sub(a, b):gmatch("[ML]%-?[%d.]+,%-?[%d.]+") do n = n + 1 end
  return n
end

local model = plume.model(function(m)
  local a = m:sample("a", plume.dist.normal(0, 1))
  m:sample("b", plume.dist.normal(a, 1))
  m:sample("c", plume.dist.gamma(2, 2))
end)
local post = plume.infer(model, nil, { samples = 200, chains = 3, seed = 1, quiet = true })

T.test("balanced_xml_check_catches_broken_svg", function()   -- negative control for the check itself
  T.raises(function() balanced("<svg><g><path/></svg>") end, "closes <g>")
  T.raises(function() balanced("<svg><g>") end, "unclosed")
end)

T.test("trace_one_panel_per_site_one_line_per_chain", function()
  local s, n = svg(plume.plot.trace(post, { "a", "b" }, { file = dir .. "/trace.svg" }))
  T.eq(n, 6, "2 sites x 3 chains")
  T.ok(s:find("<text>chain 3</text>", 1, true), "key names the chains")
  T.eq(points_in(s, "gnuplot_plot_1a"), 200 + 2, "every draw of chain 1 (plus the key's sample)")
end)

T.test("rank_histograms_per_chain", function()
  local s, n = svg(plume.plot.rank(post, "c", { file = dir .. "/rank.svg", bins = 10 }))
  T.eq(n, 3, "3 chains")
  T.ok(s:find("rank of c", 1, true))
end)

T.test("density_kde_and_histogram", function()
  local _, n = svg(plume.plot.density(post, { "a", "c" }, { file = dir .. "/kde.svg" }))
  T.eq(n, 6, "2 sites x 3 chains")
  local _, m = svg(plume.plot.density(post, "a", { file = dir .. "/hist.svg", kind = "hist" }))
  T.eq(m, 3)
  T.raises(function() plume.plot.density(post, "a", { kind = "violin" }) end, "option 'kind'")
end)

T.test("pair_scatter_per_chain", function()
  local s, n = svg(plume.plot.pair(post, "a", "b", { file = dir .. "/pair.svg" }))
  T.eq(n, 3)
  T.ok(s:find(">b<", 1, true) or s:find("<text>b</text>", 1, true), "y axis label")
end)

T.test("forest_rows_for_every_site", function()
  local s, n = svg(plume.plot.forest(post, nil, { file = dir .. "/forest.svg" }))
  T.eq(n, 2, "intervals and means")
  for _, site in ipairs({ "a", "b", "c" }) do T.ok(s:find("<text>" .. site .. "</text>", 1, true), "tic for " .. site) end
end)

T.test("lgssm_filter_and_smoother_bands_with_data_and_truth", function()
  local m = plume.lgssm { A = 0.9, Q = 0.5, C = 1, R = 1, m0 = 0, P0 = 1 }
  local xs, ys = m:sample(50, 3)
  local s, n = svg(plume.plot.lgssm(m, ys, { truth = xs, file = dir .. "/lgssm.svg" }))
  T.eq(n, 6, "two bands, two means, data, truth")
  T.ok(s:find("smoothed mean", 1, true) and s:find("filtered +-2 sd", 1, true))
  local _, k = svg(plume.plot.lgssm(m, ys, { which = "smooth", file = dir .. "/lgssm2.svg" }))
  T.eq(k, 3, "smoother band, mean, data")
end)

T.test("hmm_heat_strip_and_observations", function()
  local h = plume.hmm { init = { 0.5, 0.5 }, trans = { { 0.9, 0.1 }, { 0.2, 0.8 } }, emit = { { 0.7, 0.3 }, { 0.2, 0.8 } } }
  local _, obs = h:sample(60, 1)
  local s, n = svg(plume.plot.hmm(h, obs, { file = dir .. "/hmm.svg" }))
  T.eq(n, 2, "image and observations")
  T.ok(s:find("<image", 1, true), "a heat strip")
  local txt = tostring(plume.plot.hmm(h, obs, { filter = true }))
  T.ok(txt:find("state 2", 1, true) and txt:find("y_1..t", 1, true), "text: one line per state, filtered")
end)

T.test("ssm_and_sde_paths_with_observations", function()
  local sv = plume.ssm { params = { rho = 0.9 },
    init = function(p) return plume.dist.normal(0, 1) end,
    trans = function(p, x, t) return plume.dist.normal(p.rho * x, 0.5) end,
    obs = function(p, x, t) return plume.dist.normal(x, 1) end }
  local xs, ys = sv:simulate(40, { seed = 1 })
  local s, n = svg(plume.plot.ssm(xs, ys, { file = dir .. "/ssm.svg" }))
  T.eq(n, 2, "state path and observations")
  T.eq(points_in(s, "gnuplot_plot_1"), 40 + 2, "T points")
  local X = sv:simulate(30, { seed = 1, particles = 50 })
  local _, k = svg(plume.plot.ssm(X, nil, { paths = 7, file = dir .. "/ssm_many.svg" }))
  T.eq(k, 7, "the first 7 particles")
  local ou = plume.sde { params = { th = 1 }, drift = function(p, x, t) return -p.th * x end,
    diffusion = function(p, x, t) return 0.5 end }
  local times, path = ou:simulate { x0 = 1, t_end = 2, dt = 0.01, seed = 1 }
  local _, m = svg(plume.plot.sde(times, path, { obs = { times = { 0.5, 1, 1.5 }, values = { 0.6, 0.4, 0.2 } }, file = dir .. "/sde.svg" }))
  T.eq(m, 2, "path and observations")
  local t2, P = ou:simulate { x0 = 1, t_end = 1, dt = 0.01, seed = 1, paths = 4 }
  local _, q = svg(plume.plot.sde(t2, P, { file = dir .. "/sde4.svg" }))
  T.eq(q, 4, "4 paths")
end)

T.test("smc_ess_and_log_normaliser_per_step", function()
  local walk = plume.model(function(m, ys)
    local x = 0
    for t, y in ipairs(ys) do
      x = m:sample("x" .. t, plume.dist.normal(x, 1))
      m:observe("y" .. t, plume.dist.normal(x, 1), y)
    end
  end)
  local r = plume.smc(walk, { { 0.5, 1.2, 0.7, 2.0 } }, { particles = 100, seed = 1, quiet = true })
  local s, n = svg(plume.plot.smc(r, { file = dir .. "/smc.svg" }))
  T.eq(n, 3, "ESS, the particle count and the running log normaliser (plume.smc records logz_history)")
  T.eq(points_in(s, "gnuplot_plot_1a"), #r.ess_history + 2, "one point per step (first panel: ESS)")
  T.eq(#r.logz_history, #r.ess_history, "one running log normaliser per step")
  -- with a recorded running log normaliser, a second panel shows it
  local fake = { ess_history = { 90, 60, 80 }, logz_history = { -1.2, -2.5, -3.1 }, particles = 100 }
  local _, m = svg(plume.plot.smc(fake, { file = dir .. "/smc2.svg" }))
  T.eq(m, 3, "ESS, particles, log Z")
end)

T.test("text_plots_png_and_pdf", function()
  local p = plume.plot.trace(post, "a", { width = 60, height = 20 })
  local txt = tostring(p)
  T.ok(txt:find("chain 2", 1, true) and txt:find("iteration", 1, true), "text plot has key and label")
  local lines = 0
  for _ in txt:gmatch("[^\n]*\n") do lines = lines + 1 end
  T.ok(lines >= 18 and lines <= 21, "height 20: " .. lines .. " lines")
  T.eq(slurp(plume.plot.pair(post, "a", "c", { file = dir .. "/p.png" })):sub(1, 4), "\137PNG", "PNG magic")
  T.eq(slurp(plume.plot.forest(post, nil, { file = dir .. "/f.pdf" })):sub(1, 5), "%PDF-", "PDF magic")
end)

T.test("errors_name_the_problem", function()
  T.raises(function() plume.plot.trace(post, "a", { file = dir .. "/x.jpg" }) end, "use a .svg, .png or .pdf")
  T.raises(function() plume.plot.trace(post, "zz") end, "no site named 'zz'")
  T.raises(function() plume.plot.trace({}, "a") end, "expected a posterior")
  T.raises(function() plume.plot.rank(post, "a", { bins = 1 }) end, "bins")
  T.raises(function() plume.plot.smc(post) end, "expected the result of plume.smc")
  T.raises(function() plume.plot.trace(post, "a", { file = "/nonexistent/dir/x.svg" }) end, "gnuplot failed")
end)

os.execute("rm -rf " .. dir)
