-- test_compiler.lua -- the tracing compiler from Lua: compiled values equal plain Lua for every supported
-- function, gradients equal central differences, symbolic distributions score like numeric ones, natives
-- bind through libffi, and every untraceable construct is reported with its line and what to use instead.
local T = dofile("tests/lua/check.lua")
local M = plume.math

-- plain-Lua references, written without plume.math
local function logistic(x) return 1 / (1 + math.exp(-x)) end
local function softplus(x) return math.log(1 + math.exp(x)) end

local unary = {
  exp = math.exp, log = math.log, log1p = function(x) return math.log(1 + x) end,
  expm1 = function(x) return math.exp(x) - 1 end, sqrt = math.sqrt, sin = math.sin, cos = math.cos,
  tan = math.tan, asin = math.asin, acos = math.acos, atan = math.atan,
  sinh = function(x) return (math.exp(x) - math.exp(-x)) / 2 end,
  cosh = function(x) return (math.exp(x) + math.exp(-x)) / 2 end,
  tanh = function(x) return (math.exp(x) - math.exp(-x)) / (math.exp(x) + math.exp(-x)) end,
  logistic = logistic, softplus = softplus, abs = math.abs, floor = math.floor,
  sign = function(x) return x > 0 and 1 or (x < 0 and -1 or 0) end,
}
-- relative tolerances: 1e-12 except where the reference formula itself loses digits (log(1+x) for small x)
local loose = { log1p = 1e-9, expm1 = 1e-9, sinh = 1e-12, softplus = 1e-12 }

local function rand_inputs(n, lo, hi, seed)
  local r, st = {}, seed
  for i = 1, n do
    st = (st * 1103515245 + 12345) % 2147483648
    r[i] = lo + (hi - lo) * st / 2147483648
  end
  return r
end

local function rel(a, b) return math.abs(a - b) / math.max(1, math.abs(b)) end

T.test("compiled unary functions equal plain Lua on random inputs", function()
  local raw = rand_inputs(300, -0.95, 0.95, 1)
  for name, ref in pairs(unary) do
    local xs = {}
    for i = 1, #raw do xs[i] = (name == "log" or name == "sqrt") and math.abs(raw[i]) + 0.01 or raw[i] end
    local out = plume.compile(function(x) return M[name](x) end, 1)(xs)
    local tol = loose[name] or 1e-12
    for i = 1, #xs do
      T.ok(rel(out[i], ref(xs[i])) <= tol, name .. "(" .. xs[i] .. "): " .. out[i] .. " vs " .. ref(xs[i]))
      T.ok(rel(M[name](xs[i]), ref(xs[i])) <= tol, "plume.math." .. name .. " on a number")
    end
  end
end)

T.test("compiled lgamma, digamma, erf and normcdf equal independent references", function()
  local f = plume.compile(function(x) return { M.lgamma(x), M.digamma(x), M.erf(x), M.normcdf(x) } end, 1)
  for _, x in ipairs(rand_inputs(50, 0.2, 2, 2)) do
    local lg, dg, e, c = f(x)
    -- lgamma by Stirling's series at x + 8 (truncation error below 1e-15), shifted back
    local z, s = x + 8, 0
    for k = 0, 7 do s = s - math.log(x + k) end
    local st = (z - 0.5) * math.log(z) - z + 0.5 * math.log(2 * math.pi) + 1 / (12 * z) - 1 / (360 * z ^ 3)
      + 1 / (1260 * z ^ 5) - 1 / (1680 * z ^ 7) + 1 / (1188 * z ^ 9) - 691 / (360360 * z ^ 11)
    T.ok(rel(lg, st + s) < 1e-12, "lgamma " .. x)
    T.ok(rel(dg, (M.lgamma(x + 1e-5) - M.lgamma(x - 1e-5)) / 2e-5) < 1e-7, "digamma " .. x)
    T.ok(rel(M.trigamma(x), (M.digamma(x + 1e-5) - M.digamma(x - 1e-5)) / 2e-5) < 1e-7, "trigamma " .. x)
    -- erf by its Maclaurin series (terms stay below e^4, so 1e-13 is reachable)
    local term, sum, n = x, x, 0
    repeat
      n = n + 1
      term = -term * x * x / n
      sum = sum + term / (2 * n + 1)
    until math.abs(term) < 1e-18
    T.ok(rel(e, 2 / math.sqrt(math.pi) * sum) < 1e-12, "erf " .. x)
    T.ok(rel(c, 0.5 * (1 + M.erf(x / math.sqrt(2)))) < 1e-12, "normcdf " .. x)
  end
end)

T.test("arithmetic operators and binary functions equal plain Lua", function()
  local xs, ys = rand_inputs(257, 0.1, 3, 3), rand_inputs(257, -2, 2, 4)
  local f = plume.compile(function(x, y)
    return { x + y, x - y, x * y, x / y, x ^ 2.5, -x, x % 0.7, x // 0.3, M.pow(x, y), M.min(x, y, 0.5),
             M.max(x, y), M.atan(y, x), M.log(x, 2), 2 ^ y, 3 - x * (y + 1) / (x + 2) }
  end, 2)
  local outs = { f(xs, ys) }
  for i = 1, #xs do
    local x, y = xs[i], ys[i]
    local want = { x + y, x - y, x * y, x / y, x ^ 2.5, -x, x % 0.7, x // 0.3, x ^ y, math.min(x, y, 0.5),
                   math.max(x, y), math.atan(y, x), math.log(x, 2), 2 ^ y, 3 - x * (y + 1) / (x + 2) }
    for k = 1, #want do T.ok(rel(outs[k][i], want[k]) <= 1e-12, "op " .. k .. " at " .. x .. "," .. y) end
  end
end)

T.test("gradients equal central finite differences", function()
  local f = plume.compile(function(x, y)
    return M.exp(x) * M.sin(y) + M.log1p(x * x) / (1 + y ^ 2) + M.tanh(x - y) + M.logistic(x * y)
      + M.softplus(y) + M.sqrt(x + 2) * M.atan(y) + M.lgamma(x + 3) + M.pow(x + 2, y) + M.abs(y - 3)
  end, 2)
  for _, p in ipairs({ {0.3, 0.7}, {-0.4, 1.2}, {1.1, -0.5} }) do
    local g, h = f:grad(p[1], p[2]), 1e-6
    local d1 = (f(p[1] + h, p[2]) - f(p[1] - h, p[2])) / (2 * h)
    local d2 = (f(p[1], p[2] + h) - f(p[1], p[2] - h)) / (2 * h)
    T.near(g[1], d1, 1e-6 * math.max(1, math.abs(d1)), "d/dx")
    T.near(g[2], d2, 1e-6 * math.max(1, math.abs(d2)), "d/dy")
  end
  -- a Jacobian: rows are outputs
  local J = plume.compile(function(x, y) return { x * y, M.exp(x) + y } end, 2):grad(0.5, 2)
  T.near(J[1][1], 2, 1e-15); T.near(J[1][2], 0.5, 1e-15)
  T.near(J[2][1], math.exp(0.5), 1e-15); T.near(J[2][2], 1, 1e-15)
end)

T.test("ifelse, comparisons and pick select per value", function()
  local f = plume.compile(function(x, y)
    return { plume.ifelse(plume.gt(x, y), x, y), plume.ifelse(x:le(0), -x, x), plume.ifelse(plume.eq(x, y), 1, 0),
             plume.pick(y, {10, 20, 30}), plume.ifelse(plume.ne(x, 0), {x, 1}, {2, 3})[1] }
  end, 2)
  local a, b, c, d, e = f({3, -1, 2}, {1, 2, 2})
  T.eq(a[1], 3); T.eq(a[2], 2); T.eq(b[2], 1); T.eq(c[3], 1); T.eq(c[1], 0)
  T.eq(d[1], 10); T.eq(d[2], 20); T.eq(e[1], 3)
  T.eq(plume.ifelse(true, 1, 2), 1); T.eq(plume.lt(1, 2), true); T.eq(plume.pick(2, {5, 6}), 6)
end)

-- An index outside 1..#list, or not a whole number, never yields an entry (it used to give the last one):
-- compiled, it is NaN, so a log density that uses it is NaN (the model objects report NaN) instead of a wrong
-- finite value; with plain numbers plume.pick raises an error naming the index and the length.
T.test("pick outside its list gives NaN compiled and an error with numbers", function()
  local f = plume.compile(function(i) return plume.pick(i, {10, 20, 30}) end, 1)
  local v = f({0, 1, 2, 3, 4, 2.5, -1})
  T.eq(v[2], 10); T.eq(v[3], 20); T.eq(v[4], 30)
  for _, k in ipairs{1, 5, 6, 7} do T.ok(v[k] ~= v[k], "index " .. ({0, 1, 2, 3, 4, 2.5, -1})[k] .. " gives NaN, got " .. v[k]) end
  T.ok(f(4) ~= f(4) and f(0) ~= f(0) and f(2.5) ~= f(2.5), "scalar calls give NaN")
  -- rows of a matrix are picked elementwise, with the same NaN outside
  local rows = plume.compile(function(i) return plume.pick(i, {{1, 2}, {3, 4}}) end, 1)
  local r1, r2 = rows(2); T.eq(r1, 3); T.eq(r2, 4)
  r1, r2 = rows(3); T.ok(r1 ~= r1 and r2 ~= r2, "row 3 of 2 is NaN")
  -- a log density through an out-of-range pick is not finite (it was log N(5 | 5, 1) before)
  local lp = plume.compile(function(i, x) return plume.dist.normal(plume.pick(i, {0, 5}), 1):logpdf(x) end, 2)
  T.near(lp(2, 5), -0.5 * math.log(2 * math.pi), 1e-15)
  T.ok(lp(3, 5) ~= lp(3, 5), "logpdf with index 3 of 2 is NaN")
  local cat = plume.compile(function(i) return plume.dist.categorical(plume.pick(i, {{0.9, 0.1}, {0.2, 0.8}})):logpdf(1) end, 1)
  T.near(cat(2), math.log(0.2), 1e-15); T.ok(cat(3) ~= cat(3), "categorical row 3 of 2 is NaN")
  -- plain numbers
  T.eq(plume.pick(3, {10, 20, 30}), 30); T.eq(plume.pick(3.0, {10, 20, 30}), 30)
  T.raises(function() return plume.pick(0, {10, 20, 30}) end, "index 0 is not a whole number in 1..3")
  T.raises(function() return plume.pick(4, {10, 20, 30}) end, "index 4 is not a whole number in 1..3 (the list has 3 entries)")
  local err = T.raises(function() return plume.pick(2.5, {10, 20, 30}) end, "index 2.5 is not a whole number in 1..3")
  T.ok(tostring(err):find("test_compiler.lua:%d+:"), "the error names the caller's line: " .. tostring(err))
  T.raises(function() return plume.pick(1, {}) end, "in 1..0")
end)

-- a state-space model whose transition mean is picked by the state: a state outside the list makes the log
-- density NaN, which ssm:logjoint reports, never a value computed from the last entry (it was finite before)
T.test("ssm logjoint with a state outside the list picked is an error, not a value", function()
  local m = plume.ssm{
    params = { s = 0.5 },
    init  = function(p) return plume.dist.normal(0, 10) end,
    trans = function(p, x, t) return plume.dist.normal(plume.pick(x, {0, 5}), p.s) end,
    obs   = function(p, x, t) return plume.dist.normal(x, p.s) end,
  }
  T.ok(m:logjoint({2, 5}, {2, 5}) > -math.huge)
  T.raises(function() return m:logjoint({3, 5}, {3, 5}) end, "NaN")
end)

T.test("matrices and vectors trace through plume.matvec and indexing", function()
  local A = { {1, 2}, {3, 4} }
  local f = plume.compile(function(x, y)
    local v = plume.matvec(A, {x, y})
    return { v[1], v[2], plume.dot(v, {x, 1}) }
  end, 2)
  local a, b, c = f(1, 2)
  T.eq(a, 5); T.eq(b, 11); T.eq(c, 16)
end)

T.test("symbolic distributions score like numeric ones", function()
  local D = plume.dist
  local cases = {
    { function(m, s) return D.normal(m, s) end, 0.3, 1.7, -0.2 },
    { function(m, s) return D.gamma(m + 1, s) end, 1.5, 0.8, 2.1 },
    { function(m, s) return D.student_t(4, m, s) end, 0.3, 1.2, 1.0 },
    { function(m, s) return D.poisson(s * 3) end, 0, 1.3, 4 },
    { function(m, s) return D.beta(m + 1, s) end, 0.5, 2, 0.3 },
    { function(m, s) return D.categorical({ m, s, 1 - m - s }) end, 0.2, 0.5, 2 },
    { function(m, s) return D.weibull(m + 1, s) end, 0.5, 2, 0.9 },
  }
  for k, c in ipairs(cases) do
    local f = plume.compile(function(m, s) return c[1](m, s):logpdf(c[4]) end, 2)
    local want = c[1](c[2], c[3]):logpdf(c[4])
    T.near(f(c[2], c[3]), want, 1e-12 * math.max(1, math.abs(want)), "case " .. k)
  end
  local mv = plume.compile(function(a, b)
    return D.mvnormal({a, b}, {{2, 0.5}, {0.5, 1}}):logpdf({0.1, 0.2})
  end, 2)
  T.near(mv(0.3, -0.1), D.mvnormal({0.3, -0.1}, {{2, 0.5}, {0.5, 1}}):logpdf({0.1, 0.2}), 1e-12)
end)

local function here() return debug.getinfo(2, "l").currentline end

T.test("untraceable constructs give their errors with the line", function()
  local line = here() + 1
  local err = T.raises(function() plume.compile(function(x) if x > 0 then return x end return -x end, 1) end,
    "use plume.ifelse")
  T.ok(err:find("test_compiler.lua:" .. line, 1, true), "names the line: " .. err)
  line = here() + 1
  err = T.raises(function() plume.compile(function(x) return math.exp(x) end, 1) end, "use plume.math.exp")
  T.ok(err:find("test_compiler.lua:" .. line, 1, true), "names the line: " .. err)
  T.raises(function() plume.compile(function(x) return string.rep("a", x) end, 1) end, "plume.model")
  T.raises(function() plume.compile(function(x) return x <= 1 end, 1) end, "plume.le")
  T.raises(function() plume.compile(function(x) return x == 2 * x end, 1) end, "plume.eq")
  T.raises(function() plume.compile(function(x) return #x end, 1) end, "scalar")
  T.raises(function() plume.compile(function(x) return x[1] end, 1) end, "cannot be indexed")
  T.raises(function() plume.compile(function(x) return "a" .. x end, 1) end, "concatenate")
  T.raises(function() plume.compile(function(x) return plume.dist.normal(x, 1):sample() end, 1) end, "symbolic")
  T.raises(function() plume.compile(function(x) return {} end, 1) end, "empty")
  T.raises(function() plume.compile(function(x) return "no" end, 1) end, "must be a number or a symbolic value")
  T.raises(function()
    plume.ssm{ init = function(p) return 0 end, trans = function(p, x) return x end,
               obs = function(p, x) return plume.dist.normal(x, 1) end }
  end, "must return a distribution")
end)

T.test("plume.native binds C functions for plain and compiled calls", function()
  local hyp = plume.native{ lib = "libm.so.6", name = "hypot", sig = "double(double, double)" }
  T.eq(hyp(3, 4), 5)
  local ldexp = plume.native{ lib = "libm.so.6", name = "ldexp", sig = "double(double, int)" }
  T.eq(ldexp(1.5, 3), 12)
  local f = plume.compile(function(x, y) return hyp(x, y) * 2 end, 2)
  T.near(f(5, 12), 26, 1e-14)
  T.raises(function() f:grad(1, 1) end, "has no grad function")
  T.raises(function() plume.native{ lib = "libdoesnotexist.so", name = "f", sig = "double(double)" } end,
    "cannot open library")
  T.raises(function() plume.native{ lib = "libm.so.6", name = "no_such_fn", sig = "double(double)" } end,
    "not found")
  T.raises(function() plume.native{ lib = "libm.so.6", name = "exp", sig = "double(doble)" } end,
    "bad signature")
  T.raises(function() plume.native{ lib = "libm.so.6", name = "exp", sig = "double" } end, "bad signature")
  T.raises(function() plume.compile(function(x) return ldexp(x, 2) end, 1) end, "double(double")
end)

T.test("plume.native gradients come from the grad function", function()
  local dir = os.tmpname()
  os.remove(dir)
  local src, lib = dir .. ".c", dir .. ".so"
  local fh = assert(io.open(src, "w"))
  fh:write([[
#include <math.h>
double sqhyp(double a, double b) { return a * a * b + sin(b); }
void sqhyp_grad(double a, double b, double *g) { g[0] = 2 * a * b; g[1] = a * a + cos(b); }
]])
  fh:close()
  local ok = os.execute("cc -shared -fPIC -o " .. lib .. " " .. src .. " -lm")
  os.remove(src)
  T.ok(ok, "a C compiler is needed to build the test library")
  local f = plume.native{ lib = lib, name = "sqhyp", sig = "double(double, double)", grad = "sqhyp_grad" }
  local c = plume.compile(function(x, y) return f(x, y) * x end, 2)
  local g = c:grad(1.5, 0.5)
  T.near(g[1], 2 * 1.5 * 0.5 * 1.5 + (1.5 ^ 2 * 0.5 + math.sin(0.5)), 1e-12)
  T.near(g[2], (1.5 ^ 2 + math.cos(0.5)) * 1.5, 1e-12)
  T.raises(function() plume.native{ lib = lib, name = "sqhyp", sig = "double(double, double)", grad = "nope" } end,
    "grad symbol")
  os.remove(lib)
end)
