#!/bin/sh
# bffg_native.sh -- native code for BFFG drifts falls back to the interpreter without a word to the user: with no
# compiler (PLUME_CC=/nonexistent) or PLUME_NATIVE=0 the chain is the native one bit for bit and post.native is
# false; the compiled objects land in the cache folder ($XDG_CACHE_HOME/plume), a second process reuses them, and
# a folder others may write to is not used.
P=${PLUME:-build/plume}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
cat > "$T/run.lua" <<'LUA'
package.path = "tests/lua/?.lua;" .. package.path
local M = require "bffg_native_model"
local post = M.run{}
local v = M.values(post)
local parts = { tostring(post.native), #v }
for i = 1, #v, 7 do parts[#parts + 1] = string.format("%.17g", v[i]) end
print(table.concat(parts, " "))
LUA
native=$(XDG_CACHE_HOME="$T/cache" "$P" "$T/run.lua" 2>&1)
nso=$(ls "$T/cache/plume" 2>/dev/null | grep -c '\.so$')
case "$native" in true*) pass native_runs_and_caches_its_object ;; *) fail native_runs_and_caches_its_object "$native" ;; esac
# three objects: the drift alone (paths driven by a random stream), the whole guided path (by given innovations) and
# two such paths side by side (pCN's path and parameter proposals)
[ "$nso" = 3 ] && pass three_objects_in_the_cache || fail three_objects_in_the_cache "$nso objects"
ino=$(ls -i "$T/cache/plume")
second=$(XDG_CACHE_HOME="$T/cache" "$P" "$T/run.lua" 2>&1)
[ "$second" = "$native" ] && [ "$(ls -i "$T/cache/plume")" = "$ino" ] && pass a_second_process_reuses_the_objects \
    || fail a_second_process_reuses_the_objects "$second; $ino"
again=$(XDG_CACHE_HOME="$T/cache" PLUME_CC=/nonexistent/cc-from-cache "$P" "$T/run.lua" 2>&1)
nocc=$(XDG_CACHE_HOME="$T/cache2" PLUME_CC=/nonexistent/cc "$P" "$T/run.lua" 2>&1)
off=$(XDG_CACHE_HOME="$T/cache3" PLUME_NATIVE=0 "$P" "$T/run.lua" 2>&1)
ro=$(mkdir "$T/ro" && chmod 500 "$T/ro" && XDG_CACHE_HOME="$T/ro" HOME="$T/ro" "$P" "$T/run.lua" 2>&1)
rest=${native#true }
[ "$nocc" = "false $rest" ] && pass no_compiler_gives_the_interpreter_and_the_same_chain || fail no_compiler_gives_the_interpreter_and_the_same_chain "$nocc vs $native"
[ "$off" = "false $rest" ] && pass plume_native_0_gives_the_interpreter_and_the_same_chain || fail plume_native_0_gives_the_interpreter_and_the_same_chain "$off"
# a compiler named differently hashes differently: the first object is not reused for it, and it does not exist
[ "$again" = "false $rest" ] && pass the_cache_key_includes_the_compiler || fail the_cache_key_includes_the_compiler "$again"
# an unwritable cache folder falls back to /tmp/plume-<uid> (or the interpreter): the same chain either way
case "$ro" in *" $rest") pass unwritable_cache_still_runs ;; *) fail unwritable_cache_still_runs "$ro" ;; esac
[ -z "$(ls "$T/cache/plume" | grep -v '\.so$')" ] && pass no_temporary_files_left || fail no_temporary_files_left "$(ls "$T/cache/plume")"
# a cache folder that others may write to is never used (its objects would be loaded into this process)
mkdir -p "$T/ww/plume" && chmod 777 "$T/ww/plume"
ww=$(XDG_CACHE_HOME="$T/ww" "$P" "$T/run.lua" 2>&1)
case "$ww" in *" $rest") [ -z "$(ls "$T/ww/plume")" ] && pass a_world_writable_cache_is_not_used \
    || fail a_world_writable_cache_is_not_used "$(ls "$T/ww/plume")" ;; *) fail a_world_writable_cache_is_not_used "$ww" ;; esac
