#!/bin/sh
# smc_interrupt.sh -- Ctrl-C (SIGINT) stops plume.smc and plume.beam promptly, between particle resumes, with
# "interrupted" and a non-zero exit; the run would otherwise take hours.
P=${PLUME:-build/plume}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

# each particle works about 10 ms before its first checkpoint: one step of 2,000 particles takes ~20 s, so only a
# check between particle resumes stops it within the 5 s allowed
cat > "$T/long.lua" <<'LUA'
local D = plume.dist
local function work() local s = 0; for i = 1, 1e6 do s = s + i end; return s end
local probs = {}
for k = 1, 2000 do probs[k] = 1 / 2000 end
local slow = plume.model(function(m)
  for t = 1, 1e6 do
    m:sample("z" .. t, D.categorical(probs))   -- the beam branches 2000 ways at once
    work()
    m:factor(0)
  end
end)
io.stderr:write("started\n")
if arg[1] == "beam" then
  plume.beam(slow, {}, { beams = 2000 })
else
  plume.smc(slow, {}, { particles = 2000, seed = 1 })
end
LUA
for what in smc beam; do
  "$P" --quiet "$T/long.lua" $what > "$T/out" 2>&1 &
  pid=$!
  i=0
  while ! grep -q started "$T/out" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  sleep 1
  kill -INT $pid
  i=0
  while kill -0 $pid 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  if kill -0 $pid 2>/dev/null; then
    kill -KILL $pid
    fail ctrl_c_stops_$what "still running 5 s after SIGINT"
  else
    wait $pid; rc=$?
    if [ $rc -ne 0 ] && grep -q interrupted "$T/out"; then pass ctrl_c_stops_$what; else fail ctrl_c_stops_$what "rc $rc: $(cat "$T/out")"; fi
  fi
done
