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

  function Model:__tostring()
    local info = debug.getinfo(self.fn, "S")
    return string.format("plume.model (%s:%d)", info.short_src, info.linedefined)
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
