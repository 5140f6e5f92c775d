-- plume.corpus -- real English text for the examples: the sentences of the fortune-cookie files that Debian's
-- `fortunes` package installs (/usr/share/games/fortunes), lower-cased words only, one sentence per entry.
--   local corpus = require "plume.corpus"
--   local lines = corpus.fortunes{ files = { "wisdom", "platitudes" }, min_words = 4, max_words = 12 }
-- Sentences with digits or "--" (attributions) are left out. Returns a list of strings (space-separated words);
-- empty when no file could be read, so callers can say that the package is missing.
local M = {}

M.dir = "/usr/share/games/fortunes/"

function M.fortunes(opts)
  opts = opts or {}
  local files = opts.files or { "wisdom", "platitudes", "fortunes" }
  local minw, maxw = opts.min_words or 4, opts.max_words or 12
  local lines = {}
  for _, f in ipairs(files) do
    local fh = io.open(M.dir .. f)
    if fh then
      local text = fh:read("a"):gsub("\n%%\n", " . "):gsub("%s+", " ")
      fh:close()
      for s in text:gmatch("[^%.%!%?]+") do
        if not s:find("%-%-") and not s:find("%d") then
          local words = {}
          for w in s:lower():gmatch("[%a']+") do words[#words + 1] = w end
          if #words >= minw and #words <= maxw then lines[#lines + 1] = table.concat(words, " ") end
        end
      end
    end
  end
  return lines
end

return M
