#!/bin/sh
# cli.sh -- the plume command as a user meets it: scripts with arguments, -e, stdin, --version, --help,
# and errors that print "plume: file:line: message" with a non-zero exit.
P=${PLUME:-build/plume}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }
check() {  # name, expected substring, actual
    case "$3" in *"$2"*) pass "$1" ;; *) fail "$1" "expected '$2' in '$3'" ;; esac
}

out=$("$P" -e 'print(plume.dist.normal(0,1):logpdf(0.5))')
[ "$out" = "-1.0439385332047" ] && pass normal_logpdf_prints_13_digits || fail normal_logpdf_prints_13_digits "$out"

check version_prints_plume_and_lua "plume 0.1.0" "$("$P" --version)"
check help_lists_options "-e code" "$("$P" --help)"

cat > "$T/args.lua" <<'LUA'
print(#arg, arg[0] ~= nil, arg[1], arg[2], ...)
LUA
out=$("$P" "$T/args.lua" a b)
check script_receives_arg_table_and_varargs "2	true	a	b	a	b" "$out"

out=$(echo 'print(6*7)' | "$P")
[ "$out" = "42" ] && pass stdin_is_run_when_not_a_terminal || fail stdin_is_run_when_not_a_terminal "$out"

printf 'local x = 1\n\nerror("boom")\n' > "$T/err.lua"
out=$("$P" "$T/err.lua" 2>&1); rc=$?
check runtime_error_names_file_and_line "plume: $T/err.lua:3: boom" "$out"
[ $rc -ne 0 ] && pass runtime_error_exits_nonzero || fail runtime_error_exits_nonzero "rc=$rc"

printf 'local x = \nlocal = 2\n' > "$T/syn.lua"
out=$("$P" "$T/syn.lua" 2>&1); rc=$?
check syntax_error_names_file_and_line "$T/syn.lua:2:" "$out"
[ $rc -ne 0 ] && pass syntax_error_exits_nonzero || fail syntax_error_exits_nonzero "rc=$rc"

printf 'local d = plume.dist.normal(0, -1)\n' > "$T/bad.lua"
check bad_parameter_error_blames_the_script_line "bad.lua:1: normal: sigma must be > 0 (got -1)" "$("$P" "$T/bad.lua" 2>&1)"

out=$("$P" "$T/missing.lua" 2>&1); rc=$?
check missing_script_is_reported "cannot open" "$out"
[ $rc -ne 0 ] && pass missing_script_exits_nonzero || fail missing_script_exits_nonzero "rc=$rc"

check unknown_option_is_reported "unrecognized option '--frobnicate'" "$("$P" --frobnicate 2>&1)"
check e_runs_before_the_script "12" "$("$P" -e 'X = 12' "$T/args.lua" 2>&1; "$P" -e 'X = 12' -e 'print(X)')"

# --quiet sets plume.quiet, which silences progress lines
check quiet_flag_sets_plume_quiet "true" "$("$P" --quiet -e 'print(plume.quiet)')"

# require "plume" works inside the CLI too (the global and the module are the same table)
check require_returns_the_global "true" "$("$P" -e 'print(require("plume") == plume)')"
