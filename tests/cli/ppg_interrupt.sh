#!/bin/sh
# ppg_interrupt.sh -- Ctrl-C (SIGINT) stops plume.ppg promptly with "interrupted" and a non-zero
# exit; the run asked for would otherwise take hours.
P=${PLUME:-build/plume}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat > "$T/long.lua" <<'LUA'
local D = plume.dist
local lin = plume.ssm{ params = { rho = 0.9 }, init = function(p) return D.normal(0, 1) end,
  trans = function(p, x, t) return D.normal(p.rho * x, 0.5) end, obs = function(p, x, t) return D.normal(x, 0.5) end }
local _, ys = lin:simulate(1000, { seed = 1 })
io.stderr:write("started\n")
plume.ppg(lin, ys, { particles = 1000, iters = 1e7, functional = function(t, xp, x) return x end, threads = 1 })
LUA
"$P" --quiet "$T/long.lua" > "$T/out" 2>&1 &
pid=$!
i=0
while ! grep -q started "$T/out" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
sleep 1
kill -INT $pid
i=0
while kill -0 $pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 $pid 2>/dev/null; then
    kill -KILL $pid
    echo "FAIL ctrl_c_stops_ppg: still running 5 s after SIGINT"
else
    wait $pid; rc=$?
    if [ $rc -ne 0 ] && grep -q "interrupted" "$T/out"; then echo "PASS ctrl_c_stops_ppg"
    else echo "FAIL ctrl_c_stops_ppg: rc $rc: $(cat "$T/out")"; fi
fi
