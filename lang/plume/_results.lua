-- plume._results: the posterior object returned by plume.infer and the summary table it prints as.
return function(plume)
  local Posterior = {}
  Posterior.__index = Posterior
  Posterior.__name = "plume.posterior"

  local Summary = { __name = "plume.summary" }
  local order_of = setmetatable({}, { __mode = "k" })   -- summary table -> site names in order

  -- x right-aligned in width columns with digits decimals; a value too wide for that (an R-hat of 1e6, a mean
  -- of 1e12) is written with fewer significant digits, in exponent form if need be, so the table keeps its shape.
  local function fmt(x, width, digits)
    if x == nil then return string.rep(" ", width - 1) .. "-" end
    if x ~= x then return string.rep(" ", width - 3) .. "nan" end
    local s = string.format("%" .. width .. "." .. digits .. "f", x)
    local p = width - 1
    while #s > width and p > 0 do
      s = string.format("%" .. width .. "." .. p .. "g", x)
      p = p - 1
    end
    return s
  end

  function Summary.__tostring(s)
    local names = order_of[s] or {}
    local w = 6
    for _, n in ipairs(names) do if #n > w then w = #n end end
    local out = { string.format("%-" .. w .. "s %10s %10s %10s %10s %10s %9s %9s %7s",
      "site", "mean", "sd", "q5", "q50", "q95", "ess_bulk", "ess_tail", "rhat") }
    for _, n in ipairs(names) do
      local r = s[n]
      local line
      if r.n == 0 then
        line = string.format("%-" .. w .. "s %s", n, "no draws to summarise: every draw is NaN or absent")
      else
        local rhat = r.constant and "  const" or fmt(r.rhat, 7, 3)
        line = string.format("%-" .. w .. "s %s %s %s %s %s %s %s %s", n,
          fmt(r.mean, 10, 4), fmt(r.sd, 10, 4), fmt(r.q5, 10, 4), fmt(r.q50, 10, 4), fmt(r.q95, 10, 4),
          fmt(r.ess_bulk, 9, 0), fmt(r.ess_tail, 9, 0), rhat)
        if r.note then line = line .. "  (" .. r.note .. ")" end
      end
      out[#out + 1] = line
    end
    return table.concat(out, "\n")
  end

  function plume._posterior(raw)
    return setmetatable(raw, Posterior)
  end

  --- post:summary() -> table keyed by site name: mean, sd, q5, q50, q95, ess_bulk, ess_tail, rhat, mcse_mean, n,
  --- missing (draws NaN or absent), constant, note
  --- A site whose every draw is NaN (or absent) gets {n = 0, note = ...}; one with some NaN or absent draws a
  --- note saying how many; a constant site constant = true and no R-hat or ESS (they are undefined).
  function Posterior:summary()
    local s, names = {}, self._draws:columns()
    local _, _, _, total = self._draws:shape()
    for _, n in ipairs(names) do
      local ok, r = pcall(self._draws.summary, self._draws, n)
      if not ok then
        r = { n = 0, note = "no draws to summarise: every draw is NaN or absent" }
      else
        if r.rhat ~= r.rhat then r.rhat = nil end          -- undefined (weighted, too short, constant): absent
        if r.ess_bulk ~= r.ess_bulk then r.ess_bulk = nil end
        if r.ess_tail ~= r.ess_tail then r.ess_tail = nil end
        if r.sd == 0 and r.q5 == r.q95 then r.constant = true end
        local notes = {}
        if r.mean ~= r.mean or r.mean == math.huge or r.mean == -math.huge then notes[#notes + 1] = "infinite draws" end
        if r.missing > 0 then notes[#notes + 1] = string.format("%d of %d draws NaN or absent", r.missing, total) end
        if #notes > 0 then r.note = table.concat(notes, "; ") end
      end
      s[n] = r
    end
    order_of[s] = names
    return setmetatable(s, Summary)
  end

  --- post:draws(name) -> flat array of retained draws, chains concatenated in chain order
  function Posterior:draws(name)
    if type(name) ~= "string" then
      error("post:draws: site name must be a string (got " .. type(name) .. ")", 2)
    end
    local d = self._draws:column(name)
    if not d then
      error("post:draws: no site named '" .. name .. "' (sites: " .. table.concat(self._draws:columns(), ", ") .. ")", 2)
    end
    return d
  end

  --- post:sites() -> the column names in order
  function Posterior:sites() return self._draws:columns() end

  --- post:weights() -> normalised importance weights (method "is"); nil for unweighted methods
  function Posterior:weights()
    local _, _, weighted = self._draws:shape()
    if not weighted then return nil end
    local lw, m = self._draws:logw(), -math.huge
    for _, v in ipairs(lw) do if v > m then m = v end end
    local w, s = {}, 0
    for i, v in ipairs(lw) do w[i] = math.exp(v - m); s = s + w[i] end
    for i = 1, #w do w[i] = w[i] / s end
    return w
  end

  -- The run's settings for file headers.
  local function meta(self)
    return { method = self.method, seed = self.seed, samples = self.samples, warmup = self.warmup,
             thin = self.thin, model = self.model_name }
  end

  -- CmdStan's one file per chain: "fit.csv" -> "fit_1.csv", "fit_2.csv", ...; "fit" -> "fit_1.csv", ...
  local function chain_path(path, c)
    local base = path:match("^(.*)%.[cC][sS][vV]$") or path
    return string.format("%s_%d.csv", base, c)
  end

  --- post:write_csv(path [, {format = "plume" | "cmdstan"}]) -> the paths written
  --- "plume" (default): one file, header chain,draw,<sites>[,log_weight]. "cmdstan": CmdStan's layout, one file
  --- per chain (path_1.csv, ...), for ArviZ's from_cmdstan and CmdStanPy's from_csv.
  function Posterior:write_csv(path, opts)
    if type(path) ~= "string" then error("post:write_csv: path must be a string (got " .. type(path) .. ")", 2) end
    if opts ~= nil and type(opts) ~= "table" then error("post:write_csv: options must be a table (got " .. type(opts) .. ")", 2) end
    opts = opts or {}
    for k in pairs(opts) do
      if k ~= "format" then error("post:write_csv: unknown option '" .. tostring(k) .. "' (options: format)", 2) end
    end
    local format = opts.format or "plume"
    if format == "plume" then
      self._draws:write_csv(path)
      return { path }
    elseif format == "cmdstan" then
      local nch, written = self._draws:shape(), {}
      for c = 1, nch do
        written[c] = chain_path(path, c)
        self._draws:write_cmdstan(written[c], c, meta(self))
      end
      return written
    end
    error("post:write_csv: format must be \"plume\" or \"cmdstan\" (got " .. tostring(format) .. ")", 2)
  end

  --- post:write_json(path): ArviZ InferenceData's JSON (groups posterior, sample_stats, log_likelihood), which
  --- arviz.from_json reads.
  function Posterior:write_json(path)
    if type(path) ~= "string" then error("post:write_json: path must be a string (got " .. type(path) .. ")", 2) end
    self._draws:write_json(path, meta(self))
  end

  --- post:lp() -> each draw's log density (lp__), chains concatenated, or nil when the engine recorded none
  function Posterior:lp()
    if self._draws:column("lp__") then return self._draws:column("lp__") end
    return self._draws:lp()
  end

  local function exists(path)
    local f = io.open(path, "r")
    if f then f:close() end
    return f ~= nil
  end

  --- plume.read_posterior(path) -> posterior
  --- Reads what write_csv (either format) or write_json wrote. path is a file, the path given to
  --- write_csv{format = "cmdstan"} (its chain files path_1.csv, ... are read) or a table of CmdStan chain files.
  function plume.read_posterior(path)
    local fn = "plume.read_posterior"
    local kind, arg
    if type(path) == "table" then
      if #path == 0 then error(fn .. ": the table of CmdStan files is empty", 2) end
      kind, arg = "cmdstan", path
    elseif type(path) ~= "string" then
      error(fn .. ": path must be a string or a table of CmdStan chain files (got " .. type(path) .. ")", 2)
    elseif not exists(path) and exists(chain_path(path, 1)) then
      arg = {}
      while exists(chain_path(path, #arg + 1)) do arg[#arg + 1] = chain_path(path, #arg + 1) end
      kind = "cmdstan"
    else
      local f, err = io.open(path, "r")
      if not f then error(fn .. ": cannot open '" .. path .. "'" .. (err and (": " .. err) or ""), 2) end
      local head = f:read(4096) or ""
      f:close()
      head = head:gsub("^%s+", "")
      if head:sub(1, 1) == "{" then kind = "json"
      elseif head:sub(1, 1) == "#" or head:match("^lp__[,\r\n]") then kind = "cmdstan"
      else kind = "csv" end
      arg = kind == "cmdstan" and { path } or path
    end
    local ok, D, m = pcall(plume._read_draws, kind, arg)
    if not ok then error(fn .. ": " .. tostring(D), 2) end
    local nch = D:shape()
    return plume._posterior({ _draws = D, method = m.method or "unknown", chains = nch, samples = m.samples,
                              warmup = m.warmup, seed = m.seed, thin = m.thin, model_name = m.model,
                              source = path })
  end

  function Posterior:__tostring()
    local nch, n = self._draws:shape()
    local s = string.format("plume posterior (%s, %d chain%s x %d draws)", self.method, nch, nch == 1 and "" or "s", n)
    if self.logz then s = s .. string.format(", logz = %.4f", self.logz) end
    -- composed kernels (plume.kernel.cycle, mixture) report each child: k1.accept_rate, k1.step_size, ...
    local kernels = {}
    for key in pairs(self) do
      local name = type(key) == "string" and key:match("^(k[%d%.k]*)%.accept_rate$")
      if name then kernels[#kernels + 1] = name end
    end
    table.sort(kernels)
    for _, k in ipairs(kernels) do
      local function mean(v)
        local t, n = 0, 0
        for _, x in ipairs(v or {}) do if x == x then t, n = t + x, n + 1 end end
        return n > 0 and t / n or nil
      end
      local line = string.format("\n  %s: accept %.3f", k, mean(self[k .. ".accept_rate"]) or 0 / 0)
      local step, div = mean(self[k .. ".step_size"]), self[k .. ".divergent"]
      if step then line = line .. string.format(", step size %.3g", step) end
      if div then
        local n = 0
        for _, x in ipairs(div) do n = n + x end
        line = line .. string.format(", %d divergent", n)
      end
      s = s .. line
    end
    return s .. "\n" .. tostring(self:summary())
  end

  --- plume.inspect(v): a readable one-line rendering of nested tables (the REPL prints with it)
  function plume.inspect(v, depth)
    depth = depth or 0
    if type(v) ~= "table" then
      if type(v) == "string" then return string.format("%q", v) end
      return tostring(v)
    end
    local mt = getmetatable(v)
    if mt and mt.__tostring then return tostring(v) end
    if depth > 3 then return "{...}" end
    local parts, n = {}, #v
    for i = 1, math.min(n, 20) do parts[#parts + 1] = plume.inspect(v[i], depth + 1) end
    if n > 20 then parts[#parts + 1] = "... (" .. n .. " items)" end
    local keys = {}
    for k in pairs(v) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for i, k in ipairs(keys) do
      if i > 20 then parts[#parts + 1] = "..."; break end
      local ks = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. plume.inspect(k, depth + 1) .. "]"
      parts[#parts + 1] = ks .. " = " .. plume.inspect(v[k], depth + 1)
    end
    return "{" .. table.concat(parts, ", ") .. "}"
  end

  plume.Posterior = Posterior
end
