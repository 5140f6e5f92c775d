-- plume._expr: vector and matrix helpers for traced model functions. They work on numbers and on symbolic
-- values alike (they only use + - * and plume.math), so the same code runs plainly and under tracing.
return function(plume)
  local function check_vec(v, fn, arg)
    if type(v) ~= "table" then error(fn .. ": " .. arg .. " must be a table (got " .. type(v) .. ")", 3) end
  end

  -- plume.matvec(A, x): the vector A x for a table of rows A
  function plume.matvec(A, x)
    check_vec(A, "plume.matvec", "A"); check_vec(x, "plume.matvec", "x")
    local r = {}
    for i = 1, #A do
      local row = A[i]
      if #row ~= #x then
        error(("plume.matvec: row %d of A has %d entries, x has %d"):format(i, #row, #x), 2)
      end
      local s = 0
      for j = 1, #x do s = s + row[j] * x[j] end
      r[i] = s
    end
    return r
  end

  -- plume.dot(a, b): sum of a[i] * b[i]
  function plume.dot(a, b)
    check_vec(a, "plume.dot", "a"); check_vec(b, "plume.dot", "b")
    if #a ~= #b then error(("plume.dot: lengths differ (%d and %d)"):format(#a, #b), 2) end
    local s = 0
    for i = 1, #a do s = s + a[i] * b[i] end
    return s
  end

  -- plume.vadd(a, b), plume.vsub(a, b), plume.vscale(k, a): elementwise vector arithmetic
  function plume.vadd(a, b)
    check_vec(a, "plume.vadd", "a"); check_vec(b, "plume.vadd", "b")
    local r = {}
    for i = 1, #a do r[i] = a[i] + b[i] end
    return r
  end
  function plume.vsub(a, b)
    check_vec(a, "plume.vsub", "a"); check_vec(b, "plume.vsub", "b")
    local r = {}
    for i = 1, #a do r[i] = a[i] - b[i] end
    return r
  end
  function plume.vscale(k, a)
    check_vec(a, "plume.vscale", "a")
    local r = {}
    for i = 1, #a do r[i] = k * a[i] end
    return r
  end
end
