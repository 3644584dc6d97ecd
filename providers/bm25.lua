-- The embedded default provider: Okapi BM25 over the request's own documents (no I/O).
-- Options: k1 (term saturation, default 1.2), b (length normalisation, default 0.75).
local core = require "rerank.core"

return {
  name = "bm25",
  score_kind = "bm25", -- lua/rerank/score.lua
  options = { k1 = "number", b = "number" },
  images = "text", -- image documents are scored on their text alone (an image-only one scores 0)
  score = function(model, req)
    local opts = model.options or {}
    -- truncate "none" scores the whole text (README: max_tokens_per_document applies to start/end)
    local max = req.truncate ~= "none" and req.max_tokens_per_document or nil
    local texts, docs = {}, req.documents
    for i = 1, #docs do texts[i] = docs[i].text end
    -- one tokenizer pass: the scorer also counts the documents' tokens (after truncation)
    local scores, doc_tokens = core.bm25(req.query, texts, {
      k1 = opts.k1 or 1.2, b = opts.b or 0.75,
      max_tokens = max, keep_end = req.truncate == "start",
    })
    local tokens = doc_tokens + core.count_tokens(req.query) * #docs
    return { scores = scores, usage = { prompt_tokens = tokens } }
  end,
}
