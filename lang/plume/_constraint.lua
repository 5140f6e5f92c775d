-- plume._constraint: plume.json_schema(schema) -- a JSON-schema subset compiled to a grammar (plume.grammar)
-- whose sentences are exactly the JSON texts that match the schema, with optional white space between tokens.
-- Supported: type (a name or a list of names) object (properties, required; no other keys), array (items,
-- minItems, maxItems), string (minLength, maxLength), number, integer, boolean, null; enum and const of any values;
-- anyOf / oneOf (both as a union); {} or true for any JSON value. Properties are written in a fixed order: the
-- required ones in the order `required` lists them, then the others in alphabetical order.
return function(plume)
  local grammar = plume.grammar

  local function lit(s)   -- a grammar string literal for the bytes of s
    return '"' .. s:gsub('[%c"\\\128-\255]', function(c) return string.format("\\x%02x", c:byte()) end) .. '"'
  end

  local function encode(v)   -- JSON text of a scalar for enum / const
    if type(v) == "string" then return plume.json.encode(v) end
    if v == nil or v == plume.json.null then return "null" end
    if math.type(v) == "integer" then return string.format("%d", v) end
    return plume.json.encode(v)
  end

  local function compile(schema, ws)
    local rules, n = {}, 0
    local function new_rule(body)
      n = n + 1
      local name = "s" .. n
      rules[#rules + 1] = name .. " ::= " .. body
      return name
    end
    local node
    local function fail(path, msg) error("plume.json_schema: " .. (path == "" and "/" or path) .. ": " .. msg, 0) end

    local function object(s, path)
      local props = s.properties or {}
      if type(props) ~= "table" then fail(path, "properties must be an object") end
      local req, seen, order = {}, {}, {}
      for i, name in ipairs(s.required or {}) do
        if type(name) ~= "string" then fail(path, "required[" .. i .. "] must be a string") end
        if props[name] == nil then fail(path, "required property '" .. name .. "' is not in properties") end
        if not seen[name] then order[#order + 1] = name; seen[name] = true; req[name] = true end
      end
      local rest = {}
      for name in pairs(props) do
        if type(name) ~= "string" then fail(path, "property names must be strings") end
        if not seen[name] then rest[#rest + 1] = name end
      end
      table.sort(rest)
      for _, name in ipairs(rest) do order[#order + 1] = name end
      local k = #order
      if k == 0 then return new_rule('"{" ws "}"') end
      -- R(i, comma): the properties from i on, comma saying whether one was written before
      local names = {}
      for i = 1, k + 1 do names[i] = { [true] = "s" .. (n + 2 * i - 1), [false] = "s" .. (n + 2 * i) } end
      n = n + 2 * (k + 1)
      local bodies = {}
      for i = 1, k do
        local pname = order[i]
        local value = node(props[pname], path .. "/properties/" .. pname)
        for _, comma in ipairs({ true, false }) do
          local alt = (comma and 'ws "," ws ' or "") .. lit(plume.json.encode(pname)) .. ' ws ":" ws ' .. value .. " " .. names[i + 1][true]
          if not req[pname] then alt = names[i + 1][comma] .. " | " .. alt end
          bodies[#bodies + 1] = names[i][comma] .. " ::= " .. alt
        end
      end
      bodies[#bodies + 1] = names[k + 1][true] .. ' ::= ""'
      bodies[#bodies + 1] = names[k + 1][false] .. ' ::= ""'
      for _, b in ipairs(bodies) do rules[#rules + 1] = b end
      return new_rule('"{" ws ' .. names[1][false] .. ' ws "}"')
    end

    local function array(s, path)
      local item = s.items == nil and "value" or node(s.items, path .. "/items")
      local lo, hi = s.minItems or 0, s.maxItems
      if math.type(lo) ~= "integer" or lo < 0 or lo > 1000 then fail(path, "minItems must be an integer in 0..1000") end
      if hi ~= nil and (math.type(hi) ~= "integer" or hi < lo or hi > 1000) then
        fail(path, "maxItems must be an integer in minItems..1000")
      end
      local sep = 'ws "," ws ' .. item
      if hi == 0 then return new_rule('"[" ws "]"') end
      local function more(m)   -- up to m more items (any number when m is nil)
        if m == nil then return "( " .. sep .. " )*" end
        local tail = ""
        for _ = 1, m do tail = "( " .. sep .. " " .. tail .. " )?" end
        return tail
      end
      if lo == 0 then
        return new_rule('"[" ws ( ' .. item .. " " .. more(hi and hi - 1) .. ' ws )? "]"')
      end
      local parts = { item }
      for _ = 2, lo do parts[#parts + 1] = sep end
      return new_rule('"[" ws ' .. table.concat(parts, " ") .. " " .. more(hi and hi - lo) .. ' ws "]"')
    end

    local simple = { string = "string", number = "number", integer = "integer", boolean = '( "true" | "false" )',
                     null = '"null"' }
    -- keywords that only annotate, and those this compiler enforces; any other is an error rather than a
    -- constraint silently dropped
    local known = { type = true, properties = true, required = true, items = true, minItems = true, maxItems = true,
                    enum = true, const = true, anyOf = true, oneOf = true, minLength = true, maxLength = true,
                    additionalProperties = true, title = true, description = true, ["$schema"] = true,
                    ["$id"] = true, default = true, examples = true, ["$comment"] = true }

    local function string_rule(s, path)
      local lo, hi = s.minLength or 0, s.maxLength
      if lo == 0 and hi == nil then return "string" end
      if math.type(lo) ~= "integer" or lo < 0 or lo > 200 then fail(path, "minLength must be an integer in 0..200") end
      if hi ~= nil and (math.type(hi) ~= "integer" or hi < lo or hi > 200) then
        fail(path, "maxLength must be an integer in minLength..200")
      end
      local parts = { '"\\""' }
      for _ = 1, lo do parts[#parts + 1] = "char" end
      if hi == nil then
        parts[#parts + 1] = "char*"
      else
        local tail = ""
        for _ = lo + 1, hi do tail = "( char " .. tail .. " )?" end
        parts[#parts + 1] = tail
      end
      parts[#parts + 1] = '"\\""'
      return new_rule(table.concat(parts, " "))
    end

    function node(s, path)
      if s == true then return "value" end
      if type(s) ~= "table" then fail(path, "a schema must be an object (got " .. type(s) .. ")") end
      if s["$ref"] then fail(path, "$ref is not supported") end
      for k in pairs(s) do
        if not known[k] then fail(path, "keyword '" .. tostring(k) .. "' is not supported") end
      end
      if s.additionalProperties ~= nil and s.additionalProperties ~= false then
        fail(path, "additionalProperties must be false or absent (no other properties are written)")
      end
      if s.const ~= nil then return new_rule(lit(encode(s.const))) end
      if s.enum ~= nil then
        if type(s.enum) ~= "table" or #s.enum == 0 then fail(path, "enum must be a non-empty list") end
        local alts = {}
        for i, v in ipairs(s.enum) do alts[i] = lit(encode(v)) end
        return new_rule(table.concat(alts, " | "))
      end
      local union = s.anyOf or s.oneOf
      if union then
        local alts = {}
        for i, sub in ipairs(union) do alts[i] = node(sub, path .. "/anyOf/" .. (i - 1)) end
        return new_rule(table.concat(alts, " | "))
      end
      local t = s.type
      if t == nil then
        if s.properties then t = "object" elseif s.items then t = "array" else return "value" end
      end
      if type(t) == "table" then
        local alts = {}
        for i, name in ipairs(t) do
          local sub = {}
          for k, v in pairs(s) do sub[k] = v end
          sub.type = name
          alts[i] = node(sub, path)
        end
        return new_rule(table.concat(alts, " | "))
      end
      if t == "object" then return object(s, path) end
      if t == "array" then return array(s, path) end
      if t == "string" then return string_rule(s, path) end
      if simple[t] then return simple[t] end
      fail(path, "unsupported type '" .. tostring(t) .. "' (object, array, string, number, integer, boolean, null)")
    end

    local top = node(schema, "")
    local base = grammar.json_source:gsub("^root[^\n]*\n", "")
    if not ws then base = base:gsub("ws     ::= [^\n]*", 'ws     ::= ""') end
    return "root ::= ws " .. top .. " ws\n" .. table.concat(rules, "\n") .. "\n" .. base ..
           'integer ::= "-"? ( "0" | [1-9] [0-9]* )\n'
  end

  --- plume.json_schema(schema [, {whitespace = true}]) -> constraint, grammar text; schema is a Lua table or a
  --- JSON string; whitespace = false allows no white space between tokens (compact JSON)
  function plume.json_schema(schema, opts)
    if opts ~= nil and type(opts) ~= "table" then
      error("plume.json_schema: options must be a table (got " .. type(opts) .. ")", 2)
    end
    for k in pairs(opts or {}) do
      if k ~= "whitespace" then error("plume.json_schema: unknown option '" .. tostring(k) .. "' (options: whitespace)", 2) end
    end
    local ws = not (opts and opts.whitespace == false)
    if type(schema) == "string" then
      local ok, v = pcall(plume.json.decode, schema)
      if not ok then error("plume.json_schema: the schema is not JSON: " .. tostring(v), 2) end
      schema = v
    end
    if type(schema) ~= "table" and schema ~= true then
      error("plume.json_schema: expected a schema table or JSON text (got " .. type(schema) .. ")", 2)
    end
    local ok, text = pcall(compile, schema, ws)
    if not ok then error(text, 2) end
    return grammar(text), text
  end
end
