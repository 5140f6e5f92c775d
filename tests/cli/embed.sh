#!/bin/sh
# embed.sh -- `make install` into a fresh prefix, then: a host C program built against the installed headers
# and library (through pkg-config) runs a model and reads its result; a stock lua5.4 loads `require "plume"`.
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
SANFLAGS=""
[ "${SAN:-}" = 1 ] && SANFLAGS="-fsanitize=address,undefined"
if ! make -s install PREFIX="$T" SAN="${SAN:-}" >"$T/install.log" 2>&1; then
    echo "FAIL make_install_succeeds: $(tail -5 "$T/install.log")"; exit 1
fi
echo "PASS make_install_succeeds"
for f in bin/plume lib/libplume.a lib/libplume.so lib/lua/5.4/plume.so include/plume/plume.h include/plume/plume_lua.h lib/pkgconfig/plume.pc \
         share/plume/proposals/mixture.plmprop share/plume/proposals/grid.plmprop share/plume/proposals/chain.plmprop; do
    [ -e "$T/$f" ] || { echo "FAIL install_puts_every_file_in_place: missing $f"; exit 1; }
done
echo "PASS install_puts_every_file_in_place"
export PKG_CONFIG_PATH="$T/lib/pkgconfig"
if cc $SANFLAGS examples/embed/host.c $(pkg-config --cflags --libs plume) -Wl,-rpath,"$T/lib" -o "$T/host" 2>"$T/cc.log"; then
    echo "PASS host_builds_against_installed_plume"
else
    echo "FAIL host_builds_against_installed_plume: $(cat "$T/cc.log")"; exit 1
fi
out=$("$T/host" 2>&1)
case "$out" in
    *"posterior mean of p: 0.70"*"error as expected: "*"normal: sigma must be > 0 (got -1)"*"at 0.5: -1.0439385332047"*)
        echo "PASS host_runs_a_model_and_reads_the_result" ;;
    *) echo "FAIL host_runs_a_model_and_reads_the_result: $out" ;;
esac
# the engines from C alone (no Lua state): NUTS and random-walk MH on a compiled target, a resampling step
if cc $SANFLAGS examples/embed/engine.c $(pkg-config --cflags --libs plume) -Wl,-rpath,"$T/lib" -lm -o "$T/engine" 2>"$T/cc.log"; then
    out=$("$T/engine" 2>&1)
    case "$out" in
        *"nuts  mu: mean"*"rwmh  mu: mean"*"resampling: ESS"*"all engines agree with the exact posterior"*)
            echo "PASS c_host_runs_engines_without_lua" ;;
        *) echo "FAIL c_host_runs_engines_without_lua: $out" ;;
    esac
else
    echo "FAIL c_host_runs_engines_without_lua: $(cat "$T/cc.log")"
fi
if command -v lua5.4 >/dev/null && [ -z "$SANFLAGS" ]; then
    out=$(LUA_CPATH="$T/lib/lua/5.4/?.so" lua5.4 -e 'local plume = require "plume"; print(plume.dist.normal(0, 1):logpdf(0.5))' 2>&1)
    [ "$out" = "-1.0439385332047" ] && echo "PASS stock_lua_requires_plume" || echo "FAIL stock_lua_requires_plume: $out"
fi
