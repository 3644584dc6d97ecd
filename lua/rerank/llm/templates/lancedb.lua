-- LanceDB's OpenaiReranker prompt (reference/provider-apis.md §17), made robust: one
-- JSON-mode call with the query and a batch of documents; the answer is
-- {"documents": [{"content", "relevance_score"}, ...]}.
--
-- The system prompt is LanceDB's runtime string, byte for byte (548 characters: the
-- source's backslash continuations leave 24 spaces at each join). The user message is
-- "Query: {query} Docs: {docs}" with docs a Python list repr, as LanceDB's f-string makes
-- it. Unlike LanceDB, each document goes in as {'id': <0-based index>, 'content': <text>}
-- so answers are matched back by id, then by content, then by position (opts.ids = false
-- sends the bare strings, exactly like LanceDB: see lancedb_exact.lua). An instruction,
-- when given, is appended to the system prompt on its own line.
local llm = require "rerank.llm"
local llm_parse = require "rerank.llm.parse"

local GAP = string.rep(" ", 24)
local SYSTEM = table.concat({
  "You are an expert relevance ranker. Given a list of",
  "documents and a query, your job is to determine the relevance",
  "each document is for answering the query. Your output is JSON,",
  "which is a list of documents. Each document has two fields,",
  "content and relevance_score.  relevance_score is from 0.0 to",
  "1.0 indicating the relevance of the text to the given query.",
  "Make sure to include all documents in the response.",
}, GAP)

local T = {
  name = "lancedb",
  kind = "list",
  system = SYSTEM,
  ids = true,
  request = { response_format = { type = "json_object" }, temperature = 0 },
}

-- window: { { id = 0-based index, text = string }, ... }
function T.messages(query, window, opts)
  opts = opts or {}
  local ids = opts.ids
  if ids == nil then ids = T.ids end
  local docs = {}
  for i, d in ipairs(window) do
    docs[i] = ids and llm.py_dict({ { "id", d.id }, { "content", d.text } }) or d.text
  end
  local system = SYSTEM
  if opts.instruction then system = system .. "\n" .. opts.instruction end
  return {
    { role = "system", content = system },
    { role = "user", content = "Query: " .. query .. " Docs: " .. llm.py_repr(docs) },
  }
end

-- ctx.window: the documents sent. Returns { scores = {[i] = score | nil}, repairs = n }.
function T.parse(text, ctx)
  local j, err = llm_parse.extract_json(text)
  if j == nil then return nil, err end
  local items, renamed = llm_parse.answer_items(j)
  if not items then return nil, 'the answer has no "documents" list' end
  local scores, repairs = llm_parse.match_items(items, ctx.window)
  return { scores = scores, repairs = repairs + (renamed and 1 or 0) }
end

return T
