#!/bin/sh
# stock_lua_engines.sh -- the engines work from a stock lua5.4 with `local P = require "plume"` and no global
# `plume` (module state lives in the registry and in upvalues, never in a global): plume.infer on one and on
# two threads (MH: the chains copy the program, which closes over the module P, onto their own states), is, smc.
BUILD=${BUILD:-build}
if ! command -v lua5.4 >/dev/null || [ "${SAN:-}" = 1 ]; then echo "SKIP stock_lua_engines: no lua5.4 (or sanitizer build)"; exit 0; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat >"$T/run.lua" <<'LUA'
local P = require "plume"
assert(rawget(_G, "plume") == nil, "a global plume exists")
local runs = 0
local m = P.model(function(m, ys)
  runs = runs + 1
  local mu = m:sample("mu", P.dist.normal(0, 1))
  for i, y in ipairs(ys) do m:observe("y" .. i, P.dist.normal(mu, 1), y) end
end)
local one = P.infer(m, { 1, 2 }, { method = "mh", samples = 200, chains = 2, seed = 1, threads = 1 })
local before = runs
local two = P.infer(m, { 1, 2 }, { method = "mh", samples = 200, chains = 2, seed = 1, threads = 2 })
local da, db, same = one:draws("mu"), two:draws("mu"), true
for i = 1, #da do same = same and da[i] == db[i] end
-- chains on their own states run copies of the program: this state's counter does not move
print("threads_same_draws", same and #da == 400)
print("threads_ran_on_copies", runs == before)
print("is_logz", P.infer(m, { 1 }, { method = "is", samples = 100, seed = 1 }).logz < 0)
print("smc_logz", P.smc(m, { { 1, 2 } }, { particles = 50, seed = 1 }).logz < 0)
LUA
out=$(cd "$T" && LUA_CPATH="$OLDPWD/$BUILD/?.so" lua5.4 run.lua 2>&1)
for k in threads_same_draws threads_ran_on_copies is_logz smc_logz; do
    case "$out" in
        *"$k	true"*) echo "PASS stock_lua_$k" ;;
        *) echo "FAIL stock_lua_$k: $out" ;;
    esac
done
