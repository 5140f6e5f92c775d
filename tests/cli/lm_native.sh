#!/bin/sh
# plume.lm.native: a shared library's init function called through libffi gives a working backend.
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
if ! ${CC:-cc} -shared -fPIC -Iruntime -Iruntime/base -Iruntime/lm -o "$dir/libtoy.so" tests/cli/lm_native_lib.c 2>"$dir/cc.log"; then
    cat "$dir/cc.log"; echo "FAIL lm_native_builds"; exit 1
fi
cat > "$dir/t.lua" <<LUA
local lm = plume.lm.native{ lib = "$dir/libtoy.so", symbol = "toy_lm_init", arg = "x" }
local row = lm:next_logprobs{ 1 }          -- context length 1: scores 1, 2, 3, 0
local z = math.log(math.exp(1) + math.exp(2) + math.exp(3) + 1)
assert(math.abs(row[3] - (3 - z)) < 1e-12 and lm.n_vocab == 4 and lm:is_eos(0))
local t = lm:tokenize("abab")
assert(#t == 2 and t[1] == 3 and lm:detokenize(t) == "abab")
print("PASS lm_native_callbacks")
local ok, err = pcall(plume.lm.native, { lib = "$dir/libtoy.so", symbol = "toy_lm_init", arg = "fail" })
assert(not ok and err:find("returned 7", 1, true), err)
ok, err = pcall(plume.lm.native, { lib = "$dir/libtoy.so", symbol = "nope" })
assert(not ok and err:find("no symbol 'nope'", 1, true), err)
ok, err = pcall(plume.lm.native, { lib = "$dir/missing.so", symbol = "x" })
assert(not ok and err:find("cannot load", 1, true), err)
print("PASS lm_native_bad_input")
LUA
"$PLUME" --quiet "$dir/t.lua"
