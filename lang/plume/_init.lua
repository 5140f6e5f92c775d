-- plume._init: the Lua half of the plume module. Each entry is a file lang/plume/<name>.lua returning
-- function(plume) that adds its functions to the module table.
local parts = { "_results", "_model", "_lm", "_constraint", "_expr", "_sde", "_twist", "_select", "_loo" }

return function(plume)
  for _, name in ipairs(parts) do
    require("plume." .. name)(plume)
  end
  -- stdlib modules reachable as fields, loaded on first use: plume.plot is require "plume.plot"
  local lazy = { plot = true, conformal = true, markov = true }
  setmetatable(plume, { __index = function(t, k)
    if lazy[k] then
      local mod = require("plume." .. k)
      rawset(t, k, mod)
      return mod
    end
  end })
  return plume
end
