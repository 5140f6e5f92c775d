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

  --- plume.infer(model, data, opts) -> posterior
  function plume.infer(model, data, opts)
    local fn = model_fn(model, "plume.infer")
    if opts ~= nil and type(opts) ~= "table" then
      error("plume.infer: options must be a table (got " .. type(opts) .. ")", 2)
    end
    local raw
    if getmetatable(data) == Args then
      raw = plume._run(fn, opts, data.n, table.unpack(data, 1, data.n))
    else
      raw = plume._run(fn, opts, 1, data)
    end
    return plume._posterior(raw)
  end

  -- plume.smc(model, args, opts) and plume.beam(model, args, opts) are C functions (lang/l_smc.c), so that
  -- their errors blame the caller's line.

  plume.Model = Model
end
