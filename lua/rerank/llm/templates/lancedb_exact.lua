-- LanceDB's OpenaiReranker prompt exactly as LanceDB sends it: the documents are the bare
-- strings (a Python list repr), no ids. Answers are matched back by content, then by
-- position (LanceDB itself reads them by position). See lancedb.lua.
local base = require "rerank.llm.templates.lancedb"

local T = {}
for k, v in pairs(base) do T[k] = v end
T.name = "lancedb_exact"
T.ids = false

function T.messages(query, window, opts)
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.ids = false
  return base.messages(query, window, o)
end

return T
