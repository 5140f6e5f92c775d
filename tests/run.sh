#!/bin/sh
# Run every test: C unit tests (build/tests/test_*), Lua tests (tests/lua/*.lua), CLI tests (tests/cli/*.sh)
# and every example (examples/*.lua). Each prints "PASS name" / "FAIL name" / "SKIP name: why" lines; a file
# that exits non-zero without a FAIL line counts as one failure. Ends with "N passed, N failed, N skipped";
# every SKIP line is shown with its reason, since skipped is not passed. An example that prints SKIP is
# counted as skipped, not passed.
BUILD=${BUILD:-build}
PLUME="$PWD/$BUILD/plume"
export PLUME BUILD
LOG=$(mktemp)
pass=0; fail=0; skip=0
run_one() {  # name, command...
    name=$1; shift
    start=$(date +%s)
    "$@" >"$LOG" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    p=$(grep -c '^PASS ' "$LOG"); f=$(grep -c '^FAIL ' "$LOG"); k=$(grep -c '^SKIP' "$LOG")
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        f=1; echo "FAIL $name (exit $rc)"
    fi
    if [ "$f" != 0 ] || [ "$rc" != 0 ]; then
        echo "---- $name (exit $rc, ${secs}s) ----"; tail -n 40 "$LOG"; echo "----"
    else
        echo "ok   $name: $p passed (${secs}s)"
    fi
    grep '^SKIP' "$LOG" | sed 's/^/     /'
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + k))
}
for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] && run_one "$(basename "$t")" "$t"
done
for t in tests/lua/test_*.lua; do
    [ -f "$t" ] && run_one "$t" "$PLUME" --quiet "$t"
done
for t in tests/cli/*.sh; do
    [ -f "$t" ] && run_one "$t" sh "$t"
done
run_example() {  # an example passes when it runs cleanly, unless it says it skipped
    (cd examples && "$PLUME" --quiet "$1") >"$LOG.ex" 2>&1
    rc=$?
    cat "$LOG.ex"
    [ "$rc" = 0 ] && ! grep -q '^SKIP' "$LOG.ex" && echo "PASS example $1"
    rm -f "$LOG.ex"
    return "$rc"
}
for t in examples/*.lua; do
    [ -f "$t" ] && run_one "$t" run_example "$(basename "$t")"
done
rm -f "$LOG"
# the set-up records why llama.cpp could not be fetched (scripts/deps.sh); the summary says it with the count
why=""
[ "$skip" != 0 ] && [ -s build/llama.missing ] && why=" (llama.cpp not installed: $(head -n 1 build/llama.missing))"
echo "$pass passed, $fail failed, $skip skipped$why"
[ "$fail" = 0 ]
