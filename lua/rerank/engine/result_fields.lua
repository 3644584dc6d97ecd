-- The members a result carries beyond index and score, both ways:
--   result_fields.matched_terms(results, per_doc)   return_score "all" with a provider that
--       reports matched terms (bm25: per document { { term, tf }, ... }): each result's
--       `extra` JSON members carry the score members (registry.score_members) and
--       matched_terms { term: tf } in the provider's term order (the daemon's one-pass
--       serialiser writes `extra` as it is).
--   result_fields.library(res, req)   the fields the HTTP answer has, as Lua values, for
--       library callers: a pipeline's per-stage members (kept as a JSON fragment in `extra`)
--       become fields of each result (id, _distance, score, _fused_score, _relevance_score,
--       ranks, scores); return_score "all" on a plain rerank adds _relevance_score;
--       return_documents adds the documents.
local json = require "rerank.json"

local M = {}

function M.matched_terms(results, per_doc)
  local score_members = require("rerank.shapes.registry").score_members
  for _, r in ipairs(results) do
    local list = per_doc[r.index + 1] or {}
    local parts = {}
    for j, m in ipairs(list) do parts[j] = json.string(m[1]) .. ":" .. json.number(m[2]) end
    r.extra = score_members(r) .. ',"matched_terms":{' .. table.concat(parts, ",") .. "}"
  end
end

function M.library(res, r)
  local all = r.return_score == "all"
  for _, item in ipairs(res.results) do
    local extra = item.extra
    if type(extra) == "string" then
      item.extra = nil
      if extra ~= "" then
        local fields = json.decode("{" .. extra:sub(2) .. "}")
        for k, v in pairs(type(fields) == "table" and fields or {}) do item[k] = v end
      end
    elseif all and not res.pipeline then
      item._relevance_score = item.relevance_score
    end
    local doc = r.return_documents and type(item.index) == "number" and r.documents[item.index + 1]
    if doc then
      if doc.raw ~= nil then item.document = doc.raw else item.document = doc.text end
    end
  end
end

return M
