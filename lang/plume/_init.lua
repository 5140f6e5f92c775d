-- plume._init: the Lua half of the plume module. Each entry is a file lang/plume/<name>.lua returning
-- function(plume) that adds its functions to the module table.
local parts = { "_results", "_model", "_lm", "_expr", "_sde" }

return function(plume)
  for _, name in ipairs(parts) do
    require("plume." .. name)(plume)
  end
  -- stdlib modules reachable as fields, loaded on first use: plume.plot is require "plume.plot"
  local lazy = { plot = true }
  setmetatable(plume, { __index = function(t, k)
    if lazy[k] then
      local mod = require("plume." .. k)
      rawset(t, k, mod)
      return mod
    end
  end })
  -- plume.markov.training_dynamics (stdlib/plume/training_dynamics.lua) joins the plume.markov namespace, which
  -- other stdlib modules share: it is added to whatever table plume.markov is (the lazy stdlib/plume/markov.lua
  -- when that exists, else a table made here) on first use of plume.markov.
  do
    local mt = getmetatable(plume)
    local index = mt.__index
    mt.__index = function(t, k)
      if k ~= "markov" then return index(t, k) end
      local markov = index(t, k)
      if markov == nil then
        local ok, mod = pcall(require, "plume.markov")
        if not ok and not tostring(mod):find("module 'plume.markov' not found", 1, true) then error(mod, 2) end
        markov = ok and type(mod) == "table" and mod or {}
        rawset(t, k, markov)
      end
      if rawget(markov, "training_dynamics") == nil then markov.training_dynamics = require "plume.training_dynamics" end
      return markov
    end
  end
  return plume
end
