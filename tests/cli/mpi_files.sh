#!/bin/sh
# mpi_files.sh -- under `mpirun -np 2` rank 0 alone writes the files a script asks for: io.open in a writing
# mode, post:write_csv and plume.infer's `output` on rank 1 touch nothing (each file holds rank 0's text; rank 1
# wrote its rank to a path of its own, which must not appear), os.remove and os.rename on rank 1 leave files be,
# and a temporary file of os.tmpname is written and read back on every rank; plume.mpi.write_all(true) lets every
# rank write.
. tests/mpi.sh
mpi_ready mpi_files || exit 0
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo keep >"$dir/keep.txt"
cat >"$dir/files.lua" <<'EOF2'
local dir, r = arg[1], plume.mpi.rank
local f = assert(io.open(dir .. "/who.txt", "w")); f:write("rank ", r, "\n"); f:close()
f = assert(io.open(dir .. "/only_" .. r .. ".txt", "a")); f:write("x"); f:close()
io.output(dir .. "/out_" .. r .. ".txt"); io.write("y"); io.output(io.stdout)
local m = plume.model(function(m) m:sample("x", plume.dist.normal(0, 1)) end)
local post = plume.infer(m, nil, { method = "nuts", samples = 20, warmup = 20, chains = 2, seed = 1,
  output = dir .. "/stream_" .. r .. ".csv" })
post:write_csv(dir .. "/draws_" .. r .. ".csv")
if r == 1 then
  assert(os.remove(dir .. "/keep.txt"))
  assert(os.rename(dir .. "/who.txt", dir .. "/moved.txt"))
end
local t = os.tmpname()
f = assert(io.open(t, "w")); f:write("mine ", r); f:close()
f = assert(io.open(t)); local back = f:read("a"); f:close()
assert(back == "mine " .. r, "rank " .. r .. " read back '" .. back .. "'")
assert(os.remove(t))
local gone = io.open(t) == nil
assert(gone, "rank " .. r .. ": its temporary file was not removed")
print("done")
EOF2
out=$(mpi_run 2 "$dir/files.lua" "$dir" 2>&1); rc=$?
[ $rc = 0 ] && [ "$out" = done ] && echo "PASS mpi_files_job_runs_tmpname_round_trip_on_every_rank" \
    || echo "FAIL mpi_files_job_runs_tmpname_round_trip_on_every_rank: exit $rc: $out"
[ "$(cat "$dir/who.txt" 2>&1)" = "rank 0" ] && echo "PASS mpi_files_io_open_written_by_rank_0" \
    || echo "FAIL mpi_files_io_open_written_by_rank_0: $(cat "$dir/who.txt" 2>&1)"
ok=1
for f in only_0.txt out_0.txt stream_0.csv draws_0.csv; do [ -s "$dir/$f" ] || ok=0; done
for f in only_1.txt out_1.txt stream_1.csv draws_1.csv moved.txt; do [ -e "$dir/$f" ] && ok=0; done
[ $ok = 1 ] && echo "PASS mpi_files_rank_1_writes_nothing" || echo "FAIL mpi_files_rank_1_writes_nothing: $(ls "$dir")"
[ "$(cat "$dir/keep.txt" 2>&1)" = keep ] && echo "PASS mpi_files_rank_1_removes_nothing" \
    || echo "FAIL mpi_files_rank_1_removes_nothing"
# plume.mpi.write_all(true): every rank writes the files it names (per-rank logs)
cat >"$dir/all.lua" <<'EOF2'
local dir, r = arg[1], plume.mpi.rank
assert(plume.mpi.write_all(true) == false)
local f = assert(io.open(dir .. "/log_" .. r .. ".txt", "w")); f:write("rank ", r, "\n"); f:close()
EOF2
mpi_run 2 "$dir/all.lua" "$dir" >/dev/null 2>&1
[ "$(cat "$dir/log_0.txt" "$dir/log_1.txt" 2>&1 | tr '\n' ' ')" = "rank 0 rank 1 " ] \
    && echo "PASS mpi_files_write_all_lets_every_rank_write" \
    || echo "FAIL mpi_files_write_all_lets_every_rank_write: $(ls "$dir")"
