-- test_bffg_native.lua -- plume.bffg with the drift of its diffusions as native code (the default) and with the
-- interpreter (native = false): the generated code performs the interpreter's operations in its order, so the
-- chains must be the same draw for draw, bit for bit, with and without fixed_aux, for IS too; post.native says
-- which ran. (tests/cli/bffg_native.sh: no compiler, PLUME_NATIVE=0.)
local T = dofile("tests/lua/check.lua")
package.path = "tests/lua/?.lua;" .. package.path
local M = require "bffg_native_model"

local function same(a, b, what)
  local va, vb = M.values(a), M.values(b)
  T.ok(#va == #vb and #va > 0, what .. ": as many draws")
  local differ = 0
  for i = 1, #va do if va[i] ~= vb[i] then differ = differ + 1 end end
  T.eq(differ, 0, what .. ": draws that differ")
end

for _, fixed in ipairs { false, true } do
  T.test("mcmc: native and interpreted drifts give the same chain" .. (fixed and " (fixed_aux)" or ""), function()
    local a = M.run{ fixed_aux = fixed, threads = 2 }
    local b = M.run{ fixed_aux = fixed, threads = 1, native = false }
    T.eq(a.native, true, "native code ran")
    T.eq(b.native, false, "native = false: the interpreter ran")
    same(a, b, "mcmc")
    -- negative control: another seed gives another chain, so the comparison can fail
    local c = M.run{ fixed_aux = fixed, seed = 5 }
    local va, vc, differ = M.values(a), M.values(c), 0
    for i = 1, #va do if va[i] ~= vc[i] then differ = differ + 1 end end
    T.ok(differ > 0, "another seed differs")
  end)
end

T.test("is: native and interpreted drifts give the same weights", function()
  local a = plume.bffg(M.g, nil, { samples = 200, seed = 2 })
  local b = plume.bffg(M.g, nil, { samples = 200, seed = 2, native = false })
  T.eq(a.native, true)
  T.eq(b.native, false)
  T.eq(a.loglik, b.loglik, "log-likelihood estimate")
  for i = 1, 200 do T.eq(a.log_weights_raw[i], b.log_weights_raw[i], "log weight " .. i) end
end)

T.test("native must be a boolean", function()
  T.raises(function() plume.bffg(M.g, nil, { samples = 10, native = 1 }) end, "option 'native' must be a boolean")
end)
