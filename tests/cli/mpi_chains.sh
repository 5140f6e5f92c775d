#!/bin/sh
# mpi_chains.sh -- plume.infer under `mpirun -np 2` spreads the chains over the two ranks (each rank sends the
# draws of its chains to the other: bytes_sent grows during plume.infer) and writes a CSV identical, byte for
# byte, to that of one plain process with the same seed: NUTS (4 chains), "auto" picking Gibbs and NUTS (4
# chains), "gibbs", a composite kernel of plume.kernel with 3 chains (blocks of unequal sizes, 2 + 1), MH on a
# dynamic program (3 chains, the CSV from the `output` option) and distribute = "none". Only rank 0 writes the
# file and prints. A bad `distribute` is named.
. tests/mpi.sh
name=mpi_chains
out=$("$P" -e 'plume.infer(plume.model(function(m) m:sample("x", plume.dist.normal(0, 1)) end), nil,
    { distribute = "particles" })' 2>&1)
[ "$out" = 'plume: (command line):1: plume.infer: option '"'distribute'"' must be "chains" or "none" (got "particles")' ] \
    && echo "PASS ${name}_bad_distribute_is_named" || echo "FAIL ${name}_bad_distribute_is_named: $out"
mpi_ready "$name" || exit 0
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/chains.lua" <<'EOF'
local D = plume.dist
local how, out = arg[1], arg[2]
local ys = { 1.9, -2.4, 4.7, 1.1, 5.2, -3.3 }
local normal = plume.model(function(m, y)
  local mu = m:sample("mu", D.normal(0, 5))
  local s = m:sample("s", D.halfnormal(2))
  for i = 1, #y do m:observe("y" .. i, D.normal(mu, s), y[i]) end
end)
-- mu conjugate (Gibbs), z discrete (enumerated), sigma not conjugate (NUTS)
local mixsd = plume.model(function(m, y)
  local mu = m:sample("mu", D.normal(0, 2))
  local z = m:sample("z", D.bernoulli(0.3))
  local sigma = m:sample("sigma", D.lognormal(0, 0.5))
  for i = 1, #y do m:observe("y[" .. i .. "]", D.normal(mu, sigma * (1 + z)), y[i]) end
end)
-- every site has an exact conditional (Gibbs alone)
local conj = plume.model(function(m, y)
  local mu = m:sample("mu", D.normal(0, 2))
  local z = m:sample("z", D.bernoulli(0.3))
  for i = 1, #y do m:observe("y[" .. i .. "]", D.normal(mu, 1 + z), y[i]) end
end)
-- dynamic: site 'extra' exists in some runs only (MH on traces)
local dynamic = plume.model(function(m, y)
  local k = m:sample("k", D.bernoulli(0.5))
  local mu = m:sample("mu", D.normal(0, 3))
  if k == 1 then mu = mu + m:sample("extra", D.normal(0, 1)) end
  for i = 1, #y do m:observe("y" .. i, D.normal(mu, 1), y[i]) end
end)
local o = { samples = 150, warmup = 150, chains = 4, seed = 11 }
local model = normal
if how == "nuts" then o.method = "nuts"
elseif how == "auto" then model = mixsd
elseif how == "gibbs" then model, o.method = conj, "gibbs"
elseif how == "kernel" then
  model, o.chains = mixsd, 3
  o.kernel = plume.kernel.cycle{ plume.kernel.gibbs{ sites = { "z", "mu" } }, plume.kernel.slice{ sites = { "sigma" } } }
elseif how == "dynamic" then model, o.chains, o.output = dynamic, 3, out
elseif how == "none" then o.method, o.distribute = "nuts", "none"
end
local before = plume.mpi.bytes_sent()
local post = plume.infer(model, ys, o)
local sent = plume.mpi.bytes_sent() - before
if not o.output then post:write_csv(out) end
print(how, "chains", post.chains, "sent", sent > 0)
EOF
for how in nuts auto gibbs kernel dynamic none; do
    "$P" "$dir/chains.lua" $how "$dir/one_$how.csv" >"$dir/one_$how.out" 2>&1 \
        || { echo "FAIL ${name}_$how: the one-process run failed: $(cat "$dir/one_$how.out")"; continue; }
    mpi_run 2 "$dir/chains.lua" $how "$dir/two_$how.csv" >"$dir/two_$how.out" 2>&1
    rc=$?
    if [ $rc != 0 ]; then
        echo "FAIL ${name}_$how: mpirun -np 2 exited $rc: $(tail -5 "$dir/two_$how.out")"
    elif ! cmp -s "$dir/one_$how.csv" "$dir/two_$how.csv"; then
        echo "FAIL ${name}_${how}_csv_identical_to_one_process: $(cmp "$dir/one_$how.csv" "$dir/two_$how.csv" 2>&1)"
    else
        echo "PASS ${name}_${how}_csv_identical_to_one_process"
    fi
    # one line, from rank 0; it sent its chains to rank 1 unless every rank ran every chain
    want=true; [ $how = none ] && want=false
    lines=$(grep -c "chains" "$dir/two_$how.out")
    if [ "$lines" = 1 ] && grep -q "sent	$want\$" "$dir/two_$how.out"; then
        echo "PASS ${name}_${how}_rank_0_prints_once_chains_exchanged_$want"
    else
        echo "FAIL ${name}_${how}_rank_0_prints_once_chains_exchanged_$want: $(cat "$dir/two_$how.out")"
    fi
done
