-- Pointwise yes/no relevance: one call per document asking for "yes" or "no", with
-- logprobs. The score is P(yes) / (P(yes) + P(no)) over the first answer token's
-- top_logprobs when the server returns them; otherwise 1 for yes and 0 for no.
local llm_parse = require "rerank.llm.parse"

local SYSTEM = "You are a search relevance judge. Given a query and a document, decide whether the "
  .. 'document is relevant to the query. Answer only "yes" or "no".'

local T = {
  name = "yes_no",
  kind = "pointwise",
  system = SYSTEM,
  request = { temperature = 0, max_tokens = 1, logprobs = true, top_logprobs = 5 },
}

function T.messages(query, doc, opts)
  local system = SYSTEM
  if opts and opts.instruction then system = system .. "\n" .. opts.instruction end
  return {
    { role = "system", content = system },
    { role = "user", content = "Query: " .. query .. "\n\nDocument: " .. doc.text
        .. "\n\nIs the document relevant to the query? Answer yes or no." },
  }
end

-- ctx.choice: the answer's choices[1] (its logprobs, when present)
function T.parse(text, ctx)
  local p = llm_parse.yes_probability(ctx and ctx.choice)
  if p then return { score = p, repairs = 0 } end
  local k = llm_parse.yes_no(tostring(text or ""):match("%a+"))
  if k then return { score = k == "yes" and 1 or 0, repairs = 0 } end
  local lt = tostring(text or ""):lower()
  local y, n = lt:find("%f[%a]yes%f[%A]"), lt:find("%f[%a]no%f[%A]")
  if y and (not n or y < n) then return { score = 1, repairs = 1 } end
  if n then return { score = 0, repairs = 1 } end
  return nil, "the answer is neither yes nor no"
end

return T
