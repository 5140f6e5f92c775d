#!/bin/sh
# `luarocks make` builds plume with the Makefile and installs the module into a fresh tree, from which a stock
# lua5.4 requires it with LUA_CPATH set (what the README tells users with a non-default tree).
if ! command -v luarocks >/dev/null 2>&1 || ! command -v lua5.4 >/dev/null 2>&1; then
    echo "SKIP luarocks: luarocks or lua5.4 not installed (Debian packages luarocks, lua5.4; make deps)"
    exit 0
fi
if [ "$SAN" = 1 ]; then
    echo "SKIP luarocks: the rock is the ordinary build, not the sanitizer one"
    exit 0
fi
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
rockspec=$(ls plume-*.rockspec | head -n 1)
if BUILD=build luarocks --lua-version 5.4 --tree "$tree" make "$rockspec" >"$tree/log" 2>&1; then
    echo "PASS luarocks_make_installs_into_a_tree"
else
    echo "FAIL luarocks_make_installs_into_a_tree"; tail -n 20 "$tree/log"; exit 1
fi
[ -f "$tree/lib/lua/5.4/plume.so" ] && echo "PASS luarocks_module_in_tree_libdir" || echo "FAIL luarocks_module_in_tree_libdir"
out=$(cd / && LUA_CPATH="$tree/lib/lua/5.4/?.so;;" LUA_PATH="$tree/share/lua/5.4/?.lua;;" lua5.4 -e '
local plume = require "plume"
print(plume.version, string.format("%.6f", plume.dist.normal(0, 1):logpdf(0)), plume.json.encode({1, "a"}),
      type(require("plume.cascade").scratchpad), type(plume.plot.trace))' 2>&1)
[ "$out" = "$(sed -n 's/^VERSION := //p' Makefile)	-0.918939	[1,\"a\"]	function	function" ] &&
    echo "PASS luarocks_module_loads_in_stock_lua" || echo "FAIL luarocks_module_loads_in_stock_lua: $out"
