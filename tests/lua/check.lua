-- check.lua -- the Lua test harness: T.test(name, fn) prints "PASS name" or "FAIL name: why";
-- assertions raise with the caller's line. Statistical checks state their tolerance where they are used.
local T = {}

function T.test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    print("PASS " .. name)
  else
    print("FAIL " .. name .. ": " .. tostring(err))
  end
  io.stdout:flush()
end

function T.ok(cond, what)
  if not cond then error(what or "check failed", 2) end
end

function T.eq(a, b, what)
  if a ~= b then error(string.format("%s: got %s, expected %s", what or "eq", tostring(a), tostring(b)), 2) end
end

function T.near(a, b, tol, what)
  if type(a) ~= "number" or not (math.abs(a - b) <= tol) then
    error(string.format("%s: got %.17g, expected %.17g (tolerance %.3g)", what or "near", a or 0/0, b, tol), 2)
  end
end

-- fn must raise an error whose message contains `pattern` (plain text match)
function T.raises(fn, pattern, what)
  local ok, err = pcall(fn)
  if ok then error((what or "raises") .. ": no error raised (expected '" .. pattern .. "')", 2) end
  if not tostring(err):find(pattern, 1, true) then
    error(string.format("%s: error '%s' does not contain '%s'", what or "raises", tostring(err), pattern), 2)
  end
  return err
end

return T
