#!/bin/sh
# stock_lua.sh -- plume loaded with `local P = require "plume"` into a stock lua5.4 works without a global
# `plume`: module state lives in the registry, and no C code looks the global up.
BUILD=${BUILD:-build}
if ! command -v lua5.4 >/dev/null; then echo "SKIP stock_lua: no lua5.4 interpreter"; exit 0; fi
if [ "${SAN:-}" = 1 ]; then echo "SKIP stock_lua: a stock lua5.4 cannot load the sanitizer build"; exit 0; fi
run() { LUA_CPATH="$BUILD/?.so" lua5.4 -e "$1" 2>&1; }
out=$(run 'local P = require "plume"
assert(plume == nil, "no global plume")
local lm = P.lm.ngram.train{ text = "a b a b a c a b", order = 2 }
local c = lm:context("a")
local tok = c:next_token()
print("token", type(tok))')
case "$out" in *"token"?number*|*"token"?string*|*"token"?table*|*"token"?userdata*) echo "PASS lm_context_works_without_a_global_plume" ;;
    *) echo "FAIL lm_context_works_without_a_global_plume: $out" ;; esac
out=$(run 'local P = require "plume"
local m = P.model(function(m) local x = m:sample("x", P.dist.normal(0, 1)); m:observe("y", P.dist.normal(x, 1), 1) end)
local post = P.infer(m, nil, { samples = 200, chains = 2, seed = 1, quiet = true })
local s = P.smc(m, {}, { particles = 100, seed = 1, quiet = true })
print("ok", #post:draws("x"), s.logz < 0)')
case "$out" in *"ok	400	true"*) echo "PASS infer_and_smc_work_without_a_global_plume" ;;
    *) echo "FAIL infer_and_smc_work_without_a_global_plume: $out" ;; esac
