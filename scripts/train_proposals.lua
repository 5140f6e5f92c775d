-- train_proposals.lua -- rebuilds the shipped learned proposals (stdlib/proposals/*.plmprop) from fixed seeds:
-- `make proposals`, or `build/plume scripts/train_proposals.lua [dir] [motif]`. Training is single-threaded
-- and depends on the seed only, so the files are the same bytes on every run on the same build.
local dir = arg and arg[1] or "stdlib/proposals"
local only = arg and arg[2]
local settings = {
  mixture = { samples = 60000, epochs = 12, hidden = { 8 }, seed = 1601, K_max = 8, activation = "relu" },
  grid    = { samples = 60000, epochs = 12, hidden = {}, seed = 1602, activation = "relu" },
  chain   = { samples = 60000, epochs = 8, hidden = { 16, 16 }, lr = 3e-3, seed = 1603, S_max = 16, activation = "relu" },
}
for _, motif in ipairs({ "mixture", "grid", "chain" }) do
  if not only or only == motif then
    local o = settings[motif]
    o.out = dir .. "/" .. motif .. ".plmprop"
    local t0 = os.clock()
    local p = plume.proposals.train(motif, o)
    print(string.format("%s: %d weights, held-out log q %.4f per block, %.1f s -> %s", motif, p.weights, p.heldout,
      os.clock() - t0, o.out))
  end
end
