-- A local provider (no I/O): score = fraction of distinct query words found in the document.
-- In config.yaml: - { name: overlap, provider_file: ./examples/providers/overlap.lua, min_len: 2 }
local core = require "rerank.core"

return {
  name = "overlap",
  options = { min_len = "integer" },            -- extra keys a model entry may set
  score = function(model, req)
    local want, n = {}, 0
    for _, t in ipairs(core.tokenize(req.query)) do
      if #t >= (model.options.min_len or 1) and not want[t] then want[t] = true; n = n + 1 end
    end
    local scores = {}
    for i, doc in ipairs(req.documents) do      -- doc = {index (0-based), text, id, title, metadata}
      local seen, hit = {}, 0
      for _, t in ipairs(core.tokenize(doc.text)) do
        if want[t] and not seen[t] then seen[t] = true; hit = hit + 1 end
      end
      scores[i] = n > 0 and hit / n or 0
    end
    return { scores = scores }                   -- or results = {{index=0-based, score=..}}, usage = {...}
  end,
}
