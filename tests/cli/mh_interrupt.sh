#!/bin/sh
# mh_interrupt.sh -- plume.infer stops promptly on SIGINT whether its MH chains run on one thread or on two:
# the process exits within a few seconds with "interrupted" (before the fix, threads = 2 ran to the end).
P=${PLUME:-build/plume}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

cat > "$T/long.lua" <<'LUA'
local threads = tonumber(arg[1])
local model = plume.model(function(m)
  local x = m:sample("x", plume.dist.normal(0, 1))
  m:observe("y", plume.dist.normal(x, 1), 0.5)
end)
io.stderr:write("started\n")
-- about a minute of work on this machine class: far longer than the test waits
plume.infer(model, nil, { samples = 20000000, chains = 4, threads = threads, seed = 1, quiet = true })
print("finished")
LUA

for th in 1 2; do
    "$P" "$T/long.lua" $th > "$T/out$th" 2> "$T/err$th" &
    pid=$!
    i=0
    while ! grep -q started "$T/err$th" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    sleep 1
    kill -INT $pid
    # wait at most 10 s for it to stop
    i=0
    while kill -0 $pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 $pid 2>/dev/null; then
        kill -KILL $pid
        fail "sigint_stops_mh_on_${th}_threads" "still running 10 s after SIGINT"
        continue
    fi
    wait $pid
    rc=$?
    if [ $rc -ne 0 ] && grep -q "interrupted" "$T/err$th" && ! grep -q finished "$T/out$th"; then
        pass "sigint_stops_mh_on_${th}_threads"
    else
        fail "sigint_stops_mh_on_${th}_threads" "rc=$rc, stderr: $(cat "$T/err$th")"
    fi
done
