#!/bin/sh
# bffg_output.sh -- a long plume.bffg pCN run with option output, stopped by SIGINT on one thread and on two, exits
# with "interrupted" and leaves a CSV of the draws made so far: a header, at least one draw, every line complete
# (the header's number of fields), and plume.read_posterior reads it back.
P=${PLUME:-build/plume}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; }

cat > "$T/long.lua" <<'LUA'
local threads, out = tonumber(arg[1]), arg[2]
local MK = plume.markov_kernel
local ou = plume.sde{ dim = 1, params = { theta = 1, sigma = 0.7 }, drift = function(p, x) return -p.theta * x end,
  diffusion = function(p) return p.sigma end }
local g = plume.dag()
g:root("x0", 0.2)
local prev = "x0"
for t = 1, 4 do
  g:kernel("x" .. t, prev, MK.sde{ sde = ou, t0 = t - 1, t1 = t, dt = 0.01, at = 0 })
   :observe("y" .. t, "x" .. t, MK.linear_gaussian{ B = 1, Q = 0.05 }, 0.3 * t)
  prev = "x" .. t
end
io.stderr:write("started\n")
-- minutes of work: far longer than the test waits
plume.bffg(g, nil, { method = "mcmc", samples = 50000000, warmup = 10, chains = 2, threads = threads, seed = 1, sde = ou,
  params = { theta = plume.dist.gamma(2, 1) }, output = out })
print("finished")
LUA

cat > "$T/read.lua" <<'LUA'
local post = plume.read_posterior(arg[1])
local th = post:draws("theta")
assert(#th >= 1, "no draws read back")
for i = 1, #th do assert(th[i] > 0 and th[i] < math.huge, "theta draw " .. i .. " is " .. tostring(th[i])) end
print("read " .. #th)
LUA

for th in 1 2; do
    out="$T/fit$th.csv"
    "$P" "$T/long.lua" $th "$out" > "$T/out$th" 2> "$T/err$th" &
    pid=$!
    i=0
    # until the file holds a header and a few draws
    while { [ ! -f "$out" ] || [ "$(wc -l < "$out")" -lt 20 ]; } && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
    kill -INT $pid
    i=0
    while kill -0 $pid 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    if kill -0 $pid 2>/dev/null; then
        kill -KILL $pid
        fail "sigint_keeps_bffg_draws_on_${th}_threads" "still running 10 s after SIGINT"
        continue
    fi
    wait $pid
    rc=$?
    nf=$(head -n 1 "$out" | awk -F, '{print NF}')
    bad=$(awk -F, -v nf="$nf" 'NF != nf' "$out" | wc -l)
    rows=$(($(wc -l < "$out") - 1))
    if [ $rc -ne 0 ] && grep -q "interrupted" "$T/err$th" && ! grep -q finished "$T/out$th" && [ "$rows" -ge 1 ] &&
       [ "$bad" -eq 0 ] && [ "$(tail -c 1 "$out" | od -An -c | tr -d ' ')" = '\n' ] && "$P" "$T/read.lua" "$out" > "$T/read$th" 2>&1; then
        pass "sigint_keeps_bffg_draws_on_${th}_threads ($rows draws kept, $(cat "$T/read$th"))"
    else
        fail "sigint_keeps_bffg_draws_on_${th}_threads" "rc=$rc rows=$rows incomplete lines=$bad, stderr: $(cat "$T/err$th"), read: $(cat "$T/read$th" 2>/dev/null)"
    fi
done
