-- mpi_chains.lua -- plume.infer's chains spread over MPI ranks (run by bench/mpi_chains.sh): the BUGS "rats"
-- model by NUTS, C chains of N + N iterations, one thread per rank. Rank 0 prints the wall time of plume.infer
-- (the chains' sampling and their exchange), the bytes it sent, and a checksum of the draws, which must be the
-- same for every number of ranks.
-- usage: [mpirun -np K] build/plume bench/mpi_chains.lua [chains] [samples]
local C, N = tonumber(arg[1]) or 4, tonumber(arg[2]) or 1000
local R = dofile("bench/rats_common.lua")
plume.mpi.barrier()
local t0 = R.wall()
local post = plume.infer(R.rats, R.data, { method = "nuts", samples = N, warmup = N, chains = C, seed = 1, threads = tonumber(arg[3]) or 1,
  quiet = true })
local t = R.wall() - t0
local sum = 0
for _, x in ipairs(post:draws("sigma")) do sum = sum + x end
print(string.format("ranks %d  chains %d  samples %d  infer %.2f s  sent by rank 0 %d bytes  sum(sigma) %.17g",
  plume.mpi.size, C, N, t, plume.mpi.bytes_sent(), sum))
