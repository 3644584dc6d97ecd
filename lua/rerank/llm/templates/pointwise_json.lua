-- Pointwise relevance as a JSON score: one call per document, the answer
-- {"relevance_score": <0.0..1.0>}. Parsing tolerates prose and code fences around the JSON,
-- other key spellings ("score", "relevance"), numbers as strings ("0.8", "80%", "8/10") and
-- a bare number; out-of-range scores are clamped. Coerced, clamped or guessed scores count
-- as repairs.
local llm_parse = require "rerank.llm.parse"

local SYSTEM = "You are an expert relevance grader. Given a query and a document, judge how relevant "
  .. "the document is for answering the query. Answer with JSON only, in the form "
  .. '{"relevance_score": <number>}, where relevance_score is from 0.0 (not relevant at all) '
  .. "to 1.0 (perfectly relevant)."

local T = {
  name = "pointwise_json",
  kind = "pointwise",
  system = SYSTEM,
  request = { response_format = { type = "json_object" }, temperature = 0 },
}

-- doc: { id = 0-based index, text = string }
function T.messages(query, doc, opts)
  local system = SYSTEM
  if opts and opts.instruction then system = system .. "\n" .. opts.instruction end
  return {
    { role = "system", content = system },
    { role = "user", content = "Query: " .. query .. "\n\nDocument: " .. doc.text },
  }
end

function T.parse(text)
  local j = llm_parse.extract_json(text)
  local raw
  local repairs = 0
  if j ~= nil then
    raw = llm_parse.find_score(j)
    if raw == nil then return nil, "the answer has no relevance_score" end
  else
    raw = llm_parse.number_in_text(text)
    if raw == nil then return nil, "no relevance score in the answer" end
    repairs = 1
  end
  local s, r = llm_parse.score_of(raw, 0, 1)
  if not s then return nil, "relevance_score is not a number" end
  return { score = s, repairs = repairs + r }
end

return T
