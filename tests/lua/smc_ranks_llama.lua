-- smc_ranks_llama.lua -- plume.smc over a program on a real transformer (the tiny random-weight llama GGUF that
-- `plume.lm.write_tiny_gguf` writes; tests/cli/mpi_smc_llama.sh makes it first, at arg[1]), for comparing rank
-- counts: every rank loads the model itself and runs its share of 32 particles of 12 tokens under a potential;
-- each rank writes "R<r> <checksum> logz <logz> moved <records it sent>" to stderr, the checksum over logz and
-- every particle's text and log weight (17 digits).
local lm = plume.lm.llama { model = arg[1], ctx = 4096, seqs = 64, threads = 1 }
local function plain(lm, tok) return lm:detokenize { tok }:match("^[a-z ]$") ~= nil end
local story = plume.model(function(m, lm, prompt)
  local ctx = lm:context(prompt)
  for t = 1, 12 do
    local tok = m:sample("tok" .. t, ctx:next_token())
    if lm:is_eos(tok) then break end
    m:factor(plain(lm, tok) and 0 or -3)
  end
  return ctx:text()
end)
local post = plume.smc(story, { lm, "Once upon a time" }, { particles = 32, seed = 1, quiet = true, migrate = arg[2] })
local out = { string.format("logz %.17g", post.logz) }
for i = 1, post.particles do out[#out + 1] = string.format("%q %.17g", post.values[i], post.log_weights[i]) end
local text = table.concat(out, "\n")
local h = 2166136261                      -- FNV-1a over the text's bytes
for i = 1, #text do h = ((h ~ text:byte(i)) * 16777619) & 0xffffffff end
io.stderr:write(string.format("R%d %08x %s moved %d\n", plume.mpi.rank, h, out[1], post.records_sent or 0))
