-- plume._init: the Lua half of the plume module. Each entry is a file lang/plume/<name>.lua returning
-- function(plume) that adds its functions to the module table.
local parts = { "_results", "_model", "_lm", "_expr", "_sde" }

return function(plume)
  for _, name in ipairs(parts) do
    require("plume." .. name)(plume)
  end
  return plume
end
