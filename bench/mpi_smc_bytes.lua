-- mpi_smc_bytes.lua -- what plume.smc over programs sends between ranks: run under
-- `mpirun -np K plume bench/mpi_smc_bytes.lua [N] [T]` (any K; one rank sends nothing). An n-gram LM program
-- samples T tokens under a potential with N particles, resampling at every token (ess_threshold = 1, the most
-- traffic). Each rank prints one line: bytes it sent (all collectives of the run but the final gathering),
-- particle records it sent and their bytes; rank 0 adds the totals per resampling.
local N, T = tonumber(arg[1]) or 256, tonumber(arg[2]) or 16
local lm = plume.lm.ngram.train { text = "a b c a b a c b a a b c c a d a b d", order = 2 }
local A = lm:tokenize("a")[1]
local story = plume.model(function(m, lm)
  local ctx = lm:context("b")
  for t = 1, T do
    local tok = m:sample("tok" .. t, ctx:next_token())
    if lm:is_eos(tok) then break end
    m:factor(tok == A and 0.7 or -0.2)
  end
  return ctx:text()
end)
local t0 = os.clock()
local post = plume.smc(story, { lm }, { particles = N, seed = 1, ess_threshold = 1, quiet = true })
io.stderr:write(string.format("rank %d/%d: N %d T %d resamples %d logz %.12f | sent %d bytes, %d records of %d bytes (%.1f bytes/record) | cpu %.2fs\n",
  plume.mpi.rank, plume.mpi.size, N, T, post.resamples, post.logz, post.bytes_sent or 0, post.records_sent or 0,
  post.record_bytes or 0, (post.record_bytes or 0) / math.max(1, post.records_sent or 0), os.clock() - t0))
