-- plume._model: plume.model, plume.args and plume.infer (the engines are C: plume._run).
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

  function Model:__tostring()
    local info = debug.getinfo(self.fn, "S")
    return string.format("plume.model (%s:%d)", info.short_src, info.linedefined)
  end

  local Args = { __name = "plume.args" }

  --- plume.args(a, b, ...): pass several arguments to a model through plume.infer's data slot.
  function plume.args(...)
    return setmetatable({ n = select("#", ...), ... }, Args)
  end

  local function model_fn(model, who)
    if getmetatable(model) == Model then return model.fn end
    if type(model) == "function" then return model end
    error(who .. ": expected a plume.model (got " .. type(model) .. ")", 3)
  end

  -- The engines (called through pcall) raise their own errors -- bad options, no starting point -- without a
  -- position: rethrow blames the user's line for them (level 2: the caller of the function that calls
  -- rethrow). Errors raised inside the model program carry the program's own line and are kept as they are.
  local here = debug.getinfo(1, "S").short_src:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")
  local function rethrow(e, level)
    if type(e) == "string" then
      e = e:match("^" .. here .. ":%d+: (.*)$") or e
      if not e:find("^%S+:%d+: ") then error(e, level + 1) end
    end
    error(e, 0)
  end

  --- plume.infer(model, data, opts) -> posterior
  function plume.infer(model, data, opts)
    local fn = model_fn(model, "plume.infer")
    if opts ~= nil and type(opts) ~= "table" then
      error("plume.infer: options must be a table (got " .. type(opts) .. ")", 2)
    end
    local ok, raw
    if getmetatable(data) == Args then
      ok, raw = pcall(plume._run, fn, opts, data.n, table.unpack(data, 1, data.n))
    else
      ok, raw = pcall(plume._run, fn, opts, 1, data)
    end
    if not ok then rethrow(raw, 2) end
    return plume._posterior(raw)
  end

  -- plume.smc(model, args, opts) and plume.beam(model, args, opts) are C functions (lang/l_smc.c), so that
  -- their errors blame the caller's line.

  plume.Model = Model
end
