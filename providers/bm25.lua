-- The embedded default provider: Okapi BM25 over the request's own documents (no I/O).
-- Options: k1 (term saturation, default 1.2), b (length normalisation, default 0.75).
local core = require "rerank.core"

return {
  name = "bm25",
  options = { k1 = "number", b = "number" },
  score = function(model, req)
    local opts = model.options or {}
    -- truncate "none" scores the whole text (README: max_tokens_per_document applies to start/end)
    local max = req.truncate ~= "none" and req.max_tokens_per_document or nil
    local texts = {}
    local q = core.count_tokens(req.query)
    local tokens = 0
    for i, d in ipairs(req.documents) do
      texts[i] = d.text
      local n = core.count_tokens(d.text)
      if max and n > max then n = max end
      tokens = tokens + q + n
    end
    local scores = core.bm25(req.query, texts, {
      k1 = opts.k1 or 1.2, b = opts.b or 0.75,
      max_tokens = max, keep_end = req.truncate == "start",
    })
    return { scores = scores, usage = { prompt_tokens = tokens } }
  end,
}
