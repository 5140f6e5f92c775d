-- plume._select: indexing a list by a discrete symbol, for mixtures and other models whose parameters are
-- chosen by a categorical site. plume.select(list, i) is plume.pick(i, list) (a select node when i is a
-- symbol, list[i] when it is a number); plume.vector(list) makes list[z] mean the same for a symbolic z, so a
-- model can write mu[z[i]] as it would with numbers.
return function(plume)
  local function is_symbol(v)
    local mt = type(v) == "userdata" and getmetatable(v)
    return mt and mt.__name == "plume.sym"
  end

  -- plume.select(list, i): list[i] for a 1-based index i, symbolic or plain
  function plume.select(list, i)
    if type(list) ~= "table" then
      error("plume.select: list must be a table (got " .. type(list) .. ")", 2)
    end
    return plume.pick(i, list)
  end

  local vector_meta = {
    __name = "plume.vector",
    __index = function(t, k)
      if is_symbol(k) then return plume.pick(k, t) end
      return nil
    end,
  }

  -- plume.vector(list): list itself, indexable by a symbol (list[z] is plume.select(list, z))
  function plume.vector(list)
    if type(list) ~= "table" then
      error("plume.vector: expected a table (got " .. type(list) .. ")", 2)
    end
    if getmetatable(list) ~= nil and getmetatable(list) ~= vector_meta then
      error("plume.vector: the table already has a metatable", 2)
    end
    return setmetatable(list, vector_meta)
  end
end
