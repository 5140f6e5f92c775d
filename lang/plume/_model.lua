-- plume._model: plume.model and plume.args (the engines are C: plume.infer, plume.smc, plume.beam).
return function(plume)
  local Model = {}
  Model.__index = Model
  Model.__name = "plume.model"

  --- plume.model(fn): a model program. fn(m, ...) makes random choices with m:sample, conditions with
  --- m:observe / m:factor and records values with m:deterministic.
  function plume.model(fn)
    if type(fn) ~= "function" then
      error("plume.model: expected a function(m, ...) (got " .. type(fn) .. ")", 2)
    end
    return setmetatable({ fn = fn }, Model)
  end

  -- One run of the program under the prior (seed 1, no data), through the prior engine, with a handle that
  -- records each site as the program makes it. Returns the sites, or nil and the reason the run failed.
  local described = setmetatable({}, { __mode = "k" })   -- model -> { sites } or { err = msg }
  local recorded = { sample = "latent", observe = "observed", deterministic = "deterministic" }

  local function describe(self)
    if described[self] then return described[self] end
    local sites
    local function traced(m, ...)
      sites = {}   -- a rejected run is run again: keep only the last one
      local proxy = setmetatable({}, { __index = function(_, k)
        local f = m[k]
        if type(f) ~= "function" then return f end
        if recorded[k] then
          return function(_, name, d, ...)
            local r = table.pack(f(m, name, d, ...))
            sites[#sites + 1] = { name = tostring(name), kind = recorded[k], dist = k ~= "deterministic" and tostring(d) or nil }
            return table.unpack(r, 1, r.n)
          end
        end
        return function(_, ...) return f(m, ...) end
      end })
      return self.fn(proxy, ...)
    end
    local ok, err = pcall(plume.infer, traced, nil, { method = "prior", samples = 1, seed = 1, quiet = true })
    described[self] = ok and { sites = sites } or { err = tostring(err) }
    return described[self]
  end

  --- tostring(model): where the program is defined and, from one run under the prior (seed 1, no data), its
  --- sites: name, latent / observed / deterministic, and distribution.
  function Model:__tostring()
    local info = debug.getinfo(self.fn, "S")
    local head = string.format("plume.model (%s:%d)", info.short_src, info.linedefined)
    local d = describe(self)
    if d.err then
      return head .. "\n  (sites unknown: a run under the prior without data failed: " .. d.err .. ")"
    end
    local out, w, shown = { head .. string.format(", %d site%s in one run under the prior (seed 1):",
      #d.sites, #d.sites == 1 and "" or "s") }, 4, math.min(#d.sites, 20)
    for i = 1, shown do w = math.max(w, #d.sites[i].name) end
    for i = 1, shown do
      local s = d.sites[i]
      out[#out + 1] = string.format("  %-" .. w .. "s  %-13s %s", s.name, s.kind, s.dist or "")
    end
    if #d.sites > shown then
      local n = {}
      for i = shown + 1, #d.sites do n[d.sites[i].kind] = (n[d.sites[i].kind] or 0) + 1 end
      local parts = {}
      for _, k in ipairs { "latent", "observed", "deterministic" } do
        if n[k] then parts[#parts + 1] = n[k] .. " " .. k end
      end
      out[#out + 1] = string.format("  ... %d more (%s)", #d.sites - shown, table.concat(parts, ", "))
    end
    return (table.concat(out, "\n"):gsub("%s+\n", "\n"):gsub("%s+$", ""))
  end

  local Args = { __name = "plume.args" }

  --- plume.args(a, b, ...): pass several arguments to a model through plume.infer's data slot.
  function plume.args(...)
    return setmetatable({ n = select("#", ...), ... }, Args)
  end

  -- plume.infer(model, data, opts), plume.smc(model, args, opts) and plume.beam(model, args, opts) are C
  -- functions (lang/l_infer.c, l_smc.c, l_beam.c), so that their errors blame the caller's line.

  plume.Model = Model
end
